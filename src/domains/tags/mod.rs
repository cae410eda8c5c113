//! The tags domain: Gmail-style labels. A user's labels (name, colour) and which messages
//! carry them, many-to-many. Starred and important are system labels kept as message
//! flags (`\Flagged`, `$Important`) so IMAP sees them; the mail domain lists by them.

pub mod entities;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;

use crate::domains::mail::entities::message;
use crate::platform::db::{Db, now};
use entities::{label, message_label};

/// The longest label name.
pub const MAX_NAME: usize = 100;

/// Errors of the tags domain.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// No such label or message for this user.
    #[error("not found")]
    NotFound,
    /// The name or colour is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A label with that name exists.
    #[error("a label with that name exists")]
    Exists,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

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

/// The labels service.
#[derive(Clone)]
pub struct TagService {
    db: Db,
}

impl TagService {
    /// A service over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The user's labels by name, with counts.
    pub async fn list(&self, user_id: i64) -> Result<Vec<LabelInfo>, TagError> {
        let rows = label::Entity::find()
            .filter(label::Column::UserId.eq(user_id))
            .order_by_asc(label::Column::Name)
            .all(&self.db)
            .await?;
        let counts: Vec<(i64, i64, i64)> = message_label::Entity::find()
            .select_only()
            .column(message_label::Column::LabelId)
            .column_as(Expr::col((message::Entity, message::Column::Id)).count(), "total")
            .column_as(Expr::cust("SUM(CASE WHEN messages.flags & 1 = 0 THEN 1 ELSE 0 END)"), "unread")
            .join(
                sea_orm::JoinType::InnerJoin,
                message_label::Entity::belongs_to(message::Entity)
                    .from(message_label::Column::MessageId)
                    .to(message::Column::Id)
                    .into(),
            )
            .filter(message::Column::UserId.eq(user_id))
            .group_by(message_label::Column::LabelId)
            .into_tuple()
            .all(&self.db)
            .await?;
        let counts: std::collections::HashMap<i64, (i64, i64)> =
            counts.into_iter().map(|(l, t, u)| (l, (t, u))).collect();
        Ok(rows
            .into_iter()
            .map(|l| {
                let (total, unread) = counts.get(&l.id).copied().unwrap_or_default();
                LabelInfo { id: l.id, name: l.name, color: l.color, total, unread }
            })
            .collect())
    }

    /// Creates a label.
    pub async fn create(&self, user_id: i64, name: &str, color: Option<&str>) -> Result<LabelInfo, TagError> {
        let name = valid_name(name)?;
        let color = color.map(valid_color).transpose()?;
        let row = label::ActiveModel {
            id: NotSet,
            user_id: Set(user_id),
            name: Set(name.clone()),
            color: Set(color),
            created_at: Set(now()),
        };
        let res = label::Entity::insert(row)
            .on_conflict_do_nothing_on([label::Column::UserId, label::Column::Name])
            .exec_with_returning(&self.db)
            .await?;
        match res {
            sea_orm::TryInsertResult::Inserted(l) => {
                Ok(LabelInfo { id: l.id, name: l.name, color: l.color, total: 0, unread: 0 })
            }
            _ => Err(TagError::Exists),
        }
    }

    /// Renames and/or recolours a label (`Some(None)` clears the colour).
    pub async fn update(
        &self,
        user_id: i64,
        id: i64,
        name: Option<&str>,
        color: Option<Option<&str>>,
    ) -> Result<(), TagError> {
        let row = self.own(user_id, id).await?;
        let mut active: label::ActiveModel = row.into();
        if let Some(name) = name {
            let name = valid_name(name)?;
            let clash = label::Entity::find()
                .filter(label::Column::UserId.eq(user_id))
                .filter(label::Column::Name.eq(name.as_str()))
                .filter(label::Column::Id.ne(id))
                .one(&self.db)
                .await?;
            if clash.is_some() {
                return Err(TagError::Exists);
            }
            active.name = Set(name);
        }
        if let Some(color) = color {
            active.color = Set(color.map(valid_color).transpose()?);
        }
        active.update(&self.db).await?;
        Ok(())
    }

    /// Deletes a label; messages keep everything else.
    pub async fn delete(&self, user_id: i64, id: i64) -> Result<(), TagError> {
        self.own(user_id, id).await?;
        label::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(())
    }

    /// Adds (or with `on: false` removes) a label on messages of the user; ids that are not
    /// the user's are refused as a whole.
    pub async fn set(&self, user_id: i64, label_id: i64, message_ids: &[i64], on: bool) -> Result<(), TagError> {
        self.own(user_id, label_id).await?;
        let owned = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::Id.is_in(message_ids.iter().copied()))
            .into_tuple::<i64>()
            .all(&self.db)
            .await?;
        let mut wanted: Vec<i64> = message_ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if owned.len() != wanted.len() {
            return Err(TagError::NotFound);
        }
        if owned.is_empty() {
            return Ok(());
        }
        if on {
            let rows =
                owned.iter().map(|&m| message_label::ActiveModel { message_id: Set(m), label_id: Set(label_id) });
            message_label::Entity::insert_many(rows).on_conflict_do_nothing().exec(&self.db).await?;
        } else {
            message_label::Entity::delete_many()
                .filter(message_label::Column::LabelId.eq(label_id))
                .filter(message_label::Column::MessageId.is_in(owned))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    async fn own(&self, user_id: i64, id: i64) -> Result<label::Model, TagError> {
        label::Entity::find_by_id(id)
            .filter(label::Column::UserId.eq(user_id))
            .one(&self.db)
            .await?
            .ok_or(TagError::NotFound)
    }
}

fn valid_name(name: &str) -> Result<String, TagError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(TagError::Invalid(format!(
            "a label name has 1 to {MAX_NAME} characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn valid_color(color: &str) -> Result<String, TagError> {
    let c = color.trim();
    let hex =
        c.strip_prefix('#').filter(|h| (h.len() == 6 || h.len() == 3) && h.chars().all(|x| x.is_ascii_hexdigit()));
    hex.map(|_| c.to_ascii_lowercase()).ok_or_else(|| TagError::Invalid("a colour is #rgb or #rrggbb".into()))
}
