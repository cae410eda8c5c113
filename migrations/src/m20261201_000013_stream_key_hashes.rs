//! Stream keys stored as SHA-256 fingerprints: `stream_keys.key` becomes `key_hash`, and
//! every key already stored is replaced by its fingerprint (hex). A key is shown once, when
//! it is made; the RTMP door looks the owner up by the fingerprint of the key OBS sends.
//! Keys are long random strings, so an unsalted fast hash is enough.
//!
//! Going down renames the column back but cannot bring the keys back: every user makes a
//! new key.

use sea_orm_migration::prelude::*;
use sha2::{Digest, Sha256};

/// Renames `stream_keys.key` to `key_hash` and hashes the stored keys.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StreamKeys {
    Table,
    UserId,
    Key,
    KeyHash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(StreamKeys::Table).rename_column(StreamKeys::Key, StreamKeys::KeyHash).to_owned(),
        )
        .await?;
        let db = m.get_connection();
        let read =
            Query::select().columns([StreamKeys::UserId, StreamKeys::KeyHash]).from(StreamKeys::Table).to_owned();
        for row in db.query_all(&read).await? {
            let user_id: i64 = row.try_get("", "user_id")?;
            let key: String = row.try_get("", "key_hash")?;
            let hash = hex::encode(Sha256::digest(key.as_bytes()));
            let write = Query::update()
                .table(StreamKeys::Table)
                .value(StreamKeys::KeyHash, hash)
                .and_where(Expr::col(StreamKeys::UserId).eq(user_id))
                .to_owned();
            db.execute(&write).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute(&Query::delete().from_table(StreamKeys::Table).to_owned()).await?;
        m.alter_table(
            Table::alter().table(StreamKeys::Table).rename_column(StreamKeys::KeyHash, StreamKeys::Key).to_owned(),
        )
        .await
    }
}
