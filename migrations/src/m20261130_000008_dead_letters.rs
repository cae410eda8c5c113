//! The bus's dead letters: events a subscriber's handler failed on every attempt, kept
//! with the error instead of being dropped.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `bus_dead_letters`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BusDeadLetters {
    Table,
    Id,
    Subscriber,
    OutboxId,
    Event,
    Error,
    FailedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BusDeadLetters::Table)
                    .col(big_pk_auto(BusDeadLetters::Id))
                    .col(string(BusDeadLetters::Subscriber))
                    .col(big_integer(BusDeadLetters::OutboxId))
                    .col(text(BusDeadLetters::Event))
                    .col(text(BusDeadLetters::Error))
                    .col(big_integer(BusDeadLetters::FailedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(BusDeadLetters::Table).to_owned()).await
    }
}
