//! What the store keeps of a message besides its raw bytes: the metadata a list, a thread
//! and an IMAP ENVELOPE need, read once with mail-parser at delivery (the same parse feeds
//! the authentication checks, see [`message`]). A message mail-parser
//! cannot make sense of still yields metadata (taken from whatever headers it finds, or
//! empty) and `parsed: false`, so nothing is ever refused for being malformed.

use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser};

/// The longest snippet kept, in characters.
const SNIPPET_CHARS: usize = 160;
/// The longest subject kept, in characters (RFC 5322 has no limit; rows need one).
const SUBJECT_CHARS: usize = 998;

/// One address as shown in lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Mailbox {
    /// Display name, possibly empty.
    pub name: String,
    /// The address, lower-cased.
    pub address: String,
}

/// The metadata of a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// Whether mail-parser understood the message.
    pub parsed: bool,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To and References ids, oldest first, without angle brackets.
    pub references: Vec<String>,
    /// The first From address.
    pub from: Option<Mailbox>,
    /// To addresses.
    pub to: Vec<Mailbox>,
    /// Cc addresses.
    pub cc: Vec<Mailbox>,
    /// Subject, decoded.
    pub subject: String,
    /// The start of the text body, whitespace folded.
    pub snippet: String,
    /// The Date header as Unix seconds.
    pub date: Option<i64>,
    /// Whether the message has attachments.
    pub has_attachments: bool,
}

impl Meta {
    /// Everybody the message names (From, To, Cc), for thread matching and contacts.
    pub fn participants(&self) -> impl Iterator<Item = &str> {
        self.from.iter().chain(&self.to).chain(&self.cc).map(|m| m.address.as_str())
    }
}

/// Messages larger than this are parsed on a blocking thread rather than on the caller's.
pub const PARSE_INLINE_BYTES: usize = 256 * 1024;

/// [`meta`] of `raw`, on a blocking thread when it is larger than [`PARSE_INLINE_BYTES`];
/// None when that thread was lost.
pub async fn meta_of_bytes(raw: &bytes::Bytes) -> Option<Meta> {
    if raw.len() <= PARSE_INLINE_BYTES {
        return Some(meta(raw));
    }
    let bytes = raw.clone();
    tokio::task::spawn_blocking(move || meta(&bytes)).await.ok()
}

/// Reads the metadata of a raw message; never fails.
pub fn meta(raw: &[u8]) -> Meta {
    message(raw).map(|msg| meta_of(&msg)).unwrap_or_default()
}

/// Parses a raw message with mail-parser, once, for [`meta_of`] and the authentication
/// checks to share; None for input mail-parser returns nothing for (e.g. empty).
pub fn message(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// The metadata of a parsed message.
pub fn meta_of(msg: &Message<'_>) -> Meta {
    // mail-parser returns a message for any bytes; it understood one only if it found
    // at least one header of the message itself (trace headers are ours).
    let parsed = msg.from().is_some()
        || msg.to().is_some()
        || msg.subject().is_some()
        || msg.date().is_some()
        || msg.message_id().is_some();
    let mut references = ids(msg.references());
    for id in ids(msg.in_reply_to()) {
        if !references.contains(&id) {
            references.push(id);
        }
    }
    let snippet = msg
        .body_text(0)
        .map(|t| fold_whitespace(&t, SNIPPET_CHARS))
        .or_else(|| msg.body_html(0).map(|h| fold_whitespace(&html_to_text(&h), SNIPPET_CHARS)))
        .unwrap_or_default();
    Meta {
        parsed,
        message_id: msg.message_id().map(clean_id).filter(|s| !s.is_empty()),
        references,
        from: msg.from().and_then(|a| mailboxes(a).into_iter().next()),
        to: msg.to().map(mailboxes).unwrap_or_default(),
        cc: msg.cc().map(mailboxes).unwrap_or_default(),
        subject: msg.subject().map(|s| s.chars().take(SUBJECT_CHARS).collect()).unwrap_or_default(),
        snippet,
        date: msg.date().map(|d| d.to_timestamp()),
        has_attachments: msg.attachment_count() > 0,
    }
}

/// Why a message's originator fields (RFC 5322 §3.6.2) do not name exactly one author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginatorError {
    /// The message has no From field or more than one (RFC 5322 §3.6: exactly one).
    #[error("exactly one From header is required, the message has {0}")]
    FromFields(usize),
    /// The message has more than one Sender field (RFC 5322 §3.6: at most one).
    #[error("at most one Sender header is allowed, the message has {0}")]
    SenderFields(usize),
    /// A From or Sender field holds a group, no mailbox, or more than one mailbox.
    #[error("the {0} header must hold exactly one mailbox")]
    NotOneMailbox(&'static str),
}

/// Who a message says wrote and sent it: its one From mailbox and its Sender, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originator {
    /// The address of the From field's mailbox, lower-cased.
    pub from: String,
    /// The address of the Sender field's mailbox, lower-cased, when the field is present.
    pub sender: Option<String>,
}

/// Reads the originator fields of a message's top-level header: exactly one From field
/// holding exactly one mailbox, and at most one Sender field holding exactly one mailbox.
/// Anything else (a second From, a list, a group) is refused: one of the addresses could
/// be someone else's and still be signed as ours.
pub fn originator(msg: &Message<'_>) -> Result<Originator, OriginatorError> {
    let from = match fields(msg, HeaderName::From).as_slice() {
        [one] => mailbox(one, "From")?,
        other => return Err(OriginatorError::FromFields(other.len())),
    };
    let sender = match fields(msg, HeaderName::Sender).as_slice() {
        [] => None,
        [one] => Some(mailbox(one, "Sender")?),
        other => return Err(OriginatorError::SenderFields(other.len())),
    };
    Ok(Originator { from, sender })
}

/// The values of every `name` field of the top-level header, in order.
fn fields<'a>(msg: &'a Message<'_>, name: HeaderName<'static>) -> Vec<&'a HeaderValue<'a>> {
    msg.headers().iter().filter(|h| h.name == name).map(|h| &h.value).collect()
}

/// The address of the one mailbox `value` holds; a group, an empty field or a list of
/// more than one is refused.
fn mailbox(value: &HeaderValue<'_>, label: &'static str) -> Result<String, OriginatorError> {
    let address = match value.as_address() {
        Some(Address::List(list)) => match list.as_slice() {
            [one] => one.address.as_deref(),
            _ => None,
        },
        _ => None,
    };
    address.map(|a| a.trim().to_lowercase()).filter(|a| !a.is_empty()).ok_or(OriginatorError::NotOneMailbox(label))
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    value.as_text_list().map(|l| l.iter().map(|s| clean_id(s)).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

/// A Message-ID without brackets or surrounding blanks.
pub fn clean_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned()
}

fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .filter_map(|a| {
            let address = a.address.as_deref()?.trim().to_lowercase();
            (!address.is_empty())
                .then(|| Mailbox { name: a.name.as_deref().unwrap_or_default().trim().to_owned(), address })
        })
        .collect()
}

/// Collapses runs of whitespace and keeps at most `max` characters.
fn fold_whitespace(text: &str, max: usize) -> String {
    text.split_whitespace()
        .flat_map(|w| w.chars().chain(std::iter::once(' ')))
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Plain text of an HTML body, for snippets only (the view sanitises HTML with ammonia).
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_headers_lists_and_threads_need() {
        let raw = b"From: \"Ada L\" <Ada@Example.org>\r\nTo: bob@b.test, Carol <carol@c.test>\r\nCc: dan@d.test\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\nReferences: <m0@x> <m1@x>\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nHello   there,\r\n\r\nworld\r\n";
        let m = meta(raw);
        assert!(m.parsed);
        assert_eq!(m.message_id.as_deref(), Some("m2@x"));
        assert_eq!(m.references, vec!["m0@x", "m1@x"]);
        assert_eq!(m.from, Some(Mailbox { name: "Ada L".into(), address: "ada@example.org".into() }));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc[0].address, "dan@d.test");
        assert_eq!(m.subject, "Grüße");
        assert_eq!(m.snippet, "Hello there, world");
        assert_eq!(m.date, Some(1_795_773_600));
        assert!(!m.has_attachments);
    }

    #[test]
    fn garbage_gives_empty_metadata_not_an_error() {
        for raw in [&b""[..], b"\x00\x01\x02", b"no headers at all", b"From: <<<>>>\r\n\r\n"] {
            let m = meta(raw);
            assert!(m.subject.is_empty() || m.parsed, "{raw:?}");
        }
        assert!(!meta(b"").parsed);
    }

    fn originator_of(head: &str) -> Result<Originator, OriginatorError> {
        let raw = format!("{head}To: bob@b.test\r\nSubject: s\r\n\r\nbody\r\n");
        originator(&message(raw.as_bytes()).expect("parsed"))
    }

    #[test]
    fn originator_is_one_from_mailbox_and_at_most_one_sender_mailbox() {
        let one = originator_of("From: Ada <Ada@A.test>\r\n").expect("one From mailbox");
        assert_eq!(one, Originator { from: "ada@a.test".into(), sender: None });
        let with_sender = originator_of("From: ada@a.test\r\nSender: <Sec@A.test>\r\n").expect("with Sender");
        assert_eq!(with_sender.sender.as_deref(), Some("sec@a.test"));
        for (head, want) in [
            ("", OriginatorError::FromFields(0)),
            ("From: ada@a.test\r\nFrom: ceo@a.test\r\n", OriginatorError::FromFields(2)),
            ("From: ada@a.test\r\nfrom : ceo@a.test\r\n", OriginatorError::FromFields(2)),
            ("From: ada@a.test, ceo@a.test\r\n", OriginatorError::NotOneMailbox("From")),
            ("From: Ada <ada@a.test>, <ceo@a.test>\r\n", OriginatorError::NotOneMailbox("From")),
            ("From: board: ada@a.test;\r\n", OriginatorError::NotOneMailbox("From")),
            ("From: undisclosed:;\r\n", OriginatorError::NotOneMailbox("From")),
            ("From:\r\n", OriginatorError::NotOneMailbox("From")),
            ("From: <>\r\n", OriginatorError::NotOneMailbox("From")),
            ("From: ada@a.test\r\nSender: ada@a.test, ceo@a.test\r\n", OriginatorError::NotOneMailbox("Sender")),
            ("From: ada@a.test\r\nSender: a@a.test\r\nSender: b@a.test\r\n", OriginatorError::SenderFields(2)),
        ] {
            assert_eq!(originator_of(head), Err(want), "{head:?}");
        }
    }
}

/// The fields of a message's header section as they stand in the raw bytes, up to the
/// first empty line, each with its folded continuation lines; no decoding, so it is cheap
/// enough for every message on the receiving path. [`HeaderFields::body_start`] tells where
/// the header section ended once the iterator is used up.
pub fn header_fields(raw: &[u8]) -> HeaderFields<'_> {
    HeaderFields { raw, pos: 0 }
}

/// Iterator of [`header_fields`].
pub struct HeaderFields<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl HeaderFields<'_> {
    /// The offset after the fields read so far: after the last one, where the empty line
    /// (or the end of a message without a body) starts.
    pub fn body_start(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for HeaderFields<'a> {
    type Item = HeaderField<'a>;

    fn next(&mut self) -> Option<HeaderField<'a>> {
        let rest = &self.raw[self.pos..];
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
        let mut end = 0;
        loop {
            end = rest[end..].iter().position(|&b| b == b'\n').map_or(rest.len(), |p| end + p + 1);
            if end >= rest.len() || !matches!(rest[end], b' ' | b'\t') {
                break;
            }
        }
        let field = HeaderField { raw: &rest[..end], start: self.pos };
        self.pos += end;
        Some(field)
    }
}

/// One header field: its raw bytes (line breaks included) and where they start.
#[derive(Debug, Clone, Copy)]
pub struct HeaderField<'a> {
    /// The field as received, from its name to its last line break.
    pub raw: &'a [u8],
    /// Its offset in the message.
    pub start: usize,
}

impl HeaderField<'_> {
    /// Whether the field is named `name` (ASCII case-insensitive; blanks may stand before
    /// the colon, as parsers accept).
    pub fn is(&self, name: &str) -> bool {
        let n = name.len();
        self.raw.len() > n
            && self.raw[..n].eq_ignore_ascii_case(name.as_bytes())
            && self.raw[n..].trim_ascii_start().starts_with(b":")
    }

    /// The value after the colon with folding undone (line breaks dropped), trimmed.
    pub fn value(&self) -> String {
        let after = self.raw.iter().position(|&b| b == b':').map_or(&[][..], |p| &self.raw[p + 1..]);
        let unfolded: Vec<u8> = after.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
        String::from_utf8_lossy(&unfolded).trim().to_owned()
    }
}
