//! The read/write loop of one IMAP connection: bytes from the socket go through the
//! [`LineGuard`] into imap-next's I/O-free [`Server`]; its events go to the [`Session`],
//! whose responses go back into the server and out to the socket. It owns the timeouts,
//! the error budget, BYE on idle and on shutdown, and the hand-over for STARTTLS.

use std::time::Duration;

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{CommandContinuationRequest, Greeting, GreetingKind, Status};
use imap_next::server::{Error as ServerError, Event, Options, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::ImapError;
use super::line_guard::{LineGuard, tag_of};
use super::reply::{self, Out};
use super::session::{AuthStep, Session, Then};

/// Parse errors in a row after which the connection is closed.
const MAX_ERRORS: u32 = 20;
/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The read buffer.
const READ_BUFFER: usize = 16 * 1024;

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long the client may stay silent.
    pub idle: Duration,
    /// The longest command line (literals not counted).
    pub max_line: usize,
    /// The largest literal.
    pub max_literal: u32,
}

/// How a connection's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The connection is over (LOGOUT, idle, shutdown, client gone, too many errors).
    Closed,
    /// STARTTLS was answered OK: run the handshake, then [`run`] again without greeting.
    StartTls,
}

/// An imap-next server with our limits; `greeting` is None after STARTTLS (the session
/// goes on without one, RFC 9051 §6.2.1).
fn server(limits: &Limits, greeting: Option<Greeting<'static>>) -> Server {
    let mut options = Options::default();
    options.crlf_relaxed = true;
    options.max_literal_size = limits.max_literal;
    options.max_command_size =
        limits.max_literal.saturating_add(u32::try_from(limits.max_line).unwrap_or(u32::MAX)).saturating_add(1);
    let first = greeting.clone().unwrap_or_else(|| Greeting {
        kind: GreetingKind::Ok,
        code: None,
        text: reply::text("not sent"),
    });
    let mut server = Server::new(options, first);
    if greeting.is_none() {
        // The greeting is queued first; take its bytes and drop them.
        while let Err(Interrupt::Io(Io::Output(_))) = server.next() {}
    }
    server
}

/// Queues `out` in order; returns the handle of the last response.
fn enqueue(server: &mut Server, out: Vec<Out>) -> Option<ResponseHandle> {
    let mut last = None;
    for o in out {
        last = Some(match o {
            Out::Data(d) => server.enqueue_data(d),
            Out::Status(s) => server.enqueue_status(s),
        });
    }
    last
}

/// A BAD for a line that could not be taken, tagged when its tag could be read.
fn refused(tag: Option<String>, message: &str) -> Status<'static> {
    let tag = tag.and_then(|t| Tag::try_from(t).ok());
    Status::bad(tag, None, reply::text(message)).unwrap_or_else(|_| reply::bye(message))
}

/// Writes `bytes` within [`WRITE_TIMEOUT`].
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), ImapError> {
    let send = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, send).await {
        Ok(r) => r.map_err(ImapError::Io),
        Err(_) => Err(ImapError::Timeout),
    }
}

/// Runs the connection until it ends or asks for TLS. `greet` is false after STARTTLS.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
    greet: bool,
) -> Result<Ended, ImapError> {
    let greeting = greet.then(|| Greeting {
        kind: GreetingKind::Ok,
        code: Some(session.greeting_code()),
        text: reply::text("postcast IMAP ready"),
    });
    let mut server = server(limits, greeting);
    let mut guard = LineGuard::new(limits.max_line, limits.max_literal);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut errors = 0u32;
    // The response after which the connection closes, or starts TLS.
    let mut last: Option<(ResponseHandle, Ended)> = None;
    loop {
        match server.next() {
            Ok(Event::GreetingSent { .. }) => {}
            Ok(Event::ResponseSent { handle, .. }) => {
                if let Some((h, ended)) = last
                    && h == handle
                {
                    return Ok(ended);
                }
            }
            Ok(Event::CommandReceived { command }) => {
                errors = 0;
                let replies = session.command(command).await;
                let handle = enqueue(&mut server, replies.out);
                match (replies.then, handle) {
                    (Then::Close, Some(h)) => last = Some((h, Ended::Closed)),
                    (Then::StartTls, Some(h)) => last = Some((h, Ended::StartTls)),
                    _ => {}
                }
            }
            Ok(Event::CommandAuthenticateReceived { command_authenticate: c }) => {
                match session.authenticate_start(c.tag, c.mechanism, c.initial_response).await {
                    AuthStep::Challenge => {
                        let challenge = CommandContinuationRequest::base64(Vec::new());
                        let _ = server.authenticate_continue(challenge);
                    }
                    AuthStep::Done(Out::Status(status)) => {
                        let _ = server.authenticate_finish(status);
                    }
                    AuthStep::Done(Out::Data(_)) => {
                        let _ = server.authenticate_finish(refused(None, "AUTHENTICATE failed"));
                    }
                }
            }
            Ok(Event::AuthenticateDataReceived { authenticate_data }) => {
                let status = match session.authenticate_data(authenticate_data).await {
                    Out::Status(s) => s,
                    Out::Data(_) => refused(None, "AUTHENTICATE failed"),
                };
                let _ = server.authenticate_finish(status);
            }
            Ok(Event::IdleCommandReceived { tag }) => {
                let _ = server.idle_reject(refused(Some(tag.as_ref().to_owned()), "IDLE is not supported yet"));
            }
            Ok(Event::IdleDoneReceived) => {}
            Err(Interrupt::Io(Io::Output(bytes))) => write(stream, &bytes).await?,
            Err(Interrupt::Io(Io::NeedMoreInput)) => {
                let closing = last.is_some();
                let n = tokio::select! {
                    read = tokio::time::timeout(limits.idle, stream.read(&mut buf)) => match read {
                        Ok(Ok(0)) => return Ok(Ended::Closed),
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => return Err(ImapError::Io(e)),
                        Err(_) => {
                            let h = server.enqueue_status(reply::bye("Autologout: idle for too long"));
                            last = Some((h, Ended::Closed));
                            continue;
                        }
                    },
                    _ = shutdown.changed(), if !closing => {
                        let h = server.enqueue_status(reply::bye("The server is shutting down"));
                        last = Some((h, Ended::Closed));
                        continue;
                    }
                };
                let mut passed = Vec::with_capacity(n);
                for overlong in guard.feed(&buf[..n], &mut passed) {
                    errors += 1;
                    server.enqueue_status(refused(overlong.tag, "Command line too long"));
                }
                server.enqueue_input(&passed);
            }
            Err(Interrupt::Error(e)) => {
                errors += 1;
                match e {
                    // imap-next has answered BAD already.
                    ServerError::LiteralTooLong { .. } => {}
                    ServerError::CommandTooLong { discarded_bytes } => {
                        server.enqueue_status(refused(tag_of(discarded_bytes.declassify()), "Command too long"));
                    }
                    ServerError::MalformedMessage { discarded_bytes }
                    | ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                        server.enqueue_status(refused(tag_of(discarded_bytes.declassify()), "Command not understood"));
                    }
                }
            }
        }
        if errors >= MAX_ERRORS && last.is_none() {
            let h = server.enqueue_status(reply::bye("Too many bad commands"));
            last = Some((h, Ended::Closed));
        }
    }
}
