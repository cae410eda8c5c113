//! Who may make an account, and making it. The first account of the server is its
//! administrator; after it, registration through the web needs `open_registration` or an
//! invitation from the administrator (single use, stored as a fingerprint like app
//! passwords, refused after [`INVITATION_LIFE`]); `postcast user add` may always add one.
//!
//! Invariant: **using an invitation, and becoming the first account, is one conditional
//! UPDATE (`used_at IS NULL`) in the new account's transaction**, so of parallel
//! registrations exactly one gets each; the others roll back and make no account.

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::Serialize;

use super::entities::{invitation, user};
use super::password::{check_password, fingerprint, normalise_username, random_token};
use super::{AuthError, AuthService, ClientInfo, User};
use crate::events::{Bus, Event};
use crate::platform::db::now;

/// How long an invitation can be used, in seconds (7 days).
pub const INVITATION_LIFE: i64 = 7 * 24 * 3600;

/// The token hash of the row that stands for the first account (written by the migration
/// that made `invitations`; no fingerprint of a token equals it).
const FIRST_ACCOUNT: &str = "first-account";

/// A new invitation; its token is shown here and never again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    /// The secret to hand over, as `/register?invitation=TOKEN`.
    pub token: String,
    /// Unix seconds from which it is refused.
    pub expires_at: i64,
}

/// An invitation as the administrator sees it (never its token).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// Its id, to revoke it.
    pub id: i64,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// Unix seconds from which it is refused.
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
    /// The account made with it, if any.
    pub used_by: Option<i64>,
}

/// What lets a new account in when it is not the first one.
#[derive(Debug, Clone, Copy)]
enum Admission<'a> {
    /// Anybody: open registration or the command line.
    Anyone,
    /// Whoever brings this invitation token.
    Invitation(&'a str),
    /// Nobody: only the first account gets in.
    FirstOnly,
}

impl AuthService {
    /// Creates an account through the web: rate-limited per IP; the first account of the
    /// server gets in and is the administrator, later ones need `open_registration` or
    /// a valid `invitation`, which this uses up.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        invitation: Option<&str>,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        self.inner
            .per_hour
            .hit(
                &format!("register:ip:{}", super::limits::rate_key(client.ip)),
                self.inner.cfg.registrations_per_ip_per_hour,
            )
            .map_err(AuthError::RateLimited)?;
        let admission = match invitation.map(str::trim).filter(|t| !t.is_empty()) {
            _ if self.inner.cfg.open_registration => Admission::Anyone,
            Some(token) => Admission::Invitation(token),
            None => Admission::FirstOnly,
        };
        self.precheck(admission).await?;
        self.create_account(username, password, admission, client).await
    }

    /// Creates an account from the command line (`postcast user add`): always allowed; the
    /// first account of the server is the administrator.
    pub async fn create_user(&self, username: &str, password: &str, client: &ClientInfo) -> Result<User, AuthError> {
        self.create_account(username, password, Admission::Anyone, client).await
    }

    /// The administrator while the account is enabled (where `postmaster@` and `abuse@`
    /// mail goes), or `None`.
    pub async fn administrator(&self) -> Result<Option<User>, AuthError> {
        let row = user::Entity::find()
            .filter(user::Column::IsAdmin.eq(true))
            .filter(user::Column::Disabled.eq(false))
            .order_by_asc(user::Column::Id)
            .one(self.db())
            .await?;
        Ok(row.as_ref().map(User::from))
    }

    /// Makes an invitation as the user `admin_id`, who must be the administrator.
    pub async fn create_invitation(&self, admin_id: i64, client: &ClientInfo) -> Result<Invitation, AuthError> {
        self.check_admin(admin_id).await?;
        let made = self.insert_invitation(Some(admin_id)).await?;
        self.log(self.db(), admin_id, "invitation_created", client, "").await;
        Ok(made)
    }

    /// The invitations made so far, newest first, for the administrator `admin_id`.
    pub async fn invitations(&self, admin_id: i64) -> Result<Vec<InvitationView>, AuthError> {
        self.check_admin(admin_id).await?;
        let rows = invitation::Entity::find()
            .filter(invitation::Column::TokenHash.ne(FIRST_ACCOUNT))
            .order_by_desc(invitation::Column::Id)
            .limit(1000)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| InvitationView {
                id: r.id,
                created_at: r.created_at,
                expires_at: r.expires_at,
                used_at: r.used_at,
                used_by: r.used_by,
            })
            .collect())
    }

    /// Withdraws an unused invitation, as the administrator `admin_id`: it can no longer
    /// be used. A used, or unknown, invitation is "not found".
    pub async fn revoke_invitation(&self, admin_id: i64, id: i64, client: &ClientInfo) -> Result<(), AuthError> {
        self.check_admin(admin_id).await?;
        let gone = invitation::Entity::delete_many()
            .filter(invitation::Column::Id.eq(id))
            .filter(invitation::Column::TokenHash.ne(FIRST_ACCOUNT))
            .filter(invitation::Column::UsedAt.is_null())
            .exec(self.db())
            .await?;
        if gone.rows_affected == 0 {
            return Err(AuthError::NotFound("invitation"));
        }
        self.log(self.db(), admin_id, "invitation_revoked", client, &format!("invitation {id}")).await;
        Ok(())
    }

    /// Refuses anyone but the enabled administrator.
    async fn check_admin(&self, user_id: i64) -> Result<(), AuthError> {
        let row = self.user_row(user_id).await?;
        if !row.is_admin || row.disabled {
            return Err(AuthError::NotAdmin);
        }
        Ok(())
    }

    /// Makes an invitation on the command line (`postcast user invite`).
    pub async fn create_invitation_locally(&self) -> Result<Invitation, AuthError> {
        self.insert_invitation(None).await
    }

    async fn insert_invitation(&self, created_by: Option<i64>) -> Result<Invitation, AuthError> {
        let token = random_token();
        let t = now();
        let expires_at = t + INVITATION_LIFE;
        invitation::ActiveModel {
            id: NotSet,
            token_hash: Set(fingerprint(&token)),
            created_by: Set(created_by),
            created_at: Set(t),
            expires_at: Set(expires_at),
            used_at: Set(None),
            used_by: Set(None),
        }
        .insert(self.db())
        .await?;
        Ok(Invitation { token, expires_at })
    }

    /// Refuses, before the slow password hash, what the account's transaction would
    /// refuse anyway. Only a hint: the transaction decides.
    async fn precheck(&self, admission: Admission<'_>) -> Result<(), AuthError> {
        let usable = |hash: String| {
            invitation::Entity::find()
                .filter(invitation::Column::TokenHash.eq(hash))
                .filter(invitation::Column::UsedAt.is_null())
                .filter(invitation::Column::ExpiresAt.gt(now()))
                .one(self.db())
        };
        if matches!(admission, Admission::Anyone) || usable(FIRST_ACCOUNT.to_owned()).await?.is_some() {
            return Ok(());
        }
        match admission {
            Admission::Invitation(token) if usable(fingerprint(token)).await?.is_some() => Ok(()),
            Admission::Invitation(_) => Err(AuthError::InvalidInvitation),
            Admission::FirstOnly | Admission::Anyone => Err(AuthError::RegistrationClosed),
        }
    }

    /// Uses up the unused, unexpired invitation row `token_hash` for the account `user_id`:
    /// one conditional UPDATE, so of parallel claims exactly one wins. Whether this did.
    async fn claim_invitation<C: ConnectionTrait>(
        &self,
        conn: &C,
        token_hash: &str,
        user_id: i64,
    ) -> Result<bool, AuthError> {
        let t = now();
        let res = invitation::Entity::update_many()
            .col_expr(invitation::Column::UsedAt, t.into())
            .col_expr(invitation::Column::UsedBy, user_id.into())
            .filter(invitation::Column::TokenHash.eq(token_hash))
            .filter(invitation::Column::UsedAt.is_null())
            .filter(invitation::Column::ExpiresAt.gt(t))
            .exec(conn)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Checks name and password, then in one transaction stores the account and uses up
    /// the first-account row or, failing that, what `admission` asks for.
    async fn create_account(
        &self,
        username: &str,
        password: &str,
        admission: Admission<'_>,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        let name = normalise_username(username).map_err(AuthError::InvalidUsername)?;
        check_password(password, &name, self.inner.cfg.min_password_length).map_err(AuthError::WeakPassword)?;
        if user::Entity::find().filter(user::Column::Username.eq(&name)).one(self.db()).await?.is_some() {
            return Err(AuthError::UsernameTaken);
        }
        let hash = self.inner.hasher.hash(password.to_owned()).await?.map_err(AuthError::Internal)?;
        let txn = self.db().begin().await?;
        let row = user::ActiveModel {
            id: NotSet,
            username: Set(name.clone()),
            address: Set(format!("{name}@{}", self.inner.domain)),
            password_hash: Set(hash),
            disabled: Set(false),
            totp_secret: Set(None),
            totp_enabled: Set(false),
            totp_last_step: Set(None),
            phone: Set(None),
            phone_verified: Set(false),
            created_at: Set(now()),
            is_admin: Set(false),
        };
        let mut row = match row.insert(&txn).await {
            Ok(r) => r,
            // Lost a race with another registration of the same name.
            Err(e) if e.to_string().to_ascii_lowercase().contains("unique") => return Err(AuthError::UsernameTaken),
            Err(e) => return Err(e.into()),
        };
        // Dropping `txn` on an error below rolls the account back.
        let how = if self.claim_invitation(&txn, FIRST_ACCOUNT, row.id).await? {
            user::Entity::update_many()
                .col_expr(user::Column::IsAdmin, true.into())
                .filter(user::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
            row.is_admin = true;
            "first account: administrator"
        } else {
            match admission {
                Admission::Anyone => "",
                Admission::Invitation(token) if self.claim_invitation(&txn, &fingerprint(token), row.id).await? => {
                    "with an invitation"
                }
                Admission::Invitation(_) => return Err(AuthError::InvalidInvitation),
                Admission::FirstOnly => return Err(AuthError::RegistrationClosed),
            }
        };
        self.log(&txn, row.id, "register", client, how).await;
        Bus::publish(&txn, &Event::UserRegistered { user_id: row.id, username: name }).await?;
        txn.commit().await?;
        self.inner.bus.wake();
        Ok(User::from(&row))
    }
}
