//! The SMTP door: inbound mail from other servers (MX, RFC 5321) and submission from the
//! users' own mail programs (RFC 6409, with STARTTLS; RFC 8314 implicit TLS on the
//! "submissions" port). It owns the protocol only: [`session`] is an I/O-free state machine
//! on smtp-proto's parser (bytes in, [`Event`]s and reply bytes out), [`run_session`] drives
//! one session over any async stream and upgrades it to TLS on STARTTLS (tokio-rustls), and
//! [`serve`] (in `listener.rs`) accepts connections for one door with its caps, timeouts,
//! spans and metrics. It holds no SQL and no business rule: who may log in, which
//! recipients are local and where a message goes are the answers of the [`SmtpHandler`]
//! (the auth and mail services, once wired). The certificate comes from `platform::tls`.
//!
//! Invariants:
//! - **250 after DATA is sent only once the handler said the message is durably stored**:
//!   the session answers the end of data only from [`Session::message_result`], and
//!   [`run_session`] calls it only with the verdict of [`SmtpHandler::deliver`].
//! - **A session never holds more than `max_message_bytes` + 64 KiB of message data**, nor
//!   more than one command line (`max_line`, 12288 octets for SASL responses): an oversized
//!   body is read on and thrown away, then refused with 552 5.3.4 (RFC 1870 §6.3); an
//!   overlong line is dropped and answered 500 5.5.2.
//! - **A body past `spool_threshold` is on disk, not in memory, until it is delivered**
//!   ([`spool`]: an unnamed 0600 file in `DATA_DIR/spool`, gone when the message is
//!   delivered or refused, or the session ends, also after a crash), and **message bytes in
//!   memory across all sessions stay within one [`MemoryBudget`]**
//!   (`smtp.max_bytes_in_flight`): a body that finds no room is spooled sooner; a message
//!   is delivered (and a spooled one read back first) only once the budget holds
//!   [`DELIVERY_COPIES`] times its size (waiting up to [`BUDGET_WAIT`]), else 452 4.3.1
//!   and the session goes on.
//! - **A session ends after `session_seconds` however busy** (421 4.4.2), besides the idle
//!   timeout; writes to a client that does not read end there too.
//! - **A looping message is refused before the handler sees it**: more than
//!   `max_received_headers` `Received` fields in the header section is 554 5.4.6 at the end
//!   of data (RFC 5321 §6.3), on every door.
//! - **Never an open relay**: every reverse-path and recipient is put to the handler before
//!   it is accepted;
//!   a submission session refuses MAIL until AUTH succeeded, and AUTH until TLS is active.
//! - **Plaintext pipelined after STARTTLS is discarded** (RFC 3207 §5, CVE-2011-0411) and the
//!   session starts over once TLS is up (RFC 3207 §4.2). STARTTLS is offered only by a door
//!   that has a TLS configuration; a failed or slow handshake just ends the connection.
//! - **Bad input never panics** and costs the client: after ten errors the session says 421
//!   and closes. Passwords and message bodies never appear in `Debug` output or logs.
//!
//! `app.rs` starts three doors: `server.smtp` inbound, `server.submission` with STARTTLS
//! and `server.submissions` with implicit TLS, sharing one `platform::tls::server_config`
//! and one [`MailDoor`] handler over the auth and mail services.

pub mod budget;
pub mod config;
mod handler;
mod listener;
#[cfg(test)]
mod listener_tests;
mod reply;
pub mod session;
pub mod spool;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use budget::{Charge, MemoryBudget};
pub use handler::MailDoor;
pub use listener::{DoorSettings, serve, spool_dir};
pub use session::Session;
use spool::Spool;

/// The default largest message accepted: 25 MiB (advertised as SIZE, RFC 1870).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 25 * 1024 * 1024;
/// The default most recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// The default longest command line in octets, CRLF included (RFC 5321 §4.5.3.1.4 asks for 512).
pub const DEFAULT_MAX_LINE: usize = 1000;
/// The default most `Received` fields a message may carry before it counts as looping
/// (RFC 5321 §6.3 suggests at least 100 hops are unusual; Postfix and Exim refuse past 50).
pub const DEFAULT_MAX_RECEIVED_HEADERS: usize = 50;
/// The default body size past which a message being received is spooled to disk: 1 MiB.
pub const DEFAULT_SPOOL_THRESHOLD: usize = 1 << 20;
/// The default memory budget of all SMTP sessions together: 256 MiB.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 256 << 20;
/// How long a message may wait for room in the memory budget before it gets 452.
pub const BUDGET_WAIT: Duration = Duration::from_secs(60);
/// How many times its size a message being delivered counts against the memory budget:
/// delivery holds it whole and, for a moment, a copy with its trace fields on top
/// (`mail::deliver`).
pub const DELIVERY_COPIES: usize = 2;
/// How long the last reply (the 421 of a timeout) may take to write before the close.
const LAST_WORDS: Duration = Duration::from_secs(5);

/// Which door a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Mail from other servers (MX, port 25): no AUTH, local recipients only.
    Inbound,
    /// Mail from our users' programs (RFC 6409): AUTH required, and only after TLS.
    Submission,
}

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Inbound (MX) or submission.
    pub kind: SessionKind,
    /// The name the server gives in its greeting and EHLO reply.
    pub hostname: String,
    /// The largest message accepted, in octets after dot-unstuffing (SIZE, RFC 1870).
    pub max_message_bytes: usize,
    /// The most recipients of one message (452 4.5.3 beyond).
    pub max_recipients: usize,
    /// The longest command line in octets, CRLF included (500 5.5.2 beyond).
    pub max_line: usize,
    /// The most `Received` header fields a message may carry (554 5.4.6 beyond: a loop).
    pub max_received_headers: usize,
    /// Body bytes past which the message goes to the spool instead of memory.
    pub spool_threshold: usize,
    /// The memory budget shared by every session of every door (clones share it).
    pub budget: MemoryBudget,
    /// Whether the door can upgrade this connection to TLS (STARTTLS is offered then).
    pub tls_available: bool,
    /// Whether the connection is already encrypted (implicit TLS, port 465).
    pub tls_active: bool,
}

impl SessionConfig {
    /// A configuration with the default limits for `kind`, without TLS.
    pub fn new(kind: SessionKind, hostname: impl Into<String>) -> Self {
        Self {
            kind,
            hostname: hostname.into(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_line: DEFAULT_MAX_LINE,
            max_received_headers: DEFAULT_MAX_RECEIVED_HEADERS,
            spool_threshold: DEFAULT_SPOOL_THRESHOLD,
            budget: MemoryBudget::new(DEFAULT_MAX_BYTES_IN_FLIGHT),
            tls_available: false,
            tls_active: false,
        }
    }
}

/// The SASL mechanisms the session understands (RFC 4954).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
}

/// What the handler says about one recipient (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptVerdict {
    /// A local mailbox, or a remote one the authenticated sender may relay to: 250 2.1.5.
    Local,
    /// No such local user: 550 5.1.1.
    UnknownUser,
    /// A remote address the sender may not relay to: 550 5.7.1.
    RelayDenied,
    /// A local mailbox whose storage is full: 452 4.2.2 (RFC 3463), so the sender tries
    /// again later.
    MailboxFull,
    /// The question could not be answered now: 451 4.3.0.
    TemporaryFailure,
}

/// What the handler says about a received message (RFC 5321 §4.1.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageVerdict {
    /// The message is durably stored or queued: 250 2.0.0.
    Accepted,
    /// The message is refused: reply code (5xx for good, 4xx for now), enhanced code and
    /// text.
    Rejected(u16, String, String),
    /// The message could not be taken now (storage down, ...): 451 4.3.0.
    TemporaryFailure,
}

/// What the session knows about its client, handed to the handler with every question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionContext {
    /// The client's address.
    pub peer: IpAddr,
    /// Inbound or submission.
    pub kind: SessionKind,
    /// The name the client gave in EHLO/HELO.
    pub helo: Option<String>,
    /// The user name that authenticated, if any.
    pub user: Option<String>,
    /// Whether the connection is encrypted.
    pub tls: bool,
}

/// Message bytes in memory with the share of the [`MemoryBudget`] that counts them, given
/// back when the charge is dropped.
pub struct Held {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their share of the budget.
    pub charge: Charge,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held").field("bytes", &self.bytes.len()).field("charge", &self.charge).finish()
    }
}

/// Where a received message is when the session hands it over.
pub enum Body {
    /// All in memory: it stayed within the spool threshold and the budget.
    InMemory(Held),
    /// All written out in [`Event::Spool`] pieces: this many bytes, dot-unstuffed.
    Spooled(usize),
}

impl Body {
    /// The message's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Body::InMemory(held) => held.bytes.len(),
            Body::Spooled(len) => *len,
        }
    }

    /// Whether the message is empty (the client sent only the final dot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the session asks of the door after some input.
pub enum Event {
    /// Bytes to write to the client, in order.
    Reply(Vec<u8>),
    /// The 220 to STARTTLS has been queued: upgrade the connection to TLS, then call
    /// [`Session::tls_started`] (or close the connection).
    StartTls,
    /// Check these credentials, then answer with [`Session::auth_result`].
    Authenticate {
        /// The SASL mechanism used.
        mechanism: AuthMechanism,
        /// The authentication identity.
        username: String,
        /// The password; never logged (see the `Debug` impl).
        password: String,
    },
    /// Check this reverse-path (MAIL FROM), then answer with [`Session::sender_result`].
    CheckSender(String),
    /// Check this recipient, then answer with [`Session::recipient_result`].
    CheckRecipient(String),
    /// The next bytes of the body being received: append them to its spool file (made at
    /// the first piece). Not a question: the session reads on.
    Spool(Held),
    /// The body being received is refused (too big): remove its spool file.
    DropSpool,
    /// A complete message: deliver it (a spooled one read back and put to
    /// [`Session::check_spooled`] first), then answer with [`Session::message_result`].
    Message {
        /// The reverse-path, empty for bounces.
        from: String,
        /// The accepted recipients.
        to: Vec<String>,
        /// The message as received, dot-unstuffed, ending in CRLF.
        body: Body,
    },
    /// Close the connection (after QUIT's 221, or on a fatal error).
    Close,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Reply(bytes) => f.debug_tuple("Reply").field(&String::from_utf8_lossy(bytes)).finish(),
            Event::StartTls => f.write_str("StartTls"),
            Event::Authenticate { mechanism, username, .. } => f
                .debug_struct("Authenticate")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Event::CheckSender(address) => f.debug_tuple("CheckSender").field(address).finish(),
            Event::CheckRecipient(address) => f.debug_tuple("CheckRecipient").field(address).finish(),
            Event::Spool(held) => f.debug_struct("Spool").field("bytes", &held.bytes.len()).finish(),
            Event::DropSpool => f.write_str("DropSpool"),
            Event::Message { from, to, body } => f
                .debug_struct("Message")
                .field("from", from)
                .field("to", to)
                .field("bytes", &body.len())
                .field("spooled", &matches!(body, Body::Spooled(_)))
                .finish(),
            Event::Close => f.write_str("Close"),
        }
    }
}

/// The handler's answer to an AUTH attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The credentials are right: `235 2.7.0`.
    Accepted,
    /// Wrong, unknown or not allowed: `535 5.7.8`.
    Refused,
    /// Not checked now (too many failed attempts from the client's network, a banned
    /// network, or every password-hashing slot busy): `454 4.7.0`, try again later.
    TryLater,
}

/// The services the SMTP door needs from the rest of postcast.
pub trait SmtpHandler {
    /// Whether `username` may log in with `password` (an app password, or the account
    /// password while no second factor is on).
    fn authenticate(
        &self,
        ctx: &SessionContext,
        mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> impl Future<Output = AuthVerdict> + Send;

    /// Whether this session may use `address` as its reverse-path (MAIL FROM); everyone may
    /// unless the handler says otherwise.
    fn check_sender(&self, ctx: &SessionContext, address: &str) -> impl Future<Output = bool> + Send {
        let _ = (ctx, address);
        std::future::ready(true)
    }

    /// Whether this session may send to `address` (local user, or relay for authenticated users).
    fn check_recipient(&self, ctx: &SessionContext, address: &str) -> impl Future<Output = RcptVerdict> + Send;

    /// Delivers a message; [`MessageVerdict::Accepted`] only once it is durably stored.
    fn deliver(
        &self,
        ctx: &SessionContext,
        from: String,
        to: Vec<String>,
        data: Vec<u8>,
    ) -> impl Future<Output = MessageVerdict> + Send;
}

/// Why a connection ended other than by QUIT or the client hanging up.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Reading or writing the connection failed.
    #[error("smtp connection i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent nothing for the idle time (421 4.4.2 was sent).
    #[error("smtp client idle for too long")]
    IdleTimeout,
    /// The session reached `session_seconds` (421 4.4.2 was sent, if the client read it).
    #[error("smtp session reached its time limit")]
    TimeLimit,
    /// The TLS handshake failed (STARTTLS or implicit TLS); the connection is closed.
    #[error("smtp TLS handshake failed: {0}")]
    TlsHandshake(std::io::Error),
    /// The TLS handshake took longer than allowed; the connection is closed.
    #[error("smtp TLS handshake timed out")]
    TlsHandshakeTimeout,
    /// An implicit-TLS door was started without a TLS configuration.
    #[error("the SMTP door {0} uses implicit TLS but has no TLS configuration")]
    NoTlsConfig(&'static str),
}

/// How a connection is upgraded to TLS: the server configuration and how long the
/// handshake may take.
#[derive(Clone)]
pub struct TlsUpgrade {
    /// The rustls acceptor of the door.
    pub acceptor: TlsAcceptor,
    /// The longest a handshake may take.
    pub handshake_timeout: Duration,
}

impl TlsUpgrade {
    /// An upgrade with this server configuration.
    pub fn new(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Self {
        Self { acceptor: TlsAcceptor::from(config), handshake_timeout }
    }

    /// Runs the server side of the TLS handshake on `stream`, within the timeout.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> Result<TlsStream<S>, SmtpError> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(SmtpError::TlsHandshake(e)),
            Err(_) => Err(SmtpError::TlsHandshakeTimeout),
        }
    }
}

/// The read buffer of [`run_session`]; also the most input fed to the session at once.
const READ_BUFFER: usize = 16 * 1024;

/// What [`run_session`] needs besides the session: its time limits and the spool folder.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// How long the client may stay silent.
    pub idle: Duration,
    /// How long the whole session may last.
    pub lifetime: Duration,
    /// Where bodies past the spool threshold are written (`DATA_DIR/spool`).
    pub spool_dir: PathBuf,
}

impl SessionLimits {
    /// Limits with an idle timeout, a lifetime and a spool folder.
    pub fn new(idle: Duration, lifetime: Duration, spool_dir: impl Into<PathBuf>) -> Self {
        Self { idle, lifetime, spool_dir: spool_dir.into() }
    }
}

/// How one stretch of a conversation ended.
#[derive(Debug, PartialEq, Eq)]
enum Stretch {
    /// QUIT, a fatal error or the client hanging up: the session is over.
    Over,
    /// STARTTLS was accepted and its 220 is written: the handshake comes next.
    StartTls,
}

/// One connection's conversation: the session, its spool and its deadline.
struct Conversation<'a, H> {
    session: Session,
    handler: &'a H,
    spool: Spool,
    idle: Duration,
    deadline: Instant,
}

/// Runs one session over `stream` until QUIT, a fatal error, the client hanging up,
/// `limits.idle` passing without input or `limits.lifetime` passing in all. Replies are
/// batched and written before every wait (RFC 2920 §3.1: pipelined replies go out in
/// order). When the client asks for STARTTLS (offered only if
/// `SessionConfig::tls_available`), the 220 is written, the handshake runs with `tls`, and
/// the session goes on over the encrypted stream (RFC 3207 §4.2); a failed handshake ends
/// the session. Spooled bodies go to files in `limits.spool_dir`, removed when done with.
pub async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    session: Session,
    handler: &impl SmtpHandler,
    limits: &SessionLimits,
    tls: Option<&TlsUpgrade>,
) -> Result<(), SmtpError> {
    let greeting = session.greeting();
    let mut talk = Conversation {
        session,
        handler,
        spool: Spool::new(limits.spool_dir.clone()),
        idle: limits.idle,
        deadline: Instant::now() + limits.lifetime,
    };
    if talk.converse(&mut stream, greeting).await? == Stretch::Over {
        return Ok(());
    }
    let Some(tls) = tls else {
        // Only reached when a session offers STARTTLS that its door cannot do.
        let missing = std::io::Error::new(std::io::ErrorKind::Unsupported, "no TLS configuration for STARTTLS");
        return Err(SmtpError::TlsHandshake(missing));
    };
    let mut stream = tls.accept(stream).await?;
    talk.session.tls_started();
    // The session refuses a second STARTTLS, so this stretch is the last.
    talk.converse(&mut stream, Vec::new()).await?;
    Ok(())
}

impl<H: SmtpHandler> Conversation<'_, H> {
    /// Reads, feeds and answers until the session is over or asks for TLS. `out` holds
    /// bytes to write first (the greeting).
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        mut out: Vec<u8>,
    ) -> Result<Stretch, SmtpError> {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut events = std::collections::VecDeque::new();
        loop {
            while let Some(event) = events.pop_front() {
                match event {
                    Event::Reply(bytes) => out.extend_from_slice(&bytes),
                    Event::Close => {
                        self.send(stream, &out).await?;
                        stream.shutdown().await?;
                        return Ok(Stretch::Over);
                    }
                    Event::StartTls => {
                        // RFC 3207 §4: the 220 goes out in plaintext before the handshake.
                        self.send(stream, &out).await?;
                        return Ok(Stretch::StartTls);
                    }
                    Event::Spool(held) => self.spool.append(held).await,
                    Event::DropSpool => self.spool.discard(),
                    question => {
                        self.send(stream, &out).await?;
                        out.clear();
                        let answer = self.answer(question).await;
                        out.extend_from_slice(&answer);
                        events.extend(self.session.resume());
                    }
                }
            }
            self.send(stream, &out).await?;
            out.clear();
            let idle_end = Instant::now() + self.idle;
            let Ok(read) = tokio::time::timeout_at(idle_end.min(self.deadline), stream.read(&mut buf)).await else {
                return Err(self.time_out(stream, self.deadline <= idle_end).await);
            };
            let n = read?;
            if n == 0 {
                return Ok(Stretch::Over);
            }
            events.extend(self.session.feed(&buf[..n]));
        }
    }

    /// Writes and flushes `bytes`, within the session's lifetime.
    async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S, bytes: &[u8]) -> Result<(), SmtpError> {
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout_at(self.deadline, write).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(SmtpError::TimeLimit),
        }
    }

    /// Says 421 and ends the session: idle too long, or (`expired`) at its time limit
    /// (RFC 5321 §4.5.3.2: a server should say 421 before closing).
    async fn time_out<S: AsyncWrite + Unpin>(&mut self, stream: &mut S, expired: bool) -> SmtpError {
        let (reply, error) = if expired {
            (self.session.time_limit(), SmtpError::TimeLimit)
        } else {
            (self.session.idle_timeout(), SmtpError::IdleTimeout)
        };
        self.spool.discard();
        // The client may be gone or not reading; the session ends either way.
        let _ = tokio::time::timeout(LAST_WORDS, async {
            stream.write_all(&reply).await?;
            stream.shutdown().await
        })
        .await;
        error
    }

    /// Puts one question event to the handler and returns the session's reply to the answer.
    async fn answer(&mut self, question: Event) -> Vec<u8> {
        let ctx = self.session.context();
        let (session, handler) = (&mut self.session, self.handler);
        match question {
            Event::Authenticate { mechanism, username, password } => {
                let verdict = handler.authenticate(&ctx, mechanism, &username, &password).await;
                session.auth_result(verdict)
            }
            Event::CheckSender(address) => {
                let allowed = handler.check_sender(&ctx, &address).await;
                session.sender_result(allowed)
            }
            Event::CheckRecipient(address) => {
                let verdict = handler.check_recipient(&ctx, &address).await;
                session.recipient_result(verdict)
            }
            Event::Message { from, to, body } => {
                let (bytes, charge) = match self.take_message(body).await {
                    Ok(message) => message,
                    Err(refused) => return refused,
                };
                let verdict = self.handler.deliver(&ctx, from, to, bytes).await;
                drop(charge);
                self.session.message_result(verdict)
            }
            Event::Reply(bytes) => bytes,
            Event::StartTls | Event::Close | Event::Spool(_) | Event::DropSpool => Vec::new(),
        }
    }

    /// A received message, whole in memory, with [`DELIVERY_COPIES`] times its size of the
    /// budget held for its delivery: a spooled one read back from its file (and checked by
    /// the session). Err: the session's reply instead of a delivery (452 4.3.1 when there
    /// is no room in time or the spool failed, 554 5.4.6 for a loop).
    async fn take_message(&mut self, body: Body) -> Result<(Vec<u8>, Charge), Vec<u8>> {
        let (held, spooled) = match body {
            Body::InMemory(held) => (held, None),
            Body::Spooled(len) => (Held { bytes: Vec::new(), charge: self.session.budget().charge() }, Some(len)),
        };
        let Held { bytes, mut charge } = held;
        let len = spooled.unwrap_or(bytes.len());
        let until = self.deadline.min(Instant::now() + BUDGET_WAIT);
        if !charge.wait_to(len.saturating_mul(DELIVERY_COPIES), until).await {
            tracing::warn!(bytes = len, "no room in smtp.max_bytes_in_flight for the message in time");
            self.spool.discard();
            return Err(self.session.no_storage());
        }
        let Some(len) = spooled else {
            return Ok((bytes, charge));
        };
        let bytes = match self.spool.read_back(len).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, bytes = len, "spooled message not taken");
                return Err(self.session.no_storage());
            }
        };
        match self.session.check_spooled(&bytes) {
            Some(refused) => Err(refused),
            None => Ok((bytes, charge)),
        }
    }
}
