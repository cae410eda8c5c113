//! The durable message store with group commit. Deliveries are handed to one committer
//! task; it takes every delivery waiting at that moment as one batch, writes their raw
//! blobs (fsynced in parallel, one fsync per folder), then stores all their rows, UIDs,
//! threads, labels and `MailStored` events in one SQLite transaction (one WAL fsync), and
//! only then answers each caller. Under load a batch grows while the previous one is on
//! disk, so the cost of durability is shared by every message in it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, Set, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::entities::{mailbox, message};
use super::parse::Meta;
use super::{Flags, MailError, Role, SpamVerdict, thread};
use crate::domains::tags::entities::{label, message_label};
use crate::events::{Bus, Event};
use crate::platform::blobs::{BlobId, Blobs};
use crate::platform::db::{Db, now};

/// The most deliveries committed in one transaction.
const MAX_BATCH: usize = 256;

/// Where a new message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The user's system mailbox with this role (created on first use).
    Role(Role),
    /// A mailbox by id (must be the user's).
    Mailbox(i64),
}

/// One copy of a message to store for one user.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The owner.
    pub user_id: i64,
    /// The mailbox.
    pub target: Target,
    /// Initial flags.
    pub flags: Flags,
    /// Labels by name, created when missing.
    pub labels: Vec<String>,
    /// Arrival time (IMAP INTERNALDATE), Unix seconds.
    pub internal_date: i64,
    /// The spam filter's verdict.
    pub spam: SpamVerdict,
    /// The spam filter's score.
    pub spam_score: Option<f64>,
    /// For the sender's copy in Sent: every recipient, published as `MailSent` in the
    /// same transaction.
    pub sent_to: Option<Vec<String>>,
}

impl NewMessage {
    /// A copy for `user_id` in `target`, arriving now, unflagged and unjudged.
    pub fn new(user_id: i64, target: Target) -> Self {
        Self {
            user_id,
            target,
            flags: Flags::default(),
            labels: Vec::new(),
            internal_date: now(),
            spam: SpamVerdict::Unknown,
            spam_score: None,
            sent_to: None,
        }
    }
}

/// A stored copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Stored {
    /// The message row.
    pub id: i64,
    /// The owner.
    pub user_id: i64,
    /// The mailbox it is in.
    pub mailbox_id: i64,
    /// Its IMAP UID there.
    pub uid: i64,
    /// Its conversation.
    pub thread_id: i64,
}

struct Job {
    raw: Bytes,
    meta: Arc<Meta>,
    targets: Vec<NewMessage>,
    reply: oneshot::Sender<Result<Vec<Stored>, MailError>>,
}

/// The handle to the committer task.
pub(crate) struct Store {
    tx: mpsc::Sender<Job>,
}

impl Store {
    /// Starts the committer.
    pub(crate) fn start(db: Db, blobs: Blobs, bus: Bus) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(Committer { db, blobs, bus }.run(rx));
        Self { tx }
    }

    /// Stores `raw` once and a row for every target; returns once all is durable.
    pub(crate) async fn commit(
        &self,
        raw: Bytes,
        meta: Arc<Meta>,
        targets: Vec<NewMessage>,
    ) -> Result<Vec<Stored>, MailError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { raw, meta, targets, reply }).await.map_err(|_| MailError::Closed)?;
        answer.await.map_err(|_| MailError::Closed)?
    }
}

struct Committer {
    db: Db,
    blobs: Blobs,
    bus: Bus,
}

impl Committer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("postcast_mail_commit_batch").record(batch.len() as f64);
            match self.commit_batch(&batch).await {
                Ok(results) => {
                    for (job, stored) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(Ok(stored));
                    }
                }
                // One bad delivery must not fail its neighbours: retry each on its own.
                Err(e) if batch.len() > 1 => {
                    tracing::warn!(error = %e, size = batch.len(), "mail batch failed; committing one by one");
                    for job in batch {
                        let result = self.commit_batch(std::slice::from_ref(&job)).await;
                        let _ = job.reply.send(result.map(|mut r| r.pop().unwrap_or_default()));
                    }
                }
                Err(e) => {
                    for job in batch {
                        let _ = job.reply.send(Err(MailError::Invalid(e.to_string())));
                    }
                }
            }
            self.bus.wake();
        }
    }

    async fn commit_batch(&self, batch: &[Job]) -> Result<Vec<Vec<Stored>>, MailError> {
        let raws: Vec<Bytes> = batch.iter().map(|j| j.raw.clone()).collect();
        let (ids, _refs_guard) = self.blobs.write_many(&raws).await?;
        let txn = self.db.begin().await?;
        lock_for_write(&txn).await?;
        let mut mailboxes = HashMap::new();
        let mut out = Vec::with_capacity(batch.len());
        for (job, blob) in batch.iter().zip(&ids) {
            let mut stored = Vec::with_capacity(job.targets.len());
            for target in &job.targets {
                stored.push(insert(&txn, &mut mailboxes, blob, &job.meta, job.raw.len(), target).await?);
            }
            out.push(stored);
        }
        txn.commit().await?;
        Ok(out)
    }
}

/// Takes SQLite's write lock at the start of a transaction, so a later write cannot fail
/// with SQLITE_BUSY after reads (any UPDATE takes the lock, even one matching no row).
pub(crate) async fn lock_for_write(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    mailbox::Entity::update_many()
        .col_expr(mailbox::Column::UidNext, Expr::col(mailbox::Column::UidNext))
        .filter(mailbox::Column::Id.eq(-1))
        .exec(txn)
        .await?;
    Ok(())
}

/// Stores one row (and its references, labels and event) inside `txn`.
async fn insert(
    txn: &DatabaseTransaction,
    mailboxes: &mut HashMap<(i64, Target), i64>,
    blob: &BlobId,
    meta: &Meta,
    size: usize,
    new: &NewMessage,
) -> Result<Stored, MailError> {
    let key = (new.user_id, new.target.clone());
    let mailbox_id = match mailboxes.get(&key) {
        Some(id) => *id,
        None => {
            let id = resolve_mailbox(txn, new.user_id, &new.target).await?;
            mailboxes.insert(key, id);
            id
        }
    };
    let (uid, modseq) = allocate_uid(txn, mailbox_id).await?;
    let thread_id = thread::assign(txn, new.user_id, meta, new.internal_date).await?;
    let list = |l: &[super::parse::Mailbox]| l.iter().map(|m| m.address.as_str()).collect::<Vec<_>>().join(",");
    let row = message::ActiveModel {
        id: NotSet,
        user_id: Set(new.user_id),
        mailbox_id: Set(mailbox_id),
        uid: Set(uid),
        modseq: Set(modseq),
        blob_id: Set(blob.to_string()),
        message_id_hdr: Set(meta.message_id.clone()),
        thread_id: Set(thread_id),
        from_addr: Set(meta.from.as_ref().map(|f| f.address.clone()).unwrap_or_default()),
        from_name: Set(meta.from.as_ref().map(|f| f.name.clone()).unwrap_or_default()),
        to_addrs: Set(list(&meta.to)),
        cc_addrs: Set(list(&meta.cc)),
        subject: Set(meta.subject.clone()),
        snippet: Set(meta.snippet.clone()),
        sent_at: Set(meta.date.unwrap_or(new.internal_date)),
        internal_date: Set(new.internal_date),
        size: Set(size as i64),
        has_attachments: Set(meta.has_attachments),
        flags: Set(new.flags.0),
        keywords: Set("[]".into()),
        spam_verdict: Set(new.spam.as_str().into()),
        spam_score: Set(new.spam_score),
        parsed: Set(meta.parsed),
    }
    .insert(txn)
    .await?;
    Blobs::add_ref_in(txn, blob, &blob_owner(row.id)).await?;
    for name in &new.labels {
        let label_id = ensure_label(txn, new.user_id, name).await?;
        message_label::Entity::insert(message_label::ActiveModel { message_id: Set(row.id), label_id: Set(label_id) })
            .on_conflict_do_nothing()
            .exec(txn)
            .await?;
    }
    Bus::publish(txn, &Event::MailStored { user_id: new.user_id, message_id: row.id, mailbox_id }).await?;
    if let Some(recipients) = &new.sent_to {
        let event = Event::MailSent { user_id: new.user_id, message_id: row.id, recipients: recipients.clone() };
        Bus::publish(txn, &event).await?;
    }
    Ok(Stored { id: row.id, user_id: new.user_id, mailbox_id, uid, thread_id })
}

/// The blob owner name of a message row.
pub(crate) fn blob_owner(message_id: i64) -> String {
    format!("message:{message_id}")
}

/// The id of the user's mailbox for `target`, creating the system mailboxes on first use.
pub(crate) async fn resolve_mailbox<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
    target: &Target,
) -> Result<i64, MailError> {
    match target {
        Target::Mailbox(id) => mailbox::Entity::find_by_id(*id)
            .filter(mailbox::Column::UserId.eq(user_id))
            .one(conn)
            .await?
            .map(|m| m.id)
            .ok_or(MailError::NotFound),
        Target::Role(role) => {
            let find = || {
                mailbox::Entity::find()
                    .filter(mailbox::Column::UserId.eq(user_id))
                    .filter(mailbox::Column::Role.eq(role.as_str()))
                    .one(conn)
            };
            if let Some(m) = find().await? {
                return Ok(m.id);
            }
            ensure_system_mailboxes(conn, user_id).await?;
            find().await?.map(|m| m.id).ok_or(MailError::NotFound)
        }
    }
}

/// Creates the six system mailboxes of a user where missing (safe to call concurrently).
pub(crate) async fn ensure_system_mailboxes<C: ConnectionTrait>(conn: &C, user_id: i64) -> Result<(), DbErr> {
    let at = now();
    let rows = Role::ALL.map(|role| mailbox::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(role.mailbox_name().into()),
        role: Set(Some(role.as_str().into())),
        uid_validity: Set(at),
        uid_next: Set(1),
        highest_modseq: Set(1),
        subscribed: Set(true),
        created_at: Set(at),
    });
    mailbox::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([mailbox::Column::UserId, mailbox::Column::Name])
        .exec(conn)
        .await?;
    Ok(())
}

/// Gives the next UID and MODSEQ of a mailbox.
pub(crate) async fn allocate_uid<C: ConnectionTrait>(conn: &C, mailbox_id: i64) -> Result<(i64, i64), MailError> {
    let m = advance(conn, mailbox_id, true).await?;
    Ok((m.uid_next - 1, m.highest_modseq))
}

/// Gives the mailbox a new MODSEQ (a change without a new message) and returns it.
pub(crate) async fn bump_modseq<C: ConnectionTrait>(conn: &C, mailbox_id: i64) -> Result<i64, MailError> {
    Ok(advance(conn, mailbox_id, false).await?.highest_modseq)
}

/// Moves a mailbox's MODSEQ (and with `new_uid` its UIDNEXT) on by one; the row after.
async fn advance<C: ConnectionTrait>(conn: &C, mailbox_id: i64, new_uid: bool) -> Result<mailbox::Model, MailError> {
    let mut update = mailbox::Entity::update_many()
        .col_expr(mailbox::Column::HighestModseq, Expr::col(mailbox::Column::HighestModseq).add(1));
    if new_uid {
        update = update.col_expr(mailbox::Column::UidNext, Expr::col(mailbox::Column::UidNext).add(1));
    }
    update.filter(mailbox::Column::Id.eq(mailbox_id)).exec(conn).await?;
    mailbox::Entity::find_by_id(mailbox_id).one(conn).await?.ok_or(MailError::NotFound)
}

/// The id of the user's label `name`, created when missing.
pub(crate) async fn ensure_label<C: ConnectionTrait>(conn: &C, user_id: i64, name: &str) -> Result<i64, DbErr> {
    let find = || {
        label::Entity::find().filter(label::Column::UserId.eq(user_id)).filter(label::Column::Name.eq(name)).one(conn)
    };
    if let Some(l) = find().await? {
        return Ok(l.id);
    }
    let row = label::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        color: Set(None),
        created_at: Set(now()),
    };
    label::Entity::insert(row)
        .on_conflict_do_nothing_on([label::Column::UserId, label::Column::Name])
        .exec(conn)
        .await?;
    find().await?.map(|l| l.id).ok_or_else(|| DbErr::RecordNotFound(format!("label {name}")))
}
