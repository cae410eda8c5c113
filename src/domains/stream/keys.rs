//! Stream keys: one secret per user that OBS sends as the stream name. Created or
//! replaced by rotating, removed by revoking; a revoked or replaced key is refused. Only a
//! key's SHA-256 fingerprint is stored: the key is answered once, by the rotation that
//! makes it, like an app password.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use super::entities::stream_key;
use super::{StreamError, StreamService};
use crate::platform::db::now;

/// Characters of randomness in a key.
const KEY_CHARS: usize = 24;

/// A fresh key: `live_` and random characters.
fn new_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let body: String = (0..KEY_CHARS).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("live_{body}")
}

/// How a key is stored: hex SHA-256. Keys are long and random, so a fast hash is enough.
fn fingerprint(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl StreamService {
    /// When the user's current key was made (Unix seconds), if they have one. The key
    /// itself is not stored, so it cannot be answered again.
    pub async fn stream_key_made(&self, user_id: i64) -> Result<Option<i64>, StreamError> {
        Ok(stream_key::Entity::find_by_id(user_id).one(&self.inner.db).await?.map(|k| k.created_at))
    }

    /// Replaces (or creates) the user's key and returns the new one: the only time it is
    /// ever shown.
    pub async fn rotate_key(&self, user_id: i64) -> Result<String, StreamError> {
        let key = new_key();
        let row =
            stream_key::ActiveModel { user_id: Set(user_id), key_hash: Set(fingerprint(&key)), created_at: Set(now()) };
        stream_key::Entity::insert(row)
            .on_conflict(
                OnConflict::column(stream_key::Column::UserId)
                    .update_columns([stream_key::Column::KeyHash, stream_key::Column::CreatedAt])
                    .to_owned(),
            )
            .exec(&self.inner.db)
            .await?;
        Ok(key)
    }

    /// Removes the user's key: publishing is refused until a new one is made.
    pub async fn revoke_key(&self, user_id: i64) -> Result<(), StreamError> {
        stream_key::Entity::delete_by_id(user_id).exec(&self.inner.db).await?;
        Ok(())
    }

    /// The owner of `key`, if it is a current key.
    pub(super) async fn key_owner(&self, key: &str) -> Result<Option<i64>, StreamError> {
        if key.len() > 128 {
            return Ok(None);
        }
        let row = stream_key::Entity::find()
            .filter(stream_key::Column::KeyHash.eq(fingerprint(key)))
            .one(&self.inner.db)
            .await?;
        Ok(row.map(|r| r.user_id))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_long_and_distinct() {
        let a = super::new_key();
        let b = super::new_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + super::KEY_CHARS);
        assert!(a.starts_with("live_"));
    }

    #[tokio::test]
    async fn the_migration_replaces_stored_keys_by_their_fingerprints() {
        use migrations::{Migrator, MigratorTrait};
        use sea_orm::{ConnectionTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
        let db = crate::platform::db::open(&url, 1, std::time::Duration::from_secs(5), false).await.unwrap();
        let steps = Migrator::migrations();
        let before = steps.iter().position(|m| m.name() == "m20261201_000013_stream_key_hashes").unwrap();
        Migrator::up(&db, Some(before as u32)).await.unwrap();
        let backend = db.get_database_backend();
        for sql in [
            "INSERT INTO users (id, username, address, password_hash, created_at) VALUES (1, 'rita', 'rita@x', '-', 0)",
            "INSERT INTO stream_keys (user_id, key, created_at) VALUES (1, 'live_madeBeforeHashing1234', 0)",
        ] {
            db.execute_raw(Statement::from_string(backend, sql)).await.unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        let rows = db.query_all_raw(Statement::from_string(backend, "SELECT key_hash FROM stream_keys")).await.unwrap();
        let stored: Vec<String> = rows.iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
        assert_eq!(stored, vec![super::fingerprint("live_madeBeforeHashing1234")], "the old key still publishes");
    }

    #[test]
    fn keys_are_stored_as_fingerprints() {
        let key = super::new_key();
        let stored = super::fingerprint(&key);
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(&key));
        assert_eq!(stored, super::fingerprint(&key));
    }
}
