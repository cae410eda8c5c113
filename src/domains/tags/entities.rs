//! sea-orm entities for labels and their link to messages (created by the mail migration).

/// A user's labels.
pub mod label {
    use sea_orm::entity::prelude::*;

    /// One label.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "labels")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// Name, unique per user.
        pub name: String,
        /// A CSS colour like `#1a73e8`.
        pub color: Option<String>,
        /// Unix seconds.
        pub created_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which message carries which label.
pub mod message_label {
    use sea_orm::entity::prelude::*;

    /// One (message, label) pair.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_labels")]
    pub struct Model {
        /// The message row.
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: i64,
        /// The label.
        #[sea_orm(primary_key, auto_increment = false)]
        pub label_id: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
