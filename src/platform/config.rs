//! Typed configuration: the `config.toml` schema with its defaults, the file loader and
//! the command-line/environment overrides. It holds no business rules; each field's doc
//! comment is the documentation users read in the shipped `config.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file that was asked for.
        path: PathBuf,
        /// What the parser said.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid config value: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Live streaming: chunking, the transcoding ladder, retention.
    pub stream: StreamConfig,
    /// The SMTP doors: limits and timeouts.
    pub smtp: SmtpConfig,
    /// The certificate the doors use for TLS.
    pub tls: TlsConfig,
    /// The DNS resolver for MX look-ups and SPF/DKIM/DMARC.
    pub dns: DnsConfig,
    /// DKIM signing of outgoing mail.
    pub dkim: DkimConfig,
    /// Delivery of outgoing mail to other servers.
    pub outbound: OutboundConfig,
}

/// `[server]`: where postcast listens and keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Folder for the SQLite database, blobs and generated keys.
    pub data_dir: PathBuf,
    /// The mail domain: users get `name@domain`.
    pub domain: String,
    /// HTTP (web UI, API, HLS).
    pub http: SocketAddr,
    /// Inbound SMTP (MX).
    pub smtp: SocketAddr,
    /// SMTP submission with STARTTLS.
    pub submission: SocketAddr,
    /// SMTP submission over implicit TLS ("submissions", RFC 8314).
    pub submissions: SocketAddr,
    /// IMAP.
    pub imap: SocketAddr,
    /// RTMP ingest.
    pub rtmp: SocketAddr,
    /// Mark session cookies `Secure` (set when a TLS proxy fronts the HTTP port).
    pub secure_cookies: bool,
}

/// `[db]`: the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// Database URL; empty means `sqlite://DATA_DIR/postcast.db`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long a writer waits for the SQLite lock, in milliseconds.
    pub busy_timeout_ms: u64,
}

/// `[auth]`: passwords, sessions and abuse limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone may register through the web (else only `postcast user add`).
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
    /// Failed attempts on one account before it is locked for a while.
    pub account_lockout_failures: u32,
    /// How long an account stays locked, in seconds.
    pub account_lockout_seconds: u64,
    /// Registrations allowed per IP per hour.
    pub registrations_per_ip_per_hour: u32,
}

/// `[sms]`: the SMS sender used for second-factor codes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `log` (code goes to the server log), `webhook` or `twilio`.
    pub provider: String,
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

/// `[jobs]`: the worker pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Workers; 0 means one per CPU core.
    pub workers: usize,
    /// Jobs that may wait in the queue before submitters are told to back off.
    pub queue: usize,
    /// Seconds a job may run before it is cancelled.
    pub timeout_seconds: u64,
    /// Retries after a failure or timeout.
    pub retries: u32,
    /// First retry delay in milliseconds; doubles each retry.
    pub backoff_ms: u64,
}

/// `[http]`: request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest JSON body, in bytes.
    pub json_limit_bytes: usize,
    /// Largest upload (avatar, attachment), in bytes.
    pub upload_limit_bytes: usize,
}

/// `[profile]`: profile limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Largest avatar upload in bytes.
    pub avatar_max_bytes: usize,
    /// Thumbnail edge in pixels.
    pub thumbnail_px: u32,
    /// Largest avatar width or height in pixels; larger images are refused before they
    /// are decoded (decompression bombs).
    pub avatar_max_edge_px: u32,
}

/// `[prefs]`: preference document limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefsConfig {
    /// Largest preference document, in bytes of JSON.
    pub max_bytes: usize,
    /// Largest attachment, in bytes.
    pub attachment_max_bytes: usize,
    /// Seconds an attachment no preference value mentions is kept before it is deleted,
    /// so a client can upload first and reference it afterwards.
    pub attachment_grace_seconds: u64,
}

/// `[cache]`: moka cache sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Sessions kept in memory.
    pub sessions: u64,
    /// Users kept in memory.
    pub users: u64,
}

fn addr(s: &str) -> SocketAddr {
    // Only ever called with the literal defaults below.
    s.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            domain: "localhost".into(),
            http: addr("127.0.0.1:8080"),
            smtp: addr("127.0.0.1:2525"),
            submission: addr("127.0.0.1:2587"),
            submissions: addr("127.0.0.1:2465"),
            imap: addr("127.0.0.1:1143"),
            rtmp: addr("127.0.0.1:1935"),
            secure_cookies: false,
        }
    }
}

impl Default for DbConfig {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 8, busy_timeout_ms: 5000 }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            open_registration: true,
            min_password_length: 10,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            session_idle_hours: 24 * 30,
            attempts_per_ip_per_minute: 20,
            account_lockout_failures: 10,
            account_lockout_seconds: 900,
            registrations_per_ip_per_hour: 10,
        }
    }
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            provider: "log".into(),
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

impl Default for JobsConfig {
    fn default() -> Self {
        Self { workers: 0, queue: 1024, timeout_seconds: 300, retries: 3, backoff_ms: 500 }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { json_limit_bytes: 1 << 20, upload_limit_bytes: 25 << 20 }
    }
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self { avatar_max_bytes: 5 << 20, thumbnail_px: 128, avatar_max_edge_px: 4096 }
    }
}

impl Default for PrefsConfig {
    fn default() -> Self {
        Self { max_bytes: 64 << 10, attachment_max_bytes: 10 << 20, attachment_grace_seconds: 3600 }
    }
}

/// `[stream]`: live streaming.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Target length of a source chunk (and so of an HLS segment), in seconds. Chunks are
    /// cut at keyframes, so the broadcaster's keyframe interval should be this or less.
    pub chunk_seconds: f64,
    /// How long a publisher may be gone and reconnect into the same stream, in seconds.
    pub reconnect_grace_seconds: u64,
    /// Segments in the sliding live playlist.
    pub live_window_segments: usize,
    /// The ffmpeg binary (a name on PATH or a path).
    pub ffmpeg: String,
    /// Seconds one transcode of one chunk may take before it is killed and retried.
    pub transcode_timeout_seconds: u64,
    /// Hours the raw source chunks (the backup of what was received) are kept; 0 = forever.
    pub raw_retention_hours: u64,
    /// Days recordings are kept after a stream ends; 0 = forever.
    pub recording_retention_days: u64,
    /// Memory for hot segments served to viewers, in MiB.
    pub segment_cache_mib: u64,
    /// Largest RTMP message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The renditions every chunk is transcoded into.
    pub ladder: Vec<RenditionConfig>,
}

/// One `[[stream.ladder]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// Name used in URLs, e.g. `480p`; `source` copies the broadcaster's video.
    pub name: String,
    /// Output height in pixels; 0 keeps the source (video copied, not re-encoded).
    #[serde(default)]
    pub height: u32,
    /// Video bitrate in kbit/s (ignored for a copied rendition).
    #[serde(default)]
    pub video_kbps: u32,
    /// `copy` (recommended: no clicks at chunk boundaries) or an AAC bitrate like `96k`.
    #[serde(default = "default_audio")]
    pub audio: String,
    /// x264 preset.
    #[serde(default = "default_preset")]
    pub preset: String,
}

fn default_audio() -> String {
    "copy".into()
}

fn default_preset() -> String {
    "veryfast".into()
}

impl Default for StreamConfig {
    fn default() -> Self {
        let rendition = |name: &str, height, video_kbps| RenditionConfig {
            name: name.into(),
            height,
            video_kbps,
            audio: default_audio(),
            preset: default_preset(),
        };
        Self {
            chunk_seconds: 2.0,
            reconnect_grace_seconds: 15,
            live_window_segments: 6,
            ffmpeg: "ffmpeg".into(),
            transcode_timeout_seconds: 20,
            raw_retention_hours: 168,
            recording_retention_days: 30,
            segment_cache_mib: 256,
            max_message_bytes: 8 << 20,
            ladder: vec![rendition("source", 0, 0), rendition("480p", 480, 1200), rendition("240p", 240, 400)],
        }
    }
}

/// `[smtp]`: the SMTP doors (inbound MX, submission, submissions).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The name in the greeting and EHLO reply; empty means `server.domain`.
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_bytes: usize,
    /// Most recipients of one message.
    pub max_recipients: usize,
    /// Open sessions allowed from one IP address, per door.
    pub sessions_per_ip: usize,
    /// Open sessions allowed in all, per door.
    pub max_sessions: usize,
    /// Seconds a client may stay silent before it is told 421 and disconnected.
    pub idle_seconds: u64,
    /// Seconds a TLS handshake (STARTTLS or implicit TLS) may take.
    pub tls_handshake_seconds: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            max_message_bytes: 25 << 20,
            max_recipients: 100,
            sessions_per_ip: 20,
            max_sessions: 1000,
            idle_seconds: 300,
            tls_handshake_seconds: 10,
        }
    }
}

impl SmtpConfig {
    /// The name the SMTP doors announce: `hostname`, or the mail domain when it is empty.
    pub fn hostname_or<'a>(&'a self, domain: &'a str) -> &'a str {
        if self.hostname.is_empty() { domain } else { &self.hostname }
    }
}

/// `[tls]`: the certificate for the doors' TLS. Both paths empty: a self-signed
/// certificate is made on first start and kept in `DATA_DIR/tls/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { sessions: 100_000, users: 100_000 }
    }
}

/// `[dns]`: the resolver used for MX look-ups and for SPF, DKIM and DMARC checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers as `"ip:port"`, asked over UDP and TCP; empty means the system's
    /// `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
}

/// `[dkim]`: the key outgoing mail is signed with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimConfig {
    /// The selector: the key is published at `SELECTOR._domainkey.DOMAIN` and stored as
    /// `DATA_DIR/dkim/SELECTOR.pem` (an RSA-2048 key made on first start).
    pub selector: String,
}

impl Default for DkimConfig {
    fn default() -> Self {
        Self { selector: "postcast".into() }
    }
}

/// `[outbound]`: delivery of outgoing mail to other servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// A smarthost `"host:port"` that takes all outgoing mail; empty means deliver to each
    /// domain's MX hosts directly.
    pub relay: String,
    /// User name at the smarthost; empty means no AUTH.
    pub relay_username: String,
    /// Password at the smarthost.
    pub relay_password: String,
    /// Speak TLS from the first byte to the smarthost (port 465) instead of STARTTLS.
    pub relay_implicit_tls: bool,
    /// Fixed targets per recipient domain, `domain = "host:port"`, used before MX look-ups
    /// (for tests and private networks).
    pub mx_override: std::collections::BTreeMap<String, String>,
    /// The port MX hosts are reached on.
    pub mx_port: u16,
    /// Deliver to MX hosts that resolve to a loopback address (tests only: otherwise such
    /// mail would loop back into this machine and is refused, RFC 5321 §5.1).
    pub mx_allow_loopback: bool,
    /// The name given in EHLO; empty means `server.domain`.
    pub helo_name: String,
    /// First retry delay after a temporary failure, in seconds; doubles with each attempt.
    pub retry_base_seconds: u64,
    /// Longest retry delay, in seconds.
    pub retry_max_seconds: u64,
    /// Hours after which a message still not delivered is given up and bounced; 0 gives up
    /// at the first temporary failure.
    pub give_up_hours: u64,
    /// Seconds to wait for a TCP connection to a mail server.
    pub connect_timeout_seconds: u64,
    /// Seconds to wait for each SMTP reply (RFC 5321 §4.5.3.2 suggests 5 minutes).
    pub command_timeout_seconds: u64,
    /// Messages delivered at the same time.
    pub parallel_deliveries: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            relay: String::new(),
            relay_username: String::new(),
            relay_password: String::new(),
            relay_implicit_tls: false,
            mx_override: Default::default(),
            mx_port: 25,
            mx_allow_loopback: false,
            helo_name: String::new(),
            retry_base_seconds: 60,
            retry_max_seconds: 3600,
            give_up_hours: 120,
            connect_timeout_seconds: 30,
            command_timeout_seconds: 300,
            parallel_deliveries: 4,
        }
    }
}

/// Whether `s` is `host:port` with a plausible host name or address and a port.
fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok()
                && !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }
        None => false,
    }
}

impl Config {
    /// Checks the `[dns]`, `[dkim]` and `[outbound]` sections.
    fn check_mail_delivery(&self) -> Result<(), ConfigError> {
        for ns in &self.dns.nameservers {
            if ns.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!("dns.nameservers: {ns:?} is not \"ip:port\"")));
            }
        }
        let sel = &self.dkim.selector;
        if sel.is_empty() || sel.len() > 63 || !sel.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::Invalid(format!("dkim.selector {sel:?}: letters, digits, - and _ only")));
        }
        let o = &self.outbound;
        if !o.relay.is_empty() && !is_host_port(&o.relay) {
            return Err(ConfigError::Invalid(format!("outbound.relay {:?} is not \"host:port\"", o.relay)));
        }
        for (domain, target) in &o.mx_override {
            if !is_host_port(target) {
                return Err(ConfigError::Invalid(format!(
                    "outbound.mx_override.{domain}: {target:?} is not \"host:port\""
                )));
            }
        }
        if o.retry_base_seconds == 0 || o.retry_max_seconds < o.retry_base_seconds {
            return Err(ConfigError::Invalid(
                "outbound.retry_base_seconds must be at least 1 and at most retry_max_seconds".into(),
            ));
        }
        if o.parallel_deliveries == 0 || o.connect_timeout_seconds == 0 || o.command_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "outbound.parallel_deliveries and the outbound timeouts must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), source: Box::new(e) })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects values that cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.server.domain.trim().is_empty() || self.server.domain.contains('@') {
            return Err(ConfigError::Invalid(format!("server.domain {:?}", self.server.domain)));
        }
        if !matches!(self.sms.provider.as_str(), "log" | "webhook" | "twilio") {
            return Err(ConfigError::Invalid(format!(
                "sms.provider must be log, webhook or twilio, not {:?}",
                self.sms.provider
            )));
        }
        if self.sms.provider == "webhook" && self.sms.webhook_url.is_empty() {
            return Err(ConfigError::Invalid("sms.webhook_url is required for the webhook provider".into()));
        }
        if self.auth.min_password_length < 8 {
            return Err(ConfigError::Invalid("auth.min_password_length must be at least 8".into()));
        }
        let names: std::collections::HashSet<&str> = self.stream.ladder.iter().map(|r| r.name.as_str()).collect();
        if self.stream.ladder.is_empty() || names.len() != self.stream.ladder.len() {
            return Err(ConfigError::Invalid("stream.ladder needs at least one rendition, with distinct names".into()));
        }
        for r in &self.stream.ladder {
            let ok_name =
                !r.name.is_empty() && r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok_name || (r.height > 0 && (r.height % 2 != 0 || r.video_kbps == 0)) {
                return Err(ConfigError::Invalid(format!(
                    "stream.ladder entry {:?}: name [a-z0-9_-], even height, video_kbps > 0",
                    r.name
                )));
            }
        }
        if !(0.5..=30.0).contains(&self.stream.chunk_seconds) {
            return Err(ConfigError::Invalid("stream.chunk_seconds must be between 0.5 and 30".into()));
        }
        if self.tls.cert.as_os_str().is_empty() != self.tls.key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("tls.cert and tls.key must be set together (or both left empty)".into()));
        }
        let smtp = &self.smtp;
        if smtp.max_message_bytes < 1024 || smtp.max_recipients == 0 {
            return Err(ConfigError::Invalid("smtp.max_message_bytes must be at least 1024, max_recipients 1".into()));
        }
        if smtp.sessions_per_ip == 0 || smtp.max_sessions == 0 {
            return Err(ConfigError::Invalid("smtp.sessions_per_ip and smtp.max_sessions must be at least 1".into()));
        }
        if smtp.idle_seconds == 0 || smtp.tls_handshake_seconds == 0 {
            return Err(ConfigError::Invalid("smtp.idle_seconds and tls_handshake_seconds must be at least 1".into()));
        }
        if smtp.hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid(format!("smtp.hostname {:?}", smtp.hostname)));
        }
        if self.jobs.queue == 0 {
            return Err(ConfigError::Invalid("jobs.queue must be at least 1".into()));
        }
        self.check_mail_delivery()
    }

    /// The database URL, defaulting to a SQLite file in the data folder.
    pub fn db_url(&self) -> String {
        if self.db.url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.server.data_dir.join("postcast.db").display())
        } else {
            self.db.url.clone()
        }
    }

    /// Worker count with 0 meaning one per core.
    pub fn job_workers(&self) -> usize {
        if self.jobs.workers == 0 { num_cpus::get().max(1) } else { self.jobs.workers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_toml_matches_the_defaults() {
        let text = include_str!("../../config.toml");
        let shipped = Config::parse(text).expect("config.toml parses");
        let defaults = Config::default();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[server]\nnope = 1\n").is_err());
        assert!(Config::parse("[sms]\nprovider = \"pigeon\"\n").is_err());
        assert!(Config::parse("[sms]\nprovider = \"webhook\"\n").is_err());
        assert!(Config::parse("[server]\ndomain = \"example.org\"\n").is_ok());
        assert!(Config::parse("[tls]\ncert = \"cert.pem\"\n").is_err());
        assert!(Config::parse("[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n").is_ok());
        assert!(Config::parse("[smtp]\nsessions_per_ip = 0\n").is_err());
        assert!(Config::parse("[smtp]\nhostname = \"mx example\"\n").is_err());
    }
}
