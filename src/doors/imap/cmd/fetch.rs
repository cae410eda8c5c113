//! FETCH and UID FETCH (RFC 9051 §6.4.5): FLAGS, UID, RFC822.SIZE, INTERNALDATE,
//! ENVELOPE, `BODY[]`, `BODY[HEADER]`, `BODY[HEADER.FIELDS (...)]`,
//! `BODY[HEADER.FIELDS.NOT (...)]`, `BODY[TEXT]` (each also as `BODY.PEEK` and with
//! `<origin.length>`), RFC822, RFC822.HEADER and RFC822.TEXT. A body fetched without PEEK
//! sets `\Seen` first, and its FLAGS are sent with it. BODYSTRUCTURE, BODY, BINARY and
//! body parts (`BODY[1]`) answer BAD "not supported yet".

use std::collections::HashMap;

use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::{AString, Literal, NString, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::SequenceSet;

use super::super::reply::{Out, bad, nz, ok};
use super::super::session::{Session, State};
use super::envelope::envelope;
use super::{failed, flags_of, resolve};
use crate::domains::mail::Flags;
use crate::domains::mail::uid_view::{FlagEdit, UidMessage};

/// Which part of the message a body item wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The whole message.
    All,
    /// The header, with its blank line.
    Header,
    /// The body after the header.
    Text,
    /// Only these header fields (`not`: all but these), then a blank line.
    Fields { names: Vec<Vec<u8>>, not: bool },
}

/// Where the header ends: the offset just past its blank line (the whole message when
/// there is none).
pub fn header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    if raw.starts_with(b"\n") {
        return 1;
    }
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => raw.len(),
    }
}

/// The header fields of `header` (continuation lines included) named in `names` (or,
/// with `not`, all others), followed by a blank line (RFC 9051 §6.4.5).
fn fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or(b"");
            let named = names.iter().any(|n| n.eq_ignore_ascii_case(name.trim_ascii()));
            keep = named != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of `raw` a body item wants, cut to `<origin.length>` when given.
pub fn section(raw: &[u8], want: &Want, partial: Option<(u32, u32)>) -> Vec<u8> {
    let end = header_end(raw);
    let bytes = match want {
        Want::All => raw.to_vec(),
        Want::Header => raw[..end].to_vec(),
        Want::Text => raw[end..].to_vec(),
        Want::Fields { names, not } => fields(&raw[..end], names, *not),
    };
    match partial {
        Some((origin, length)) => {
            let start = (origin as usize).min(bytes.len());
            let stop = start.saturating_add(length as usize).min(bytes.len());
            bytes[start..stop].to_vec()
        }
        None => bytes,
    }
}

/// Bytes as a literal; NUL, which no IMAP string may hold, becomes a space.
fn literal(mut bytes: Vec<u8>) -> NString<'static> {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = b' ';
    }
    Literal::try_from(bytes).map(NString::from).unwrap_or(NString::NIL)
}

/// The part a section names, or why it is not offered.
fn want_of(section: &Option<Section<'_>>) -> Result<Want, &'static str> {
    let names = |list: &Vec1<AString<'_>>| list.as_ref().iter().map(|a| a.as_ref().to_vec()).collect();
    Ok(match section {
        None => Want::All,
        Some(Section::Header(None)) => Want::Header,
        Some(Section::Text(None)) => Want::Text,
        Some(Section::HeaderFields(None, list)) => Want::Fields { names: names(list), not: false },
        Some(Section::HeaderFieldsNot(None, list)) => Want::Fields { names: names(list), not: true },
        Some(_) => return Err("FETCH of body parts is not supported yet"),
    })
}

/// Checks every item is offered; returns whether any reads the body and whether any
/// sets `\Seen`.
fn check(items: &[MessageDataItemName<'_>]) -> Result<(bool, bool), String> {
    let (mut body, mut sets_seen) = (false, false);
    for item in items {
        match item {
            MessageDataItemName::Flags
            | MessageDataItemName::Uid
            | MessageDataItemName::Rfc822Size
            | MessageDataItemName::InternalDate => {}
            MessageDataItemName::Envelope | MessageDataItemName::Rfc822Header => body = true,
            MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => (body, sets_seen) = (true, true),
            MessageDataItemName::BodyExt { section, peek, .. } => {
                want_of(section).map_err(str::to_owned)?;
                body = true;
                sets_seen |= !peek;
            }
            other => return Err(format!("FETCH {other:?} is not supported yet")),
        }
    }
    Ok((body, sets_seen))
}

/// INTERNALDATE of a Unix time.
fn internal_date(secs: i64) -> Option<DateTime> {
    let at = chrono::DateTime::from_timestamp(secs, 0)?.fixed_offset();
    DateTime::try_from(at).ok()
}

/// The FETCH items of one message.
fn items(
    names: &[MessageDataItemName<'_>],
    row: &UidMessage,
    raw: &[u8],
    uid: bool,
    flags_changed: bool,
) -> Vec<MessageDataItem<'static>> {
    let mut out = Vec::with_capacity(names.len() + 2);
    for name in names {
        let item = match name {
            MessageDataItemName::Flags => MessageDataItem::Flags(flags_of(row.flags)),
            MessageDataItemName::Uid => MessageDataItem::Uid(nz(row.uid)),
            MessageDataItemName::Rfc822Size => MessageDataItem::Rfc822Size(u32::try_from(row.size).unwrap_or(u32::MAX)),
            MessageDataItemName::InternalDate => match internal_date(row.internal_date) {
                Some(d) => MessageDataItem::InternalDate(d),
                None => continue,
            },
            MessageDataItemName::Envelope => MessageDataItem::Envelope(envelope(raw)),
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(raw.to_vec())),
            MessageDataItemName::Rfc822Header => {
                MessageDataItem::Rfc822Header(literal(section(raw, &Want::Header, None)))
            }
            MessageDataItemName::Rfc822Text => MessageDataItem::Rfc822Text(literal(section(raw, &Want::Text, None))),
            MessageDataItemName::BodyExt { section: s, partial, .. } => {
                let Ok(want) = want_of(s) else { continue };
                let partial = partial.map(|(o, l)| (o, l.get()));
                MessageDataItem::BodyExt {
                    section: s.clone().map(IntoStatic::into_static),
                    origin: partial.map(|(o, _)| o),
                    data: literal(section(raw, &want, partial)),
                }
            }
            _ => continue,
        };
        out.push(item);
    }
    // RFC 9051 §6.4.8: UID FETCH always reports the UID; §6.4.5: a FETCH that set \Seen
    // reports the new flags.
    if uid && !names.contains(&MessageDataItemName::Uid) {
        out.push(MessageDataItem::Uid(nz(row.uid)));
    }
    if flags_changed && !names.contains(&MessageDataItemName::Flags) {
        out.push(MessageDataItem::Flags(flags_of(row.flags)));
    }
    out
}

impl Session {
    /// FETCH or UID FETCH.
    pub(in super::super) async fn fetch(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        what: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Vec<Out> {
        let State::Selected(account, selected) = &mut self.state else { return vec![bad(tag, "No mailbox selected")] };
        let names = match what {
            MacroOrMessageDataItemNames::Macro(m) => m.expand().into_iter().map(IntoStatic::into_static).collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(names) => names,
        };
        let (needs_body, sets_seen) = match check(&names) {
            Ok(found) => found,
            Err(why) => return vec![bad(tag, &why)],
        };
        let Ok(positions) = resolve(set, &selected.entries, uid) else {
            return vec![bad(tag, "Invalid message sequence number")];
        };
        let ids: Vec<i64> = positions.iter().map(|&i| selected.entries[i].id).collect();
        let (user, mailbox_id) = (account.id, selected.mailbox.id);
        let mut rows: HashMap<i64, UidMessage> = match self.mail.uid_messages(user, mailbox_id, &ids).await {
            Ok(rows) => rows.into_iter().map(|r| (r.id, r)).collect(),
            Err(e) => return vec![failed(tag, e)],
        };
        let mut seen_now = Vec::new();
        if sets_seen && !selected.read_only {
            let unseen: Vec<i64> = rows.values().filter(|r| !r.flags.has(Flags::SEEN)).map(|r| r.id).collect();
            if !unseen.is_empty() {
                let edit = FlagEdit { set: Flags::SEEN, clear: 0 };
                match self.mail.edit_flags(user, mailbox_id, &unseen, edit).await {
                    Ok(after) => {
                        for entry in after {
                            if let Some(row) = rows.get_mut(&entry.id) {
                                row.flags = entry.flags;
                            }
                            seen_now.push(entry.id);
                        }
                    }
                    Err(e) => return vec![failed(tag, e)],
                }
            }
        }
        let mut out = Vec::with_capacity(positions.len() + 1);
        for &i in &positions {
            let entry = &mut selected.entries[i];
            // A message another session expunged meanwhile is left out until NOOP says so.
            let Some(row) = rows.get(&entry.id) else { continue };
            entry.flags = row.flags;
            let raw = if needs_body {
                match self.mail.raw(user, entry.id).await {
                    Ok(raw) => raw,
                    Err(e) => return vec![failed(tag, e)],
                }
            } else {
                bytes::Bytes::new()
            };
            let items = items(&names, row, &raw, uid, seen_now.contains(&entry.id));
            if !items.is_empty() {
                out.push(Out::Data(Data::Fetch { seq: nz(i as i64 + 1), items: Vec1::unvalidated(items) }));
            }
        }
        out.push(ok(tag, if uid { "UID FETCH done" } else { "FETCH done" }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: a@x.test\r\nSubject: Hi\r\n there\r\nTo: b@y.test\r\n\r\nLine 1\r\nLine 2\r\n";

    #[test]
    fn header_and_text_split_at_the_blank_line() {
        assert_eq!(
            section(RAW, &Want::Header, None),
            b"From: a@x.test\r\nSubject: Hi\r\n there\r\nTo: b@y.test\r\n\r\n"
        );
        assert_eq!(section(RAW, &Want::Text, None), b"Line 1\r\nLine 2\r\n");
        assert_eq!(section(RAW, &Want::All, None), RAW);
        assert_eq!(header_end(b"no body at all"), 14);
        assert_eq!(header_end(b"\r\nbody"), 2);
    }

    #[test]
    fn header_fields_keep_continuations_and_end_with_a_blank_line() {
        let want = Want::Fields { names: vec![b"subject".to_vec()], not: false };
        assert_eq!(section(RAW, &want, None), b"Subject: Hi\r\n there\r\n\r\n");
        let not = Want::Fields { names: vec![b"SUBJECT".to_vec(), b"to".to_vec()], not: true };
        assert_eq!(section(RAW, &not, None), b"From: a@x.test\r\n\r\n");
    }

    #[test]
    fn partial_fetches_cut_and_never_overrun() {
        assert_eq!(section(RAW, &Want::Text, Some((5, 3))), b"1\r\n");
        assert_eq!(section(RAW, &Want::Text, Some((1000, 3))), b"");
        assert_eq!(section(RAW, &Want::Text, Some((14, u32::MAX))), b"\r\n");
    }

    #[test]
    fn nul_never_reaches_the_wire() {
        assert_eq!(literal(b"a\0b".to_vec()), NString::from(Literal::try_from(b"a b".as_slice()).unwrap()));
    }

    #[test]
    fn unsupported_items_are_named() {
        assert!(check(&[MessageDataItemName::BodyStructure]).unwrap_err().contains("not supported yet"));
        assert_eq!(check(&[MessageDataItemName::Flags, MessageDataItemName::Rfc822]), Ok((true, true)));
        let peek = MessageDataItemName::BodyExt { section: None, partial: None, peek: true };
        assert_eq!(check(&[peek]), Ok((true, false)));
    }
}
