//! The IMAP commands that work on mailboxes and messages, one file per group: mailbox
//! management and listing ([`mailboxes`]), selecting and expunging ([`select`]), FETCH
//! ([`fetch`], with ENVELOPE in [`envelope`]), STORE ([`store`]), APPEND ([`append`]) and COPY ([`copy`]). Each adds methods to
//! [`Session`](super::session::Session) and calls only the mail service; this file holds
//! what they share: flag mapping, sequence sets and the answer to a mail-service error.

pub mod append;
pub mod copy;
pub mod envelope;
pub mod fetch;
pub mod mailboxes;
pub mod select;
pub mod store;

use std::collections::BTreeSet;

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::reply::{Out, no_code};
use crate::domains::mail::uid_view::UidEntry;
use crate::domains::mail::{Flags, MailError};

/// The flag bits IMAP shows and sets: the system flags of RFC 9051 §2.3.2 (the store's
/// `$Important` bit is not one of them and is left as it is).
pub const IMAP_BITS: i64 = Flags::SEEN | Flags::ANSWERED | Flags::FLAGGED | Flags::DELETED | Flags::DRAFT;

/// The system flags and their bits.
const SYSTEM: [(Flag<'static>, i64); 5] = [
    (Flag::Answered, Flags::ANSWERED),
    (Flag::Flagged, Flags::FLAGGED),
    (Flag::Deleted, Flags::DELETED),
    (Flag::Seen, Flags::SEEN),
    (Flag::Draft, Flags::DRAFT),
];

/// The system flags, for FLAGS and PERMANENTFLAGS.
pub fn system_flags() -> Vec<Flag<'static>> {
    SYSTEM.iter().map(|(f, _)| f.clone()).collect()
}

/// The flags of a message as FETCH shows them.
pub fn flags_of(flags: Flags) -> Vec<FlagFetch<'static>> {
    SYSTEM.iter().filter(|(_, bit)| flags.has(*bit)).map(|(f, _)| FlagFetch::Flag(f.clone())).collect()
}

/// The bits of the system flags among `flags`; keywords are not kept (PERMANENTFLAGS
/// does not offer them) and are left out.
pub fn bits_of(flags: &[Flag<'_>]) -> i64 {
    flags.iter().map(|f| SYSTEM.iter().find(|(s, _)| s == f).map_or(0, |(_, bit)| *bit)).fold(0, |a, b| a | b)
}

/// Why a sequence set names no valid messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSet;

/// The positions in `entries` (UID order) a sequence set names, ascending, each once.
/// Message sequence numbers past the last message are an error (RFC 9051 §9,
/// `seq-number`); UIDs that match nothing are not, and `n:*` always includes the last
/// message (RFC 9051 §6.4.8).
pub fn resolve(set: &SequenceSet, entries: &[UidEntry], uid: bool) -> Result<Vec<usize>, BadSet> {
    let mut out = BTreeSet::new();
    for seq in set.0.as_ref() {
        let (a, b) = match seq {
            Sequence::Single(v) => (*v, *v),
            Sequence::Range(a, b) => (*a, *b),
        };
        if uid {
            let last = entries.last().map_or(0, |e| e.uid);
            let value = |v: SeqOrUid| match v {
                SeqOrUid::Value(n) => i64::from(n.get()),
                SeqOrUid::Asterisk => last,
            };
            let (lo, hi) = (value(a).min(value(b)), value(a).max(value(b)));
            let start = entries.partition_point(|e| e.uid < lo);
            let end = entries.partition_point(|e| e.uid <= hi);
            out.extend(start..end.max(start));
        } else {
            let last = entries.len();
            let value = |v: SeqOrUid| match v {
                SeqOrUid::Value(n) => n.get() as usize,
                SeqOrUid::Asterisk => last,
            };
            let (lo, hi) = (value(a).min(value(b)), value(a).max(value(b)));
            if lo == 0 || hi > last {
                return Err(BadSet);
            }
            out.extend(lo - 1..hi);
        }
    }
    Ok(out.into_iter().collect())
}

/// The answer to a mail-service error (RFC 5530 codes).
pub fn failed(tag: &Tag<'static>, e: MailError) -> Out {
    match e {
        MailError::NotFound => no_code(tag, "NONEXISTENT", "No such mailbox or message"),
        MailError::Exists => no_code(tag, "ALREADYEXISTS", "A mailbox with that name exists"),
        MailError::Invalid(why) => no_code(tag, "CANNOT", &why),
        MailError::Quota(_) => no_code(tag, "OVERQUOTA", "Your storage is full"),
        e => {
            tracing::warn!(error = %e, "imap command failed in the mail store");
            no_code(tag, "UNAVAILABLE", "Temporary failure; try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(uids: &[i64]) -> Vec<UidEntry> {
        uids.iter().map(|&uid| UidEntry { id: uid * 10, uid, flags: Flags::default() }).collect()
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn sequence_numbers_resolve_in_order_once_and_past_the_end_is_an_error() {
        let e = entries(&[3, 5, 9, 12]);
        assert_eq!(resolve(&set("2,1,2"), &e, false), Ok(vec![0, 1]));
        assert_eq!(resolve(&set("3:*"), &e, false), Ok(vec![2, 3]));
        assert_eq!(resolve(&set("*:2"), &e, false), Ok(vec![1, 2, 3]));
        assert_eq!(resolve(&set("5"), &e, false), Err(BadSet));
        assert_eq!(resolve(&set("1:*"), &[], false), Err(BadSet));
    }

    #[test]
    fn uids_match_what_exists_and_n_star_includes_the_last() {
        let e = entries(&[3, 5, 9, 12]);
        assert_eq!(resolve(&set("4:9"), &e, true), Ok(vec![1, 2]));
        assert_eq!(resolve(&set("100:*"), &e, true), Ok(vec![3]));
        assert_eq!(resolve(&set("1:4294967295"), &e, true), Ok(vec![0, 1, 2, 3]));
        assert_eq!(resolve(&set("6,7"), &e, true), Ok(vec![]));
        assert_eq!(resolve(&set("1:*"), &[], true), Ok(vec![]));
    }

    #[test]
    fn flags_map_both_ways_and_keywords_are_left_out() {
        let bits = bits_of(&[Flag::Seen, Flag::Deleted, Flag::Keyword("$Junk".try_into().unwrap())]);
        assert_eq!(bits, Flags::SEEN | Flags::DELETED);
        let shown = flags_of(Flags(Flags::SEEN | Flags::IMPORTANT));
        assert_eq!(shown, vec![FlagFetch::Flag(Flag::Seen)]);
    }
}
