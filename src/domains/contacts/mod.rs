//! The contacts domain: each user's contact book, like Gmail's. A contact has a name, one
//! or more addresses (the first is the primary; each with a use count and last-use time
//! for ranking), a phone and notes; groups (names unique per user, ignoring case) hold
//! contacts. The book feeds the compose box ([`ContactsService::autocomplete`]), expands
//! group names typed in To/Cc ([`ContactsService::expand_recipients`]), learns from sent
//! mail (`MailSent` → [`ContactsService::note_recipients`], once per message), and reads
//! and writes vCard files.
//!
//! It owns the `contacts`, `contact_addresses`, `contact_groups`, `contact_group_members`
//! and `contacts_noted_messages` tables; it knows no HTTP and no mail protocol.
//!
//! Invariants: every query is scoped by the caller's `user_id`, so another user's ids are
//! "not found"; an address belongs to at most one contact of a user (a unique index); a
//! refused change stores nothing (one transaction per change).

mod entities;
pub mod fields;
mod groups;
mod transfer;
mod usage;
pub mod vcard;

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::sea_query::{LikeExpr, Query};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};

use crate::events::Event;
use crate::platform::db::{Db, now};
use entities::{address, contact, group, member};
use fields::Address;
pub use groups::{Group, MAX_MEMBERS};
pub use transfer::{ImportReport, MAX_IMPORT_CARDS};
pub use usage::{AddressSuggestion, GroupSuggestion, MAX_SUGGESTIONS, Noted, Suggestions};

/// Most contacts one list page returns.
pub const MAX_PAGE: u64 = 500;

/// What can go wrong with contacts.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// A field was refused; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// No such contact of this user.
    #[error("contact not found")]
    ContactNotFound,
    /// Some of these contact ids are not the user's.
    #[error("contacts not found: {0:?}")]
    ContactsNotFound(Vec<i64>),
    /// No such group of this user.
    #[error("group not found")]
    GroupNotFound,
    /// The address already belongs to another contact of the user.
    #[error("{address} already belongs to contact {contact_id}")]
    AddressTaken {
        /// The address as stored.
        address: String,
        /// The contact holding it.
        contact_id: i64,
    },
    /// The user already has a group of that name (ignoring case).
    #[error("a group named {0:?} already exists")]
    GroupNameTaken(String),
    /// A name typed as a recipient (no `@`) is no group of the user.
    #[error("{0:?} is neither an email address nor one of your groups")]
    UnknownGroup(String),
    /// Another change to the same data came first; try again.
    #[error("{0}")]
    Conflict(String),
    /// A group typed as a recipient has no members.
    #[error("the group {0:?} has no members")]
    EmptyGroup(String),
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// A new contact.
#[derive(Debug, Clone, Default)]
pub struct NewContact {
    /// Name (may be empty).
    pub name: String,
    /// One or more addresses; the first is the primary.
    pub emails: Vec<String>,
    /// Phone (may be empty).
    pub phone: String,
    /// Notes (may be empty).
    pub notes: String,
}

/// A change to a contact: `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    /// New name.
    pub name: Option<String>,
    /// The new address list (first = primary); kept addresses keep their use counts.
    pub emails: Option<Vec<String>>,
    /// New phone.
    pub phone: Option<String>,
    /// New notes.
    pub notes: Option<String>,
}

/// One address of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// As given.
    pub address: String,
    /// Whether it is the primary address.
    pub primary: bool,
    /// Messages sent to it.
    pub use_count: i64,
    /// Unix seconds of the last one; 0 = never.
    pub last_used_at: i64,
}

/// A group, as named on a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// Group id.
    pub id: i64,
    /// Group name.
    pub name: String,
}

/// A contact with its addresses and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Contact id.
    pub id: i64,
    /// Name (may be empty).
    pub name: String,
    /// Addresses, the primary first.
    pub emails: Vec<Email>,
    /// Phone (may be empty).
    pub phone: String,
    /// Notes (may be empty).
    pub notes: String,
    /// Groups it is in, by name.
    pub groups: Vec<GroupRef>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Contact {
    /// The primary address.
    pub fn primary(&self) -> Option<&str> {
        self.emails.iter().find(|e| e.primary).map(|e| e.address.as_str())
    }
}

/// Which contacts to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only contacts with a name word or an address starting with this.
    pub q: Option<String>,
    /// At most this many (capped at [`MAX_PAGE`]; 0 = 50).
    pub limit: u64,
    /// After skipping this many.
    pub offset: u64,
}

/// One page of contacts, sorted by name (nameless ones by address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactList {
    /// The page.
    pub contacts: Vec<Contact>,
    /// How many match in all.
    pub total: u64,
}

/// The contacts book.
#[derive(Clone)]
pub struct ContactsService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
}

/// Maps a unique-index violation on an address to [`ContactsError::Conflict`] (a
/// concurrent writer took it between our check and our insert).
fn address_conflict(e: DbErr, lc: &str) -> ContactsError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ContactsError::Conflict(format!("{lc} was just added to another contact; try again"))
        }
        _ => ContactsError::Db(e),
    }
}

pub(super) use crate::platform::db::begin_write;

impl ContactsService {
    /// A book over `db`.
    pub fn new(db: Db) -> Self {
        Self { inner: Arc::new(Inner { db }) }
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Adds a contact. Its addresses must be valid and not already in the book.
    pub async fn create_contact(&self, user_id: i64, new: NewContact) -> Result<Contact, ContactsError> {
        let name = fields::name(&new.name).map_err(ContactsError::Invalid)?;
        let addrs = fields::addresses(&new.emails).map_err(ContactsError::Invalid)?;
        let phone = fields::phone(&new.phone).map_err(ContactsError::Invalid)?;
        let notes = fields::notes(&new.notes).map_err(ContactsError::Invalid)?;
        let txn = begin_write(self.db()).await?;
        if let Some((address, contact_id)) = taken(&txn, user_id, &addrs, None).await? {
            return Err(ContactsError::AddressTaken { address, contact_id });
        }
        let id = insert_contact(&txn, user_id, &name, &phone, &notes, &addrs[0].lc, now()).await?;
        store_addresses(&txn, user_id, id, &addrs, &HashMap::new()).await?;
        let c = load(&txn, user_id, id).await?;
        txn.commit().await?;
        Ok(c)
    }

    /// One contact of the user.
    pub async fn contact(&self, user_id: i64, id: i64) -> Result<Contact, ContactsError> {
        load(self.db(), user_id, id).await
    }

    /// A page of the user's contacts, sorted by name, optionally only those with a name
    /// word or an address starting with `q`.
    pub async fn list_contacts(&self, user_id: i64, query: &ListQuery) -> Result<ContactList, ContactsError> {
        let mut select = contact::Entity::find().filter(contact::Column::UserId.eq(user_id));
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            select = select.filter(match_condition(user_id, q));
        }
        let total = select.clone().count(self.db()).await?;
        let limit = if query.limit == 0 { 50 } else { query.limit.min(MAX_PAGE) };
        let rows = select
            .order_by_asc(contact::Column::SortKey)
            .order_by_asc(contact::Column::Id)
            .limit(limit)
            .offset(query.offset)
            .all(self.db())
            .await?;
        Ok(ContactList { contacts: hydrate(self.db(), user_id, rows).await?, total })
    }

    /// Changes a contact. A new address list keeps the use counts of the addresses that
    /// stay; an address of another contact is refused.
    pub async fn update_contact(&self, user_id: i64, id: i64, patch: ContactPatch) -> Result<Contact, ContactsError> {
        let name = patch.name.as_deref().map(fields::name).transpose().map_err(ContactsError::Invalid)?;
        let addrs = patch.emails.as_deref().map(fields::addresses).transpose().map_err(ContactsError::Invalid)?;
        let phone = patch.phone.as_deref().map(fields::phone).transpose().map_err(ContactsError::Invalid)?;
        let notes = patch.notes.as_deref().map(fields::notes).transpose().map_err(ContactsError::Invalid)?;
        let txn = begin_write(self.db()).await?;
        let row = contact::Entity::find_by_id(id)
            .filter(contact::Column::UserId.eq(user_id))
            .one(&txn)
            .await?
            .ok_or(ContactsError::ContactNotFound)?;
        let primary_lc = match &addrs {
            Some(addrs) => {
                if let Some((address, contact_id)) = taken(&txn, user_id, addrs, Some(id)).await? {
                    return Err(ContactsError::AddressTaken { address, contact_id });
                }
                let old = address::Entity::find().filter(address::Column::ContactId.eq(id)).all(&txn).await?;
                let keep = old.into_iter().map(|a| (a.address_lc, (a.use_count, a.last_used_at))).collect();
                address::Entity::delete_many().filter(address::Column::ContactId.eq(id)).exec(&txn).await?;
                store_addresses(&txn, user_id, id, addrs, &keep).await?;
                addrs[0].lc.clone()
            }
            None => primary_lc(&txn, id).await?,
        };
        let name = name.unwrap_or(row.name);
        let mut active: contact::ActiveModel = contact::ActiveModel { id: Set(id), ..Default::default() };
        active.sort_key = Set(fields::sort_key(&name, &primary_lc));
        active.name_key = Set(fields::name_key(&name));
        active.name = Set(name);
        if let Some(p) = phone {
            active.phone = Set(p);
        }
        if let Some(n) = notes {
            active.notes = Set(n);
        }
        active.updated_at = Set(now());
        contact::Entity::update(active).exec(&txn).await?;
        let c = load(&txn, user_id, id).await?;
        txn.commit().await?;
        Ok(c)
    }

    /// Deletes a contact (its addresses and group memberships go with it).
    pub async fn delete_contact(&self, user_id: i64, id: i64) -> Result<(), ContactsError> {
        let res = contact::Entity::delete_many()
            .filter(contact::Column::Id.eq(id))
            .filter(contact::Column::UserId.eq(user_id))
            .exec(self.db())
            .await?;
        if res.rows_affected == 0 {
            return Err(ContactsError::ContactNotFound);
        }
        Ok(())
    }

    /// Bus subscriber: on `MailSent`, notes the recipients (once per message).
    pub async fn handle_event(&self, event: Event) -> Result<(), ContactsError> {
        match event {
            Event::MailSent { user_id, message_id, recipients } => {
                self.note_recipients(user_id, message_id, &recipients).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// Contacts with a name word starting with `q` (ignoring case and punctuation) or an
/// address starting with `q`.
fn match_condition(user_id: i64, q: &str) -> Condition {
    let addr = format!("{}%", fields::like_escape(&q.to_lowercase()));
    let by_address = Query::select()
        .column(address::Column::ContactId)
        .from(address::Entity)
        .and_where(address::Column::UserId.eq(user_id))
        .and_where(address::Column::AddressLc.like(LikeExpr::new(addr).escape('\\')))
        .to_owned();
    let mut cond = Condition::any().add(contact::Column::Id.in_subquery(by_address));
    let name = fields::name_prefix(q);
    if !name.is_empty() {
        cond = cond.add(contact::Column::NameKey.like(format!("% {name}%")));
    }
    cond
}

/// The first of `addrs` that belongs to a contact of the user other than `except`.
async fn taken<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    addrs: &[Address],
    except: Option<i64>,
) -> Result<Option<(String, i64)>, DbErr> {
    let lcs: Vec<&str> = addrs.iter().map(|a| a.lc.as_str()).collect();
    let mut select = address::Entity::find()
        .filter(address::Column::UserId.eq(user_id))
        .filter(address::Column::AddressLc.is_in(lcs));
    if let Some(id) = except {
        select = select.filter(address::Column::ContactId.ne(id));
    }
    Ok(select.one(conn).await?.map(|a| (a.address, a.contact_id)))
}

/// Inserts a contact row; returns its id.
async fn insert_contact<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    name: &str,
    phone: &str,
    notes: &str,
    primary_lc: &str,
    at: i64,
) -> Result<i64, DbErr> {
    let row = contact::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        sort_key: Set(fields::sort_key(name, primary_lc)),
        name_key: Set(fields::name_key(name)),
        phone: Set(phone.to_owned()),
        notes: Set(notes.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    Ok(contact::Entity::insert(row).exec(conn).await?.last_insert_id)
}

/// Inserts `addrs` for a contact in order (the first primary), with the counts in `keep`
/// for addresses it had before.
async fn store_addresses<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    contact_id: i64,
    addrs: &[Address],
    keep: &HashMap<String, (i64, i64)>,
) -> Result<(), ContactsError> {
    for (i, a) in addrs.iter().enumerate() {
        let (use_count, last_used_at) = keep.get(&a.lc).copied().unwrap_or((0, 0));
        insert_address(conn, user_id, contact_id, a, i, use_count, last_used_at).await?;
    }
    Ok(())
}

/// Inserts one address at `position` (0 = primary).
async fn insert_address<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    contact_id: i64,
    a: &Address,
    position: usize,
    use_count: i64,
    last_used_at: i64,
) -> Result<(), ContactsError> {
    let row = address::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        contact_id: Set(contact_id),
        address: Set(a.display.clone()),
        address_lc: Set(a.lc.clone()),
        is_primary: Set(position == 0),
        position: Set(i32::try_from(position).unwrap_or(i32::MAX)),
        use_count: Set(use_count),
        last_used_at: Set(last_used_at),
    };
    address::Entity::insert(row).exec_without_returning(conn).await.map_err(|e| address_conflict(e, &a.lc))?;
    Ok(())
}

/// The contact's primary address, lower-cased ("" if it somehow has none).
async fn primary_lc<C: ConnectionTrait>(conn: &C, contact_id: i64) -> Result<String, DbErr> {
    Ok(address::Entity::find()
        .filter(address::Column::ContactId.eq(contact_id))
        .order_by_asc(address::Column::Position)
        .one(conn)
        .await?
        .map(|a| a.address_lc)
        .unwrap_or_default())
}

/// One contact of the user, with its addresses and groups.
async fn load<C: ConnectionTrait>(conn: &C, user_id: i64, id: i64) -> Result<Contact, ContactsError> {
    let row = contact::Entity::find_by_id(id)
        .filter(contact::Column::UserId.eq(user_id))
        .one(conn)
        .await?
        .ok_or(ContactsError::ContactNotFound)?;
    hydrate(conn, user_id, vec![row]).await?.pop().ok_or(ContactsError::ContactNotFound)
}

/// How many ids go into one `IN (…)` list (SQLite allows a few thousand variables).
const IN_CHUNK: usize = 500;

/// The user's contact rows with their addresses and groups, in the rows' order.
async fn hydrate<C: ConnectionTrait>(conn: &C, user_id: i64, rows: Vec<contact::Model>) -> Result<Vec<Contact>, DbErr> {
    let mut emails: HashMap<i64, Vec<Email>> = HashMap::new();
    let mut groups: HashMap<i64, Vec<GroupRef>> = HashMap::new();
    let names: HashMap<i64, String> = if rows.is_empty() {
        HashMap::new()
    } else {
        let all = group::Entity::find().filter(group::Column::UserId.eq(user_id)).all(conn).await?;
        all.into_iter().map(|g| (g.id, g.name)).collect()
    };
    for chunk in rows.chunks(IN_CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
        let addrs = address::Entity::find()
            .filter(address::Column::ContactId.is_in(ids.clone()))
            .order_by_asc(address::Column::ContactId)
            .order_by_asc(address::Column::Position)
            .all(conn)
            .await?;
        for a in addrs {
            emails.entry(a.contact_id).or_default().push(Email {
                address: a.address,
                primary: a.is_primary,
                use_count: a.use_count,
                last_used_at: a.last_used_at,
            });
        }
        let members = member::Entity::find().filter(member::Column::ContactId.is_in(ids)).all(conn).await?;
        for m in members {
            if let Some(name) = names.get(&m.group_id) {
                groups.entry(m.contact_id).or_default().push(GroupRef { id: m.group_id, name: name.clone() });
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut gs = groups.remove(&r.id).unwrap_or_default();
            gs.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id)));
            Contact {
                id: r.id,
                name: r.name,
                emails: emails.remove(&r.id).unwrap_or_default(),
                phone: r.phone,
                notes: r.notes,
                groups: gs,
                created_at: r.created_at,
                updated_at: r.updated_at,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
