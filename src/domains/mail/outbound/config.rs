//! The outbound queue's configuration: `[dkim]` (the signing key's selector) and
//! `[outbound]` (smarthost or direct MX delivery, retries, timeouts). Types, defaults and
//! checks only; the queue reads them, the application's `Config` names them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[dkim]`: the key outgoing mail is signed with.
#[derive(Debug, Clone, Deserialize, Serialize)]
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

impl DkimConfig {
    /// Rejects a selector that cannot be a DNS label.
    pub fn check(&self) -> Result<(), ConfigError> {
        let sel = &self.selector;
        if sel.is_empty() || sel.len() > 63 || !sel.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::Invalid(format!("dkim.selector {sel:?}: letters, digits, - and _ only")));
        }
        Ok(())
    }
}

/// `[outbound]`: delivery of outgoing mail to other servers.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    pub mx_override: BTreeMap<String, String>,
    /// The port MX hosts are reached on.
    pub mx_port: u16,
    /// Deliver to MX hosts that resolve to loopback, private, link-local, shared (CGNAT),
    /// multicast, documentation or other reserved addresses (tests and private networks):
    /// otherwise they are dropped, so that a recipient domain's DNS cannot point this server
    /// back at itself (RFC 5321 §5.1) or at the network behind it. Override targets and the
    /// smarthost, named here by the operator, are not checked.
    pub allow_private_targets: bool,
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
            mx_override: BTreeMap::new(),
            mx_port: 25,
            allow_private_targets: false,
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

impl OutboundConfig {
    /// Rejects targets that are not `host:port`, and retry or timeout values that cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.relay.is_empty() && !is_host_port(&self.relay) {
            return Err(ConfigError::Invalid(format!("outbound.relay {:?} is not \"host:port\"", self.relay)));
        }
        for (domain, target) in &self.mx_override {
            if !is_host_port(target) {
                return Err(ConfigError::Invalid(format!(
                    "outbound.mx_override.{domain}: {target:?} is not \"host:port\""
                )));
            }
        }
        if self.retry_base_seconds == 0 || self.retry_max_seconds < self.retry_base_seconds {
            return Err(ConfigError::Invalid(
                "outbound.retry_base_seconds must be at least 1 and at most retry_max_seconds".into(),
            ));
        }
        if self.parallel_deliveries == 0 || self.connect_timeout_seconds == 0 || self.command_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "outbound.parallel_deliveries and the outbound timeouts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
