//! The UID view of a user's mailboxes, as IMAP sees them (RFC 9051 §2.3.1): each mailbox
//! with its UIDVALIDITY, UIDNEXT, MODSEQ and subscription, the messages of one mailbox in
//! UID order with their flags, the rows FETCH reads, and the changes IMAP makes: flags
//! set, cleared or replaced in one go, `\Deleted` messages expunged, messages copied
//! into another mailbox, subscriptions.
//!
//! It speaks no protocol: the IMAP door maps these to sequence numbers and replies. Like
//! the rest of the domain, every function takes the owner's id and finds nothing of
//! anybody else's, and every write is one transaction with its bookkeeping (MODSEQ,
//! counters, expunge log, events; see [`super::changes`]).

use std::sync::Arc;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::actions::{flag_rows, mailbox_of};
use super::changes::{CHUNK, begin_write};
use super::entities::{mailbox, message};
use super::store::{NewMessage, Part, Stored, Target, Work, ensure_system_mailboxes};
use super::{Flags, MailError, MailService, Role, parse};

/// A mailbox with the numbers IMAP reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidMailbox {
    /// Id.
    pub id: i64,
    /// Name, `/`-separated for hierarchy (UTF-8; the door encodes it for the wire).
    pub name: String,
    /// The system role, if any.
    pub role: Option<Role>,
    /// UIDVALIDITY: fixed for the mailbox's life.
    pub uid_validity: i64,
    /// The UID the next message gets.
    pub uid_next: i64,
    /// The highest MODSEQ of the mailbox.
    pub highest_modseq: i64,
    /// Whether LSUB lists it.
    pub subscribed: bool,
    /// Messages in it.
    pub total: i64,
    /// Unread messages in it.
    pub unread: i64,
}

impl From<mailbox::Model> for UidMailbox {
    fn from(m: mailbox::Model) -> Self {
        Self {
            id: m.id,
            role: m.role.as_deref().and_then(Role::parse),
            name: m.name,
            uid_validity: m.uid_validity,
            uid_next: m.uid_next,
            highest_modseq: m.highest_modseq,
            subscribed: m.subscribed,
            total: m.total,
            unread: m.unread,
        }
    }
}

/// A message's place in its mailbox: what a selected mailbox keeps per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidEntry {
    /// Message id.
    pub id: i64,
    /// Its UID in the mailbox.
    pub uid: i64,
    /// Its flag bits.
    pub flags: Flags,
}

/// What FETCH reads from a message's row (the body is [`MailService::raw`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidMessage {
    /// Message id.
    pub id: i64,
    /// Its UID in the mailbox.
    pub uid: i64,
    /// Its flag bits.
    pub flags: Flags,
    /// Arrival, Unix seconds (INTERNALDATE).
    pub internal_date: i64,
    /// Raw size in octets (RFC822.SIZE).
    pub size: i64,
}

/// A flag change: bits to set, then bits to clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagEdit {
    /// Bits set.
    pub set: i64,
    /// Bits cleared (after setting).
    pub clear: i64,
}

impl FlagEdit {
    /// `flags` after the edit.
    pub fn apply(self, flags: Flags) -> Flags {
        Flags((flags.0 | self.set) & !self.clear)
    }
}

impl MailService {
    /// Copies the user's messages `ids` into their mailbox `target` (IMAP COPY): a new
    /// copy of each with its bytes, flags and arrival time, all in one commit, within the
    /// storage quota. Ids that are not the user's are skipped; a `target` that is not
    /// theirs is not found. Returns the copies in the order of `ids`.
    pub async fn copy_to(&self, user_id: i64, ids: &[i64], target: i64) -> Result<Vec<Stored>, MailError> {
        mailbox_of(self.db(), user_id, target).await?;
        let mut rows = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            rows.extend(
                message::Entity::find()
                    .filter(message::Column::UserId.eq(user_id))
                    .filter(message::Column::Id.is_in(chunk.iter().copied()))
                    .all(self.db())
                    .await?,
            );
        }
        rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        let size: i64 = rows.iter().map(|r| r.size).sum();
        self.limits().quota.check(user_id, u64::try_from(size).unwrap_or(0)).await?;
        let mut work = Work::default();
        for row in &rows {
            let raw = self.raw(user_id, row.id).await?;
            let meta = parse::meta_of_bytes(&raw).await.ok_or(MailError::Interrupted)?;
            let mut copy = NewMessage::new(user_id, Target::Mailbox(target));
            copy.flags = Flags(row.flags);
            copy.internal_date = row.internal_date;
            work.parts.push(Part { raw, meta: Arc::new(meta), targets: vec![copy] });
        }
        if work.parts.is_empty() {
            return Ok(Vec::new());
        }
        let committed = self.commit(work).await?;
        Ok(committed.stored.into_iter().flatten().collect())
    }

    /// The user's mailboxes (the system ones made first if missing), system ones first.
    pub async fn uid_mailboxes(&self, user_id: i64) -> Result<Vec<UidMailbox>, MailError> {
        ensure_system_mailboxes(self.db(), user_id).await?;
        let rows = mailbox::Entity::find().filter(mailbox::Column::UserId.eq(user_id)).all(self.db()).await?;
        let mut out: Vec<UidMailbox> = rows.into_iter().map(UidMailbox::from).collect();
        let order =
            |m: &UidMailbox| m.role.map_or(Role::ALL.len(), |r| Role::ALL.iter().position(|x| *x == r).unwrap_or(0));
        out.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The user's mailbox called `name` (INBOX case-insensitively).
    pub async fn uid_mailbox(&self, user_id: i64, name: &str) -> Result<Option<UidMailbox>, MailError> {
        ensure_system_mailboxes(self.db(), user_id).await?;
        Ok(self.mailbox_named(user_id, name).await?.map(UidMailbox::from))
    }

    /// The user's mailbox `mailbox_id` and its messages in UID order.
    pub async fn uid_entries(&self, user_id: i64, mailbox_id: i64) -> Result<(UidMailbox, Vec<UidEntry>), MailError> {
        let mailbox = mailbox_of(self.db(), user_id, mailbox_id).await?;
        let rows: Vec<(i64, i64, i64)> = message::Entity::find()
            .select_only()
            .columns([message::Column::Id, message::Column::Uid, message::Column::Flags])
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .order_by_asc(message::Column::Uid)
            .into_tuple()
            .all(self.db())
            .await?;
        let entries = rows.into_iter().map(|(id, uid, flags)| UidEntry { id, uid, flags: Flags(flags) }).collect();
        Ok((mailbox.into(), entries))
    }

    /// The rows of the messages `ids` still in the user's mailbox `mailbox_id`, in UID
    /// order; ids that left it are skipped.
    pub async fn uid_messages(&self, user_id: i64, mailbox_id: i64, ids: &[i64]) -> Result<Vec<UidMessage>, MailError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<(i64, i64, i64, i64, i64)> = message::Entity::find()
                .select_only()
                .columns([
                    message::Column::Id,
                    message::Column::Uid,
                    message::Column::Flags,
                    message::Column::InternalDate,
                    message::Column::Size,
                ])
                .filter(message::Column::UserId.eq(user_id))
                .filter(message::Column::MailboxId.eq(mailbox_id))
                .filter(message::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(self.db())
                .await?;
            out.extend(rows.into_iter().map(|(id, uid, flags, internal_date, size)| UidMessage {
                id,
                uid,
                flags: Flags(flags),
                internal_date,
                size,
            }));
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// Applies `edit` to the messages `ids` still in the user's mailbox `mailbox_id`, in
    /// one transaction; returns each one's flags afterwards, in UID order.
    pub async fn edit_flags(
        &self,
        user_id: i64,
        mailbox_id: i64,
        ids: &[i64],
        edit: FlagEdit,
    ) -> Result<Vec<UidEntry>, MailError> {
        let txn = begin_write(self.db()).await?;
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let found = message::Entity::find()
                .filter(message::Column::UserId.eq(user_id))
                .filter(message::Column::MailboxId.eq(mailbox_id))
                .filter(message::Column::Id.is_in(chunk.iter().copied()))
                .all(&txn)
                .await?;
            rows.extend(found);
        }
        rows.sort_by_key(|r| r.uid);
        let after: Vec<UidEntry> =
            rows.iter().map(|r| UidEntry { id: r.id, uid: r.uid, flags: edit.apply(Flags(r.flags)) }).collect();
        let events = flag_rows(&txn, user_id, rows, |f| edit.apply(f)).await?;
        self.finish(txn, &events).await?;
        Ok(after)
    }

    /// Deletes for good the messages of the user's mailbox `mailbox_id` marked `\Deleted`
    /// (only those among `only` when given: UID EXPUNGE); returns their UIDs, ascending.
    pub async fn expunge_deleted(
        &self,
        user_id: i64,
        mailbox_id: i64,
        only: Option<&[i64]>,
    ) -> Result<Vec<i64>, MailError> {
        let txn = begin_write(self.db()).await?;
        mailbox_of(&txn, user_id, mailbox_id).await?;
        let mut rows = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(Expr::col(message::Column::Flags).bit_and(Flags::DELETED).ne(0))
            .order_by_asc(message::Column::Uid)
            .all(&txn)
            .await?;
        if let Some(only) = only {
            rows.retain(|r| only.contains(&r.id));
        }
        let uids = rows.iter().map(|r| r.uid).collect();
        self.remove(txn, user_id, rows).await?;
        Ok(uids)
    }

    /// Subscribes the user to their mailbox `mailbox_id`, or unsubscribes them.
    pub async fn set_subscribed(&self, user_id: i64, mailbox_id: i64, subscribed: bool) -> Result<(), MailError> {
        let res = mailbox::Entity::update_many()
            .col_expr(mailbox::Column::Subscribed, Expr::value(subscribed))
            .filter(mailbox::Column::Id.eq(mailbox_id))
            .filter(mailbox::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(MailError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_edit_sets_then_clears() {
        let edit = FlagEdit { set: Flags::SEEN | Flags::DELETED, clear: Flags::FLAGGED };
        let after = edit.apply(Flags(Flags::FLAGGED | Flags::IMPORTANT));
        assert_eq!(after, Flags(Flags::SEEN | Flags::DELETED | Flags::IMPORTANT));
    }

    async fn deliver_to(f: &super::super::tests::Fixture, users: Vec<i64>) -> Vec<i64> {
        let envelope = super::super::deliver::Envelope {
            mail_from: "carol@c.test".into(),
            recipients: users,
            peer: None,
            helo: "mx.c.test".into(),
            protocol: "ESMTP",
            trace: Vec::new(),
            check_auth: false,
            forwarded: false,
        };
        let raw = b"From: carol@c.test\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
        f.mail.deliver(&envelope, raw).await.unwrap().stored.iter().map(|s| s.id).collect()
    }

    #[tokio::test]
    async fn flags_and_expunges_reach_only_the_owners_messages() {
        let f = super::super::tests::fixture().await;
        let ids = deliver_to(&f, vec![f.ada, f.bob]).await;
        let (ada_msg, bob_msg) = (ids[0], ids[1]);
        let ada_inbox = f.mail.uid_mailbox(f.ada, "inbox").await.unwrap().unwrap();
        let bob_inbox = f.mail.uid_mailbox(f.bob, "INBOX").await.unwrap().unwrap();
        assert!(matches!(f.mail.uid_entries(f.ada, bob_inbox.id).await, Err(MailError::NotFound)));
        let mark = FlagEdit { set: Flags::SEEN | Flags::DELETED, clear: 0 };
        let changed = f.mail.edit_flags(f.ada, bob_inbox.id, &[bob_msg], mark).await.unwrap();
        assert!(changed.is_empty(), "another user's message is not touched");
        let changed = f.mail.edit_flags(f.ada, ada_inbox.id, &[ada_msg, bob_msg], mark).await.unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].flags, Flags(Flags::SEEN | Flags::DELETED));
        assert!(matches!(f.mail.expunge_deleted(f.ada, bob_inbox.id, None).await, Err(MailError::NotFound)));
        assert_eq!(f.mail.expunge_deleted(f.ada, ada_inbox.id, None).await.unwrap(), vec![changed[0].uid]);
        assert!(f.mail.uid_entries(f.ada, ada_inbox.id).await.unwrap().1.is_empty());
        let (bob_box, bob_entries) = f.mail.uid_entries(f.bob, bob_inbox.id).await.unwrap();
        assert_eq!((bob_box.total, bob_box.unread, bob_entries.len()), (1, 1, 1), "bob's copy is as it was");
        assert!(matches!(f.mail.set_subscribed(f.ada, bob_inbox.id, false).await, Err(MailError::NotFound)));
    }

    #[tokio::test]
    async fn copies_take_only_the_owners_messages_into_the_owners_mailboxes() {
        let f = super::super::tests::fixture().await;
        let ids = deliver_to(&f, vec![f.ada, f.bob]).await;
        let (ada_msg, bob_msg) = (ids[0], ids[1]);
        let ada_inbox = f.mail.uid_mailbox(f.ada, "INBOX").await.unwrap().unwrap();
        let bob_inbox = f.mail.uid_mailbox(f.bob, "INBOX").await.unwrap().unwrap();
        // Into another user's mailbox: not found, nothing copied.
        assert!(matches!(f.mail.copy_to(f.ada, &[ada_msg], bob_inbox.id).await, Err(MailError::NotFound)));
        // Another user's message: skipped.
        let copied = f.mail.copy_to(f.ada, &[bob_msg, ada_msg], ada_inbox.id).await.unwrap();
        assert_eq!(copied.len(), 1);
        assert_eq!((copied[0].user_id, copied[0].mailbox_id), (f.ada, ada_inbox.id));
        assert_eq!(f.mail.raw(f.ada, copied[0].id).await.unwrap(), f.mail.raw(f.ada, ada_msg).await.unwrap());
        assert_eq!(f.mail.uid_entries(f.bob, bob_inbox.id).await.unwrap().1.len(), 1, "bob's mailbox is as it was");
        assert_eq!(f.mail.uid_entries(f.ada, ada_inbox.id).await.unwrap().1.len(), 2);
    }
}
