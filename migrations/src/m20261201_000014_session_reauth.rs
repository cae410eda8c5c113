//! Re-authentication for sensitive changes: `sessions.reauth_until`, the Unix second until
//! which the session may make them (set when its user confirms the password; none until
//! then).

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `sessions.reauth_until`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ReauthUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Sessions::Table).add_column(big_integer_null(Sessions::ReauthUntil)).to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::ReauthUntil).to_owned()).await
    }
}
