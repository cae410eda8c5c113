//! The SMTP listeners: [`serve`] accepts connections for one door (inbound MX, submission
//! with STARTTLS, or submission over implicit TLS, RFC 8314 §3.3) and runs each session in
//! its own task with [`run_session`]. It owns admission (a cap per client address and one
//! for the door), timeouts, the per-session tracing span, the door's metrics and graceful
//! shutdown; the protocol is the session's, the answers are the handler's.
//!
//! Invariants:
//! - **The accept loop never waits on a client**: a refused connection gets its 421 with a
//!   non-blocking write (or, on an implicit-TLS door, is just closed) and is dropped.
//! - **No session outlives its admission**: the per-address slot and the door's permit are
//!   held by the session's task and released when it ends, however it ends.
//! - **Shutdown stops accepting at once**; open sessions get [`SHUTDOWN_GRACE`] to finish,
//!   then are dropped. A message is acknowledged only after the handler stored it, so a
//!   dropped session loses nothing the client was told was taken.
//! - **Logs carry the door and the peer address, never a password or a message body.**

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{
    AuthMechanism, MessageVerdict, RcptVerdict, Session, SessionConfig, SessionContext, SessionKind, SmtpError,
    SmtpHandler, TlsUpgrade, run_session,
};
use crate::platform::config::Config;

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
    /// How long a client may stay silent.
    pub idle: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake: Duration,
}

impl DoorSettings {
    /// The settings of a door of `kind` from `[smtp]` (and `server.domain` for the host
    /// name when `smtp.hostname` is empty).
    pub fn from_config(config: &Config, kind: SessionKind, implicit_tls: bool) -> Self {
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
            ..SessionConfig::new(kind, smtp.hostname_or(&config.server.domain))
        };
        Self {
            name,
            session,
            implicit_tls,
            sessions_per_ip: smtp.sessions_per_ip,
            max_sessions: smtp.max_sessions,
            idle: Duration::from_secs(smtp.idle_seconds),
            tls_handshake: Duration::from_secs(smtp.tls_handshake_seconds),
        }
    }
}

/// Accepts SMTP connections on `listener` until `shutdown` turns true (or its sender is
/// dropped), then lets open sessions finish for a short grace. With `tls`, a plain door
/// offers STARTTLS; an implicit-TLS door needs it and fails at once without it.
pub async fn serve<H>(
    listener: TcpListener,
    door: DoorSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
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
    let door = Arc::new(door);
    let admission = Admission::new(&door);
    let mut tasks = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            biased;
            changed = shutdown.changed() => if changed.is_err() { break },
            Some(joined) = tasks.join_next() => log_join(joined),
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Some(ticket) = admission.admit(&socket, peer.ip(), &door) else { continue };
                    let span = tracing::info_span!("smtp", door = door.name, peer = %peer.ip());
                    let task = session_task(socket, peer, Arc::clone(&door), upgrade.clone(), Arc::clone(&handler));
                    tasks.spawn(
                        async move {
                            task.await;
                            drop(ticket);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(door = door.name, error = %e, "smtp: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::info!(door = door.name, "smtp: sessions still open after the shutdown grace; closing them");
        tasks.abort_all();
    }
    Ok(())
}

/// One session from greeting to close: the TLS handshake first on an implicit-TLS door.
async fn session_task<H: SmtpHandler + Send + Sync>(
    socket: TcpStream,
    peer: SocketAddr,
    door: Arc<DoorSettings>,
    tls: Option<TlsUpgrade>,
    handler: Arc<H>,
) {
    metrics::counter!("postcast_smtp_sessions_total", "door" => door.name).increment(1);
    let _open = OpenGauge::new(door.name);
    tracing::debug!("session started");
    // Replies are batched per read already; Nagle would only delay them.
    let _ = socket.set_nodelay(true);
    let counted = Counted { inner: &*handler, door: door.name };
    let session = Session::new(door.session.clone(), peer.ip());
    let result = match (&tls, door.implicit_tls) {
        (Some(tls), true) => match tls.accept(socket).await {
            Ok(stream) => run_session(stream, session, &counted, door.idle, None).await,
            Err(e) => Err(e),
        },
        (None, true) => Err(SmtpError::NoTlsConfig(door.name)),
        (_, false) => run_session(socket, session, &counted, door.idle, tls.as_ref()).await,
    };
    match result {
        Ok(()) => tracing::debug!("session ended"),
        Err(e) => tracing::debug!(error = %e, "session ended"),
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "smtp: session task panicked");
    }
}

/// The door's two caps: sessions per client address and sessions in all.
struct Admission {
    permits: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_ip_limit: usize,
}

/// A session's place under both caps; released on drop.
struct Ticket {
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
}

impl Admission {
    fn new(door: &DoorSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(door.max_sessions)),
            per_ip: Arc::default(),
            per_ip_limit: door.sessions_per_ip,
        }
    }

    /// A ticket for a new session from `ip`, or `None` after telling the client 421.
    fn admit(&self, socket: &TcpStream, ip: IpAddr, door: &DoorSettings) -> Option<Ticket> {
        let ip = ip.to_canonical();
        let Some(slot) = IpSlot::take(&self.per_ip, ip, self.per_ip_limit) else {
            refuse(socket, door, "per_ip", b"421 4.7.0 Too many connections from your address\r\n");
            return None;
        };
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            // RFC 3463 §3.4: X.3.2 "system not accepting network messages".
            refuse(socket, door, "busy", b"421 4.3.2 Too many connections, try again later\r\n");
            return None;
        };
        Some(Ticket { _permit: permit, _slot: slot })
    }
}

/// Tells a refused client why (RFC 5321 §3.1: a server may answer a connection with 421)
/// without waiting: the line fits in a fresh socket's send buffer. An implicit-TLS door
/// cannot speak before the handshake, so its refused clients are only disconnected.
fn refuse(socket: &TcpStream, door: &DoorSettings, reason: &'static str, line: &[u8]) {
    metrics::counter!("postcast_smtp_sessions_refused_total", "door" => door.name, "reason" => reason).increment(1);
    tracing::debug!(door = door.name, reason, "smtp: connection refused");
    if !door.implicit_tls {
        let _ = socket.try_write(line);
    }
}

/// One session's count against its client address.
struct IpSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, limit: usize) -> Option<Self> {
        let mut counts = table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Self { table: Arc::clone(table), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The open-sessions gauge of a door, up while this lives.
struct OpenGauge(&'static str);

impl OpenGauge {
    fn new(door: &'static str) -> Self {
        metrics::gauge!("postcast_smtp_sessions_open", "door" => door).increment(1.0);
        Self(door)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("postcast_smtp_sessions_open", "door" => self.0).decrement(1.0);
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
    ) -> bool {
        let ok = self.inner.authenticate(ctx, mechanism, username, password).await;
        let result = if ok { "ok" } else { "failed" };
        metrics::counter!("postcast_smtp_auth_total", "door" => self.door, "result" => result).increment(1);
        tracing::info!(user = ?username, ?mechanism, result, "smtp auth");
        ok
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
