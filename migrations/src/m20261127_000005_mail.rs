//! The mail store's tables: mailboxes (with IMAP UID bookkeeping), threads, one metadata
//! row per stored message (the raw message is a blob), and the labels of the tags domain
//! with their many-to-many link to messages.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `mailboxes`, `threads`, `messages`, `labels` and `message_labels`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    Id,
    UserId,
    Name,
    Role,
    UidValidity,
    UidNext,
    HighestModseq,
    Subscribed,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
    UserId,
    SubjectKey,
    LastAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    UserId,
    MailboxId,
    Uid,
    Modseq,
    BlobId,
    MessageIdHdr,
    ThreadId,
    FromAddr,
    FromName,
    ToAddrs,
    CcAddrs,
    Subject,
    Snippet,
    SentAt,
    InternalDate,
    Size,
    HasAttachments,
    Flags,
    Keywords,
    SpamVerdict,
    SpamScore,
    Parsed,
}

#[derive(DeriveIden)]
enum Labels {
    Table,
    Id,
    UserId,
    Name,
    Color,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MessageLabels {
    Table,
    MessageId,
    LabelId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Mailboxes::Table)
                .col(pk_auto(Mailboxes::Id))
                .col(big_integer(Mailboxes::UserId))
                .col(string(Mailboxes::Name))
                .col(string_null(Mailboxes::Role))
                .col(big_integer(Mailboxes::UidValidity))
                .col(big_integer(Mailboxes::UidNext))
                .col(big_integer(Mailboxes::HighestModseq))
                .col(boolean(Mailboxes::Subscribed))
                .col(big_integer(Mailboxes::CreatedAt))
                .foreign_key(&mut crate::cascade(Mailboxes::Table, Mailboxes::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("mailboxes_user_name")
                .table(Mailboxes::Table)
                .col(Mailboxes::UserId)
                .col(Mailboxes::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Threads::Table)
                .col(pk_auto(Threads::Id))
                .col(big_integer(Threads::UserId))
                .col(string(Threads::SubjectKey))
                .col(big_integer(Threads::LastAt))
                .foreign_key(&mut crate::cascade(Threads::Table, Threads::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("threads_user_subject")
                .table(Threads::Table)
                .col(Threads::UserId)
                .col(Threads::SubjectKey)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(pk_auto(Messages::Id))
                .col(big_integer(Messages::UserId))
                .col(big_integer(Messages::MailboxId))
                .col(big_integer(Messages::Uid))
                .col(big_integer(Messages::Modseq))
                .col(string(Messages::BlobId))
                .col(string_null(Messages::MessageIdHdr))
                .col(big_integer(Messages::ThreadId))
                .col(string(Messages::FromAddr))
                .col(string(Messages::FromName))
                .col(text(Messages::ToAddrs))
                .col(text(Messages::CcAddrs))
                .col(string(Messages::Subject))
                .col(string(Messages::Snippet))
                .col(big_integer(Messages::SentAt))
                .col(big_integer(Messages::InternalDate))
                .col(big_integer(Messages::Size))
                .col(boolean(Messages::HasAttachments))
                .col(big_integer(Messages::Flags))
                .col(text(Messages::Keywords))
                .col(string(Messages::SpamVerdict))
                .col(double_null(Messages::SpamScore))
                .col(boolean(Messages::Parsed))
                .foreign_key(&mut crate::cascade(Messages::Table, Messages::UserId, Users::Table, Users::Id))
                .foreign_key(&mut crate::cascade(Messages::Table, Messages::MailboxId, Mailboxes::Table, Mailboxes::Id))
                .to_owned(),
        )
        .await?;
        for (name, cols, unique) in [
            ("messages_mailbox_uid", vec![Messages::MailboxId, Messages::Uid], true),
            ("messages_mailbox_date", vec![Messages::MailboxId, Messages::InternalDate, Messages::Id], false),
            ("messages_user_thread", vec![Messages::UserId, Messages::ThreadId], false),
            ("messages_user_msgid", vec![Messages::UserId, Messages::MessageIdHdr], false),
            ("messages_user_date", vec![Messages::UserId, Messages::InternalDate, Messages::Id], false),
        ] {
            let mut index = Index::create();
            index.name(name).table(Messages::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            m.create_index(index.to_owned()).await?;
        }
        m.create_table(
            Table::create()
                .table(Labels::Table)
                .col(pk_auto(Labels::Id))
                .col(big_integer(Labels::UserId))
                .col(string(Labels::Name))
                .col(string_null(Labels::Color))
                .col(big_integer(Labels::CreatedAt))
                .foreign_key(&mut crate::cascade(Labels::Table, Labels::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("labels_user_name")
                .table(Labels::Table)
                .col(Labels::UserId)
                .col(Labels::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(MessageLabels::Table)
                .col(big_integer(MessageLabels::MessageId))
                .col(big_integer(MessageLabels::LabelId))
                .primary_key(Index::create().col(MessageLabels::MessageId).col(MessageLabels::LabelId))
                .foreign_key(&mut crate::cascade(
                    MessageLabels::Table,
                    MessageLabels::MessageId,
                    Messages::Table,
                    Messages::Id,
                ))
                .foreign_key(&mut crate::cascade(
                    MessageLabels::Table,
                    MessageLabels::LabelId,
                    Labels::Table,
                    Labels::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("message_labels_label")
                .table(MessageLabels::Table)
                .col(MessageLabels::LabelId)
                .col(MessageLabels::MessageId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MessageLabels::Table.into_iden(),
            Labels::Table.into_iden(),
            Messages::Table.into_iden(),
            Threads::Table.into_iden(),
            Mailboxes::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
