//! Delivery status notifications (bounces): one RFC 3464 `multipart/report` per failed
//! message, built with mail-builder — a human explanation, the machine-readable
//! `message/delivery-status` part with one block per failed recipient, and the original
//! message's headers (`text/rfc822-headers`, RFC 6522). It only builds bytes; deciding
//! who gets one (never the null sender: no bounce of a bounce) is the worker's job.

use mail_builder::MessageBuilder;
use mail_builder::headers::date::Date;
use mail_builder::mime::MimePart;

/// One recipient the message could not be delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The forward-path.
    pub address: String,
    /// The last SMTP reply (`550 5.1.1 ...`) or a description of the error.
    pub reply: String,
    /// The server that gave the reply, when one did.
    pub remote_mta: Option<String>,
    /// Whether the queue gave up after temporary failures (rather than a permanent refusal).
    pub gave_up: bool,
}

/// The enhanced status code (RFC 3463) of a reply like `550 5.1.1 No such user`, if it has one.
pub fn enhanced_code(reply: &str) -> Option<String> {
    let mut words = reply.split_whitespace();
    let code = words.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let candidate = words.next()?;
    let parts: Vec<&str> = candidate.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| candidate.to_owned())
}

/// Whether `reply` starts with a three-digit SMTP reply code.
fn is_smtp_reply(reply: &str) -> bool {
    reply.len() >= 3 && reply.as_bytes()[..3].iter().all(|b| b.is_ascii_digit())
}

impl FailedRecipient {
    /// The status for the `Status:` field: the server's enhanced code, else 4.4.7 (delivery
    /// time expired) after giving up, else 5.0.0.
    pub fn status(&self) -> String {
        match enhanced_code(&self.reply) {
            Some(code) => code,
            None if self.gave_up => "4.4.7".into(),
            None => "5.0.0".into(),
        }
    }
}

/// What the report is about.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The mail domain: the report comes from `MAILER-DAEMON@domain`.
    pub domain: &'a str,
    /// The reporting MTA's name (RFC 3464 §2.2.2).
    pub reporting_mta: &'a str,
    /// Who gets the report: the original envelope sender.
    pub to: &'a str,
    /// When the original message was queued (Unix seconds).
    pub arrival: i64,
    /// When delivery was last tried (Unix seconds).
    pub last_attempt: i64,
    /// The recipients that failed.
    pub failed: &'a [FailedRecipient],
    /// The original message (its headers are returned).
    pub original: &'a [u8],
}

/// The header block of `message`, up to the empty line, at most 64 KiB.
fn header_block(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end.min(64 * 1024)]
}

/// The field value with CR and LF removed, so a reply cannot start a new field.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect()
}

/// Builds the DSN message (RFC 3464 §2).
pub fn build(report: &Report<'_>) -> std::io::Result<Vec<u8>> {
    let mut human = String::from(
        "This is the mail system at postcast.\r\n\r\n\
         Your message could not be delivered to one or more recipients.\r\n\r\n",
    );
    for f in report.failed {
        let why = if f.gave_up { "gave up after repeated temporary failures" } else { "refused" };
        human.push_str(&format!("<{}>: {why}\r\n    {}\r\n\r\n", f.address, one_line(&f.reply)));
    }
    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nArrival-Date: {}\r\n",
        one_line(report.reporting_mta),
        Date::new(report.arrival).to_rfc822()
    );
    for f in report.failed {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            one_line(&f.address),
            f.status()
        ));
        if let Some(mta) = &f.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta)));
        }
        let reply = one_line(&f.reply);
        if is_smtp_reply(&reply) {
            status.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        } else {
            status.push_str(&format!("Diagnostic-Code: X-Postcast; {reply}\r\n"));
        }
        status.push_str(&format!("Last-Attempt-Date: {}\r\n", Date::new(report.last_attempt).to_rfc822()));
    }
    let headers = header_block(report.original).to_vec();
    let headers_cte = if headers.is_ascii() { "7bit" } else { "8bit" };
    let body = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new("message/delivery-status", status.into_bytes()).transfer_encoding("7bit"),
            MimePart::new("text/rfc822-headers", headers).transfer_encoding(headers_cte),
        ],
    );
    MessageBuilder::new()
        .from(("Mail Delivery System".to_owned(), format!("MAILER-DAEMON@{}", report.domain)))
        .to(report.to.to_owned())
        .subject("Undelivered Mail Returned to Sender")
        .message_id(format!("{}@{}", uuid::Uuid::new_v4(), report.domain))
        .date(Date::new(report.last_attempt))
        // RFC 3834 §5: an automatic message; RFC 3464 §2: sent with the null reverse-path.
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_read_from_replies() {
        assert_eq!(enhanced_code("550 5.1.1 no such user").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_code("451 4.3.0 try later").as_deref(), Some("4.3.0"));
        assert_eq!(enhanced_code("550 no such user"), None);
        assert_eq!(enhanced_code("connection refused"), None);
        assert_eq!(enhanced_code(""), None);
    }

    #[test]
    fn a_dsn_is_a_multipart_report_naming_each_failed_recipient() {
        let failed = vec![
            FailedRecipient {
                address: "nobody@remote.test".into(),
                reply: "550 5.1.1 <nobody@remote.test>: no such user".into(),
                remote_mta: Some("mx.remote.test".into()),
                gave_up: false,
            },
            FailedRecipient {
                address: "slow@other.test".into(),
                reply: "connection refused\r\nInjected: header".into(),
                remote_mta: None,
                gave_up: true,
            },
        ];
        let original = b"From: a@postcast.test\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let report = Report {
            domain: "postcast.test",
            reporting_mta: "postcast.test",
            to: "a@postcast.test",
            arrival: 1_700_000_000,
            last_attempt: 1_700_000_100,
            failed: &failed,
            original,
        };
        let dsn = String::from_utf8(build(&report).expect("dsn")).expect("utf-8");
        assert!(dsn.contains("From: \"Mail Delivery System\" <MAILER-DAEMON@postcast.test>"), "{dsn}");
        assert!(dsn.contains("multipart/report"), "{dsn}");
        assert!(dsn.contains("report-type=delivery-status") || dsn.contains("report-type=\"delivery-status\""));
        assert!(dsn.contains("Content-Type: message/delivery-status"), "{dsn}");
        assert!(dsn.contains("Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1"));
        assert!(dsn.contains("Remote-MTA: dns; mx.remote.test"));
        assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1"));
        assert!(dsn.contains("Final-Recipient: rfc822; slow@other.test\r\nAction: failed\r\nStatus: 4.4.7"));
        assert!(!dsn.contains("\r\nInjected: header"), "a reply cannot add fields");
        assert!(dsn.contains("Subject: hello"), "original headers are returned");
        assert!(!dsn.contains("secret body"), "the original body is not");
        assert!(dsn.contains("Auto-Submitted: auto-replied"));
    }
}
