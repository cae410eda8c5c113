//! The outbound queue end to end: mail queued by the library and tried once against a
//! loopback SMTP sink that answers 451, then the real `postcast` binary started on the same
//! data folder resumes the queue and delivers through the MX record of the loopback DNS
//! stand-in; what arrives carries a DKIM signature that verifies against the stand-in's TXT
//! record. Over HTTP each user sees and steers only their own queued mail, and
//! `postcast dns` prints the stored key's public half. A message submitted with swaks
//! reaches an SMTP receiver that is not postcast (Debian's aiosmtpd,
//! `tests/common/smtp_receiver.py`) with its body byte for byte (dot-stuffing undone, no
//! line added) and exactly one DKIM signature, which mail-auth verifies.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dns::DnsStandIn;
use common::{Server, authed};
use postcast::config::Config;
use postcast::domains::auth::ClientInfo;
use postcast::domains::mail::authn::{InboundAuth, Outcome};
use postcast::domains::mail::config::DnsConfig;
use postcast::domains::mail::dns::Dns;
use postcast::domains::mail::outbound::RecipientStatus;
use postcast::domains::mail::outbound::dkim::key_path;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message as the sink got it: reverse-path, recipients, data.
type Received = (String, Vec<String>, Vec<u8>);

/// A tiny SMTP receiver: refuses recipients with 451 until told to accept.
struct Sink {
    addr: SocketAddr,
    accept: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (accept.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(sink_session(stream, a.clone(), r.clone()));
            }
        });
        Sink { addr, accept, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn sink_session(stream: TcpStream, accept: Arc<AtomicBool>, received: Arc<Mutex<Vec<Received>>>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let _ = w.write_all(b"220 sink.test ESMTP\r\n").await;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let arg = |prefix: &str| {
            text[prefix.len()..].trim().trim_start_matches('<').split('>').next().unwrap_or("").to_string()
        };
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = arg("MAIL FROM:");
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            if accept.load(Ordering::SeqCst) {
                rcpts.push(arg("RCPT TO:"));
                b"250 2.1.5 ok\r\n"
            } else {
                b"451 4.3.0 try again later\r\n"
            }
        } else if upper == "DATA" {
            let _ = w.write_all(b"354 go ahead\r\n").await;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            }
            received.lock().unwrap().push((from.clone(), std::mem::take(&mut rcpts), data));
            b"250 2.0.0 queued\r\n"
        } else if upper == "RSET" {
            rcpts.clear();
            b"250 2.0.0 ok\r\n"
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            b"502 5.5.1 not here\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Polls `check` until it gives a value, failing after 30 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn queue_of(server: &Server, token: &str) -> Vec<Value> {
    let r = authed(&server.client(), Method::GET, server.url("/api/v1/mail/queue"), token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["messages"].as_array().cloned().unwrap_or_default()
}

const PW: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_server_resumes_the_queue_delivers_signed_mail_and_keeps_queues_apart() {
    let dns = DnsStandIn::start();
    let sink = Sink::start().await;
    dns.add_mx("remote.test", 10, "mx.remote.test");
    dns.add_a("mx.remote.test", Ipv4Addr::LOCALHOST);
    let config_text = format!(
        "[server]\ndomain = \"postcast.test\"\n\n[auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n{}\n\
         [outbound]\nmx_port = {}\nallow_private_targets = true\nretry_base_seconds = 1\nretry_max_seconds = 1\n",
        dns.config(),
        sink.addr.port()
    );
    let data = tempfile::tempdir().unwrap();

    // First run, in process: accounts, one queued message, one attempt answered 451.
    let mut config = Config::parse(&config_text).unwrap();
    config.server.data_dir = data.path().to_owned();
    let services = postcast::app::build(config).await.unwrap();
    let client = ClientInfo::local("test");
    let alice = services.auth.create_user("alice", PW, &client).await.unwrap();
    services.auth.create_user("bob", PW, &client).await.unwrap();
    let raw = b"From: Alice <alice@postcast.test>\r\nTo: Carl <carl@remote.test>\r\nSubject: resumed\r\n\
        Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <r1@postcast.test>\r\n\r\nSee you.\r\n";
    let id = services
        .outbound
        .enqueue(Some(alice.id), "alice@postcast.test", &["carl@remote.test".to_string()], raw)
        .await
        .unwrap();
    let key = services.outbound.dkim_key().await.unwrap();
    dns.add_txt(&key.record_name(), &key.record_value());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = services.outbound.start(stop_rx);
    let outbound = services.outbound.clone();
    eventually("the first attempt", || {
        let q = outbound.clone();
        async move { q.list(None).await.unwrap().into_iter().find(|m| m.id == id && m.attempts >= 1) }
    })
    .await;
    let _ = stop.send(true);
    worker.await.unwrap();
    let listed = services.outbound.list(None).await.unwrap();
    assert_eq!(listed[0].recipients[0].status, RecipientStatus::Queued, "{listed:?}");
    assert!(listed[0].recipients[0].reply.as_deref().unwrap_or("").starts_with("451 4.3.0"), "{listed:?}");
    assert!(sink.received().is_empty());
    services.db.clone().close().await.unwrap();
    drop(services);

    // Second run: the real binary on the same folder, and the receiver now takes mail.
    sink.accept.store(true, Ordering::SeqCst);
    let server = Server::start_in(data, &config_text);
    let alice_token = server.login("alice", PW).await;
    let bob_token = server.login("bob", PW).await;
    assert!(queue_of(&server, &bob_token).await.is_empty(), "bob sees none of alice's mail");
    for (method, path) in
        [(Method::POST, format!("/api/v1/mail/queue/{id}/retry")), (Method::DELETE, format!("/api/v1/mail/queue/{id}"))]
    {
        let r = authed(&server.client(), method, server.url(&path), &bob_token).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} as bob");
    }
    let delivered = eventually("delivery after the restart", || {
        let (server, token) = (&server, &alice_token);
        async move {
            let queue = queue_of(server, token).await;
            let m = queue.into_iter().find(|m| m["id"] == id)?;
            // The recipient's outcome is recorded before the message is marked done.
            (m["status"] == "done").then_some(m)
        }
    })
    .await;
    assert_eq!(delivered["recipients"][0]["status"], "delivered", "{delivered}");
    assert_eq!(delivered["subject"], "resumed");
    assert!(delivered["attempts"].as_i64().unwrap_or(0) >= 2, "{delivered}");

    let got = sink.received();
    assert_eq!(got.len(), 1, "delivered exactly once");
    let (from, to, message) = &got[0];
    assert_eq!((from.as_str(), to.as_slice()), ("alice@postcast.test", ["carl@remote.test".to_string()].as_slice()));
    let resolver = Dns::new(&DnsConfig { nameservers: vec![dns.addr.to_string()] }).unwrap();
    let verdict = InboundAuth::new(resolver, "mx.remote.test")
        .check(message, "127.0.0.1".parse().unwrap(), "postcast.test", from)
        .await;
    assert_eq!(verdict.dkim, Outcome::Pass, "{}", verdict.header);
    assert_eq!(verdict.dkim_domains, ["postcast.test".to_string()]);

    let metrics = server.client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("outbound_deliveries_total{result=\"delivered\"}"), "{metrics}");
    assert!(metrics.contains("outbound_queue_size"), "{metrics}");

    // `postcast dns` prints the public half of the stored key.
    let dir = server.data.path().to_owned();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postcast"))
        .args(["--domain", "postcast.test", "--data-dir"])
        .arg(&dir)
        .arg("dns")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let record = format!("TXT  postcast._domainkey.postcast.test  ->  {}", key.record_value());
    assert!(text.contains(&record), "{text}");
    assert!(text.contains("v=spf1 mx -all") && text.contains("_dmarc.postcast.test"), "{text}");
    assert!(text.contains("v=DMARC1; p=quarantine; adkim=s; aspf=s"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path(&dir, "postcast")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by its owner only");
    }
}

#[test]
fn postcast_dns_makes_a_key_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postcast"))
            .args(["--domain", "example.org", "--data-dir"])
            .arg(dir.path())
            .arg("dns")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    let pem = std::fs::read_to_string(key_path(dir.path(), "postcast")).unwrap();
    assert_eq!(run(), first, "the stored key is reused");
    assert_eq!(std::fs::read_to_string(key_path(dir.path(), "postcast")).unwrap(), pem);
    let p = first
        .lines()
        .find_map(|l| l.strip_prefix("TXT  postcast._domainkey.example.org  ->  v=DKIM1; k=rsa; p="))
        .expect("DKIM record line");
    // The published key is the public half of the stored one.
    let key = postcast::domains::mail::outbound::dkim::DkimKey::from_pem(&pem, "example.org", "postcast").unwrap();
    assert_eq!(p, key.public_key_b64());
    assert!(first.contains("example.org.\t3600\tIN\tMX\t10 example.org."), "{first}");
}

/// Debian's aiosmtpd (`tests/common/smtp_receiver.py`) as a running process: an SMTP
/// receiver written by others, keeping every message's bytes as they arrived. Killed on drop.
struct IndependentReceiver {
    child: std::process::Child,
    port: u16,
    out: tempfile::TempDir,
}

impl IndependentReceiver {
    fn start() -> IndependentReceiver {
        use std::io::BufRead;
        let out = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/smtp_receiver.py");
        // Debian's own interpreter, which python3-aiosmtpd installs into (scripts/test).
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(out.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 runs (apt-get install python3-aiosmtpd)");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port from the receiver (is python3-aiosmtpd installed?): {first:?}"));
        IndependentReceiver { child, port, out }
    }

    /// The first message kept, with its envelope, once it is complete.
    fn first_message(&self) -> Option<(Value, Vec<u8>)> {
        let message = std::fs::read(self.out.path().join("1.eml")).ok()?;
        let envelope = serde_json::from_slice(&std::fs::read(self.out.path().join("1.json")).ok()?).ok()?;
        Some((envelope, message))
    }
}

impl Drop for IndependentReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks every DKIM signature of `message` with mail-auth itself, asking `dns` for keys.
async fn dkim_results(dns: &DnsStandIn, message: &[u8]) -> Vec<(mail_auth::DkimResult, String)> {
    use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.addr.port();
    let servers = ResolverConfig::from_name_servers(vec![NameServerConfig::new(dns.addr.ip(), true, vec![udp])]);
    let authenticator = mail_auth::MessageAuthenticator::new(servers, ResolverOpts::default()).unwrap();
    let parsed = mail_auth::AuthenticatedMessage::parse(message).expect("the received message parses");
    let outputs = authenticator.verify_dkim(&parsed).await;
    outputs.iter().map(|o| (o.result().clone(), o.signature().map(|s| s.d.clone()).unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_receiver_gets_the_body_byte_for_byte_with_one_dkim_signature_that_verifies() {
    let dns = DnsStandIn::start();
    let receiver = IndependentReceiver::start();
    dns.add_mx("remote.test", 10, "mx.remote.test");
    dns.add_a("mx.remote.test", Ipv4Addr::LOCALHOST);
    let server = Server::start_with(&format!(
        "[server]\ndomain = \"postcast.test\"\n\n[auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\n{}\n\
         [outbound]\nmx_port = {}\nallow_private_targets = true\n",
        dns.config(),
        receiver.port
    ));
    let pem = std::fs::read_to_string(key_path(server.data.path(), "postcast")).unwrap();
    let key = postcast::domains::mail::outbound::dkim::DkimKey::from_pem(&pem, "postcast.test", "postcast").unwrap();
    dns.add_txt(&key.record_name(), &key.record_value());
    server.register_and_login("ada", PW).await;

    // Lines the SMTP client must dot-stuff and every receiver must unstuff: a lone ".",
    // "..", "...", lines starting with one and two dots, and a dot inside a line.
    let head = "From: Ada <ada@postcast.test>\r\nTo: Carl <carl@remote.test>\r\nSubject: Dots\r\n\
                Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dots@postcast.test>\r\n";
    let body = "Dear Carl,\r\n.\r\n..\r\n...\r\n.starts with a dot\r\n..starts with two\r\nends with a dot.\r\n\
                \r\n.\r\nthe end";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dots.eml");
    std::fs::write(&file, format!("{head}\r\n{body}")).unwrap();
    let sub = server.submission.unwrap();
    let out = std::process::Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &sub.port().to_string(), "--helo", "client.test", "--tls"])
        .args(["--auth", "PLAIN", "--auth-user", "ada", "--auth-password", PW, "--timeout", "20"])
        .args(["--from", "ada@postcast.test", "--to", "carl@remote.test", "--data", &format!("@{}", file.display())])
        .output()
        .expect("swaks is installed (apt-get install swaks)");
    let transcript = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && transcript.contains("250 2.0.0 Message accepted"), "{transcript}");

    let (envelope, message) = eventually("the message at the independent receiver", || {
        let got = receiver.first_message();
        async move { got }
    })
    .await;
    assert_eq!(envelope["mail_from"], "ada@postcast.test");
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["carl@remote.test"]));
    let split = message.windows(4).position(|w| w == b"\r\n\r\n").expect("a header section") + 4;
    let (header, received_body) = message.split_at(split);
    // swaks ends the data with CRLF before the final dot; the receiver keeps that CRLF.
    assert_eq!(String::from_utf8_lossy(received_body), format!("{body}\r\n"), "the body arrived as written");
    let header = String::from_utf8_lossy(header);
    let signatures = header.lines().filter(|l| l.to_ascii_lowercase().starts_with("dkim-signature:")).count();
    assert_eq!(signatures, 1, "{header}");
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        assert!(header.contains(line), "{line:?} kept: {header}");
    }
    let results = dkim_results(&dns, &message).await;
    assert_eq!(results, [(mail_auth::DkimResult::Pass, "postcast.test".to_string())], "{header}");
    assert!(receiver.first_message().is_some() && !receiver.out.path().join("2.eml").exists(), "delivered once");
}
