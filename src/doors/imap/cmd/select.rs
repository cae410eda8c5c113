//! SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3), CLOSE, UNSELECT (RFC 3691), EXPUNGE,
//! and what NOOP and CHECK report about a selected mailbox: messages others expunged,
//! new messages and changed flags since the client was last told ([`diff`]).

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::FlagPerm;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data, StatusKind};

use super::super::reply::{Out, bad, count, no, no_code, nz, ok, tagged, untagged_ok};
use super::super::session::{Account, Selected, Session, State};
use super::mailboxes::name_of;
use super::{failed, flags_of, system_flags};
use crate::domains::mail::Flags;
use crate::domains::mail::uid_view::UidEntry;

/// What the client must be told to go from the messages it knows (`old`) to the
/// mailbox as it is (`new`), both in UID order: EXPUNGE for each message gone (numbered
/// as each earlier one is already gone, RFC 9051 §7.5.1), EXISTS if messages came, and
/// FETCH FLAGS for each message whose flags changed. Returns those and the new list.
pub fn diff(old: &[UidEntry], new: &[UidEntry]) -> (Vec<Out>, Vec<UidEntry>) {
    let mut out = Vec::new();
    let mut kept: Vec<UidEntry> = Vec::with_capacity(new.len());
    let mut changed = Vec::new();
    let mut removed = 0usize;
    let mut j = 0;
    for (i, entry) in old.iter().enumerate() {
        while j < new.len() && new[j].uid < entry.uid {
            j += 1;
        }
        if j < new.len() && new[j].uid == entry.uid {
            if new[j].flags != entry.flags {
                changed.push((kept.len(), new[j].flags));
            }
            kept.push(new[j]);
            j += 1;
        } else {
            if let Ok(data) = Data::expunge(count(i + 1 - removed)) {
                out.push(Out::Data(data));
            }
            removed += 1;
        }
    }
    let last = old.last().map_or(0, |e| e.uid);
    let added: Vec<UidEntry> = new.iter().filter(|e| e.uid > last).copied().collect();
    let mut list = kept;
    if !added.is_empty() {
        list.extend(added);
        out.push(Out::Data(Data::Exists(count(list.len()))));
    }
    for (i, flags) in changed {
        out.push(flags_fetch(i, flags, None));
    }
    (out, list)
}

/// `* n FETCH (FLAGS (...) [UID u])` for the message at position `index`.
pub fn flags_fetch(index: usize, flags: Flags, uid: Option<i64>) -> Out {
    let mut items = vec![MessageDataItem::Flags(flags_of(flags))];
    if let Some(uid) = uid {
        items.push(MessageDataItem::Uid(nz(uid)));
    }
    Out::Data(Data::Fetch { seq: nz(index as i64 + 1), items: Vec1::unvalidated(items) })
}

impl Session {
    /// SELECT, or EXAMINE when `read_only`.
    pub(in super::super) async fn select(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'static>,
        read_only: bool,
    ) -> Vec<Out> {
        let Some(user) = self.account() else { return vec![bad(tag, "Log in first")] };
        // RFC 9051 §6.3.2: SELECT first deselects, also when it then fails.
        self.state = State::Authenticated(Account { id: user });
        let Some(name) = name_of(mailbox) else {
            return vec![bad(tag, "The mailbox name is not valid modified UTF-7")];
        };
        let found = match self.mail.uid_mailbox(user, &name).await {
            Ok(Some(m)) => m,
            Ok(None) => return vec![no_code(tag, "NONEXISTENT", "No such mailbox")],
            Err(e) => return vec![failed(tag, e)],
        };
        let (mailbox, entries) = match self.mail.uid_entries(user, found.id).await {
            Ok(found) => found,
            Err(e) => return vec![failed(tag, e)],
        };
        let mut out = vec![
            Out::Data(Data::Flags(system_flags())),
            Out::Data(Data::Exists(count(entries.len()))),
            Out::Data(Data::Recent(0)),
        ];
        if let Some(first) = entries.iter().position(|e| !e.flags.has(Flags::SEEN)) {
            out.push(untagged_ok(Some(Code::Unseen(nz(first as i64 + 1))), "First unseen"));
        }
        out.push(untagged_ok(Some(Code::UidValidity(nz(mailbox.uid_validity))), "UIDs valid"));
        out.push(untagged_ok(Some(Code::UidNext(nz(mailbox.uid_next))), "Predicted next UID"));
        let permanent = if read_only { Vec::new() } else { system_flags().into_iter().map(FlagPerm::Flag).collect() };
        out.push(untagged_ok(Some(Code::PermanentFlags(permanent)), "Flags that are kept"));
        let (code, verb) = if read_only { (Code::ReadOnly, "EXAMINE") } else { (Code::ReadWrite, "SELECT") };
        out.push(tagged(tag, StatusKind::Ok, Some(code), &format!("{verb} done")));
        self.state = State::Selected(Account { id: user }, Selected { mailbox, read_only, entries });
        out
    }

    /// What changed in the selected mailbox since the client was last told (NOOP, CHECK).
    pub(in super::super) async fn refresh(&mut self) -> Vec<Out> {
        let State::Selected(account, selected) = &mut self.state else { return Vec::new() };
        match self.mail.uid_entries(account.id, selected.mailbox.id).await {
            Ok((_, now)) => {
                let (out, list) = diff(&selected.entries, &now);
                selected.entries = list;
                out
            }
            Err(e) => {
                tracing::debug!(error = %e, "refreshing the selected mailbox failed");
                Vec::new()
            }
        }
    }

    /// CLOSE (expunges silently unless read-only) or UNSELECT.
    pub(in super::super) async fn close(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> Vec<Out> {
        let State::Selected(account, selected) = &self.state else { return vec![bad(tag, "No mailbox selected")] };
        let account = account.clone();
        if matches!(body, CommandBody::Close)
            && !selected.read_only
            && let Err(e) = self.mail.expunge_deleted(account.id, selected.mailbox.id, None).await
        {
            return vec![failed(tag, e)];
        }
        self.state = State::Authenticated(account);
        vec![ok(tag, &format!("{} done", body.name()))]
    }

    /// EXPUNGE (RFC 9051 §6.4.3): removes the messages marked `\Deleted` and says which.
    pub(in super::super) async fn expunge(&mut self, tag: &Tag<'static>) -> Vec<Out> {
        let State::Selected(account, selected) = &mut self.state else { return vec![bad(tag, "No mailbox selected")] };
        if selected.read_only {
            return vec![no_code(tag, "READ-ONLY", "The mailbox is open read-only (EXAMINE)")];
        }
        let gone = match self.mail.expunge_deleted(account.id, selected.mailbox.id, None).await {
            Ok(uids) => uids,
            Err(e) => return vec![failed(tag, e)],
        };
        let remaining: Vec<UidEntry> =
            selected.entries.iter().filter(|e| gone.binary_search(&e.uid).is_err()).copied().collect();
        let (mut out, list) = diff(&selected.entries, &remaining);
        selected.entries = list;
        out.push(ok(tag, "EXPUNGE done"));
        out
    }
}

/// A `NO` for a write to a mailbox opened with EXAMINE.
pub fn read_only(tag: &Tag<'static>) -> Out {
    no(tag, "The mailbox is open read-only (EXAMINE)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(uid: i64, flags: i64) -> UidEntry {
        UidEntry { id: uid, uid, flags: Flags(flags) }
    }

    #[test]
    fn expunges_are_numbered_as_each_earlier_one_is_gone() {
        let old = [e(1, 0), e(2, 0), e(3, 0), e(4, 0)];
        let (out, list) = diff(&old, &[e(1, 0), e(4, 0)]);
        assert_eq!(out, vec![Out::Data(Data::expunge(2).unwrap()), Out::Data(Data::expunge(2).unwrap())]);
        assert_eq!(list, vec![e(1, 0), e(4, 0)]);
    }

    #[test]
    fn new_messages_give_exists_and_changed_flags_a_fetch_after_the_expunges() {
        let old = [e(1, 0), e(2, 0), e(3, 0)];
        let new = [e(2, 0), e(3, Flags::SEEN), e(7, 0)];
        let (out, list) = diff(&old, &new);
        assert_eq!(
            out,
            vec![
                Out::Data(Data::expunge(1).unwrap()),
                Out::Data(Data::Exists(3)),
                flags_fetch(1, Flags(Flags::SEEN), None),
            ]
        );
        assert_eq!(list, new.to_vec());
    }

    #[test]
    fn nothing_changed_says_nothing() {
        let old = [e(1, 0), e(2, 1)];
        assert_eq!(diff(&old, &old), (vec![], old.to_vec()));
    }
}
