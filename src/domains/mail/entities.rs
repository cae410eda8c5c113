//! sea-orm entities for the mail store's tables: mailboxes, threads, messages, labels and
//! their links to messages (the mail migration), the expunge log (the mail-changes
//! migration), and the sending log and pending uploads (the limits migration).

/// Mailboxes (folders): the system ones and the user's own.
pub mod mailbox {
    use sea_orm::entity::prelude::*;

    /// One mailbox with its IMAP UID bookkeeping (RFC 9051 §2.3.1.1).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mailboxes")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// Display and IMAP name, `/`-separated for hierarchy.
        pub name: String,
        /// `inbox`, `sent`, `drafts`, `spam`, `trash`, `archive`; None for the user's own.
        pub role: Option<String>,
        /// UIDVALIDITY: fixed for the mailbox's life.
        pub uid_validity: i64,
        /// The UID the next message gets.
        pub uid_next: i64,
        /// The highest MODSEQ given to a message of this mailbox (RFC 7162).
        pub highest_modseq: i64,
        /// Whether IMAP LSUB lists it.
        pub subscribed: bool,
        /// Unix seconds.
        pub created_at: i64,
        /// Messages in it, kept with every change.
        pub total: i64,
        /// Unread messages in it, kept with every change.
        pub unread: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Conversations.
pub mod thread {
    use sea_orm::entity::prelude::*;

    /// One conversation of one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "threads")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// The normalised subject (see `thread::subject_key`).
        pub subject_key: String,
        /// The newest message's internal date, Unix seconds.
        pub last_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Message metadata rows; the raw message is a blob.
pub mod message {
    use sea_orm::entity::prelude::*;

    /// One stored message in one mailbox.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        /// Row id, stable across moves.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Owner.
        pub user_id: i64,
        /// The mailbox it is in.
        pub mailbox_id: i64,
        /// IMAP UID within the mailbox.
        pub uid: i64,
        /// MODSEQ of the last change (RFC 7162).
        pub modseq: i64,
        /// The raw RFC 5322 message's blob id.
        pub blob_id: String,
        /// The Message-ID header without angle brackets.
        pub message_id_hdr: Option<String>,
        /// The conversation.
        pub thread_id: i64,
        /// The first From address, lower-cased.
        pub from_addr: String,
        /// The From display name.
        pub from_name: String,
        /// To addresses, comma-separated.
        pub to_addrs: String,
        /// Cc addresses, comma-separated.
        pub cc_addrs: String,
        /// Subject, decoded.
        pub subject: String,
        /// The start of the text body.
        pub snippet: String,
        /// The Date header, Unix seconds (internal date when missing).
        pub sent_at: i64,
        /// Arrival (IMAP INTERNALDATE), Unix seconds; lists sort by it.
        pub internal_date: i64,
        /// Raw size in octets.
        pub size: i64,
        /// Whether it has attachments.
        pub has_attachments: bool,
        /// Flag bits (see `mail::Flags`).
        pub flags: i64,
        /// IMAP keywords beyond the system flags, JSON array.
        pub keywords: String,
        /// `ham`, `spam` or `unknown`.
        pub spam_verdict: String,
        /// The spam filter's score, when it ran.
        pub spam_score: Option<f64>,
        /// Whether mail-parser understood the message (if not it is shown raw).
        pub parsed: bool,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A user's labels (Gmail's labels: the mail domain's vocabulary, shown to IMAP as
/// keywords later).
pub mod label {
    use sea_orm::entity::prelude::*;

    /// One label with its counters.
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
        /// Messages carrying it, kept with every change.
        pub total: i64,
        /// Unread messages carrying it, kept with every change.
        pub unread: i64,
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

/// The expunge log: which UIDs left which mailbox at which MODSEQ (RFC 7162 QRESYNC).
pub mod expunged {
    use sea_orm::entity::prelude::*;

    /// One message removed from one mailbox (deleted, or moved away).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_expunged")]
    pub struct Model {
        /// The mailbox it left.
        #[sea_orm(primary_key, auto_increment = false)]
        pub mailbox_id: i64,
        /// Its UID there (never given again in that mailbox).
        #[sea_orm(primary_key, auto_increment = false)]
        pub uid: i64,
        /// The mailbox's MODSEQ of the removal.
        pub modseq: i64,
        /// Owner.
        pub user_id: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Messages users sent in the last day, counted by the sending limits (the limits migration).
pub mod sending {
    use sea_orm::entity::prelude::*;

    /// One message sent by one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_sendings")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The sender.
        pub user_id: i64,
        /// When, Unix seconds.
        pub sent_at: i64,
        /// How many recipients it had.
        pub recipients: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Attachments uploaded for a message not sent yet (the limits migration).
pub mod upload {
    use sea_orm::entity::prelude::*;

    /// One upload; the blob is held by the owner `mail-upload:USER`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_uploads")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The uploader.
        pub user_id: i64,
        /// The blob's hex id (what the client names in a draft's attachments).
        pub blob_id: String,
        /// Its size in bytes.
        pub size: i64,
        /// When it was uploaded, Unix seconds.
        pub created_at: i64,
    }

    /// No relations are navigated.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
