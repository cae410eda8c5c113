//! One RTMP connection: the read loop with its deadlines, writing the protocol core's
//! replies, and driving the publish session. The only place in the door that awaits the
//! stream service.
//!
//! It must not interpret RTMP bytes (that is [`super::session`]) nor decide who may
//! publish (that is the stream service).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Duration, Instant, timeout, timeout_at};

use super::session::{Event, RtmpSession};
use super::{PublishSession, RtmpError, RtmpLimits, Streams};

/// Bytes read from the socket at once.
const READ_BUFFER: usize = 64 * 1024;
/// After a refusal, how long the client may take to read it before the socket is dropped.
const LINGER: Duration = Duration::from_secs(2);

/// Serves one connection until it ends; ends its publish, if any, exactly once.
pub(super) async fn handle<S: Streams>(
    socket: TcpStream,
    peer: SocketAddr,
    streams: S,
    limits: &RtmpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let mut conn = Connection {
        socket,
        peer,
        streams,
        limits,
        session: RtmpSession::new(limits.max_message_bytes),
        publisher: None,
        accepted: false,
    };
    let result = conn.run(&mut shutdown).await;
    if let Some(publisher) = conn.publisher.take() {
        tracing::info!(%peer, "rtmp: publish ended by the connection closing");
        publisher.finish().await;
    }
    match result {
        Ok(()) => tracing::debug!(%peer, "rtmp: connection closed"),
        Err(e @ (RtmpError::PublishRefused(_) | RtmpError::PlayRefused)) => {
            tracing::info!(%peer, error = %e, "rtmp: refused");
            conn.linger().await;
        }
        Err(e @ (RtmpError::MessageTooLarge { .. } | RtmpError::Stream(_) | RtmpError::Timeout("publish"))) => {
            tracing::info!(%peer, error = %e, "rtmp: connection closed")
        }
        Err(e) => tracing::debug!(%peer, error = %e, "rtmp: connection closed"),
    }
}

struct Connection<'a, S: Streams> {
    socket: TcpStream,
    peer: SocketAddr,
    streams: S,
    limits: &'a RtmpLimits,
    session: RtmpSession,
    publisher: Option<S::Publisher>,
    /// Whether a publish was accepted on this connection (the publish deadline is met).
    accepted: bool,
}

impl<S: Streams> Connection<'_, S> {
    /// The read loop: `Ok` when the client closes, the publish ends or the server shuts down.
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), RtmpError> {
        let mut buf = vec![0u8; READ_BUFFER];
        let handshake_deadline = Instant::now() + self.limits.handshake_timeout;
        let mut idle_deadline = handshake_deadline;
        // Set when the handshake completes; no longer applies once a publish is accepted.
        let mut publish_deadline = None;
        loop {
            let (deadline, what) = match publish_deadline {
                _ if !self.session.is_open() => (handshake_deadline, "handshake"),
                Some(publish) if !self.accepted && publish < idle_deadline => (publish, "publish"),
                _ => (idle_deadline, "idle"),
            };
            let n = tokio::select! {
                read = timeout_at(deadline, self.socket.read(&mut buf)) => match read {
                    Ok(read) => read?,
                    Err(_) => return Err(RtmpError::Timeout(what)),
                },
                () = shut_down(shutdown) => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            let was_open = self.session.is_open();
            let received = self.session.receive(&buf[..n])?;
            self.send(&received.outbound).await?;
            for event in received.events {
                self.act(event).await?;
            }
            // Counted from now: time spent in the stream service is not the client's.
            if received.progress || (!was_open && self.session.is_open()) {
                idle_deadline = Instant::now() + self.limits.read_timeout;
            }
            if !was_open && self.session.is_open() {
                publish_deadline = Some(Instant::now() + self.limits.publish_timeout);
            }
        }
    }

    /// Acts on one event of the protocol core.
    async fn act(&mut self, event: Event) -> Result<(), RtmpError> {
        match event {
            Event::PublishRequested { request_id, app, key } => self.begin_publish(request_id, &app, &key).await,
            Event::Media(tag) => match self.publisher.as_mut() {
                Some(publisher) => publisher.media(tag).await.map_err(|e| RtmpError::Stream(e.to_string())),
                None => Ok(()),
            },
            Event::Metadata(metadata) => {
                if let Some(publisher) = self.publisher.as_mut() {
                    publisher.metadata(metadata);
                }
                Ok(())
            }
            Event::PublishFinished => {
                if let Some(publisher) = self.publisher.take() {
                    tracing::info!(peer = %self.peer, "rtmp: publish finished");
                    publisher.finish().await;
                }
                Ok(())
            }
            Event::PlayRefused { .. } => Err(RtmpError::PlayRefused),
        }
    }

    /// Asks the stream service, then accepts or refuses. The stream key is never logged.
    async fn begin_publish(&mut self, request_id: u32, app: &str, key: &str) -> Result<(), RtmpError> {
        if self.publisher.is_some() {
            let reason = "this connection is already publishing";
            let reply = self.session.reject(request_id, "NetStream.Publish.BadName", reason)?;
            self.send(&reply).await?;
            return Err(RtmpError::PublishRefused(reason.into()));
        }
        match self.streams.begin_publish(app, key, self.peer).await {
            Ok(publisher) => {
                // Held before anything else can fail, so that it is finished in every case.
                self.publisher = Some(publisher);
                self.accepted = true;
                let reply = self.session.accept(request_id)?;
                tracing::info!(peer = %self.peer, app, "rtmp: publishing");
                metrics::counter!("postcast_rtmp_publishes_total").increment(1);
                self.send(&reply).await
            }
            Err(e) => {
                let reason = e.to_string();
                metrics::counter!("postcast_rtmp_publishes_refused_total").increment(1);
                let reply = self.session.reject(request_id, "NetStream.Publish.BadName", &reason)?;
                self.send(&reply).await?;
                Err(RtmpError::PublishRefused(reason))
            }
        }
    }

    /// Writes bytes, giving a client that does not read at most `read_timeout`.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match timeout(self.limits.read_timeout, self.socket.write_all(bytes)).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(RtmpError::Timeout("write")),
        }
    }

    /// Closes our side and waits briefly for the client to close its side, so that the
    /// refusal just sent is read rather than lost to a reset.
    async fn linger(&mut self) {
        let _ = self.socket.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = timeout(LINGER, async { while matches!(self.socket.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
    }
}

/// Resolves when `shutdown` is true or its sender is gone.
async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
