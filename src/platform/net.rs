//! Client addresses as the unit one client controls, for every per-client limit (login
//! rate limits, connections per client on the TCP doors, new HLS viewers): an IPv4 address
//! as it is (an IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address by its /64,
//! since one host is routinely handed a whole /64 and could otherwise take a fresh address
//! per try.

use std::net::IpAddr;

/// The network `ip` counts as: itself for IPv4, its /64 (host bits zero) for IPv6.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_network(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_network(ip("2001:db8:1:2:bbbb::9")), client_network(ip("2001:db8:1:2::5")));
        assert_ne!(client_network(ip("2001:db8:1:3::1")), client_network(ip("2001:db8:1:2::1")));
        assert_eq!(client_network(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_network(ip("192.0.2.7")), ip("192.0.2.7"));
    }
}
