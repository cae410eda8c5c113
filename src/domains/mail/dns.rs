//! The one DNS resolver of the mail domain: a `mail_auth::MessageAuthenticator` (hickory
//! underneath) built from `[dns]`, shared by the MX look-ups of the outbound queue and the
//! SPF, DKIM and DMARC checks of received mail. It answers questions about names; it knows
//! nothing of messages and sends nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mail_auth::MessageAuthenticator;
use mail_auth::common::cache::NoCache;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{IpLookupStrategy, RecordSet};

use super::config::DnsConfig;

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// A configured name server is not `ip:port`.
    #[error("dns.nameservers: {0:?} is not \"ip:port\"")]
    BadNameServer(String),
    /// The system configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system DNS configuration: {0}")]
    System(String),
}

/// What a look-up found out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name does not exist (NXDOMAIN): a permanent answer.
    #[error("{0}: no such domain")]
    NoSuchDomain(String),
    /// The name exists but has no record of the asked type.
    #[error("{0}: no such record")]
    NoRecords(String),
    /// The resolver failed (time-out, SERVFAIL, network): try again later.
    #[error("DNS failure for {0}: {1}")]
    Temporary(String, String),
}

impl LookupError {
    /// Whether asking again later may give another answer.
    pub fn is_temporary(&self) -> bool {
        matches!(self, LookupError::Temporary(..))
    }
}

/// One MX host with its preference (lower is tried first, RFC 5321 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The preference.
    pub preference: u16,
    /// The exchange's host name, without a trailing dot.
    pub host: String,
}

/// The shared resolver; cheap to clone.
#[derive(Clone)]
pub struct Dns {
    auth: Arc<MessageAuthenticator>,
}

type NoMx = NoCache<Box<str>, RecordSet<mail_auth::MX>>;
type NoV4 = NoCache<Box<str>, RecordSet<std::net::Ipv4Addr>>;
type NoV6 = NoCache<Box<str>, RecordSet<std::net::Ipv6Addr>>;

impl Dns {
    /// Builds the resolver: UDP and TCP to the configured servers, or the system's.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsSetupError> {
        let auth = if config.nameservers.is_empty() {
            match MessageAuthenticator::new_system_conf() {
                Ok(auth) => auth,
                Err(e) => {
                    // Start anyway: look-ups then fail (and mail waits) until DNS is set up.
                    tracing::warn!(error = %e, "no usable /etc/resolv.conf; set [dns] nameservers");
                    MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![]), ResolverOpts::default())
                        .map_err(|e| DnsSetupError::System(e.to_string()))?
                }
            }
        } else {
            let mut servers = Vec::with_capacity(config.nameservers.len());
            for ns in &config.nameservers {
                let addr: SocketAddr = ns.parse().map_err(|_| DnsSetupError::BadNameServer(ns.clone()))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), ResolverOpts::default())
                .map_err(|e| DnsSetupError::System(e.to_string()))?
        };
        Ok(Self { auth: Arc::new(auth) })
    }

    /// The authenticator for SPF, DKIM and DMARC checks.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// The MX hosts of `domain`, lowest preference first. A domain without MX records
    /// gives [`LookupError::NoRecords`]: the caller then falls back to the domain's own
    /// address (RFC 5321 §5.1).
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxHost>, LookupError> {
        let set = self.auth.mx_lookup(domain, None::<&NoMx>).await.map_err(|e| classify(domain, e))?;
        let mut hosts = Vec::new();
        for mx in set.rrset.iter() {
            for host in mx.exchanges.iter() {
                hosts.push(MxHost { preference: mx.preference, host: host.trim_end_matches('.').to_owned() });
            }
        }
        if hosts.is_empty() {
            return Err(LookupError::NoRecords(domain.to_owned()));
        }
        hosts.sort_by_key(|h| h.preference);
        Ok(hosts)
    }

    /// The addresses of `host`: IPv4 first, then IPv6; an address literal is itself.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let ips = self
            .auth
            .ip_lookup(host, IpLookupStrategy::Ipv4thenIpv6, 10, None::<&NoV4>, None::<&NoV6>)
            .await
            .map_err(|e| classify(host, e))?;
        if ips.is_empty() {
            return Err(LookupError::NoRecords(host.to_owned()));
        }
        Ok(ips)
    }
}

/// Sorts a mail-auth error into permanent and temporary answers.
fn classify(name: &str, e: mail_auth::Error) -> LookupError {
    use mail_auth::hickory_resolver::proto::op::ResponseCode;
    match e {
        mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(ResponseCode::NXDomain)) => {
            LookupError::NoSuchDomain(name.to_owned())
        }
        mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)) => LookupError::NoRecords(name.to_owned()),
        other => LookupError::Temporary(name.to_owned(), other.to_string()),
    }
}

/// The loopback DNS stand-in of the integration tests, shared with the unit tests.
#[cfg(test)]
#[path = "../../../tests/common/dns.rs"]
pub(crate) mod standin;
