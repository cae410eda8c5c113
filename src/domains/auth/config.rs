//! The auth domain's configuration: `[auth]` (passwords, sessions and abuse limits) and
//! `[sms]` (where second-factor codes are sent). Types and defaults only; the domain reads
//! them, the application's `Config` names them.

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[auth]`: passwords, sessions and abuse limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone may register through the web. Off: the first account (the
    /// administrator) and holders of an invitation only; `postcast user add` always works.
    pub open_registration: bool,
    /// Shortest accepted password.
    pub min_password_length: usize,
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// Argon2id parallelism (OWASP: 1).
    pub argon2_parallelism: u32,
    /// How long a session lives without use, in hours.
    pub session_idle_hours: u64,
    /// Login and second-factor attempts allowed per IP per minute.
    pub attempts_per_ip_per_minute: u32,
    /// Failed attempts on one account from one network (an IPv4 address, an IPv6 /64)
    /// within `failure_window_seconds` before that network must wait for the window to end
    /// to try that account again; the account stays open from everywhere else. 0: no limit.
    pub failures_per_account_network: u32,
    /// The window, in seconds, in which failed attempts are counted, per account and
    /// network and per network.
    pub failure_window_seconds: u64,
    /// Failed attempts from one network, over all accounts, within
    /// `failure_window_seconds` that get the network banned. 0: no bans.
    pub network_ban_failures: u32,
    /// How long a ban lasts, in seconds (`postcast bans lift` ends it sooner).
    pub network_ban_seconds: u64,
    /// Registrations allowed per IP per hour.
    pub registrations_per_ip_per_hour: u32,
}

/// `[sms]`: the SMS sender used for second-factor codes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `log` (code goes to the server log), `webhook` or `twilio`. With `log`, SMS is
    /// offered as a second factor only while the HTTP door listens on loopback with no
    /// trusted proxy in front, or with `allow_log_provider`.
    pub provider: String,
    /// Offer SMS as a second factor with the `log` provider even on a server reachable
    /// from elsewhere (test and demo set-ups: the codes are in the server's log).
    pub allow_log_provider: bool,
    /// `webhook`: URL that receives `POST {"to","text"}`.
    pub webhook_url: String,
    /// `webhook`: optional bearer token.
    pub webhook_token: String,
    /// `twilio`: account SID.
    pub twilio_account_sid: String,
    /// `twilio`: auth token.
    pub twilio_auth_token: String,
    /// `twilio`: sending number.
    pub twilio_from: String,
    /// `twilio`: API base URL.
    pub twilio_base_url: String,
    /// Seconds a code stays valid.
    pub code_ttl_seconds: u64,
    /// Wrong tries allowed per code.
    pub max_attempts: u32,
    /// Seconds between two sends to the same user.
    pub resend_interval_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            open_registration: false,
            min_password_length: 10,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            session_idle_hours: 24 * 30,
            attempts_per_ip_per_minute: 20,
            failures_per_account_network: 10,
            failure_window_seconds: 900,
            network_ban_failures: 50,
            network_ban_seconds: 3600,
            registrations_per_ip_per_hour: 10,
        }
    }
}

impl AuthConfig {
    /// Rejects passwords shorter than anything defensible and windows of zero seconds.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.min_password_length < 8 {
            return Err(ConfigError::Invalid("auth.min_password_length must be at least 8".into()));
        }
        if self.failure_window_seconds == 0 || self.network_ban_seconds == 0 {
            return Err(ConfigError::Invalid(
                "auth.failure_window_seconds and auth.network_ban_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            provider: "log".into(),
            allow_log_provider: false,
            webhook_url: String::new(),
            webhook_token: String::new(),
            twilio_account_sid: String::new(),
            twilio_auth_token: String::new(),
            twilio_from: String::new(),
            twilio_base_url: "https://api.twilio.com".into(),
            code_ttl_seconds: 300,
            max_attempts: 5,
            resend_interval_seconds: 30,
        }
    }
}

impl SmsConfig {
    /// Rejects an unknown provider, or a webhook without its URL.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !matches!(self.provider.as_str(), "log" | "webhook" | "twilio") {
            return Err(ConfigError::Invalid(format!(
                "sms.provider must be log, webhook or twilio, not {:?}",
                self.provider
            )));
        }
        if self.provider == "webhook" && self.webhook_url.is_empty() {
            return Err(ConfigError::Invalid("sms.webhook_url is required for the webhook provider".into()));
        }
        Ok(())
    }
}
