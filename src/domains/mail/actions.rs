//! The write side of the store besides delivery: flags (read, star, important), moving
//! between mailboxes (archive, trash, spam, back), deleting for good, emptying Trash, and
//! the user's own mailboxes. Every change bumps the message's MODSEQ (RFC 7162) and a move
//! gives a new UID in the target mailbox, as IMAP expects.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde::Deserialize;

use super::entities::{mailbox, message};
use super::store::{Target, allocate_uid, blob_owner, bump_modseq, lock_for_write, resolve_mailbox};
use super::{Flags, MailError, MailService, Role};
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

impl MailService {
    /// The user's messages among `ids`; refuses the whole set if one is not theirs.
    async fn owned(&self, user_id: i64, ids: &[i64]) -> Result<Vec<message::Model>, MailError> {
        if ids.len() > MAX_BULK {
            return Err(MailError::Invalid(format!("at most {MAX_BULK} messages at once")));
        }
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let rows = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::Id.is_in(wanted.iter().copied()))
            .all(self.db())
            .await?;
        if rows.len() != wanted.len() {
            return Err(MailError::NotFound);
        }
        Ok(rows)
    }

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
        let rows = self.owned(user_id, ids).await?;
        let txn = self.db().begin().await?;
        lock_for_write(&txn).await?;
        for row in rows {
            let flags = change.apply(Flags(row.flags));
            if flags.0 == row.flags {
                continue;
            }
            let modseq = bump_modseq(&txn, row.mailbox_id).await?;
            message::Entity::update_many()
                .col_expr(message::Column::Flags, Expr::value(flags.0))
                .col_expr(message::Column::Modseq, Expr::value(modseq))
                .filter(message::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Moves the user's messages to `target` (new UIDs there).
    pub async fn move_to(&self, user_id: i64, ids: &[i64], target: Target) -> Result<(), MailError> {
        let rows = self.owned(user_id, ids).await?;
        let txn = self.db().begin().await?;
        lock_for_write(&txn).await?;
        let to = resolve_mailbox(&txn, user_id, &target).await?;
        for row in rows.into_iter().filter(|r| r.mailbox_id != to) {
            bump_modseq(&txn, row.mailbox_id).await?;
            let (uid, modseq) = allocate_uid(&txn, to).await?;
            message::Entity::update_many()
                .col_expr(message::Column::MailboxId, Expr::value(to))
                .col_expr(message::Column::Uid, Expr::value(uid))
                .col_expr(message::Column::Modseq, Expr::value(modseq))
                .filter(message::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Deletes the user's messages for good; their raw blobs go once nobody holds them.
    pub async fn delete_forever(&self, user_id: i64, ids: &[i64]) -> Result<usize, MailError> {
        let rows = self.owned(user_id, ids).await?;
        self.remove_rows(rows).await
    }

    /// Deletes everything in the user's Trash; returns how many.
    pub async fn empty_trash(&self, user_id: i64) -> Result<usize, MailError> {
        let trash = self.role_mailbox(user_id, Role::Trash).await?;
        let rows = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::MailboxId.eq(trash))
            .all(self.db())
            .await?;
        self.remove_rows(rows).await
    }

    async fn remove_rows(&self, rows: Vec<message::Model>) -> Result<usize, MailError> {
        let txn = self.db().begin().await?;
        lock_for_write(&txn).await?;
        for row in &rows {
            bump_modseq(&txn, row.mailbox_id).await?;
        }
        message::Entity::delete_many().filter(message::Column::Id.is_in(rows.iter().map(|r| r.id))).exec(&txn).await?;
        txn.commit().await?;
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
        super::store::ensure_system_mailboxes(self.db(), user_id).await?;
        if self.mailbox_named(user_id, &name).await?.is_some() {
            return Err(MailError::Exists);
        }
        let at = now();
        let row = mailbox::ActiveModel {
            id: NotSet,
            user_id: Set(user_id),
            name: Set(name),
            role: Set(None),
            uid_validity: Set(at),
            uid_next: Set(1),
            highest_modseq: Set(1),
            subscribed: Set(true),
            created_at: Set(at),
        }
        .insert(self.db())
        .await?;
        Ok(row.id)
    }

    /// Renames a mailbox of the user's own (system mailboxes keep their names).
    pub async fn rename_mailbox(&self, user_id: i64, id: i64, name: &str) -> Result<(), MailError> {
        let row = self.own_mailbox(user_id, id).await?;
        if row.role.is_some() {
            return Err(MailError::Invalid("system mailboxes cannot be renamed".into()));
        }
        let name = valid_mailbox_name(name)?;
        if self.mailbox_named(user_id, &name).await?.is_some_and(|m| m.id != id) {
            return Err(MailError::Exists);
        }
        let mut active: mailbox::ActiveModel = row.into();
        active.name = Set(name);
        active.update(self.db()).await?;
        Ok(())
    }

    /// Deletes a mailbox of the user's own; its messages move to Trash first.
    pub async fn delete_mailbox(&self, user_id: i64, id: i64) -> Result<(), MailError> {
        let row = self.own_mailbox(user_id, id).await?;
        if row.role.is_some() {
            return Err(MailError::Invalid("system mailboxes cannot be deleted".into()));
        }
        let ids: Vec<i64> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::MailboxId.eq(id))
            .into_tuple()
            .all(self.db())
            .await?;
        for chunk in ids.chunks(MAX_BULK) {
            self.move_to(user_id, chunk, Target::Role(Role::Trash)).await?;
        }
        mailbox::Entity::delete_by_id(id).exec(self.db()).await?;
        Ok(())
    }

    /// The user's mailbox called `name` (INBOX case-insensitively, RFC 9051 §5.1).
    pub async fn mailbox_named(&self, user_id: i64, name: &str) -> Result<Option<mailbox::Model>, MailError> {
        let name = if name.eq_ignore_ascii_case("INBOX") { "INBOX" } else { name };
        Ok(mailbox::Entity::find()
            .filter(mailbox::Column::UserId.eq(user_id))
            .filter(mailbox::Column::Name.eq(name))
            .one(self.db())
            .await?)
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
