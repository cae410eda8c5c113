//! Tests of the SMTP listeners over real TCP on 127.0.0.1:0, with the real TLS
//! configuration (a self-signed certificate made in a temporary data folder): mail-send
//! submitting over STARTTLS with AUTH, a tokio-rustls client on the implicit-TLS door that
//! checks the certificate, raw clients for the refusals (AUTH before TLS, the per-address
//! and global caps, the idle timeout), clients that break off mid-handshake or mid-DATA,
//! and shutdown. An in-memory handler stands in for the mail services.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::config::Config;

/// The longest any single step may take before the test gives up (a hang guard only).
const WAIT: Duration = Duration::from_secs(10);

/// What the fake handler stored: the session context, reverse-path, recipients, data.
type Stored = (SessionContext, String, Vec<String>, Vec<u8>);

/// The mail services stand-in: user "ada" with password "pw", local domain example.test;
/// authenticated users may send anywhere.
#[derive(Default)]
struct Fake {
    messages: Mutex<Vec<Stored>>,
    logins: Mutex<Vec<String>>,
}

impl Fake {
    fn messages(&self) -> Vec<Stored> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn logins(&self) -> Vec<String> {
        self.logins.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl SmtpHandler for Fake {
    async fn authenticate(&self, _: &SessionContext, _: AuthMechanism, username: &str, password: &str) -> AuthVerdict {
        if let Ok(mut logins) = self.logins.lock() {
            logins.push(username.to_string());
        }
        if username == "ada" && password == "pw" { AuthVerdict::Accepted } else { AuthVerdict::Refused }
    }

    async fn check_recipient(&self, ctx: &SessionContext, address: &str) -> RcptVerdict {
        if address.ends_with("@example.test") || ctx.user.is_some() {
            RcptVerdict::Local
        } else {
            RcptVerdict::RelayDenied
        }
    }

    async fn deliver(&self, ctx: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        if let Ok(mut messages) = self.messages.lock() {
            messages.push((ctx.clone(), from, to, data));
        }
        MessageVerdict::Accepted
    }
}

/// One running door.
struct Door {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), SmtpError>>,
    fake: Arc<Fake>,
    /// The self-signed certificate the door presents.
    cert: CertificateDer<'static>,
    _data: tempfile::TempDir,
}

/// Starts a door of `kind` with TLS (or not), after `tweak` adjusts its settings.
async fn start(
    kind: SessionKind,
    implicit_tls: bool,
    with_tls: bool,
    tweak: impl FnOnce(&mut DoorSettings),
) -> anyhow::Result<Door> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.data_dir = data.path().to_owned();
    config.server.domain = "example.test".into();
    let tls = config.server_tls()?;
    let cert = CertificateDer::from_pem_file(crate::platform::tls::self_signed_paths(data.path()).0)?;
    let mut settings = DoorSettings::from_config(&config, kind, implicit_tls, &MemoryBudget::new(1 << 20));
    tweak(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let fake = Arc::new(Fake::default());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, settings, with_tls.then_some(tls), Arc::clone(&fake), stopped));
    Ok(Door { addr, stop, task, fake, cert, _data: data })
}

/// Reads one reply, all its lines.
async fn reply<S: AsyncBufRead + Unpin>(stream: &mut S) -> anyhow::Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, stream.read_line(&mut line)).await.context("reply timed out")??;
        if n == 0 {
            bail!("connection closed; read so far: {all:?}");
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(all);
        }
    }
}

/// Sends one line and reads the reply.
async fn cmd<S: AsyncBufRead + AsyncWrite + Unpin>(stream: &mut S, line: &str) -> anyhow::Result<String> {
    stream.write_all(format!("{line}\r\n").as_bytes()).await?;
    stream.flush().await?;
    reply(stream).await
}

/// Connects and reads the greeting.
async fn connect(addr: SocketAddr) -> anyhow::Result<BufStream<TcpStream>> {
    let mut stream = BufStream::new(TcpStream::connect(addr).await?);
    let greeting = reply(&mut stream).await?;
    assert!(greeting.starts_with("220 "), "{greeting}");
    Ok(stream)
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut seen)).await.context("no close")??;
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

/// Sends one message from a@remote.test to bob@example.test; returns the final reply.
async fn send_message<S: AsyncBufRead + AsyncWrite + Unpin>(stream: &mut S, body: &str) -> anyhow::Result<String> {
    assert!(cmd(stream, "MAIL FROM:<a@remote.test>").await?.starts_with("250 "));
    assert!(cmd(stream, "RCPT TO:<bob@example.test>").await?.starts_with("250 "));
    assert!(cmd(stream, "DATA").await?.starts_with("354 "));
    cmd(stream, &format!("{body}\r\n.")).await
}

/// Stops the door and waits for its accept loop to return (after the sessions still open;
/// drop the clients first).
async fn stop(door: Door) -> anyhow::Result<()> {
    door.stop.send(true)?;
    tokio::time::timeout(WAIT, door.task).await.context("serve did not return")???;
    Ok(())
}

fn body() -> Vec<u8> {
    [
        b"From: ada@example.test\r\nTo: bob@elsewhere.test\r\nSubject: over TLS\r\n\r\n".as_slice(),
        b".a line starting with a dot\r\n\r\n.\r\n",
        &b"0123456789abcdef".repeat(4000),
        b"\r\nthe end",
    ]
    .concat()
}

#[tokio::test]
async fn mail_send_submits_over_starttls_with_auth() -> anyhow::Result<()> {
    let door = start(SessionKind::Submission, false, true, |_| {}).await?;
    let body = body();
    let client = mail_send::SmtpClientBuilder::new("127.0.0.1", door.addr.port())
        .map_err(anyhow::Error::msg)?
        .implicit_tls(false)
        .allow_invalid_certs()
        .helo_host("client.test")
        .credentials(("ada", "pw"))
        .timeout(WAIT);
    let mut smtp = client.connect().await?;
    let message = mail_send::smtp::message::Message::new("ada@example.test", ["bob@elsewhere.test"], body.as_slice());
    smtp.send(message).await?;
    smtp.quit().await?;

    let wrong = mail_send::SmtpClientBuilder::new("127.0.0.1", door.addr.port())
        .map_err(anyhow::Error::msg)?
        .implicit_tls(false)
        .allow_invalid_certs()
        .credentials(("ada", "wrong"))
        .timeout(WAIT);
    assert!(wrong.connect().await.is_err());

    let messages = door.fake.messages();
    assert_eq!(messages.len(), 1);
    let (ctx, from, to, data) = &messages[0];
    assert_eq!((ctx.user.as_deref(), ctx.tls, ctx.kind), (Some("ada"), true, SessionKind::Submission));
    assert_eq!(from, "ada@example.test");
    assert_eq!(to, &["bob@elsewhere.test".to_string()]);
    assert_eq!(data, &[body.as_slice(), b"\r\n"].concat());
    assert_eq!(door.fake.logins(), ["ada", "ada"]);
    stop(door).await
}

#[tokio::test]
async fn auth_and_mail_before_starttls_are_refused() -> anyhow::Result<()> {
    let door = start(SessionKind::Submission, false, true, |_| {}).await?;
    let mut stream = connect(door.addr).await?;
    let ehlo = cmd(&mut stream, "EHLO client.test").await?;
    assert!(ehlo.contains("STARTTLS\r\n") && !ehlo.contains("AUTH"), "{ehlo}");
    // "\0ada\0pw"
    assert_eq!(cmd(&mut stream, "AUTH PLAIN AGFkYQBwdw==").await?, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    assert_eq!(cmd(&mut stream, "MAIL FROM:<ada@example.test>").await?, "530 5.7.0 Authentication required\r\n");
    assert!(door.fake.logins().is_empty());
    assert_eq!(cmd(&mut stream, "QUIT").await?, "221 2.0.0 Bye\r\n");
    stop(door).await
}

#[tokio::test]
async fn a_door_without_tls_does_not_offer_starttls() -> anyhow::Result<()> {
    let door = start(SessionKind::Submission, false, false, |_| {}).await?;
    let mut stream = connect(door.addr).await?;
    let ehlo = cmd(&mut stream, "EHLO client.test").await?;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(cmd(&mut stream, "STARTTLS").await?, "454 4.7.0 TLS not available\r\n");
    drop(stream);
    stop(door).await?;

    let no_tls = start(SessionKind::Submission, true, false, |_| {}).await?;
    let result = tokio::time::timeout(WAIT, no_tls.task).await?;
    assert!(matches!(result, Ok(Err(SmtpError::NoTlsConfig("submissions")))), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn implicit_tls_door_serves_a_verifying_tokio_rustls_client() -> anyhow::Result<()> {
    let door = start(SessionKind::Submission, true, true, |_| {}).await?;
    // A client that stalls mid-handshake stays open alongside the good one.
    let mut stalled = TcpStream::connect(door.addr).await?;
    stalled.write_all(b"\x16\x03\x01\x00\xc8\x01").await?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(door.cert.clone())?;
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(door.addr).await?;
    let tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut stream = BufStream::new(tls);
    assert_eq!(reply(&mut stream).await?, "220 example.test ESMTP postcast\r\n");
    let ehlo = cmd(&mut stream, "EHLO client.test").await?;
    assert!(ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(cmd(&mut stream, "AUTH PLAIN AGFkYQBwdw==").await?, "235 2.7.0 Authentication successful\r\n");
    assert_eq!(send_message(&mut stream, "Subject: hi\r\n\r\nhello").await?, "250 2.0.0 Message accepted\r\n");
    assert_eq!(cmd(&mut stream, "QUIT").await?, "221 2.0.0 Bye\r\n");

    let messages = door.fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].3, b"Subject: hi\r\n\r\nhello\r\n");
    assert!(messages[0].0.tls);
    drop(stalled);
    stop(door).await
}

#[tokio::test]
async fn per_address_and_door_caps_answer_421() -> anyhow::Result<()> {
    let door = start(SessionKind::Inbound, false, true, |d| d.sessions_per_ip = 2).await?;
    let first = connect(door.addr).await?;
    let second = connect(door.addr).await?;
    let mut third = TcpStream::connect(door.addr).await?;
    assert_eq!(read_to_close(&mut third).await?, "421 4.7.0 Too many connections from your address\r\n");
    // Once a session ends its slot is free again.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut stream = BufStream::new(TcpStream::connect(door.addr).await?);
        let greeting = reply(&mut stream).await.unwrap_or_default();
        if greeting.starts_with("220 ") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never released: {greeting:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
    stop(door).await?;

    let door = start(SessionKind::Inbound, false, true, |d| d.max_sessions = 1).await?;
    let only = connect(door.addr).await?;
    let mut refused = TcpStream::connect(door.addr).await?;
    assert_eq!(read_to_close(&mut refused).await?, "421 4.3.2 Too many connections, try again later\r\n");
    drop(only);
    stop(door).await
}

#[tokio::test]
async fn idle_client_gets_421_4_4_2() -> anyhow::Result<()> {
    let door = start(SessionKind::Inbound, false, true, |d| d.limits.idle = Duration::from_secs(1)).await?;
    let mut stream = TcpStream::connect(door.addr).await?;
    let seen = read_to_close(&mut stream).await?;
    assert!(seen.starts_with("220 example.test ESMTP postcast\r\n"), "{seen}");
    assert!(seen.ends_with("421 4.4.2 example.test Idle timeout, closing connection\r\n"), "{seen}");
    stop(door).await
}

#[tokio::test]
async fn clients_breaking_off_do_not_disturb_others() -> anyhow::Result<()> {
    let door = start(SessionKind::Inbound, false, true, |_| {}).await?;
    // One client breaks off in the middle of the STARTTLS handshake...
    let mut handshaking = connect(door.addr).await?;
    assert!(cmd(&mut handshaking, "EHLO one.test").await?.contains("STARTTLS"));
    assert_eq!(cmd(&mut handshaking, "STARTTLS").await?, "220 2.0.0 Ready to start TLS\r\n");
    handshaking.write_all(b"\x16\x03\x01\x02\x00\x01\x00").await?;
    handshaking.flush().await?;
    // ...another in the middle of a message body.
    let mut in_data = connect(door.addr).await?;
    assert!(cmd(&mut in_data, "EHLO two.test").await?.starts_with("250"));
    assert!(cmd(&mut in_data, "MAIL FROM:<a@remote.test>").await?.starts_with("250 "));
    assert!(cmd(&mut in_data, "RCPT TO:<bob@example.test>").await?.starts_with("250 "));
    assert!(cmd(&mut in_data, "DATA").await?.starts_with("354 "));
    in_data.write_all(b"Subject: never finished\r\n\r\nhalf a bo").await?;
    in_data.flush().await?;

    let mut good = connect(door.addr).await?;
    assert!(cmd(&mut good, "EHLO three.test").await?.starts_with("250"));
    assert_eq!(send_message(&mut good, "Subject: one").await?, "250 2.0.0 Message accepted\r\n");
    drop(handshaking);
    drop(in_data);
    assert_eq!(send_message(&mut good, "Subject: two").await?, "250 2.0.0 Message accepted\r\n");
    let mut after = connect(door.addr).await?;
    assert!(cmd(&mut after, "HELO four.test").await?.starts_with("250"));
    assert_eq!(send_message(&mut after, "Subject: three").await?, "250 2.0.0 Message accepted\r\n");

    let subjects: Vec<Vec<u8>> = door.fake.messages().into_iter().map(|m| m.3).collect();
    assert_eq!(subjects, [b"Subject: one\r\n".to_vec(), b"Subject: two\r\n".to_vec(), b"Subject: three\r\n".to_vec()]);
    drop((good, after));
    stop(door).await
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_open_sessions_finish() -> anyhow::Result<()> {
    let door = start(SessionKind::Inbound, false, true, |_| {}).await?;
    let mut open = connect(door.addr).await?;
    assert!(cmd(&mut open, "EHLO client.test").await?.starts_with("250"));
    door.stop.send(true)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(door.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!door.task.is_finished(), "serve waits for the open session");
    assert_eq!(send_message(&mut open, "Subject: last").await?, "250 2.0.0 Message accepted\r\n");
    assert_eq!(cmd(&mut open, "QUIT").await?, "221 2.0.0 Bye\r\n");
    tokio::time::timeout(WAIT, door.task).await.context("serve did not return")???;
    assert_eq!(door.fake.messages().len(), 1);
    Ok(())
}
