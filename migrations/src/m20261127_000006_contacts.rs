//! The contacts domain's tables: each user's contact book (contacts and their addresses
//! with use counts for ranking), contact groups with their members, and the sent messages
//! already counted (so a redelivered `MailSent` event is not counted twice).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `contacts`, `contact_addresses`, `contact_groups`, `contact_group_members` and
/// `contacts_noted_messages`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Contacts {
    Table,
    Id,
    UserId,
    Name,
    SortKey,
    NameKey,
    Phone,
    Notes,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ContactAddresses {
    Table,
    Id,
    UserId,
    ContactId,
    Address,
    AddressLc,
    IsPrimary,
    Position,
    UseCount,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum ContactGroups {
    Table,
    Id,
    UserId,
    Name,
    NameLc,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ContactGroupMembers {
    Table,
    GroupId,
    ContactId,
    AddedAt,
}

#[derive(DeriveIden)]
enum ContactsNotedMessages {
    Table,
    UserId,
    MessageId,
    NotedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Contacts::Table)
                .col(big_pk_auto(Contacts::Id))
                .col(big_integer(Contacts::UserId))
                .col(string(Contacts::Name))
                .col(string(Contacts::SortKey))
                .col(string(Contacts::NameKey))
                .col(string(Contacts::Phone))
                .col(text(Contacts::Notes))
                .col(big_integer(Contacts::CreatedAt))
                .col(big_integer(Contacts::UpdatedAt))
                .foreign_key(&mut crate::cascade(Contacts::Table, Contacts::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_contacts_user_sort")
                .table(Contacts::Table)
                .col(Contacts::UserId)
                .col(Contacts::SortKey)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ContactAddresses::Table)
                .col(big_pk_auto(ContactAddresses::Id))
                .col(big_integer(ContactAddresses::UserId))
                .col(big_integer(ContactAddresses::ContactId))
                .col(string(ContactAddresses::Address))
                .col(string(ContactAddresses::AddressLc))
                .col(boolean(ContactAddresses::IsPrimary))
                .col(integer(ContactAddresses::Position))
                .col(big_integer(ContactAddresses::UseCount))
                .col(big_integer(ContactAddresses::LastUsedAt))
                .foreign_key(&mut crate::cascade(
                    ContactAddresses::Table,
                    ContactAddresses::ContactId,
                    Contacts::Table,
                    Contacts::Id,
                ))
                .foreign_key(&mut crate::cascade(
                    ContactAddresses::Table,
                    ContactAddresses::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;
        // An address belongs to at most one contact of a user: sending to it counts once.
        m.create_index(
            Index::create()
                .name("idx_contact_addresses_user_address")
                .table(ContactAddresses::Table)
                .col(ContactAddresses::UserId)
                .col(ContactAddresses::AddressLc)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_contact_addresses_contact")
                .table(ContactAddresses::Table)
                .col(ContactAddresses::ContactId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ContactGroups::Table)
                .col(big_pk_auto(ContactGroups::Id))
                .col(big_integer(ContactGroups::UserId))
                .col(string(ContactGroups::Name))
                .col(string(ContactGroups::NameLc))
                .col(big_integer(ContactGroups::CreatedAt))
                .col(big_integer(ContactGroups::UpdatedAt))
                .foreign_key(&mut crate::cascade(ContactGroups::Table, ContactGroups::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_contact_groups_user_name")
                .table(ContactGroups::Table)
                .col(ContactGroups::UserId)
                .col(ContactGroups::NameLc)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ContactGroupMembers::Table)
                .col(big_integer(ContactGroupMembers::GroupId))
                .col(big_integer(ContactGroupMembers::ContactId))
                .col(big_integer(ContactGroupMembers::AddedAt))
                .primary_key(Index::create().col(ContactGroupMembers::GroupId).col(ContactGroupMembers::ContactId))
                .foreign_key(&mut crate::cascade(
                    ContactGroupMembers::Table,
                    ContactGroupMembers::GroupId,
                    ContactGroups::Table,
                    ContactGroups::Id,
                ))
                .foreign_key(&mut crate::cascade(
                    ContactGroupMembers::Table,
                    ContactGroupMembers::ContactId,
                    Contacts::Table,
                    Contacts::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_contact_group_members_contact")
                .table(ContactGroupMembers::Table)
                .col(ContactGroupMembers::ContactId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ContactsNotedMessages::Table)
                .col(big_integer(ContactsNotedMessages::UserId))
                .col(big_integer(ContactsNotedMessages::MessageId))
                .col(big_integer(ContactsNotedMessages::NotedAt))
                .primary_key(Index::create().col(ContactsNotedMessages::UserId).col(ContactsNotedMessages::MessageId))
                .foreign_key(&mut crate::cascade(
                    ContactsNotedMessages::Table,
                    ContactsNotedMessages::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ContactsNotedMessages::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(ContactGroupMembers::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(ContactGroups::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(ContactAddresses::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Contacts::Table).to_owned()).await
    }
}
