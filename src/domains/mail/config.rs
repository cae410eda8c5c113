//! The mail domain's resolver configuration, `[dns]`: the name servers asked for MX
//! look-ups and SPF, DKIM and DMARC checks. Types and checks only; `dns.rs` reads it. The
//! outbound queue's `[dkim]` and `[outbound]` sections live in `outbound/config.rs`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[dns]`: the resolver used for MX look-ups and for SPF, DKIM and DMARC checks.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers as `"ip:port"`, asked over UDP and TCP; empty means the system's
    /// `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
}

impl DnsConfig {
    /// Rejects a name server that is not `"ip:port"`.
    pub fn check(&self) -> Result<(), ConfigError> {
        for ns in &self.nameservers {
            if ns.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!("dns.nameservers: {ns:?} is not \"ip:port\"")));
            }
        }
        Ok(())
    }
}

/// `[sending]`: what one user may send, by SMTP submission and web compose alike (group
/// names count as the members they expand to). The defaults are far above what a
/// household or a small team sends and far below what a spammer needs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendingConfig {
    /// Messages per user in any hour.
    pub messages_per_hour: u32,
    /// Recipients per user in any 24 hours (a message to 3 people counts 3).
    pub recipients_per_day: u32,
    /// Recipients of one message.
    pub recipients_per_message: u32,
}

impl Default for SendingConfig {
    fn default() -> Self {
        Self { messages_per_hour: 100, recipients_per_day: 1000, recipients_per_message: 100 }
    }
}

impl SendingConfig {
    /// Rejects a limit of 0, which would refuse every message.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.messages_per_hour == 0 || self.recipients_per_day == 0 || self.recipients_per_message == 0 {
            return Err(ConfigError::Invalid("sending: every limit must be at least 1".into()));
        }
        Ok(())
    }
}

/// `[inbound]`: what delivery does with mail from other servers that fails authentication.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Mail failing DMARC whose author domain publishes `p=reject`: `"refuse"` answers
    /// 550 5.7.1 at the end of DATA, `"spam"` files it in Spam. (`p=quarantine` always
    /// goes to Spam.)
    pub dmarc_reject: DmarcReject,
}

/// What to do with mail failing DMARC under `p=reject`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcReject {
    /// Refuse it with 550 5.7.1 (RFC 7489 §6.7).
    #[default]
    Refuse,
    /// Deliver it to Spam.
    Spam,
}
