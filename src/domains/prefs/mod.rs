//! The prefs domain: one JSON object per user (replaced or merge-patched, versioned for
//! optimistic concurrency, `PrefsChanged` published in the same transaction) and the
//! attachments the document refers to by id, stored as blobs and collected once no string
//! in the document mentions them (after a grace period). It owns the `prefs` and
//! `prefs_attachments` tables and the `prefs:attachment:*` blob references; it knows no
//! HTTP (ETags and media types of requests are the door's business).

mod attachments;
pub mod config;
mod document;
mod entity;

use std::sync::Arc;

use bytes::Bytes;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait, TryInsertResult};
use serde_json::Value;

use crate::events::{Bus, Event};
use crate::platform::blobs::{BlobError, BlobId, Blobs};
use crate::platform::db::{Db, now};
use config::PrefsConfig;
use entity::{attachment, document as doc_row};

/// How often a write is retried when another write to the same document won the race.
const WRITE_ATTEMPTS: usize = 5;

/// What can go wrong with preferences.
#[derive(Debug, thiserror::Error)]
pub enum PrefsError {
    /// The document (after a patch) is not a JSON object.
    #[error("the preference document must be a JSON object")]
    NotAnObject,
    /// The document is larger than `prefs.max_bytes`.
    #[error("the preference document is larger than {max} bytes")]
    TooLarge {
        /// The limit in bytes of compact JSON.
        max: usize,
    },
    /// The caller expected another version (a stale `If-Match`); nothing was stored.
    #[error("the preferences changed since you read them (now version {current})")]
    PreconditionFailed {
        /// The version stored now.
        current: i64,
    },
    /// Other writers kept winning; try again.
    #[error("the preferences are being changed concurrently; try again")]
    Busy,
    /// The caller's check refused the change from the stored document to the new one;
    /// nothing was stored.
    #[error("this change to the preferences was refused")]
    Refused,
    /// The attachment is larger than `prefs.attachment_max_bytes`.
    #[error("attachment larger than {max} bytes")]
    AttachmentTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The attachment's name or media type was refused.
    #[error("{0}")]
    InvalidAttachment(String),
    /// No such attachment for this user.
    #[error("attachment not found")]
    AttachmentNotFound,
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

/// A user's document and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefsDocument {
    /// The JSON object (`{}` before the first write).
    pub doc: Value,
    /// 0 before the first write, then one more per write.
    pub version: i64,
}

/// Which stored versions a write may replace (HTTP `If-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Any version: no `If-Match`, or `If-Match: *`.
    Any,
    /// Only one of these versions; an empty list matches nothing.
    OneOf(Vec<i64>),
}

impl Expect {
    fn allows(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(versions) => versions.contains(&version),
        }
    }
}

/// What is listed about an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Random id: mention it anywhere in the document to keep the file.
    pub id: String,
    /// File name.
    pub name: String,
    /// Media type.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Upload time (Unix seconds).
    pub created_at: i64,
}

impl From<attachment::Model> for Attachment {
    fn from(m: attachment::Model) -> Self {
        Self { id: m.id, name: m.name, content_type: m.content_type, size: m.size, created_at: m.created_at }
    }
}

fn attachment_owner(id: &str) -> String {
    format!("prefs:attachment:{id}")
}

/// Whether `id` has the shape of an attachment id (32 lower-case hex digits).
fn is_attachment_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Preference documents and their attachments.
#[derive(Clone)]
pub struct PrefsService {
    db: Db,
    blobs: Blobs,
    bus: Bus,
    config: Arc<PrefsConfig>,
    /// User id → the newest document this process has seen (the mail pipeline reads the
    /// filters of every recipient). An entry only ever moves to a higher version, so a
    /// slow read can never put back a document a write has replaced.
    docs: moka::future::Cache<i64, PrefsDocument>,
}

/// Documents kept in memory.
const CACHED_DOCS: u64 = 10_000;

impl PrefsService {
    /// A service over `db`, `blobs` and `bus` with the `[prefs]` limits.
    pub fn new(db: Db, blobs: Blobs, bus: Bus, config: PrefsConfig) -> Self {
        let docs = moka::future::Cache::builder()
            .max_capacity(CACHED_DOCS)
            .time_to_idle(std::time::Duration::from_secs(3600))
            .build();
        Self { db, blobs, bus, config: Arc::new(config), docs }
    }

    /// The user's document (`{}` at version 0 if never written).
    pub async fn get(&self, user_id: i64) -> Result<PrefsDocument, PrefsError> {
        if let Some(doc) = self.docs.get(&user_id).await {
            metrics::counter!("postcast_cache_lookups_total", "cache" => "prefs", "outcome" => "hit").increment(1);
            return Ok(doc);
        }
        metrics::counter!("postcast_cache_lookups_total", "cache" => "prefs", "outcome" => "miss").increment(1);
        let doc = match doc_row::Entity::find_by_id(user_id).one(&self.db).await? {
            Some(row) => PrefsDocument { doc: document::decode_stored(&row.doc)?, version: row.version },
            None => PrefsDocument { doc: document::empty(), version: 0 },
        };
        self.remember(user_id, &doc).await;
        Ok(doc)
    }

    /// Caches `doc` unless a document of its version or newer is cached already.
    async fn remember(&self, user_id: i64, doc: &PrefsDocument) {
        use moka::ops::compute::Op;
        self.docs
            .entry(user_id)
            .and_compute_with(|cached| {
                let newer = cached.is_none_or(|c| c.value().version < doc.version);
                std::future::ready(if newer { Op::Put(doc.clone()) } else { Op::Nop })
            })
            .await;
    }

    /// Replaces the whole document with `doc`, if the stored version is `expect`ed.
    pub async fn replace(&self, user_id: i64, doc: Value, expect: &Expect) -> Result<PrefsDocument, PrefsError> {
        self.replace_if(user_id, doc, expect, |_, _| true).await
    }

    /// Like [`PrefsService::replace`], refused with [`PrefsError::Refused`] unless
    /// `allowed(stored, new)` holds for the very document it replaces.
    pub async fn replace_if(
        &self,
        user_id: i64,
        doc: Value,
        expect: &Expect,
        allowed: impl Fn(&Value, &Value) -> bool,
    ) -> Result<PrefsDocument, PrefsError> {
        self.write(user_id, expect, |_| doc.clone(), allowed).await
    }

    /// Applies a JSON Merge Patch (RFC 7396) to the document, if the stored version is
    /// `expect`ed.
    pub async fn merge_patch(&self, user_id: i64, patch: &Value, expect: &Expect) -> Result<PrefsDocument, PrefsError> {
        self.merge_patch_if(user_id, patch, expect, |_, _| true).await
    }

    /// Like [`PrefsService::merge_patch`], refused with [`PrefsError::Refused`] unless
    /// `allowed(stored, patched)` holds for the very document it patches.
    pub async fn merge_patch_if(
        &self,
        user_id: i64,
        patch: &Value,
        expect: &Expect,
        allowed: impl Fn(&Value, &Value) -> bool,
    ) -> Result<PrefsDocument, PrefsError> {
        self.write(user_id, expect, |current| document::merge(current, patch), allowed).await
    }

    /// Reads, checks the precondition, computes the new document, asks `allowed`, and
    /// stores it only if the version is still the one read (compare-and-swap), together
    /// with a `PrefsChanged` event; retries when another write came first.
    async fn write(
        &self,
        user_id: i64,
        expect: &Expect,
        change: impl Fn(&Value) -> Value,
        allowed: impl Fn(&Value, &Value) -> bool,
    ) -> Result<PrefsDocument, PrefsError> {
        for _ in 0..WRITE_ATTEMPTS {
            let row = doc_row::Entity::find_by_id(user_id).one(&self.db).await?;
            let (current, version) = match &row {
                Some(r) => (document::decode_stored(&r.doc)?, r.version),
                None => (document::empty(), 0),
            };
            if !expect.allows(version) {
                return Err(PrefsError::PreconditionFailed { current: version });
            }
            let next = change(&current);
            if !allowed(&current, &next) {
                return Err(PrefsError::Refused);
            }
            let text = document::encode(&next, self.config.max_bytes)?;
            // The first statement writes, so SQLite takes the write lock at once (waiting
            // its busy timeout) instead of failing to upgrade a read transaction.
            let txn = self.db.begin().await?;
            let swapped = if row.is_some() {
                doc_row::Entity::update_many()
                    .col_expr(doc_row::Column::Doc, Expr::value(text))
                    .col_expr(doc_row::Column::Version, Expr::value(version + 1))
                    .col_expr(doc_row::Column::UpdatedAt, Expr::value(now()))
                    .filter(doc_row::Column::UserId.eq(user_id))
                    .filter(doc_row::Column::Version.eq(version))
                    .exec(&txn)
                    .await?
                    .rows_affected
                    == 1
            } else {
                let first = doc_row::ActiveModel {
                    user_id: Set(user_id),
                    doc: Set(text),
                    version: Set(1),
                    updated_at: Set(now()),
                };
                let res = doc_row::Entity::insert(first).on_conflict_do_nothing().exec_without_returning(&txn).await?;
                matches!(res, TryInsertResult::Inserted(n) if n > 0)
            };
            if !swapped {
                txn.rollback().await?;
                continue;
            }
            Bus::publish(&txn, &Event::PrefsChanged { user_id }).await?;
            txn.commit().await?;
            self.bus.wake();
            let written = PrefsDocument { doc: next, version: version + 1 };
            self.remember(user_id, &written).await;
            return Ok(written);
        }
        Err(PrefsError::Busy)
    }

    /// Stores an attachment for the user. `name` and `media_type` are what the client
    /// said (cleaned and checked); the bytes are stored as sent.
    pub async fn add_attachment(
        &self,
        user_id: i64,
        name: Option<&str>,
        media_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<Attachment, PrefsError> {
        if bytes.len() > self.config.attachment_max_bytes {
            return Err(PrefsError::AttachmentTooLarge { max: self.config.attachment_max_bytes });
        }
        let name = attachments::name(name)?;
        let content_type = attachments::media_type(media_type)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let size = i64::try_from(bytes.len()).map_err(|e| PrefsError::Internal(e.to_string()))?;
        let blob = self.blobs.put(bytes, &attachment_owner(&id)).await?;
        let row = attachment::Model {
            id: id.clone(),
            user_id,
            blob_id: blob.to_string(),
            name,
            content_type,
            size,
            created_at: now(),
        };
        let active: attachment::ActiveModel = row.clone().into();
        if let Err(e) = attachment::Entity::insert(active).exec_without_returning(&self.db).await {
            if let Err(re) = self.blobs.release(&blob, &attachment_owner(&id)).await {
                tracing::warn!(user_id, error = %re, "blob of a failed attachment not released");
            }
            return Err(e.into());
        }
        Ok(row.into())
    }

    /// The user's attachments, oldest first.
    pub async fn attachments(&self, user_id: i64) -> Result<Vec<Attachment>, PrefsError> {
        let rows = attachment::Entity::find()
            .filter(attachment::Column::UserId.eq(user_id))
            .order_by_asc(attachment::Column::CreatedAt)
            .order_by_asc(attachment::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(Attachment::from).collect())
    }

    /// One of the user's attachments with its bytes; another user's is "not found".
    pub async fn attachment(&self, user_id: i64, id: &str) -> Result<(Attachment, Bytes), PrefsError> {
        if !is_attachment_id(id) {
            return Err(PrefsError::AttachmentNotFound);
        }
        let row = attachment::Entity::find_by_id(id.to_owned())
            .filter(attachment::Column::UserId.eq(user_id))
            .one(&self.db)
            .await?
            .ok_or(PrefsError::AttachmentNotFound)?;
        let blob = BlobId::try_from(row.blob_id.clone()).map_err(|e| PrefsError::Internal(e.to_string()))?;
        let bytes = match self.blobs.get(&blob).await {
            Ok(b) => b,
            // Collected between the row read and the blob read.
            Err(BlobError::NotFound) => return Err(PrefsError::AttachmentNotFound),
            Err(e) => return Err(e.into()),
        };
        Ok((row.into(), bytes))
    }

    /// Deletes the user's attachments that are older than the grace period and that no
    /// string in the current document mentions; returns how many. Idempotent: the blob
    /// is released before the row goes, so an interrupted run is finished by the next.
    pub async fn collect_attachments(&self, user_id: i64) -> Result<usize, PrefsError> {
        let doc = self.get(user_id).await?.doc;
        let grace = i64::try_from(self.config.attachment_grace_seconds).unwrap_or(i64::MAX);
        let cutoff = now().saturating_sub(grace);
        let old = attachment::Entity::find()
            .filter(attachment::Column::UserId.eq(user_id))
            .filter(attachment::Column::CreatedAt.lte(cutoff))
            .all(&self.db)
            .await?;
        let mut collected = 0;
        for row in old.into_iter().filter(|r| !document::mentions(&doc, &r.id)) {
            let blob = BlobId::try_from(row.blob_id.clone()).map_err(|e| PrefsError::Internal(e.to_string()))?;
            self.blobs.release(&blob, &attachment_owner(&row.id)).await?;
            attachment::Entity::delete_by_id(row.id.clone()).exec(&self.db).await?;
            collected += 1;
        }
        if collected > 0 {
            tracing::info!(user_id, collected, "unreferenced preference attachments deleted");
        }
        Ok(collected)
    }

    /// Bus subscriber: on `PrefsChanged`, collects the user's unreferenced attachments.
    pub async fn handle_event(&self, event: Event) -> Result<(), PrefsError> {
        match event {
            Event::PrefsChanged { user_id } => self.collect_attachments(user_id).await.map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
