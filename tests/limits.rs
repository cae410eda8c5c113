//! Sending limits and the storage quota through the real binary: SMTP submission (swaks)
//! and web compose (group expansion included) refused with their codes past recipients
//! per message, messages per hour and recipients per day, with nothing half-sent; a full
//! account gets no new mail (452 4.2.2 at RCPT), cannot send (552 5.2.2) or upload (413).

mod common;

use common::{Server, User, swaks};
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

/// Submits a message from `user` to `to` over STARTTLS with AUTH.
fn submit(server: &Server, user: &str, to: &[&str]) -> (bool, String) {
    let from = format!("{user}@localhost");
    let mut args = vec!["--tls", "--auth", "PLAIN", "--auth-user", user, "--auth-password", PW, "--from", &from];
    let list = to.join(",");
    args.extend(["--to", &list, "--header", "Subject: limits"]);
    swaks(server.submission.expect("submission door"), &args)
}

async fn count(user: &User<'_>, role: &str) -> usize {
    let list = user.ok(Method::GET, &format!("/api/v1/mail/messages?role={role}"), None).await;
    list["messages"].as_array().map_or(0, Vec::len)
}

async fn queued(user: &User<'_>) -> usize {
    let list = user.ok(Method::GET, "/api/v1/mail/queue", None).await;
    list.as_array().or_else(|| list["messages"].as_array()).map_or(0, Vec::len)
}

const LIMITS: &str = "[sending]\nmessages_per_hour = 3\nrecipients_per_day = 5\nrecipients_per_message = 3\n";

#[tokio::test]
async fn smtp_submission_stops_at_each_sending_limit_with_its_code_and_sends_nothing_half() {
    let server = Server::start_with(LIMITS);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let carol = User::new(&server, "carol").await;

    // Four recipients where three are allowed: refused whole, delivered to nobody.
    let (ok, t) = submit(&server, "ada", &["bob@localhost", "carol@localhost", "x@remote.test", "y@remote.test"]);
    assert!(!ok && t.contains("550 5.5.3"), "too many recipients: {t}");
    assert_eq!((count(&ada, "sent").await, count(&bob, "inbox").await, queued(&ada).await), (0, 0, 0));

    // 3 + 2 recipients fill the day's 5; one more is refused with Gmail's 5.4.5.
    assert!(submit(&server, "ada", &["bob@localhost", "carol@localhost", "x@remote.test"]).0);
    assert!(submit(&server, "ada", &["bob@localhost", "carol@localhost"]).0);
    let (ok, t) = submit(&server, "ada", &["bob@localhost"]);
    assert!(!ok && t.contains("550 5.4.5") && t.contains("5 recipients per day"), "daily limit: {t}");
    assert_eq!(count(&ada, "sent").await, 2, "the refused message left no Sent copy");
    assert_eq!((count(&bob, "inbox").await, count(&carol, "inbox").await), (2, 2));
    assert_eq!(queued(&ada).await, 1, "only the accepted message went to the queue");

    // Messages per hour: carol's fourth message in the hour waits (a temporary 451).
    for _ in 0..3 {
        assert!(submit(&server, "carol", &["bob@localhost"]).0);
    }
    let (ok, t) = submit(&server, "carol", &["bob@localhost"]);
    assert!(!ok && t.contains("451 4.7.0") && t.contains("3 messages per hour"), "hourly limit: {t}");
    assert_eq!(count(&carol, "sent").await, 3);
}

#[tokio::test]
async fn web_compose_counts_group_members_and_answers_413_and_429() {
    let server = Server::start_with(LIMITS);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let mut ids = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let c = ada
            .ok(Method::POST, "/api/v1/contacts", Some(json!({"name": name, "emails": [format!("{name}@localhost")]})))
            .await;
        ids.push(c["id"].clone());
    }
    ada.ok(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "Everyone", "member_ids": ids}))).await;

    // One group name, four members: over three recipients per message.
    let draft = json!({"to": ["Everyone"], "subject": "All hands", "text": "hi"});
    let (status, v) = ada.json(Method::POST, "/api/v1/mail/send", Some(draft)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_many_recipients", "{v}");
    assert_eq!((count(&ada, "sent").await, count(&bob, "inbox").await), (0, 0), "nothing half-sent");

    for i in 0..3 {
        let draft = json!({"to": ["bob@localhost"], "subject": format!("n{i}"), "text": "hi"});
        ada.ok(Method::POST, "/api/v1/mail/send", Some(draft)).await;
    }
    let draft = json!({"to": ["bob@localhost"], "subject": "one too many", "text": "hi"});
    let r = ada.req(Method::POST, "/api/v1/mail/send").json(&draft).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After within the hour: {retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "sending_limit", "{v}");
    assert_eq!(count(&bob, "inbox").await, 3);
}

#[tokio::test]
async fn a_full_account_gets_no_new_mail_and_cannot_send_or_upload() {
    let server = Server::start_with("[quota]\nstorage_mb = 1\n");
    let ada = User::new(&server, "ada").await;
    let _bob = User::new(&server, "bob").await;
    let upload = |size: usize| ada.req(Method::POST, "/api/v1/mail/uploads").body(vec![b'x'; size]).send();

    // 900 KiB fits in 1 MiB; another 200 KiB does not.
    assert_eq!(upload(900 * 1024).await.unwrap().status(), 201);
    let r = upload(200 * 1024).await.unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "over_quota", "{v}");

    // Sending: a message of 150 KiB would not fit in ada's Sent.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "y".repeat(150 * 1024)).unwrap();
    let attach = format!("@{}", big.display());
    let (ok, t) = swaks(
        server.submission.unwrap(),
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "ada",
            "--auth-password",
            PW,
            "--from",
            "ada@localhost",
            "--to",
            "bob@localhost",
            "--attach",
            &attach,
        ],
    );
    assert!(!ok && t.contains("552 5.2.2"), "sender over quota: {t}");

    // Fill the rest: new mail for ada waits at RCPT with 452 4.2.2; bob still gets mail.
    assert_eq!(upload(124 * 1024).await.unwrap().status(), 201, "exactly up to the limit");
    let (ok, t) = swaks(server.smtp.unwrap(), &["--from", "carol@remote.test", "--to", "ada@localhost"]);
    assert!(!ok && t.contains("452 4.2.2"), "recipient over quota: {t}");
    let (ok, t) = swaks(server.smtp.unwrap(), &["--from", "carol@remote.test", "--to", "bob@localhost"]);
    assert!(ok, "others are not affected: {t}");
}
