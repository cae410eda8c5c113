//! Which addresses outgoing mail may be delivered to: a pure classification of IP
//! addresses into the special-purpose ranges of the IANA registries (RFC 6890 and the
//! RFCs each range cites). The delivery attempt drops MX hosts that resolve into one of
//! them unless `outbound.allow_private_targets` is set: a recipient domain's DNS must not
//! steer this server into its own machine or the network behind it. No I/O here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range outgoing mail is not delivered into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpecialRange {
    /// `0.0.0.0/8` ("this network", RFC 1122 §3.2.1.3) and `::`.
    Unspecified,
    /// `127.0.0.0/8` and `::1`: this machine.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16` (RFC 1918), `fc00::/7` (RFC 4193) and the
    /// deprecated site-local `fec0::/10` (RFC 3879).
    Private,
    /// `100.64/10`: carrier-grade NAT (RFC 6598).
    SharedNat,
    /// `169.254/16` (RFC 3927) and `fe80::/10` (RFC 4291 §2.5.6).
    LinkLocal,
    /// `224/4` (RFC 5771) and `ff00::/8` (RFC 4291 §2.7).
    Multicast,
    /// `255.255.255.255` (RFC 919).
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24` (RFC 5737), `2001:db8::/32`
    /// (RFC 3849) and `3fff::/20` (RFC 9637).
    Documentation,
    /// `192.0.0/24` (RFC 6890 §2.2.2), `198.18/15` (benchmarking, RFC 2544), `240/4`
    /// (RFC 1112 §4), `100::/64` (discard, RFC 6666) and the deprecated IPv4-compatible
    /// `::/96` (RFC 4291 §2.5.5.1).
    Reserved,
}

impl SpecialRange {
    /// Whether mail sent there would come back into this machine (a loop, RFC 5321 §5.1).
    pub(super) fn is_this_machine(self) -> bool {
        matches!(self, SpecialRange::Loopback | SpecialRange::Unspecified)
    }
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialRange::Unspecified => "unspecified",
            SpecialRange::Loopback => "loopback",
            SpecialRange::Private => "private",
            SpecialRange::SharedNat => "shared (carrier-grade NAT)",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Broadcast => "broadcast",
            SpecialRange::Documentation => "documentation",
            SpecialRange::Reserved => "reserved",
        })
    }
}

/// The special range `ip` lies in, or None for a public address. IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) and NAT64 (`64:ff9b::/96`, RFC 6052) addresses
/// are classified by the IPv4 address they carry.
pub(super) fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped().or_else(|| nat64(v6)) {
            Some(v4) => special_v4(v4),
            None => special_v6(v6),
        },
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    let [a, b, c, _] = ip.octets();
    let range = match (a, b, c) {
        (0, _, _) => SpecialRange::Unspecified,
        (127, _, _) => SpecialRange::Loopback,
        (10, _, _) | (192, 168, _) => SpecialRange::Private,
        (172, 16..=31, _) => SpecialRange::Private,
        (100, 64..=127, _) => SpecialRange::SharedNat,
        (169, 254, _) => SpecialRange::LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => SpecialRange::Documentation,
        (192, 0, 0) | (198, 18..=19, _) => SpecialRange::Reserved,
        (224..=239, _, _) => SpecialRange::Multicast,
        _ if ip.is_broadcast() => SpecialRange::Broadcast,
        (240..=255, _, _) => SpecialRange::Reserved,
        _ => return None,
    };
    Some(range)
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    let s = ip.segments();
    let range = if ip.is_unspecified() {
        SpecialRange::Unspecified
    } else if ip.is_loopback() {
        SpecialRange::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        SpecialRange::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        SpecialRange::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        SpecialRange::Multicast
    } else if (s[0], s[1]) == (0x2001, 0x0db8) || (s[0] == 0x3fff && s[1] & 0xf000 == 0) {
        SpecialRange::Documentation
    } else if s[..6] == [0; 6] || s[..4] == [0x100, 0, 0, 0] {
        SpecialRange::Reserved
    } else {
        return None;
    };
    Some(range)
}

/// The IPv4 address inside a NAT64 well-known-prefix address (`64:ff9b::/96`, RFC 6052 §2.1).
fn nat64(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

#[cfg(test)]
mod tests {
    use super::SpecialRange::*;
    use super::*;

    #[test]
    fn addresses_are_sorted_into_their_ranges() {
        let table: &[(&str, Option<SpecialRange>)] = &[
            // Public: delivered to.
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("9.255.255.255", None),
            ("11.0.0.1", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.1", None),
            ("169.253.255.255", None),
            ("169.255.0.1", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.0.1.1", None),
            ("192.0.3.1", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("203.0.114.1", None),
            ("223.255.255.255", None),
            ("2606:2800:220:1::", None),
            ("2606:2800:220:1:248:1893:25c8:1946", None),
            ("2001:4860:4860::8888", None),
            ("2001:db9::1", None),
            ("fbff::1", None),
            ("fe7f::1", None),
            ("3ff0::1", None),
            ("3fff:1000::1", None),
            ("::ffff:93.184.216.34", None),
            ("64:ff9b::808:808", None),
            // Refused.
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:2", Some(Loopback)),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:192.168.0.1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fd12:3456:789a::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("100.64.0.1", Some(SharedNat)),
            ("100.127.255.255", Some(SharedNat)),
            ("169.254.169.254", Some(LinkLocal)),
            ("::ffff:169.254.0.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.255", Some(Documentation)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff:fff::1", Some(Documentation)),
            ("192.0.0.8", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("::7f00:1", Some(Reserved)),
        ];
        for (text, expected) in table {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(special_range(ip), *expected, "{text}");
        }
    }

    #[test]
    fn only_loopback_and_unspecified_addresses_are_this_machine() {
        assert!(Loopback.is_this_machine() && Unspecified.is_this_machine());
        assert!(!Private.is_this_machine() && !LinkLocal.is_this_machine());
    }
}
