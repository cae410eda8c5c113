//! Tests of the outbound queue over real parts: a SQLite file, the blob store, the loopback
//! DNS stand-in, and the repo's own SMTP session (`doors::smtp::run_session`) on
//! `127.0.0.1:0` as the receiving server, with a handler that records what arrives and
//! answers each recipient as told; for STARTTLS a small receiver with a self-signed
//! certificate (rustls, rcgen).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sea_orm::EntityTrait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::OutboundConfig;
use super::dkim::test_key;
use super::{
    BounceError, BounceSink, MessageStatus, OutboundQueue, QueueError, QueueSettings, QueuedMessage, RecipientStatus,
};
use crate::domains::mail::authn::{InboundAuth, Outcome};
use crate::domains::mail::config::DnsConfig;
use crate::domains::mail::dns::Dns;
use crate::domains::mail::dns::standin::DnsStandIn;
use crate::doors::smtp::{
    AuthMechanism, AuthVerdict, MessageVerdict, RcptVerdict, Session, SessionConfig, SessionContext, SessionKind,
    SessionLimits, SmtpHandler, run_session,
};
use crate::platform::blobs::{BlobId, Blobs};
use crate::platform::db::{self, Db};

const DOMAIN: &str = "postcast.test";

/// A message as the receiving server got it.
type Received = (String, Vec<String>, Vec<u8>);

/// The receiving server's behaviour and memory.
#[derive(Default)]
struct Receiver {
    /// Answers per recipient address; everything else is accepted.
    verdicts: Mutex<HashMap<String, RcptVerdict>>,
    received: Mutex<Vec<Received>>,
}

impl Receiver {
    fn answer(&self, address: &str, verdict: RcptVerdict) {
        self.verdicts.lock().expect("lock").insert(address.to_owned(), verdict);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl SmtpHandler for Receiver {
    async fn authenticate(&self, _: &SessionContext, _: AuthMechanism, _: &str, _: &str) -> AuthVerdict {
        AuthVerdict::Refused
    }

    async fn check_recipient(&self, _: &SessionContext, address: &str) -> RcptVerdict {
        self.verdicts
            .lock()
            .map(|v| v.get(address).copied().unwrap_or(RcptVerdict::Local))
            .unwrap_or(RcptVerdict::Local)
    }

    async fn deliver(&self, _: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        if let Ok(mut r) = self.received.lock() {
            r.push((from, to, data));
        }
        MessageVerdict::Accepted
    }
}

/// Runs the repo's SMTP session on `127.0.0.1:0`; returns its port.
async fn start_receiver(receiver: Arc<Receiver>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let receiver = receiver.clone();
            tokio::spawn(async move {
                let session = Session::new(SessionConfig::new(SessionKind::Inbound, "mx.remote.test"), peer.ip());
                let limits = SessionLimits::new(Duration::from_secs(10), Duration::from_secs(60), std::env::temp_dir());
                let _ = run_session(stream, session, &*receiver, &limits, None).await;
            });
        }
    });
    port
}

/// Records the bounces handed over.
#[derive(Default)]
struct Bounces(Mutex<Vec<(String, Vec<u8>)>>);

impl BounceSink for Bounces {
    fn deliver_bounce(&self, to: &str, raw: Vec<u8>) -> BoxFuture<'_, Result<(), BounceError>> {
        if let Ok(mut b) = self.0.lock() {
            b.push((to.to_owned(), raw));
        }
        Box::pin(async { Ok(()) })
    }
}

impl Bounces {
    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().expect("lock").iter().map(|(to, raw)| (to.clone(), String::from_utf8_lossy(raw).into())).collect()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    db: Db,
    blobs: Blobs,
    dns: DnsStandIn,
    bounces: Arc<Bounces>,
    queue: OutboundQueue,
}

fn config(mx_port: u16) -> OutboundConfig {
    OutboundConfig {
        mx_port,
        allow_private_targets: true,
        connect_timeout_seconds: 5,
        command_timeout_seconds: 10,
        ..OutboundConfig::default()
    }
}

impl Fixture {
    async fn new(config: OutboundConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = db::open(&url, 4, Duration::from_secs(5), true).await.expect("db");
        let blobs = Blobs::open(dir.path().join("blobs"), db.clone()).expect("blobs");
        test_key::install(dir.path(), "postcast");
        let dns = DnsStandIn::start();
        let bounces = Arc::new(Bounces::default());
        let queue = queue_on(&dir, &db, &blobs, &dns, config, bounces.clone());
        let key = queue.dkim_key().await.expect("dkim key");
        dns.add_txt(&key.record_name(), &key.record_value());
        Fixture { dir, db, blobs, dns, bounces, queue }
    }

    fn resolver(&self) -> Dns {
        Dns::new(&DnsConfig { nameservers: vec![self.dns.addr.to_string()] }).expect("resolver")
    }

    /// Points `domain`'s MX at the receiver on 127.0.0.1.
    fn mx(&self, domain: &str) {
        let host = format!("mx.{domain}");
        self.dns.add_mx(domain, 10, &host);
        self.dns.add_a(&host, Ipv4Addr::LOCALHOST);
    }

    async fn message(&self, id: i64) -> QueuedMessage {
        let all = self.queue.list(None).await.expect("list");
        all.into_iter().find(|m| m.id == id).expect("message listed")
    }

    /// Polls until `done` holds for message `id`.
    async fn wait_for(&self, id: i64, what: &str, done: impl Fn(&QueuedMessage) -> bool) -> QueuedMessage {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.message(id).await;
            if done(&m) {
                return m;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {m:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn queue_on(
    dir: &tempfile::TempDir,
    db: &Db,
    blobs: &Blobs,
    dns: &DnsStandIn,
    config: OutboundConfig,
    sink: Arc<Bounces>,
) -> OutboundQueue {
    let resolver = Dns::new(&DnsConfig { nameservers: vec![dns.addr.to_string()] }).expect("resolver");
    let settings =
        QueueSettings { domain: DOMAIN.into(), data_dir: dir.path().to_owned(), selector: "postcast".into(), config };
    OutboundQueue::new(db.clone(), blobs.clone(), resolver, settings, sink).expect("queue")
}

fn mail(to: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@{DOMAIN}>\r\nTo: {to}\r\nSubject: Hello there\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <m1@{DOMAIN}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi!\r\n.leading dot\r\n"
    )
    .into_bytes()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn delivers_through_the_mx_record_with_a_valid_dkim_signature() {
    let receiver = Arc::new(Receiver::default());
    let port = start_receiver(receiver.clone()).await;
    let f = Fixture::new(config(port)).await;
    f.mx("remote.test");
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let from = format!("ann@{DOMAIN}");
    let id = f
        .queue
        .enqueue(None, &from, &rcpts(&["bob@remote.test", "carl@remote.test"]), &mail("bob@remote.test"))
        .await
        .expect("enqueue");
    let m = f.wait_for(id, "done", |m| m.status == MessageStatus::Done).await;
    assert!(m.recipients.iter().all(|r| r.status == RecipientStatus::Delivered), "{m:?}");
    assert_eq!(m.subject, "Hello there");
    assert_eq!(m.recipients[0].remote_mta.as_deref(), Some("mx.remote.test"));
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one transaction for one domain");
    let (env_from, env_to, data) = &got[0];
    assert_eq!(env_from, &from);
    assert_eq!(env_to, &rcpts(&["bob@remote.test", "carl@remote.test"]));
    assert!(data.starts_with(b"DKIM-Signature:"), "{}", String::from_utf8_lossy(data));
    assert!(data.ends_with(b"\r\n\r\nHi!\r\n.leading dot\r\n"), "the body arrives as queued, dot-stuffing undone");

    // The receiving side checks the signature against the stand-in's TXT record.
    let verdict =
        InboundAuth::new(f.resolver(), "mx.remote.test").check(data, "127.0.0.1".parse().unwrap(), "x", &from).await;
    assert_eq!(verdict.dkim, Outcome::Pass, "{}", verdict.header);
    assert_eq!(verdict.dkim_domains, vec![DOMAIN.to_string()]);

    let row = super::entities::message::Entity::find_by_id(id).one(&f.db).await.expect("db").expect("row");
    let blob = BlobId::try_from(row.blob_id).expect("blob id");
    assert!(!f.blobs.exists(&blob).await.expect("exists"), "a finished message lets its blob go");
    assert!(f.bounces.all().is_empty());
    let _ = stop.send(true);
    worker.await.expect("worker stops");
}

#[tokio::test]
async fn mx_override_takes_precedence_over_dns() {
    let receiver = Arc::new(Receiver::default());
    let port = start_receiver(receiver.clone()).await;
    let mut cfg = config(1);
    cfg.mx_override.insert("override.test".into(), format!("127.0.0.1:{port}"));
    let f = Fixture::new(cfg).await;
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["dan@override.test"]), &mail("dan")).await.unwrap();
    f.wait_for(id, "done", |m| m.status == MessageStatus::Done).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(f.dns.queries(), 0, "no DNS look-up for an overridden domain");
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn a_smarthost_takes_every_domain_in_one_transaction() {
    let receiver = Arc::new(Receiver::default());
    let port = start_receiver(receiver.clone()).await;
    let mut cfg = config(1);
    cfg.relay = format!("127.0.0.1:{port}");
    let f = Fixture::new(cfg).await;
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let to = rcpts(&["a@one.test", "b@two.test"]);
    let id = f.queue.enqueue(None, "ann@postcast.test", &to, &mail("a")).await.unwrap();
    let m = f.wait_for(id, "done", |m| m.status == MessageStatus::Done).await;
    assert!(m.recipients.iter().all(|r| r.status == RecipientStatus::Delivered), "{m:?}");
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one transaction through the smarthost");
    assert_eq!(got[0].1, to);
    assert_eq!(f.dns.queries(), 0, "no MX look-ups with a smarthost");
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn a_451_is_retried_with_back_off_until_it_succeeds() {
    let receiver = Arc::new(Receiver::default());
    receiver.answer("eve@remote.test", RcptVerdict::TemporaryFailure);
    let port = start_receiver(receiver.clone()).await;
    let f = Fixture::new(config(port)).await;
    f.mx("remote.test");
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["eve@remote.test"]), &mail("eve")).await.unwrap();

    let m = f.wait_for(id, "first attempt", |m| m.attempts == 1).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(m.recipients[0].status, RecipientStatus::Queued);
    assert!(m.recipients[0].reply.as_deref().unwrap_or("").starts_with("451"), "{m:?}");
    assert!(m.last_error.as_deref().unwrap_or("").starts_with("451"), "{m:?}");
    let last = m.last_attempt_at.expect("tried");
    assert_eq!(m.next_attempt_at - last, 60, "first retry after the base delay");

    f.queue.retry_now(None, id).await.unwrap();
    let m = f.wait_for(id, "second attempt", |m| m.attempts == 2).await;
    assert_eq!(m.next_attempt_at - m.last_attempt_at.unwrap(), 120, "the delay doubles");
    assert!(receiver.received().is_empty());

    receiver.answer("eve@remote.test", RcptVerdict::Local);
    f.queue.retry_now(None, id).await.unwrap();
    let m = f.wait_for(id, "delivery", |m| m.status == MessageStatus::Done).await;
    assert_eq!((m.attempts, m.recipients[0].status), (3, RecipientStatus::Delivered));
    assert_eq!(receiver.received().len(), 1);
    assert!(f.bounces.all().is_empty());
    assert!(matches!(f.queue.retry_now(None, id).await, Err(QueueError::Finished)));
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn a_550_recipient_gets_exactly_one_dsn() {
    let receiver = Arc::new(Receiver::default());
    receiver.answer("nobody@remote.test", RcptVerdict::UnknownUser);
    let port = start_receiver(receiver.clone()).await;
    let f = Fixture::new(config(port)).await;
    f.mx("remote.test");
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let to = rcpts(&["bob@remote.test", "nobody@remote.test"]);
    let id = f.queue.enqueue(None, "ann@postcast.test", &to, &mail("bob")).await.unwrap();
    let m = f.wait_for(id, "done", |m| m.status == MessageStatus::Done).await;
    let status: Vec<RecipientStatus> = m.recipients.iter().map(|r| r.status).collect();
    assert_eq!(status, [RecipientStatus::Delivered, RecipientStatus::Failed]);
    assert!(m.recipients[1].reply.as_deref().unwrap_or("").starts_with("550 5.1.1"), "{m:?}");
    // Nothing more happens to a finished message, however often the worker looks.
    f.queue.inner.wake.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bounces = f.bounces.all();
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    let (bounce_to, dsn) = &bounces[0];
    assert_eq!(bounce_to, "ann@postcast.test");
    assert!(dsn.contains("MAILER-DAEMON@postcast.test"), "{dsn}");
    assert!(dsn.contains("Final-Recipient: rfc822; nobody@remote.test"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("Remote-MTA: dns; mx.remote.test"), "{dsn}");
    assert!(!dsn.contains("rfc822; bob@remote.test"), "the delivered recipient is not reported");
    assert!(dsn.contains("Subject: Hello there"), "the original headers come back");
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn giving_up_bounces_but_never_a_bounce() {
    // A port nobody listens on: every attempt is a temporary failure.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = config(port);
    cfg.give_up_hours = 0;
    let f = Fixture::new(cfg).await;
    f.mx("remote.test");
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["zed@remote.test"]), &mail("zed")).await.unwrap();
    let bounce = f.queue.enqueue(None, "", &rcpts(&["zed@remote.test"]), &mail("zed")).await.unwrap();
    let m = f.wait_for(id, "give-up", |m| m.status == MessageStatus::Done).await;
    assert_eq!(m.recipients[0].status, RecipientStatus::Failed);
    assert!(m.recipients[0].reply.as_deref().unwrap_or("").starts_with("gave up after 0 h"), "{m:?}");
    let b = f.wait_for(bounce, "give-up of the bounce", |m| m.status == MessageStatus::Done).await;
    assert_eq!(b.recipients[0].status, RecipientStatus::Failed);
    let bounces = f.bounces.all();
    assert_eq!(bounces.len(), 1, "the null sender gets no DSN: {bounces:?}");
    assert!(bounces[0].1.contains("Final-Recipient: rfc822; zed@remote.test"));
    assert!(bounces[0].1.contains("Status: 4.4.7"), "{}", bounces[0].1);
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn a_domain_that_does_not_exist_fails_at_once() {
    let f = Fixture::new(config(25)).await;
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["x@nowhere.test"]), &mail("x")).await.unwrap();
    let m = f.wait_for(id, "failure", |m| m.status == MessageStatus::Done).await;
    assert!(m.recipients[0].reply.as_deref().unwrap_or("").starts_with("550 5.1.2"), "{m:?}");
    assert_eq!(f.bounces.all().len(), 1);
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn mx_hosts_at_loopback_private_or_mapped_loopback_addresses_are_refused() {
    let receiver = Arc::new(Receiver::default());
    let port = start_receiver(receiver.clone()).await;
    let f = Fixture::new(OutboundConfig { allow_private_targets: false, ..config(port) }).await;
    f.mx("remote.test");
    f.dns.add_mx("private.test", 10, "mx.private.test");
    f.dns.add_a("mx.private.test", Ipv4Addr::new(10, 1, 2, 3));
    // Only an AAAA record, ::ffff:127.0.0.1: it reaches the receiver's IPv4 socket.
    f.dns.add_mx("mapped.test", 10, "mx.mapped.test");
    f.dns.add_aaaa("mx.mapped.test", Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let cases = [("bob@remote.test", "554 5.4.6"), ("bob@private.test", "554 5.4.4"), ("bob@mapped.test", "554 5.4.6")];
    let mut ids = Vec::new();
    for (to, _) in cases {
        ids.push(f.queue.enqueue(None, "ann@postcast.test", &rcpts(&[to]), &mail(to)).await.unwrap());
    }
    for (id, (to, reply)) in ids.into_iter().zip(cases) {
        let m = f.wait_for(id, to, |m| m.status == MessageStatus::Done).await;
        assert!(m.recipients[0].reply.as_deref().unwrap_or("").starts_with(reply), "{to}: {m:?}");
        assert_eq!(m.recipients[0].status, RecipientStatus::Failed, "{to}: {m:?}");
    }
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
    assert_eq!(f.bounces.all().len(), 3, "each failure bounces");
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn a_restart_resumes_the_queue() {
    let receiver = Arc::new(Receiver::default());
    receiver.answer("eve@remote.test", RcptVerdict::TemporaryFailure);
    let port = start_receiver(receiver.clone()).await;
    let mut cfg = config(port);
    cfg.retry_base_seconds = 1;
    cfg.retry_max_seconds = 1;
    let f = Fixture::new(cfg.clone()).await;
    f.mx("remote.test");
    let (stop, stop_rx) = watch::channel(false);
    let worker = f.queue.start(stop_rx);
    let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["eve@remote.test"]), &mail("eve")).await.unwrap();
    f.wait_for(id, "first attempt", |m| m.attempts >= 1).await;
    let _ = stop.send(true);
    worker.await.unwrap();

    // A new queue on the same database and blobs: nothing but the rows carries over.
    receiver.answer("eve@remote.test", RcptVerdict::Local);
    let again = queue_on(&f.dir, &f.db, &f.blobs, &f.dns, cfg, f.bounces.clone());
    let (stop, stop_rx) = watch::channel(false);
    let worker = again.start(stop_rx);
    f.wait_for(id, "delivery after the restart", |m| m.status == MessageStatus::Done).await;
    assert_eq!(receiver.received().len(), 1);
    let _ = stop.send(true);
    worker.await.unwrap();
}

#[tokio::test]
async fn bad_envelopes_are_refused_and_owners_are_respected() {
    let f = Fixture::new(config(25)).await;
    let q = &f.queue;
    let raw = mail("x");
    for bad in ["", "no-at-sign", "a@", "@b.test", "a b@c.test", "a@b.test>\r\nRCPT TO:<c@d.test", "<a@b.test>"] {
        assert!(
            matches!(
                q.enqueue(None, "ann@postcast.test", &rcpts(&[bad]), &raw).await,
                Err(QueueError::InvalidAddress(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(q.enqueue(None, "ann@postcast.test", &[], &raw).await, Err(QueueError::NoRecipients)));
    assert!(matches!(
        q.enqueue(None, "bad from", &rcpts(&["a@b.test"]), &raw).await,
        Err(QueueError::InvalidAddress(_))
    ));
    assert!(matches!(
        q.enqueue(None, "a@b.test", &rcpts(&["a@b.test"]), b"").await,
        Err(QueueError::InvalidMessage(_))
    ));

    let id = q.enqueue(None, "ann@postcast.test", &rcpts(&["A@b.test", "a@b.test"]), &raw).await.unwrap();
    assert_eq!(f.message(id).await.recipients.len(), 1, "duplicates are dropped");
    assert!(
        matches!(q.retry_now(Some(1), id).await, Err(QueueError::NotFound)),
        "a user cannot touch the server's mail"
    );
    assert!(matches!(q.cancel(Some(1), id).await, Err(QueueError::NotFound)));
    assert!(q.list(Some(1)).await.unwrap().is_empty());
    let blob = f.message(id).await;
    assert_eq!(blob.status, MessageStatus::Queued);
    q.cancel(None, id).await.unwrap();
    assert!(q.list(None).await.unwrap().is_empty());
    assert!(matches!(q.cancel(None, id).await, Err(QueueError::NotFound)));
}

/// The messages the TLS-capable receiver got, each with whether it came over TLS.
type TlsLog = Arc<Mutex<Vec<(bool, Vec<u8>)>>>;

/// What one session of the TLS-capable receiver ended in.
enum After<S> {
    Closed,
    StartTls(S),
}

/// A small SMTP dialogue: offers STARTTLS while in plain text, records each message with
/// whether it came over TLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, tls: bool, greet: bool, log: TlsLog) -> After<S> {
    let mut s = BufReader::new(stream);
    if greet && s.get_mut().write_all(b"220 mx.remote.test ESMTP\r\n").await.is_err() {
        return After::Closed;
    }
    loop {
        let mut line = Vec::new();
        if s.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return After::Closed;
        }
        let upper = String::from_utf8_lossy(&line).trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if tls { b"250 mx.remote.test\r\n" } else { b"250-mx.remote.test\r\n250 STARTTLS\r\n" }
        } else if upper == "STARTTLS" && !tls {
            let _ = s.get_mut().write_all(b"220 2.0.0 ready\r\n").await;
            return After::StartTls(s.into_inner());
        } else if upper == "DATA" {
            let _ = s.get_mut().write_all(b"354 go on\r\n").await;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if s.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                    return After::Closed;
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
            log.lock().expect("lock").push((tls, data));
            b"250 2.0.0 taken\r\n"
        } else if upper == "QUIT" {
            let _ = s.get_mut().write_all(b"221 2.0.0 bye\r\n").await;
            return After::Closed;
        } else {
            b"250 2.0.0 ok\r\n"
        };
        if s.get_mut().write_all(reply).await.is_err() {
            return After::Closed;
        }
    }
}

/// A receiver offering STARTTLS with a self-signed certificate; with `broken`, it answers
/// STARTTLS and then speaks plain text instead of TLS.
async fn start_tls_receiver(broken: bool) -> (u16, TlsLog) {
    let ck = rcgen::generate_simple_self_signed(vec!["mx.remote.test".to_string()]).expect("certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), l.clone());
            tokio::spawn(async move {
                if let After::StartTls(mut tcp) = converse(tcp, false, true, log.clone()).await {
                    if broken {
                        let _ = tcp.write_all(b"this is not a TLS record\r\n").await;
                    } else if let Ok(tls) = acceptor.accept(tcp).await {
                        converse(tls, true, false, log).await;
                    }
                }
            });
        }
    });
    (port, log)
}

#[tokio::test]
async fn starttls_is_used_when_offered_and_a_failed_handshake_falls_back_to_plain_text() {
    for broken in [false, true] {
        let (port, log) = start_tls_receiver(broken).await;
        let f = Fixture::new(config(port)).await;
        f.mx("remote.test");
        let (stop, stop_rx) = watch::channel(false);
        let worker = f.queue.start(stop_rx);
        let id = f.queue.enqueue(None, "ann@postcast.test", &rcpts(&["tom@remote.test"]), &mail("tom")).await.unwrap();
        let m = f.wait_for(id, "delivery", |m| m.status == MessageStatus::Done).await;
        assert_eq!(m.recipients[0].status, RecipientStatus::Delivered, "{m:?}");
        let got = log.lock().expect("lock").clone();
        assert_eq!(got.len(), 1, "broken = {broken}");
        assert_eq!(got[0].0, !broken, "over TLS unless the handshake failed");
        assert!(got[0].1.starts_with(b"DKIM-Signature:"));
        let _ = stop.send(true);
        worker.await.unwrap();
    }
}

#[test]
fn back_off_doubles_up_to_the_cap() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(Fixture::new(OutboundConfig { retry_base_seconds: 60, retry_max_seconds: 3600, ..config(25) }));
    let delays: Vec<i64> = (1..=9).map(|n| f.queue.backoff(n)).collect();
    assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    assert_eq!(f.queue.backoff(i32::MAX), 3600);
}

#[test]
fn bare_line_endings_become_crlf_before_signing() {
    assert_eq!(super::crlf_lines(b"a\nb\r\nc\rd\r\r\n\n"), b"a\r\nb\r\nc\r\nd\r\n\r\n\r\n");
    assert_eq!(super::crlf_lines(b"no ending"), b"no ending");
    assert_eq!(super::crlf_lines(b"\r\n.\r\n"), b"\r\n.\r\n");
}
