//! The application's configuration: the `config.toml` schema as one struct naming every
//! section, each section's type living beside its owner (the platform's generic sections
//! in `platform::config`, the domains' and doors' in their own `config.rs`). It loads and
//! checks the whole file through the platform's loader; it holds no business rule and
//! reads no environment (the command line applies flags and `POSTCAST_*` variables).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domains::auth::config::{AuthConfig, SmsConfig};
use crate::domains::mail::config::{DnsConfig, InboundConfig, SendingConfig};
use crate::domains::mail::outbound::config::{DkimConfig, OutboundConfig};
use crate::domains::prefs::config::PrefsConfig;
use crate::domains::profile::config::ProfileConfig;
use crate::domains::stream::config::StreamConfig;
use crate::doors::imap::config::ImapConfig;
use crate::doors::smtp::config::SmtpConfig;
pub use crate::platform::config::ConfigError;
use crate::platform::config::{self, CacheConfig, DbConfig, HttpConfig, JobsConfig, ServerConfig, TlsConfig};
use crate::platform::quota::QuotaConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen addresses, data folder and mail domain.
    pub server: ServerConfig,
    /// Database connection.
    pub db: DbConfig,
    /// Accounts, passwords, sessions and rate limits.
    pub auth: AuthConfig,
    /// Where SMS codes for the second factor are sent.
    pub sms: SmsConfig,
    /// The background worker pool.
    pub jobs: JobsConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Profile limits.
    pub profile: ProfileConfig,
    /// Preference document limits.
    pub prefs: PrefsConfig,
    /// In-memory cache sizes.
    pub cache: CacheConfig,
    /// Live streaming: ingest limits, chunking, the transcoding ladder, retention.
    pub stream: StreamConfig,
    /// The SMTP doors: limits and timeouts.
    pub smtp: SmtpConfig,
    /// The IMAP doors: limits, timeouts and plaintext login on loopback.
    pub imap: ImapConfig,
    /// The certificate the doors use for TLS.
    pub tls: TlsConfig,
    /// The DNS resolver for MX look-ups and SPF/DKIM/DMARC.
    pub dns: DnsConfig,
    /// DKIM signing of outgoing mail.
    pub dkim: DkimConfig,
    /// Delivery of outgoing mail to other servers.
    pub outbound: OutboundConfig,
    /// What one user may send.
    pub sending: SendingConfig,
    /// What happens to mail from other servers that fails authentication.
    pub inbound: InboundConfig,
    /// How much one user may store.
    pub quota: QuotaConfig,
}

impl Config {
    /// The doors' TLS: the `[tls]` certificate, or the self-signed one in the data folder
    /// for the SMTP host name and the mail domain.
    pub fn server_tls(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, crate::platform::tls::TlsError> {
        let domain = self.server.domain.as_str();
        crate::platform::tls::server_config(&self.tls, &self.server.data_dir, &[self.smtp.hostname_or(domain), domain])
    }

    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = config::load(path)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = config::parse(text)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects values that cannot work, section by section.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.server.check()?;
        self.auth.check()?;
        self.sms.check()?;
        self.stream.check()?;
        self.tls.check()?;
        self.smtp.check()?;
        self.imap.check()?;
        self.jobs.check()?;
        self.dns.check()?;
        self.dkim.check()?;
        self.sending.check()?;
        self.outbound.check()
    }

    /// The database URL, defaulting to a SQLite file in the data folder.
    pub fn db_url(&self) -> String {
        self.db.url_in(&self.server.data_dir)
    }
}

#[cfg(test)]
mod tests;
