//! What IMAP and search need from the mail store: per-mailbox and per-label `total` and
//! `unread` counters kept with every change (filled here for existing rows), and the
//! expunge log `mail_expunged` (mailbox, UID, MODSEQ) that lets IMAP QRESYNC answer
//! `VANISHED (EARLIER)` (RFC 7162 §3.2.5.1) and search drop deleted mail.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds the counters and creates `mail_expunged`.
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
    Total,
    Unread,
}

#[derive(DeriveIden)]
enum Labels {
    Table,
    Id,
    Total,
    Unread,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    MailboxId,
    Flags,
}

#[derive(DeriveIden)]
enum MessageLabels {
    Table,
    MessageId,
    LabelId,
}

#[derive(DeriveIden)]
enum MailExpunged {
    Table,
    MailboxId,
    Uid,
    Modseq,
    UserId,
}

/// The `\Seen` bit of `messages.flags`.
const SEEN: i64 = 1;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for (table, col) in [
            (Mailboxes::Table.into_iden(), Mailboxes::Total.into_iden()),
            (Mailboxes::Table.into_iden(), Mailboxes::Unread.into_iden()),
            (Labels::Table.into_iden(), Labels::Total.into_iden()),
            (Labels::Table.into_iden(), Labels::Unread.into_iden()),
        ] {
            m.alter_table(Table::alter().table(table).add_column(big_integer(col).default(0)).to_owned()).await?;
        }
        fill_counters(m).await?;
        m.create_table(
            Table::create()
                .table(MailExpunged::Table)
                .col(big_integer(MailExpunged::MailboxId))
                .col(big_integer(MailExpunged::Uid))
                .col(big_integer(MailExpunged::Modseq))
                .col(big_integer(MailExpunged::UserId))
                .primary_key(Index::create().col(MailExpunged::MailboxId).col(MailExpunged::Uid))
                .foreign_key(&mut crate::cascade(
                    MailExpunged::Table,
                    MailExpunged::MailboxId,
                    Mailboxes::Table,
                    Mailboxes::Id,
                ))
                .foreign_key(&mut crate::cascade(MailExpunged::Table, MailExpunged::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("mail_expunged_mailbox_modseq")
                .table(MailExpunged::Table)
                .col(MailExpunged::MailboxId)
                .col(MailExpunged::Modseq)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MailExpunged::Table).to_owned()).await?;
        for (table, col) in [
            (Mailboxes::Table.into_iden(), Mailboxes::Total.into_iden()),
            (Mailboxes::Table.into_iden(), Mailboxes::Unread.into_iden()),
            (Labels::Table.into_iden(), Labels::Total.into_iden()),
            (Labels::Table.into_iden(), Labels::Unread.into_iden()),
        ] {
            m.alter_table(Table::alter().table(table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

/// Counts every existing mailbox's and label's messages into the new columns.
async fn fill_counters(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let unseen = || Expr::col((Messages::Table, Messages::Flags)).bit_and(SEEN).eq(0);
    let in_mailbox = || {
        Query::select()
            .expr(Expr::col((Messages::Table, Messages::Id)).count())
            .from(Messages::Table)
            .and_where(Expr::col((Messages::Table, Messages::MailboxId)).equals((Mailboxes::Table, Mailboxes::Id)))
            .to_owned()
    };
    let fill = Query::update()
        .table(Mailboxes::Table)
        .value(Mailboxes::Total, in_mailbox())
        .value(Mailboxes::Unread, in_mailbox().and_where(unseen()).to_owned())
        .to_owned();
    m.get_connection().execute(&fill).await?;
    let with_label = || {
        Query::select()
            .expr(Expr::col((MessageLabels::Table, MessageLabels::MessageId)).count())
            .from(MessageLabels::Table)
            .inner_join(
                Messages::Table,
                Expr::col((Messages::Table, Messages::Id)).equals((MessageLabels::Table, MessageLabels::MessageId)),
            )
            .and_where(Expr::col((MessageLabels::Table, MessageLabels::LabelId)).equals((Labels::Table, Labels::Id)))
            .to_owned()
    };
    let fill = Query::update()
        .table(Labels::Table)
        .value(Labels::Total, with_label())
        .value(Labels::Unread, with_label().and_where(unseen()).to_owned())
        .to_owned();
    m.get_connection().execute(&fill).await?;
    Ok(())
}
