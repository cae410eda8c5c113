//! Contact groups: create, rename, delete, set their members, and expand group names typed
//! as recipients into the members' primary addresses. Group names are unique per user,
//! ignoring case, and never look like an address (see [`fields::group_name`]).

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
};

use super::entities::{address, contact, group, member};
use super::{ContactsError, ContactsService, begin_write, fields};
use crate::platform::db::now;

/// Most contacts one group may hold.
pub const MAX_MEMBERS: usize = 10_000;

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group id.
    pub id: i64,
    /// Name as given.
    pub name: String,
    /// Its contacts' ids, ascending.
    pub member_ids: Vec<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

fn name_conflict(e: DbErr, name: &str) -> ContactsError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => ContactsError::GroupNameTaken(name.to_owned()),
        _ => ContactsError::Db(e),
    }
}

impl ContactsService {
    /// The user's groups, sorted by name.
    pub async fn groups(&self, user_id: i64) -> Result<Vec<Group>, ContactsError> {
        let rows = group::Entity::find()
            .filter(group::Column::UserId.eq(user_id))
            .order_by_asc(group::Column::NameLc)
            .all(self.db())
            .await?;
        let ids: Vec<i64> = rows.iter().map(|g| g.id).collect();
        let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
        for chunk in ids.chunks(super::IN_CHUNK) {
            let ms = member::Entity::find()
                .filter(member::Column::GroupId.is_in(chunk.to_vec()))
                .order_by_asc(member::Column::ContactId)
                .all(self.db())
                .await?;
            for m in ms {
                members.entry(m.group_id).or_default().push(m.contact_id);
            }
        }
        Ok(rows
            .into_iter()
            .map(|g| Group {
                member_ids: members.remove(&g.id).unwrap_or_default(),
                id: g.id,
                name: g.name,
                created_at: g.created_at,
                updated_at: g.updated_at,
            })
            .collect())
    }

    /// One group of the user.
    pub async fn group(&self, user_id: i64, id: i64) -> Result<Group, ContactsError> {
        load_group(self.db(), user_id, id).await
    }

    /// Creates a group holding `members` (contact ids of the user).
    pub async fn create_group(&self, user_id: i64, name: &str, members: &[i64]) -> Result<Group, ContactsError> {
        let (name, lc) = fields::group_name(name).map_err(ContactsError::Invalid)?;
        let members = distinct(members)?;
        let txn = begin_write(self.db()).await?;
        check_contacts(&txn, user_id, &members).await?;
        let id = insert_group(&txn, user_id, &name, &lc).await?;
        add_members(&txn, id, &members).await?;
        let g = load_group(&txn, user_id, id).await?;
        txn.commit().await?;
        Ok(g)
    }

    /// Renames a group.
    pub async fn rename_group(&self, user_id: i64, id: i64, name: &str) -> Result<Group, ContactsError> {
        let (name, lc) = fields::group_name(name).map_err(ContactsError::Invalid)?;
        let txn = begin_write(self.db()).await?;
        let res = group::Entity::update_many()
            .col_expr(group::Column::Name, name.clone().into())
            .col_expr(group::Column::NameLc, lc.into())
            .col_expr(group::Column::UpdatedAt, now().into())
            .filter(group::Column::Id.eq(id))
            .filter(group::Column::UserId.eq(user_id))
            .exec(&txn)
            .await
            .map_err(|e| name_conflict(e, &name))?;
        if res.rows_affected == 0 {
            return Err(ContactsError::GroupNotFound);
        }
        let g = load_group(&txn, user_id, id).await?;
        txn.commit().await?;
        Ok(g)
    }

    /// Deletes a group (its contacts stay).
    pub async fn delete_group(&self, user_id: i64, id: i64) -> Result<(), ContactsError> {
        let res = group::Entity::delete_many()
            .filter(group::Column::Id.eq(id))
            .filter(group::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(ContactsError::GroupNotFound);
        }
        Ok(())
    }

    /// Makes `contact_ids` (the user's) the group's members, replacing the old list.
    pub async fn set_members(&self, user_id: i64, id: i64, contact_ids: &[i64]) -> Result<Group, ContactsError> {
        let wanted = distinct(contact_ids)?;
        let txn = begin_write(self.db()).await?;
        let res = group::Entity::update_many()
            .col_expr(group::Column::UpdatedAt, now().into())
            .filter(group::Column::Id.eq(id))
            .filter(group::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(ContactsError::GroupNotFound);
        }
        check_contacts(&txn, user_id, &wanted).await?;
        let current: Vec<i64> = member::Entity::find()
            .filter(member::Column::GroupId.eq(id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| m.contact_id)
            .collect();
        let gone: Vec<i64> = current.iter().copied().filter(|c| !wanted.contains(c)).collect();
        for chunk in gone.chunks(super::IN_CHUNK) {
            member::Entity::delete_many()
                .filter(member::Column::GroupId.eq(id))
                .filter(member::Column::ContactId.is_in(chunk.to_vec()))
                .exec(&txn)
                .await?;
        }
        add_members(&txn, id, &wanted).await?;
        let g = load_group(&txn, user_id, id).await?;
        txn.commit().await?;
        Ok(g)
    }

    /// Expands recipients as typed in To/Cc: an entry without `@` (a bare name, or a
    /// quoted `"Name"`) must be one of the user's groups, ignoring case, and becomes its
    /// members' primary addresses; other entries pass through as typed. Later duplicates
    /// of an address (ignoring case) are dropped; order is kept. An unknown or empty group
    /// is an error naming it.
    pub async fn expand_recipients(&self, user_id: i64, entries: &[String]) -> Result<Vec<String>, ContactsError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut seen = HashSet::new();
        let mut groups: Option<HashMap<String, group::Model>> = None;
        for raw in entries {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            if entry.contains('@') {
                let key = fields::recipient(entry).map(|(_, a)| a.lc).unwrap_or_else(|_| entry.to_lowercase());
                if seen.insert(key) {
                    out.push(entry.to_owned());
                }
                continue;
            }
            let name = fields::unquote(entry).trim().to_owned();
            if groups.is_none() {
                let all = group::Entity::find().filter(group::Column::UserId.eq(user_id)).all(self.db()).await?;
                groups = Some(all.into_iter().map(|g| (g.name_lc.clone(), g)).collect());
            }
            let group = groups
                .as_ref()
                .and_then(|gs| gs.get(&name.to_lowercase()))
                .ok_or_else(|| ContactsError::UnknownGroup(name.clone()))?;
            let addrs = member_addresses(self.db(), group.id).await?;
            if addrs.is_empty() {
                return Err(ContactsError::EmptyGroup(group.name.clone()));
            }
            for a in addrs {
                if seen.insert(a.address_lc) {
                    out.push(a.address);
                }
            }
        }
        Ok(out)
    }
}

/// The primary addresses of a group's members, by the members' names.
async fn member_addresses<C: ConnectionTrait>(conn: &C, group_id: i64) -> Result<Vec<address::Model>, DbErr> {
    let ids: Vec<i64> = member::Entity::find()
        .filter(member::Column::GroupId.eq(group_id))
        .all(conn)
        .await?
        .iter()
        .map(|m| m.contact_id)
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(super::IN_CHUNK) {
        let rows = address::Entity::find()
            .find_also_related(contact::Entity)
            .filter(address::Column::ContactId.is_in(chunk.to_vec()))
            .filter(address::Column::IsPrimary.eq(true))
            .all(conn)
            .await?;
        out.extend(rows);
    }
    out.sort_by(|(a, ca), (b, cb)| {
        let key = |c: &Option<contact::Model>| c.as_ref().map(|c| (c.sort_key.clone(), c.id));
        key(ca).cmp(&key(cb)).then(a.id.cmp(&b.id))
    });
    Ok(out.into_iter().map(|(a, _)| a).collect())
}

/// `ids` without repeats, at most [`MAX_MEMBERS`].
fn distinct(ids: &[i64]) -> Result<Vec<i64>, ContactsError> {
    let mut seen = HashSet::new();
    let out: Vec<i64> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    if out.len() > MAX_MEMBERS {
        return Err(ContactsError::Invalid(format!("a group holds at most {MAX_MEMBERS} contacts")));
    }
    Ok(out)
}

/// Fails with the ids among `ids` that are not contacts of the user.
async fn check_contacts<C: ConnectionTrait>(conn: &C, user_id: i64, ids: &[i64]) -> Result<(), ContactsError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(super::IN_CHUNK) {
        let rows = contact::Entity::find()
            .filter(contact::Column::UserId.eq(user_id))
            .filter(contact::Column::Id.is_in(chunk.to_vec()))
            .all(conn)
            .await?;
        found.extend(rows.into_iter().map(|c| c.id));
    }
    let missing: Vec<i64> = ids.iter().copied().filter(|id| !found.contains(id)).collect();
    if missing.is_empty() { Ok(()) } else { Err(ContactsError::ContactsNotFound(missing)) }
}

/// Inserts a group row; returns its id.
async fn insert_group<C: ConnectionTrait>(conn: &C, user_id: i64, name: &str, lc: &str) -> Result<i64, ContactsError> {
    let at = now();
    let row = group::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        name_lc: Set(lc.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    Ok(group::Entity::insert(row).exec(conn).await.map_err(|e| name_conflict(e, name))?.last_insert_id)
}

/// The user's group named `lc` (lower-cased), created as `name` if missing; returns its id.
pub(super) async fn ensure_group<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    name: &str,
    lc: &str,
) -> Result<i64, ContactsError> {
    let found = group::Entity::find()
        .filter(group::Column::UserId.eq(user_id))
        .filter(group::Column::NameLc.eq(lc))
        .one(conn)
        .await?;
    match found {
        Some(g) => Ok(g.id),
        None => insert_group(conn, user_id, name, lc).await,
    }
}

/// Adds contacts to a group; ones already in it stay as they are.
pub(super) async fn add_members<C: ConnectionTrait>(conn: &C, group_id: i64, ids: &[i64]) -> Result<(), DbErr> {
    let at = now();
    for chunk in ids.chunks(super::IN_CHUNK) {
        let rows = chunk.iter().map(|&contact_id| member::ActiveModel {
            group_id: Set(group_id),
            contact_id: Set(contact_id),
            added_at: Set(at),
        });
        member::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([member::Column::GroupId, member::Column::ContactId]).do_nothing().to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// One group of the user with its members.
async fn load_group<C: ConnectionTrait>(conn: &C, user_id: i64, id: i64) -> Result<Group, ContactsError> {
    let g = group::Entity::find_by_id(id)
        .filter(group::Column::UserId.eq(user_id))
        .one(conn)
        .await?
        .ok_or(ContactsError::GroupNotFound)?;
    let member_ids = member::Entity::find()
        .filter(member::Column::GroupId.eq(id))
        .order_by_asc(member::Column::ContactId)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.contact_id)
        .collect();
    Ok(Group { id: g.id, name: g.name, member_ids, created_at: g.created_at, updated_at: g.updated_at })
}
