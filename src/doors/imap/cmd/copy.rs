//! COPY and UID COPY (RFC 9051 §6.4.7): copies messages of the selected mailbox into
//! another of the user's mailboxes, with their flags and arrival times, all or none (one
//! commit), within the storage quota. A mailbox that does not exist is `NO [TRYCREATE]`.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use super::super::reply::{Out, bad, no_code, ok};
use super::super::session::{Session, State};
use super::mailboxes::name_of;
use super::{failed, resolve};

impl Session {
    /// COPY or UID COPY.
    pub(in super::super) async fn copy(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        mailbox: &Mailbox<'static>,
        uid: bool,
    ) -> Vec<Out> {
        let State::Selected(account, selected) = &self.state else { return vec![bad(tag, "No mailbox selected")] };
        let user = account.id;
        let Ok(positions) = resolve(set, &selected.entries, uid) else {
            return vec![bad(tag, "Invalid message sequence number")];
        };
        let ids: Vec<i64> = positions.iter().map(|&i| selected.entries[i].id).collect();
        let Some(name) = name_of(mailbox) else {
            return vec![bad(tag, "The mailbox name is not valid modified UTF-7")];
        };
        let target = match self.mail.uid_mailbox(user, &name).await {
            Ok(Some(m)) => m,
            Ok(None) => return vec![no_code(tag, "TRYCREATE", "No such mailbox; create it first")],
            Err(e) => return vec![failed(tag, e)],
        };
        if let Err(e) = self.mail.copy_to(user, &ids, target.id).await {
            return vec![failed(tag, e)];
        }
        // Copying into the selected mailbox itself adds to it: say so at once.
        let mut out = match &self.state {
            State::Selected(_, selected) if selected.mailbox.id == target.id => self.refresh().await,
            _ => Vec::new(),
        };
        out.push(ok(tag, if uid { "UID COPY done" } else { "COPY done" }));
        out
    }
}
