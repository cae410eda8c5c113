//! Mailbox commands: LIST and LSUB with SPECIAL-USE attributes (RFC 9051 §6.3.9, RFC
//! 6154) and CHILDREN attributes (RFC 3348), STATUS, CREATE, DELETE, RENAME, SUBSCRIBE,
//! UNSUBSCRIBE and NAMESPACE. Names travel in modified UTF-7 ([`super::super::mutf7`]);
//! the hierarchy delimiter is `/`. Labels are not shown as folders yet.

use std::borrow::Cow;
use std::collections::BTreeMap;

use imap_codec::imap_types::core::{AString, IString, QuotedChar, Tag};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox, MailboxOther};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::super::mutf7;
use super::super::reply::{Out, attribute, bad, count, no_code, nz, ok};
use super::super::session::Session;
use super::failed;
use crate::domains::mail::Role;
use crate::domains::mail::uid_view::UidMailbox;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// The store's (UTF-8) name of a mailbox named on the wire, or None if the name is not
/// valid modified UTF-7.
pub fn name_of(mailbox: &Mailbox<'_>) -> Option<String> {
    match mailbox {
        Mailbox::Inbox => Some("INBOX".into()),
        Mailbox::Other(other) => mutf7::decode(std::str::from_utf8(other.as_ref()).ok()?),
    }
}

/// A store name as a wire mailbox.
pub fn wire(name: &str) -> Mailbox<'static> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Mailbox::Inbox;
    }
    AString::try_from(mutf7::encode(name)).map(Mailbox::from).unwrap_or(Mailbox::Inbox)
}

/// The special-use attribute of a system mailbox (RFC 6154 §2).
fn special_use(role: Option<Role>) -> Option<FlagNameAttribute<'static>> {
    match role? {
        Role::Inbox => None,
        Role::Sent => Some(attribute("Sent")),
        Role::Drafts => Some(attribute("Drafts")),
        Role::Spam => Some(attribute("Junk")),
        Role::Trash => Some(attribute("Trash")),
        Role::Archive => Some(attribute("Archive")),
    }
}

/// Whether `name` matches the LIST pattern `pattern` (RFC 9051 §6.3.9: `*` matches
/// anything, `%` anything but the delimiter). Dynamic programming, so no pattern costs
/// more than its length times the name's.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // reach[j]: the first j bytes of the name are matched by the pattern so far.
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                let mut open = false;
                for j in 0..=name.len() {
                    if p == b'%' && j > 0 && name[j - 1] == DELIMITER as u8 {
                        open = false;
                    }
                    open |= reach[j];
                    next[j] = open;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = reach[j - 1] && name[j - 1] == c;
                }
            }
        }
        reach = next;
    }
    reach[name.len()]
}

/// Whether a mailbox's wire name matches; INBOX in any case (RFC 9051 §5.1).
fn listed(pattern: &[u8], wire_name: &str) -> bool {
    if wire_name == "INBOX" {
        return matches(&pattern.to_ascii_lowercase(), b"inbox");
    }
    matches(pattern, wire_name.as_bytes())
}

/// Every name LIST may show: the mailboxes and the parents their names imply (shown
/// `\Noselect`), with whether each has children.
fn tree(boxes: &[UidMailbox]) -> BTreeMap<String, (Option<&UidMailbox>, bool)> {
    let mut tree: BTreeMap<String, (Option<&UidMailbox>, bool)> = BTreeMap::new();
    for b in boxes {
        tree.entry(b.name.clone()).or_insert((None, false)).0 = Some(b);
        let mut parent = b.name.as_str();
        while let Some((up, _)) = parent.rsplit_once(DELIMITER) {
            tree.entry(up.to_owned()).or_insert((None, false)).1 = true;
            parent = up;
        }
    }
    tree
}

/// A mailbox name as LIST/LSUB's pattern bytes.
fn pattern_bytes(reference: &Mailbox<'_>, wildcard: &ListMailbox<'_>) -> Vec<u8> {
    let mut out = match reference {
        Mailbox::Inbox => b"INBOX".to_vec(),
        Mailbox::Other(o) => o.as_ref().to_vec(),
    };
    match wildcard {
        ListMailbox::Token(t) => out.extend_from_slice(t.as_ref()),
        ListMailbox::String(s) => out.extend_from_slice(&s.clone().into_inner()),
    }
    out
}

/// The `* NAMESPACE` answer: one personal namespace, no others (RFC 2342).
pub fn namespace() -> Out {
    let personal = IString::try_from("")
        .map(|prefix| vec![Namespace { prefix, delimiter: QuotedChar::try_from(DELIMITER).ok(), extensions: vec![] }])
        .unwrap_or_default();
    Out::Data(Data::Namespace { personal, other: Vec::new(), shared: Vec::new() })
}

impl Session {
    /// LIST or LSUB.
    pub(in super::super) async fn list(
        &mut self,
        tag: &Tag<'static>,
        reference: &Mailbox<'static>,
        wildcard: &ListMailbox<'static>,
        subscribed_only: bool,
    ) -> Vec<Out> {
        let Some(user) = self.account() else { return vec![bad(tag, "Log in first")] };
        let command = if subscribed_only { "LSUB" } else { "LIST" };
        let pattern = pattern_bytes(reference, wildcard);
        let delimiter = QuotedChar::try_from(DELIMITER).ok();
        if pattern.is_empty() {
            // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
            let Ok(root) = MailboxOther::try_from("") else { return vec![bad(tag, "LIST failed")] };
            let items = vec![FlagNameAttribute::Noselect];
            return vec![
                Out::Data(Data::List { items, delimiter, mailbox: Mailbox::Other(root) }),
                ok(tag, "LIST done"),
            ];
        }
        let boxes = match self.mail.uid_mailboxes(user).await {
            Ok(b) => b,
            Err(e) => return vec![failed(tag, e)],
        };
        let mut out = Vec::new();
        for (name, (mailbox, children)) in tree(&boxes) {
            if subscribed_only && !mailbox.is_some_and(|m| m.subscribed) {
                continue;
            }
            if !listed(&pattern, &mutf7::encode(&name)) {
                continue;
            }
            let mut items = Vec::new();
            match mailbox {
                Some(m) => items.extend(special_use(m.role)),
                None => items.push(FlagNameAttribute::Noselect),
            }
            items.push(attribute(if children { "HasChildren" } else { "HasNoChildren" }));
            let mailbox = wire(&name);
            out.push(Out::Data(if subscribed_only {
                Data::Lsub { items, delimiter, mailbox }
            } else {
                Data::List { items, delimiter, mailbox }
            }));
        }
        out.push(ok(tag, &format!("{command} done")));
        out
    }

    /// The user's mailbox named on the wire, or the response that ends the command.
    async fn named(&self, tag: &Tag<'static>, mailbox: &Mailbox<'_>) -> Result<(i64, UidMailbox), Out> {
        let user = self.account().ok_or_else(|| bad(tag, "Log in first"))?;
        let name = name_of(mailbox).ok_or_else(|| bad(tag, "The mailbox name is not valid modified UTF-7"))?;
        match self.mail.uid_mailbox(user, &name).await {
            Ok(Some(m)) => Ok((user, m)),
            Ok(None) => Err(no_code(tag, "NONEXISTENT", "No such mailbox")),
            Err(e) => Err(failed(tag, e)),
        }
    }

    /// STATUS (RFC 9051 §6.3.11).
    pub(in super::super) async fn status(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'static>,
        names: &[StatusDataItemName],
    ) -> Vec<Out> {
        let m = match self.named(tag, mailbox).await {
            Ok((_, m)) => m,
            Err(out) => return vec![out],
        };
        let mut items = Vec::with_capacity(names.len());
        for name in names {
            items.push(match name {
                StatusDataItemName::Messages => StatusDataItem::Messages(count(m.total.max(0) as usize)),
                StatusDataItemName::Recent => StatusDataItem::Recent(0),
                StatusDataItemName::UidNext => StatusDataItem::UidNext(nz(m.uid_next)),
                StatusDataItemName::UidValidity => StatusDataItem::UidValidity(nz(m.uid_validity)),
                StatusDataItemName::Unseen => StatusDataItem::Unseen(count(m.unread.max(0) as usize)),
                other => return vec![bad(tag, &format!("STATUS {other:?} is not supported yet"))],
            });
        }
        let data = Data::Status { mailbox: mailbox.clone(), items: Cow::Owned(items) };
        vec![Out::Data(data), ok(tag, "STATUS done")]
    }

    /// CREATE (RFC 9051 §6.3.4): a trailing delimiter is dropped.
    pub(in super::super) async fn create(&mut self, tag: &Tag<'static>, mailbox: &Mailbox<'static>) -> Vec<Out> {
        let Some(user) = self.account() else { return vec![bad(tag, "Log in first")] };
        let Some(name) = name_of(mailbox) else {
            return vec![bad(tag, "The mailbox name is not valid modified UTF-7")];
        };
        if name.eq_ignore_ascii_case("INBOX") {
            return vec![no_code(tag, "ALREADYEXISTS", "INBOX always exists")];
        }
        match self.mail.create_mailbox(user, &name).await {
            Ok(_) => vec![ok(tag, "CREATE done")],
            Err(e) => vec![failed(tag, e)],
        }
    }

    /// DELETE (RFC 9051 §6.3.5): the mailbox's messages go to Trash, as in the web UI.
    pub(in super::super) async fn delete(&mut self, tag: &Tag<'static>, mailbox: &Mailbox<'static>) -> Vec<Out> {
        let (user, m) = match self.named(tag, mailbox).await {
            Ok(found) => found,
            Err(out) => return vec![out],
        };
        match self.mail.delete_mailbox(user, m.id).await {
            Ok(()) => vec![ok(tag, "DELETE done")],
            Err(e) => vec![failed(tag, e)],
        }
    }

    /// RENAME (RFC 9051 §6.3.6) of a mailbox of the user's own.
    pub(in super::super) async fn rename(
        &mut self,
        tag: &Tag<'static>,
        from: &Mailbox<'static>,
        to: &Mailbox<'static>,
    ) -> Vec<Out> {
        let (user, m) = match self.named(tag, from).await {
            Ok(found) => found,
            Err(out) => return vec![out],
        };
        let Some(new_name) = name_of(to) else { return vec![bad(tag, "The new name is not valid modified UTF-7")] };
        match self.mail.rename_mailbox(user, m.id, &new_name).await {
            Ok(()) => vec![ok(tag, "RENAME done")],
            Err(e) => vec![failed(tag, e)],
        }
    }

    /// SUBSCRIBE or UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8).
    pub(in super::super) async fn subscribe(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'static>,
        on: bool,
    ) -> Vec<Out> {
        let (user, m) = match self.named(tag, mailbox).await {
            Ok(found) => found,
            Err(out) => return vec![out],
        };
        match self.mail.set_subscribed(user, m.id, on).await {
            Ok(()) => vec![ok(tag, if on { "SUBSCRIBE done" } else { "UNSUBSCRIBE done" })],
            Err(e) => vec![failed(tag, e)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns_match_as_the_rfc_says() {
        assert!(matches(b"*", b"Work/Projects"));
        assert!(!matches(b"%", b"Work/Projects"));
        assert!(matches(b"%", b"Work"));
        assert!(matches(b"Work/%", b"Work/Projects"));
        assert!(!matches(b"Work/%", b"Work/Projects/2026"));
        assert!(matches(b"W*s", b"Work/Projects"));
        assert!(matches(b"%/%", b"Work/Projects"));
        assert!(!matches(b"Sent", b"Sent/Old"));
        assert!(matches(b"", b""));
        let long = vec![b'*'; 500];
        assert!(matches(&long, &[b'a'; 500]), "many wildcards stay cheap");
    }

    #[test]
    fn inbox_matches_in_any_case() {
        assert!(listed(b"inbox", "INBOX"));
        assert!(listed(b"InBo%", "INBOX"));
        assert!(!listed(b"inbox", "Inbox2"));
    }

    #[test]
    fn names_travel_in_modified_utf7() {
        assert_eq!(wire("INBOX"), Mailbox::Inbox);
        let m = wire("Entwürfe");
        assert_eq!(name_of(&m).as_deref(), Some("Entwürfe"));
        let Mailbox::Other(o) = m else { panic!("not INBOX") };
        assert_eq!(o.as_ref(), b"Entw&APw-rfe");
    }
}
