//! What the book learns from sent mail and gives back to the compose box: counting the
//! recipients of each sent message once (adding unknown ones as contacts), and suggesting
//! addresses and groups for a typed prefix, most used and most recent first.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::entities::{address, contact, group, member, noted};
use super::{ContactsError, ContactsService, begin_write, fields, insert_address, insert_contact};
use crate::platform::db::now;

/// Most suggestions of each kind one call returns.
pub const MAX_SUGGESTIONS: u64 = 50;

/// An address offered for a typed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSuggestion {
    /// The contact it belongs to.
    pub contact_id: i64,
    /// The contact's name (may be empty).
    pub name: String,
    /// The address as stored.
    pub address: String,
    /// Messages sent to it.
    pub use_count: i64,
    /// Unix seconds of the last one; 0 = never.
    pub last_used_at: i64,
}

/// A group offered for a typed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSuggestion {
    /// Group id.
    pub group_id: i64,
    /// Its name, to be typed as a recipient.
    pub name: String,
    /// How many contacts it holds.
    pub members: u64,
}

/// What the compose box offers for a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suggestions {
    /// Addresses, by use count, then last use, then name.
    pub addresses: Vec<AddressSuggestion>,
    /// Groups, by name.
    pub groups: Vec<GroupSuggestion>,
}

/// What [`ContactsService::note_recipients`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Noted {
    /// The message had been noted before: nothing changed.
    pub already_noted: bool,
    /// New contacts made for unknown recipients.
    pub added: usize,
    /// Known addresses whose use count went up.
    pub counted: usize,
    /// Recipients that are no valid address (ignored).
    pub ignored: usize,
}

impl ContactsService {
    /// Addresses whose contact has a name word starting with `prefix`, or which start with
    /// it (ignoring case), most used first, then most recently used, then by name; and the
    /// user's groups with a name word starting with it. At most `limit` of each (1 to
    /// [`MAX_SUGGESTIONS`]). An empty prefix offers the most used addresses and every group.
    pub async fn autocomplete(&self, user_id: i64, prefix: &str, limit: u64) -> Result<Suggestions, ContactsError> {
        let limit = limit.clamp(1, MAX_SUGGESTIONS);
        let typed = prefix.trim();
        let lc = typed.to_lowercase();
        let mut select = address::Entity::find().find_also_related(contact::Entity);
        select = select.filter(address::Column::UserId.eq(user_id));
        if !typed.is_empty() {
            let by_address =
                address::Column::AddressLc.like(LikeExpr::new(format!("{}%", fields::like_escape(&lc))).escape('\\'));
            let mut cond = Condition::any().add(by_address);
            let name = fields::name_prefix(typed);
            if !name.is_empty() {
                cond = cond.add(contact::Column::NameKey.like(format!("% {name}%")));
            }
            select = select.filter(cond);
        }
        let rows = select
            .order_by_desc(address::Column::UseCount)
            .order_by_desc(address::Column::LastUsedAt)
            .order_by_asc(contact::Column::SortKey)
            .order_by_asc(address::Column::AddressLc)
            .limit(limit)
            .all(self.db())
            .await?;
        let addresses = rows
            .into_iter()
            .map(|(a, c)| AddressSuggestion {
                contact_id: a.contact_id,
                name: c.map(|c| c.name).unwrap_or_default(),
                address: a.address,
                use_count: a.use_count,
                last_used_at: a.last_used_at,
            })
            .collect();
        Ok(Suggestions { addresses, groups: self.suggest_groups(user_id, &lc, limit).await? })
    }

    async fn suggest_groups(&self, user_id: i64, lc: &str, limit: u64) -> Result<Vec<GroupSuggestion>, ContactsError> {
        let mut select = group::Entity::find().filter(group::Column::UserId.eq(user_id));
        if !lc.is_empty() {
            let p = fields::like_escape(lc);
            select = select.filter(
                Condition::any()
                    .add(group::Column::NameLc.like(LikeExpr::new(format!("{p}%")).escape('\\')))
                    .add(group::Column::NameLc.like(LikeExpr::new(format!("% {p}%")).escape('\\'))),
            );
        }
        let rows = select.order_by_asc(group::Column::NameLc).limit(limit).all(self.db()).await?;
        let ids: Vec<i64> = rows.iter().map(|g| g.id).collect();
        let counts: HashMap<i64, i64> = member::Entity::find()
            .select_only()
            .column(member::Column::GroupId)
            .column_as(member::Column::ContactId.count(), "n")
            .filter(member::Column::GroupId.is_in(ids))
            .group_by(member::Column::GroupId)
            .into_tuple::<(i64, i64)>()
            .all(self.db())
            .await?
            .into_iter()
            .collect();
        Ok(rows
            .into_iter()
            .map(|g| GroupSuggestion {
                members: u64::try_from(counts.get(&g.id).copied().unwrap_or(0)).unwrap_or(0),
                group_id: g.id,
                name: g.name,
            })
            .collect())
    }

    /// Learns from a sent message: every recipient (`addr` or `Name <addr>`) already in
    /// the book has its use count raised and its last use set to now; an unknown one
    /// becomes a new contact (named from `Name <addr>` when given). Each message counts
    /// once per user: a repeated call with the same `message_id` (a redelivered event)
    /// changes nothing. Recipients that are no valid address are ignored.
    pub async fn note_recipients(
        &self,
        user_id: i64,
        message_id: i64,
        recipients: &[String],
    ) -> Result<Noted, ContactsError> {
        self.note_recipients_at(user_id, message_id, recipients, now()).await
    }

    /// [`ContactsService::note_recipients`] at a given time (Unix seconds).
    pub(crate) async fn note_recipients_at(
        &self,
        user_id: i64,
        message_id: i64,
        recipients: &[String],
        at: i64,
    ) -> Result<Noted, ContactsError> {
        // The marker is the first write, so the counting and the marker commit together.
        let txn = begin_write(self.db()).await?;
        let marker = noted::ActiveModel { user_id: Set(user_id), message_id: Set(message_id), noted_at: Set(at) };
        let inserted = noted::Entity::insert(marker).on_conflict_do_nothing().exec_without_returning(&txn).await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            txn.rollback().await?;
            return Ok(Noted { already_noted: true, ..Default::default() });
        }
        let mut done = Noted::default();
        let mut seen = HashSet::new();
        for raw in recipients {
            let Ok((name, addr)) = fields::recipient(raw) else {
                done.ignored += 1;
                continue;
            };
            if !seen.insert(addr.lc.clone()) {
                continue;
            }
            let bumped = address::Entity::update_many()
                .col_expr(address::Column::UseCount, Expr::col(address::Column::UseCount).add(1))
                .col_expr(address::Column::LastUsedAt, Expr::value(at))
                .filter(address::Column::UserId.eq(user_id))
                .filter(address::Column::AddressLc.eq(addr.lc.as_str()))
                .exec(&txn)
                .await?;
            if bumped.rows_affected > 0 {
                done.counted += 1;
                continue;
            }
            let name = name.unwrap_or_default();
            let id = insert_contact(&txn, user_id, &name, "", "", &addr.lc, at).await?;
            insert_address(&txn, user_id, id, &addr, 0, 1, at).await?;
            done.added += 1;
        }
        txn.commit().await?;
        if done.added > 0 {
            tracing::debug!(user_id, message_id, added = done.added, "recipients added to the contact book");
        }
        Ok(done)
    }
}
