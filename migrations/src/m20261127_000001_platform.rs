//! The platform's tables: the event outbox, subscriber cursors and blob references.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `outbox`, `bus_cursors` and `blob_refs`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Event,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BusCursors {
    Table,
    Subscriber,
    LastId,
}

#[derive(DeriveIden)]
enum BlobRefs {
    Table,
    BlobId,
    Owner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(big_pk_auto(Outbox::Id))
                .col(text(Outbox::Event))
                .col(big_integer(Outbox::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BusCursors::Table)
                .col(string(BusCursors::Subscriber).primary_key())
                .col(big_integer(BusCursors::LastId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BlobRefs::Table)
                .col(string(BlobRefs::BlobId))
                .col(string(BlobRefs::Owner))
                .primary_key(Index::create().col(BlobRefs::BlobId).col(BlobRefs::Owner))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BlobRefs::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(BusCursors::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Outbox::Table).to_owned()).await
    }
}
