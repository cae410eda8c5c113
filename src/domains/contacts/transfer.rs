//! Import and export of a whole book as vCard: a card whose address is already in the book
//! is merged into that contact (empty fields filled, new addresses and groups added), any
//! other card becomes a new contact; CATEGORIES become groups. One transaction per import.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::{address, contact};
use super::groups::{add_members, ensure_group};
use super::vcard::{self, Card};
use super::{ContactsError, ContactsService, begin_write, fields, hydrate, insert_address, insert_contact};
use crate::platform::db::now;

/// Most cards one import may hold (the whole import is one transaction).
pub const MAX_IMPORT_CARDS: usize = 20_000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Cards stored as new contacts.
    pub created: usize,
    /// Cards merged into a contact that already had one of their addresses.
    pub merged: usize,
    /// Cards that were broken or had no valid address.
    pub skipped: usize,
}

impl ImportReport {
    /// Cards taken in: created plus merged.
    pub fn imported(&self) -> usize {
        self.created + self.merged
    }
}

impl ContactsService {
    /// Imports a vCard file (3.0 or 4.0) into the user's book; broken cards are skipped and
    /// counted, never an error. A file of more than [`MAX_IMPORT_CARDS`] cards is refused
    /// whole.
    pub async fn import_vcard(&self, user_id: i64, text: &str) -> Result<ImportReport, ContactsError> {
        let parsed = vcard::parse(text);
        if parsed.cards.len() + parsed.skipped > MAX_IMPORT_CARDS {
            return Err(ContactsError::Invalid(format!("a file may hold at most {MAX_IMPORT_CARDS} cards")));
        }
        let mut report = ImportReport { skipped: parsed.skipped, ..Default::default() };
        let txn = begin_write(self.db()).await?;
        for card in parsed.cards {
            if import_card(&txn, user_id, card).await? {
                report.merged += 1;
            } else {
                report.created += 1;
            }
        }
        txn.commit().await?;
        Ok(report)
    }

    /// The user's whole book as one vCard 3.0 file, sorted by name.
    pub async fn export_vcard(&self, user_id: i64) -> Result<String, ContactsError> {
        let rows = contact::Entity::find()
            .filter(contact::Column::UserId.eq(user_id))
            .order_by_asc(contact::Column::SortKey)
            .order_by_asc(contact::Column::Id)
            .all(self.db())
            .await?;
        let contacts = hydrate(self.db(), user_id, rows).await?;
        Ok(vcard::write(&contacts))
    }
}

/// Stores one card; returns whether it was merged into an existing contact.
async fn import_card<C: ConnectionTrait>(conn: &C, user_id: i64, card: Card) -> Result<bool, ContactsError> {
    let lcs: Vec<&str> = card.emails.iter().map(|a| a.lc.as_str()).collect();
    let known: HashMap<String, address::Model> = address::Entity::find()
        .filter(address::Column::UserId.eq(user_id))
        .filter(address::Column::AddressLc.is_in(lcs))
        .all(conn)
        .await?
        .into_iter()
        .map(|a| (a.address_lc.clone(), a))
        .collect();
    let target = card.emails.iter().find_map(|a| known.get(&a.lc)).map(|a| a.contact_id);
    let at = now();
    let (id, merged) = match target {
        None => {
            let id =
                insert_contact(conn, user_id, &card.name, &card.phone, &card.notes, &card.emails[0].lc, at).await?;
            for (i, a) in card.emails.iter().enumerate() {
                insert_address(conn, user_id, id, a, i, 0, 0).await?;
            }
            (id, false)
        }
        Some(id) => {
            merge(conn, id, &card, &known, at).await?;
            (id, true)
        }
    };
    for (name, lc) in &card.groups {
        let group_id = ensure_group(conn, user_id, name, lc).await?;
        add_members(conn, group_id, &[id]).await?;
    }
    Ok(merged)
}

/// Fills the contact's empty name, phone and notes from the card and appends the card's
/// addresses that are in no contact yet (up to [`fields::MAX_ADDRESSES`]).
async fn merge<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    card: &Card,
    known: &HashMap<String, address::Model>,
    at: i64,
) -> Result<(), ContactsError> {
    let Some(row) = contact::Entity::find_by_id(id).one(conn).await? else { return Ok(()) };
    let mine = address::Entity::find()
        .filter(address::Column::ContactId.eq(id))
        .order_by_asc(address::Column::Position)
        .all(conn)
        .await?;
    let user_id = row.user_id;
    let first_free = mine.last().map(|a| a.position as usize + 1).unwrap_or(0);
    let room = fields::MAX_ADDRESSES.saturating_sub(mine.len());
    let fresh = card.emails.iter().filter(|a| !known.contains_key(&a.lc)).take(room);
    for (position, a) in (first_free..).zip(fresh) {
        insert_address(conn, user_id, id, a, position, 0, 0).await?;
    }
    let name = if row.name.is_empty() { card.name.clone() } else { row.name.clone() };
    let primary = mine.first().map(|a| a.address_lc.clone()).unwrap_or_else(|| card.emails[0].lc.clone());
    let mut active = contact::ActiveModel { id: Set(id), ..Default::default() };
    active.sort_key = Set(fields::sort_key(&name, &primary));
    active.name_key = Set(fields::name_key(&name));
    active.name = Set(name);
    if row.phone.is_empty() {
        active.phone = Set(card.phone.clone());
    }
    if row.notes.is_empty() {
        active.notes = Set(card.notes.clone());
    }
    active.updated_at = Set(at);
    contact::Entity::update(active).exec(conn).await?;
    Ok(())
}
