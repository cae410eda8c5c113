//! Stream keys: one secret per user that OBS sends as the stream name. Created or
//! replaced by rotating, removed by revoking; a revoked or replaced key is refused.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

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

impl StreamService {
    /// The user's current key, if any.
    pub async fn stream_key(&self, user_id: i64) -> Result<Option<String>, StreamError> {
        Ok(stream_key::Entity::find_by_id(user_id).one(&self.inner.db).await?.map(|k| k.key))
    }

    /// Replaces (or creates) the user's key and returns the new one.
    pub async fn rotate_key(&self, user_id: i64) -> Result<String, StreamError> {
        let key = new_key();
        let row = stream_key::ActiveModel { user_id: Set(user_id), key: Set(key.clone()), created_at: Set(now()) };
        stream_key::Entity::insert(row)
            .on_conflict(
                OnConflict::column(stream_key::Column::UserId)
                    .update_columns([stream_key::Column::Key, stream_key::Column::CreatedAt])
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
        let row = stream_key::Entity::find().filter(stream_key::Column::Key.eq(key)).one(&self.inner.db).await?;
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
}
