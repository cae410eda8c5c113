//! Database migrations, one file per step, applied in order by `postcast migrate` and at
//! server start. They use sea-query's portable builders only, so the same steps create the
//! schema on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_platform;
mod m20261127_000002_accounts;
mod m20261127_000003_profile_prefs;
mod m20261127_000004_streams;
mod m20261127_000005_mail;
mod m20261127_000006_contacts;
mod m20261127_000007_outbound;
mod m20261130_000008_dead_letters;
mod m20261130_000009_mail_changes;
mod m20261130_000010_blob_inline;
mod m20261201_000011_admin;
mod m20261201_000012_bans;
mod m20261201_000013_stream_key_hashes;
mod m20261201_000014_session_reauth;
mod m20261201_000015_limits;

/// A foreign key from `table.col` to `to.to_col` that deletes the row with its parent.
pub(crate) fn cascade(
    table: impl IntoIden + 'static,
    col: impl IntoIden + 'static,
    to: impl IntoIden + 'static,
    to_col: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(to, to_col).on_delete(ForeignKeyAction::Cascade).to_owned()
}

/// Every migration of postcast, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_platform::Migration),
            Box::new(m20261127_000002_accounts::Migration),
            Box::new(m20261127_000003_profile_prefs::Migration),
            Box::new(m20261127_000004_streams::Migration),
            Box::new(m20261127_000005_mail::Migration),
            Box::new(m20261127_000006_contacts::Migration),
            Box::new(m20261127_000007_outbound::Migration),
            Box::new(m20261130_000008_dead_letters::Migration),
            Box::new(m20261130_000009_mail_changes::Migration),
            Box::new(m20261130_000010_blob_inline::Migration),
            Box::new(m20261201_000011_admin::Migration),
            Box::new(m20261201_000012_bans::Migration),
            Box::new(m20261201_000013_stream_key_hashes::Migration),
            Box::new(m20261201_000014_session_reauth::Migration),
            Box::new(m20261201_000015_limits::Migration),
        ]
    }
}
