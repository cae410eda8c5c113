//! The profile and prefs domains' tables.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `profiles`, `prefs` and `prefs_attachments`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    UserId,
    DisplayName,
    AvatarBlob,
    AvatarType,
    AvatarThumbBlob,
    SignatureHtml,
    TimeZone,
    Language,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Prefs {
    Table,
    UserId,
    Doc,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PrefsAttachments {
    Table,
    Id,
    UserId,
    BlobId,
    Name,
    ContentType,
    Size,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Profiles::Table)
                .col(big_integer(Profiles::UserId).primary_key())
                .col(string(Profiles::DisplayName))
                .col(string_null(Profiles::AvatarBlob))
                .col(string_null(Profiles::AvatarType))
                .col(string_null(Profiles::AvatarThumbBlob))
                .col(text(Profiles::SignatureHtml))
                .col(string(Profiles::TimeZone))
                .col(string(Profiles::Language))
                .col(big_integer(Profiles::UpdatedAt))
                .foreign_key(&mut crate::cascade(Profiles::Table, Profiles::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Prefs::Table)
                .col(big_integer(Prefs::UserId).primary_key())
                .col(text(Prefs::Doc))
                .col(big_integer(Prefs::Version))
                .col(big_integer(Prefs::UpdatedAt))
                .foreign_key(&mut crate::cascade(Prefs::Table, Prefs::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PrefsAttachments::Table)
                .col(string(PrefsAttachments::Id).primary_key())
                .col(big_integer(PrefsAttachments::UserId))
                .col(string(PrefsAttachments::BlobId))
                .col(string(PrefsAttachments::Name))
                .col(string(PrefsAttachments::ContentType))
                .col(big_integer(PrefsAttachments::Size))
                .col(big_integer(PrefsAttachments::CreatedAt))
                .foreign_key(&mut crate::cascade(
                    PrefsAttachments::Table,
                    PrefsAttachments::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_prefs_attachments_user")
                .table(PrefsAttachments::Table)
                .col(PrefsAttachments::UserId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PrefsAttachments::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Prefs::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Profiles::Table).to_owned()).await
    }
}
