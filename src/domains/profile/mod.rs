//! The profile domain: each user's display name, avatar (the uploaded image and a square
//! PNG thumbnail, both blobs), sanitised signature, time zone and language, and the public
//! card other users may see (display name and thumbnail only). It owns the `profiles`
//! table and the `profile:avatar:*` / `profile:avatar-thumb:*` blob references. It never
//! reads another domain's tables (usernames come from its callers) and knows no HTTP.

mod avatar;
pub mod config;
mod entity;
mod fields;

use std::sync::Arc;

use bytes::Bytes;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use tokio::sync::Mutex;

use avatar::ImageType;

use crate::events::Event;
use crate::platform::blobs::{BlobError, BlobId, Blobs};
use crate::platform::db::{Db, now};
use config::ProfileConfig;

/// Default time zone of a new profile.
pub const DEFAULT_TIME_ZONE: &str = "UTC";
/// Default language of a new profile.
pub const DEFAULT_LANGUAGE: &str = "en";

/// What can go wrong with a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A field was refused; nothing was stored.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field's JSON name.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The avatar upload is larger than `profile.avatar_max_bytes`.
    #[error("avatar larger than {max} bytes")]
    AvatarTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The media type is not one of the accepted image types.
    #[error("avatar type {0:?} not accepted; send image/png, image/jpeg, image/gif or image/webp")]
    UnsupportedImageType(String),
    /// The bytes do not decode as the claimed image type.
    #[error("{0}")]
    InvalidImage(String),
    /// The image is wider or taller than `profile.avatar_max_edge_px`.
    #[error("avatar wider or taller than {max_edge} pixels")]
    ImageDimensions {
        /// The limit in pixels.
        max_edge: u32,
    },
    /// The user has no avatar.
    #[error("no avatar")]
    NoAvatar,
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Blob store failure.
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    /// Anything else that is not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

/// A user's own view of their profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account.
    pub user_id: i64,
    /// The name shown to others.
    pub display_name: String,
    /// The sanitised signature.
    pub signature_html: String,
    /// IANA time zone name.
    pub time_zone: String,
    /// BCP 47 language tag.
    pub language: String,
    /// The avatar, if one is set.
    pub avatar: Option<AvatarInfo>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// What is known about a stored avatar without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarInfo {
    /// Media type of the uploaded image.
    pub media_type: String,
    /// A short tag that changes whenever the avatar does (for cache-busting URLs).
    pub tag: String,
}

/// What any logged-in user may see of another: no signature, time zone or language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicCard {
    /// The name shown to others.
    pub display_name: String,
    /// The avatar thumbnail's tag, if an avatar is set.
    pub avatar_tag: Option<String>,
}

/// A stored image ready to be served.
#[derive(Debug, Clone)]
pub struct Image {
    /// The bytes.
    pub bytes: Bytes,
    /// Their media type.
    pub media_type: String,
    /// Changes whenever the image does.
    pub tag: String,
}

/// A change to the text fields; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// New display name.
    pub display_name: Option<String>,
    /// New signature (HTML; it is sanitised).
    pub signature_html: Option<String>,
    /// New IANA time zone.
    pub time_zone: Option<String>,
    /// New BCP 47 language tag.
    pub language: Option<String>,
}

/// Profiles: reads, updates, avatars and public cards.
#[derive(Clone)]
pub struct ProfileService {
    db: Db,
    blobs: Blobs,
    config: Arc<ProfileConfig>,
    /// Serialises avatar swaps: blob references are one per (blob, owner), so two swaps
    /// of one user's avatar racing could release a blob the other just stored.
    avatar_lock: Arc<Mutex<()>>,
}

fn avatar_owner(user_id: i64) -> String {
    format!("profile:avatar:{user_id}")
}

fn thumb_owner(user_id: i64) -> String {
    format!("profile:avatar-thumb:{user_id}")
}

/// The two blobs an avatar is stored as.
#[derive(Debug, Default)]
struct AvatarBlobs {
    full: Option<String>,
    thumb: Option<String>,
}

impl AvatarBlobs {
    fn of(row: &entity::Model) -> Self {
        Self { full: row.avatar_blob.clone(), thumb: row.avatar_thumb_blob.clone() }
    }
}

fn tag_of(blob: &str) -> String {
    blob.chars().take(16).collect()
}

fn blob_id(stored: &str) -> Result<BlobId, ProfileError> {
    BlobId::try_from(stored.to_owned()).map_err(|_| ProfileError::Internal(format!("bad stored blob id {stored:?}")))
}

impl From<entity::Model> for Profile {
    fn from(m: entity::Model) -> Self {
        let avatar = match (&m.avatar_type, &m.avatar_thumb_blob) {
            (Some(t), Some(thumb)) => Some(AvatarInfo { media_type: t.clone(), tag: tag_of(thumb) }),
            _ => None,
        };
        Profile {
            user_id: m.user_id,
            display_name: m.display_name,
            signature_html: m.signature_html,
            time_zone: m.time_zone,
            language: m.language,
            avatar,
            updated_at: m.updated_at,
        }
    }
}

impl ProfileService {
    /// A service over `db` and `blobs` with the `[profile]` limits.
    pub fn new(db: Db, blobs: Blobs, config: ProfileConfig) -> Self {
        Self { db, blobs, config: Arc::new(config), avatar_lock: Arc::new(Mutex::new(())) }
    }

    /// The user's profile, created with the defaults if it does not exist yet.
    pub async fn get(&self, user_id: i64, username: &str) -> Result<Profile, ProfileError> {
        Ok(self.ensure(user_id, username).await?.into())
    }

    /// Validates every given field first (so a refused change stores nothing), then
    /// stores them and returns the profile.
    pub async fn update(&self, user_id: i64, username: &str, change: ProfileUpdate) -> Result<Profile, ProfileError> {
        let display_name = change.display_name.as_deref().map(fields::display_name).transpose()?;
        let signature = change.signature_html.as_deref().map(fields::signature).transpose()?;
        let time_zone = change.time_zone.as_deref().map(fields::time_zone).transpose()?;
        let language = change.language.as_deref().map(fields::language).transpose()?;
        self.ensure(user_id, username).await?;
        let mut q = entity::Entity::update_many().col_expr(entity::Column::UpdatedAt, Expr::value(now()));
        for (col, value) in [
            (entity::Column::DisplayName, display_name),
            (entity::Column::SignatureHtml, signature),
            (entity::Column::TimeZone, time_zone),
            (entity::Column::Language, language),
        ] {
            if let Some(v) = value {
                q = q.col_expr(col, Expr::value(v));
            }
        }
        q.filter(entity::Column::UserId.eq(user_id)).exec(&self.db).await?;
        self.get(user_id, username).await
    }

    /// The public card of a user.
    pub async fn card(&self, user_id: i64, username: &str) -> Result<PublicCard, ProfileError> {
        let row = self.ensure(user_id, username).await?;
        Ok(PublicCard { display_name: row.display_name, avatar_tag: row.avatar_thumb_blob.as_deref().map(tag_of) })
    }

    /// Checks an uploaded avatar (size, type, that it decodes, its pixel size), makes the
    /// thumbnail, stores both and drops the previous avatar.
    pub async fn set_avatar(
        &self,
        user_id: i64,
        username: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Profile, ProfileError> {
        if bytes.len() > self.config.avatar_max_bytes {
            return Err(ProfileError::AvatarTooLarge { max: self.config.avatar_max_bytes });
        }
        let ty = ImageType::from_media_type(media_type)
            .ok_or_else(|| ProfileError::UnsupportedImageType(media_type.chars().take(100).collect()))?;
        let (max_edge, px) = (self.config.avatar_max_edge_px, self.config.thumbnail_px);
        let input = bytes.clone();
        let thumb = tokio::task::spawn_blocking(move || avatar::thumbnail(&input, ty, max_edge, px))
            .await
            .map_err(|e| ProfileError::Internal(format!("thumbnail task: {e}")))??;
        self.ensure(user_id, username).await?;

        let _swap = self.avatar_lock.lock().await;
        let old = AvatarBlobs::of(&self.row(user_id).await?);
        let mut new = AvatarBlobs::default();
        let stored = async {
            new.full = Some(self.blobs.put(bytes, &avatar_owner(user_id)).await?.to_string());
            new.thumb = Some(self.blobs.put(Bytes::from(thumb), &thumb_owner(user_id)).await?.to_string());
            entity::Entity::update_many()
                .col_expr(entity::Column::AvatarBlob, Expr::value(new.full.clone()))
                .col_expr(entity::Column::AvatarType, Expr::value(ty.media_type()))
                .col_expr(entity::Column::AvatarThumbBlob, Expr::value(new.thumb.clone()))
                .col_expr(entity::Column::UpdatedAt, Expr::value(now()))
                .filter(entity::Column::UserId.eq(user_id))
                .exec(&self.db)
                .await?;
            Ok::<_, ProfileError>(())
        }
        .await;
        if let Err(e) = stored {
            // The row still names the old avatar: drop what was stored for the new one.
            self.release_replaced(user_id, &new, &old).await;
            return Err(e);
        }
        self.release_replaced(user_id, &old, &new).await;
        drop(_swap);
        self.get(user_id, username).await
    }

    /// Removes the avatar; removing a missing avatar is not an error.
    pub async fn delete_avatar(&self, user_id: i64) -> Result<(), ProfileError> {
        let _swap = self.avatar_lock.lock().await;
        let Some(old) = entity::Entity::find_by_id(user_id).one(&self.db).await? else {
            return Ok(());
        };
        entity::Entity::update_many()
            .col_expr(entity::Column::AvatarBlob, Expr::value(Option::<String>::None))
            .col_expr(entity::Column::AvatarType, Expr::value(Option::<String>::None))
            .col_expr(entity::Column::AvatarThumbBlob, Expr::value(Option::<String>::None))
            .col_expr(entity::Column::UpdatedAt, Expr::value(now()))
            .filter(entity::Column::UserId.eq(user_id))
            .exec(&self.db)
            .await?;
        self.release_replaced(user_id, &AvatarBlobs::of(&old), &AvatarBlobs::default()).await;
        Ok(())
    }

    /// The user's own uploaded avatar, as sent.
    pub async fn avatar(&self, user_id: i64) -> Result<Image, ProfileError> {
        let row = entity::Entity::find_by_id(user_id).one(&self.db).await?.ok_or(ProfileError::NoAvatar)?;
        match (row.avatar_blob, row.avatar_type) {
            (Some(blob), Some(media_type)) => self.image(&blob, media_type).await,
            _ => Err(ProfileError::NoAvatar),
        }
    }

    /// The avatar's square PNG thumbnail: what other users may see.
    pub async fn avatar_thumbnail(&self, user_id: i64) -> Result<Image, ProfileError> {
        let row = entity::Entity::find_by_id(user_id).one(&self.db).await?.ok_or(ProfileError::NoAvatar)?;
        let blob = row.avatar_thumb_blob.ok_or(ProfileError::NoAvatar)?;
        self.image(&blob, "image/png".to_owned()).await
    }

    /// Bus subscriber: creates the default profile of a new account. Idempotent.
    pub async fn handle_event(&self, event: Event) -> Result<(), ProfileError> {
        match event {
            Event::UserRegistered { user_id, username } => self.ensure(user_id, &username).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    async fn image(&self, blob: &str, media_type: String) -> Result<Image, ProfileError> {
        let bytes = match self.blobs.get(&blob_id(blob)?).await {
            Ok(b) => b,
            // Swapped out between the row read and the blob read.
            Err(BlobError::NotFound) => return Err(ProfileError::NoAvatar),
            Err(e) => return Err(e.into()),
        };
        Ok(Image { bytes, media_type, tag: tag_of(blob) })
    }

    async fn row(&self, user_id: i64) -> Result<entity::Model, ProfileError> {
        entity::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| ProfileError::Internal(format!("profile {user_id} vanished")))
    }

    /// The profile row, inserted with the defaults first if missing (concurrent callers
    /// and replayed events insert it once).
    async fn ensure(&self, user_id: i64, username: &str) -> Result<entity::Model, ProfileError> {
        if let Some(row) = entity::Entity::find_by_id(user_id).one(&self.db).await? {
            return Ok(row);
        }
        let row = entity::ActiveModel {
            user_id: Set(user_id),
            display_name: Set(username.to_owned()),
            avatar_blob: Set(None),
            avatar_type: Set(None),
            avatar_thumb_blob: Set(None),
            signature_html: Set(String::new()),
            time_zone: Set(DEFAULT_TIME_ZONE.to_owned()),
            language: Set(DEFAULT_LANGUAGE.to_owned()),
            updated_at: Set(now()),
        };
        entity::Entity::insert(row).on_conflict_do_nothing().exec_without_returning(&self.db).await?;
        self.row(user_id).await
    }

    /// Releases the blobs of `replaced` that `kept` does not name. A failure only
    /// leaks a blob, so it is logged rather than returned.
    async fn release_replaced(&self, user_id: i64, replaced: &AvatarBlobs, kept: &AvatarBlobs) {
        for (old, new, owner) in
            [(&replaced.full, &kept.full, avatar_owner(user_id)), (&replaced.thumb, &kept.thumb, thumb_owner(user_id))]
        {
            let Some(old) = old.as_deref().filter(|o| new.as_deref() != Some(*o)) else {
                continue;
            };
            let released = match blob_id(old) {
                Ok(id) => self.blobs.release(&id, &owner).await.map_err(ProfileError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = released {
                tracing::warn!(user_id, error = %e, "replaced avatar blob not released");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
