//! Building IMAP responses from plain values: tagged and untagged status lines with safe
//! text (no CR or LF can reach the wire), response codes imap-types has no variant for
//! (RFC 5530), and numbers the protocol holds as non-zero 32-bit values.

use std::num::NonZeroU32;

use imap_codec::imap_types::core::{Atom, Tag, Text};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::response::{Code, CodeOther, Data, Status, StatusBody, StatusKind, Tagged};

/// One response of a command, in the order it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Untagged data (`* 3 EXISTS`, `* LIST ...`).
    Data(Data<'static>),
    /// A status line: tagged, untagged or BYE.
    Status(Status<'static>),
}

/// `message` as response text: control characters become spaces, and it is never empty
/// nor starts with `[` (which would read as a response code).
pub fn text(message: &str) -> Text<'static> {
    let mut clean: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.trim().is_empty() {
        clean = "done".into();
    }
    if clean.starts_with('[') {
        clean.insert(0, ' ');
    }
    Text::try_from(clean).unwrap_or_else(|_| Text::unvalidated("done"))
}

/// A tagged status line.
pub fn tagged(tag: &Tag<'static>, kind: StatusKind, code: Option<Code<'static>>, message: &str) -> Out {
    Out::Status(Status::Tagged(Tagged { tag: tag.clone(), body: StatusBody { kind, code, text: text(message) } }))
}

/// `tag OK message`.
pub fn ok(tag: &Tag<'static>, message: &str) -> Out {
    tagged(tag, StatusKind::Ok, None, message)
}

/// `tag NO message`.
pub fn no(tag: &Tag<'static>, message: &str) -> Out {
    tagged(tag, StatusKind::No, None, message)
}

/// `tag NO [CODE] message`.
pub fn no_code(tag: &Tag<'static>, code: &'static str, message: &str) -> Out {
    tagged(tag, StatusKind::No, Some(other_code(code)), message)
}

/// `tag BAD message`.
pub fn bad(tag: &Tag<'static>, message: &str) -> Out {
    tagged(tag, StatusKind::Bad, None, message)
}

/// An untagged `* OK [code] message`.
pub fn untagged_ok(code: Option<Code<'static>>, message: &str) -> Out {
    Out::Status(Status::Untagged(StatusBody { kind: StatusKind::Ok, code, text: text(message) }))
}

/// `* BYE message`.
pub fn bye(message: &str) -> Status<'static> {
    Status::bye(None, text(message)).unwrap_or_else(|_| {
        Status::Untagged(StatusBody { kind: StatusKind::Bad, code: None, text: Text::unvalidated("bye") })
    })
}

/// A response code imap-types has no variant for (`UNAVAILABLE`, `NONEXISTENT`, ...,
/// RFC 5530); `name` is an upper-case atom.
pub fn other_code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

/// A mailbox name attribute (`\Sent`, `\HasNoChildren`); `name` is an atom without `\`.
pub fn attribute(name: &'static str) -> FlagNameAttribute<'static> {
    FlagNameAttribute::from(Atom::try_from(name).unwrap_or_else(|_| Atom::unvalidated("Unmarked")))
}

/// A stored UID, UIDVALIDITY or count as the non-zero 32-bit number IMAP carries; the
/// store keeps them within that range, so clamping never changes a real value.
pub fn nz(value: i64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(value.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// A count as a 32-bit number.
pub fn count(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_never_carries_line_breaks_or_a_leading_bracket() {
        assert_eq!(text("a\r\nb").as_ref(), "a  b");
        assert_eq!(text("").as_ref(), "done");
        assert_eq!(text("[x]").as_ref(), " [x]");
    }

    #[test]
    fn numbers_are_clamped_into_the_non_zero_32_bit_range() {
        assert_eq!(nz(0).get(), 1);
        assert_eq!(nz(42).get(), 42);
        assert_eq!(nz(i64::MAX).get(), u32::MAX);
    }
}
