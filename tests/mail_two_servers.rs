//! Two postcast servers with different domains on loopback mail each other: a user of A
//! writes to a user of B through A's outbound queue (DKIM-signed, MX via `mx_override`),
//! B checks SPF, DKIM and DMARC against a loopback DNS stand-in and records a pass, and
//! the reply comes back into the same thread on A.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::dns::DnsStandIn;
use postcast::domains::mail::outbound::dkim::{DkimKey, key_path};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

fn config(domain: &str, dns: &DnsStandIn, peer_domain: &str, peer: std::net::SocketAddr) -> String {
    format!(
        "[server]\ndomain = \"{domain}\"\n\n{}\n[outbound]\nallow_private_targets = true\nretry_base_seconds = 1\n\
         retry_max_seconds = 1\n\n[outbound.mx_override]\n\"{peer_domain}\" = \"{peer}\"\n",
        dns.config()
    )
}

fn publish(dns: &DnsStandIn, server: &Server, domain: &str) {
    let pem = std::fs::read_to_string(key_path(server.data.path(), "postcast")).unwrap();
    let key = DkimKey::from_pem(&pem, domain, "postcast").unwrap();
    dns.add_txt(&format!("postcast._domainkey.{domain}"), &key.record_value());
    dns.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt(&format!("_dmarc.{domain}"), "v=DMARC1; p=reject");
}

async fn wait_for_inbox(server: &Server, client: &reqwest::Client) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value =
            client.get(server.url("/api/v1/mail/messages?role=inbox")).send().await.unwrap().json().await.unwrap();
        let list = page["messages"].as_array().unwrap().clone();
        if !list.is_empty() {
            return list;
        }
        assert!(Instant::now() < deadline, "nothing arrived within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_servers_mail_each_other_with_dkim_pass_and_threaded_replies() {
    let dns = DnsStandIn::start();
    let (port_a, port_b) = (Server::free_port(), Server::free_port());
    let a = Server::start_on(tempfile::tempdir().unwrap(), &config("a.test", &dns, "b.test", port_b), Some(port_a));
    let b = Server::start_on(tempfile::tempdir().unwrap(), &config("b.test", &dns, "a.test", port_a), Some(port_b));
    publish(&dns, &a, "a.test");
    publish(&dns, &b, "b.test");
    let ada = a.user(&a.register_and_login("ada", PW).await);
    let bob = b.user(&b.register_and_login("bob", PW).await);

    let draft = json!({"to": ["Bob <bob@b.test>"], "subject": "Across servers", "text": "Hello from A."});
    let sent: Value = ada.post(a.url("/api/v1/mail/send")).json(&draft).send().await.unwrap().json().await.unwrap();
    assert!(sent["queued"].is_i64(), "{sent}");

    let arrived = wait_for_inbox(&b, &bob).await;
    assert_eq!(arrived[0]["subject"], "Across servers");
    assert_eq!(arrived[0]["from"]["address"], "ada@a.test");
    let id = arrived[0]["id"].as_i64().unwrap();
    let raw = bob.get(b.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap().text().await.unwrap();
    let results = raw.split("\r\n\r\n").next().unwrap();
    assert!(results.contains("Authentication-Results: b.test;"), "{results}");
    assert!(results.contains("dkim=pass"), "{results}");
    assert!(results.contains("spf=pass"), "{results}");
    assert!(results.contains("dmarc=pass"), "{results}");
    assert!(results.contains("DKIM-Signature:"), "{results}");

    let reply = json!({"to": ["ada@a.test"], "text": "Hello back.", "reply_to_id": id});
    let r = bob.post(b.url("/api/v1/mail/send")).json(&reply).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let back = wait_for_inbox(&a, &ada).await;
    assert_eq!(back[0]["subject"], "Re: Across servers");
    assert_eq!(back[0]["thread_id"], sent["thread_id"], "the reply lands in ada's thread");
    let queue: Value = ada.get(a.url("/api/v1/mail/queue")).send().await.unwrap().json().await.unwrap();
    assert!(queue.to_string().contains("delivered"), "{queue}");
}
