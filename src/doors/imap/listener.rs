//! The IMAP listeners: [`serve`] runs one door (STARTTLS on `server.imap`, implicit TLS
//! on `server.imaps`, RFC 8314) on the shared accept loop ([`crate::doors::accept`], which
//! owns admission and shutdown). It owns what IMAP adds: the BYE a refused client is told,
//! the TLS handshakes, the per-session tracing span; the protocol is the connection's and
//! the session's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::ImapError;
use super::config::ImapConfig;
use super::connection::{self, Ended, Limits};
use super::session::{Session, SessionSettings};
use crate::domains::auth::AuthService;
use crate::domains::mail::MailService;
use crate::doors::accept::{self, AcceptSettings, Door, Refusal};

/// How long open sessions may go on after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The settings of one IMAP door.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// The door's name in logs and metrics: `imap` or `imaps`.
    pub name: &'static str,
    /// Whether the TLS handshake comes first (port 993 style) rather than on STARTTLS.
    pub implicit_tls: bool,
    /// Open sessions allowed from one client address.
    pub sessions_per_ip: usize,
    /// Open sessions allowed on this door.
    pub max_sessions: usize,
    /// Timeouts and sizes of each connection.
    pub limits: Limits,
    /// How long a TLS handshake may take.
    pub tls_handshake: Duration,
    /// Whether loopback clients may log in without TLS.
    pub plaintext_login_on_loopback: bool,
}

impl DoorSettings {
    /// The settings of the STARTTLS door, or the implicit-TLS one, from `[imap]`.
    pub fn from_config(config: &ImapConfig, implicit_tls: bool) -> Self {
        Self {
            name: if implicit_tls { "imaps" } else { "imap" },
            implicit_tls,
            sessions_per_ip: config.sessions_per_ip,
            max_sessions: config.max_sessions,
            limits: Limits {
                idle: Duration::from_secs(config.idle_seconds),
                max_line: config.max_line_bytes,
                max_literal: config.max_literal_bytes,
            },
            tls_handshake: Duration::from_secs(config.tls_handshake_seconds),
            plaintext_login_on_loopback: config.plaintext_login_on_loopback,
        }
    }
}

/// Accepts IMAP connections on `listener` until `shutdown` turns true. A plain door
/// offers STARTTLS with `tls`; an implicit-TLS door needs it and fails at once without.
pub async fn serve(
    listener: TcpListener,
    door: DoorSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: AuthService,
    mail: MailService,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ImapError> {
    if door.implicit_tls && tls.is_none() {
        return Err(ImapError::NoTlsConfig(door.name));
    }
    let settings = AcceptSettings {
        name: door.name,
        max_connections: door.max_sessions,
        per_ip: door.sessions_per_ip,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let session = Arc::new(SessionSettings {
        starttls: tls.is_some() && !door.implicit_tls,
        plaintext_login_on_loopback: door.plaintext_login_on_loopback,
    });
    let imap = ImapDoor { door, tls: tls.map(TlsAcceptor::from), session, auth, mail };
    accept::serve(listener, settings, Arc::new(imap), shutdown).await;
    Ok(())
}

/// One IMAP door as the accept loop drives it.
struct ImapDoor {
    door: DoorSettings,
    tls: Option<TlsAcceptor>,
    session: Arc<SessionSettings>,
    auth: AuthService,
    mail: MailService,
}

impl Door for ImapDoor {
    /// Tells a refused client why without waiting (RFC 9051 §7.1.5: a BYE greeting); an
    /// implicit-TLS door cannot speak before the handshake, so it only disconnects.
    fn refuse(&self, socket: &TcpStream, _peer: SocketAddr, why: Refusal) {
        let line: &[u8] = match why {
            Refusal::PerIp => b"* BYE [UNAVAILABLE] Too many connections from your address\r\n",
            Refusal::Busy => b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
        };
        if !self.door.implicit_tls {
            let _ = socket.try_write(line);
        }
    }

    fn serve(
        self: Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let span = tracing::info_span!("imap", door = self.door.name, peer = %peer.ip());
        async move {
            tracing::debug!("session started");
            match self.session_task(socket, peer, shutdown).await {
                Ok(()) => tracing::debug!("session ended"),
                Err(e) => tracing::debug!(error = %e, "session ended"),
            }
        }
        .instrument(span)
    }
}

impl ImapDoor {
    /// Runs the TLS handshake within its time limit.
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<tokio_rustls::server::TlsStream<S>, ImapError> {
        let acceptor = self.tls.as_ref().ok_or(ImapError::NoTlsConfig(self.door.name))?;
        match tokio::time::timeout(self.door.tls_handshake, acceptor.accept(stream)).await {
            Ok(r) => r.map_err(ImapError::Io),
            Err(_) => Err(ImapError::Timeout),
        }
    }

    /// One session from greeting to close: the handshake first on an implicit-TLS door,
    /// or after STARTTLS on the other.
    async fn session_task(
        &self,
        mut socket: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ImapError> {
        let _ = socket.set_nodelay(true);
        let limits = &self.door.limits;
        let mut session = Session::new(
            self.mail.clone(),
            self.auth.clone(),
            Arc::clone(&self.session),
            peer.ip(),
            self.door.implicit_tls,
        );
        if self.door.implicit_tls {
            let mut tls = self.handshake(socket).await?;
            connection::run(&mut tls, &mut session, limits, &mut shutdown, true).await?;
            let _ = tls.shutdown().await;
            return Ok(());
        }
        match connection::run(&mut socket, &mut session, limits, &mut shutdown, true).await? {
            Ended::Closed => Ok(()),
            Ended::StartTls => {
                let mut tls = self.handshake(socket).await?;
                session.tls_started();
                connection::run(&mut tls, &mut session, limits, &mut shutdown, false).await?;
                let _ = tls.shutdown().await;
                Ok(())
            }
        }
    }
}
