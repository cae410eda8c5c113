//! Sending limits and storage quotas: `mail_sendings` (one row per message a user sent,
//! with its number of recipients, kept for a day: the hourly and daily limits count them),
//! `mail_uploads` (attachments uploaded for a message not sent yet, with their size and
//! age, so unsent ones are collected after a day) and a `bytes` column on stream chunks and
//! segments (what a user's raw feeds and recordings take; rows from before read as 0).

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `mail_sendings` and `mail_uploads`; adds `bytes` to stream chunks and segments.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MailSendings {
    Table,
    Id,
    UserId,
    SentAt,
    Recipients,
}

#[derive(DeriveIden)]
enum MailUploads {
    Table,
    Id,
    UserId,
    BlobId,
    Size,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StreamChunks {
    Table,
    Bytes,
}

#[derive(DeriveIden)]
enum StreamSegments {
    Table,
    Bytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MailSendings::Table)
                .col(big_pk_auto(MailSendings::Id))
                .col(big_integer(MailSendings::UserId))
                .col(big_integer(MailSendings::SentAt))
                .col(big_integer(MailSendings::Recipients))
                .foreign_key(&mut crate::cascade(MailSendings::Table, MailSendings::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_mail_sendings_user_time")
                .table(MailSendings::Table)
                .col(MailSendings::UserId)
                .col(MailSendings::SentAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(MailUploads::Table)
                .col(big_pk_auto(MailUploads::Id))
                .col(big_integer(MailUploads::UserId))
                .col(string(MailUploads::BlobId))
                .col(big_integer(MailUploads::Size))
                .col(big_integer(MailUploads::CreatedAt))
                .foreign_key(&mut crate::cascade(MailUploads::Table, MailUploads::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_mail_uploads_user_blob")
                .table(MailUploads::Table)
                .col(MailUploads::UserId)
                .col(MailUploads::BlobId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_mail_uploads_created")
                .table(MailUploads::Table)
                .col(MailUploads::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(StreamChunks::Table)
                .add_column(big_integer(StreamChunks::Bytes).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(StreamSegments::Table)
                .add_column(big_integer(StreamSegments::Bytes).default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(StreamSegments::Table).drop_column(StreamSegments::Bytes).to_owned())
            .await?;
        m.alter_table(Table::alter().table(StreamChunks::Table).drop_column(StreamChunks::Bytes).to_owned()).await?;
        m.drop_table(Table::drop().table(MailUploads::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(MailSendings::Table).to_owned()).await
    }
}
