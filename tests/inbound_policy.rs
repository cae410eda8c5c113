//! What the real binary does with mail from other servers that fails authentication, with
//! the DNS stand-in publishing SPF and DMARC records: `p=reject` is refused with
//! 550 5.7.1 at the end of DATA (or filed in Spam when `inbound.dmarc_reject = "spam"`),
//! `p=quarantine` goes to Spam, `p=none` and passing mail to the Inbox, and mail claiming
//! this server's own domain from outside never reaches an Inbox.

mod common;

use std::net::SocketAddr;

use common::dns::DnsStandIn;
use common::{Server, User, swaks};
use reqwest::Method;

/// Sends a message `From: from` to bob through the inbound door, with `mail_from` as the
/// envelope sender; returns (accepted, transcript).
fn send(smtp: SocketAddr, mail_from: &str, from: &str, subject: &str) -> (bool, String) {
    let (header, from_header) = (format!("Subject: {subject}"), format!("From: {from}"));
    swaks(smtp, &["--from", mail_from, "--to", "bob@localhost", "--header", &header, "--header", &from_header])
}

/// The subjects in bob's mailbox of `role`.
async fn subjects(bob: &User<'_>, role: &str) -> Vec<String> {
    let list = bob.ok(Method::GET, &format!("/api/v1/mail/messages?role={role}"), None).await;
    let mut out: Vec<String> =
        list["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap_or("").to_owned()).collect();
    out.sort();
    out
}

/// A stand-in where every sender domain allows only 192.0.2.1 (so mail from 127.0.0.1
/// fails SPF and, unsigned, fails DMARC) and publishes the given DMARC policy.
fn zone() -> DnsStandIn {
    let dns = DnsStandIn::start();
    for (domain, policy) in [("strict.test", "reject"), ("careful.test", "quarantine"), ("relaxed.test", "none")] {
        dns.add_txt(domain, "v=spf1 ip4:192.0.2.1 -all");
        dns.add_txt(&format!("_dmarc.{domain}"), &format!("v=DMARC1; p={policy}"));
    }
    // A domain whose SPF allows the test client: its mail passes DMARC.
    dns.add_txt("good.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("_dmarc.good.test", "v=DMARC1; p=reject");
    dns
}

#[tokio::test]
async fn dmarc_policies_are_applied_and_our_own_domain_cannot_be_spoofed_into_the_inbox() {
    let dns = zone();
    let server = Server::start_with(&dns.config());
    let bob = User::new(&server, "bob").await;
    let smtp = server.smtp.unwrap();

    let (ok, t) = send(smtp, "ceo@strict.test", "ceo@strict.test", "reject me");
    assert!(!ok && t.contains("550 5.7.1") && t.contains("DMARC policy of strict.test"), "p=reject: {t}");
    assert!(send(smtp, "news@careful.test", "news@careful.test", "quarantine me").0);
    assert!(send(smtp, "news@relaxed.test", "news@relaxed.test", "monitor only").0);
    assert!(send(smtp, "anna@good.test", "anna@good.test", "authenticated").0);
    // From outside, claiming to be one of this server's users, unsigned.
    assert!(send(smtp, "eve@relaxed.test", "Bob's boss <boss@localhost>", "spoofed boss").0);

    assert_eq!(subjects(&bob, "inbox").await, ["authenticated", "monitor only"]);
    assert_eq!(subjects(&bob, "spam").await, ["quarantine me", "spoofed boss"]);
}

#[tokio::test]
async fn with_dmarc_reject_set_to_spam_p_reject_failures_are_filed_in_spam() {
    let dns = zone();
    let server = Server::start_with(&format!("{}\n[inbound]\ndmarc_reject = \"spam\"\n", dns.config()));
    let bob = User::new(&server, "bob").await;
    let (ok, t) = send(server.smtp.unwrap(), "ceo@strict.test", "ceo@strict.test", "reject me");
    assert!(ok, "accepted: {t}");
    assert_eq!(subjects(&bob, "spam").await, ["reject me"]);
    assert!(subjects(&bob, "inbox").await.is_empty());
}
