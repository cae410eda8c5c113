//! The mail domain: the message store (mailboxes, message rows, threads, flags, labels;
//! raw messages as blobs), the delivery pipeline every received or sent message goes
//! through, and the queries and actions of the web UI and IMAP. It owns its tables
//! (mailboxes, threads, messages, labels, message_labels, mail_expunged, the outbound
//! queue's); other domains learn of its changes through its events, never its tables.
//!
//! Invariants:
//! - **A message is acknowledged only once durable**: [`MailService::store`] returns after
//!   the raw blob is fsynced and the transaction holding its row and its `MailStored`
//!   event is committed. Concurrent deliveries share one fsync round and one transaction
//!   (group commit, [`store`]).
//! - **Nothing is lost**: a message mail-parser cannot read is stored with `parsed: false`
//!   and shown raw.
//! - **Every query and action takes the owner's id** and finds nothing of anybody else's.
//! - **A change commits with its bookkeeping**: every write is one transaction holding the
//!   change, the new MODSEQ of each touched mailbox, the mailbox and label counters, the
//!   expunge log rows and the change events (see [`changes`]); the bus is woken after it.

pub mod actions;
pub mod authn;
pub mod changes;
pub mod compose;
pub mod config;
pub mod deliver;
pub mod dns;
pub mod entities;
pub mod filters;
pub mod labels;
pub mod outbound;
pub mod parse;
mod roles;
pub mod scan;
pub mod send;
pub mod store;
pub mod thread;
pub mod transfer;
pub mod uid_view;
mod usage;
pub mod view;

#[cfg(test)]
mod changes_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sea_orm::DbErr;
use serde::{Deserialize, Serialize};

use crate::domains::auth::AuthService;
use crate::domains::prefs::PrefsService;
use crate::events::Bus;
use crate::platform::blobs::{BlobError, Blobs};
use crate::platform::db::Db;

pub use parse::{Mailbox as Address, Meta};
pub use store::{NewMessage, Stored};

/// Errors of the mail domain.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// No such message, mailbox, thread or attachment for this user.
    #[error("not found")]
    NotFound,
    /// The request is not valid (bad name, bad cursor, system mailbox change, ...).
    #[error("{0}")]
    Invalid(String),
    /// A mailbox of that name exists.
    #[error("a mailbox with that name exists")]
    Exists,
    /// A label of that name exists.
    #[error("a label with that name exists")]
    LabelExists,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    /// The store's committer is gone (shutting down).
    #[error("the mail store is shutting down")]
    Closed,
    /// Storing failed on a fault of ours (the committer panicked); nothing was stored and
    /// trying again may work.
    #[error("the message could not be stored; try again")]
    Interrupted,
    /// The user's storage is full (or its usage could not be read).
    #[error(transparent)]
    Quota(#[from] crate::platform::quota::QuotaError),
    /// Queueing for other servers failed inside the store's transaction.
    #[error("outbound queue: {0}")]
    Queue(#[source] Box<outbound::QueueError>),
}

/// The role of a system mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// New mail.
    Inbox,
    /// Copies of sent mail.
    Sent,
    /// Unsent drafts.
    Drafts,
    /// Mail the spam filter or the user marked as spam.
    Spam,
    /// Deleted mail, until emptied.
    Trash,
    /// Mail out of the inbox ("All Mail" without the rest).
    Archive,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 6] = [Role::Inbox, Role::Drafts, Role::Sent, Role::Archive, Role::Spam, Role::Trash];

    /// The stored name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inbox => "inbox",
            Role::Sent => "sent",
            Role::Drafts => "drafts",
            Role::Spam => "spam",
            Role::Trash => "trash",
            Role::Archive => "archive",
        }
    }

    /// The mailbox name the role gets (IMAP special-use names, RFC 6154).
    pub fn mailbox_name(self) -> &'static str {
        match self {
            Role::Inbox => "INBOX",
            Role::Sent => "Sent",
            Role::Drafts => "Drafts",
            Role::Spam => "Spam",
            Role::Trash => "Trash",
            Role::Archive => "Archive",
        }
    }

    /// The role stored as `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Message flags as bits of `messages.flags` (IMAP system flags plus Gmail's "important").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags(pub i64);

impl Flags {
    /// `\Seen`: read.
    pub const SEEN: i64 = 1;
    /// `\Answered`.
    pub const ANSWERED: i64 = 2;
    /// `\Flagged`: starred.
    pub const FLAGGED: i64 = 4;
    /// `\Deleted`: marked for expunge (IMAP).
    pub const DELETED: i64 = 8;
    /// `\Draft`.
    pub const DRAFT: i64 = 16;
    /// `$Important`: Gmail's important marker.
    pub const IMPORTANT: i64 = 32;

    /// Whether `bit` is set.
    pub fn has(self, bit: i64) -> bool {
        self.0 & bit != 0
    }

    /// With `bit` set or cleared.
    pub fn with(self, bit: i64, on: bool) -> Flags {
        Flags(if on { self.0 | bit } else { self.0 & !bit })
    }
}

/// The spam filter's verdict stored with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpamVerdict {
    /// Not spam.
    Ham,
    /// Spam: goes to the Spam mailbox.
    Spam,
    /// Not judged (sent mail, imports, no filter).
    Unknown,
}

impl SpamVerdict {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SpamVerdict::Ham => "ham",
            SpamVerdict::Spam => "spam",
            SpamVerdict::Unknown => "unknown",
        }
    }
}

/// The mail service: store, delivery pipeline, queries and actions.
#[derive(Clone)]
pub struct MailService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    blobs: Blobs,
    bus: Bus,
    auth: AuthService,
    prefs: PrefsService,
    store: store::Store,
    scanners: scan::Scanners,
    authn: Option<authn::InboundAuth>,
    outbound: std::sync::OnceLock<outbound::OutboundQueue>,
    limits: std::sync::OnceLock<send::Limits>,
    inbound: std::sync::OnceLock<config::InboundConfig>,
    /// One lock per user sending right now: a user's limits are checked and their sending
    /// committed one message at a time.
    senders: moka::sync::Cache<i64, Arc<tokio::sync::Mutex<()>>>,
    domain: String,
}

impl MailService {
    /// Builds the service and starts its committer task. `scanners` fill the virus and spam
    /// slots of delivery; `authn` checks SPF, DKIM and DMARC of mail from other servers
    /// (None: not checked, e.g. in unit tests).
    #[expect(clippy::too_many_arguments, reason = "app.rs hands each service in by name")]
    pub fn new(
        db: Db,
        blobs: Blobs,
        bus: Bus,
        auth: AuthService,
        prefs: PrefsService,
        scanners: scan::Scanners,
        authn: Option<authn::InboundAuth>,
        domain: &str,
    ) -> Self {
        let store = store::Store::start(db.clone(), blobs.clone(), bus.clone());
        let inner = Inner {
            db,
            blobs,
            bus,
            auth,
            prefs,
            store,
            scanners,
            authn,
            outbound: std::sync::OnceLock::new(),
            limits: std::sync::OnceLock::new(),
            inbound: std::sync::OnceLock::new(),
            senders: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            domain: domain.to_ascii_lowercase(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Sets what delivery does with mail failing authentication (before the first
    /// message; the defaults hold until then).
    pub fn set_inbound_policy(&self, policy: config::InboundConfig) {
        let _ = self.inner.inbound.set(policy);
    }

    /// What delivery does with mail failing authentication.
    fn inbound_policy(&self) -> &config::InboundConfig {
        self.inner.inbound.get_or_init(config::InboundConfig::default)
    }

    /// The mail domain users' addresses are at.
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Stores messages durably (see [`store`]); returns once they are.
    pub async fn store(
        &self,
        raw: bytes::Bytes,
        meta: Arc<Meta>,
        targets: Vec<NewMessage>,
    ) -> Result<Vec<Stored>, MailError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let work = store::Work { parts: vec![store::Part { raw, meta, targets }], ..store::Work::default() };
        Ok(self.commit(work).await?.stored.pop().unwrap_or_default())
    }

    /// Commits `work` in one transaction (see [`store`]) and charges every stored copy
    /// to its owner's storage quota: the one place stored mail is counted.
    pub(crate) async fn commit(&self, work: store::Work) -> Result<store::Committed, MailError> {
        let sizes: Vec<u64> = work.parts.iter().map(|p| p.raw.len() as u64).collect();
        let committed = self.inner.store.commit_work(work).await?;
        for (size, copies) in sizes.iter().zip(&committed.stored) {
            for copy in copies {
                self.limits().quota.charge(copy.user_id, *size);
            }
        }
        Ok(committed)
    }
}
