//! Accounts: registration (the first account is the administrator; after it, open
//! registration or an invitation), password login with a second factor (TOTP or SMS
//! codes, plus recovery codes; TOTP secrets and recovery codes sealed with keys from the
//! server's secret), server-side sessions with a password re-confirmation for sensitive
//! changes, app passwords for mail clients, rate limits, throttling of failed logins per
//! account and network and bans of networks, and a security log per user. It owns the
//! `users`, `sessions`, `recovery_codes`, `app_passwords`, `sms_codes`, `invitations`,
//! `security_log` and `network_bans` tables
//! and never speaks HTTP: the door maps [`AuthError`] to replies.

mod app_passwords;
mod at_rest;
pub mod config;
pub mod entities;
mod factors;
pub mod limits;
mod login;
pub mod password;
mod reauth;
mod registration;
pub mod sms;
mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use sea_orm::{ColumnTrait, ConnectionTrait};
use serde::Serialize;

use crate::config::Config;
use crate::events::Bus;
use crate::platform::cache::Cache;
use crate::platform::db::{Db, now};
use crate::platform::secrets::ServerSecret;
use config::{AuthConfig, SmsConfig};
use entities::{security_event, user};
use limits::Limiter;
use password::Hasher;
use sms::SmsSender;

pub use app_passwords::AppPasswordView;
pub use factors::TotpSetup;
pub use login::{LoginOutcome, SessionView};
pub use reauth::REAUTH_WINDOW;
pub use registration::{INVITATION_LIFE, Invitation, InvitationView};
pub use throttle::{NetworkBan, parse_network};

/// What the auth domain refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong name or password (deliberately not saying which).
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// Too many attempts from the client's address, too many failures on this account from
    /// its network, or its network is banned; wait this many seconds.
    #[error("too many attempts; try again in {0} s")]
    RateLimited(u64),
    /// The name is taken.
    #[error("that user name is taken")]
    UsernameTaken,
    /// The name breaks the rules.
    #[error("{0}")]
    InvalidUsername(String),
    /// The password breaks the rules.
    #[error("{0}")]
    WeakPassword(String),
    /// Registration is turned off and no invitation came with the request.
    #[error("registration is closed on this server; ask its administrator for an invitation")]
    RegistrationClosed,
    /// The invitation is unknown, used or expired.
    #[error("this invitation is not valid: it was used, it expired or it never existed")]
    InvalidInvitation,
    /// Only the administrator may do this.
    #[error("only the administrator may do this")]
    NotAdmin,
    /// A second-factor or verification code is wrong, used or expired.
    #[error("wrong or expired code")]
    InvalidCode,
    /// The pending login expired or was used up.
    #[error("the login expired; enter your password again")]
    PendingExpired,
    /// Asked for something of a factor that is not set up.
    #[error("{0}")]
    FactorState(&'static str),
    /// The phone number is not valid E.164.
    #[error("enter the phone number with its country code, e.g. +49 151 1234567")]
    InvalidPhone,
    /// The SMS provider failed.
    #[error("the SMS could not be sent; try again later")]
    SmsFailed,
    /// The account exists but is disabled (a session or a pending login; a password login
    /// to a disabled account is refused as [`AuthError::InvalidCredentials`]).
    #[error("this account is disabled")]
    Disabled,
    /// No such item for this user.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A name field is empty or too long.
    #[error("{0}")]
    InvalidInput(&'static str),
    /// A sensitive change needs the password confirmed within the last ten minutes.
    #[error("confirm your password to make this change")]
    ReauthRequired,
    /// SMS codes cannot be a second factor on this server (no real SMS provider).
    #[error("{0}")]
    SmsUnavailable(&'static str),
    /// Every password-hashing slot is busy (a login flood): try again shortly.
    #[error(transparent)]
    Busy(#[from] password::Busy),
    /// Storage failure.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(String),
}

/// Where a request comes from, for rate limits and the security log.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Peer address.
    pub ip: IpAddr,
    /// User agent, truncated.
    pub user_agent: String,
}

impl ClientInfo {
    /// A client for the command line.
    pub fn local(what: &str) -> Self {
        Self { ip: IpAddr::from([127, 0, 0, 1]), user_agent: what.into() }
    }
}

/// An account as other modules see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Mail address.
    pub address: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// TOTP is on.
    pub totp_enabled: bool,
    /// SMS codes are on.
    pub sms_enabled: bool,
    /// Masked phone number, if one is verified.
    pub phone: Option<String>,
    /// Whether this is the administrator.
    pub is_admin: bool,
}

impl User {
    /// Whether login needs a second factor.
    pub fn has_second_factor(&self) -> bool {
        self.totp_enabled || self.sms_enabled
    }
}

impl From<&user::Model> for User {
    fn from(m: &user::Model) -> Self {
        Self {
            id: m.id,
            username: m.username.clone(),
            address: m.address.clone(),
            created_at: m.created_at,
            disabled: m.disabled,
            totp_enabled: m.totp_enabled,
            sms_enabled: m.phone_verified,
            phone: m.phone.as_deref().filter(|_| m.phone_verified).map(sms::mask_phone),
            is_admin: m.is_admin,
        }
    }
}

/// A live session, as cached.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id.
    pub session_id: i64,
    /// Owner.
    pub user_id: i64,
    /// Owner's login name.
    pub username: String,
    /// Last `last_seen` written to the database (Unix seconds).
    last_seen: Arc<AtomicI64>,
}

/// A security log entry as the user reads it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    /// Unix seconds.
    pub at: i64,
    /// What happened, e.g. `login_failed`.
    pub kind: String,
    /// From where.
    pub ip: String,
    /// More detail.
    pub detail: String,
}

struct Inner {
    db: Db,
    bus: Bus,
    domain: String,
    cfg: AuthConfig,
    sms_cfg: SmsConfig,
    hasher: Hasher,
    sms: Arc<dyn SmsSender>,
    /// Keys that seal recovery codes and TOTP secrets.
    at_rest: at_rest::AtRest,
    /// Why SMS cannot be a second factor here, if it cannot.
    sms_unavailable: Option<&'static str>,
    /// Token fingerprint → session.
    sessions: Cache<String, SessionInfo>,
    /// User id → account row.
    users: Cache<i64, Arc<user::Model>>,
    /// Login name → user id (names never change; unknown names are not kept).
    names: Cache<String, i64>,
    /// Pending-login handle fingerprint → (user id, codes tried so far). Its life counts
    /// from the password step: a try keeps the entry's creation time.
    pending: moka::sync::Cache<String, (i64, u32)>,
    per_minute: Limiter,
    per_hour: Limiter,
    /// Failed attempts per (network, account), over `auth.failure_window_seconds`.
    failures: Limiter,
    /// Failed attempts per network over all accounts, over the same window.
    network_failures: Limiter,
}

/// How long a pending login (password given, second factor awaited) lives.
const PENDING_LOGIN_LIFE: Duration = Duration::from_secs(600);

/// Expiry of pending logins: [`PENDING_LOGIN_LIFE`] from the password step; counting a
/// try does not extend it.
struct PendingLife;

impl moka::Expiry<String, (i64, u32)> for PendingLife {
    fn expire_after_create(&self, _: &String, _: &(i64, u32), _: std::time::Instant) -> Option<Duration> {
        Some(PENDING_LOGIN_LIFE)
    }

    fn expire_after_update(
        &self,
        _: &String,
        _: &(i64, u32),
        _: std::time::Instant,
        left: Option<Duration>,
    ) -> Option<Duration> {
        left
    }
}

/// The auth service; cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

impl AuthService {
    /// Builds the service from the configuration; `secret` seals second-factor secrets.
    pub fn new(db: Db, bus: Bus, config: &Config, secret: &ServerSecret) -> Result<Self, AuthError> {
        let cfg = config.auth.clone();
        let hasher = Hasher::new(cfg.argon2_memory_kib, cfg.argon2_iterations, cfg.argon2_parallelism)
            .map_err(AuthError::Internal)?;
        Self::with_sms(db, bus, config, secret, hasher, sms::from_config(&config.sms))
    }

    /// Builds the service with a given hasher and SMS sender (tests, benchmarks).
    pub fn with_sms(
        db: Db,
        bus: Bus,
        config: &Config,
        secret: &ServerSecret,
        hasher: Hasher,
        sms: Arc<dyn SmsSender>,
    ) -> Result<Self, AuthError> {
        let cfg = config.auth.clone();
        let idle = Duration::from_secs(cfg.session_idle_hours.max(1) * 3600);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                bus,
                domain: config.server.domain.clone(),
                sms_cfg: config.sms.clone(),
                hasher,
                sms,
                at_rest: at_rest::AtRest::new(secret)?,
                sms_unavailable: sms::unavailable_because(&config.sms, &config.server),
                sessions: Cache::new("sessions", config.cache.sessions, idle.min(Duration::from_secs(3600))),
                users: Cache::new("users", config.cache.users, Duration::from_secs(3600)),
                names: Cache::new("user_names", config.cache.users, Duration::from_secs(3600)),
                pending: moka::sync::Cache::builder().max_capacity(100_000).expire_after(PendingLife).build(),
                per_minute: Limiter::new(Duration::from_secs(60)),
                per_hour: Limiter::new(Duration::from_secs(3600)),
                failures: Limiter::new(Duration::from_secs(cfg.failure_window_seconds.max(1))),
                network_failures: Limiter::new(Duration::from_secs(cfg.failure_window_seconds.max(1))),
                cfg,
            }),
        })
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The account row, from the cache or the database.
    async fn user_row(&self, user_id: i64) -> Result<Arc<user::Model>, AuthError> {
        if let Some(u) = self.inner.users.get(&user_id).await {
            return Ok(u);
        }
        let row = user::Entity::find_by_id(user_id).one(self.db()).await?.ok_or(AuthError::NotFound("user"))?;
        let row = Arc::new(row);
        self.inner.users.insert(user_id, row.clone()).await;
        Ok(row)
    }

    async fn forget_user(&self, user_id: i64) {
        self.inner.users.invalidate(&user_id).await;
    }

    /// The account behind `user_id`.
    pub async fn me(&self, user_id: i64) -> Result<User, AuthError> {
        Ok(User::from(self.user_row(user_id).await?.as_ref()))
    }

    /// Looks a user up by login name or full address (public cards, mail delivery).
    pub async fn find_by_username(&self, name: &str) -> Result<Option<User>, AuthError> {
        let name = name.trim().to_ascii_lowercase();
        let local = match name.split_once('@') {
            Some((l, d)) if d == self.inner.domain => l.to_owned(),
            Some(_) => return Ok(None),
            None => name,
        };
        if let Some(id) = self.inner.names.get(&local).await {
            match self.user_row(id).await {
                Ok(row) => return Ok(Some(User::from(row.as_ref()))),
                // The account is gone: the name may belong to a newer one.
                Err(AuthError::NotFound(_)) => self.inner.names.invalidate(&local).await,
                Err(e) => return Err(e),
            }
        }
        let Some(row) = user::Entity::find().filter(user::Column::Username.eq(&local)).one(self.db()).await? else {
            return Ok(None);
        };
        let user = User::from(&row);
        self.inner.names.insert(local, row.id).await;
        self.inner.users.insert(row.id, Arc::new(row)).await;
        Ok(Some(user))
    }

    /// Appends to a user's security log.
    async fn log<C: ConnectionTrait>(&self, conn: &C, user_id: i64, kind: &str, client: &ClientInfo, detail: &str) {
        let row = security_event::ActiveModel {
            id: NotSet,
            user_id: Set(user_id),
            at: Set(now()),
            kind: Set(kind.to_owned()),
            ip: Set(client.ip.to_string()),
            detail: Set(detail.chars().take(200).collect()),
        };
        if let Err(e) = row.insert(conn).await {
            tracing::warn!(error = %e, kind, "security log write failed");
        }
    }

    /// The newest `limit` security events of a user.
    pub async fn security_log(&self, user_id: i64, limit: u64) -> Result<Vec<SecurityEvent>, AuthError> {
        let rows = security_event::Entity::find()
            .filter(security_event::Column::UserId.eq(user_id))
            .order_by_desc(security_event::Column::Id)
            .limit(limit.min(500))
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|r| SecurityEvent { at: r.at, kind: r.kind, ip: r.ip, detail: r.detail }).collect())
    }

    /// Counts an attempt from the client's address (its /64 for IPv6) against the
    /// per-minute limit.
    fn limit_ip(&self, what: &str, client: &ClientInfo) -> Result<(), AuthError> {
        self.inner
            .per_minute
            .hit(&format!("{what}:ip:{}", limits::rate_key(client.ip)), self.inner.cfg.attempts_per_ip_per_minute)
            .map_err(AuthError::RateLimited)
    }
}

#[cfg(test)]
mod tests;
