//! The SMTP doors' configuration, `[smtp]`: the announced host name, message limits (size,
//! recipients, Received fields), the spool threshold and memory budget, session caps and
//! timeouts. Types, defaults and range
//! checks only; the doors read them, the application's `Config` names them.

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[smtp]`: the SMTP doors (inbound MX, submission, submissions).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The name in the greeting and EHLO reply; empty means `server.domain`.
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_bytes: usize,
    /// Most recipients of one message.
    pub max_recipients: usize,
    /// Most `Received` header fields a message may carry; more is a mail loop, refused at
    /// the end of DATA with 554 5.4.6 (RFC 5321 §6.3).
    pub max_received_headers: usize,
    /// Message bodies larger than this many bytes are written to a temporary file in
    /// `DATA_DIR/spool` while they are received, not kept in memory.
    pub spool_threshold: usize,
    /// Bytes of message data all SMTP sessions together may hold in memory: bodies being
    /// received, and messages being delivered at twice their size (delivery holds a copy
    /// with the trace fields). A body that finds no room is spooled sooner; a message waits
    /// up to 60 s for room for its delivery, then gets 452 4.3.1, as does a MAIL FROM whose
    /// SIZE needs more than all of it.
    pub max_bytes_in_flight: usize,
    /// Open sessions allowed from one client (an IPv4 address, an IPv6 /64), per door.
    pub sessions_per_ip: usize,
    /// Open sessions allowed in all, per door.
    pub max_sessions: usize,
    /// Seconds a client may stay silent before it is told 421 and disconnected.
    pub idle_seconds: u64,
    /// Seconds one session may last in all, however busy; then 421 4.4.2 and the
    /// connection is closed.
    pub session_seconds: u64,
    /// Seconds a TLS handshake (STARTTLS or implicit TLS) may take.
    pub tls_handshake_seconds: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            max_message_bytes: 25 << 20,
            max_recipients: 100,
            max_received_headers: 50,
            spool_threshold: 1 << 20,
            max_bytes_in_flight: 256 << 20,
            sessions_per_ip: 20,
            max_sessions: 1000,
            idle_seconds: 300,
            session_seconds: 1800,
            tls_handshake_seconds: 10,
        }
    }
}

impl SmtpConfig {
    /// The name the SMTP doors announce: `hostname`, or the mail domain when it is empty.
    pub fn hostname_or<'a>(&'a self, domain: &'a str) -> &'a str {
        if self.hostname.is_empty() { domain } else { &self.hostname }
    }

    /// Rejects limits and timeouts that would refuse every session.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_message_bytes < 1024 || self.max_recipients == 0 {
            return Err(ConfigError::Invalid("smtp.max_message_bytes must be at least 1024, max_recipients 1".into()));
        }
        if self.max_received_headers == 0 {
            // Nearly all mail from other servers carries a Received field: 0 would refuse it.
            return Err(ConfigError::Invalid("smtp.max_received_headers must be at least 1".into()));
        }
        if self.sessions_per_ip == 0 || self.max_sessions == 0 {
            return Err(ConfigError::Invalid("smtp.sessions_per_ip and smtp.max_sessions must be at least 1".into()));
        }
        if self.idle_seconds == 0 || self.tls_handshake_seconds == 0 || self.session_seconds == 0 {
            return Err(ConfigError::Invalid(
                "smtp.idle_seconds, session_seconds and tls_handshake_seconds must be at least 1".into(),
            ));
        }
        // A message just within the threshold must fit its delivery (twice its size).
        if self.spool_threshold < 1024 || self.max_bytes_in_flight / 2 < self.spool_threshold {
            return Err(ConfigError::Invalid(
                "smtp.spool_threshold must be at least 1024, and max_bytes_in_flight twice spool_threshold".into(),
            ));
        }
        if self.hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid(format!("smtp.hostname {:?}", self.hostname)));
        }
        Ok(())
    }
}
