//! The administrator and invitations: `users.is_admin` (on an existing database the
//! account with the lowest id becomes the administrator) and `invitations`, the hashed,
//! single-use tokens that let somebody register while registration is closed. One row,
//! `first-account`, stands for the first account of the server: whoever uses it up is the
//! administrator (it is born used when the database already has accounts).

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `users.is_admin` and creates `invitations`.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The token hash of the first-account row; no SHA-256 fingerprint (64 hex digits)
/// equals it, so no invitation token can name it.
const FIRST_ACCOUNT: &str = "first-account";

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    IsAdmin,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    TokenHash,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    UsedBy,
}

/// `SELECT MIN(id) FROM users`.
fn first_user() -> SelectStatement {
    Query::select().expr(Expr::col(Users::Id).min()).from(Users::Table).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Users::Table).add_column(boolean(Users::IsAdmin).default(false)).to_owned())
            .await?;
        let oldest = Query::update()
            .table(Users::Table)
            .value(Users::IsAdmin, true)
            .and_where(Expr::col(Users::Id).in_subquery(first_user()))
            .to_owned();
        m.get_connection().execute(&oldest).await?;
        m.create_table(
            Table::create()
                .table(Invitations::Table)
                .col(big_pk_auto(Invitations::Id))
                .col(string_uniq(Invitations::TokenHash))
                .col(big_integer_null(Invitations::CreatedBy))
                .col(big_integer(Invitations::CreatedAt))
                .col(big_integer(Invitations::ExpiresAt))
                .col(big_integer_null(Invitations::UsedAt))
                .col(big_integer_null(Invitations::UsedBy))
                .foreign_key(&mut crate::cascade(Invitations::Table, Invitations::CreatedBy, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| <i64 as TryFrom<u64>>::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let first = Query::insert()
            .into_table(Invitations::Table)
            .columns([Invitations::TokenHash, Invitations::CreatedAt, Invitations::ExpiresAt])
            .values_panic([FIRST_ACCOUNT.into(), now.into(), i64::MAX.into()])
            .to_owned();
        m.get_connection().execute(&first).await?;
        let taken = Query::update()
            .table(Invitations::Table)
            .value(Invitations::UsedAt, now)
            .value(Invitations::UsedBy, first_user())
            .and_where(Expr::col(Invitations::TokenHash).eq(FIRST_ACCOUNT))
            .and_where(Expr::exists(Query::select().expr(Expr::val(1)).from(Users::Table).to_owned()))
            .to_owned();
        m.get_connection().execute(&taken).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Invitations::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(Users::Table).drop_column(Users::IsAdmin).to_owned()).await
    }
}
