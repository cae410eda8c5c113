//! The one DNS resolver of the mail domain: a `mail_auth::MessageAuthenticator` (hickory
//! underneath) built from `[dns]`, shared by the MX look-ups of the outbound queue and the
//! SPF, DKIM and DMARC checks of received mail, with two bounded caches in front of the
//! network: mail-auth's parsed records (SPF, DKIM keys, DMARC policies, MX and address
//! sets) kept for their TTL in moka, and hickory's own answer cache, set up here to keep
//! negative answers (NXDOMAIN, NODATA) too. It answers questions about names; it knows
//! nothing of messages and sends nothing.

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::{IpLookupStrategy, MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt};

use super::config::DnsConfig;

/// Answers hickory keeps (positive and negative), by count.
const ANSWER_CACHE_ENTRIES: u64 = 16_384;
/// Parsed TXT records (SPF, DKIM keys, DMARC policies) kept, by count.
const TXT_CACHE_ENTRIES: u64 = 8_192;
/// MX, A, AAAA and PTR sets kept, each, by count.
const SET_CACHE_ENTRIES: u64 = 4_096;
/// How long a negative answer without an SOA (so without a TTL) is kept. RFC 2308 §5 asks
/// for no caching at all there; a short floor keeps a flood of mail from one made-up
/// domain from asking the same question for every message.
const NEGATIVE_FLOOR: Duration = Duration::from_secs(30);
/// The longest a negative answer is kept, whatever its SOA says (RFC 2308 §5: 1–3 hours).
const NEGATIVE_CEILING: Duration = Duration::from_secs(3600);

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// A configured name server is not `ip:port`.
    #[error("dns.nameservers: {0:?} is not \"ip:port\"")]
    BadNameServer(String),
    /// The resolver could not be built from the configuration.
    #[error("cannot build the DNS resolver")]
    System(#[source] mail_auth::hickory_resolver::net::NetError),
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

/// A bounded cache of one kind of parsed DNS answer for mail-auth, each entry kept until
/// the expiry mail-auth gives it (the answer's TTL).
pub struct RecordCache<K, V> {
    entries: moka::sync::Cache<K, Expiring<V>>,
}

/// A cached value and the moment it stops being true.
#[derive(Clone)]
struct Expiring<V> {
    value: V,
    until: Instant,
}

/// moka's per-entry expiry: the answer's own deadline.
struct UntilDeadline;

impl<K, V> moka::Expiry<K, Expiring<V>> for UntilDeadline {
    fn expire_after_create(&self, _key: &K, value: &Expiring<V>, now: Instant) -> Option<Duration> {
        Some(value.until.saturating_duration_since(now))
    }
}

impl<K, V> RecordCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(capacity: u64) -> Self {
        Self { entries: moka::sync::Cache::builder().max_capacity(capacity).expire_after(UntilDeadline).build() }
    }
}

impl<K, V> ResolverCache<K, V> for RecordCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(name).map(|e| e.value)
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(name).map(|e| e.value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        if valid_until > Instant::now() {
            self.entries.insert(key, Expiring { value, until: valid_until });
        }
    }
}

/// The parsed-record caches mail-auth reads before it asks hickory.
struct Caches {
    txt: RecordCache<Box<str>, Txt>,
    mx: RecordCache<Box<str>, RecordSet<MX>>,
    ipv4: RecordCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: RecordCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: RecordCache<IpAddr, RecordSet<Box<str>>>,
}

/// The parameters of a mail-auth check with the shared caches attached.
pub type Cached<'x, P> = Parameters<
    'x,
    P,
    RecordCache<Box<str>, Txt>,
    RecordCache<Box<str>, RecordSet<MX>>,
    RecordCache<Box<str>, RecordSet<Ipv4Addr>>,
    RecordCache<Box<str>, RecordSet<Ipv6Addr>>,
    RecordCache<IpAddr, RecordSet<Box<str>>>,
>;

/// The shared resolver; cheap to clone.
#[derive(Clone)]
pub struct Dns {
    auth: Arc<MessageAuthenticator>,
    caches: Arc<Caches>,
}

impl Dns {
    /// Builds the resolver: UDP and TCP to the configured servers, or the system's
    /// (`/etc/resolv.conf`), with the answer caches described at the top of this file.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsSetupError> {
        let (servers, opts) = if config.nameservers.is_empty() {
            read_system_conf().unwrap_or_else(|e| {
                // Start anyway: look-ups then fail (and mail waits) until DNS is set up.
                tracing::warn!(error = %e, "no usable /etc/resolv.conf; set [dns] nameservers");
                (ResolverConfig::from_name_servers(vec![]), ResolverOpts::default())
            })
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
            (ResolverConfig::from_name_servers(servers), ResolverOpts::default())
        };
        let auth = MessageAuthenticator::new(servers, with_answer_cache(opts)).map_err(DnsSetupError::System)?;
        let caches = Caches {
            txt: RecordCache::new(TXT_CACHE_ENTRIES),
            mx: RecordCache::new(SET_CACHE_ENTRIES),
            ipv4: RecordCache::new(SET_CACHE_ENTRIES),
            ipv6: RecordCache::new(SET_CACHE_ENTRIES),
            ptr: RecordCache::new(SET_CACHE_ENTRIES),
        };
        Ok(Self { auth: Arc::new(auth), caches: Arc::new(caches) })
    }

    /// The authenticator for SPF, DKIM and DMARC checks; pass its parameters through
    /// [`Dns::cached`] so they share the caches.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// `params` for a mail-auth check, reading and filling the shared record caches.
    pub fn cached<P>(&self, params: P) -> Cached<'_, P> {
        let c = &*self.caches;
        Parameters::new(params)
            .with_txt_cache(&c.txt)
            .with_mx_cache(&c.mx)
            .with_ipv4_cache(&c.ipv4)
            .with_ipv6_cache(&c.ipv6)
            .with_ptr_cache(&c.ptr)
    }

    /// The MX hosts of `domain`, lowest preference first. A domain without MX records
    /// gives [`LookupError::NoRecords`]: the caller then falls back to the domain's own
    /// address (RFC 5321 §5.1).
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxHost>, LookupError> {
        let set = self.auth.mx_lookup(domain, Some(&self.caches.mx)).await.map_err(|e| classify(domain, e))?;
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
        let (v4, v6) = (Some(&self.caches.ipv4), Some(&self.caches.ipv6));
        let ips = self
            .auth
            .ip_lookup(host, IpLookupStrategy::Ipv4thenIpv6, 10, v4, v6)
            .await
            .map_err(|e| classify(host, e))?;
        if ips.is_empty() {
            return Err(LookupError::NoRecords(host.to_owned()));
        }
        Ok(ips)
    }
}

/// hickory's answer cache, bounded, keeping negative answers for their SOA's TTL within
/// [`NEGATIVE_FLOOR`] and [`NEGATIVE_CEILING`] (hickory's default floor of zero keeps an
/// NXDOMAIN without an SOA not at all, so every message from a made-up domain asked again).
fn with_answer_cache(mut opts: ResolverOpts) -> ResolverOpts {
    opts.cache_size = ANSWER_CACHE_ENTRIES;
    opts.negative_min_ttl = Some(NEGATIVE_FLOOR);
    opts.negative_max_ttl = Some(NEGATIVE_CEILING);
    opts
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

#[cfg(test)]
mod tests {
    use super::standin::DnsStandIn;
    use super::*;

    fn resolver(standin: &DnsStandIn) -> Dns {
        Dns::new(&DnsConfig { nameservers: vec![standin.addr.to_string()] }).expect("resolver")
    }

    #[tokio::test]
    async fn positive_answers_are_asked_once_within_their_ttl() {
        let standin = DnsStandIn::start();
        standin.add_mx("mail.test", 10, "mx.mail.test");
        standin.add_a("mx.mail.test", Ipv4Addr::LOCALHOST);
        let dns = resolver(&standin);
        for _ in 0..5 {
            assert_eq!(dns.mx("mail.test").await.expect("mx")[0].host, "mx.mail.test");
            assert_eq!(dns.addresses("mx.mail.test").await.expect("a"), vec![IpAddr::from(Ipv4Addr::LOCALHOST)]);
        }
        assert_eq!(standin.queries(), 2, "one MX and one A question for five rounds");
    }

    #[tokio::test]
    async fn negative_answers_without_an_soa_are_kept_too() {
        let standin = DnsStandIn::start();
        standin.add_txt("known.test", "v=spf1 -all");
        let dns = resolver(&standin);
        for _ in 0..5 {
            assert_eq!(dns.mx("made-up.test").await, Err(LookupError::NoSuchDomain("made-up.test".into())));
            // The name exists without an MX record: NODATA.
            assert_eq!(dns.mx("known.test").await, Err(LookupError::NoRecords("known.test".into())));
        }
        assert_eq!(standin.queries(), 2, "one question per name for five rounds");
    }
}
