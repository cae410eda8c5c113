//! Load figures of the mail store: fills one mailbox with 100,000 messages (1–10 KB,
//! stored durably through the group-committed store), then times 2,000 reads of a
//! 50-message page (the first page and pages deep in the mailbox, through the cursor)
//! including the JSON encoding the API does, and prints p50/p95/p99 and the process's
//! resident memory. Run with `cargo bench --bench mail_page` (MESSAGES=N to change the size).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use postcast::config::Config;
use postcast::domains::auth::ClientInfo;
use postcast::domains::mail::store::{NewMessage, Target};
use postcast::domains::mail::view::Scope;
use postcast::domains::mail::{Role, parse};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let services = postcast::app::build(config).await.unwrap();
    let user =
        services.auth.create_user("bench", "correct horse battery", &ClientInfo::local("bench")).await.unwrap().id;
    let mail = services.mail.clone();

    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..total {
        if in_flight.len() >= 64 {
            in_flight.join_next().await.unwrap().unwrap();
        }
        let mail = mail.clone();
        in_flight.spawn(async move {
            let body = "lorem ipsum dolor sit amet ".repeat(40 + (i * 7919) % 330);
            let raw = format!(
                "From: Sender {i} <s{i}@example.org>\r\nTo: bench@localhost\r\nSubject: Message number {i}\r\n\
Message-ID: <{i}@bench>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
            );
            let meta = Arc::new(parse::meta(raw.as_bytes()));
            let mut new = NewMessage::new(user, Target::Role(Role::Inbox));
            new.internal_date = 1_790_000_000 + i as i64;
            mail.store(Bytes::from(raw), meta, vec![new]).await.unwrap();
        });
    }
    while let Some(r) = in_flight.join_next().await {
        r.unwrap();
    }
    let fill = started.elapsed().as_secs_f64();
    println!("stored {total} messages in {fill:.1} s ({:.0} messages/s, durable, 64 in flight)", total as f64 / fill);

    let inbox = mail.role_mailbox(user, Role::Inbox).await.unwrap();
    // Cursors spread through the mailbox, gathered by walking it once.
    let mut cursors = vec![None];
    let mut cursor = None;
    while let Some(c) = mail.list(user, Scope::Mailbox(inbox), cursor.as_deref(), 200).await.unwrap().next_cursor {
        cursors.push(Some(c.clone()));
        cursor = Some(c);
    }
    let mut times = Vec::with_capacity(2000);
    for i in 0..2000 {
        let cursor = &cursors[(i * 31) % cursors.len()];
        let t = Instant::now();
        let page = mail.list(user, Scope::Mailbox(inbox), cursor.as_deref(), 50).await.unwrap();
        let json = serde_json::to_vec(&page).unwrap();
        std::hint::black_box(json);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "50-message page of {total}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (2,000 pages at {} depths)",
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
        cursors.len()
    );
    let counts = Instant::now();
    let boxes = mail.mailboxes(user).await.unwrap();
    println!(
        "mailbox list with counts: {:.1} ms ({} in INBOX)",
        counts.elapsed().as_secs_f64() * 1000.0,
        boxes[0].total
    );
    println!("resident memory: {:.0} MB", rss_mb());
}
