//! Gmail-style labels, part of the mail store: a user's labels (name, colour, counters)
//! and which messages carry them, many-to-many. Starred and important are not labels here
//! but message flags (`\Flagged`, `$Important`) so IMAP sees them. Putting a label on or
//! taking it off is a change of the message like a flag change: it gets a new MODSEQ,
//! the label's counters follow, and a `MailLabelsChanged` event is published in the same
//! transaction (see [`super::changes`]).

use std::collections::{BTreeMap, HashSet};

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;

use super::actions::{check_bulk, owned};
use super::changes::{CHUNK, Count, adjust_labels, advance, begin_write, by_mailbox, stamp};
use super::entities::{label, message, message_label};
use super::{MailError, MailService};
use crate::events::{Event, MessageUid};
use crate::platform::db::now;

/// The longest label name.
pub const MAX_NAME: usize = 100;

/// A label with its counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LabelInfo {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// CSS colour.
    pub color: Option<String>,
    /// Messages carrying it.
    pub total: i64,
    /// Unread messages carrying it.
    pub unread: i64,
}

impl From<label::Model> for LabelInfo {
    fn from(l: label::Model) -> Self {
        LabelInfo { id: l.id, name: l.name, color: l.color, total: l.total, unread: l.unread }
    }
}

/// The user's label `id`.
pub(crate) async fn own_label<C: ConnectionTrait>(conn: &C, user_id: i64, id: i64) -> Result<label::Model, MailError> {
    label::Entity::find_by_id(id).filter(label::Column::UserId.eq(user_id)).one(conn).await?.ok_or(MailError::NotFound)
}

/// The id of the user's label `name`, created when missing.
pub(crate) async fn ensure_label<C: ConnectionTrait>(conn: &C, user_id: i64, name: &str) -> Result<i64, DbErr> {
    let find = || {
        label::Entity::find().filter(label::Column::UserId.eq(user_id)).filter(label::Column::Name.eq(name)).one(conn)
    };
    if let Some(l) = find().await? {
        return Ok(l.id);
    }
    label::Entity::insert(new_label(user_id, name.to_owned(), None))
        .on_conflict_do_nothing_on([label::Column::UserId, label::Column::Name])
        .exec(conn)
        .await?;
    find().await?.map(|l| l.id).ok_or_else(|| DbErr::RecordNotFound(format!("label {name}")))
}

fn new_label(user_id: i64, name: String, color: Option<String>) -> label::ActiveModel {
    label::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(name),
        color: Set(color),
        created_at: Set(now()),
        total: Set(0),
        unread: Set(0),
    }
}

/// Puts label `label_id` on `rows` (or with `on: false` takes it off) in `txn`; returns
/// the events to publish.
async fn label_rows(
    txn: &DatabaseTransaction,
    user_id: i64,
    label_id: i64,
    rows: Vec<message::Model>,
    on: bool,
) -> Result<Vec<Event>, MailError> {
    let mut carrying = HashSet::new();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    for chunk in ids.chunks(CHUNK) {
        let found: Vec<i64> = message_label::Entity::find()
            .select_only()
            .column(message_label::Column::MessageId)
            .filter(message_label::Column::LabelId.eq(label_id))
            .filter(message_label::Column::MessageId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(txn)
            .await?;
        carrying.extend(found);
    }
    let changed: Vec<message::Model> = rows.into_iter().filter(|r| carrying.contains(&r.id) != on).collect();
    let changed_ids: Vec<i64> = changed.iter().map(|r| r.id).collect();
    for chunk in changed_ids.chunks(CHUNK) {
        if on {
            let links =
                chunk.iter().map(|&m| message_label::ActiveModel { message_id: Set(m), label_id: Set(label_id) });
            message_label::Entity::insert_many(links).exec_without_returning(txn).await?;
        } else {
            message_label::Entity::delete_many()
                .filter(message_label::Column::LabelId.eq(label_id))
                .filter(message_label::Column::MessageId.is_in(chunk.iter().copied()))
                .exec(txn)
                .await?;
        }
    }
    let count = Count::sum(&changed);
    adjust_labels(txn, &BTreeMap::from([(label_id, if on { count } else { count.neg() })])).await?;
    let mut events = Vec::new();
    for (mailbox_id, group) in by_mailbox(changed, |r| r.mailbox_id) {
        let at = advance(txn, mailbox_id, 0, Count::default()).await?;
        stamp(txn, &group.iter().map(|r| r.id).collect::<Vec<_>>(), at.modseq).await?;
        let messages = group.iter().map(|r| MessageUid { message_id: r.id, uid: r.uid }).collect();
        events.push(Event::MailLabelsChanged { user_id, mailbox_id, modseq: at.modseq, label_id, added: on, messages });
    }
    Ok(events)
}

impl MailService {
    /// The user's labels by name, with their counters.
    pub async fn labels(&self, user_id: i64) -> Result<Vec<LabelInfo>, MailError> {
        let rows = label::Entity::find()
            .filter(label::Column::UserId.eq(user_id))
            .order_by_asc(label::Column::Name)
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(LabelInfo::from).collect())
    }

    /// Creates a label.
    pub async fn create_label(&self, user_id: i64, name: &str, color: Option<&str>) -> Result<LabelInfo, MailError> {
        let name = valid_name(name)?;
        let color = color.map(valid_color).transpose()?;
        let res = label::Entity::insert(new_label(user_id, name, color))
            .on_conflict_do_nothing_on([label::Column::UserId, label::Column::Name])
            .exec_with_returning(self.db())
            .await?;
        match res {
            sea_orm::TryInsertResult::Inserted(l) => Ok(l.into()),
            _ => Err(MailError::LabelExists),
        }
    }

    /// Renames and/or recolours a label (`Some(None)` clears the colour).
    pub async fn update_label(
        &self,
        user_id: i64,
        id: i64,
        name: Option<&str>,
        color: Option<Option<&str>>,
    ) -> Result<(), MailError> {
        let row = own_label(self.db(), user_id, id).await?;
        let mut active: label::ActiveModel = row.into();
        if let Some(name) = name {
            let name = valid_name(name)?;
            let clash = label::Entity::find()
                .filter(label::Column::UserId.eq(user_id))
                .filter(label::Column::Name.eq(name.as_str()))
                .filter(label::Column::Id.ne(id))
                .one(self.db())
                .await?;
            if clash.is_some() {
                return Err(MailError::LabelExists);
            }
            active.name = Set(name);
        }
        if let Some(color) = color {
            active.color = Set(color.map(valid_color).transpose()?);
        }
        active.update(self.db()).await?;
        Ok(())
    }

    /// Deletes a label: it comes off every message (a change of each), then goes.
    pub async fn delete_label(&self, user_id: i64, id: i64) -> Result<(), MailError> {
        let txn = begin_write(self.db()).await?;
        own_label(&txn, user_id, id).await?;
        let carrying = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(
                message::Column::Id.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(message_label::Column::MessageId)
                        .from(message_label::Entity)
                        .and_where(message_label::Column::LabelId.eq(id))
                        .to_owned(),
                ),
            )
            .all(&txn)
            .await?;
        let events = label_rows(&txn, user_id, id, carrying, false).await?;
        label::Entity::delete_by_id(id).exec(&txn).await?;
        self.finish(txn, &events).await
    }

    /// Puts a label on (or with `on: false` takes it off) messages of the user; ids that
    /// are not the user's are refused as a whole.
    pub async fn set_label(&self, user_id: i64, label_id: i64, ids: &[i64], on: bool) -> Result<(), MailError> {
        check_bulk(ids)?;
        let txn = begin_write(self.db()).await?;
        own_label(&txn, user_id, label_id).await?;
        let rows = owned(&txn, user_id, ids).await?;
        let events = label_rows(&txn, user_id, label_id, rows, on).await?;
        self.finish(txn, &events).await
    }
}

fn valid_name(name: &str) -> Result<String, MailError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(MailError::Invalid(format!(
            "a label name has 1 to {MAX_NAME} characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn valid_color(color: &str) -> Result<String, MailError> {
    let c = color.trim();
    let hex =
        c.strip_prefix('#').filter(|h| (h.len() == 6 || h.len() == 3) && h.chars().all(|x| x.is_ascii_hexdigit()));
    hex.map(|_| c.to_ascii_lowercase()).ok_or_else(|| MailError::Invalid("a colour is #rgb or #rrggbb".into()))
}
