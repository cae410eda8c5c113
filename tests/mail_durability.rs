//! "A message acknowledged with 250 survives `kill -9`": several SMTP sessions deliver to
//! the real binary while it is killed with SIGKILL at a random moment; after a restart on
//! the same data folder every message that got its 250 is there exactly once, and its raw
//! message (the blob behind the row) reads back whole through the HTTP API.

mod common;

use std::sync::{Arc, Mutex};

use common::Server;
use rand::Rng;

const PW: &str = "correct horse battery";
const SESSIONS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_exactly_once() {
    // mail-send builds a TLS config even for plain connections.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start();
    server.register_and_login("bob", PW).await;
    let port = server.smtp.unwrap().port();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let kill_after = rand::thread_rng().gen_range(40..160);
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let acked = acked.clone();
        sessions.push(tokio::spawn(async move {
            let builder = mail_send::SmtpClientBuilder::new("127.0.0.1", port).unwrap().implicit_tls(false).helo_host("load.test");
            let Ok(mut client) = builder.connect_plain().await else { return };
            for n in 0.. {
                let subject = format!("durable-{s}-{n}");
                let size = 1000 + (n * 997) % 9000;
                let body = format!(
                    "From: load@load.test\r\nTo: bob@localhost\r\nSubject: {subject}\r\nMessage-ID: <{subject}@load.test>\r\n\r\n{}\r\n",
                    "x".repeat(size)
                );
                let message = mail_send::smtp::message::Message::new("load@load.test", ["bob@localhost"], body.into_bytes());
                if client.send(message).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push(subject);
            }
        }));
    }
    // Kill once enough messages are acknowledged (polling, not sleeping for a fixed time).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < kill_after {
        assert!(std::time::Instant::now() < deadline, "deliveries too slow");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let data = server.stop(); // SIGKILL
    for s in sessions {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= kill_after);

    let server = Server::start_in(data, "");
    let bob = server.login("bob", PW).await;
    let client = server.user(&bob);
    let mut stored = Vec::new();
    let mut ids = std::collections::HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/api/v1/mail/messages?role=inbox&limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for m in page["messages"].as_array().unwrap() {
            let subject = m["subject"].as_str().unwrap().to_owned();
            ids.insert(subject.clone(), m["id"].as_i64().unwrap());
            stored.push(subject);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for subject in &acked {
        let copies = stored.iter().filter(|s| *s == subject).count();
        assert_eq!(copies, 1, "{subject} was acknowledged, found {copies} times after the restart");
    }
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "no message is stored twice");
    assert!(stored.len() <= acked.len() + SESSIONS, "at most one unacknowledged message per session");
    // The row is not enough: the raw message behind every acknowledged one must read back.
    for subject in &acked {
        let url = server.url(&format!("/api/v1/mail/messages/{}/raw", ids[subject]));
        let response = client.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "raw of {subject}: {}", response.status());
        let raw = response.bytes().await.unwrap();
        let n: usize = subject.rsplit('-').next().unwrap().parse().unwrap();
        let size = 1000 + (n * 997) % 9000;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains(&format!("Message-ID: <{subject}@load.test>")), "raw of {subject} has its header");
        assert!(text.contains(&format!("\r\n\r\n{}\r\n", "x".repeat(size))), "raw of {subject} has its whole body");
    }
    eprintln!("killed after {} acknowledged messages; {} stored", acked.len(), stored.len());
}
