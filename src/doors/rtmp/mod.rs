//! The RTMP ingest door: broadcasters (OBS, ffmpeg) publish to `rtmp://HOST/live/KEY`.
//! It speaks RTMP through rml_rtmp ([`session`], no I/O), runs one task per connection
//! ([`connection`]), and hands each accepted publish to the stream service, which checks
//! the key, chunks and transcodes. Viewers never use RTMP: play requests are refused.
//!
//! It holds no SQL and no business rule: who may publish is the answer of
//! [`Streams::begin_publish`]; the door only enforces protocol limits ([`RtmpLimits`]).
//!
//! Invariants:
//! - **`finish()` is called exactly once per accepted publish**: when the client ends the
//!   publish, disconnects, times out, sends bad bytes, or the server shuts down (each
//!   connection then has `SHUTDOWN_GRACE` to do so before it is aborted). The publisher
//!   lives in an `Option` that is taken to call it.
//! - **One slow or hostile connection never blocks another**: each connection is its own
//!   task with its own deadlines (the shared accept loop, [`crate::doors::accept`]); a
//!   connection over `max_connections` or `connections_per_ip` is closed at once.
//! - **Bad input closes that connection only**, logged with the peer at debug or info,
//!   never a panic (rml_rtmp's own panics are caught in [`session`]).
//! - **Deadlines**: the handshake must finish within `handshake_timeout`; afterwards a
//!   connection that completes no RTMP message for `read_timeout` (silent, or dribbling
//!   bytes) is closed, and so is one that does not take our replies for as long. A
//!   connection that has no accepted publish `publish_timeout` after its handshake is
//!   closed, and until then its messages are limited to
//!   [`session::UNAUTHENTICATED_MESSAGE_BYTES`], not `max_message_bytes`.

mod connection;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::doors::accept::{self, AcceptSettings, Door, Refusal};

use crate::domains::stream::chunker::MediaTag;
use crate::domains::stream::{Publisher, SourceMetadata, StreamError, StreamService};

/// How long the door waits for its connections to finish their publishes at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Protocol limits of the door.
#[derive(Debug, Clone)]
pub struct RtmpLimits {
    /// Time allowed for the whole RTMP handshake (C0..C2).
    pub handshake_timeout: Duration,
    /// A connection that completes no message (or accepts none of ours) for this long is closed.
    pub read_timeout: Duration,
    /// Time allowed after the handshake until a publish with a valid stream key is accepted.
    pub publish_timeout: Duration,
    /// Largest RTMP message accepted, in bytes (a video keyframe is the largest in practice).
    pub max_message_bytes: usize,
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
    /// Connections open at once from one client address; more are closed on arrival.
    pub connections_per_ip: usize,
}

impl Default for RtmpLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(10),
            max_message_bytes: 8 << 20,
            max_connections: 64,
            connections_per_ip: 16,
        }
    }
}

/// Why an RTMP connection ended early. Logged by the door; the client sees the socket close
/// (after an `onStatus` error where the protocol has one).
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    /// The RTMP handshake was not valid.
    #[error("handshake failed: {0}")]
    Handshake(#[from] rml_rtmp::handshake::HandshakeError),
    /// The chunk stream or a message could not be read.
    #[error("bad RTMP input: {0}")]
    Session(#[from] rml_rtmp::sessions::ServerSessionError),
    /// rml_rtmp panicked on the input; the session was dropped.
    #[error("malformed RTMP input")]
    Malformed,
    /// A message larger than the limit, or bytes that never complete a message.
    #[error("RTMP message larger than {limit} bytes")]
    MessageTooLarge {
        /// `max_message_bytes`.
        limit: usize,
    },
    /// The session already failed.
    #[error("RTMP session already failed")]
    Failed,
    /// A deadline passed (`handshake`, `publish`, `idle` or `write`).
    #[error("RTMP {0} timed out")]
    Timeout(&'static str),
    /// The socket.
    #[error("RTMP socket: {0}")]
    Io(#[from] std::io::Error),
    /// The stream service refused the publish.
    #[error("publish refused: {0}")]
    PublishRefused(String),
    /// The client asked to play, which this door does not do.
    #[error("play refused (viewers use HLS)")]
    PlayRefused,
    /// The stream service could not take the media.
    #[error("stream failed: {0}")]
    Stream(String),
}

/// What the door needs from the stream service. [`StreamService`] is the real one; tests
/// use a fake.
pub trait Streams: Clone + Send + Sync + 'static {
    /// One accepted publish.
    type Publisher: PublishSession;
    /// Why a publish was refused (shown to the broadcaster).
    type Error: std::fmt::Display + Send;

    /// Checks the app and stream key and starts a publish session.
    fn begin_publish(
        &self,
        app: &str,
        key: &str,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Publisher, Self::Error>> + Send;
}

/// One accepted publish, as the door drives it.
pub trait PublishSession: Send + 'static {
    /// Why media could not be taken.
    type Error: std::fmt::Display + Send;

    /// The encoder's advertised properties.
    fn metadata(&mut self, metadata: SourceMetadata);
    /// One audio or video message, in order.
    fn media(&mut self, tag: MediaTag) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The end of the publish, called exactly once.
    fn finish(self) -> impl Future<Output = ()> + Send;
}

impl Streams for StreamService {
    type Publisher = Publisher;
    type Error = StreamError;

    fn begin_publish(
        &self,
        app: &str,
        key: &str,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Publisher, StreamError>> + Send {
        StreamService::begin_publish(self, app, key, peer)
    }
}

impl PublishSession for Publisher {
    type Error = StreamError;

    fn metadata(&mut self, metadata: SourceMetadata) {
        Publisher::metadata(self, metadata);
    }

    fn media(&mut self, tag: MediaTag) -> impl Future<Output = Result<(), StreamError>> + Send {
        Publisher::media(self, tag)
    }

    fn finish(self) -> impl Future<Output = ()> + Send {
        Publisher::finish(self)
    }
}

/// Serves RTMP on `listener` until `shutdown` turns true (or its sender is dropped), then
/// ends every publish and returns.
pub async fn serve(listener: TcpListener, streams: StreamService, limits: RtmpLimits, shutdown: watch::Receiver<bool>) {
    serve_with(listener, streams, limits, shutdown).await;
}

/// [`serve`] for any [`Streams`], on the shared accept loop ([`crate::doors::accept`]).
pub async fn serve_with<S: Streams>(
    listener: TcpListener,
    streams: S,
    limits: RtmpLimits,
    shutdown: watch::Receiver<bool>,
) {
    let settings = AcceptSettings {
        name: "rtmp",
        max_connections: limits.max_connections,
        per_ip: limits.connections_per_ip,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    accept::serve(listener, settings, Arc::new(RtmpDoor { streams, limits }), shutdown).await;
}

/// The RTMP door as the accept loop drives it.
struct RtmpDoor<S> {
    streams: S,
    limits: RtmpLimits,
}

impl<S: Streams> Door for RtmpDoor<S> {
    /// RTMP has no way to say "busy" before the handshake: the socket is just closed.
    fn refuse(&self, _socket: &TcpStream, peer: SocketAddr, why: Refusal) {
        tracing::info!(%peer, reason = why.as_str(), "rtmp: too many connections, closing");
    }

    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr, shutdown: watch::Receiver<bool>) {
        connection::handle(socket, peer, self.streams.clone(), &self.limits, shutdown).await
    }
}

#[cfg(test)]
mod tests;
