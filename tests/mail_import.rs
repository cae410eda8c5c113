//! Mail import and export through the real binary: `postcast import mbox|maildir` and
//! `postcast export mbox` on a data folder, then the result read back over the HTTP API of
//! a server started on that folder.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use common::{Server, output_text, postcast_cli};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const MESSAGES: usize = 1000;

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", output_text(&o));
    output_text(&o)
}

/// Message `i` of the generated mailbox, with LF lines as mbox files have them.
fn message(i: usize) -> String {
    let mut m = format!("From: Sender {i} <s{i}@example.org>\nTo: ada@localhost\nSubject: Message #{i}\n");
    if i % 10 != 3 {
        m.push_str(&format!("Message-ID: <m{i}@example.org>\n"));
    }
    m.push_str("Date: Mon, 15 Jan 2018 15:30:00 +0000\n");
    if i.is_multiple_of(13) {
        m.push_str(&format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n\
Content-Type: text/plain; charset=utf-8\n\nSee the file {i}.\n--b{i}\n\
Content-Type: application/octet-stream; name=\"f{i}.bin\"\nContent-Disposition: attachment; filename=\"f{i}.bin\"\n\
Content-Transfer-Encoding: base64\n\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n--b{i}--\n"
        ));
    } else {
        m.push_str(&format!("\nHello number {i}.\n"));
    }
    if i.is_multiple_of(7) {
        m.push_str(&format!("From the archive, line {i}\n>From a quoted reply\n"));
    }
    m
}

/// An mboxrd file of every message (written here, not by the code under test).
fn mbox() -> String {
    let mut out = String::new();
    for i in 0..MESSAGES {
        out.push_str(&format!("From s{i}@example.org Mon Jan 15 15:{:02}:00 2018\n", i % 60));
        for line in message(i).lines() {
            if line.trim_start_matches('>').starts_with("From ") {
                out.push('>');
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn maildir(root: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (file, subject) in [
        ("cur/1.a.host:2,S", "md-seen"),
        ("cur/2.b.host:2,FS", "md-starred"),
        ("cur/3.c.host:2,RS", "md-answered"),
        ("cur/4.d.host:2,D", "md-draft"),
        ("new/5.e.host", "md-new"),
    ] {
        let m = format!("From: eve@e.test\nSubject: {subject}\nMessage-ID: <{subject}@e.test>\n\nhi\n");
        std::fs::write(root.join(file), m).unwrap();
    }
}

/// Every message of a mailbox: subject → summary.
async fn list(s: &Server, token: &str, mailbox: i64) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = s.url(&format!("/api/v1/mail/messages?mailbox={mailbox}&limit=200"));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = s.user(token).get(url).send().await.unwrap().json().await.unwrap();
        for m in page["messages"].as_array().unwrap() {
            out.insert(m["subject"].as_str().unwrap().to_owned(), m.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// (id, total, unread) of the mailbox called `name`.
async fn mailbox(s: &Server, token: &str, name: &str) -> (i64, i64, i64) {
    let boxes: Value = s.user(token).get(s.url("/api/v1/mail/mailboxes")).send().await.unwrap().json().await.unwrap();
    let b = boxes.as_array().unwrap().iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{name}: {boxes}"));
    (b["id"].as_i64().unwrap(), b["total"].as_i64().unwrap(), b["unread"].as_i64().unwrap())
}

async fn raw(s: &Server, token: &str, id: i64) -> Vec<u8> {
    let r = s.user(token).get(s.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn import_is_idempotent_keeps_flags_and_export_round_trips() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let work = tempfile::tempdir().unwrap();
    for name in ["ada", "bob"] {
        ok(postcast_cli(d, &["user", "add", name], Some(&format!("{PASSWORD}\n"))));
    }
    let file = work.path().join("big.mbox");
    std::fs::write(&file, mbox()).unwrap();
    let file = file.to_str().unwrap();

    let started = std::time::Instant::now();
    let out = ok(postcast_cli(d, &["import", "mbox", file, "--user", "ada"], None));
    let elapsed = started.elapsed().as_secs_f64();
    assert!(out.contains("imported 1000, skipped 0 (duplicates), failed 0"), "{out}");
    let took = out.lines().find(|l| l.starts_with("took")).unwrap_or_default();
    eprintln!("1,000-message mbox import: {elapsed:.2} s with the process; import itself {took}");
    let out = ok(postcast_cli(d, &["import", "mbox", file, "--user", "ada"], None));
    assert!(out.contains("imported 0, skipped 1000 (duplicates), failed 0"), "{out}");

    let md = work.path().join("Maildir");
    maildir(&md);
    let out =
        ok(postcast_cli(d, &["import", "maildir", md.to_str().unwrap(), "--user", "ada", "--mailbox", "Old"], None));
    assert!(out.contains("imported 5, skipped 0 (duplicates), failed 0"), "{out}");

    let exported = work.path().join("ada.mbox");
    let out = ok(postcast_cli(
        d,
        &["export", "mbox", "--user", "ada", "--mailbox", "inbox", "--out", exported.to_str().unwrap()],
        None,
    ));
    assert!(out.contains("exported 1000 message(s)"), "{out}");
    let out = ok(postcast_cli(d, &["import", "mbox", exported.to_str().unwrap(), "--user", "bob"], None));
    assert!(out.contains("imported 1000, skipped 0 (duplicates), failed 0"), "{out}");
    let to_stdout = postcast_cli(d, &["export", "mbox", "--user", "ada", "--mailbox", "Old"], None);
    assert!(to_stdout.status.success(), "{}", output_text(&to_stdout));
    let stdout = String::from_utf8(to_stdout.stdout).unwrap();
    assert_eq!(stdout.matches("\nFrom eve@e.test ").count() + usize::from(stdout.starts_with("From ")), 5, "{stdout}");

    let o = postcast_cli(d, &["import", "mbox", file, "--user", "nobody"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("no user named"), "{}", output_text(&o));
    let o = postcast_cli(d, &["export", "mbox", "--user", "ada", "--mailbox", "Nope"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("no mailbox named"), "{}", output_text(&o));

    let s = Server::start_in(data, "");
    let (ada, bob) = (s.login("ada", PASSWORD).await, s.login("bob", PASSWORD).await);
    let (ada_inbox, total, unread) = mailbox(&s, &ada, "INBOX").await;
    assert_eq!((total, unread), (1000, 1000));
    let (bob_inbox, total, _) = mailbox(&s, &bob, "INBOX").await;
    assert_eq!(total, 1000);
    let (old, total, unread) = mailbox(&s, &ada, "Old").await;
    assert_eq!((total, unread), (5, 2));

    let flags = list(&s, &ada, old).await;
    let has = |subject: &str, flag: &str| flags[subject][flag].as_bool().unwrap();
    assert!(has("md-seen", "seen") && !has("md-seen", "starred"));
    assert!(has("md-starred", "starred") && has("md-starred", "seen"));
    assert!(has("md-answered", "answered"));
    assert!(has("md-draft", "draft") && !has("md-draft", "seen"));
    assert!(!has("md-new", "seen") && !has("md-new", "draft"));

    let (ada_list, bob_list) = (list(&s, &ada, ada_inbox).await, list(&s, &bob, bob_inbox).await);
    assert_eq!((ada_list.len(), bob_list.len()), (MESSAGES, MESSAGES), "every subject once");
    for i in (0..MESSAGES).filter(|i| i.is_multiple_of(7) || i % 10 == 3 || i.is_multiple_of(13)) {
        let subject = format!("Message #{i}");
        let a = raw(&s, &ada, ada_list[&subject]["id"].as_i64().unwrap()).await;
        let b = raw(&s, &bob, bob_list[&subject]["id"].as_i64().unwrap()).await;
        assert_eq!(a, b, "{subject} survives export and import byte for byte");
        assert_eq!(a, message(i).replace('\n', "\r\n").into_bytes(), "{subject} is stored as written");
        assert_eq!(ada_list[&subject]["has_attachments"].as_bool(), Some(i.is_multiple_of(13)), "{subject}");
    }
    let id = ada_list["Message #13"]["id"].as_i64().unwrap();
    let view: Value =
        s.user(&ada).get(s.url(&format!("/api/v1/mail/messages/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["attachments"][0]["name"], "f13.bin");
    assert_eq!(view["attachments"][0]["size"], 32);
}
