//! The `profiles` table as a sea-orm entity: one row per user, created with defaults on
//! registration or on first use. Only the profile domain reads or writes it.

use sea_orm::entity::prelude::*;

/// One user's profile.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    /// The account (`users.id`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    /// The name shown to others.
    pub display_name: String,
    /// Blob id of the uploaded avatar, as sent.
    pub avatar_blob: Option<String>,
    /// Media type of the uploaded avatar, e.g. `image/png`.
    pub avatar_type: Option<String>,
    /// Blob id of the square PNG thumbnail.
    pub avatar_thumb_blob: Option<String>,
    /// The mail signature, already sanitised.
    pub signature_html: String,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// BCP 47 language tag, e.g. `en` or `de-CH`.
    pub language: String,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// No relations: the profile domain does not join other domains' tables.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
