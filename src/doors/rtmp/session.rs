//! The RTMP protocol core of the door, free of I/O: bytes in, bytes out and events. It runs
//! the handshake (rml_rtmp's `Handshake`, RTMP spec 1.0 §5.2), then rml_rtmp's
//! `ServerSession` (chunk stream §5.3, commands §7), and turns the session's events into
//! the few the door acts on.
//!
//! It owns the protocol policy that needs no service: connections are accepted (the stream
//! key is checked at publish), play requests are refused (viewers use HLS). It must not
//! decide who may publish: that is the stream service's answer to
//! [`Event::PublishRequested`].
//!
//! Invariants:
//! - **Outbound bytes are returned in the order rml_rtmp created them** (its chunk header
//!   compression depends on it): a batch's packets first, then the replies this core makes
//!   to that batch's requests.
//! - **No input panics the caller**: rml_rtmp panics on some malformed input (for example an
//!   `@setDataFrame` data message without arguments); such a panic is caught and becomes
//!   [`RtmpError::Malformed`], after which the session only returns errors.
//! - **Bounded buffering**: rml_rtmp buffers an incomplete message without a size limit; this
//!   core counts the bytes received since the last complete message and fails with
//!   [`RtmpError::MessageTooLarge`] past `max_message_bytes` (plus chunk-header overhead).
//! - **Small until a publish is accepted**: before [`RtmpSession::accept`] the limit is
//!   [`UNAUTHENTICATED_MESSAGE_BYTES`] (commands are small), so a peer without a valid stream
//!   key cannot make the server hold megabytes; `accept` raises it to `max_message_bytes`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata};

use super::RtmpError;
use crate::domains::stream::SourceMetadata;
use crate::domains::stream::chunker::{MediaTag, TagKind};

/// Bytes allowed beyond `max_message_bytes` before a message counts as too large: one read
/// buffer of the next message, plus the chunk headers (at most 1 in 16 at the smallest
/// chunk sizes in use) are added on top.
const SLACK_BYTES: usize = 64 * 1024;

/// The message limit before a publish is accepted: `connect`, `createStream` and `publish`
/// commands are a few hundred bytes.
pub const UNAUTHENTICATED_MESSAGE_BYTES: usize = 64 * 1024;

/// What the connection must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client asks to publish on `app` with the stream key `key`: answer with
    /// [`RtmpSession::accept`] or [`RtmpSession::reject`].
    PublishRequested {
        /// Pass back to `accept`/`reject`.
        request_id: u32,
        /// The RTMP application name (`live` in `rtmp://host/live/KEY`).
        app: String,
        /// The stream key.
        key: String,
    },
    /// An audio or video message of the accepted publish.
    Media(MediaTag),
    /// The broadcaster's `@setDataFrame onMetaData`.
    Metadata(SourceMetadata),
    /// The client ended its publish (`FCUnpublish`/`deleteStream`).
    PublishFinished,
    /// The client asked to play `key`; the refusal is already in the outbound bytes, the
    /// connection should send them and close.
    PlayRefused {
        /// The stream key asked for.
        key: String,
    },
}

/// The answer to one batch of input bytes.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes to send to the client, in order, before acting on `events`.
    pub outbound: Vec<u8>,
    /// Events in the order they were received.
    pub events: Vec<Event>,
    /// Whether at least one complete RTMP message arrived (the connection is not idle).
    pub progress: bool,
}

enum State {
    Handshaking(Box<Handshake>),
    Open(Box<ServerSession>),
    Failed,
}

/// The server side of one RTMP connection, from the first handshake byte.
pub struct RtmpSession {
    state: State,
    /// The limit in force: small until a publish is accepted.
    max_message_bytes: usize,
    /// The limit once a publish is accepted.
    publishing_message_bytes: usize,
    /// Bytes received since the last complete message.
    pending_bytes: usize,
}

impl RtmpSession {
    /// A session expecting the client's handshake; messages are limited to about
    /// [`UNAUTHENTICATED_MESSAGE_BYTES`] until a publish is accepted, to about
    /// `max_message_bytes` after.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            state: State::Handshaking(Box::new(Handshake::new(PeerType::Server))),
            max_message_bytes: max_message_bytes.min(UNAUTHENTICATED_MESSAGE_BYTES),
            publishing_message_bytes: max_message_bytes,
            pending_bytes: 0,
        }
    }

    /// The message limit in force, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// True once the handshake has completed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Takes bytes read from the socket.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Received, RtmpError> {
        let result = self.receive_inner(bytes).and_then(|received| {
            if received.progress {
                self.pending_bytes = 0;
            }
            let limit = self.max_message_bytes.saturating_add(self.max_message_bytes / 16).saturating_add(SLACK_BYTES);
            if self.pending_bytes > limit {
                return Err(RtmpError::MessageTooLarge { limit: self.max_message_bytes });
            }
            Ok(received)
        });
        self.fail_on_err(result)
    }

    /// Accepts an outstanding publish request and raises the message limit to
    /// `max_message_bytes`; returns the bytes to send.
    pub fn accept(&mut self, request_id: u32) -> Result<Vec<u8>, RtmpError> {
        let State::Open(session) = &mut self.state else { return Err(RtmpError::Failed) };
        let result = guarded(|| session.accept_request(request_id)).map(|r| packets(r, &mut Vec::new()));
        if result.is_ok() {
            self.max_message_bytes = self.publishing_message_bytes;
        }
        self.fail_on_err(result)
    }

    /// Refuses an outstanding request with an `onStatus` error `code` (e.g.
    /// `NetStream.Publish.BadName`) and a description the broadcaster's software shows.
    pub fn reject(&mut self, request_id: u32, code: &str, description: &str) -> Result<Vec<u8>, RtmpError> {
        let State::Open(session) = &mut self.state else { return Err(RtmpError::Failed) };
        let result =
            guarded(|| session.reject_request(request_id, code, description)).map(|r| packets(r, &mut Vec::new()));
        self.fail_on_err(result)
    }

    fn receive_inner(&mut self, bytes: &[u8]) -> Result<Received, RtmpError> {
        match &mut self.state {
            State::Handshaking(handshake) => match handshake_step(handshake, bytes)? {
                HandshakeStep::InProgress(outbound) => Ok(Received { outbound, ..Received::default() }),
                HandshakeStep::Done { session, mut outbound, rest } => {
                    self.state = State::Open(session);
                    let mut received = if rest.is_empty() { Received::default() } else { self.receive_inner(&rest)? };
                    outbound.append(&mut received.outbound);
                    received.outbound = outbound;
                    Ok(received)
                }
            },
            State::Open(session) => {
                self.pending_bytes = self.pending_bytes.saturating_add(bytes.len());
                receive_rtmp(session, bytes)
            }
            State::Failed => Err(RtmpError::Failed),
        }
    }

    /// Makes an error final: a session that failed once answers nothing more.
    fn fail_on_err<T>(&mut self, result: Result<T, RtmpError>) -> Result<T, RtmpError> {
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }
}

/// Where the handshake stands after some bytes.
enum HandshakeStep {
    InProgress(Vec<u8>),
    Done { session: Box<ServerSession>, outbound: Vec<u8>, rest: Vec<u8> },
}

fn handshake_step(handshake: &mut Handshake, bytes: &[u8]) -> Result<HandshakeStep, RtmpError> {
    let step = catch_unwind(AssertUnwindSafe(|| handshake.process_bytes(bytes))).map_err(|_| RtmpError::Malformed)?;
    match step? {
        HandshakeProcessResult::InProgress { response_bytes } => Ok(HandshakeStep::InProgress(response_bytes)),
        HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
            let (session, initial) = guarded(|| ServerSession::new(ServerSessionConfig::new()))?;
            let mut outbound = response_bytes;
            outbound.extend(packets(initial, &mut Vec::new()));
            Ok(HandshakeStep::Done { session: Box::new(session), outbound, rest: remaining_bytes })
        }
    }
}

/// Runs a call into rml_rtmp, turning its panics and errors into [`RtmpError`].
fn guarded<T>(f: impl FnOnce() -> Result<T, rml_rtmp::sessions::ServerSessionError>) -> Result<T, RtmpError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| RtmpError::Malformed)?.map_err(RtmpError::from)
}

/// Concatenates the outbound packets of `results`, moving the events to `events`.
fn packets(results: Vec<ServerSessionResult>, events: &mut Vec<ServerSessionEvent>) -> Vec<u8> {
    let mut out = Vec::new();
    for result in results {
        match result {
            ServerSessionResult::OutboundResponse(packet) => out.extend_from_slice(&packet.bytes),
            ServerSessionResult::RaisedEvent(event) => events.push(event),
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    out
}

/// Feeds chunk-stream bytes to the session and answers what needs no service.
fn receive_rtmp(session: &mut ServerSession, bytes: &[u8]) -> Result<Received, RtmpError> {
    let results = guarded(|| session.handle_input(bytes))?;
    let progress = results.iter().any(|r| !matches!(r, ServerSessionResult::OutboundResponse(_)));
    let mut raised = Vec::new();
    let mut outbound = packets(results, &mut raised);
    let mut events = Vec::new();
    for event in raised {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                let accepted = guarded(|| session.accept_request(request_id))?;
                outbound.extend(packets(accepted, &mut Vec::new()));
            }
            ServerSessionEvent::PlayStreamRequested { request_id, stream_key, .. } => {
                let description = "postcast does not play over RTMP: watch over HLS";
                let refused = guarded(|| session.reject_request(request_id, "NetStream.Play.Failed", description))?;
                outbound.extend(packets(refused, &mut Vec::new()));
                events.push(Event::PlayRefused { key: stream_key });
            }
            other => events.extend(door_event(other)),
        }
    }
    Ok(Received { outbound, events, progress })
}

/// The events the connection acts on; the rest are rml_rtmp's bookkeeping.
fn door_event(event: ServerSessionEvent) -> Option<Event> {
    Some(match event {
        ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
            Event::PublishRequested { request_id, app: app_name, key: stream_key }
        }
        ServerSessionEvent::PublishStreamFinished { .. } => Event::PublishFinished,
        ServerSessionEvent::StreamMetadataChanged { metadata, .. } => Event::Metadata(source_metadata(metadata)),
        ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
            Event::Media(MediaTag { kind: TagKind::Audio, timestamp_ms: timestamp.value, data })
        }
        ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
            Event::Media(MediaTag { kind: TagKind::Video, timestamp_ms: timestamp.value, data })
        }
        _ => return None,
    })
}

/// Maps the encoder's advertised properties, dropping values that cannot be right.
pub fn source_metadata(m: StreamMetadata) -> SourceMetadata {
    SourceMetadata {
        width: m.video_width.filter(|&w| w > 0),
        height: m.video_height.filter(|&h| h > 0),
        fps: m.video_frame_rate.map(f64::from).filter(|f| f.is_finite() && *f > 0.0),
        video_kbps: m.video_bitrate_kbps,
        audio_kbps: m.audio_bitrate_kbps,
        encoder: m.encoder,
    }
}

#[cfg(test)]
mod tests;
