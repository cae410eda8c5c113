//! Small blobs kept in the database: `blob_inline` holds the bytes of every blob up to the
//! blob store's inline limit, so storing a short message costs a row in the transaction that
//! references it instead of a file, a folder entry and a file-system sync.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `blob_inline`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BlobInline {
    Table,
    BlobId,
    Bytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BlobInline::Table)
                .col(string(BlobInline::BlobId).primary_key())
                .col(blob(BlobInline::Bytes))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(BlobInline::Table).to_owned()).await
    }
}
