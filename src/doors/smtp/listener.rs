//! The SMTP listeners: [`serve`] accepts connections for one door (inbound MX, submission
//! with STARTTLS, or submission over implicit TLS, RFC 8314 §3.3) and runs each session in
//! its own task with [`run_session`] on the shared accept loop ([`crate::doors::accept`],
//! which owns admission and shutdown). It owns what SMTP adds: the 421 a refused client is
//! told, timeouts, the per-session tracing span and the door's metrics; the protocol is
//! the session's, the answers are the handler's.
//!
//! Invariants:
//! - **A refused connection gets its 421 with a non-blocking write** (or, on an
//!   implicit-TLS door, is just closed).
//! - **Shutdown stops accepting at once**; open sessions get [`SHUTDOWN_GRACE`] to finish,
//!   then are dropped. A message is acknowledged only after the handler stored it, so a
//!   dropped session loses nothing the client was told was taken.
//! - **Logs carry the door and the peer address, never a password or a message body.**

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    AuthMechanism, AuthVerdict, MemoryBudget, MessageVerdict, RcptVerdict, Session, SessionConfig, SessionContext,
    SessionKind, SessionLimits, SmtpError, SmtpHandler, TlsUpgrade, run_session,
};
use crate::config::Config;
use crate::doors::accept::{self, AcceptSettings, Door, Refusal};

/// How long open sessions may go on after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The settings of one SMTP door.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// The door's name in logs and metrics: `mx`, `submission` or `submissions`.
    pub name: &'static str,
    /// The session settings; [`serve`] sets `tls_available` and `tls_active` itself.
    pub session: SessionConfig,
    /// Whether the TLS handshake comes first (port 465 style) rather than on STARTTLS.
    pub implicit_tls: bool,
    /// Open sessions allowed from one client address.
    pub sessions_per_ip: usize,
    /// Open sessions allowed on this door.
    pub max_sessions: usize,
    /// Each session's idle timeout, lifetime and spool folder.
    pub limits: SessionLimits,
    /// How long a TLS handshake may take.
    pub tls_handshake: Duration,
}

impl DoorSettings {
    /// The settings of a door of `kind` from `[smtp]` (and `server.domain` for the host
    /// name when `smtp.hostname` is empty), counting message bytes against `budget` (the
    /// one budget of all doors), spooling to `DATA_DIR/spool`.
    pub fn from_config(config: &Config, kind: SessionKind, implicit_tls: bool, budget: &MemoryBudget) -> Self {
        let smtp = &config.smtp;
        let name = match (kind, implicit_tls) {
            (SessionKind::Inbound, false) => "mx",
            (SessionKind::Inbound, true) => "mx-tls",
            (SessionKind::Submission, false) => "submission",
            (SessionKind::Submission, true) => "submissions",
        };
        let session = SessionConfig {
            max_message_bytes: smtp.max_message_bytes,
            max_recipients: smtp.max_recipients,
            max_received_headers: smtp.max_received_headers,
            spool_threshold: smtp.spool_threshold,
            budget: budget.clone(),
            ..SessionConfig::new(kind, smtp.hostname_or(&config.server.domain))
        };
        let limits = SessionLimits::new(
            Duration::from_secs(smtp.idle_seconds),
            Duration::from_secs(smtp.session_seconds),
            spool_dir(config),
        );
        Self {
            name,
            session,
            implicit_tls,
            sessions_per_ip: smtp.sessions_per_ip,
            max_sessions: smtp.max_sessions,
            limits,
            tls_handshake: Duration::from_secs(smtp.tls_handshake_seconds),
        }
    }
}

/// Where the SMTP doors spool large bodies: `DATA_DIR/spool`.
pub fn spool_dir(config: &Config) -> std::path::PathBuf {
    config.server.data_dir.join("spool")
}

/// Accepts SMTP connections on `listener` until `shutdown` turns true (or its sender is
/// dropped), then lets open sessions finish for a short grace (the shared accept loop,
/// [`crate::doors::accept`]). With `tls`, a plain door offers STARTTLS; an implicit-TLS
/// door needs it and fails at once without it.
pub async fn serve<H>(
    listener: TcpListener,
    door: DoorSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SmtpError>
where
    H: SmtpHandler + Send + Sync + 'static,
{
    if door.implicit_tls && tls.is_none() {
        return Err(SmtpError::NoTlsConfig(door.name));
    }
    let upgrade = tls.map(|config| TlsUpgrade::new(config, door.tls_handshake));
    let mut door = door;
    door.session.tls_available = upgrade.is_some() && !door.implicit_tls;
    door.session.tls_active = door.implicit_tls;
    let settings = AcceptSettings {
        name: door.name,
        max_connections: door.max_sessions,
        per_ip: door.sessions_per_ip,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let smtp = SmtpDoor { door: Arc::new(door), upgrade, handler };
    accept::serve(listener, settings, Arc::new(smtp), shutdown).await;
    Ok(())
}

/// One SMTP door as the accept loop drives it.
struct SmtpDoor<H> {
    door: Arc<DoorSettings>,
    upgrade: Option<TlsUpgrade>,
    handler: Arc<H>,
}

impl<H: SmtpHandler + Send + Sync + 'static> Door for SmtpDoor<H> {
    /// Tells a refused client why (RFC 5321 §3.1: a server may answer a connection with 421)
    /// without waiting: the line fits in a fresh socket's send buffer. An implicit-TLS door
    /// cannot speak before the handshake, so its refused clients are only disconnected.
    fn refuse(&self, socket: &TcpStream, _peer: SocketAddr, why: Refusal) {
        let line: &[u8] = match why {
            Refusal::PerIp => b"421 4.7.0 Too many connections from your address\r\n",
            // RFC 3463 §3.4: X.3.2 "system not accepting network messages".
            Refusal::Busy => b"421 4.3.2 Too many connections, try again later\r\n",
        };
        if !self.door.implicit_tls {
            let _ = socket.try_write(line);
        }
    }

    fn serve(
        self: Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
        _shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let span = tracing::info_span!("smtp", door = self.door.name, peer = %peer.ip());
        session_task(socket, peer, Arc::clone(&self.door), self.upgrade.clone(), Arc::clone(&self.handler))
            .instrument(span)
    }
}

/// One session from greeting to close: the TLS handshake first on an implicit-TLS door.
async fn session_task<H: SmtpHandler + Send + Sync>(
    socket: TcpStream,
    peer: SocketAddr,
    door: Arc<DoorSettings>,
    tls: Option<TlsUpgrade>,
    handler: Arc<H>,
) {
    tracing::debug!("session started");
    // Replies are batched per read already; Nagle would only delay them.
    let _ = socket.set_nodelay(true);
    let counted = Counted { inner: &*handler, door: door.name };
    let session = Session::new(door.session.clone(), peer.ip());
    let result = match (&tls, door.implicit_tls) {
        (Some(tls), true) => match tls.accept(socket).await {
            Ok(stream) => run_session(stream, session, &counted, &door.limits, None).await,
            Err(e) => Err(e),
        },
        (None, true) => Err(SmtpError::NoTlsConfig(door.name)),
        (_, false) => run_session(socket, session, &counted, &door.limits, tls.as_ref()).await,
    };
    match result {
        Ok(()) => tracing::debug!("session ended"),
        Err(e) => tracing::debug!(error = %e, "session ended"),
    }
}

/// The handler with the door's logs and metrics around it.
struct Counted<'a, H> {
    inner: &'a H,
    door: &'static str,
}

impl<H: SmtpHandler + Sync> SmtpHandler for Counted<'_, H> {
    async fn authenticate(
        &self,
        ctx: &SessionContext,
        mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> AuthVerdict {
        let verdict = self.inner.authenticate(ctx, mechanism, username, password).await;
        let result = match verdict {
            AuthVerdict::Accepted => "ok",
            AuthVerdict::Refused => "failed",
            AuthVerdict::TryLater => "try_later",
        };
        metrics::counter!("postcast_smtp_auth_total", "door" => self.door, "result" => result).increment(1);
        tracing::info!(user = ?username, ?mechanism, result, "smtp auth");
        verdict
    }

    async fn check_recipient(&self, ctx: &SessionContext, address: &str) -> RcptVerdict {
        self.inner.check_recipient(ctx, address).await
    }

    async fn deliver(&self, ctx: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        let (recipients, bytes) = (to.len(), data.len());
        let verdict = self.inner.deliver(ctx, from, to, data).await;
        let result = match verdict {
            MessageVerdict::Accepted => "accepted",
            MessageVerdict::Rejected(..) => "rejected",
            MessageVerdict::TemporaryFailure => "deferred",
        };
        metrics::counter!("postcast_smtp_messages_total", "door" => self.door, "result" => result).increment(1);
        tracing::info!(user = ?ctx.user, recipients, bytes, result, "smtp message");
        verdict
    }
}
