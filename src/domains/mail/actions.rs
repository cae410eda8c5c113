//! The write side of the store besides delivery: flags (read, star, important), moving
//! between mailboxes (archive, trash, spam, back), deleting for good, emptying Trash, and
//! the user's own mailboxes. Each action is one transaction that reads the rows it
//! changes under the write lock, gives every touched mailbox a new MODSEQ (RFC 7162) and
//! the changed messages that MODSEQ, keeps the counters, logs removals in the expunge
//! log, and publishes its change events (see [`super::changes`]). A move gives new UIDs
//! in the target mailbox, as IMAP expects.

use std::collections::BTreeMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde::Deserialize;

use super::changes::{CHUNK, Count, adjust_labels_of, advance, begin_write, by_mailbox, log_expunged};
use super::entities::{mailbox, message};
use super::store::{Target, blob_owner, resolve_mailbox};
use super::{Flags, MailError, MailService, Role};
use crate::events::{Event, FlaggedMessage, MessageUid, MovedMessage};
use crate::platform::blobs::BlobId;
use crate::platform::db::now;

/// The most messages one bulk action touches.
pub const MAX_BULK: usize = 1000;

/// Flag changes; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
pub struct FlagChange {
    /// Read.
    pub seen: Option<bool>,
    /// Starred.
    pub starred: Option<bool>,
    /// Important.
    pub important: Option<bool>,
    /// Answered.
    pub answered: Option<bool>,
}

impl FlagChange {
    fn apply(&self, flags: Flags) -> Flags {
        let mut f = flags;
        for (change, bit) in [
            (self.seen, Flags::SEEN),
            (self.starred, Flags::FLAGGED),
            (self.important, Flags::IMPORTANT),
            (self.answered, Flags::ANSWERED),
        ] {
            if let Some(on) = change {
                f = f.with(bit, on);
            }
        }
        f
    }
}

/// Refuses more than [`MAX_BULK`] ids.
pub fn check_bulk(ids: &[i64]) -> Result<(), MailError> {
    if ids.len() > MAX_BULK {
        return Err(MailError::Invalid(format!("at most {MAX_BULK} messages at once")));
    }
    Ok(())
}

/// The user's messages among `ids`; refuses the whole set if one is not theirs.
pub(crate) async fn owned<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    ids: &[i64],
) -> Result<Vec<message::Model>, MailError> {
    let mut wanted = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut rows = Vec::with_capacity(wanted.len());
    for chunk in wanted.chunks(CHUNK) {
        let found = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        rows.extend(found);
    }
    if rows.len() != wanted.len() {
        return Err(MailError::NotFound);
    }
    rows.sort_by_key(|r| (r.mailbox_id, r.uid));
    Ok(rows)
}

/// The user's mailbox `id`.
pub(crate) async fn mailbox_of<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    id: i64,
) -> Result<mailbox::Model, MailError> {
    mailbox::Entity::find_by_id(id)
        .filter(mailbox::Column::UserId.eq(user_id))
        .one(conn)
        .await?
        .ok_or(MailError::NotFound)
}

/// The user's mailbox called `name` (INBOX case-insensitively, RFC 9051 §5.1).
async fn named<C: ConnectionTrait>(conn: &C, user_id: i64, name: &str) -> Result<Option<mailbox::Model>, MailError> {
    let name = if name.eq_ignore_ascii_case("INBOX") { "INBOX" } else { name };
    Ok(mailbox::Entity::find()
        .filter(mailbox::Column::UserId.eq(user_id))
        .filter(mailbox::Column::Name.eq(name))
        .one(conn)
        .await?)
}

/// Changes the flags of `rows` in `txn` to what `change` makes of each; returns the
/// events to publish.
pub(super) async fn flag_rows(
    txn: &DatabaseTransaction,
    user_id: i64,
    rows: Vec<message::Model>,
    change: impl Fn(Flags) -> Flags,
) -> Result<Vec<Event>, MailError> {
    let changed: Vec<(message::Model, Flags)> = rows
        .into_iter()
        .filter_map(|r| {
            let flags = change(Flags(r.flags));
            (flags.0 != r.flags).then_some((r, flags))
        })
        .collect();
    let unread_change = |(r, f): &(message::Model, Flags)| Count::of(*f).unread - Count::of(Flags(r.flags)).unread;
    let for_labels: Vec<(i64, Count)> = changed
        .iter()
        .map(|c| (c.0.id, Count { total: 0, unread: unread_change(c) }))
        .filter(|(_, c)| c.unread != 0)
        .collect();
    adjust_labels_of(txn, &for_labels).await?;
    let mut events = Vec::new();
    for (mailbox_id, group) in by_mailbox(changed, |(r, _)| r.mailbox_id) {
        let unread = group.iter().map(unread_change).sum();
        let at = advance(txn, mailbox_id, 0, Count { total: 0, unread }).await?;
        let mut by_flags: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (row, flags) in &group {
            by_flags.entry(flags.0).or_default().push(row.id);
        }
        for (flags, ids) in by_flags {
            for chunk in ids.chunks(CHUNK) {
                message::Entity::update_many()
                    .col_expr(message::Column::Flags, Expr::value(flags))
                    .col_expr(message::Column::Modseq, Expr::value(at.modseq))
                    .filter(message::Column::Id.is_in(chunk.iter().copied()))
                    .exec(txn)
                    .await?;
            }
        }
        let messages = group.iter().map(|(r, f)| FlaggedMessage { message_id: r.id, uid: r.uid, flags: f.0 }).collect();
        events.push(Event::MailFlagsChanged { user_id, mailbox_id, modseq: at.modseq, messages });
    }
    Ok(events)
}

/// Moves `rows` to mailbox `to` in `txn` (new UIDs there; the old ones go to the source
/// mailbox's expunge log); returns the events to publish.
async fn move_rows(
    txn: &DatabaseTransaction,
    user_id: i64,
    rows: Vec<message::Model>,
    to: i64,
) -> Result<Vec<Event>, MailError> {
    let rows: Vec<message::Model> = rows.into_iter().filter(|r| r.mailbox_id != to).collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let target = advance(txn, to, rows.len() as i64, Count::sum(&rows)).await?;
    let mut next_uid = target.first_uid;
    let mut events = Vec::new();
    for (from, group) in by_mailbox(rows, |r| r.mailbox_id) {
        let source = advance(txn, from, 0, Count::sum(&group).neg()).await?;
        let uids: Vec<i64> = group.iter().map(|r| r.uid).collect();
        log_expunged(txn, user_id, from, source.modseq, &uids).await?;
        let mut moved = Vec::with_capacity(group.len());
        for row in group {
            message::Entity::update_many()
                .col_expr(message::Column::MailboxId, Expr::value(to))
                .col_expr(message::Column::Uid, Expr::value(next_uid))
                .col_expr(message::Column::Modseq, Expr::value(target.modseq))
                .filter(message::Column::Id.eq(row.id))
                .exec(txn)
                .await?;
            moved.push(MovedMessage { message_id: row.id, from_uid: row.uid, to_uid: next_uid });
            next_uid += 1;
        }
        events.push(Event::MailMoved {
            user_id,
            from_mailbox_id: from,
            from_modseq: source.modseq,
            to_mailbox_id: to,
            modseq: target.modseq,
            messages: moved,
        });
    }
    Ok(events)
}

/// Deletes `rows` in `txn`, logging each in its mailbox's expunge log; returns the
/// events to publish.
async fn remove_rows(
    txn: &DatabaseTransaction,
    user_id: i64,
    rows: &[message::Model],
) -> Result<Vec<Event>, MailError> {
    let for_labels: Vec<(i64, Count)> = rows.iter().map(|r| (r.id, Count::of(Flags(r.flags)).neg())).collect();
    adjust_labels_of(txn, &for_labels).await?;
    let mut events = Vec::new();
    for (mailbox_id, group) in by_mailbox(rows.iter().collect(), |r| r.mailbox_id) {
        let at = advance(txn, mailbox_id, 0, Count::sum(group.iter().copied()).neg()).await?;
        let uids: Vec<i64> = group.iter().map(|r| r.uid).collect();
        log_expunged(txn, user_id, mailbox_id, at.modseq, &uids).await?;
        let messages = group.iter().map(|r| MessageUid { message_id: r.id, uid: r.uid }).collect();
        events.push(Event::MailExpunged { user_id, mailbox_id, modseq: at.modseq, messages });
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    for chunk in ids.chunks(CHUNK) {
        message::Entity::delete_many().filter(message::Column::Id.is_in(chunk.iter().copied())).exec(txn).await?;
    }
    Ok(events)
}

impl MailService {
    /// The ids of every message of the user's thread.
    pub async fn thread_ids(&self, user_id: i64, thread_id: i64) -> Result<Vec<i64>, MailError> {
        let ids: Vec<i64> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::ThreadId.eq(thread_id))
            .into_tuple()
            .all(self.db())
            .await?;
        if ids.is_empty() { Err(MailError::NotFound) } else { Ok(ids) }
    }

    /// Changes flags of the user's messages.
    pub async fn set_flags(&self, user_id: i64, ids: &[i64], change: FlagChange) -> Result<(), MailError> {
        check_bulk(ids)?;
        let txn = begin_write(self.db()).await?;
        let rows = owned(&txn, user_id, ids).await?;
        let events = flag_rows(&txn, user_id, rows, |f| change.apply(f)).await?;
        self.finish(txn, &events).await
    }

    /// Moves the user's messages to `target` (new UIDs there).
    pub async fn move_to(&self, user_id: i64, ids: &[i64], target: Target) -> Result<(), MailError> {
        check_bulk(ids)?;
        let txn = begin_write(self.db()).await?;
        let rows = owned(&txn, user_id, ids).await?;
        let to = resolve_mailbox(&txn, user_id, &target).await?;
        let events = move_rows(&txn, user_id, rows, to).await?;
        self.finish(txn, &events).await
    }

    /// Deletes the user's messages for good; their raw blobs go once nobody holds them.
    pub async fn delete_forever(&self, user_id: i64, ids: &[i64]) -> Result<usize, MailError> {
        check_bulk(ids)?;
        let txn = begin_write(self.db()).await?;
        let rows = owned(&txn, user_id, ids).await?;
        self.remove(txn, user_id, rows).await
    }

    /// Deletes everything in the user's Trash; returns how many.
    pub async fn empty_trash(&self, user_id: i64) -> Result<usize, MailError> {
        let txn = begin_write(self.db()).await?;
        let trash = resolve_mailbox(&txn, user_id, &Target::Role(Role::Trash)).await?;
        let rows = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::MailboxId.eq(trash))
            .all(&txn)
            .await?;
        self.remove(txn, user_id, rows).await
    }

    /// Deletes `rows` in `txn`, commits, then lets go of their blobs.
    pub(super) async fn remove(
        &self,
        txn: DatabaseTransaction,
        user_id: i64,
        rows: Vec<message::Model>,
    ) -> Result<usize, MailError> {
        let events = remove_rows(&txn, user_id, &rows).await?;
        self.finish(txn, &events).await?;
        self.limits().quota.forget(user_id);
        for row in &rows {
            let Ok(id) = BlobId::try_from(row.blob_id.clone()) else { continue };
            if let Err(e) = self.inner.blobs.release(&id, &blob_owner(row.id)).await {
                tracing::warn!(message = row.id, error = %e, "releasing a deleted message's blob failed");
            }
        }
        Ok(rows.len())
    }

    /// Creates a mailbox of the user's own.
    pub async fn create_mailbox(&self, user_id: i64, name: &str) -> Result<i64, MailError> {
        let name = valid_mailbox_name(name)?;
        let txn = begin_write(self.db()).await?;
        super::store::ensure_system_mailboxes(&txn, user_id).await?;
        if named(&txn, user_id, &name).await?.is_some() {
            return Err(MailError::Exists);
        }
        let row = super::store::new_mailbox(user_id, &name, None, now()).insert(&txn).await?;
        self.finish(txn, &[Event::MailboxCreated { user_id, mailbox_id: row.id, name }]).await?;
        Ok(row.id)
    }

    /// Renames a mailbox of the user's own (system mailboxes keep their names).
    pub async fn rename_mailbox(&self, user_id: i64, id: i64, name: &str) -> Result<(), MailError> {
        let txn = begin_write(self.db()).await?;
        let row = mailbox_of(&txn, user_id, id).await?;
        if row.role.is_some() {
            return Err(MailError::Invalid("system mailboxes cannot be renamed".into()));
        }
        let name = valid_mailbox_name(name)?;
        if named(&txn, user_id, &name).await?.is_some_and(|m| m.id != id) {
            return Err(MailError::Exists);
        }
        let old_name = row.name.clone();
        let mut active: mailbox::ActiveModel = row.into();
        active.name = Set(name.clone());
        active.update(&txn).await?;
        self.finish(txn, &[Event::MailboxRenamed { user_id, mailbox_id: id, old_name, name }]).await
    }

    /// Deletes a mailbox of the user's own and its expunge log; its messages move to
    /// Trash first, in the same transaction.
    pub async fn delete_mailbox(&self, user_id: i64, id: i64) -> Result<(), MailError> {
        let txn = begin_write(self.db()).await?;
        let row = mailbox_of(&txn, user_id, id).await?;
        if row.role.is_some() {
            return Err(MailError::Invalid("system mailboxes cannot be deleted".into()));
        }
        let rows = message::Entity::find().filter(message::Column::MailboxId.eq(id)).all(&txn).await?;
        let trash = resolve_mailbox(&txn, user_id, &Target::Role(Role::Trash)).await?;
        let mut events = move_rows(&txn, user_id, rows, trash).await?;
        // Its expunge log goes with it (ON DELETE CASCADE).
        mailbox::Entity::delete_by_id(id).exec(&txn).await?;
        events.push(Event::MailboxDeleted { user_id, mailbox_id: id, name: row.name });
        self.finish(txn, &events).await
    }

    /// The user's mailbox called `name` (INBOX case-insensitively, RFC 9051 §5.1).
    pub async fn mailbox_named(&self, user_id: i64, name: &str) -> Result<Option<mailbox::Model>, MailError> {
        named(self.db(), user_id, name).await
    }
}

fn valid_mailbox_name(name: &str) -> Result<String, MailError> {
    let name = name.trim().trim_matches('/');
    let bad = name.is_empty()
        || name.len() > 200
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%')
        || name.split('/').any(|p| p.trim().is_empty())
        || name.eq_ignore_ascii_case("INBOX")
        || Role::ALL.iter().any(|r| r.mailbox_name().eq_ignore_ascii_case(name));
    if bad {
        return Err(MailError::Invalid(format!("{name:?} is not a name a new mailbox can have")));
    }
    Ok(name.to_owned())
}
