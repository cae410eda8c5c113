//! The outbound queue's tables as sea-orm entities: `outbound_messages` (one row per
//! queued message) and `outbound_recipients` (one row per recipient with its own state).
//! Only the outbound queue reads or writes them. States are enums stored as their
//! lowercase names.

use sea_orm::entity::prelude::*;

/// Where a queued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize, utoipa::ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Rows written, blob not yet durable: invisible and not delivered.
    #[sea_orm(string_value = "new")]
    New,
    /// Some recipients still wait (or a bounce is still to be handed over).
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Every recipient is delivered or failed and bounced.
    #[sea_orm(string_value = "done")]
    Done,
}

/// Where one recipient of a queued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize, utoipa::ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// It still waits.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// A server took it.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Refused for good, or given up.
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// The stored name, also shown by `postcast queue list`.
impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.to_value())
    }
}

/// The stored name, also shown by `postcast queue list`.
impl std::fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.to_value())
    }
}

/// A queued message.
pub mod message {
    use sea_orm::entity::prelude::*;

    use super::MessageStatus;

    /// One message on its way to other servers.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbound_messages")]
    pub struct Model {
        /// The queue id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The sending user; null for mail the server itself sends (or of a deleted user).
        pub user_id: Option<i64>,
        /// The reverse-path; empty for the null sender.
        pub envelope_from: String,
        /// The blob holding the signed message (owner `outbound:ID`).
        pub blob_id: String,
        /// The Subject, for listings.
        pub subject: String,
        /// Size of the signed message in bytes.
        pub size: i64,
        /// Where it is.
        pub status: MessageStatus,
        /// Delivery attempts made.
        pub attempts: i32,
        /// When it was queued (Unix seconds).
        pub created_at: i64,
        /// When the worker takes it next (Unix seconds).
        pub next_attempt_at: i64,
        /// When it was last tried.
        pub last_attempt_at: Option<i64>,
        /// When every recipient was finished.
        pub finished_at: Option<i64>,
        /// Why the last attempt did not finish every recipient.
        pub last_error: Option<String>,
    }

    /// Recipients belong to a message.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its recipients.
        #[sea_orm(has_many = "super::recipient::Entity")]
        Recipients,
    }

    impl Related<super::recipient::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Recipients.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The recipients of queued messages.
pub mod recipient {
    use sea_orm::entity::prelude::*;

    use super::RecipientStatus;

    /// One recipient of one queued message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbound_recipients")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The message.
        pub message_id: i64,
        /// The forward-path.
        pub address: String,
        /// Its domain, lowercase.
        pub domain: String,
        /// Where it is.
        pub status: RecipientStatus,
        /// The last reply or error.
        pub reply: Option<String>,
        /// The server that gave the last reply.
        pub remote_mta: Option<String>,
        /// Whether the sender has been told of the failure (or needs no telling).
        pub notified: bool,
        /// Last change (Unix seconds).
        pub updated_at: i64,
    }

    /// Each recipient belongs to one message.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The message.
        #[sea_orm(belongs_to = "super::message::Entity", from = "Column::MessageId", to = "super::message::Column::Id")]
        Message,
    }

    impl Related<super::message::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Message.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}
