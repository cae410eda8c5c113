//! The SMTP doors through the real binary and Debian's swaks: submission over STARTTLS
//! with AUTH and an attachment, AUTH refused before TLS, no relaying, unknown users,
//! foreign senders, oversize messages, a From that is not exactly one of the user's
//! mailboxes or a foreign Sender, looping messages (too many Received fields), a
//! malformed message that is still stored and readable raw, postmaster@ and abuse@
//! delivered to the administrator, a body past the spool threshold that goes through an
//! unnamed spool file (watched in /proc) and arrives byte-exact, 452 4.3.1 over the memory
//! budget with the session going on, and the session time limit (421 4.4.2).

mod common;

use std::net::SocketAddr;

use common::{Server, swaks};
use serde_json::Value;

const PW: &str = "correct horse battery";

/// swaks arguments that log in as ada with `mechanism` and `password`.
fn as_ada(mechanism: &'static str, password: &'static str) -> [&'static str; 6] {
    ["--auth", mechanism, "--auth-user", "ada", "--auth-password", password]
}

/// Sends `script` on a plain connection and returns everything the server answers.
async fn raw_session(addr: SocketAddr, script: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(script.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(server: &Server, token: &str, path: &str) -> Value {
    let r = server.user(token).get(server.url(path)).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn inbox(server: &Server, token: &str, role: &str) -> Vec<Value> {
    get(server, token, &format!("/api/v1/mail/messages?role={role}")).await["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn swaks_submits_over_starttls_with_auth_and_an_attachment() {
    let server = Server::start();
    let ada = server.register_and_login("ada", PW).await;
    let bob = server.register_and_login("bob", PW).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("figures.csv");
    std::fs::write(&csv, "month,total\njan,12\nfeb,30\n").unwrap();
    let submission = server.submission.unwrap();
    let (ok, t) = swaks(
        submission,
        &[
            &as_ada("PLAIN", PW)[..],
            &[
                "--tls",
                "--from",
                "ada@localhost",
                "--to",
                "bob@localhost",
                "--header",
                "Subject: Monthly figures",
                "--body",
                "Figures attached.",
                "--attach-type",
                "text/csv",
                "--attach",
                csv.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(ok, "{t}");
    assert!(t.contains("250 2.0.0"), "{t}");

    let received = inbox(&server, &bob, "inbox").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["subject"], "Monthly figures");
    assert_eq!(received[0]["has_attachments"], true);
    let id = received[0]["id"].as_i64().unwrap();
    let view = get(&server, &bob, &format!("/api/v1/mail/messages/{id}")).await;
    assert_eq!(view["attachments"][0]["name"], "figures.csv");
    assert!(view["text"].as_str().unwrap().contains("Figures attached."));
    let file =
        server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/attachments/0"))).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "text/csv");
    assert!(file.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(file.text().await.unwrap(), "month,total\njan,12\nfeb,30\n");
    let raw = server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    let raw = raw.text().await.unwrap();
    assert!(raw.starts_with("Received: from client.test ([127.0.0.1])") && raw.contains("with ESMTPSA"), "{raw}");

    let sent = inbox(&server, &ada, "sent").await;
    assert_eq!(sent.len(), 1, "a copy lands in the sender's Sent");
    assert_eq!(sent[0]["seen"], true);
    assert!(inbox(&server, &ada, "inbox").await.is_empty());
    let other = server.user(&ada).get(server.url(&format!("/api/v1/mail/messages/{id}"))).send().await.unwrap();
    assert_eq!(other.status(), 404, "bob's message is not ada's");

    // The implicit-TLS door takes the same login.
    let (ok, t) = swaks(
        server.submissions.unwrap(),
        &[&as_ada("LOGIN", PW)[..], &["--tls-on-connect", "--from", "ada@localhost", "--to", "bob@localhost"]].concat(),
    );
    assert!(ok, "{t}");
    assert_eq!(inbox(&server, &bob, "inbox").await.len(), 2);
}

#[tokio::test]
async fn refusals_auth_before_tls_relay_unknown_user_foreign_sender_and_oversize() {
    let server = Server::start_with("[smtp]\nmax_message_bytes = 4096\n");
    server.register_and_login("ada", PW).await;
    let bob = server.register_and_login("bob", PW).await;
    let submission = server.submission.unwrap();
    let mx = server.smtp.unwrap();

    // Before TLS, AUTH is not offered (so swaks gives up) and refused when tried anyway.
    let (ok, t) =
        swaks(submission, &[&as_ada("PLAIN", PW)[..], &["--from", "ada@localhost", "--to", "bob@localhost"]].concat());
    assert!(!ok && t.contains("250 STARTTLS") && !t.contains("250-AUTH") && !t.contains("250 AUTH"), "{t}");
    let reply =
        raw_session(submission, "EHLO client.test\r\nAUTH PLAIN AGFkYQBjb3JyZWN0IGhvcnNlIGJhdHRlcnk=\r\nQUIT\r\n")
            .await;
    assert!(reply.contains("530 5.7.0"), "AUTH before STARTTLS must be refused: {reply}");
    let (ok, t) = swaks(
        submission,
        &[&as_ada("PLAIN", "wrong")[..], &["--tls", "--from", "ada@localhost", "--to", "bob@localhost"]].concat(),
    );
    assert!(!ok && t.contains("535"), "{t}");
    let (ok, t) = swaks(submission, &["--tls", "--from", "ada@localhost", "--to", "bob@localhost"]);
    assert!(!ok && t.contains("530 5.7.0"), "MAIL without AUTH on submission: {t}");

    let (ok, t) = swaks(mx, &["--from", "eve@evil.test", "--to", "victim@elsewhere.test"]);
    assert!(!ok && t.contains("550 5.7.1"), "relay: {t}");
    let (ok, t) = swaks(mx, &["--from", "eve@evil.test", "--to", "nobody@localhost"]);
    assert!(!ok && t.contains("550 5.1.1"), "unknown user: {t}");
    let (ok, t) = swaks(
        submission,
        &[&as_ada("PLAIN", PW)[..], &["--tls", "--from", "bob@localhost", "--to", "bob@localhost"]].concat(),
    );
    assert!(!ok && t.contains("550 5.7.1"), "ada may not send as bob: {t}");
    let (ok, t) = swaks(
        submission,
        &[
            &as_ada("PLAIN", PW)[..],
            &["--tls", "--from", "ada@localhost", "--to", "bob@localhost", "--header", "From: bob@localhost"],
        ]
        .concat(),
    );
    assert!(!ok && t.contains("550 5.7.1"), "the From header must be hers too: {t}");

    let big = "x".repeat(70);
    let body: String = (0..100).map(|_| format!("{big}\n")).collect();
    let (ok, t) = swaks(mx, &["--from", "eve@evil.test", "--to", "bob@localhost", "--body", &body]);
    assert!(!ok && t.contains("552"), "oversize: {t}");
    assert!(inbox(&server, &bob, "inbox").await.is_empty(), "nothing refused was stored");
}

#[tokio::test]
async fn a_malformed_message_is_stored_and_readable_raw() {
    let server = Server::start();
    let bob = server.register_and_login("bob", PW).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broken.eml");
    let broken = "Content-Type: multipart/mixed; boundary=\"never-closed\r\n\r\n--never-closed\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64@@@\r\n\u{1}\u{2} binary junk\r\n";
    std::fs::write(&data, broken).unwrap();
    let (ok, t) =
        swaks(server.smtp.unwrap(), &["--from", "x@y.test", "--to", "bob@localhost", "--data", data.to_str().unwrap()]);
    assert!(ok, "{t}");
    let list = inbox(&server, &bob, "inbox").await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_i64().unwrap();
    let view = get(&server, &bob, &format!("/api/v1/mail/messages/{id}")).await;
    assert_eq!(view["parsed"], false);
    assert!(view["raw"].as_str().unwrap().contains("@@@not base64@@@"), "{view}");
    let raw = server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    let raw = raw.text().await.unwrap();
    assert!(raw.contains("\u{1}\u{2} binary junk"), "{raw:?}");
}

#[tokio::test]
async fn submission_refuses_a_second_from_a_from_list_and_a_foreign_sender() {
    let server = Server::start();
    let ada = server.register_and_login("ada", PW).await;
    let bob = server.register_and_login("bob", PW).await;
    let submission = server.submission.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let send = |name: &str, head: &str| {
        let path = dir.path().join(format!("{name}.eml"));
        let raw =
            format!("{head}To: bob@localhost\r\nSubject: {name}\r\nMessage-ID: <{name}@localhost>\r\n\r\nbody\r\n");
        std::fs::write(&path, raw).unwrap();
        let data = format!("@{}", path.display());
        swaks(
            submission,
            &[
                &as_ada("PLAIN", PW)[..],
                &["--tls", "--from", "ada@localhost", "--to", "bob@localhost", "--data", &data],
            ]
            .concat(),
        )
    };
    for (name, head, reply) in [
        ("two-from", "From: ada@localhost\r\nFrom: ceo@localhost\r\n", "554 5.6.0 Message refused"),
        ("from-list", "From: ada@localhost, ceo@localhost\r\n", "554 5.6.0 Message refused"),
        ("from-group", "From: board: ada@localhost, ceo@localhost;\r\n", "554 5.6.0 Message refused"),
        ("foreign-sender", "From: ada@localhost\r\nSender: bob@localhost\r\n", "550 5.7.1 Sender bob@localhost"),
    ] {
        let (ok, t) = send(name, head);
        assert!(!ok && t.contains(reply), "{name} must get {reply}: {t}");
        assert!(inbox(&server, &ada, "sent").await.is_empty(), "{name}: nothing refused lands in Sent");
        assert!(inbox(&server, &bob, "inbox").await.is_empty(), "{name}: nothing refused is delivered");
    }
    let (ok, t) = send("own-sender", "From: Ada <ada@localhost>\r\nSender: ada+desk@localhost\r\n");
    assert!(ok && t.contains("250 2.0.0"), "her own From and Sender pass: {t}");
    assert_eq!(inbox(&server, &ada, "sent").await.len(), 1);
    assert_eq!(inbox(&server, &bob, "inbox").await.len(), 1);
}

/// A message from `from` to bob whose header section holds `hops` Received fields.
fn looping_message(from: &str, hops: usize) -> String {
    let mut m = String::new();
    for hop in (0..hops).rev() {
        m.push_str(&format!(
            "Received: from relay{hop}.example ([192.0.2.{}])\r\n\tby relay{}.example; Fri, 1 Jan 2027 00:00:{:02} +0000\r\n",
            hop % 250,
            hop + 1,
            hop % 60
        ));
    }
    m.push_str(&format!("From: {from}\r\nTo: bob@localhost\r\nSubject: Hop {hops}\r\n\r\nAround again.\r\n"));
    m
}

#[tokio::test]
async fn a_message_with_more_than_50_received_fields_is_refused_as_a_loop() {
    let server = Server::start();
    server.register_and_login("ada", PW).await;
    let bob = server.register_and_login("bob", PW).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (mx, submission) = (server.smtp.unwrap(), server.submission.unwrap());
    let loop_reply = "554 5.4.6 Too many Received headers: mail loop detected";

    let data = file("51.eml", looping_message("eve@remote.test", 51));
    let (ok, t) = swaks(mx, &["--from", "eve@remote.test", "--to", "bob@localhost", "--data", &data]);
    assert!(!ok && t.contains(loop_reply), "inbound, 51 hops: {t}");
    let data = file("51-sub.eml", looping_message("ada@localhost", 51));
    let (ok, t) = swaks(
        submission,
        &[&as_ada("PLAIN", PW)[..], &["--tls", "--from", "ada@localhost", "--to", "bob@localhost", "--data", &data]]
            .concat(),
    );
    assert!(!ok && t.contains(loop_reply), "submission, 51 hops: {t}");
    assert!(inbox(&server, &bob, "inbox").await.is_empty(), "nothing refused was stored");

    let data = file("50.eml", looping_message("eve@remote.test", 50));
    let (ok, t) = swaks(mx, &["--from", "eve@remote.test", "--to", "bob@localhost", "--data", &data]);
    assert!(ok && t.contains("250 2.0.0"), "inbound, 50 hops: {t}");
    let data = file("50-sub.eml", looping_message("ada@localhost", 50));
    let (ok, t) = swaks(
        submission,
        &[&as_ada("PLAIN", PW)[..], &["--tls", "--from", "ada@localhost", "--to", "bob@localhost", "--data", &data]]
            .concat(),
    );
    assert!(ok && t.contains("250 2.0.0"), "submission, 50 hops: {t}");
    let list = inbox(&server, &bob, "inbox").await;
    assert_eq!(list.len(), 2, "both 50-hop messages are stored");
    let id = list[0]["id"].as_i64().unwrap();
    let raw = server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    let raw = raw.text().await.unwrap();
    let received = raw.lines().filter(|l| l.starts_with("Received:")).count();
    assert_eq!(received, 51, "ours on top of the 50: {raw}");
    let metrics = server.client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "postcast_smtp_loops_total 2"), "both loops counted:\n{metrics}");
}

#[tokio::test]
async fn postmaster_and_abuse_reach_the_administrators_inbox() {
    let server = Server::start();
    let mx = server.smtp.unwrap();
    let to = |rcpt: &str, subject: &str| {
        swaks(mx, &["--from", "reporter@remote.test", "--to", rcpt, "--header", &format!("Subject: {subject}")])
    };

    // An empty server has no administrator: the role names are unknown like any other.
    let (ok, t) = to("postmaster@localhost", "nobody home");
    assert!(!ok && t.contains("550 5.1.1"), "postmaster without an administrator: {t}");

    let admin = server.register_and_login("ada", PW).await;
    let bob = server.register_and_login("bob", PW).await;
    let (ok, t) = to("postmaster@localhost", "Bounce storm");
    assert!(ok && t.contains("250 2.0.0"), "{t}");
    let (ok, t) = to("ABUSE@localhost", "Spam from your network");
    assert!(ok && t.contains("250 2.0.0"), "{t}");
    let reply = raw_session(
        mx,
        "EHLO client.test\r\nMAIL FROM:<r@remote.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<hostmaster@localhost>\r\nQUIT\r\n",
    )
    .await;
    // RFC 5321 §4.5.1: `<Postmaster>` without a domain is accepted too; other role
    // names have no account behind them.
    let rcpts: Vec<&str> = reply.lines().filter(|l| l.contains(" 2.1.5 ") || l.contains(" 5.1.1 ")).collect();
    assert_eq!(rcpts, ["250 2.1.5 Recipient OK", "550 5.1.1 Mailbox unavailable: no such user"], "{reply}");

    let mut subjects: Vec<String> =
        inbox(&server, &admin, "inbox").await.iter().map(|m| m["subject"].as_str().unwrap_or("").to_owned()).collect();
    subjects.sort();
    assert_eq!(subjects, ["Bounce storm", "Spam from your network"]);
    assert!(inbox(&server, &bob, "inbox").await.is_empty(), "only the administrator gets them");

    // A disabled administrator is no administrator: the role names are refused again.
    let data = server.data.path().to_owned();
    let cfg = server.config_path.clone().unwrap();
    let out = common::postcast_cli(&data, &["--config", cfg.to_str().unwrap(), "user", "disable", "ada"], None);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let (ok, t) = to("abuse@localhost", "too late");
    assert!(!ok && t.contains("550 5.1.1"), "abuse without an administrator: {t}");
}

#[tokio::test]
async fn results_forged_in_this_servers_name_are_removed_on_arrival() {
    let server = Server::start();
    let bob = server.register_and_login("bob", PW).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("forged.eml");
    std::fs::write(
        &data,
        "Authentication-Results: localhost; spf=pass; dkim=pass; dmarc=pass\r\n\
         Authentication-Results: relay.example; spf=pass\r\n\
         From: ceo@localhost\r\nTo: bob@localhost\r\nSubject: Trust me\r\n\r\nPay the invoice.\r\n",
    )
    .unwrap();
    let data = data.to_str().unwrap();
    let (ok, t) = swaks(server.smtp.unwrap(), &["--from", "eve@remote.test", "--to", "bob@localhost", "--data", data]);
    assert!(ok && t.contains("250 2.0.0"), "{t}");
    assert!(
        inbox(&server, &bob, "inbox").await.is_empty(),
        "mail claiming our domain from outside is not in the Inbox"
    );
    let list = inbox(&server, &bob, "spam").await;
    let id = list[0]["id"].as_i64().unwrap();
    let raw = server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    let raw = raw.text().await.unwrap();
    let ours: Vec<&str> = raw.lines().filter(|l| l.starts_with("Authentication-Results: localhost")).collect();
    assert_eq!(ours.len(), 1, "only the result this server added: {raw}");
    assert!(!ours[0].contains("dkim=pass"), "the forged verdict is gone: {raw}");
    assert!(raw.contains("Authentication-Results: relay.example; spf=pass"), "other servers' results stay: {raw}");
}

/// A plain SMTP client for the tests that need to pause mid-DATA or watch replies one by one.
struct Client {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
}

impl Client {
    /// Connects, reads the greeting and says EHLO.
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::io::BufStream::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut client = Client { stream };
        assert!(client.reply().await.starts_with("220 "));
        assert!(client.cmd("EHLO client.test").await.starts_with("250"));
        client
    }

    /// One reply, all its lines; empty when the server closed the connection.
    async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(30), self.stream.read_line(&mut line));
            if read.await.expect("a reply within 30 s").unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// MAIL, RCPT and DATA for a message from eve@remote.test to `to`.
    async fn start_message(&mut self, to: &str) {
        assert!(self.cmd("MAIL FROM:<eve@remote.test>").await.starts_with("250 "));
        assert!(self.cmd(&format!("RCPT TO:<{to}>")).await.starts_with("250 "));
        assert!(self.cmd("DATA").await.starts_with("354 "));
    }
}

/// A message of about `size` bytes whose body has lines starting with "." and "..", a line
/// that is only ".", and long runs of text: (dot-stuffed with the final dot, as stored).
fn big_message(size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut plain =
        b"From: eve@remote.test\r\nTo: bob@localhost\r\nSubject: Big one\r\n\r\n.one dot\r\n..two dots\r\n.\r\n"
            .to_vec();
    let mut n = 0u64;
    while plain.len() < size {
        n += 1;
        let lead = if n.is_multiple_of(97) { "." } else { "" };
        plain.extend_from_slice(
            format!("{lead}{n:08} the quick brown fox jumps over the lazy dog {}\r\n", n * 7919).as_bytes(),
        );
    }
    plain.extend_from_slice(b"..\r\nthe end\r\n");
    let mut stuffed = Vec::with_capacity(plain.len() + plain.len() / 50);
    for line in plain.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    stuffed.extend_from_slice(b".\r\n");
    (stuffed, plain)
}

/// The files of the server's spool folder it holds open (unnamed spool files show as
/// `DATA/spool/#123 (deleted)`), and the names in that folder.
fn spool_files(server: &Server) -> (Vec<String>, Vec<String>) {
    let spool = server.data.path().join("spool");
    let prefix = spool.display().to_string();
    let open = std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with(&prefix))
        .collect();
    let named =
        std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    (open, named)
}

#[tokio::test]
async fn a_message_past_the_spool_threshold_goes_through_a_spool_file_and_arrives_byte_exact() {
    let server = Server::start();
    let bob = server.register_and_login("bob", PW).await;
    let (stuffed, plain) = big_message(3 << 20);
    let mut client = Client::connect(server.smtp.unwrap()).await;
    client.start_message("bob@localhost").await;
    let half = stuffed.len() / 2;
    client.send(&stuffed[..half]).await;
    // 1.5 MiB in, past the 1 MiB default threshold: the body is in a spool file now.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (open, named) = spool_files(&server);
        assert!(named.is_empty(), "spool files have no name: {named:?}");
        if !open.is_empty() {
            assert!(open.iter().all(|f| f.ends_with("(deleted)")), "{open:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no spool file opened mid-DATA");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client.send(&stuffed[half..]).await;
    assert_eq!(client.reply().await, "250 2.0.0 Message accepted\r\n");
    assert_eq!(spool_files(&server), (vec![], vec![]), "the spool file is gone after delivery");

    let list = inbox(&server, &bob, "inbox").await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_i64().unwrap();
    let raw = server.user(&bob).get(server.url(&format!("/api/v1/mail/messages/{id}/raw"))).send().await.unwrap();
    let raw = raw.bytes().await.unwrap();
    assert!(raw.ends_with(&plain), "the stored message is the one sent, dot-stuffing undone");
    let trace = String::from_utf8_lossy(&raw[..raw.len() - plain.len()]);
    assert!(trace.starts_with("Authentication-Results: localhost;") && trace.contains("\r\nReceived: "), "{trace}");
    assert!(trace.ends_with(" +0000\r\n"), "only our trace fields come before it: {trace}");

    // A client that hangs up mid-DATA leaves no spool file open either.
    let mut quitter = Client::connect(server.smtp.unwrap()).await;
    quitter.start_message("bob@localhost").await;
    quitter.send(&stuffed[..half]).await;
    while spool_files(&server).0.is_empty() {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(20), "no spool file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(quitter);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !spool_files(&server).0.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the spool file stayed open after the client left");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(inbox(&server, &bob, "inbox").await.len(), 1);
}

#[tokio::test]
async fn over_the_memory_budget_is_452_4_3_1_and_a_smaller_message_then_goes_through() {
    let server = Server::start_with("[smtp]\nspool_threshold = 65536\nmax_bytes_in_flight = 1048576\n");
    let bob = server.register_and_login("bob", PW).await;
    let (stuffed, _) = big_message(2 << 20);
    let mut client = Client::connect(server.smtp.unwrap()).await;
    // Announced too big (RFC 1870 SIZE), refused before any data...
    let reply = client.cmd("MAIL FROM:<eve@remote.test> SIZE=2097152").await;
    assert_eq!(reply, "452 4.3.1 Insufficient system storage, try again later\r\n");
    // ...or found too big once spooled: it would not fit in memory for delivery.
    client.start_message("bob@localhost").await;
    client.send(&stuffed).await;
    assert_eq!(client.reply().await, "452 4.3.1 Insufficient system storage, try again later\r\n");
    client.start_message("bob@localhost").await;
    let small = "From: eve@remote.test\r\nTo: bob@localhost\r\nSubject: Small one\r\n\r\nFits.\r\n.\r\n";
    client.send(small.as_bytes()).await;
    assert_eq!(client.reply().await, "250 2.0.0 Message accepted\r\n");
    assert_eq!(client.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    let list = inbox(&server, &bob, "inbox").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["subject"], "Small one");
    assert_eq!(spool_files(&server), (vec![], vec![]));
}

#[tokio::test]
async fn a_session_longer_than_session_seconds_gets_421_4_4_2_however_busy() {
    let server = Server::start_with("[smtp]\nsession_seconds = 1\n");
    let mut client = Client::connect(server.smtp.unwrap()).await;
    let started = std::time::Instant::now();
    let closing = loop {
        let reply = client.cmd("NOOP").await;
        if !reply.starts_with("250 ") {
            break reply;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "still open after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(closing, "421 4.4.2 localhost Session time limit reached, closing connection\r\n");
    assert_eq!(client.reply().await, "", "the connection is closed");
}
