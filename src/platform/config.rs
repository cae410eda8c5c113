//! The configuration machinery and the platform's own sections: reading a TOML file into
//! any typed schema (keys left out keep their defaults, unknown keys are refused), and the
//! `[server]`, `[db]`, `[jobs]`, `[http]`, `[cache]` and `[tls]` sections. It names no
//! domain: each domain and door keeps its section beside its code, and the application's
//! `crate::config::Config` puts them together. Each field's doc comment is what users read
//! in the shipped `config.toml`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// Parses TOML `text` into the schema `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), source: Box::new(e) })
}

/// Reads the TOML file at `path` into the schema `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.to_owned(), source },
        other => other,
    })
}

/// `[server]`: where postcast listens and keeps its data.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// IMAP with STARTTLS.
    pub imap: SocketAddr,
    /// IMAP over implicit TLS ("imaps", RFC 8314).
    pub imaps: SocketAddr,
    /// RTMP ingest.
    pub rtmp: SocketAddr,
    /// Reverse proxies in front of the HTTP door, as addresses or CIDR blocks. Only a
    /// request whose TCP peer is one of them has its `X-Forwarded-For` (the client) and
    /// `X-Forwarded-Proto` (HTTPS, hence `Secure` cookies) believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Bearer token that opens `/metrics` to other hosts; empty means loopback only.
    pub metrics_token: String,
}

/// An IP address or a CIDR block: `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    /// Whether `ip` is in the block; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        let net = match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip.to_canonical()),
            Err(_) => s.parse::<IpNet>().map_err(|_| ConfigError::Invalid(format!("not an address or CIDR: {s:?}")))?,
        };
        Ok(Self(net.trunc()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = ConfigError;

    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// `[db]`: the database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// Database URL; empty means `sqlite://DATA_DIR/postcast.db`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// How long a writer waits for the SQLite lock, in milliseconds.
    pub busy_timeout_ms: u64,
}

/// `[jobs]`: the one worker pool of the process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Workers; 0 means one per CPU core.
    pub workers: usize,
    /// Jobs that may wait in the queue before submitters are told to back off.
    pub queue: usize,
    /// Bytes the queued and running jobs may hold together (a transcode holds its source
    /// chunk) before submitters are told to back off.
    pub queue_bytes: u64,
    /// Seconds a job may run before it is cancelled, unless the job sets its own limit.
    pub timeout_seconds: u64,
    /// Retries after a failure or timeout.
    pub retries: u32,
    /// First retry delay in milliseconds; doubles each retry.
    pub backoff_ms: u64,
}

/// `[http]`: request limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest JSON body, in bytes.
    pub json_limit_bytes: usize,
    /// Largest upload (avatar, attachment), in bytes.
    pub upload_limit_bytes: usize,
}

/// `[cache]`: moka cache sizes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Sessions kept in memory.
    pub sessions: u64,
    /// Users kept in memory.
    pub users: u64,
}

/// `[tls]`: the certificate for the doors' TLS. Both paths empty: a self-signed
/// certificate is made on first start and kept in `DATA_DIR/tls/`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
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
            imaps: addr("127.0.0.1:1993"),
            rtmp: addr("127.0.0.1:1935"),
            trusted_proxies: Vec::new(),
            metrics_token: String::new(),
        }
    }
}

impl ServerConfig {
    /// Rejects a mail domain that cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.domain.trim().is_empty() || self.domain.contains('@') {
            return Err(ConfigError::Invalid(format!("server.domain {:?}", self.domain)));
        }
        Ok(())
    }
}

impl Default for DbConfig {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 8, busy_timeout_ms: 5000 }
    }
}

impl DbConfig {
    /// The database URL, defaulting to a SQLite file in `data_dir`.
    pub fn url_in(&self, data_dir: &Path) -> String {
        if self.url.is_empty() {
            format!("sqlite://{}?mode=rwc", data_dir.join("postcast.db").display())
        } else {
            self.url.clone()
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { workers: 0, queue: 1024, queue_bytes: 256 << 20, timeout_seconds: 300, retries: 3, backoff_ms: 500 }
    }
}

impl JobsConfig {
    /// Rejects a pool that could take no job.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.queue == 0 || self.queue_bytes == 0 || self.timeout_seconds == 0 {
            return Err(ConfigError::Invalid("jobs.queue, queue_bytes and timeout_seconds must be at least 1".into()));
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { json_limit_bytes: 1 << 20, upload_limit_bytes: 25 << 20 }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { sessions: 100_000, users: 100_000 }
    }
}

impl TlsConfig {
    /// Rejects a certificate without its key, or the other way round.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.cert.as_os_str().is_empty() != self.key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("tls.cert and tls.key must be set together (or both left empty)".into()));
        }
        Ok(())
    }
}
