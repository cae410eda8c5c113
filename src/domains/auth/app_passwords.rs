//! App passwords: random secrets for IMAP and SMTP clients, shown once and stored as
//! fingerprints, and the password check those doors use (app passwords always; the
//! account password only while no second factor is on).

use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::Serialize;

use super::entities::{app_password, user};
use super::password::{fingerprint, normalise_code, random_code};
use super::{AuthError, AuthService, ClientInfo, User};
use crate::platform::db::now;

/// An app password as listed (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppPasswordView {
    /// Id for revoking.
    pub id: i64,
    /// The user's label.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last use by a client.
    pub last_used: Option<i64>,
}

impl From<app_password::Model> for AppPasswordView {
    fn from(m: app_password::Model) -> Self {
        Self { id: m.id, name: m.name, created_at: m.created_at, last_used: m.last_used }
    }
}

/// Characters in an app password, shown in groups of four.
const APP_PASSWORD_LEN: usize = 16;

impl AuthService {
    /// Creates an app password; the secret is returned here and never again.
    pub async fn create_app_password(
        &self,
        user_id: i64,
        name: &str,
        client: &ClientInfo,
    ) -> Result<(AppPasswordView, String), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(AuthError::InvalidInput("an app password needs a name of 1 to 64 characters"));
        }
        let raw = random_code(APP_PASSWORD_LEN);
        let shown =
            raw.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-");
        let row = app_password::ActiveModel {
            id: NotSet,
            user_id: Set(user_id),
            name: Set(name.to_owned()),
            secret_hash: Set(fingerprint(&raw)),
            created_at: Set(now()),
            last_used: Set(None),
        }
        .insert(self.db())
        .await?;
        self.log(self.db(), user_id, "app_password_created", client, name).await;
        Ok((row.into(), shown))
    }

    /// The user's app passwords.
    pub async fn app_passwords(&self, user_id: i64) -> Result<Vec<AppPasswordView>, AuthError> {
        let rows = app_password::Entity::find()
            .filter(app_password::Column::UserId.eq(user_id))
            .order_by_desc(app_password::Column::Id)
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes one of the user's app passwords.
    pub async fn revoke_app_password(&self, user_id: i64, id: i64, client: &ClientInfo) -> Result<(), AuthError> {
        let res = app_password::Entity::delete_many()
            .filter(app_password::Column::Id.eq(id))
            .filter(app_password::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(AuthError::NotFound("app password"));
        }
        self.log(self.db(), user_id, "app_password_revoked", client, &format!("id {id}")).await;
        Ok(())
    }

    /// The check IMAP and SMTP AUTH use: an app password of the user, or the account
    /// password while the account has no second factor. Rate-limited and throttled like
    /// web logins. Every refusal costs the same (the app-password lookup for every name,
    /// then exactly one Argon2 verify, against a dummy hash for an unknown name) and is the
    /// same `InvalidCredentials`: unknown name, disabled account, account password of an
    /// account with a second factor, wrong password.
    pub async fn verify_client_password(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        let local = self.local_name(username);
        self.admit("client", &local, client).await?;
        let row = user::Entity::find().filter(user::Column::Username.eq(&local)).one(self.db()).await?;
        let code = normalise_code(password);
        if code.len() == APP_PASSWORD_LEN {
            // Account ids start at 1: an unknown name looks for owner 0 and finds nothing.
            let owner = row.as_ref().map_or(0, |r| r.id);
            let hit = app_password::Entity::find()
                .filter(app_password::Column::UserId.eq(owner))
                .filter(app_password::Column::SecretHash.eq(fingerprint(&code)))
                .one(self.db())
                .await?;
            if let (Some(hit), Some(row)) = (hit, &row)
                && !row.disabled
            {
                app_password::Entity::update_many()
                    .col_expr(app_password::Column::LastUsed, now().into())
                    .filter(app_password::Column::Id.eq(hit.id))
                    .exec(self.db())
                    .await?;
                self.clear_failures(&local, client);
                return Ok(User::from(row));
            }
        }
        let stored = row.as_ref().map(|r| r.password_hash.clone());
        let verified = self.inner.hasher.verify(password.to_owned(), stored).await?;
        let detail = match &row {
            Some(r) if r.disabled => "account disabled",
            Some(r) if r.totp_enabled || r.phone_verified => "a second factor is on: mail clients need an app password",
            _ => "",
        };
        match row {
            Some(row) if verified && detail.is_empty() => {
                self.clear_failures(&local, client);
                Ok(User::from(&row))
            }
            row => {
                self.count_failure(&local, row.map(|r| r.id), "client_login_failed", detail, client).await;
                Err(AuthError::InvalidCredentials)
            }
        }
    }
}
