//! The prefs domain's tables as sea-orm entities: `prefs` (one JSON document per user with
//! its version) and `prefs_attachments` (files stored as blobs). Only the prefs domain
//! reads or writes them.

/// The `prefs` table.
pub mod document {
    use sea_orm::entity::prelude::*;

    /// One user's preference document.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prefs")]
    pub struct Model {
        /// The owner (`users.id`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// The document: a JSON object, serialised.
        pub doc: String,
        /// Bumped by one on every change; the ETag is made from it.
        pub version: i64,
        /// Last change (Unix seconds).
        pub updated_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `prefs_attachments` table.
pub mod attachment {
    use sea_orm::entity::prelude::*;

    /// One stored attachment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "prefs_attachments")]
    pub struct Model {
        /// Random id (32 hex digits) that the document mentions to keep the file.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The owner (`users.id`).
        pub user_id: i64,
        /// The blob holding the bytes.
        pub blob_id: String,
        /// File name as given by the client, cleaned.
        pub name: String,
        /// Media type as given by the client.
        pub content_type: String,
        /// Size in bytes.
        pub size: i64,
        /// Upload time (Unix seconds).
        pub created_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
