//! Second factors: TOTP (RFC 6238; each code accepted once, ±1 step of clock skew), SMS
//! codes (6 digits, expiring, limited tries, throttled sends) and one-time recovery codes.
//! TOTP secrets and recovery codes are stored sealed (see `at_rest`).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde::Serialize;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use super::entities::{recovery_code, sms_code, user};
use super::password::{fingerprint, random_code, random_digits};
use super::sms::normalise_phone;
use super::{AuthError, AuthService, ClientInfo};
use crate::platform::db::now;

/// RFC 6238 time step.
const STEP: i64 = 30;
/// Recovery codes per set.
const RECOVERY_CODES: usize = 10;
/// SMS sends per user per hour, on top of the resend interval.
const SMS_PER_HOUR: u32 = 10;

/// What the user needs to add the account to an authenticator app.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// Base32 secret, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/...` URI.
    pub uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

fn totp_for(secret_b32: &str, account: &str) -> Result<TOTP, AuthError> {
    let bytes = Secret::Encoded(secret_b32.to_owned()).to_bytes().map_err(|e| AuthError::Internal(format!("{e:?}")))?;
    TOTP::new(Algorithm::SHA1, 6, 1, STEP as u64, bytes, Some("postcast".into()), account.to_owned())
        .map_err(|e| AuthError::Internal(e.to_string()))
}

/// The time step whose code equals `code`, within one step of `now`.
fn totp_step(totp: &TOTP, code: &str, now: i64) -> Option<i64> {
    let step = now / STEP;
    (step - 1..=step + 1).find(|s| totp.generate((s * STEP) as u64).as_bytes().ct_eq(code.as_bytes()).into())
}

fn is_six_digits(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

impl AuthService {
    /// Starts TOTP enrolment: a fresh secret, its URI and QR code. Not active until
    /// confirmed with a code.
    pub async fn totp_setup(&self, user_id: i64) -> Result<TotpSetup, AuthError> {
        let row = self.user_row(user_id).await?;
        if row.totp_enabled {
            return Err(AuthError::FactorState("TOTP is already on; turn it off first to enrol a new device"));
        }
        let secret = Secret::generate_secret().to_encoded().to_string();
        let totp = totp_for(&secret, &row.address)?;
        let uri = totp.get_url();
        let qr_svg = qrcode::QrCode::new(uri.as_bytes())
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(220, 220)
            .build();
        let mut active = row.as_ref().clone().into_active_model();
        active.totp_secret = Set(Some(self.inner.at_rest.seal_totp(user_id, &secret)?));
        active.update(self.db()).await?;
        self.forget_user(user_id).await;
        Ok(TotpSetup { secret, uri, qr_svg })
    }

    /// Confirms enrolment with a current code; returns new recovery codes if the account
    /// had none left.
    pub async fn totp_confirm(&self, user_id: i64, code: &str, client: &ClientInfo) -> Result<Vec<String>, AuthError> {
        self.limit_ip("second_factor", client)?;
        let row = self.user_row(user_id).await?;
        if row.totp_enabled {
            return Err(AuthError::FactorState("TOTP is already on"));
        }
        let stored = row.totp_secret.as_deref().ok_or(AuthError::FactorState("start the TOTP setup first"))?;
        let totp = totp_for(&self.inner.at_rest.open_totp(user_id, stored)?, &row.address)?;
        let step = totp_step(&totp, code.trim(), now()).ok_or(AuthError::InvalidCode)?;
        let mut active = row.as_ref().clone().into_active_model();
        active.totp_enabled = Set(true);
        active.totp_last_step = Set(Some(step));
        active.update(self.db()).await?;
        self.forget_user(user_id).await;
        self.log(self.db(), user_id, "totp_enabled", client, "").await;
        self.recovery_codes_if_none(user_id, client).await
    }

    /// Turns TOTP off (password required).
    pub async fn totp_disable(&self, user_id: i64, password: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let row = self.confirm_password(user_id, password, client).await?;
        let mut active = row.into_active_model();
        active.totp_enabled = Set(false);
        active.totp_secret = Set(None);
        active.totp_last_step = Set(None);
        active.update(self.db()).await?;
        self.after_factor_removed(user_id, "totp_disabled", client).await
    }

    /// Whether SMS codes can be turned on (a real SMS provider, or a loopback or test
    /// set-up; see [`super::sms::unavailable_because`]).
    pub fn sms_available(&self) -> bool {
        self.inner.sms_unavailable.is_none()
    }

    /// Starts SMS enrolment: sends a code to `phone`.
    pub async fn sms_start(&self, user_id: i64, phone: &str, client: &ClientInfo) -> Result<(), AuthError> {
        if let Some(why) = self.inner.sms_unavailable {
            return Err(AuthError::SmsUnavailable(why));
        }
        let phone = normalise_phone(phone).ok_or(AuthError::InvalidPhone)?;
        let mut row = self.user_row(user_id).await?.as_ref().clone();
        // The code goes to the new number; the verified one stays until the code is used.
        row.phone = Some(phone);
        self.send_sms_code(&row, "verify", client).await
    }

    /// Confirms the phone with the code sent to it; SMS becomes a second factor.
    pub async fn sms_confirm(&self, user_id: i64, code: &str, client: &ClientInfo) -> Result<Vec<String>, AuthError> {
        self.limit_ip("second_factor", client)?;
        let phone = self.use_sms_code(user_id, "verify", code).await?.ok_or(AuthError::InvalidCode)?;
        let row = self.user_row(user_id).await?;
        let mut active = row.as_ref().clone().into_active_model();
        active.phone = Set(Some(phone));
        active.phone_verified = Set(true);
        active.update(self.db()).await?;
        self.forget_user(user_id).await;
        self.log(self.db(), user_id, "sms_enabled", client, "").await;
        self.recovery_codes_if_none(user_id, client).await
    }

    /// Turns SMS codes off (password required).
    pub async fn sms_disable(&self, user_id: i64, password: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let row = self.confirm_password(user_id, password, client).await?;
        let mut active = row.into_active_model();
        active.phone = Set(None);
        active.phone_verified = Set(false);
        active.update(self.db()).await?;
        self.after_factor_removed(user_id, "sms_disabled", client).await
    }

    /// Replaces the recovery codes (password required); returns the new ones.
    pub async fn regenerate_recovery_codes(
        &self,
        user_id: i64,
        password: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, AuthError> {
        let row = self.confirm_password(user_id, password, client).await?;
        if !(row.totp_enabled || row.phone_verified) {
            return Err(AuthError::FactorState("turn on a second factor first"));
        }
        self.new_recovery_codes(user_id, client).await
    }

    /// Unused recovery codes left.
    pub async fn recovery_codes_left(&self, user_id: i64) -> Result<u64, AuthError> {
        Ok(recovery_code::Entity::find()
            .filter(recovery_code::Column::UserId.eq(user_id))
            .filter(recovery_code::Column::UsedAt.is_null())
            .count(self.db())
            .await?)
    }

    /// Checks the password of `user_id` (rate-limited per address, counted towards the
    /// account's lock-out); answers the account row.
    pub(super) async fn confirm_password(
        &self,
        user_id: i64,
        password: &str,
        client: &ClientInfo,
    ) -> Result<user::Model, AuthError> {
        let row = self.user_row(user_id).await?;
        self.admit("password", &row.username, client).await?;
        if !self.inner.hasher.verify(password.to_owned(), Some(row.password_hash.clone())).await? {
            self.count_failure(&row.username, Some(user_id), "password_check_failed", "", client).await;
            return Err(AuthError::InvalidCredentials);
        }
        Ok(row.as_ref().clone())
    }

    async fn after_factor_removed(&self, user_id: i64, kind: &str, client: &ClientInfo) -> Result<(), AuthError> {
        self.forget_user(user_id).await;
        let row = self.user_row(user_id).await?;
        if !(row.totp_enabled || row.phone_verified) {
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::UserId.eq(user_id))
                .exec(self.db())
                .await?;
        }
        self.log(self.db(), user_id, kind, client, "").await;
        Ok(())
    }

    async fn recovery_codes_if_none(&self, user_id: i64, client: &ClientInfo) -> Result<Vec<String>, AuthError> {
        if self.recovery_codes_left(user_id).await? > 0 {
            return Ok(vec![]);
        }
        self.new_recovery_codes(user_id, client).await
    }

    async fn new_recovery_codes(&self, user_id: i64, client: &ClientInfo) -> Result<Vec<String>, AuthError> {
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| {
                let c = random_code(10);
                format!("{}-{}", &c[..5], &c[5..])
            })
            .collect();
        let txn = self.db().begin().await?;
        recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(&txn).await?;
        for c in &codes {
            recovery_code::ActiveModel {
                id: NotSet,
                user_id: Set(user_id),
                code_hash: Set(self.inner.at_rest.recovery_hash(c)),
                used_at: Set(None),
            }
            .insert(&txn)
            .await?;
        }
        self.log(&txn, user_id, "recovery_codes_generated", client, "").await;
        txn.commit().await?;
        Ok(codes)
    }

    /// Checks a second-factor code of any kind; `(accepted, method)`.
    pub(super) async fn check_second_factor(
        &self,
        row: &user::Model,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(bool, &'static str), AuthError> {
        let code = code.trim();
        if is_six_digits(code) {
            if row.totp_enabled
                && let Some(stored) = &row.totp_secret
            {
                let totp = totp_for(&self.inner.at_rest.open_totp(row.id, stored)?, &row.address)?;
                if let Some(step) = totp_step(&totp, code, now()) {
                    // Accept each code once: only move the last step forward.
                    let res = user::Entity::update_many()
                        .col_expr(user::Column::TotpLastStep, step.into())
                        .filter(user::Column::Id.eq(row.id))
                        .filter(
                            sea_orm::Condition::any()
                                .add(user::Column::TotpLastStep.is_null())
                                .add(user::Column::TotpLastStep.lt(step)),
                        )
                        .exec(self.db())
                        .await?;
                    self.forget_user(row.id).await;
                    return Ok((res.rows_affected == 1, "totp"));
                }
            }
            if row.phone_verified && self.use_sms_code(row.id, "login", code).await?.is_some() {
                return Ok((true, "sms"));
            }
            return Ok((false, "code"));
        }
        let hash = self.inner.at_rest.recovery_hash(code);
        let res = recovery_code::Entity::update_many()
            .col_expr(recovery_code::Column::UsedAt, now().into())
            .filter(recovery_code::Column::UserId.eq(row.id))
            .filter(recovery_code::Column::CodeHash.eq(hash))
            .filter(recovery_code::Column::UsedAt.is_null())
            .exec(self.db())
            .await?;
        if res.rows_affected == 1 {
            self.log(self.db(), row.id, "recovery_code_used", client, "").await;
            return Ok((true, "recovery"));
        }
        Ok((false, "recovery"))
    }

    /// Sends a fresh code for `purpose` to `row.phone`, replacing earlier ones.
    pub(super) async fn send_sms_code(
        &self,
        row: &user::Model,
        purpose: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let phone = row.phone.clone().ok_or(AuthError::FactorState("no phone number"))?;
        let cfg = &self.inner.sms_cfg;
        let t = now();
        let last = sms_code::Entity::find()
            .filter(sms_code::Column::UserId.eq(row.id))
            .order_by_desc(sms_code::Column::Id)
            .one(self.db())
            .await?;
        if let Some(last) = last {
            let wait = last.created_at + cfg.resend_interval_seconds as i64 - t;
            if wait > 0 {
                return Err(AuthError::RateLimited(wait as u64));
            }
        }
        self.inner.per_hour.hit(&format!("sms:user:{}", row.id), SMS_PER_HOUR).map_err(AuthError::RateLimited)?;
        let code = random_digits();
        let txn = self.db().begin().await?;
        sms_code::Entity::update_many()
            .col_expr(sms_code::Column::Used, true.into())
            .filter(sms_code::Column::UserId.eq(row.id))
            .filter(sms_code::Column::Purpose.eq(purpose))
            .exec(&txn)
            .await?;
        sms_code::ActiveModel {
            id: NotSet,
            user_id: Set(row.id),
            purpose: Set(purpose.to_owned()),
            phone: Set(phone.clone()),
            code_hash: Set(fingerprint(&code)),
            created_at: Set(t),
            expires_at: Set(t + cfg.code_ttl_seconds as i64),
            attempts: Set(0),
            used: Set(false),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        let text =
            format!("{code} is your postcast code. It expires in {} minutes.", cfg.code_ttl_seconds.div_ceil(60));
        if let Err(e) = self.inner.sms.send(&phone, &text).await {
            tracing::warn!(error = %e, "SMS send failed");
            return Err(AuthError::SmsFailed);
        }
        self.log(self.db(), row.id, "sms_sent", client, purpose).await;
        Ok(())
    }

    /// Uses the current code for `purpose` if `code` matches; returns the phone it was
    /// sent to. Every try is counted before the comparison, in one conditional UPDATE,
    /// so parallel guesses cannot exceed `sms.max_attempts`; the last allowed wrong try
    /// burns the code, and a right one is used once.
    async fn use_sms_code(&self, user_id: i64, purpose: &str, code: &str) -> Result<Option<String>, AuthError> {
        let row = sms_code::Entity::find()
            .filter(sms_code::Column::UserId.eq(user_id))
            .filter(sms_code::Column::Purpose.eq(purpose))
            .filter(sms_code::Column::Used.eq(false))
            .order_by_desc(sms_code::Column::Id)
            .one(self.db())
            .await?;
        let Some(row) = row else { return Ok(None) };
        if now() >= row.expires_at {
            return Ok(None);
        }
        let max = self.inner.sms_cfg.max_attempts as i32;
        let live = || {
            sms_code::Entity::update_many()
                .filter(sms_code::Column::Id.eq(row.id))
                .filter(sms_code::Column::Used.eq(false))
        };
        let claimed = live()
            .col_expr(sms_code::Column::Attempts, Expr::col(sms_code::Column::Attempts).add(1))
            .filter(sms_code::Column::Attempts.lt(max))
            .exec(self.db())
            .await?;
        if claimed.rows_affected != 1 {
            return Ok(None);
        }
        let matches: bool = fingerprint(code.trim()).as_bytes().ct_eq(row.code_hash.as_bytes()).into();
        if matches {
            let used = live().col_expr(sms_code::Column::Used, true.into()).exec(self.db()).await?;
            return Ok((used.rows_affected == 1).then_some(row.phone));
        }
        // The last allowed try was wrong: the code is burnt.
        live()
            .col_expr(sms_code::Column::Used, true.into())
            .filter(sms_code::Column::Attempts.gte(max))
            .exec(self.db())
            .await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_accepts_adjacent_steps_only() {
        let secret = Secret::generate_secret().to_encoded().to_string();
        let totp = totp_for(&secret, "a@b").unwrap();
        let now = 1_800_000_000;
        let code = totp.generate(now as u64);
        assert_eq!(totp_step(&totp, &code, now), Some(now / STEP));
        assert_eq!(totp_step(&totp, &code, now + STEP), Some(now / STEP));
        assert_eq!(totp_step(&totp, &code, now + 3 * STEP), None);
        assert!(is_six_digits("012345"));
        assert!(!is_six_digits("01234a"));
    }
}
