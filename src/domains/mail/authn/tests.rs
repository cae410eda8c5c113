//! Tests of the inbound authentication checks against the loopback DNS stand-in: garbage
//! gets none/permerror without panicking, a signed message from an authorised address
//! passes SPF, DKIM and DMARC, a tampered one from elsewhere fails them, the delivery's
//! parse gives the same verdict as the raw bytes, and repeated look-ups (positive or
//! NXDOMAIN) are answered from the caches.

use std::net::{IpAddr, Ipv4Addr};

use super::{AuthVerdict, DmarcPolicy, InboundAuth, Outcome, Sender};
use crate::domains::mail::config::DnsConfig;
use crate::domains::mail::dns::Dns;
use crate::domains::mail::dns::standin::DnsStandIn;
use crate::domains::mail::outbound::dkim::{DkimKey, test_key};
use crate::domains::mail::parse;

const ALLOWED: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn checker(dns: &DnsStandIn) -> InboundAuth {
    let dns = Dns::new(&DnsConfig { nameservers: vec![dns.addr.to_string()] }).expect("resolver");
    InboundAuth::new(dns, "mx.postcast.test")
}

fn well_formed(v: &AuthVerdict) {
    assert!(v.header.starts_with("Authentication-Results: mx.postcast.test;"), "{}", v.header);
    assert!(v.header.ends_with("\r\n"), "{:?}", v.header);
    let body = &v.header[..v.header.len() - 2];
    for line in body.split("\r\n").skip(1) {
        assert!(line.starts_with('\t'), "continuation lines are folded: {:?}", v.header);
    }
    assert!(!body.replace("\r\n", "").contains(['\r', '\n']), "no bare CR or LF: {:?}", v.header);
}

#[tokio::test]
async fn garbage_gets_none_or_permerror_and_never_panics() {
    let dns = DnsStandIn::start();
    let auth = checker(&dns);
    let inputs: [&[u8]; 5] = [
        b"",
        b"\x00\xff\xfe garbage without any header",
        b"From:\r\n\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; b=!!!; bh=???\r\nFrom: <@>\r\n\r\nbody",
        b"\r\n\r\n\r\n",
    ];
    for raw in inputs {
        let v = auth.check(raw, STRANGER, "", "").await;
        well_formed(&v);
        assert!(matches!(v.dkim, Outcome::None | Outcome::PermError | Outcome::Neutral), "{v:?}");
        assert!(matches!(v.dmarc, Outcome::None | Outcome::PermError), "{v:?}");
        assert_ne!(v.spf, Outcome::Pass, "{v:?}");
        assert!(v.dkim_domains.is_empty());
    }
    let v = auth.check(b"", STRANGER, "helo.nowhere.test", "someone@nowhere.test").await;
    assert_eq!((v.dkim, v.dmarc), (Outcome::None, Outcome::PermError), "{v:?}");
    assert!(v.header.contains("dkim=none") && v.header.contains("dmarc=permerror"), "{}", v.header);
    assert_eq!(v.spf, Outcome::None, "a domain that does not exist has no SPF policy");
}

fn publish(dns: &DnsStandIn, key: &DkimKey) {
    dns.add_txt(&key.record_name(), &key.record_value());
    dns.add_txt("sender.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("_dmarc.sender.test", "v=DMARC1; p=reject; adkim=s; aspf=s");
}

fn signed_message(key: &DkimKey) -> Vec<u8> {
    let raw = b"From: Ann <ann@sender.test>\r\nTo: bob@postcast.test\r\nSubject: signed\r\n\
        Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nHello Bob.\r\n";
    key.sign(raw).expect("sign")
}

#[tokio::test]
async fn a_signed_message_from_an_allowed_address_passes_everything() {
    let dns = DnsStandIn::start();
    let key = DkimKey::from_pem(test_key::pem(), "sender.test", "postcast").expect("key");
    publish(&dns, &key);
    let v = checker(&dns).check(&signed_message(&key), ALLOWED, "mx.sender.test", "ann@sender.test").await;
    well_formed(&v);
    assert_eq!((v.spf, v.dkim, v.dmarc), (Outcome::Pass, Outcome::Pass, Outcome::Pass), "{v:?}");
    assert_eq!(v.dkim_domains, vec!["sender.test".to_string()]);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
    assert_eq!(v.from_domain, "sender.test");
    for part in ["spf=pass", "dkim=pass", "header.d=sender.test", "dmarc=pass", "smtp.mailfrom="] {
        assert!(v.header.contains(part), "{part} missing from {}", v.header);
    }
}

#[tokio::test]
async fn a_tampered_message_from_elsewhere_fails() {
    let dns = DnsStandIn::start();
    let key = DkimKey::from_pem(test_key::pem(), "sender.test", "postcast").expect("key");
    publish(&dns, &key);
    let mut raw = signed_message(&key);
    let at = raw.len() - 3;
    raw[at] = b'!';
    let v = checker(&dns).check(&raw, STRANGER, "mx.elsewhere.test", "ann@sender.test").await;
    well_formed(&v);
    assert_eq!(v.spf, Outcome::Fail, "{v:?}");
    assert_ne!(v.dkim, Outcome::Pass, "{v:?}");
    assert!(v.dkim_domains.is_empty());
    assert_eq!(v.dmarc, Outcome::Fail, "{v:?}");
    assert!(v.header.contains("dmarc=fail"), "{}", v.header);
}

#[tokio::test]
async fn the_delivery_parse_gives_the_raw_verdict_and_repeats_ask_no_more_dns() {
    let dns = DnsStandIn::start();
    let key = DkimKey::from_pem(test_key::pem(), "sender.test", "postcast").expect("key");
    publish(&dns, &key);
    let auth = checker(&dns);
    let mut tampered = signed_message(&key);
    let at = tampered.len() - 3;
    tampered[at] = b'!';
    for (raw, peer) in [(signed_message(&key), ALLOWED), (tampered, STRANGER)] {
        let parsed = parse::message(&raw).expect("mail-parser reads it");
        let sender = Sender { peer, helo: "mx.sender.test", mail_from: "ann@sender.test" };
        let from_parse = auth.check_parsed(&parsed, &raw, sender).await;
        let asked = dns.queries();
        let from_bytes = auth.check(&raw, peer, "mx.sender.test", "ann@sender.test").await;
        assert_eq!(from_parse, from_bytes);
        assert_eq!(dns.queries(), asked, "the second check is answered from the caches");
        let expected = if peer == ALLOWED { Outcome::Pass } else { Outcome::Fail };
        assert_eq!((from_parse.spf, from_parse.dmarc), (expected, expected), "{from_parse:?}");
    }
}

#[tokio::test]
async fn an_unknown_sender_domain_is_asked_about_once() {
    let dns = DnsStandIn::start();
    let auth = checker(&dns);
    let raw = b"From: <load@remote.example>\r\nTo: bob@postcast.test\r\nSubject: hi\r\n\r\nbody\r\n";
    let first = auth.check(raw, STRANGER, "client.example", "load@remote.example").await;
    let asked = dns.queries();
    assert!(asked > 0, "the first message asks");
    for _ in 0..20 {
        let again = auth.check(raw, STRANGER, "client.example", "load@remote.example").await;
        assert_eq!(again, first);
    }
    assert_eq!(dns.queries(), asked, "NXDOMAIN answers are kept like positive ones");
}

#[test]
fn results_claiming_our_name_are_stripped_and_others_kept() {
    use super::strip_forged_results;
    let raw = b"Authentication-Results: MX.postcast.test; dkim=pass;\r\n\tdmarc=pass\r\n\
From: a@b.example\r\n\
Authentication-Results: relay.example; spf=pass\r\n\
Authentication-Results:mx.postcast.test;spf=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.postcast.test; in the body stays\r\n";
    let out = String::from_utf8(strip_forged_results(raw, "mx.postcast.test").expect("two forged fields")).unwrap();
    assert_eq!(
        out,
        "From: a@b.example\r\nAuthentication-Results: relay.example; spf=pass\r\nSubject: hi\r\n\r\n\
         Authentication-Results: mx.postcast.test; in the body stays\r\n"
    );
    assert!(strip_forged_results(b"From: a@b\r\n\r\nbody", "mx.postcast.test").is_none());
    assert!(
        strip_forged_results(b"Authentication-Results: mx.postcast.testing; x\r\n\r\n", "mx.postcast.test").is_none()
    );
}
