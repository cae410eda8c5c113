//! Where a request comes from: the TCP peer, or, when that peer is one of
//! `server.trusted_proxies`, the client it names in `X-Forwarded-For` and the scheme it
//! names in `X-Forwarded-Proto`. Headers from any other peer are ignored: anyone can send
//! them. The HTTP door speaks no TLS itself, so a request is HTTPS only on a trusted
//! proxy's word.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::HttpState;
use crate::platform::config::Cidr;

/// The client behind a request, as far as it can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The TCP peer (IPv4-mapped IPv6 shown as IPv4).
    pub peer: IpAddr,
    /// The client: the peer, or the address a trusted proxy forwarded for.
    pub ip: IpAddr,
    /// Whether the browser spoke HTTPS (to a trusted proxy).
    pub https: bool,
}

impl Origin {
    /// Resolves the client of a request from `peer` with `headers`, believing forwarding
    /// headers only from the `trusted` proxies.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> Self {
        let peer = peer.to_canonical();
        let is_trusted = |ip: IpAddr| trusted.iter().any(|p| p.contains(ip));
        if !is_trusted(peer) {
            return Self { peer, ip: peer, https: false };
        }
        // Each proxy appends the address it got the request from: walk right to left past
        // the trusted ones; the first other address is the client.
        let mut ip = peer;
        for hop in header_list(headers, "x-forwarded-for").rev() {
            match parse_hop(hop) {
                Some(hop) if is_trusted(ip) => ip = hop,
                _ => break,
            }
        }
        // The value our trusted peer set is the last one.
        let https =
            header_list(headers, "x-forwarded-proto").next_back().is_some_and(|p| p.eq_ignore_ascii_case("https"));
        Self { peer, ip, https }
    }

    /// Whether the client is this machine.
    pub fn is_loopback(&self) -> bool {
        self.ip.is_loopback()
    }
}

/// The comma-separated entries of every `name` header, in order.
fn header_list<'a>(headers: &'a HeaderMap, name: &str) -> impl DoubleEndedIterator<Item = &'a str> {
    let entries: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    entries.into_iter()
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip())).ok().map(|ip| ip.to_canonical())
}

impl FromRequestParts<HttpState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Self::Rejection> {
        // Without a connection (a test calling the router directly) the peer is unknown.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Self::resolve(peer, &parts.headers, &state.settings.trusted_proxies))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn resolve(peer: &str, xff: &[&str], proto: Option<&str>, trusted: &[&str]) -> Origin {
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        if let Some(p) = proto {
            headers.insert("x-forwarded-proto", HeaderValue::from_str(p).expect("header"));
        }
        let trusted: Vec<Cidr> = trusted.iter().map(|t| t.parse().expect("cidr")).collect();
        Origin::resolve(ip(peer), &headers, &trusted)
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_peer() {
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            // peer, X-Forwarded-For headers, trusted proxies, client
            ("203.0.113.9", &["1.2.3.4"], &[], "203.0.113.9"),
            ("203.0.113.9", &["1.2.3.4"], &["127.0.0.1"], "203.0.113.9"),
            ("127.0.0.1", &["1.2.3.4"], &["127.0.0.1"], "1.2.3.4"),
            ("::ffff:127.0.0.1", &["1.2.3.4"], &["127.0.0.1"], "1.2.3.4"),
            ("127.0.0.1", &[], &["127.0.0.1"], "127.0.0.1"),
            // A client's own X-Forwarded-For entries are left of the real one.
            ("127.0.0.1", &["6.6.6.6, 1.2.3.4"], &["127.0.0.1"], "1.2.3.4"),
            ("127.0.0.1", &["6.6.6.6", "1.2.3.4"], &["127.0.0.1"], "1.2.3.4"),
            // Trusted hops are skipped, right to left.
            ("127.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.2"], &["127.0.0.1", "10.0.0.0/8"], "1.2.3.4"),
            ("127.0.0.1", &["10.0.0.3, 10.0.0.2"], &["127.0.0.1", "10.0.0.0/8"], "10.0.0.3"),
            ("127.0.0.1", &["1.2.3.4:5678"], &["127.0.0.1"], "1.2.3.4"),
            ("127.0.0.1", &["[2001:db8::1]:443"], &["127.0.0.1"], "2001:db8::1"),
            // Garbage stops the walk at the last believed hop.
            ("127.0.0.1", &["1.2.3.4, unknown"], &["127.0.0.1"], "127.0.0.1"),
        ];
        for (peer, xff, trusted, client) in cases {
            assert_eq!(resolve(peer, xff, None, trusted).ip, ip(client), "{peer} {xff:?} {trusted:?}");
        }
    }

    #[test]
    fn https_only_on_a_trusted_proxys_word() {
        assert!(resolve("127.0.0.1", &[], Some("https"), &["127.0.0.1"]).https);
        assert!(resolve("127.0.0.1", &[], Some("HTTPS"), &["127.0.0.0/8"]).https);
        assert!(resolve("127.0.0.1", &[], Some("http, https"), &["127.0.0.1"]).https);
        assert!(!resolve("127.0.0.1", &[], Some("https, http"), &["127.0.0.1"]).https);
        assert!(!resolve("127.0.0.1", &[], Some("http"), &["127.0.0.1"]).https);
        assert!(!resolve("127.0.0.1", &[], None, &["127.0.0.1"]).https);
        assert!(!resolve("203.0.113.9", &[], Some("https"), &["127.0.0.1"]).https);
        assert!(!resolve("127.0.0.1", &[], Some("https"), &[]).https);
    }
}
