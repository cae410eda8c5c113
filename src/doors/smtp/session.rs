//! One SMTP server session as a pure state machine (RFC 5321, with RFC 1870 SIZE, RFC 2920
//! PIPELINING, RFC 3207 STARTTLS and RFC 4954 AUTH): bytes in through [`Session::feed`],
//! [`Event`]s out. It frames command lines itself (so the line limit is ours), parses them
//! with smtp-proto's `Request::parse`, and reads DATA bodies with smtp-proto's
//! `DataReceiver` (dot-unstuffing, CRLF.CRLF only). It does no I/O, never blocks and never
//! panics on input; every question for the rest of the server (credentials, recipients,
//! delivery) leaves as an event, and the session waits for the answer before reading on.
//!
//! A body is kept in memory, charged to the doors' shared [`MemoryBudget`], until it
//! passes `spool_threshold`; from then on its bytes leave in [`Event::Spool`] pieces of
//! about [`SPOOL_CHUNK`] for the door to write to disk, and the message is handed over as
//! [`Body::Spooled`]. A body that finds no room in the budget is spooled at once, whatever
//! its size.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MailFrom, Request};

use super::budget::{Charge, MemoryBudget};
use super::reply;
use super::{
    AuthMechanism, AuthVerdict, Body, DELIVERY_COPIES, Event, Held, MessageVerdict, RcptVerdict, SessionConfig,
    SessionContext, SessionKind,
};
use crate::domains::mail::parse::header_fields;

/// After this many failed commands the session says 421 and closes.
const MAX_ERRORS: u32 = 10;
/// The longest SASL response line (RFC 4954 §4: at least 12288 octets).
const AUTH_LINE_MAX: usize = 12_288;
/// How far past `max_message_bytes` the body buffer may grow before it is thrown away.
const DATA_SLACK: usize = 64 * 1024;
/// The most input fed in one step; bounds what is copied at once.
const FEED_CHUNK: usize = 64 * 1024;
/// The most pipelined input kept while the door answers a question.
const PENDING_MAX: usize = 256 * 1024;
/// Once a body is spooled, the most of it held in memory before the next piece goes out.
pub(super) const SPOOL_CHUNK: usize = 256 * 1024;
/// RFC 5321 §6.3: a message with more Received fields than allowed is looping; RFC 3463 X.4.6.
const LOOPING: (u16, &str, &str) = (554, "5.4.6", "Too many Received headers: mail loop detected");
/// RFC 3463 X.3.1 "mail system full": no memory or disk for the message now (RFC 5321 §4.2.3).
const NO_STORAGE: (u16, &str, &str) = (452, "4.3.1", "Insufficient system storage, try again later");

/// Where the session is in the dialogue.
enum Phase {
    /// Reading command lines.
    Command,
    /// AUTH PLAIN sent 334; the next line is the response.
    AuthPlain,
    /// AUTH LOGIN asked for the user name.
    AuthLoginUser,
    /// AUTH LOGIN asked for the password of `username`.
    AuthLoginPassword { username: String },
    /// Reading a DATA body.
    Data(DataReceiver),
    /// Reading an oversized DATA body to its end, keeping nothing (RFC 1870 §6.3).
    DataOverflow(DummyDataReceiver),
    /// Skipping the chunk of a BDAT we do not support (RFC 3030 is not offered).
    BdatDiscard(DummyDataReceiver),
    /// Waiting for [`Session::auth_result`] about `username`.
    AwaitAuth { username: String },
    /// Waiting for [`Session::sender_result`] about this reverse-path.
    AwaitMail(String),
    /// Waiting for [`Session::recipient_result`] about this address.
    AwaitRcpt(String),
    /// Waiting for [`Session::message_result`].
    AwaitMessage,
    /// STARTTLS accepted; waiting for [`Session::tls_started`].
    AwaitTls,
    /// The session is over.
    Closed,
}

/// One SMTP server session: feed it bytes, act on its events.
pub struct Session {
    config: SessionConfig,
    peer: IpAddr,
    phase: Phase,
    /// Input not yet consumed: at most one partial line, or pipelined input while waiting.
    input: Vec<u8>,
    /// The current line passed the limit; its bytes are dropped until its LF.
    overlong: bool,
    helo: Option<String>,
    user: Option<String>,
    tls_active: bool,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    /// The body bytes held in memory: all of it, or once spooled what is not written yet.
    data: Vec<u8>,
    /// The budget held for `data`'s capacity.
    charge: Charge,
    /// Body bytes handed out in [`Event::Spool`] so far.
    spooled: usize,
    /// The budget had no room: spool what this step reads right after reading it.
    spill: bool,
    errors: u32,
    /// A `*_result` call ended the session: the next feed or resume yields [`Event::Close`].
    close_pending: bool,
}

impl Session {
    /// A new session with a client at `peer`; send [`Session::greeting`] first.
    pub fn new(config: SessionConfig, peer: IpAddr) -> Self {
        let tls_active = config.tls_active;
        let charge = config.budget.charge();
        Self {
            config,
            peer,
            phase: Phase::Command,
            input: Vec::new(),
            overlong: false,
            helo: None,
            user: None,
            tls_active,
            mail_from: None,
            rcpts: Vec::new(),
            data: Vec::new(),
            charge,
            spooled: 0,
            spill: false,
            errors: 0,
            close_pending: false,
        }
    }

    /// The 220 greeting (RFC 5321 §4.2, §3.1).
    pub fn greeting(&self) -> Vec<u8> {
        reply::line(220, "", &format!("{} ESMTP postcast", self.config.hostname))
    }

    /// What the handler needs to know about this client.
    pub fn context(&self) -> SessionContext {
        SessionContext {
            peer: self.peer,
            kind: self.config.kind,
            helo: self.helo.clone(),
            user: self.user.clone(),
            tls: self.tls_active,
        }
    }

    /// The memory budget this session counts its body bytes against.
    pub fn budget(&self) -> &MemoryBudget {
        &self.config.budget
    }

    /// Whether the session is over (QUIT, too many errors, idle timeout).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Takes bytes from the client, split anywhere, and returns what to do, in order. After
    /// a question event (`Authenticate`, `CheckSender`, `CheckRecipient`, `Message`) input is only kept
    /// until the answer; call [`Session::resume`] after answering.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        if std::mem::take(&mut self.close_pending) {
            out.push(Event::Close);
            return out;
        }
        if bytes.is_empty() {
            self.process(&mut out);
        }
        for chunk in bytes.chunks(FEED_CHUNK) {
            match self.phase {
                // RFC 3207 §5: plaintext after STARTTLS must not be acted upon.
                Phase::Closed | Phase::AwaitTls => break,
                _ => {}
            }
            self.input.extend_from_slice(chunk);
            if self.is_waiting() && self.input.len() > PENDING_MAX {
                out.push(Event::Reply(reply::line(421, "4.7.0", "Too much pipelined input, closing connection")));
                out.push(Event::Close);
                self.close();
                break;
            }
            self.process(&mut out);
        }
        out
    }

    /// Goes on with input that arrived while a question was open.
    pub fn resume(&mut self) -> Vec<Event> {
        self.feed(&[])
    }

    /// The answer to [`Event::Authenticate`] (RFC 4954 §6).
    pub fn auth_result(&mut self, verdict: AuthVerdict) -> Vec<u8> {
        let Phase::AwaitAuth { username } = &mut self.phase else {
            return Vec::new();
        };
        let username = std::mem::take(username);
        self.phase = Phase::Command;
        match verdict {
            AuthVerdict::Accepted => {
                self.user = Some(username);
                reply::line(235, "2.7.0", "Authentication successful")
            }
            AuthVerdict::Refused => self.fail_bytes(535, "5.7.8", "Authentication credentials invalid"),
            AuthVerdict::TryLater => reply::line(454, "4.7.0", "Temporary authentication failure, try again later"),
        }
    }

    /// The answer to [`Event::CheckSender`]: whether this session may use the reverse-path
    /// (on submission, only the authenticated user's own addresses).
    pub fn sender_result(&mut self, allowed: bool) -> Vec<u8> {
        let Phase::AwaitMail(address) = &mut self.phase else {
            return Vec::new();
        };
        let address = std::mem::take(address);
        self.phase = Phase::Command;
        if allowed {
            self.mail_from = Some(address);
            reply::line(250, "2.1.0", "Sender OK")
        } else {
            self.fail_bytes(550, "5.7.1", "Sender address is not one of yours")
        }
    }

    /// The answer to [`Event::CheckRecipient`] (RFC 5321 §4.1.1.3, §3.6.2 on relaying).
    pub fn recipient_result(&mut self, verdict: RcptVerdict) -> Vec<u8> {
        let Phase::AwaitRcpt(address) = &mut self.phase else {
            return Vec::new();
        };
        let address = std::mem::take(address);
        self.phase = Phase::Command;
        match verdict {
            RcptVerdict::Local => {
                if !self.rcpts.contains(&address) {
                    self.rcpts.push(address);
                }
                reply::line(250, "2.1.5", "Recipient OK")
            }
            RcptVerdict::UnknownUser => reply::line(550, "5.1.1", "Mailbox unavailable: no such user"),
            RcptVerdict::RelayDenied => reply::line(550, "5.7.1", "Relaying denied"),
            RcptVerdict::MailboxFull => reply::line(452, "4.2.2", "Mailbox full, try again later"),
            RcptVerdict::TemporaryFailure => reply::line(451, "4.3.0", "Temporary failure, try again later"),
        }
    }

    /// The answer to [`Event::Message`]: the reply to the end of data (RFC 5321 §4.1.1.4).
    /// The transaction is over either way.
    pub fn message_result(&mut self, verdict: MessageVerdict) -> Vec<u8> {
        if !matches!(self.phase, Phase::AwaitMessage) {
            return Vec::new();
        }
        self.phase = Phase::Command;
        self.reset_transaction();
        match verdict {
            MessageVerdict::Accepted => reply::line(250, "2.0.0", "Message accepted"),
            MessageVerdict::Rejected(code, enhanced, text) => {
                let code = if (400..600).contains(&code) { code } else { 554 };
                reply::line(code, &enhanced, &text)
            }
            MessageVerdict::TemporaryFailure => reply::line(451, "4.3.0", "Temporary failure, try again later"),
        }
    }

    /// Logs and counts a message refused as a mail loop (it never reaches the handler).
    fn note_loop(&self) {
        metrics::counter!("postcast_smtp_loops_total").increment(1);
        tracing::info!(from = ?self.mail_from, recipients = self.rcpts.len(), "refused: mail loop (too many Received fields)");
    }

    /// The door read a [`Body::Spooled`] message back whole: refuses it (the answer to the
    /// end of data; the transaction is over) when it is looping, a check the session could
    /// not make on bytes it no longer held. None: go on and deliver it.
    pub fn check_spooled(&mut self, message: &[u8]) -> Option<Vec<u8>> {
        let looping = too_many_received(message, self.config.max_received_headers);
        looping.then(|| {
            self.note_loop();
            self.message_result(refusal(LOOPING))
        })
    }

    /// The door has no room for the message (not in the memory budget in time, or the
    /// spool failed): the answer to the end of data is 452 4.3.1, and the session goes on
    /// (RFC 5321 §4.2.3 allows a later try).
    pub fn no_storage(&mut self) -> Vec<u8> {
        self.message_result(refusal(NO_STORAGE))
    }

    /// The door finished the TLS handshake after [`Event::StartTls`]: the session starts
    /// over without greeting, as RFC 3207 §4.2 requires (the client sends EHLO again).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.user = None;
        self.reset_transaction();
        self.input.clear();
        self.overlong = false;
        self.phase = Phase::Command;
    }

    /// The client was idle too long: the 421 to send before closing (RFC 5321 §4.5.3.2).
    pub fn idle_timeout(&mut self) -> Vec<u8> {
        self.close();
        reply::line(421, "4.4.2", &format!("{} Idle timeout, closing connection", self.config.hostname))
    }

    /// The session reached its time limit, however busy: the 421 to send before closing
    /// (RFC 3463 X.4.2 "bad connection", as for the idle timeout).
    pub fn time_limit(&mut self) -> Vec<u8> {
        self.close();
        reply::line(421, "4.4.2", &format!("{} Session time limit reached, closing connection", self.config.hostname))
    }

    /// The bytes the session holds now (input and body buffers), for the memory-bound tests.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.input.capacity() + self.data.capacity()
    }

    fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::AwaitAuth { .. } | Phase::AwaitMail(_) | Phase::AwaitRcpt(_) | Phase::AwaitMessage)
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.input = Vec::new();
        self.data = Vec::new();
        self.charge.shrink_to(0);
    }

    /// Consumes as much input as the phase allows.
    fn process(&mut self, out: &mut Vec<Event>) {
        let mut pos = 0;
        loop {
            let progressed = match self.phase {
                Phase::Command | Phase::AuthPlain | Phase::AuthLoginUser | Phase::AuthLoginPassword { .. } => {
                    self.step_line(&mut pos, out)
                }
                Phase::Data(_) | Phase::DataOverflow(_) | Phase::BdatDiscard(_) => self.step_data(&mut pos, out),
                _ => false,
            };
            if !progressed {
                break;
            }
        }
        match self.phase {
            Phase::AwaitTls | Phase::Closed => self.input.clear(),
            _ => {
                self.input.drain(..pos.min(self.input.len()));
            }
        }
    }

    /// Handles one complete line, or drops the bytes of an overlong one. False when no
    /// complete line is buffered.
    fn step_line(&mut self, pos: &mut usize, out: &mut Vec<Event>) -> bool {
        let limit = match self.phase {
            Phase::Command => self.config.max_line,
            _ => AUTH_LINE_MAX.max(self.config.max_line),
        };
        let start = *pos;
        let Some(lf) = self.input[start..].iter().position(|&b| b == b'\n') else {
            // RFC 5321 §4.5.3.1.4: never buffer past the line limit.
            if self.overlong || self.input.len() - start >= limit {
                self.overlong = true;
                *pos = self.input.len();
            }
            return false;
        };
        *pos = start + lf + 1;
        if std::mem::take(&mut self.overlong) || lf + 1 > limit {
            self.phase = Phase::Command;
            self.fail(out, 500, "5.5.2", "Line too long");
            return true;
        }
        let line = self.input[start..*pos].to_vec();
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::AuthPlain => self.auth_plain_response(&line, out),
            Phase::AuthLoginUser => self.auth_login_user(&line, out),
            Phase::AuthLoginPassword { username } => self.auth_login_password(username, &line, out),
            _ => self.command(&line, out),
        }
        true
    }

    /// Feeds buffered input to the body receiver, keeping at most the limit plus slack, and
    /// hands bytes to the spool when due.
    fn step_data(&mut self, pos: &mut usize, out: &mut Vec<Event>) -> bool {
        if *pos >= self.input.len() {
            return false;
        }
        let received = self.spooled + self.data.len();
        let room = (self.config.max_message_bytes + DATA_SLACK).saturating_sub(received).max(1);
        let end = (*pos + room).min(self.input.len());
        if matches!(self.phase, Phase::Data(_)) {
            self.make_room(end - *pos, out);
        }
        let mut bytes = self.input[*pos..end].iter();
        let done = match &mut self.phase {
            Phase::Data(receiver) => receiver.ingest(&mut bytes, &mut self.data),
            Phase::DataOverflow(receiver) | Phase::BdatDiscard(receiver) => receiver.ingest(&mut bytes),
            _ => return false,
        };
        *pos = end - bytes.len();
        if let Phase::Data(receiver) = &self.phase {
            if self.spooled + self.data.len() > self.config.max_message_bytes {
                // RFC 1870 §6.3: read the rest of an oversized message, but keep none of it.
                self.phase = Phase::DataOverflow(DummyDataReceiver::new_data(receiver));
                self.drop_body(out);
            } else if self.spill || self.spool_due() {
                self.spool_out(out, done);
            }
        }
        if done {
            self.end_of_data(out);
        }
        true
    }

    /// Makes room in the body buffer for `step` more bytes, charged to the budget: doubling
    /// up to the spool threshold in memory, about [`SPOOL_CHUNK`] once spooling. When the
    /// budget has no room, what is held goes to the spool now and this step is read
    /// uncharged (at most [`FEED_CHUNK`] bytes) and spooled right after.
    fn make_room(&mut self, step: usize, out: &mut Vec<Event>) {
        let need = self.data.len() + step;
        if need <= self.data.capacity() {
            return;
        }
        let most = if self.spooled == 0 { self.config.spool_threshold } else { SPOOL_CHUNK } + FEED_CHUNK;
        let want = need.max(self.data.capacity().saturating_mul(2).min(most));
        if self.charge.try_grow_to(want) {
            self.data.reserve_exact(want - self.data.len());
            return;
        }
        self.spool_out(out, false);
        self.spill = true;
    }

    /// Whether the bytes held should go to the spool: past the threshold in memory, or a
    /// full piece once spooling.
    fn spool_due(&self) -> bool {
        let most = if self.spooled == 0 { self.config.spool_threshold } else { SPOOL_CHUNK };
        self.data.len() > most
    }

    /// Hands the body bytes held to the door in an [`Event::Spool`]. Until the body is
    /// `complete` a final CR stays: the receiver takes it back if it turns out to belong to
    /// the closing CRLF.CRLF.
    fn spool_out(&mut self, out: &mut Vec<Event>, complete: bool) {
        self.spill = false;
        let mut bytes = std::mem::take(&mut self.data);
        if !complete && bytes.last() == Some(&b'\r') {
            bytes.pop();
            self.data.push(b'\r');
        }
        let charge = std::mem::replace(&mut self.charge, self.config.budget.charge());
        if !bytes.is_empty() {
            self.spooled += bytes.len();
            out.push(Event::Spool(Held { bytes, charge }));
        }
    }

    /// Forgets the body received so far, in memory and in the spool.
    fn drop_body(&mut self, out: &mut Vec<Event>) {
        self.data = Vec::new();
        self.charge.shrink_to(0);
        self.spill = false;
        if std::mem::take(&mut self.spooled) > 0 {
            out.push(Event::DropSpool);
        }
    }

    /// The body ended: refuse it when it was too big or is looping, else hand it over.
    fn end_of_data(&mut self, out: &mut Vec<Event>) {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::DataOverflow(_) => {
                self.reset_transaction();
                out.push(Event::Reply(reply::line(552, "5.3.4", "Message size exceeds fixed maximum message size")));
            }
            Phase::BdatDiscard(_) => {
                self.fail(out, 502, "5.5.1", "BDAT not implemented");
            }
            // The door reads a spooled message back and checks it then (`check_spooled`).
            _ if self.spooled > 0 => {
                self.spool_out(out, true);
                let body = Body::Spooled(std::mem::take(&mut self.spooled));
                self.hand_over(body, out);
            }
            _ if too_many_received(&self.data, self.config.max_received_headers) => {
                self.note_loop();
                self.reset_transaction();
                let (code, enhanced, text) = LOOPING;
                out.push(Event::Reply(reply::line(code, enhanced, text)));
            }
            _ => {
                let bytes = std::mem::take(&mut self.data);
                let charge = std::mem::replace(&mut self.charge, self.config.budget.charge());
                self.hand_over(Body::InMemory(Held { bytes, charge }), out);
            }
        }
    }

    /// Asks the door to deliver the message of this transaction.
    fn hand_over(&mut self, body: Body, out: &mut Vec<Event>) {
        let from = self.mail_from.take().unwrap_or_default();
        let to = std::mem::take(&mut self.rcpts);
        self.phase = Phase::AwaitMessage;
        out.push(Event::Message { from, to, body });
    }

    /// Parses and runs one command line (RFC 5321 §4.1.1).
    fn command(&mut self, line: &[u8], out: &mut Vec<Event>) {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request.into_owned(),
            Err(error) => return self.parse_error(error, out),
        };
        match request {
            Request::Ehlo { host } => self.hello(host, true, out),
            Request::Helo { host } => self.hello(host, false, out),
            Request::Mail { from } => self.mail(from, out),
            Request::Rcpt { to } => self.rcpt(to.address, out),
            Request::Data => self.data_command(out),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, &initial_response, out),
            Request::StartTls => self.starttls(out),
            // RFC 5321 §4.1.1.5: RSET clears the transaction, not the EHLO.
            Request::Rset => {
                self.reset_transaction();
                out.push(Event::Reply(reply::line(250, "2.0.0", "OK")));
            }
            // RFC 5321 §4.1.1.9
            Request::Noop { .. } => out.push(Event::Reply(reply::line(250, "2.0.0", "OK"))),
            // RFC 5321 §3.5.3: 252 when we will not say whether a user exists.
            Request::Vrfy { .. } => out.push(Event::Reply(reply::line(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ))),
            // RFC 5321 §4.1.1.8
            Request::Help { .. } => out.push(Event::Reply(reply::line(214, "2.0.0", "See RFC 5321"))),
            // RFC 5321 §4.1.1.10
            Request::Quit => {
                out.push(Event::Reply(reply::line(221, "2.0.0", "Bye")));
                out.push(Event::Close);
                self.close();
            }
            Request::Bdat { chunk_size, .. } if chunk_size > 0 => {
                self.phase = Phase::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size));
            }
            // RFC 5321 §4.2.4: known but not implemented.
            Request::Bdat { .. }
            | Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.fail(out, 502, "5.5.1", "Command not implemented"),
        }
    }

    /// Turns a parse error into its reply (RFC 5321 §4.2.2, §4.1.1.11 for parameters).
    fn parse_error(&mut self, error: ParseError, out: &mut Vec<Event>) {
        match error {
            ParseError::InvalidSenderAddress => self.fail(out, 501, "5.1.7", "Bad sender address syntax"),
            ParseError::InvalidRecipientAddress => self.fail(out, 501, "5.1.3", "Bad recipient address syntax"),
            ParseError::SyntaxError { syntax } => self.fail(out, 501, "5.5.4", &format!("Syntax: {syntax}")),
            ParseError::InvalidParameter { param } => {
                self.fail(out, 501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { .. } => self.fail(out, 555, "5.5.4", "Unsupported parameter"),
            _ => self.fail(out, 500, "5.5.2", "Syntax error, command unrecognized"),
        }
    }

    /// EHLO/HELO (RFC 5321 §4.1.1.1); both reset the transaction (§4.1.4).
    fn hello(&mut self, host: String, extended: bool, out: &mut Vec<Event>) {
        self.reset_transaction();
        self.helo = Some(host);
        let greeting = format!("{} Hello [{}]", self.config.hostname, self.peer);
        if !extended {
            out.push(Event::Reply(reply::line(250, "", &greeting)));
            return;
        }
        let mut lines = vec![
            greeting,
            format!("SIZE {}", self.config.max_message_bytes), // RFC 1870 §4
            "PIPELINING".to_string(),                          // RFC 2920 §3
            "8BITMIME".to_string(),                            // RFC 6152
            "SMTPUTF8".to_string(),                            // RFC 6531
            "ENHANCEDSTATUSCODES".to_string(),                 // RFC 2034
        ];
        if self.config.tls_available && !self.tls_active {
            lines.push("STARTTLS".to_string()); // RFC 3207 §4
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string()); // RFC 4954 §3
        }
        out.push(Event::Reply(reply::multi(250, &lines)));
    }

    /// AUTH is offered on submission sessions, over TLS, until it succeeded.
    fn auth_offered(&self) -> bool {
        self.config.kind == SessionKind::Submission && self.tls_active && self.user.is_none()
    }

    /// MAIL FROM (RFC 5321 §4.1.1.2, SIZE per RFC 1870 §6.2).
    fn mail(&mut self, from: MailFrom<String>, out: &mut Vec<Event>) {
        if self.helo.is_none() {
            return self.fail(out, 503, "5.5.1", "Send EHLO or HELO first");
        }
        if self.config.kind == SessionKind::Submission && self.user.is_none() {
            // RFC 4954 §6
            return self.fail(out, 530, "5.7.0", "Authentication required");
        }
        if self.mail_from.is_some() {
            return self.fail(out, 503, "5.5.1", "Sender already specified");
        }
        if from.size > self.config.max_message_bytes {
            let text = "Message size exceeds fixed maximum message size";
            return out.push(Event::Reply(reply::line(552, "5.3.4", text)));
        }
        if from.size.saturating_mul(DELIVERY_COPIES) > self.config.budget.total() {
            // RFC 1870 §6.2: more than the server can take now is 452 (RFC 3463 X.3.1).
            let (code, enhanced, text) = NO_STORAGE;
            return out.push(Event::Reply(reply::line(code, enhanced, text)));
        }
        out.push(Event::CheckSender(from.address.clone()));
        self.phase = Phase::AwaitMail(from.address);
    }

    /// RCPT TO (RFC 5321 §4.1.1.3): limits here, the verdict from the door.
    fn rcpt(&mut self, address: String, out: &mut Vec<Event>) {
        if self.mail_from.is_none() {
            return self.fail(out, 503, "5.5.1", "Need MAIL before RCPT");
        }
        if self.rcpts.len() >= self.config.max_recipients {
            // RFC 5321 §4.5.3.1.10
            return out.push(Event::Reply(reply::line(452, "4.5.3", "Too many recipients")));
        }
        // smtp-proto reads `<postmaster>` (RFC 5321 §4.1.1.3, always accepted) as "".
        let address = if address.is_empty() { "postmaster".to_string() } else { address };
        out.push(Event::CheckRecipient(address.clone()));
        self.phase = Phase::AwaitRcpt(address);
    }

    /// DATA (RFC 5321 §4.1.1.4, §3.3: 554 without valid recipients).
    fn data_command(&mut self, out: &mut Vec<Event>) {
        if self.mail_from.is_none() {
            return self.fail(out, 503, "5.5.1", "Need MAIL command");
        }
        if self.rcpts.is_empty() {
            return self.fail(out, 554, "5.5.1", "No valid recipients");
        }
        self.data = Vec::new();
        self.charge.shrink_to(0);
        self.spooled = 0;
        self.spill = false;
        self.phase = Phase::Data(primed_data_receiver());
        out.push(Event::Reply(reply::line(354, "", "Start mail input; end with <CRLF>.<CRLF>")));
    }

    /// STARTTLS (RFC 3207 §4).
    fn starttls(&mut self, out: &mut Vec<Event>) {
        if self.tls_active {
            return self.fail(out, 503, "5.5.1", "TLS already active");
        }
        if !self.config.tls_available {
            return out.push(Event::Reply(reply::line(454, "4.7.0", "TLS not available")));
        }
        out.push(Event::Reply(reply::line(220, "2.0.0", "Ready to start TLS")));
        out.push(Event::StartTls);
        self.phase = Phase::AwaitTls;
    }

    /// AUTH (RFC 4954 §4), PLAIN (RFC 4616) and LOGIN.
    fn auth(&mut self, mechanism: u64, initial: &str, out: &mut Vec<Event>) {
        if self.config.kind != SessionKind::Submission {
            return self.fail(out, 502, "5.5.1", "AUTH not available");
        }
        if !self.tls_active {
            return self.fail(out, 530, "5.7.0", "Must issue a STARTTLS command first");
        }
        if self.helo.is_none() {
            return self.fail(out, 503, "5.5.1", "Send EHLO first");
        }
        if self.user.is_some() {
            return self.fail(out, 503, "5.5.1", "Already authenticated");
        }
        if self.mail_from.is_some() {
            return self.fail(out, 503, "5.5.1", "AUTH not permitted during a mail transaction");
        }
        match (mechanism, initial.is_empty()) {
            (AUTH_PLAIN, true) => {
                self.phase = Phase::AuthPlain;
                out.push(Event::Reply(reply::challenge("")));
            }
            (AUTH_PLAIN, false) => self.auth_plain(initial.as_bytes(), out),
            (AUTH_LOGIN, true) => {
                self.phase = Phase::AuthLoginUser;
                out.push(Event::Reply(reply::challenge("VXNlcm5hbWU6"))); // "Username:"
            }
            (AUTH_LOGIN, false) => self.auth_login_user(initial.as_bytes(), out),
            _ => self.fail(out, 504, "5.5.4", "Unrecognized authentication type"),
        }
    }

    fn auth_plain_response(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if self.sasl_cancelled(line, out) {
            return;
        }
        self.auth_plain(line, out);
    }

    /// Decodes `authzid NUL authcid NUL password` (RFC 4616 §2).
    fn auth_plain(&mut self, base64: &[u8], out: &mut Vec<Event>) {
        let Some(decoded) = self.sasl_decode(base64, out) else {
            return;
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.fail(out, 501, "5.5.2", "Malformed PLAIN response");
        };
        let (Ok(authzid), Ok(username), Ok(password)) =
            (std::str::from_utf8(authzid), std::str::from_utf8(authcid), std::str::from_utf8(password))
        else {
            return self.fail(out, 501, "5.5.2", "Malformed PLAIN response");
        };
        if !authzid.is_empty() && authzid != username {
            return self.fail(out, 535, "5.7.8", "Authentication credentials invalid");
        }
        self.ask_auth(AuthMechanism::Plain, username.to_string(), password.to_string(), out);
    }

    fn auth_login_user(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if self.sasl_cancelled(line, out) {
            return;
        }
        let Some(decoded) = self.sasl_decode(line, out) else {
            return;
        };
        let Ok(username) = String::from_utf8(decoded) else {
            return self.fail(out, 501, "5.5.2", "Malformed user name");
        };
        self.phase = Phase::AuthLoginPassword { username };
        out.push(Event::Reply(reply::challenge("UGFzc3dvcmQ6"))); // "Password:"
    }

    fn auth_login_password(&mut self, username: String, line: &[u8], out: &mut Vec<Event>) {
        if self.sasl_cancelled(line, out) {
            return;
        }
        let Some(decoded) = self.sasl_decode(line, out) else {
            return;
        };
        let Ok(password) = String::from_utf8(decoded) else {
            return self.fail(out, 501, "5.5.2", "Malformed password");
        };
        self.ask_auth(AuthMechanism::Login, username, password, out);
    }

    fn ask_auth(&mut self, mechanism: AuthMechanism, username: String, password: String, out: &mut Vec<Event>) {
        out.push(Event::Authenticate { mechanism, username: username.clone(), password });
        self.phase = Phase::AwaitAuth { username };
    }

    /// RFC 4954 §4: a response of `*` cancels the exchange with 501.
    fn sasl_cancelled(&mut self, line: &[u8], out: &mut Vec<Event>) -> bool {
        if line.trim_ascii() == b"*" {
            self.fail(out, 501, "5.0.0", "Authentication cancelled");
            return true;
        }
        false
    }

    /// Decodes a SASL response; `=` is the empty response (RFC 4954 §4). Replies 501 on bad base64.
    fn sasl_decode(&mut self, line: &[u8], out: &mut Vec<Event>) -> Option<Vec<u8>> {
        let text = line.trim_ascii();
        if text == b"=" {
            return Some(Vec::new());
        }
        match BASE64.decode(text) {
            Ok(decoded) => Some(decoded),
            Err(_) => {
                self.fail(out, 501, "5.5.2", "Invalid base64 data");
                None
            }
        }
    }

    /// Clears the mail transaction (RFC 5321 §4.1.1.5).
    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.data = Vec::new();
        self.charge.shrink_to(0);
        self.spooled = 0;
        self.spill = false;
    }

    /// Replies with an error and counts it; too many errors end the session.
    fn fail(&mut self, out: &mut Vec<Event>, code: u16, enhanced: &str, text: &str) {
        let bytes = self.fail_bytes(code, enhanced, text);
        out.push(Event::Reply(bytes));
        if std::mem::take(&mut self.close_pending) {
            out.push(Event::Close);
        }
    }

    /// The bytes of an error reply, with 421 appended once the client made too many errors.
    fn fail_bytes(&mut self, code: u16, enhanced: &str, text: &str) -> Vec<u8> {
        let mut bytes = reply::line(code, enhanced, text);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            bytes.extend(reply::line(421, "4.7.0", "Too many errors, closing connection"));
            self.close();
            self.close_pending = true;
        }
        bytes
    }
}

/// The verdict that refuses a message with `reply` (code, enhanced code, text).
fn refusal((code, enhanced, text): (u16, &str, &str)) -> MessageVerdict {
    MessageVerdict::Rejected(code, enhanced.to_string(), text.to_string())
}

/// Whether the header section of `message` (up to the first empty line) holds more than
/// `max` lines starting with `Received:`, in any case. Stops counting past `max`.
pub(super) fn too_many_received(message: &[u8], max: usize) -> bool {
    header_fields(message).filter(|f| f.is("Received")).nth(max).is_some()
}

/// A body receiver that knows it starts at the beginning of a line: smtp-proto's
/// `DataReceiver` starts as if mid-line, so without this a first line "." (the empty
/// message) would not end the data and a first line ".." would keep both dots
/// (RFC 5321 §4.1.1.4: the DATA command's CRLF begins the first line).
fn primed_data_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    let mut scratch = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
    receiver
}
