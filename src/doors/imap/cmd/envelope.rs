//! FETCH ENVELOPE (RFC 9051 §7.5.2): the header fields of a raw message as the envelope
//! structure. Date, subject, In-Reply-To and Message-ID are the raw field values
//! (unfolded); addresses are parsed, their names given as RFC 2047 encoded words when
//! they are not ASCII; Sender and Reply-To default to From; groups are spelled as the RFC
//! says (start and end markers around the members).

use base64::Engine;
use imap_codec::imap_types::core::NString;
use imap_codec::imap_types::envelope::{Address, Envelope};
use mail_parser::{HeaderName, MessageParser};

/// `value` as an NString (NIL when absent); a value that cannot be one becomes NIL.
fn nstring(value: Option<String>) -> NString<'static> {
    value.and_then(|v| NString::try_from(v).ok()).unwrap_or(NString::NIL)
}

/// A raw header value, unfolded and trimmed; None when absent or empty.
fn raw_field(value: Option<&str>) -> Option<String> {
    let v: String = value?.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// A display name for the wire: ASCII as it is, anything else as one RFC 2047 word.
fn display_name(name: &str) -> String {
    if name.is_ascii() {
        name.to_owned()
    } else {
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(name.as_bytes()))
    }
}

/// One address: `(name adl mailbox host)`.
fn address(name: Option<&str>, email: Option<&str>) -> Address<'static> {
    let (mailbox, host) = match email.map(|e| e.rsplit_once('@').map_or((e, None), |(m, h)| (m, Some(h)))) {
        Some((m, h)) => (Some(m.to_owned()), h.map(str::to_owned)),
        None => (None, None),
    };
    Address {
        name: nstring(name.filter(|n| !n.is_empty()).map(display_name)),
        adl: NString::NIL,
        mailbox: nstring(mailbox),
        host: nstring(host),
    }
}

/// An address field as envelope addresses.
fn addresses(field: Option<&mail_parser::Address<'_>>) -> Vec<Address<'static>> {
    match field {
        None => Vec::new(),
        Some(mail_parser::Address::List(list)) => {
            list.iter().map(|a| address(a.name.as_deref(), a.address.as_deref())).collect()
        }
        Some(mail_parser::Address::Group(groups)) => {
            let mut out = Vec::new();
            for g in groups {
                let members = g.addresses.iter().map(|a| address(a.name.as_deref(), a.address.as_deref()));
                match &g.name {
                    // RFC 9051 §7.5.2: a group starts with (NIL NIL name NIL) and ends with
                    // (NIL NIL NIL NIL).
                    Some(name) => {
                        out.push(Address {
                            name: NString::NIL,
                            adl: NString::NIL,
                            mailbox: nstring(Some(display_name(name))),
                            host: NString::NIL,
                        });
                        out.extend(members);
                        out.push(Address {
                            name: NString::NIL,
                            adl: NString::NIL,
                            mailbox: NString::NIL,
                            host: NString::NIL,
                        });
                    }
                    None => out.extend(members),
                }
            }
            out
        }
    }
}

/// The envelope of the raw message `raw` (its header only is read).
pub fn envelope(raw: &[u8]) -> Envelope<'static> {
    let Some(msg) = MessageParser::default().parse_headers(raw) else {
        return Envelope {
            date: NString::NIL,
            subject: NString::NIL,
            from: vec![],
            sender: vec![],
            reply_to: vec![],
            to: vec![],
            cc: vec![],
            bcc: vec![],
            in_reply_to: NString::NIL,
            message_id: NString::NIL,
        };
    };
    let from = addresses(msg.from());
    let or_from = |list: Vec<Address<'static>>| if list.is_empty() { from.clone() } else { list };
    Envelope {
        date: nstring(raw_field(msg.header_raw(HeaderName::Date))),
        subject: nstring(raw_field(msg.header_raw(HeaderName::Subject))),
        sender: or_from(addresses(msg.sender())),
        reply_to: or_from(addresses(msg.reply_to())),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        bcc: addresses(msg.bcc()),
        in_reply_to: nstring(raw_field(msg.header_raw(HeaderName::InReplyTo))),
        message_id: nstring(raw_field(msg.header_raw(HeaderName::MessageId))),
        from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &NString<'_>) -> Option<String> {
        n.clone().into_option().map(|c| String::from_utf8_lossy(&c).into_owned())
    }

    #[test]
    fn fields_and_addresses_come_from_the_header() {
        let raw = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nFrom: Anna Berg <anna@example.com>\r\n\
To: bob@localhost, =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\nSubject: Hello\r\n  there\r\n\
Message-ID: <m1@example.com>\r\n\r\nbody\r\n";
        let e = envelope(raw);
        assert_eq!(s(&e.date).as_deref(), Some("Fri, 27 Nov 2026 10:00:00 +0000"));
        assert_eq!(s(&e.subject).as_deref(), Some("Hello  there"));
        assert_eq!(s(&e.message_id).as_deref(), Some("<m1@example.com>"));
        assert_eq!(e.from.len(), 1);
        assert_eq!(s(&e.from[0].name).as_deref(), Some("Anna Berg"));
        assert_eq!(
            (s(&e.from[0].mailbox).as_deref(), s(&e.from[0].host).as_deref()),
            (Some("anna"), Some("example.com"))
        );
        assert_eq!(e.sender, e.from, "Sender defaults to From");
        assert_eq!(e.reply_to, e.from, "Reply-To defaults to From");
        assert_eq!(e.to.len(), 2);
        assert_eq!(s(&e.to[1].name).as_deref(), Some("=?utf-8?b?SsO2cmc=?="));
        assert!(e.cc.is_empty() && e.in_reply_to == NString::NIL);
    }

    #[test]
    fn a_group_is_spelled_with_markers() {
        let e = envelope(b"To: Team: a@x.test, b@x.test;\r\n\r\n");
        assert_eq!(e.to.len(), 4);
        assert_eq!(s(&e.to[0].mailbox).as_deref(), Some("Team"));
        assert_eq!(e.to[3].mailbox, NString::NIL);
    }

    #[test]
    fn garbage_gives_an_empty_envelope_not_a_panic() {
        let e = envelope(b"\x00\xff\xfe");
        assert!(e.from.is_empty());
    }
}
