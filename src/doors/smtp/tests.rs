//! Tests of the SMTP door: the session fed byte strings split everywhere, its limits and
//! error paths, random garbage, and [`run_session`] driven by mail-send's client over an
//! in-memory duplex pipe. A scripted door answers the session's questions.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::session::too_many_received;
use super::*;

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn inbound() -> SessionConfig {
    SessionConfig::new(SessionKind::Inbound, "mx.test")
}

fn submission(tls_active: bool) -> SessionConfig {
    SessionConfig { tls_available: true, tls_active, ..SessionConfig::new(SessionKind::Submission, "mx.test") }
}

/// A delivered message: reverse-path, recipients, data.
type Delivered = (String, Vec<String>, Vec<u8>);

/// Everything a scripted door saw while driving a session.
#[derive(Default)]
struct Outcome {
    out: Vec<u8>,
    messages: Vec<Delivered>,
    logins: Vec<(AuthMechanism, String, String)>,
    closed: bool,
    starttls: bool,
    /// Sizes of the [`Event::Spool`] pieces, in order.
    pieces: Vec<usize>,
    /// Messages that were handed over as [`Body::Spooled`].
    spooled: usize,
    /// [`Event::DropSpool`] events seen.
    dropped: usize,
}

impl Outcome {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// Feeds `pieces` one after the other, answering questions as a door would: recipients
/// at local.test exist, the password "secret" is right, every message is accepted.
fn drive(session: &mut Session, pieces: &[&[u8]]) -> Outcome {
    drive_spooling(session, pieces, &mut Vec::new())
}

/// [`drive`] with the door's spool file kept in `spool` across calls.
fn drive_spooling(session: &mut Session, pieces: &[&[u8]], spool: &mut Vec<u8>) -> Outcome {
    let mut outcome = Outcome::default();
    for piece in pieces {
        let mut events: VecDeque<Event> = session.feed(piece).into();
        while let Some(event) = events.pop_front() {
            match event {
                Event::Reply(bytes) => outcome.out.extend(bytes),
                Event::StartTls => outcome.starttls = true,
                Event::Close => outcome.closed = true,
                Event::Authenticate { mechanism, username, password } => {
                    let verdict = match password.as_str() {
                        "secret" => AuthVerdict::Accepted,
                        "busy" => AuthVerdict::TryLater,
                        _ => AuthVerdict::Refused,
                    };
                    outcome.logins.push((mechanism, username, password));
                    outcome.out.extend(session.auth_result(verdict));
                    events.extend(session.resume());
                }
                Event::CheckSender(address) => {
                    outcome.out.extend(session.sender_result(!address.starts_with("forged@")));
                    events.extend(session.resume());
                }
                Event::CheckRecipient(address) => {
                    let verdict = match address.split_once('@') {
                        Some(("nobody", "local.test")) => RcptVerdict::UnknownUser,
                        Some((_, "local.test")) => RcptVerdict::Local,
                        _ => RcptVerdict::RelayDenied,
                    };
                    outcome.out.extend(session.recipient_result(verdict));
                    events.extend(session.resume());
                }
                Event::Spool(held) => {
                    outcome.pieces.push(held.bytes.len());
                    spool.extend(held.bytes);
                }
                Event::DropSpool => {
                    outcome.dropped += 1;
                    spool.clear();
                }
                Event::Message { from, to, body } => {
                    let (data, refused) = match body {
                        Body::InMemory(held) => (held.bytes, None),
                        Body::Spooled(len) => {
                            assert_eq!(len, spool.len(), "the spool holds the whole message");
                            outcome.spooled += 1;
                            let data = std::mem::take(spool);
                            let refused = session.check_spooled(&data);
                            (data, refused)
                        }
                    };
                    match refused {
                        Some(refused) => outcome.out.extend(refused),
                        None => {
                            outcome.messages.push((from, to, data));
                            outcome.out.extend(session.message_result(MessageVerdict::Accepted));
                        }
                    }
                    events.extend(session.resume());
                }
            }
        }
    }
    outcome
}

/// Limits with `idle`, an hour's lifetime and a spool folder nobody uses.
fn limits(idle: Duration) -> SessionLimits {
    SessionLimits::new(idle, Duration::from_secs(3600), std::env::temp_dir().join("postcast-unused-spool"))
}

fn drive_whole(config: SessionConfig, input: &[u8]) -> Outcome {
    drive(&mut Session::new(config, PEER), &[input])
}

const FULL_SESSION: &[u8] = b"EHLO client.test\r\n\
MAIL FROM:<alice@remote.test> SIZE=100\r\n\
RCPT TO:<bob@local.test>\r\n\
RCPT TO:<eve@elsewhere.test>\r\n\
RCPT TO:<nobody@local.test>\r\n\
DATA\r\n\
Subject: hi\r\n\r\n..dot line\r\nbody\r\n.\r\n\
NOOP\r\n\
VRFY bob\r\n\
RSET\r\n\
QUIT\r\n";

const FULL_REPLIES: &str = "250-mx.test Hello [127.0.0.1]\r\n\
250-SIZE 26214400\r\n\
250-PIPELINING\r\n\
250-8BITMIME\r\n\
250-SMTPUTF8\r\n\
250 ENHANCEDSTATUSCODES\r\n\
250 2.1.0 Sender OK\r\n\
250 2.1.5 Recipient OK\r\n\
550 5.7.1 Relaying denied\r\n\
550 5.1.1 Mailbox unavailable: no such user\r\n\
354 Start mail input; end with <CRLF>.<CRLF>\r\n\
250 2.0.0 Message accepted\r\n\
250 2.0.0 OK\r\n\
252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n\
250 2.0.0 OK\r\n\
221 2.0.0 Bye\r\n";

fn assert_full_session(outcome: &Outcome, how: &str) {
    assert_eq!(outcome.text(), FULL_REPLIES, "{how}");
    assert!(outcome.closed, "{how}");
    assert_eq!(outcome.messages.len(), 1, "{how}");
    let (from, to, data) = &outcome.messages[0];
    assert_eq!(from, "alice@remote.test");
    assert_eq!(to, &["bob@local.test".to_string()]);
    assert_eq!(data, b"Subject: hi\r\n\r\n.dot line\r\nbody\r\n", "{how}");
}

#[test]
fn greeting_is_220() {
    assert_eq!(Session::new(inbound(), PEER).greeting(), b"220 mx.test ESMTP postcast\r\n");
}

#[test]
fn full_inbound_session_in_one_piece() {
    assert_full_session(&drive_whole(inbound(), FULL_SESSION), "whole");
}

#[test]
fn full_inbound_session_byte_by_byte() {
    let pieces: Vec<&[u8]> = FULL_SESSION.chunks(1).collect();
    assert_full_session(&drive(&mut Session::new(inbound(), PEER), &pieces), "byte by byte");
}

#[test]
fn full_inbound_session_split_at_every_position() {
    for at in 0..=FULL_SESSION.len() {
        let (head, tail) = FULL_SESSION.split_at(at);
        let outcome = drive(&mut Session::new(inbound(), PEER), &[head, tail]);
        assert_full_session(&outcome, &format!("split at {at}"));
    }
}

#[test]
fn pipelined_commands_get_replies_in_order() {
    let mut session = Session::new(inbound(), PEER);
    let input = b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nRCPT TO:<c@local.test>\r\nDATA\r\n";
    let events = session.feed(input);
    // The session stops at its first question and keeps the rest for later.
    assert!(matches!(events.last(), Some(Event::CheckSender(address)) if address == "a@remote.test"));
    let outcome = drive(&mut session, &[b""]);
    assert_eq!(outcome.out, b"");
    let mut session = Session::new(inbound(), PEER);
    let outcome = drive(&mut session, &[input]);
    let text = outcome.text();
    let replies: Vec<&str> = text.lines().filter(|l| !l.starts_with("250-")).collect();
    assert_eq!(
        replies,
        [
            "250 ENHANCEDSTATUSCODES",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
            "354 Start mail input; end with <CRLF>.<CRLF>"
        ]
    );
}

#[test]
fn size_parameter_over_the_limit_is_552() {
    let config = SessionConfig { max_message_bytes: 1000, ..inbound() };
    let outcome = drive_whole(
        config,
        b"HELO c\r\nMAIL FROM:<a@remote.test> SIZE=1001\r\nMAIL FROM:<a@remote.test> SIZE=1000\r\n",
    );
    assert_eq!(
        outcome.text(),
        "250 mx.test Hello [127.0.0.1]\r\n552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.1.0 Sender OK\r\n"
    );
}

#[test]
fn oversized_body_is_552_and_never_kept() {
    let max = 64 * 1024;
    let config = SessionConfig { max_message_bytes: max, ..inbound() };
    let mut session = Session::new(config, PEER);
    let outcome = drive(&mut session, &[b"HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n"]);
    assert!(outcome.text().ends_with("354 Start mail input; end with <CRLF>.<CRLF>\r\n"));
    let line = [b'x'; 998];
    let mut most_held = 0;
    for _ in 0..2000 {
        let outcome = drive(&mut session, &[&line, b"\r\n"]);
        assert!(outcome.out.is_empty() && outcome.messages.is_empty());
        most_held = most_held.max(session.held_bytes());
    }
    assert!(most_held <= 2 * (max + DATA_SLACK_FOR_TESTS), "held {most_held} bytes");
    let outcome = drive(&mut session, &[b".\r\nRCPT TO:<b@local.test>\r\n"]);
    assert_eq!(
        outcome.text(),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n503 5.5.1 Need MAIL before RCPT\r\n"
    );
    assert!(outcome.messages.is_empty());
    assert!(session.held_bytes() < 4096);
}

/// The slack the session allows past the limit (64 KiB), as the bound to check against.
const DATA_SLACK_FOR_TESTS: usize = 64 * 1024;

#[test]
fn body_exactly_at_the_limit_is_accepted() {
    let config = SessionConfig { max_message_bytes: 12, ..inbound() };
    let outcome =
        drive_whole(config, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n0123456789\r\n.\r\n");
    assert!(outcome.text().ends_with("250 2.0.0 Message accepted\r\n"), "{}", outcome.text());
    assert_eq!(outcome.messages[0].0, "");
    assert_eq!(outcome.messages[0].2, b"0123456789\r\n");
}

/// A transaction (after the greeting) that sends one message whose header section holds
/// `received` Received fields.
fn with_received(received: usize) -> Vec<u8> {
    let mut input = b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n".to_vec();
    for hop in 0..received {
        input.extend(
            format!("Received: from hop{hop}.test by hop{}.test; Fri, 1 Jan 2027 00:00:00 +0000\r\n", hop + 1).bytes(),
        );
    }
    input.extend(b"Subject: round and round\r\n\r\nReceived: in the body, not counted\r\n.\r\nNOOP\r\n");
    input
}

#[test]
fn more_received_fields_than_allowed_is_554_5_4_6() {
    let config = SessionConfig { max_received_headers: 3, ..inbound() };
    let inbound_with = |config: &SessionConfig, received| {
        drive_whole(config.clone(), &[&b"HELO c\r\n"[..], &with_received(received)].concat())
    };
    let outcome = inbound_with(&config, 3);
    assert!(outcome.text().ends_with("250 2.0.0 Message accepted\r\n250 2.0.0 OK\r\n"), "{}", outcome.text());
    assert_eq!(outcome.messages.len(), 1);
    let outcome = inbound_with(&config, 4);
    assert!(
        outcome.text().ends_with("554 5.4.6 Too many Received headers: mail loop detected\r\n250 2.0.0 OK\r\n"),
        "{}",
        outcome.text()
    );
    assert!(outcome.messages.is_empty(), "a looping message never reaches the handler");
    // The default is 50, on submission too.
    assert_eq!(inbound().max_received_headers, 50);
    let login = b"EHLO c\r\nAUTH PLAIN AGFkYQBzZWNyZXQ=\r\n";
    let submit = |received| {
        let input = [&login[..], &with_received(received)[..]].concat();
        drive_whole(submission(true), &input)
    };
    let outcome = submit(51);
    assert!(outcome.text().contains("\r\n554 5.4.6 "), "{}", outcome.text());
    assert!(outcome.messages.is_empty());
    assert_eq!(submit(50).messages.len(), 1);
}

#[test]
fn received_fields_are_counted_in_the_header_section_only_in_any_case() {
    let head = b"Received: a\r\nreceived: b\r\nRECEIVED:c\r\n\tfolded on\r\nReceived-SPF: pass\r\nX-Received: d\r\n";
    let message = [&head[..], b"Subject: s\r\n\r\nReceived: body\r\nReceived: body\r\n"].concat();
    assert!(!too_many_received(&message, 3), "three fields, the body and look-alikes not counted");
    assert!(too_many_received(&message, 2));
    assert!(!too_many_received(b"Received: a\nReceived: b\n\nReceived: c\n", 2), "bare LF lines too");
    assert!(too_many_received(b"Received: a\nReceived: b\nReceived: c", 2), "a message without a body");
    assert!(!too_many_received(b"", 0));
}

#[test]
fn recipient_limit_is_452() {
    let config = SessionConfig { max_recipients: 2, ..inbound() };
    let outcome = drive_whole(
        config,
        b"HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nRCPT TO:<c@local.test>\r\nRCPT TO:<d@local.test>\r\n",
    );
    assert!(outcome.text().ends_with("250 2.1.5 Recipient OK\r\n452 4.5.3 Too many recipients\r\n"));
}

#[test]
fn commands_out_of_sequence_are_503() {
    let outcome = drive_whole(
        inbound(),
        b"MAIL FROM:<a@remote.test>\r\nHELO c\r\nRCPT TO:<b@local.test>\r\nDATA\r\nMAIL FROM:<a@r.test>\r\nMAIL FROM:<a@r.test>\r\nDATA\r\n",
    );
    assert_eq!(
        outcome.text(),
        "503 5.5.1 Send EHLO or HELO first\r\n\
         250 mx.test Hello [127.0.0.1]\r\n\
         503 5.5.1 Need MAIL before RCPT\r\n\
         503 5.5.1 Need MAIL command\r\n\
         250 2.1.0 Sender OK\r\n\
         503 5.5.1 Sender already specified\r\n\
         554 5.5.1 No valid recipients\r\n"
    );
}

#[test]
fn unknown_and_malformed_commands() {
    let outcome =
        drive_whole(inbound(), b"FOO bar\r\nHELO c\r\nMAIL FROM:<not an address>\r\nRCPT TO:<>\r\nEXPN list\r\n");
    let text = outcome.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "500 5.5.2 Syntax error, command unrecognized");
    assert!(lines[2].starts_with("501 "), "{text}");
    assert!(lines[3].starts_with("503 "), "{text}");
    assert_eq!(lines[4], "502 5.5.1 Command not implemented");
}

#[test]
fn overlong_line_is_500_and_not_buffered() {
    let mut session = Session::new(inbound(), PEER);
    let mut most_held = 0;
    drive(&mut session, &[b"NOOP "]);
    for _ in 0..1000 {
        drive(&mut session, &[&[b'x'; 100]]);
        most_held = most_held.max(session.held_bytes());
    }
    let outcome = drive(&mut session, &[b"\r\nNOOP\r\n"]);
    assert_eq!(outcome.text(), "500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n");
    assert!(most_held <= 4 * 1024, "held {most_held} bytes");
    // A line of exactly max_line octets (CRLF included) is fine; one more is not.
    let exact = format!("NOOP {}\r\n", "y".repeat(DEFAULT_MAX_LINE - 7));
    let over = format!("NOOP {}\r\n", "y".repeat(DEFAULT_MAX_LINE - 6));
    let outcome = drive_whole(inbound(), format!("{exact}{over}").as_bytes());
    assert_eq!(outcome.text(), "250 2.0.0 OK\r\n500 5.5.2 Line too long\r\n");
}

#[test]
fn too_many_errors_close_with_421() {
    let outcome = drive_whole(inbound(), &b"BOGUS\r\n".repeat(12));
    let text = outcome.text();
    assert_eq!(text.matches("500 5.5.2").count(), 10);
    assert!(text.ends_with("421 4.7.0 Too many errors, closing connection\r\n"));
    assert!(outcome.closed);
}

#[test]
fn submission_refuses_auth_before_tls_and_mail_before_auth() {
    let outcome =
        drive_whole(submission(false), b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\nMAIL FROM:<bob@local.test>\r\n");
    let text = outcome.text();
    assert!(text.contains("250 STARTTLS\r\n") && !text.contains("AUTH PLAIN LOGIN"), "{text}");
    assert!(text.ends_with("530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Authentication required\r\n"));
    assert!(outcome.logins.is_empty());
}

#[test]
fn inbound_never_offers_auth() {
    let config = SessionConfig { tls_active: true, ..inbound() };
    let outcome = drive_whole(config, b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    assert!(!outcome.text().contains("AUTH PLAIN LOGIN"));
    assert!(outcome.text().ends_with("502 5.5.1 AUTH not available\r\n"));
    assert!(outcome.logins.is_empty());
}

#[test]
fn auth_plain_with_initial_response_after_tls() {
    // "\0bob\0secret"
    let outcome =
        drive_whole(submission(true), b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\nMAIL FROM:<bob@local.test>\r\n");
    let text = outcome.text();
    assert!(text.contains("250 AUTH PLAIN LOGIN\r\n") && !text.contains("STARTTLS"), "{text}");
    assert!(text.ends_with("235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n"), "{text}");
    assert_eq!(outcome.logins, [(AuthMechanism::Plain, "bob".to_string(), "secret".to_string())]);
}

#[test]
fn auth_plain_continuation_and_wrong_password() {
    // "\0bob\0wrong", then "bob\0bob\0secret"
    let outcome = drive_whole(
        submission(true),
        b"EHLO c\r\nAUTH PLAIN AGJvYgB3cm9uZw==\r\nAUTH PLAIN\r\nYm9iAGJvYgBzZWNyZXQ=\r\nAUTH PLAIN\r\n",
    );
    assert!(outcome.text().ends_with(
        "535 5.7.8 Authentication credentials invalid\r\n334 \r\n235 2.7.0 Authentication successful\r\n\
         503 5.5.1 Already authenticated\r\n"
    ));
    assert_eq!(outcome.logins.len(), 2);
}

#[test]
fn a_busy_password_check_is_a_temporary_failure_and_the_client_may_retry() {
    // "\0bob\0busy" (the handler's slots are full), then "\0bob\0secret"
    let outcome =
        drive_whole(submission(true), b"EHLO c\r\nAUTH PLAIN AGJvYgBidXN5\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    assert!(
        outcome.text().ends_with(
            "454 4.7.0 Temporary authentication failure, try again later\r\n235 2.7.0 Authentication successful\r\n"
        ),
        "{}",
        outcome.text()
    );
}

#[test]
fn auth_login_and_cancel() {
    // "bob" / "secret"
    let outcome = drive_whole(submission(true), b"EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN\r\nYm9i\r\nc2VjcmV0\r\n");
    assert!(outcome.text().ends_with(
        "334 VXNlcm5hbWU6\r\n501 5.0.0 Authentication cancelled\r\n\
         334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    ));
    assert_eq!(outcome.logins, [(AuthMechanism::Login, "bob".to_string(), "secret".to_string())]);
    let outcome = drive_whole(submission(true), b"EHLO c\r\nAUTH LOGIN Ym9i\r\n!!!\r\nAUTH CRAM-MD5\r\n");
    assert!(outcome.text().ends_with(
        "334 UGFzc3dvcmQ6\r\n501 5.5.2 Invalid base64 data\r\n504 5.5.4 Unrecognized authentication type\r\n"
    ));
}

#[test]
fn starttls_discards_pipelined_plaintext_and_starts_over() {
    let config = SessionConfig { tls_available: true, ..inbound() };
    let mut session = Session::new(config, PEER);
    let outcome = drive(&mut session, &[b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@remote.test>\r\n", b"RSET\r\n"]);
    assert!(outcome.text().ends_with("250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"), "{}", outcome.text());
    assert!(outcome.starttls);
    session.tls_started();
    let outcome = drive(&mut session, &[b"MAIL FROM:<a@remote.test>\r\nEHLO c\r\nSTARTTLS\r\n"]);
    let text = outcome.text();
    assert!(text.starts_with("503 5.5.1 Send EHLO or HELO first\r\n"), "{text}");
    assert!(!text.contains("250 STARTTLS") && !text.contains("250-STARTTLS"), "{text}");
    assert!(text.ends_with("503 5.5.1 TLS already active\r\n"), "{text}");
    assert!(session.context().tls);
}

#[test]
fn starttls_unavailable_is_454() {
    let outcome = drive_whole(inbound(), b"EHLO c\r\nSTARTTLS\r\n");
    assert!(!outcome.text().contains("STARTTLS"));
    assert!(outcome.text().ends_with("454 4.7.0 TLS not available\r\n"));
    assert!(!outcome.starttls);
}

#[test]
fn dot_unstuffing_and_bare_lf_do_not_end_data() {
    let outcome = drive_whole(
        inbound(),
        b"HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n\
          ..\r\n...x\r\na.b\r\n\n.\nnot the end\r\n.\r\n",
    );
    assert_eq!(outcome.messages.len(), 1, "{}", outcome.text());
    assert_eq!(outcome.messages[0].2, b".\r\n..x\r\na.b\r\n\n.\nnot the end\r\n");
}

#[test]
fn empty_message_ends_at_once() {
    let outcome =
        drive_whole(inbound(), b"HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n.\r\n");
    assert_eq!(outcome.messages.len(), 1, "{}", outcome.text());
    assert_eq!(outcome.messages[0].2, b"");
}

#[test]
fn two_messages_in_one_session() {
    let message = b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\nhello\r\n.\r\n";
    let input = [b"HELO c\r\n".as_slice(), message, message].concat();
    let outcome = drive_whole(inbound(), &input);
    assert_eq!(outcome.messages.len(), 2);
    assert_eq!(outcome.text().matches("250 2.0.0 Message accepted").count(), 2);
}

#[test]
fn bdat_chunk_is_skipped() {
    let outcome = drive_whole(inbound(), b"HELO c\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert!(outcome.text().ends_with("502 5.5.1 BDAT not implemented\r\n250 2.0.0 OK\r\n"));
}

#[test]
fn random_garbage_never_panics_and_stays_bounded() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: &[&[u8]] =
        &[b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<d@local.test>\r\n", b"DATA\r\n", b"\r\n.\r\n", b"AUTH "];
    for round in 0..200 {
        let config = if round % 2 == 0 { inbound() } else { submission(true) };
        let mut session = Session::new(config, PEER);
        for _ in 0..200 {
            let mut piece = Vec::new();
            for _ in 0..(next() % 64) {
                let roll = next();
                if roll % 8 == 0 {
                    piece.extend_from_slice(WORDS[(roll >> 8) as usize % WORDS.len()]);
                } else {
                    piece.push((roll >> 16) as u8);
                }
            }
            drive(&mut session, &[&piece]);
            assert!(session.held_bytes() <= 2 * (DEFAULT_MAX_LINE + 12_288 + DATA_SLACK_FOR_TESTS));
        }
    }
}

#[test]
fn debug_output_hides_password_and_body() {
    let event =
        Event::Authenticate { mechanism: AuthMechanism::Plain, username: "bob".into(), password: "hunter2".into() };
    assert!(!format!("{event:?}").contains("hunter2"));
    let held = Held { bytes: b"secret body".to_vec(), charge: MemoryBudget::new(100).charge() };
    let event = Event::Message { from: "a@b".into(), to: vec![], body: Body::InMemory(held) };
    assert!(!format!("{event:?}").contains("secret body"));
}

/// A door that records what it delivers.
struct Recorder {
    messages: Mutex<Vec<Delivered>>,
}

impl SmtpHandler for Recorder {
    async fn authenticate(&self, _: &SessionContext, _: AuthMechanism, _: &str, _: &str) -> AuthVerdict {
        AuthVerdict::Refused
    }

    async fn check_recipient(&self, ctx: &SessionContext, address: &str) -> RcptVerdict {
        assert_eq!(ctx.helo.as_deref(), Some("client.test"));
        if address.ends_with("@local.test") { RcptVerdict::Local } else { RcptVerdict::RelayDenied }
    }

    async fn deliver(&self, _: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        if let Ok(mut messages) = self.messages.lock() {
            messages.push((from, to, data));
        }
        MessageVerdict::Accepted
    }
}

#[tokio::test]
async fn run_session_delivers_a_message_from_mail_send() -> anyhow::Result<()> {
    let (client_end, server_end) = tokio::io::duplex(4096);
    let recorder = Recorder { messages: Mutex::new(Vec::new()) };
    let session = Session::new(inbound(), PEER);
    let limits = limits(Duration::from_secs(5));
    let server = run_session(server_end, session, &recorder, &limits, None);
    let body: Vec<u8> = [
        b"From: alice@remote.test\r\nTo: bob@local.test\r\nSubject: test\r\n\r\n".as_slice(),
        b".a line starting with a dot\r\n\r\n.\r\n",
        &b"0123456789abcdef".repeat(8000),
        b"\r\nthe end",
    ]
    .concat();
    let client = async {
        let mut client = mail_send::SmtpClient { stream: client_end, timeout: Duration::from_secs(5) };
        mail_send::smtp::AssertReply::assert_positive_completion(client.read().await?)?;
        let ehlo = client.ehlo("client.test").await?;
        assert_eq!(ehlo.size, DEFAULT_MAX_MESSAGE_BYTES);
        let message = mail_send::smtp::message::Message::new("alice@remote.test", ["bob@local.test"], body.as_slice());
        client.send(message).await?;
        let refused =
            mail_send::smtp::message::Message::new("alice@remote.test", ["eve@elsewhere.test"], b"x".as_slice());
        assert!(client.send(refused).await.is_err());
        client.rset().await?;
        client.quit().await?;
        Ok::<_, mail_send::Error>(())
    };
    let (served, sent) = tokio::join!(server, client);
    served?;
    sent?;
    let messages = recorder.messages.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    assert_eq!(messages.len(), 1);
    let (from, to, data) = &messages[0];
    assert_eq!(from, "alice@remote.test");
    assert_eq!(to, &["bob@local.test".to_string()]);
    assert_eq!(data, &[body.as_slice(), b"\r\n"].concat());
    Ok(())
}

#[tokio::test]
async fn run_session_says_421_when_idle() {
    let (mut client_end, server_end) = tokio::io::duplex(4096);
    let recorder = Recorder { messages: Mutex::new(Vec::new()) };
    let result =
        run_session(server_end, Session::new(inbound(), PEER), &recorder, &limits(Duration::from_millis(50)), None)
            .await;
    assert!(matches!(result, Err(SmtpError::IdleTimeout)));
    let mut seen = String::new();
    let _ = client_end.read_to_string(&mut seen).await;
    assert!(seen.ends_with("421 4.4.2 mx.test Idle timeout, closing connection\r\n"), "{seen}");
}

#[test]
fn run_session_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (_client_end, server_end) = tokio::io::duplex(64);
    let recorder = Recorder { messages: Mutex::new(Vec::new()) };
    let limits = limits(Duration::from_secs(1));
    let future = run_session(server_end, Session::new(inbound(), PEER), &recorder, &limits, None);
    assert_send(&future);
}

#[test]
fn a_refused_sender_is_550_and_a_later_allowed_one_is_taken() {
    let input = b"EHLO c.test\r\nMAIL FROM:<forged@x.test>\r\nRCPT TO:<bob@local.test>\r\nMAIL FROM:<ok@x.test>\r\nRCPT TO:<bob@local.test>\r\nQUIT\r\n";
    let outcome = drive_whole(inbound(), input);
    let text = outcome.text();
    assert!(text.contains("550 5.7.1 Sender address is not one of yours\r\n503 5.5.1 Need MAIL before RCPT"), "{text}");
    assert!(text.contains("250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK"), "{text}");
}

/// An inbound session config that spools past `threshold` bytes and counts against `budget`.
fn spooling(threshold: usize, budget: &MemoryBudget) -> SessionConfig {
    SessionConfig { spool_threshold: threshold, budget: budget.clone(), ..inbound() }
}

/// A body with lines that start with dots, a line that is only a dot, and a CR that is
/// not part of a line end: `(as sent, dot-stuffed with the final dot; as it must arrive)`.
fn dotted_body(filler_lines: usize) -> (Vec<u8>, Vec<u8>) {
    let mut plain = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nlone cr\rhere\r\n".to_vec();
    for n in 0..filler_lines {
        plain.extend_from_slice(format!("line {n:05} of filler text to pass the threshold\r\n").as_bytes());
    }
    plain.extend_from_slice(b".\r\n");
    let mut stuffed = Vec::new();
    for line in plain.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    stuffed.extend_from_slice(b".\r\n");
    (stuffed, plain)
}

const START_DATA: &[u8] = b"HELO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n";

#[test]
fn a_body_past_the_threshold_is_spooled_in_pieces_and_comes_back_exact() {
    let budget = MemoryBudget::new(1 << 20);
    let (stuffed, plain) = dotted_body(20_000);
    assert!(plain.len() > 3 * session::SPOOL_CHUNK);
    for piece in [1, 7, 1000, 16 * 1024, usize::MAX] {
        let mut session = Session::new(spooling(4096, &budget), PEER);
        let mut spool = Vec::new();
        let mut outcome = drive_spooling(&mut session, &[START_DATA], &mut spool);
        let mut most_held = 0;
        for chunk in stuffed.chunks(piece.min(stuffed.len())) {
            let step = drive_spooling(&mut session, &[chunk], &mut spool);
            most_held = most_held.max(session.held_bytes());
            outcome.out.extend(step.out);
            outcome.messages.extend(step.messages);
            outcome.pieces.extend(step.pieces);
            outcome.spooled += step.spooled;
        }
        assert!(outcome.text().ends_with("250 2.0.0 Message accepted\r\n"), "{}", outcome.text());
        assert_eq!(outcome.spooled, 1, "pieces of {piece}");
        assert!(outcome.messages[0].2 == plain, "pieces of {piece}: the message differs");
        assert!(outcome.pieces.len() >= 3 && outcome.pieces[0] > 4096, "{:?}", outcome.pieces);
        assert!(outcome.pieces.iter().all(|&n| n <= session::SPOOL_CHUNK + 64 * 1024), "{:?}", outcome.pieces);
        assert!(most_held <= 2 * (session::SPOOL_CHUNK + 64 * 1024), "pieces of {piece}: held {most_held}");
        assert_eq!(budget.free(), budget.total(), "every byte of the budget came back");
    }
}

#[test]
fn a_body_within_the_threshold_stays_in_memory_and_is_charged_until_delivered() {
    let budget = MemoryBudget::new(1 << 20);
    let (stuffed, plain) = dotted_body(10);
    let mut session = Session::new(spooling(4096, &budget), PEER);
    let mut events: VecDeque<Event> = session.feed(&[START_DATA, &stuffed].concat()).into();
    let mut body = None;
    while let Some(event) = events.pop_front() {
        match event {
            Event::CheckSender(_) => events.extend([session.sender_result(true)].map(Event::Reply)),
            Event::CheckRecipient(_) => events.extend([session.recipient_result(RcptVerdict::Local)].map(Event::Reply)),
            Event::Message { body: b, .. } => body = Some(b),
            Event::Spool(_) | Event::DropSpool => panic!("a small body is not spooled"),
            _ => {}
        }
        events.extend(session.resume());
    }
    let Some(Body::InMemory(held)) = body else { panic!("the message stays in memory") };
    assert_eq!(held.bytes, plain);
    assert!(held.charge.bytes() >= plain.len(), "the delivery holds its bytes of the budget");
    assert_eq!(budget.free(), budget.total() - held.charge.bytes());
    drop(held);
    assert_eq!(budget.free(), budget.total());
}

#[test]
fn a_body_without_room_in_the_budget_is_spooled_at_once_even_split_at_every_byte() {
    // No room at all: every byte goes to the spool as it comes, and the CR of the closing
    // CRLF.CRLF (taken back by the receiver) must not end up in the spool.
    let budget = MemoryBudget::new(0);
    let (stuffed, plain) = dotted_body(3);
    let mut session = Session::new(spooling(1 << 20, &budget), PEER);
    let mut spool = Vec::new();
    drive_spooling(&mut session, &[START_DATA], &mut spool);
    let pieces: Vec<&[u8]> = stuffed.chunks(1).collect();
    let outcome = drive_spooling(&mut session, &pieces, &mut spool);
    assert_eq!(outcome.spooled, 1);
    assert_eq!(outcome.messages[0].2, plain);
    assert!(outcome.pieces.len() > plain.len() / 2, "{} pieces", outcome.pieces.len());
}

#[test]
fn a_size_the_budget_cannot_deliver_is_452_4_3_1_and_the_session_goes_on() {
    let budget = MemoryBudget::new(10_000);
    let outcome = drive_whole(
        spooling(4096, &budget),
        // Delivery needs twice the size (DELIVERY_COPIES): 5,001 bytes cannot fit.
        b"EHLO c\r\nMAIL FROM:<a@remote.test> SIZE=5001\r\nMAIL FROM:<a@remote.test> SIZE=5000\r\n",
    );
    assert!(
        outcome.text().ends_with("452 4.3.1 Insufficient system storage, try again later\r\n250 2.1.0 Sender OK\r\n"),
        "{}",
        outcome.text()
    );
}

#[test]
fn an_oversized_spooled_body_drops_the_spool_and_is_552() {
    let budget = MemoryBudget::new(1 << 20);
    let config = SessionConfig { max_message_bytes: 200 * 1024, ..spooling(4096, &budget) };
    let (stuffed, _) = dotted_body(10_000);
    let mut session = Session::new(config, PEER);
    let mut spool = Vec::new();
    let outcome = drive_spooling(&mut session, &[START_DATA, &stuffed, b"NOOP\r\n"], &mut spool);
    assert!(outcome.text().ends_with("552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"));
    assert!(!outcome.pieces.is_empty() && outcome.dropped == 1, "{:?} / {}", outcome.pieces, outcome.dropped);
    assert!(spool.is_empty() && outcome.messages.is_empty());
    assert_eq!(budget.free(), budget.total());
}

#[test]
fn a_spooled_looping_message_is_554_5_4_6_once_read_back() {
    let budget = MemoryBudget::new(1 << 20);
    let mut session = Session::new(spooling(1024, &budget), PEER);
    let mut input = START_DATA.to_vec();
    input.extend(b"Received: from a\r\n".repeat(51));
    input.extend(b"Subject: loop\r\n\r\n".iter().chain(&b"x".repeat(4000)).chain(b"\r\n.\r\nNOOP\r\n"));
    let outcome = drive_spooling(&mut session, &[&input], &mut Vec::new());
    assert_eq!(outcome.spooled, 1);
    assert!(outcome.messages.is_empty());
    assert!(outcome.text().ends_with("554 5.4.6 Too many Received headers: mail loop detected\r\n250 2.0.0 OK\r\n"));
}

/// A spool folder for one test, and the session limits that use it.
fn spool_limits() -> (tempfile::TempDir, SessionLimits) {
    let dir = tempfile::tempdir().unwrap();
    let limits = SessionLimits::new(Duration::from_secs(5), Duration::from_secs(60), dir.path().join("spool"));
    (dir, limits)
}

/// Runs a session over a duplex pipe, sends `input` and returns everything the server said.
async fn over_a_pipe(config: SessionConfig, limits: &SessionLimits, input: &[u8]) -> (String, Vec<Delivered>) {
    use tokio::io::AsyncWriteExt;
    let (mut client_end, server_end) = tokio::io::duplex(64 * 1024);
    let recorder = Recorder { messages: Mutex::new(Vec::new()) };
    let server = run_session(server_end, Session::new(config, PEER), &recorder, limits, None);
    let client = async {
        client_end.write_all(input).await.unwrap();
        let mut seen = String::new();
        client_end.read_to_string(&mut seen).await.unwrap();
        seen
    };
    let (served, seen) = tokio::join!(server, client);
    served.unwrap();
    (seen, recorder.messages.into_inner().unwrap())
}

#[tokio::test]
async fn run_session_spools_a_large_body_to_a_file_and_removes_it() {
    let (dir, limits) = spool_limits();
    let budget = MemoryBudget::new(4 << 20);
    let (stuffed, plain) = dotted_body(20_000);
    let input = [b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n", &stuffed[..]];
    let (seen, messages) =
        over_a_pipe(spooling(4096, &budget), &limits, &[&input.concat(), b"QUIT\r\n".as_slice()].concat()).await;
    assert!(seen.ends_with("250 2.0.0 Message accepted\r\n221 2.0.0 Bye\r\n"), "{seen}");
    assert!(messages[0].2 == plain, "the message differs");
    assert!(dir.path().join("spool").is_dir(), "the spool folder was used");
    assert_eq!(std::fs::read_dir(dir.path().join("spool")).unwrap().count(), 0);
    assert_eq!(budget.free(), budget.total());
}

#[tokio::test]
async fn run_session_refuses_a_spooled_message_over_the_budget_with_452_then_takes_a_smaller_one() {
    let (_dir, limits) = spool_limits();
    let budget = MemoryBudget::new(64 * 1024);
    let (big, _) = dotted_body(2_000);
    let input = [
        b"EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\n".as_slice(),
        &big,
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n",
    ]
    .concat();
    let (seen, messages) = over_a_pipe(spooling(4096, &budget), &limits, &input).await;
    assert!(
        seen.contains("354 Start mail input; end with <CRLF>.<CRLF>\r\n452 4.3.1 Insufficient system storage"),
        "{seen}"
    );
    assert!(seen.ends_with("250 2.0.0 Message accepted\r\n221 2.0.0 Bye\r\n"), "{seen}");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].2, b"small\r\n");
    assert_eq!(budget.free(), budget.total());
}

#[tokio::test]
async fn run_session_says_421_at_the_time_limit_however_busy() {
    use tokio::io::AsyncWriteExt;
    let (mut client_end, server_end) = tokio::io::duplex(4096);
    let recorder = Recorder { messages: Mutex::new(Vec::new()) };
    let limits = SessionLimits::new(Duration::from_secs(5), Duration::from_millis(300), std::env::temp_dir());
    let server = run_session(server_end, Session::new(inbound(), PEER), &recorder, &limits, None);
    let client = async {
        // A NOOP every 50 ms: never idle.
        for _ in 0..40 {
            if client_end.write_all(b"NOOP\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut seen = String::new();
        let _ = client_end.read_to_string(&mut seen).await;
        seen
    };
    let started = std::time::Instant::now();
    let (result, seen) = tokio::join!(server, client);
    assert!(matches!(result, Err(SmtpError::TimeLimit)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(seen.contains("250 2.0.0 OK\r\n"), "{seen}");
    assert!(seen.ends_with("421 4.4.2 mx.test Session time limit reached, closing connection\r\n"), "{seen}");
}
