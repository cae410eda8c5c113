//! The IMAP door: users' mail programs read their mail over IMAP4rev1 (RFC 3501, RFC
//! 9051), with STARTTLS on `server.imap` and implicit TLS on `server.imaps` (RFC 8314).
//! It owns the protocol only: imap-next's I/O-free server parses commands and encodes
//! responses, [`connection`] drives one connection over any async stream, [`session`]
//! keeps the session state and answers each command by calling the auth and mail
//! services ([`cmd`] has one file per group of commands), and [`listener`] accepts
//! connections on the shared accept loop. It holds no SQL and no business rule: the UID
//! view of the mailboxes is the mail domain's (`mail::uid_view`).
//!
//! What works: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE PLAIN (with SASL-IR),
//! ID, ENABLE, NAMESPACE, LIST, LSUB, STATUS, SELECT, EXAMINE, CREATE, DELETE, RENAME,
//! SUBSCRIBE, UNSUBSCRIBE, CHECK, CLOSE, UNSELECT, EXPUNGE, FETCH and STORE with their UID
//! forms, APPEND and COPY. SEARCH answers `NO [CANNOT] ... not supported yet`; other
//! commands (IDLE, MOVE, UID EXPUNGE, SORT, THREAD, ...) `BAD ... not supported yet`.
//!
//! Invariants:
//! - **Login only under TLS**, or from a loopback address while
//!   `imap.plaintext_login_on_loopback` allows it; otherwise CAPABILITY says
//!   LOGINDISABLED and LOGIN gets NO. Passwords go through the same throttling as SMTP AUTH.
//! - **A session sees only its user's mail**: every mail call takes the logged-in
//!   account's id, and the mail service finds nothing of anybody else's.
//! - **No line longer than `imap.max_line_bytes` reaches the parser**, not even in part
//!   ([`line_guard`]); it gets BAD and the session goes on, as after any command that does
//!   not parse. Twenty bad commands in a row end the session with BYE.
//! - **Plaintext pipelined after STARTTLS is discarded** (RFC 9051 §6.2.1): the parser
//!   that read it is dropped with it.
//! - **Sequence numbers change only where the client is told**: EXPUNGE responses are sent
//!   by EXPUNGE, NOOP and CHECK, never during FETCH or STORE.
//! - **Bad input never panics**: no `unwrap` on anything a client sent.

pub mod cmd;
pub mod config;
pub mod connection;
pub mod line_guard;
mod listener;
pub mod mutf7;
pub mod reply;
pub mod session;

pub use listener::{DoorSettings, serve};

/// Why an IMAP connection or door ended early.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Reading, writing or the TLS handshake failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A write or a TLS handshake took too long.
    #[error("timed out")]
    Timeout,
    /// An implicit-TLS door has no TLS configuration.
    #[error("the {0} door needs a TLS certificate")]
    NoTlsConfig(&'static str),
}
