//! Change bookkeeping of the mail store, and reading it back. Inside a write transaction
//! every change moves the touched mailboxes' MODSEQ on (RFC 7162 §3.1), keeps the
//! `total`/`unread` counters of those mailboxes and of the labels involved, and writes
//! each removal from a mailbox to the expunge log; the caller publishes its change events
//! on the same transaction ([`MailService::finish`]), so data, counters, log and events
//! commit together or not at all. The read side answers "what changed since MODSEQ n" for
//! IMAP QRESYNC (`VANISHED (EARLIER)`, RFC 7162 §3.2.5.1) and the web UI.
//!
//! This module decides no business rule (which messages move, go or change): its callers
//! in `actions`, `labels` and `store` do.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;

use super::entities::{expunged, label, mailbox, message, message_label};
use super::{Flags, MailError, MailService};
use crate::events::{Bus, Event};

/// How many ids go into one `IN (...)` list or one multi-row insert.
pub(crate) const CHUNK: usize = 500;

/// A message count and its unread part: what a message adds to a mailbox or a label.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count {
    /// Messages.
    pub(crate) total: i64,
    /// Unread messages.
    pub(crate) unread: i64,
}

impl Count {
    /// One message with `flags`.
    pub(crate) fn of(flags: Flags) -> Count {
        Count { total: 1, unread: i64::from(!flags.has(Flags::SEEN)) }
    }

    /// The messages of `rows`.
    pub(crate) fn sum<'a>(rows: impl IntoIterator<Item = &'a message::Model>) -> Count {
        rows.into_iter().fold(Count::default(), |c, r| c.plus(Count::of(Flags(r.flags))))
    }

    /// Both counts added.
    pub(crate) fn plus(self, other: Count) -> Count {
        Count { total: self.total + other.total, unread: self.unread + other.unread }
    }

    /// The counts taken away instead of added.
    pub(crate) fn neg(self) -> Count {
        Count { total: -self.total, unread: -self.unread }
    }
}

/// A mailbox after [`advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advanced {
    /// Its new highest MODSEQ, given to every message the change touched there.
    pub(crate) modseq: i64,
    /// The first of the UIDs handed out; the others follow it.
    pub(crate) first_uid: i64,
}

/// Gives a mailbox a new MODSEQ, hands out `uids` new UIDs and adds `count` to its
/// counters, in one statement.
pub(crate) async fn advance<C: ConnectionTrait>(
    conn: &C,
    mailbox_id: i64,
    uids: i64,
    count: Count,
) -> Result<Advanced, MailError> {
    use mailbox::Column as M;
    let stmt = Query::update()
        .table(mailbox::Entity)
        .value(M::HighestModseq, Expr::col(M::HighestModseq).add(1))
        .value(M::UidNext, Expr::col(M::UidNext).add(uids))
        .value(M::Total, Expr::col(M::Total).add(count.total))
        .value(M::Unread, Expr::col(M::Unread).add(count.unread))
        .and_where(M::Id.eq(mailbox_id))
        .returning(Query::returning().columns([M::HighestModseq, M::UidNext]))
        .to_owned();
    let row = conn.query_one(&stmt).await?.ok_or(MailError::NotFound)?;
    let modseq: i64 = row.try_get("", "highest_modseq")?;
    let uid_next: i64 = row.try_get("", "uid_next")?;
    Ok(Advanced { modseq, first_uid: uid_next - uids })
}

/// Adds each label's count change to its counters.
pub(crate) async fn adjust_labels<C: ConnectionTrait>(conn: &C, changes: &BTreeMap<i64, Count>) -> Result<(), DbErr> {
    for (&id, &c) in changes.iter().filter(|(_, c)| **c != Count::default()) {
        label::Entity::update_many()
            .col_expr(label::Column::Total, Expr::col(label::Column::Total).add(c.total))
            .col_expr(label::Column::Unread, Expr::col(label::Column::Unread).add(c.unread))
            .filter(label::Column::Id.eq(id))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Passes each message's count change (message id, change) on to the labels it carries.
pub(crate) async fn adjust_labels_of<C: ConnectionTrait>(conn: &C, changes: &[(i64, Count)]) -> Result<(), DbErr> {
    let by_message: HashMap<i64, Count> = changes.iter().copied().collect();
    let ids: Vec<i64> = by_message.keys().copied().collect();
    let mut per_label: BTreeMap<i64, Count> = BTreeMap::new();
    for chunk in ids.chunks(CHUNK) {
        let links = message_label::Entity::find()
            .filter(message_label::Column::MessageId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        for link in links {
            let c = by_message.get(&link.message_id).copied().unwrap_or_default();
            let entry = per_label.entry(link.label_id).or_default();
            *entry = entry.plus(c);
        }
    }
    adjust_labels(conn, &per_label).await
}

/// Writes the removal of `uids` from a mailbox at `modseq` to the expunge log.
pub(crate) async fn log_expunged<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    mailbox_id: i64,
    modseq: i64,
    uids: &[i64],
) -> Result<(), DbErr> {
    for chunk in uids.chunks(CHUNK) {
        let rows = chunk.iter().map(|&uid| expunged::ActiveModel {
            mailbox_id: Set(mailbox_id),
            uid: Set(uid),
            modseq: Set(modseq),
            user_id: Set(user_id),
        });
        expunged::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(())
}

/// Sets the MODSEQ of the messages `ids` (a change that is not a move).
pub(crate) async fn stamp<C: ConnectionTrait>(conn: &C, ids: &[i64], modseq: i64) -> Result<(), DbErr> {
    for chunk in ids.chunks(CHUNK) {
        message::Entity::update_many()
            .col_expr(message::Column::Modseq, Expr::value(modseq))
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// `items` grouped by mailbox, in mailbox order, each group in the order given.
pub(crate) fn by_mailbox<T>(items: Vec<T>, mailbox_of: impl Fn(&T) -> i64) -> BTreeMap<i64, Vec<T>> {
    let mut groups: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    for item in items {
        groups.entry(mailbox_of(&item)).or_default().push(item);
    }
    groups
}

pub(crate) use crate::platform::db::begin_write;

/// A UID that left a mailbox, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExpungedUid {
    /// The UID it had there.
    pub uid: i64,
    /// The mailbox's MODSEQ of the removal.
    pub modseq: i64,
}

/// A message whose MODSEQ is past the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangedUid {
    /// The message id.
    pub id: i64,
    /// Its UID in the mailbox.
    pub uid: i64,
    /// Its MODSEQ.
    pub modseq: i64,
}

/// What changed in a mailbox after a MODSEQ (RFC 7162 CONDSTORE/QRESYNC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MailboxChanges {
    /// The mailbox.
    pub mailbox_id: i64,
    /// Its highest MODSEQ now: ask again with it as `since`.
    pub highest_modseq: i64,
    /// Messages added or changed after `since`, by UID.
    pub changed: Vec<ChangedUid>,
    /// UIDs removed after `since`, by UID.
    pub expunged: Vec<ExpungedUid>,
}

impl MailService {
    /// Publishes `events` on `txn`, commits it, and wakes the bus: the one way a write
    /// transaction of the mail domain ends.
    pub(crate) async fn finish(&self, txn: DatabaseTransaction, events: &[Event]) -> Result<(), MailError> {
        Bus::publish_many(&txn, events).await?;
        txn.commit().await?;
        if !events.is_empty() {
            self.inner.bus.wake();
        }
        Ok(())
    }

    /// The UIDs that left the user's mailbox after MODSEQ `since` (deleted or moved
    /// away), by UID: what QRESYNC reports as `VANISHED (EARLIER)`.
    pub async fn expunged_since(
        &self,
        user_id: i64,
        mailbox_id: i64,
        since: i64,
    ) -> Result<Vec<ExpungedUid>, MailError> {
        self.own_mailbox(user_id, mailbox_id).await?;
        self.expunged_rows(mailbox_id, since).await
    }

    /// The expunge log of a mailbox after MODSEQ `since`, by UID (ownership checked by the
    /// caller).
    async fn expunged_rows(&self, mailbox_id: i64, since: i64) -> Result<Vec<ExpungedUid>, MailError> {
        let rows: Vec<(i64, i64)> = expunged::Entity::find()
            .select_only()
            .columns([expunged::Column::Uid, expunged::Column::Modseq])
            .filter(expunged::Column::MailboxId.eq(mailbox_id))
            .filter(expunged::Column::Modseq.gt(since))
            .order_by_asc(expunged::Column::Uid)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|(uid, modseq)| ExpungedUid { uid, modseq }).collect())
    }

    /// Everything that changed in the user's mailbox after MODSEQ `since`.
    pub async fn changes_since(&self, user_id: i64, mailbox_id: i64, since: i64) -> Result<MailboxChanges, MailError> {
        let mailbox = self.own_mailbox(user_id, mailbox_id).await?;
        let changed: Vec<(i64, i64, i64)> = message::Entity::find()
            .select_only()
            .columns([message::Column::Id, message::Column::Uid, message::Column::Modseq])
            .filter(message::Column::MailboxId.eq(mailbox_id))
            .filter(message::Column::Modseq.gt(since))
            .order_by_asc(message::Column::Uid)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(MailboxChanges {
            mailbox_id,
            highest_modseq: mailbox.highest_modseq,
            changed: changed.into_iter().map(|(id, uid, modseq)| ChangedUid { id, uid, modseq }).collect(),
            expunged: self.expunged_rows(mailbox_id, since).await?,
        })
    }
}
