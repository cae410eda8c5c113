//! Re-authentication for sensitive changes: enrolling TOTP, changing the SMS phone,
//! creating app passwords and adding a mail-forwarding filter need a session whose user
//! confirmed the password within the last [`REAUTH_WINDOW`]; removing a factor and changing
//! the password ask for it in the request itself. Logging in does not count: a session
//! taken over right after a login must not be enough to add a way in. The time is kept on
//! the session's row, so it holds across restarts and servers.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entities::session;
use super::{AuthError, AuthService, ClientInfo};
use crate::platform::db::now;

/// How long a password confirmation unlocks sensitive changes.
pub const REAUTH_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a confirmation valid until `until` still counts at `now` (Unix seconds).
fn still_valid(until: Option<i64>, now: i64) -> bool {
    until.is_some_and(|u| now < u)
}

impl AuthService {
    /// Checks the password of the session's user and lets the session make sensitive
    /// changes for [`REAUTH_WINDOW`]; answers until when (Unix seconds). Rate-limited and
    /// locked out like every password check.
    pub async fn reauthenticate(
        &self,
        user_id: i64,
        session_id: i64,
        password: &str,
        client: &ClientInfo,
    ) -> Result<i64, AuthError> {
        self.confirm_password(user_id, password, client).await?;
        let until = now() + REAUTH_WINDOW.as_secs() as i64;
        let res = session::Entity::update_many()
            .col_expr(session::Column::ReauthUntil, until.into())
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(AuthError::NotFound("session"));
        }
        self.log(self.db(), user_id, "reauthenticated", client, "").await;
        Ok(until)
    }

    /// Refuses with [`AuthError::ReauthRequired`] unless the session's user confirmed the
    /// password within [`REAUTH_WINDOW`].
    pub async fn require_recent_auth(&self, user_id: i64, session_id: i64) -> Result<(), AuthError> {
        let row =
            session::Entity::find_by_id(session_id).filter(session::Column::UserId.eq(user_id)).one(self.db()).await?;
        match row {
            Some(s) if still_valid(s.reauth_until, now()) => Ok(()),
            _ => Err(AuthError::ReauthRequired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_counts_for_ten_minutes_only() {
        let t = 1_800_000_000;
        let until = Some(t + REAUTH_WINDOW.as_secs() as i64);
        assert_eq!(REAUTH_WINDOW.as_secs(), 600);
        assert!(still_valid(until, t));
        assert!(still_valid(until, t + 599));
        assert!(!still_valid(until, t + 600), "ten minutes later it is required again");
        assert!(!still_valid(None, t), "never confirmed");
    }
}
