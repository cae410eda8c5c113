//! The IMAP doors' configuration, `[imap]`: session caps, the idle timeout, the longest
//! command line and literal, and whether loopback clients may log in without TLS. Types,
//! defaults and range checks only; the doors read them, the application's `Config` names
//! them.

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[imap]`: the IMAP doors (STARTTLS on `server.imap`, implicit TLS on `server.imaps`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Open sessions allowed from one client (an IPv4 address, an IPv6 /64), per door.
    pub sessions_per_ip: usize,
    /// Open sessions allowed in all, per door.
    pub max_sessions: usize,
    /// Seconds a client may stay silent before it is told BYE and disconnected (RFC 9051
    /// §5.4 asks for at least 30 minutes).
    pub idle_seconds: u64,
    /// Longest command line in octets, literals not counted; a longer one gets BAD and is
    /// thrown away.
    pub max_line_bytes: usize,
    /// Largest literal accepted in octets; a larger one gets BAD.
    pub max_literal_bytes: u32,
    /// Seconds a TLS handshake (STARTTLS or implicit TLS) may take.
    pub tls_handshake_seconds: u64,
    /// Whether clients on a loopback address may log in without TLS (as Dovecot treats
    /// localhost as secure). Others always need TLS first: LOGINDISABLED until then.
    pub plaintext_login_on_loopback: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            sessions_per_ip: 20,
            max_sessions: 1000,
            idle_seconds: 1800,
            max_line_bytes: 64 * 1024,
            max_literal_bytes: 25 << 20,
            tls_handshake_seconds: 10,
            plaintext_login_on_loopback: true,
        }
    }
}

impl ImapConfig {
    /// Rejects limits and timeouts that would refuse every session.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.sessions_per_ip == 0 || self.max_sessions == 0 {
            return Err(ConfigError::Invalid("imap.sessions_per_ip and imap.max_sessions must be at least 1".into()));
        }
        if self.idle_seconds == 0 || self.tls_handshake_seconds == 0 {
            return Err(ConfigError::Invalid("imap.idle_seconds and tls_handshake_seconds must be at least 1".into()));
        }
        // RFC 7162 §4 asks clients to keep lines under 8192 octets; servers should take that.
        if self.max_line_bytes < 8192 || self.max_line_bytes > 16 << 20 {
            return Err(ConfigError::Invalid("imap.max_line_bytes must be between 8192 and 16 MiB".into()));
        }
        if self.max_literal_bytes < 1024 || self.max_literal_bytes > 1 << 30 {
            return Err(ConfigError::Invalid("imap.max_literal_bytes must be between 1024 and 1 GiB".into()));
        }
        Ok(())
    }
}
