//! sea-orm entities for the stream domain's tables (see the streams migration).

/// Stream keys, one per user.
pub mod stream_key {
    use sea_orm::entity::prelude::*;

    /// A user's key for publishing.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stream_keys")]
    pub struct Model {
        /// Owner.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// Hex SHA-256 of the secret OBS sends as the stream name (the key itself is
        /// shown once, when made, and never stored).
        pub key_hash: String,
        /// Unix seconds.
        pub created_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Streams, live or recorded.
pub mod stream {
    use sea_orm::entity::prelude::*;

    /// One broadcast.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "streams")]
    pub struct Model {
        /// Public id used in URLs.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Owner.
        pub user_id: i64,
        /// Title shown to viewers.
        pub title: String,
        /// Where it is in its life.
        pub state: super::super::live::Phase,
        /// Unix seconds.
        pub started_at: i64,
        /// Unix seconds.
        pub ended_at: Option<i64>,
        /// JSON: the renditions with their measured sizes and bandwidths.
        pub renditions: String,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Raw source chunks: the backup of what was received.
pub mod stream_chunk {
    use sea_orm::entity::prelude::*;

    /// One chunk of the broadcaster's FLV.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stream_chunks")]
    pub struct Model {
        /// Stream.
        #[sea_orm(primary_key, auto_increment = false)]
        pub stream_id: String,
        /// Sequence number within the stream.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// The FLV blob.
        pub blob_id: String,
        /// First timestamp, ms.
        pub start_ms: i64,
        /// Length, ms.
        pub duration_ms: i64,
        /// Unix seconds.
        pub created_at: i64,
        /// Size of the blob, counted against the owner's storage quota.
        pub bytes: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// HLS segments of every rendition.
pub mod stream_segment {
    use sea_orm::entity::prelude::*;

    /// One listed segment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stream_segments")]
    pub struct Model {
        /// Stream.
        #[sea_orm(primary_key, auto_increment = false)]
        pub stream_id: String,
        /// Rendition name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub rendition: String,
        /// Media sequence number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// Length, ms.
        pub duration_ms: i64,
        /// The MPEG-TS blob; none for a gap.
        pub blob_id: Option<String>,
        /// Publisher reconnected before this segment.
        pub discontinuity: bool,
        /// Could not be made.
        pub gap: bool,
        /// Wall-clock time of the first frame, Unix ms.
        pub program_date_ms: i64,
        /// Size of the blob (0 for a gap or a segment filled from another rendition),
        /// counted against the owner's storage quota.
        pub bytes: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
