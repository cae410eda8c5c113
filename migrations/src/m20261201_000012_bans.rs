//! Network bans: `network_bans` holds one row per client network (an IPv4 address or an
//! IPv6 /64, as the auth domain's rate limits name it) that failed too many logins across
//! accounts, until when it is banned and how many failures got it banned. The auth domain
//! owns it; the server writes bans, `postcast bans lift` deletes them.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `network_bans`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NetworkBans {
    Table,
    Network,
    BannedAt,
    Until,
    Failures,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(NetworkBans::Table)
                .col(string(NetworkBans::Network).primary_key())
                .col(big_integer(NetworkBans::BannedAt))
                .col(big_integer(NetworkBans::Until))
                .col(integer(NetworkBans::Failures))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(NetworkBans::Table).to_owned()).await
    }
}
