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
