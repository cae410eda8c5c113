//! The outbound queue's tables: messages waiting to be delivered to other servers and
//! their recipients, each with its own delivery state. The raw message is a blob held
//! under the owner `outbound:ID` while the message is queued.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `outbound_messages` and `outbound_recipients`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OutboundMessages {
    Table,
    Id,
    UserId,
    EnvelopeFrom,
    BlobId,
    Subject,
    Size,
    Status,
    Attempts,
    CreatedAt,
    NextAttemptAt,
    LastAttemptAt,
    FinishedAt,
    LastError,
}

#[derive(DeriveIden)]
enum OutboundRecipients {
    Table,
    Id,
    MessageId,
    Address,
    Domain,
    Status,
    Reply,
    RemoteMta,
    Notified,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(OutboundMessages::Table)
                .col(big_pk_auto(OutboundMessages::Id))
                .col(big_integer_null(OutboundMessages::UserId))
                .col(string(OutboundMessages::EnvelopeFrom))
                .col(string(OutboundMessages::BlobId))
                .col(string(OutboundMessages::Subject))
                .col(big_integer(OutboundMessages::Size))
                .col(string(OutboundMessages::Status))
                .col(integer(OutboundMessages::Attempts))
                .col(big_integer(OutboundMessages::CreatedAt))
                .col(big_integer(OutboundMessages::NextAttemptAt))
                .col(big_integer_null(OutboundMessages::LastAttemptAt))
                .col(big_integer_null(OutboundMessages::FinishedAt))
                .col(text_null(OutboundMessages::LastError))
                // A deleted account's queued mail still goes out, as the admin's.
                .foreign_key(
                    ForeignKey::create()
                        .from(OutboundMessages::Table, OutboundMessages::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbound_messages_due")
                .table(OutboundMessages::Table)
                .col(OutboundMessages::Status)
                .col(OutboundMessages::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbound_messages_user")
                .table(OutboundMessages::Table)
                .col(OutboundMessages::UserId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OutboundRecipients::Table)
                .col(big_pk_auto(OutboundRecipients::Id))
                .col(big_integer(OutboundRecipients::MessageId))
                .col(string(OutboundRecipients::Address))
                .col(string(OutboundRecipients::Domain))
                .col(string(OutboundRecipients::Status))
                .col(text_null(OutboundRecipients::Reply))
                .col(string_null(OutboundRecipients::RemoteMta))
                .col(boolean(OutboundRecipients::Notified))
                .col(big_integer(OutboundRecipients::UpdatedAt))
                .foreign_key(&mut crate::cascade(
                    OutboundRecipients::Table,
                    OutboundRecipients::MessageId,
                    OutboundMessages::Table,
                    OutboundMessages::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbound_recipients_message")
                .table(OutboundRecipients::Table)
                .col(OutboundRecipients::MessageId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OutboundRecipients::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(OutboundMessages::Table).to_owned()).await
    }
}
