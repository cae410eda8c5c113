//! The durable outbound queue: mail for other servers, DKIM-signed once when queued, kept
//! as a blob (owner `outbound:ID`) with one row per message and one per recipient, and
//! delivered by a worker task ([`OutboundQueue::start`]) over SMTP: MX look-up (or the
//! smarthost, or a fixed override), STARTTLS, per-recipient results, exponential back-off
//! for temporary failures, and one RFC 3464 bounce per failure handed to a
//! [`BounceSink`]. All state is in rows, so a restart simply resumes.
//!
//! It owns the `outbound_messages` and `outbound_recipients` tables and the `outbound:*`
//! blob references. It decides nothing about who may send what (its callers do: the mail
//! service for local users, after authentication), never delivers locally (bounces go to
//! the sink), and knows no HTTP.
//!
//! Invariants:
//! - **`enqueue` returns only once the blob is durable and the rows committed**, in one
//!   transaction with the blob reference: a crash before leaves nothing queued. Callers
//!   that must queue together with other writes (sending) use [`OutboundQueue::prepare`]
//!   and [`insert_in`] inside their own transaction.
//! - **A message is delivered at least once per recipient**: a crash mid-attempt repeats
//!   the attempt; recipients already marked delivered are never sent again.
//! - **No bounce of a bounce**: mail with the null reverse-path never produces a DSN.

pub mod config;
mod delivery;
pub mod dkim;
pub mod dsn;
mod entities;
mod targets;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use tokio::sync::{Notify, OnceCell};

use self::config::OutboundConfig;
use self::delivery::Deliverer;
use self::dkim::{DkimError, DkimKey};
pub use self::entities::{MessageStatus, RecipientStatus};
use self::entities::{message, recipient};
use super::dns::Dns;
use crate::platform::blobs::{BlobError, BlobId, Blobs};
use crate::platform::db::{Db, now};

/// The longest accepted address (RFC 5321 §4.5.3.1.3: a path of 256 octets with its brackets).
const MAX_ADDRESS: usize = 254;

/// Where bounces go: `app.rs` wires it to the mail service, which files the DSN in a
/// local sender's inbox or queues it for a remote one.
pub trait BounceSink: Send + Sync {
    /// Delivers the DSN `raw` to `to`. An error is retried later.
    fn deliver_bounce(&self, to: &str, raw: Vec<u8>) -> BoxFuture<'_, Result<(), BounceError>>;
}

/// Why a bounce could not be handed over; the worker tries again later.
#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    /// The sender's account could not be looked up.
    #[error("bounce recipient lookup: {0}")]
    Lookup(#[from] super::MailError),
    /// The local sender's mailbox could not take it.
    #[error("bounce not delivered: {0}")]
    Deliver(#[from] super::deliver::DeliverError),
    /// It could not be queued for a remote sender.
    #[error("bounce not queued: {0}")]
    Queue(#[source] Box<QueueError>),
    /// No outbound queue is wired for a remote sender.
    #[error("no outbound queue for the bounce")]
    NoQueue,
}

/// A failure that is not the caller's fault, with its cause.
pub type InternalError = Box<dyn std::error::Error + Send + Sync>;

/// What the queue refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// An envelope address is not a plain `local@domain`.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// The message has no recipients.
    #[error("no recipients")]
    NoRecipients,
    /// The message cannot be sent (it cannot be signed: no header fields).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// No such queued message (or it is somebody else's).
    #[error("queued message not found")]
    NotFound,
    /// The message is already delivered or bounced.
    #[error("the message has left the queue")]
    Finished,
    /// The DKIM key cannot be loaded or made.
    #[error("{0}")]
    Dkim(#[source] DkimError),
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Blob store failure.
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    /// Anything else that is not the caller's fault.
    #[error("{0}")]
    Internal(#[source] InternalError),
}

/// One recipient of a queued message as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RecipientState {
    /// The address.
    pub address: String,
    /// Where it is.
    pub status: RecipientStatus,
    /// The last reply or error.
    pub reply: Option<String>,
    /// The server that answered last.
    pub remote_mta: Option<String>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// A queued (or recently finished) message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct QueuedMessage {
    /// The queue id.
    pub id: i64,
    /// The sending user, none for the server's own mail.
    #[serde(skip)]
    pub owner: Option<i64>,
    /// The reverse-path.
    pub envelope_from: String,
    /// The Subject.
    pub subject: String,
    /// Size in bytes, signature included.
    pub size: i64,
    /// Where it is: `queued` or `done`.
    pub status: MessageStatus,
    /// Attempts made.
    pub attempts: i32,
    /// When it was queued.
    pub created_at: i64,
    /// When it is tried next (meaningless once done).
    pub next_attempt_at: i64,
    /// When it was last tried.
    pub last_attempt_at: Option<i64>,
    /// Why the last attempt left recipients waiting.
    pub last_error: Option<String>,
    /// Every recipient with its state.
    pub recipients: Vec<RecipientState>,
}

/// The outbound queue service.
#[derive(Clone)]
pub struct OutboundQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    blobs: Blobs,
    domain: String,
    data_dir: std::path::PathBuf,
    selector: String,
    config: OutboundConfig,
    dkim: OnceCell<Arc<DkimKey>>,
    deliverer: Deliverer,
    sink: RwLock<Arc<dyn BounceSink>>,
    wake: Notify,
    /// Messages an attempt is running for.
    in_flight: Mutex<HashSet<i64>>,
}

/// How the queue is set up.
pub struct QueueSettings {
    /// The mail domain: DKIM `d=`, MAILER-DAEMON's domain, default EHLO name.
    pub domain: String,
    /// Where the DKIM key lives (`DATA_DIR/dkim/SELECTOR.pem`).
    pub data_dir: std::path::PathBuf,
    /// The DKIM selector.
    pub selector: String,
    /// `[outbound]`.
    pub config: OutboundConfig,
}

/// The blob owner of queued message `id`.
fn blob_owner(id: i64) -> String {
    format!("outbound:{id}")
}

/// Whether `a` is an address the queue can put in an SMTP envelope: `local@domain`, ASCII,
/// without spaces, brackets or control characters.
pub fn is_valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty()
        && a.len() <= MAX_ADDRESS
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'[' || b == b']' || b == b':')
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'(' | b')' | b',' | b';' | b'\\' | b'@'))
}

/// `raw` with every line ending in CRLF: a bare LF or a bare CR becomes CRLF.
fn crlf_lines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64);
    let mut bytes = raw.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
    }
    out
}

/// The Subject of `raw`, empty when there is none.
fn subject_of(raw: &[u8]) -> String {
    mail_parser::MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(|s| s.chars().take(300).collect()))
        .unwrap_or_default()
}

/// A message checked and signed by [`OutboundQueue::prepare`], ready to be queued.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The account it is sent for (None: the server's own mail).
    owner: Option<i64>,
    /// The envelope sender (empty: the null sender).
    envelope_from: String,
    /// The recipients, valid and without duplicates.
    recipients: Vec<String>,
    /// The subject, for listings.
    subject: String,
    /// The DKIM-signed message: the blob to write before [`insert_in`].
    pub signed: Bytes,
}

/// Queues `outgoing` inside `txn`: a row per message (status `queued`), a row per
/// recipient and the `outbound:ID` blob reference, with `blobs[i]` the id of
/// `outgoing[i].signed`, already written durably by the caller. Returns the queue ids.
pub async fn insert_in<C: ConnectionTrait>(
    txn: &C,
    outgoing: &[Outgoing],
    blobs: &[BlobId],
) -> Result<Vec<i64>, QueueError> {
    let t = now();
    let mut ids = Vec::with_capacity(outgoing.len());
    for (out, blob) in outgoing.iter().zip(blobs) {
        let row = message::ActiveModel {
            user_id: Set(out.owner),
            envelope_from: Set(out.envelope_from.clone()),
            blob_id: Set(blob.to_string()),
            subject: Set(out.subject.clone()),
            size: Set(out.signed.len() as i64),
            status: Set(MessageStatus::Queued),
            attempts: Set(0),
            created_at: Set(t),
            next_attempt_at: Set(t),
            ..Default::default()
        }
        .insert(txn)
        .await?;
        let rows = out.recipients.iter().map(|a| recipient::ActiveModel {
            message_id: Set(row.id),
            address: Set(a.clone()),
            domain: Set(a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()),
            status: Set(RecipientStatus::Queued),
            notified: Set(false),
            updated_at: Set(t),
            ..Default::default()
        });
        recipient::Entity::insert_many(rows).exec(txn).await?;
        Blobs::add_ref_in(txn, blob, &blob_owner(row.id)).await?;
        tracing::info!(queue_id = row.id, recipients = out.recipients.len(), "queued for delivery");
        ids.push(row.id);
    }
    Ok(ids)
}

impl OutboundQueue {
    /// A queue over `db` and `blobs` that resolves with `dns` and hands bounces to `sink`.
    /// The DKIM key is loaded (made on first use) by [`OutboundQueue::dkim_key`].
    pub fn new(
        db: Db,
        blobs: Blobs,
        dns: Dns,
        settings: QueueSettings,
        sink: Arc<dyn BounceSink>,
    ) -> Result<Self, QueueError> {
        let helo = if settings.config.helo_name.is_empty() {
            settings.domain.clone()
        } else {
            settings.config.helo_name.clone()
        };
        let deliverer =
            Deliverer::new(dns, settings.config.clone(), helo).map_err(|e| QueueError::Internal(e.into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                domain: settings.domain,
                data_dir: settings.data_dir,
                selector: settings.selector,
                config: settings.config,
                dkim: OnceCell::new(),
                deliverer,
                sink: RwLock::new(sink),
                wake: Notify::new(),
                in_flight: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Replaces the bounce sink (for wiring where the sink's service needs this queue).
    pub fn set_bounce_sink(&self, sink: Arc<dyn BounceSink>) {
        if let Ok(mut s) = self.inner.sink.write() {
            *s = sink;
        }
    }

    fn sink(&self) -> Option<Arc<dyn BounceSink>> {
        self.inner.sink.read().ok().map(|s| s.clone())
    }

    /// The DKIM key, loaded from `DATA_DIR/dkim/SELECTOR.pem` or made and stored there.
    pub async fn dkim_key(&self) -> Result<Arc<DkimKey>, QueueError> {
        let inner = self.inner.clone();
        self.inner
            .dkim
            .get_or_try_init(|| async move {
                let (dir, domain, selector) = (inner.data_dir.clone(), inner.domain.clone(), inner.selector.clone());
                tokio::task::spawn_blocking(move || DkimKey::load_or_create(&dir, &domain, &selector))
                    .await
                    .map_err(|e| QueueError::Internal(e.into()))?
                    .map(Arc::new)
                    .map_err(QueueError::Dkim)
            })
            .await
            .cloned()
    }

    /// Queues `raw` from `envelope_from` (empty: the null sender) to `recipients` for
    /// `owner` (None: the server's own mail). Signs it with DKIM, stores it durably,
    /// commits the rows and wakes the worker; returns the queue id.
    pub async fn enqueue(
        &self,
        owner: Option<i64>,
        envelope_from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<i64, QueueError> {
        let outgoing = self.prepare(owner, envelope_from, recipients, raw).await?;
        let (ids, blobs) = self.inner.blobs.write_many(std::slice::from_ref(&outgoing.signed)).await?;
        let txn = crate::platform::db::begin_write(&self.inner.db).await?;
        blobs.store_in(&txn).await?;
        let queued = insert_in(&txn, std::slice::from_ref(&outgoing), &ids).await?;
        txn.commit().await?;
        self.wake();
        queued.first().copied().ok_or(QueueError::NoRecipients)
    }

    /// Checks and DKIM-signs `raw` for queueing from `envelope_from` to `recipients` on
    /// behalf of `owner`, without storing anything: the caller commits the result with
    /// [`insert_in`] in its own transaction (so a message is queued together with
    /// whatever else that transaction stores, or not at all) and then calls
    /// [`OutboundQueue::wake`].
    pub async fn prepare(
        &self,
        owner: Option<i64>,
        envelope_from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<Outgoing, QueueError> {
        if !envelope_from.is_empty() && !is_valid_address(envelope_from) {
            return Err(QueueError::InvalidAddress(envelope_from.to_owned()));
        }
        let mut seen = HashSet::new();
        let mut rcpts = Vec::new();
        for r in recipients {
            let r = r.trim();
            if !is_valid_address(r) {
                return Err(QueueError::InvalidAddress(r.to_owned()));
            }
            if seen.insert(r.to_ascii_lowercase()) {
                rcpts.push(r.to_owned());
            }
        }
        if rcpts.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        // RFC 5322 §3.6: From is required, and DKIM must sign it (RFC 6376 §5.4).
        let has_from = mail_parser::MessageParser::new().parse_headers(raw).is_some_and(|m| m.from().is_some());
        if !has_from {
            return Err(QueueError::InvalidMessage("no From header field".into()));
        }
        let key = self.dkim_key().await?;
        // An RSA signature over the whole body is CPU work: a blocking thread makes it.
        // Lines end in CRLF on the wire (RFC 5321 §2.3.8): bare CR or LF would be sent
        // altered (and break the signature), so they become CRLF before signing.
        let to_sign = crlf_lines(raw);
        let signing = tokio::task::spawn_blocking(move || key.sign(&to_sign));
        let signed = match signing.await.map_err(|e| QueueError::Internal(e.into()))? {
            Ok(s) => s,
            Err(DkimError::Sign(e)) => return Err(QueueError::InvalidMessage(e.to_string())),
            Err(e) => return Err(QueueError::Dkim(e)),
        };
        Ok(Outgoing {
            owner,
            envelope_from: envelope_from.to_owned(),
            recipients: rcpts,
            subject: subject_of(raw),
            signed: Bytes::from(signed),
        })
    }

    /// Wakes the worker after messages were queued with [`insert_in`].
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The messages of `owner` (None: everybody's), newest first, with their recipients.
    pub async fn list(&self, owner: Option<i64>) -> Result<Vec<QueuedMessage>, QueueError> {
        let mut q = message::Entity::find().filter(message::Column::Status.ne(MessageStatus::New));
        if let Some(user) = owner {
            q = q.filter(message::Column::UserId.eq(user));
        }
        let messages = q.order_by_desc(message::Column::Id).limit(1000).all(&self.inner.db).await?;
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let mut rcpts = recipient::Entity::find()
            .filter(recipient::Column::MessageId.is_in(ids))
            .order_by_asc(recipient::Column::Id)
            .all(&self.inner.db)
            .await?;
        Ok(messages
            .into_iter()
            .map(|m| {
                let mine: Vec<RecipientState> = rcpts
                    .extract_if(.., |r| r.message_id == m.id)
                    .map(|r| RecipientState {
                        address: r.address,
                        status: r.status,
                        reply: r.reply,
                        remote_mta: r.remote_mta,
                        updated_at: r.updated_at,
                    })
                    .collect();
                QueuedMessage {
                    id: m.id,
                    owner: m.user_id,
                    envelope_from: m.envelope_from,
                    subject: m.subject,
                    size: m.size,
                    status: m.status,
                    attempts: m.attempts,
                    created_at: m.created_at,
                    next_attempt_at: m.next_attempt_at,
                    last_attempt_at: m.last_attempt_at,
                    last_error: m.last_error,
                    recipients: mine,
                }
            })
            .collect())
    }

    /// The message `id` if `owner` (None: anybody) may see it.
    async fn find(&self, owner: Option<i64>, id: i64) -> Result<message::Model, QueueError> {
        let m = message::Entity::find_by_id(id).one(&self.inner.db).await?.ok_or(QueueError::NotFound)?;
        if m.status == MessageStatus::New || owner.is_some_and(|o| m.user_id != Some(o)) {
            return Err(QueueError::NotFound);
        }
        Ok(m)
    }

    /// Makes a queued message due now and wakes the worker.
    pub async fn retry_now(&self, owner: Option<i64>, id: i64) -> Result<(), QueueError> {
        let m = self.find(owner, id).await?;
        if m.status != MessageStatus::Queued {
            return Err(QueueError::Finished);
        }
        message::Entity::update_many()
            .col_expr(message::Column::NextAttemptAt, Expr::value(now()))
            .filter(message::Column::Id.eq(id))
            .exec(&self.inner.db)
            .await?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Removes a message from the queue (recipients not yet delivered are not tried again
    /// and get no bounce) and lets its blob go.
    pub async fn cancel(&self, owner: Option<i64>, id: i64) -> Result<(), QueueError> {
        let m = self.find(owner, id).await?;
        message::Entity::delete_by_id(id).exec(&self.inner.db).await?;
        self.release_blob(&m).await;
        tracing::info!(queue_id = id, "removed from the outbound queue");
        Ok(())
    }

    async fn release_blob(&self, m: &message::Model) {
        match BlobId::try_from(m.blob_id.clone()) {
            Ok(blob) => {
                if let Err(e) = self.inner.blobs.release(&blob, &blob_owner(m.id)).await {
                    tracing::warn!(queue_id = m.id, error = %e, "cannot release the queued message's blob");
                }
            }
            Err(_) => tracing::warn!(queue_id = m.id, "bad stored blob id"),
        }
    }

    /// Queued messages, for the gauge.
    async fn queued_count(&self) -> Result<u64, QueueError> {
        use sea_orm::PaginatorTrait;
        Ok(message::Entity::find()
            .filter(message::Column::Status.eq(MessageStatus::Queued))
            .count(&self.inner.db)
            .await?)
    }
}
