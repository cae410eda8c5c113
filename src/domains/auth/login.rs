//! Password login and its second step, sessions (create, resolve from the cache, list,
//! revoke, log out), password changes, and the account operations of the command line.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde::Serialize;

use super::entities::{app_password, session, user};
use super::password::{check_password, fingerprint, random_token};
use super::{AuthError, AuthService, ClientInfo, SessionInfo, User};
use crate::events::{Bus, Event};
use crate::platform::db::now;

/// What a correct password leads to.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// Logged in: the session token.
    Session {
        /// The secret to send back as cookie or bearer token.
        token: String,
        /// The account.
        user: User,
    },
    /// A second factor is needed.
    SecondFactor {
        /// Handle for the second step.
        pending: String,
        /// `totp`, `sms` and `recovery`, as available.
        methods: Vec<&'static str>,
    },
}

/// A session as listed to its owner.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Session id.
    pub id: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// Where it was opened.
    pub ip: String,
    /// With what.
    pub user_agent: String,
    /// Whether it is the session asking.
    pub current: bool,
}

impl AuthService {
    /// Checks name and password; then either opens a session or asks for a second factor.
    pub async fn login(&self, username: &str, password: &str, client: &ClientInfo) -> Result<LoginOutcome, AuthError> {
        let row = self.check_password_login(username, password, client).await?;
        let u = User::from(&row);
        if !u.has_second_factor() {
            let token = self.open_session(&row, client, "password").await?;
            return Ok(LoginOutcome::Session { token, user: u });
        }
        let pending = random_token();
        self.inner.pending.insert(fingerprint(&pending), (row.id, 0));
        let mut methods = vec![];
        if u.totp_enabled {
            methods.push("totp");
        }
        if u.sms_enabled {
            methods.push("sms");
            if !u.totp_enabled {
                // SMS is the only factor: send the code right away, as users expect.
                self.send_sms_code(&row, "login", client).await?;
            }
        }
        methods.push("recovery");
        Ok(LoginOutcome::SecondFactor { pending, methods })
    }

    /// The web login's name and password check. Exactly one Argon2 verify whatever the
    /// account (against a dummy hash when there is none), and one answer for an unknown
    /// name, a disabled account and a wrong password, so neither the reply nor its timing
    /// tells them apart.
    async fn check_password_login(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<user::Model, AuthError> {
        let local = self.local_name(username);
        self.admit("login", &local, client).await?;
        let row = user::Entity::find().filter(user::Column::Username.eq(&local)).one(self.db()).await?;
        let stored = row.as_ref().map(|r| r.password_hash.clone());
        let verified = self.inner.hasher.verify(password.to_owned(), stored).await?;
        match row {
            Some(row) if verified && !row.disabled => Ok(row),
            row => {
                let detail = if row.as_ref().is_some_and(|r| r.disabled) { "account disabled" } else { "" };
                self.count_failure(&local, row.map(|r| r.id), "login_failed", detail, client).await;
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Finishes a login with a TOTP, SMS or recovery code.
    pub async fn login_second_factor(
        &self,
        pending: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(String, User), AuthError> {
        let key = fingerprint(pending);
        let (user_id, _) = self.inner.pending.get(&key).ok_or(AuthError::PendingExpired)?;
        let row = self.user_row(user_id).await?;
        self.admit("second_factor", &row.username, client).await?;
        let user_id = self.claim_pending_try(&key).ok_or(AuthError::PendingExpired)?;
        if row.disabled {
            return Err(AuthError::Disabled);
        }
        let (ok, method) = self.check_second_factor(&row, code, client).await?;
        if !ok {
            self.count_failure(&row.username, Some(user_id), "second_factor_failed", "", client).await;
            return Err(AuthError::InvalidCode);
        }
        self.inner.pending.invalidate(&key);
        let row = self.user_row(user_id).await?;
        let token = self.open_session(&row, client, method).await?;
        Ok((token, User::from(row.as_ref())))
    }

    /// Takes one try of the pending login with handle fingerprint `key`: the user it is
    /// for, or `None` once it expired or used up its tries. Check and count are one step
    /// (moka runs the calls on one key one after another), so parallel guesses cannot
    /// exceed the limit.
    fn claim_pending_try(&self, key: &str) -> Option<i64> {
        let max = self.inner.sms_cfg.max_attempts;
        let mut claimed = None;
        self.inner.pending.entry(key.to_owned()).and_compute_with(|entry| match entry.map(|e| e.into_value()) {
            Some((user_id, tries)) if tries < max => {
                claimed = Some(user_id);
                moka::ops::compute::Op::Put((user_id, tries + 1))
            }
            Some(_) => moka::ops::compute::Op::Remove,
            None => moka::ops::compute::Op::Nop,
        });
        claimed
    }

    /// Sends (or re-sends, throttled) the SMS code of a pending login.
    pub async fn send_login_sms(&self, pending: &str, client: &ClientInfo) -> Result<(), AuthError> {
        self.limit_ip("sms_send", client)?;
        let (user_id, _) = self.inner.pending.get(&fingerprint(pending)).ok_or(AuthError::PendingExpired)?;
        let row = self.user_row(user_id).await?;
        if !row.phone_verified {
            return Err(AuthError::FactorState("SMS codes are not set up for this account"));
        }
        self.send_sms_code(&row, "login", client).await
    }

    async fn open_session(&self, row: &user::Model, client: &ClientInfo, method: &str) -> Result<String, AuthError> {
        let token = random_token();
        let t = now();
        let txn = self.db().begin().await?;
        session::ActiveModel {
            id: NotSet,
            user_id: Set(row.id),
            token_hash: Set(fingerprint(&token)),
            created_at: Set(t),
            last_seen: Set(t),
            ip: Set(client.ip.to_string()),
            user_agent: Set(client.user_agent.clone()),
            reauth_until: Set(None),
        }
        .insert(&txn)
        .await?;
        self.log(&txn, row.id, "login", client, method).await;
        txn.commit().await?;
        self.clear_failures(&row.username, client);
        Ok(token)
    }

    /// Resolves a session token; cached, so the common case touches no database.
    pub async fn authenticate(&self, token: &str) -> Result<SessionInfo, AuthError> {
        let key = fingerprint(token);
        let t = now();
        let idle = (self.inner.cfg.session_idle_hours * 3600) as i64;
        if let Some(s) = self.inner.sessions.get(&key).await {
            let seen = s.last_seen.load(Ordering::Relaxed);
            if t - seen < 60 {
                return Ok(s);
            }
            if t - seen > idle {
                self.inner.sessions.invalidate(&key).await;
                return Err(AuthError::InvalidCredentials);
            }
            s.last_seen.store(t, Ordering::Relaxed);
            session::Entity::update_many()
                .col_expr(session::Column::LastSeen, t.into())
                .filter(session::Column::Id.eq(s.session_id))
                .exec(self.db())
                .await?;
            return Ok(s);
        }
        let row = session::Entity::find()
            .filter(session::Column::TokenHash.eq(&key))
            .one(self.db())
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        if t - row.last_seen > idle {
            session::Entity::delete_by_id(row.id).exec(self.db()).await?;
            return Err(AuthError::InvalidCredentials);
        }
        let u = self.user_row(row.user_id).await?;
        if u.disabled {
            return Err(AuthError::Disabled);
        }
        let info = SessionInfo {
            session_id: row.id,
            user_id: row.user_id,
            username: u.username.clone(),
            last_seen: Arc::new(AtomicI64::new(row.last_seen)),
        };
        self.inner.sessions.insert(key, info.clone()).await;
        Ok(info)
    }

    /// Ends the session of `token`.
    pub async fn logout(&self, token: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let key = fingerprint(token);
        self.inner.sessions.invalidate(&key).await;
        if let Some(row) = session::Entity::find().filter(session::Column::TokenHash.eq(&key)).one(self.db()).await? {
            session::Entity::delete_by_id(row.id).exec(self.db()).await?;
            self.log(self.db(), row.user_id, "logout", client, "").await;
        }
        Ok(())
    }

    /// The user's sessions, newest first.
    pub async fn sessions(&self, user_id: i64, current: i64) -> Result<Vec<SessionView>, AuthError> {
        let rows = session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .order_by_desc(session::Column::LastSeen)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionView {
                id: r.id,
                created_at: r.created_at,
                last_seen: r.last_seen,
                ip: r.ip,
                user_agent: r.user_agent,
                current: r.id == current,
            })
            .collect())
    }

    /// Ends one of the user's sessions (another user's id is "not found").
    pub async fn revoke_session(&self, user_id: i64, session_id: i64, client: &ClientInfo) -> Result<(), AuthError> {
        let res = session::Entity::delete_many()
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(AuthError::NotFound("session"));
        }
        self.inner.sessions.invalidate_if(move |_, s| s.session_id == session_id);
        self.log(self.db(), user_id, "session_revoked", client, &format!("session {session_id}")).await;
        Ok(())
    }

    /// Deletes a user's sessions except `keep`, in the database and the cache.
    async fn end_sessions(&self, user_id: i64, keep: Option<i64>) -> Result<(), AuthError> {
        let mut q = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
        if let Some(k) = keep {
            q = q.filter(session::Column::Id.ne(k));
        }
        q.exec(self.db()).await?;
        self.inner.sessions.invalidate_if(move |_, s| s.user_id == user_id && Some(s.session_id) != keep);
        Ok(())
    }

    /// Changes the password after checking the current one; ends every other session and,
    /// with `revoke_app_passwords`, every app password (answers how many).
    pub async fn change_password(
        &self,
        user_id: i64,
        session_id: i64,
        current: &str,
        new: &str,
        revoke_app_passwords: bool,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let row = self.user_row(user_id).await?;
        self.admit("password", &row.username, client).await?;
        if !self.inner.hasher.verify(current.to_owned(), Some(row.password_hash.clone())).await? {
            self.count_failure(&row.username, Some(user_id), "password_change_failed", "", client).await;
            return Err(AuthError::InvalidCredentials);
        }
        check_password(new, &row.username, self.inner.cfg.min_password_length).map_err(AuthError::WeakPassword)?;
        let hash = self.inner.hasher.hash(new.to_owned()).await?.map_err(AuthError::Internal)?;
        let mut active = row.as_ref().clone().into_active_model();
        active.password_hash = Set(hash);
        let txn = self.db().begin().await?;
        active.update(&txn).await?;
        let revoked = if revoke_app_passwords {
            app_password::Entity::delete_many()
                .filter(app_password::Column::UserId.eq(user_id))
                .exec(&txn)
                .await?
                .rows_affected
        } else {
            0
        };
        txn.commit().await?;
        self.forget_user(user_id).await;
        self.end_sessions(user_id, Some(session_id)).await?;
        let detail = if revoke_app_passwords {
            format!("other sessions ended, {revoked} app passwords revoked")
        } else {
            "other sessions ended, app passwords kept".to_owned()
        };
        self.log(self.db(), user_id, "password_changed", client, &detail).await;
        Ok(revoked)
    }

    /// Every account, for `postcast user list`.
    pub async fn list_users(&self) -> Result<Vec<User>, AuthError> {
        let rows = user::Entity::find().order_by_asc(user::Column::Username).all(self.db()).await?;
        Ok(rows.iter().map(User::from).collect())
    }

    /// Disables an account: no logins, every session ended, `UserDisabled` published.
    pub async fn disable_user(&self, username: &str) -> Result<User, AuthError> {
        let u = self.find_by_username(username).await?.ok_or(AuthError::NotFound("user"))?;
        let txn = self.db().begin().await?;
        user::Entity::update_many()
            .col_expr(user::Column::Disabled, true.into())
            .filter(user::Column::Id.eq(u.id))
            .exec(&txn)
            .await?;
        session::Entity::delete_many().filter(session::Column::UserId.eq(u.id)).exec(&txn).await?;
        self.log(&txn, u.id, "disabled", &ClientInfo::local("cli"), "").await;
        Bus::publish(&txn, &Event::UserDisabled { user_id: u.id }).await?;
        txn.commit().await?;
        self.inner.bus.wake();
        self.forget_user(u.id).await;
        let id = u.id;
        self.inner.sessions.invalidate_if(move |_, s| s.user_id == id);
        Ok(User { disabled: true, ..u })
    }
}
