//! STORE and UID STORE (RFC 9051 §6.4.6): `FLAGS`, `+FLAGS` and `-FLAGS`, each also
//! `.SILENT`, for the system flags `\Seen \Answered \Flagged \Deleted \Draft`. Keywords
//! are not kept (PERMANENTFLAGS does not offer them) and are left out.

use std::collections::HashMap;

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::super::reply::{Out, bad, ok};
use super::super::session::{Session, State};
use super::select::{flags_fetch, read_only};
use super::{IMAP_BITS, bits_of, failed, resolve};
use crate::domains::mail::uid_view::{FlagEdit, UidEntry};

/// The flag change a STORE asks for.
pub fn edit(kind: StoreType, flags: &[Flag<'_>]) -> FlagEdit {
    let bits = bits_of(flags);
    match kind {
        StoreType::Add => FlagEdit { set: bits, clear: 0 },
        StoreType::Remove => FlagEdit { set: 0, clear: bits },
        StoreType::Replace => FlagEdit { set: bits, clear: IMAP_BITS & !bits },
    }
}

impl Session {
    /// STORE or UID STORE.
    pub(in super::super) async fn store(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'static>],
        uid: bool,
    ) -> Vec<Out> {
        let State::Selected(account, selected) = &mut self.state else { return vec![bad(tag, "No mailbox selected")] };
        if selected.read_only {
            return vec![read_only(tag)];
        }
        let Ok(positions) = resolve(set, &selected.entries, uid) else {
            return vec![bad(tag, "Invalid message sequence number")];
        };
        let ids: Vec<i64> = positions.iter().map(|&i| selected.entries[i].id).collect();
        let after: HashMap<i64, UidEntry> =
            match self.mail.edit_flags(account.id, selected.mailbox.id, &ids, edit(kind, flags)).await {
                Ok(after) => after.into_iter().map(|a| (a.id, a)).collect(),
                Err(e) => return vec![failed(tag, e)],
            };
        let mut out = Vec::new();
        for &i in &positions {
            let entry = &mut selected.entries[i];
            let Some(now) = after.get(&entry.id) else { continue };
            entry.flags = now.flags;
            if response == StoreResponse::Answer {
                out.push(flags_fetch(i, now.flags, uid.then_some(now.uid)));
            }
        }
        out.push(ok(tag, if uid { "UID STORE done" } else { "STORE done" }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::mail::Flags;

    #[test]
    fn replace_clears_the_other_system_flags_but_keeps_important() {
        let e = edit(StoreType::Replace, &[Flag::Seen]);
        assert_eq!(e.apply(Flags(Flags::FLAGGED | Flags::IMPORTANT)), Flags(Flags::SEEN | Flags::IMPORTANT));
        assert_eq!(edit(StoreType::Add, &[Flag::Deleted]).apply(Flags(0)), Flags(Flags::DELETED));
        assert_eq!(
            edit(StoreType::Remove, &[Flag::Seen]).apply(Flags(Flags::SEEN | Flags::DRAFT)),
            Flags(Flags::DRAFT)
        );
    }
}
