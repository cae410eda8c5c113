//! The durable message store with group commit. Deliveries are handed to one committer
//! task; it takes every delivery waiting at that moment as one batch, writes their raw
//! blobs (made durable by one `syncfs` of the blob folder on Linux, see
//! `Blobs::write_many`), then stores all their rows, UIDs, threads, labels, counters and
//! `MailStored` events in one transaction (one WAL fsync), and only then answers each
//! caller. Under load a batch grows while the previous one is on disk, so the cost of
//! durability is shared by every message in it. Inside the transaction the work is done
//! per batch, not per message where it can be: one UID range and one MODSEQ per mailbox,
//! and multi-row inserts for the message rows. A batch that fails is retried one delivery
//! at a time, so one bad delivery never fails its neighbours.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryTrait, Set,
};
use tokio::sync::{mpsc, oneshot};

use super::changes::{CHUNK, Count, adjust_labels, advance, begin_write};
use super::entities::{mailbox, message, message_label, sending};
use super::labels::ensure_label;
use super::outbound::{Outgoing, insert_in};
use super::parse::Meta;
use super::thread::{self, subject_key};
use super::{Flags, MailError, Role, SpamVerdict};
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

/// One raw message and the copies of it to store.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The bytes, stored once as a blob.
    pub raw: Bytes,
    /// What was parsed from them.
    pub meta: Arc<Meta>,
    /// A row per copy.
    pub targets: Vec<NewMessage>,
}

/// Everything one caller commits at once: all of it is stored in one transaction, or
/// none of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Work {
    /// Messages to store.
    pub parts: Vec<Part>,
    /// Messages to put in the outbound queue.
    pub outgoing: Vec<Outgoing>,
    /// A user's sending, recorded for their sending limits.
    pub sending: Option<Sending>,
}

/// One message a user sent, as the sending limits count it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sending {
    /// The sender.
    pub user_id: i64,
    /// How many recipients it had.
    pub recipients: usize,
}

/// What one [`Work`] became.
#[derive(Debug, Clone, Default)]
pub(crate) struct Committed {
    /// The stored copies, per part.
    pub stored: Vec<Vec<Stored>>,
    /// The outbound queue ids, per outgoing message.
    pub queued: Vec<i64>,
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Committed, MailError>>,
}

/// The handle to the committer task.
pub(crate) struct Store {
    tx: mpsc::Sender<Job>,
}

impl Store {
    /// Starts the committer.
    pub(crate) fn start(db: Db, blobs: Blobs, bus: Bus) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(async move {
            let db = crate::platform::db::writer(&db).await;
            Committer { db, blobs, bus, system_mailboxes: HashMap::new() }.run(rx).await
        });
        Self { tx }
    }

    /// Commits `work` as one transaction; returns once all of it is durable.
    pub(crate) async fn commit_work(&self, work: Work) -> Result<Committed, MailError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { work, reply }).await.map_err(|_| MailError::Closed)?;
        answer.await.map_err(|_| MailError::Closed)?
    }
}

struct Committer {
    db: Db,
    blobs: Blobs,
    bus: Bus,
    /// Mailbox ids of system mailboxes by (user, role), learnt from committed batches:
    /// system mailboxes are never renamed or deleted, so their ids never change.
    system_mailboxes: HashMap<(i64, Target), i64>,
}

/// The most system mailbox ids the committer remembers before it starts afresh.
const SYSTEM_MAILBOXES_KEPT: usize = 100_000;

impl Committer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("postcast_mail_commit_batch").record(batch.len() as f64);
            let started = std::time::Instant::now();
            let committed = self.commit_batch(&batch).await;
            metrics::histogram!("postcast_mail_commit_seconds").record(started.elapsed().as_secs_f64());
            match committed {
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
                    // A batch of one: its delivery gets the error itself.
                    if let Some(job) = batch.pop() {
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
            self.bus.wake();
        }
    }

    /// Commits a batch; after a failure it forgets the system mailbox ids it knew, so a
    /// retry resolves them afresh. A panic while committing is caught here: the batch's
    /// transaction is rolled back as it is dropped, its deliveries get
    /// [`MailError::Interrupted`] (a temporary failure) and the committer goes on with the
    /// next batch, so one fault never leaves every later delivery failing.
    async fn commit_batch(&mut self, batch: &[Job]) -> Result<Vec<Committed>, MailError> {
        let result = match AssertUnwindSafe(self.try_commit_batch(batch)).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(size = batch.len(), "mail committer panicked; the batch was not stored");
                metrics::counter!("postcast_mail_committer_panics_total").increment(1);
                Err(MailError::Interrupted)
            }
        };
        if result.is_err() {
            self.system_mailboxes.clear();
        }
        result
    }

    async fn try_commit_batch(&mut self, batch: &[Job]) -> Result<Vec<Committed>, MailError> {
        #[cfg(test)]
        if batch.iter().flat_map(|j| &j.work.parts).any(|p| p.raw.starts_with(test_hooks::PANIC_MARKER)) {
            panic!("a test asked the committer to panic");
        }
        // Every part of every job, flat, each with (job, part) to sort the results back.
        let parts: Vec<(usize, usize, &Part)> = batch
            .iter()
            .enumerate()
            .flat_map(|(j, job)| job.work.parts.iter().enumerate().map(move |(p, part)| (j, p, part)))
            .collect();
        let mut raws: Vec<Bytes> = parts.iter().map(|(_, _, p)| p.raw.clone()).collect();
        raws.extend(batch.iter().flat_map(|j| &j.work.outgoing).map(|o| o.signed.clone()));
        let (ids, blobs) = self.blobs.write_many(&raws).await?;
        let (part_blobs, mut outgoing_blobs) = ids.split_at(parts.len());
        let txn = begin_write(&self.db).await?;
        blobs.store_in(&txn).await?;
        let (copies, resolved) = place(&txn, &parts, part_blobs, &self.system_mailboxes).await?;
        let stored = write_rows(&txn, &copies).await?;
        let mut out: Vec<Committed> = batch
            .iter()
            .map(|j| Committed { stored: vec![Vec::new(); j.work.parts.len()], queued: Vec::new() })
            .collect();
        record_sendings(&txn, batch.iter().filter_map(|j| j.work.sending)).await?;
        for (job, committed) in batch.iter().zip(&mut out) {
            let (mine, rest) = outgoing_blobs.split_at(job.work.outgoing.len().min(outgoing_blobs.len()));
            outgoing_blobs = rest;
            if !job.work.outgoing.is_empty() {
                committed.queued =
                    insert_in(&txn, &job.work.outgoing, mine).await.map_err(|e| MailError::Queue(Box::new(e)))?;
            }
        }
        txn.commit().await?;
        if self.system_mailboxes.len() > SYSTEM_MAILBOXES_KEPT {
            self.system_mailboxes.clear();
        }
        self.system_mailboxes.extend(resolved.into_iter().filter(|((_, t), _)| matches!(t, Target::Role(_))));
        for (copy, s) in copies.iter().zip(stored) {
            let (job, part, _) = parts[copy.part];
            if let Some(slot) = out.get_mut(job).and_then(|c| c.stored.get_mut(part)) {
                slot.push(s);
            }
        }
        Ok(out)
    }
}

/// Records sendings for the sending limits, and forgets their users' sendings that are
/// more than a day old.
async fn record_sendings(txn: &DatabaseTransaction, sendings: impl Iterator<Item = Sending>) -> Result<(), DbErr> {
    let at = now();
    for s in sendings {
        sending::Entity::delete_many()
            .filter(sending::Column::UserId.eq(s.user_id))
            .filter(sending::Column::SentAt.lte(at - 86_400))
            .exec(txn)
            .await?;
        let row = sending::ActiveModel {
            id: NotSet,
            user_id: Set(s.user_id),
            sent_at: Set(at),
            recipients: Set(s.recipients as i64),
        };
        sending::Entity::insert(row).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// One row to store: a target of a delivery, with its mailbox, UID and MODSEQ decided.
struct Placed<'a> {
    /// The index of its part in the batch's flat list of parts.
    part: usize,
    new: &'a NewMessage,
    meta: &'a Meta,
    blob: &'a BlobId,
    size: usize,
    mailbox_id: i64,
    uid: i64,
    modseq: i64,
}

/// Resolves every target's mailbox and hands out UIDs: one UID range and one MODSEQ per
/// mailbox for the whole batch, with its counters moved on in the same statement.
/// `known` holds system mailbox ids already committed; returns the copies and every
/// mailbox id resolved for the batch.
async fn place<'a>(
    txn: &DatabaseTransaction,
    parts: &[(usize, usize, &'a Part)],
    blobs: &'a [BlobId],
    known: &HashMap<(i64, Target), i64>,
) -> Result<(Vec<Placed<'a>>, HashMap<(i64, Target), i64>), MailError> {
    let mut mailboxes: HashMap<(i64, Target), i64> = HashMap::new();
    let mut copies = Vec::new();
    for (part_index, (&(_, _, part), blob)) in parts.iter().zip(blobs).enumerate() {
        for new in &part.targets {
            let key = (new.user_id, new.target.clone());
            let mailbox_id = match mailboxes.get(&key).or_else(|| known.get(&key)) {
                Some(id) => *id,
                None => {
                    let id = resolve_mailbox(txn, new.user_id, &new.target).await?;
                    mailboxes.insert(key, id);
                    id
                }
            };
            let size = part.raw.len();
            copies.push(Placed { part: part_index, new, meta: &part.meta, blob, size, mailbox_id, uid: 0, modseq: 0 });
        }
    }
    let mut arriving: BTreeMap<i64, (i64, Count)> = BTreeMap::new();
    for c in &copies {
        let entry = arriving.entry(c.mailbox_id).or_default();
        *entry = (entry.0 + 1, entry.1.plus(Count::of(c.new.flags)));
    }
    let mut next: HashMap<i64, (i64, i64)> = HashMap::new();
    for (mailbox_id, (n, count)) in arriving {
        let at = advance(txn, mailbox_id, n, count).await?;
        next.insert(mailbox_id, (at.first_uid, at.modseq));
    }
    for c in &mut copies {
        let (uid, modseq) = next.get_mut(&c.mailbox_id).ok_or(MailError::NotFound)?;
        (c.uid, c.modseq) = (*uid, *modseq);
        *uid += 1;
    }
    Ok((copies, mailboxes))
}

/// Stores the rows of `copies` (threads, rows, blob references, labels, events).
async fn write_rows(txn: &DatabaseTransaction, copies: &[Placed<'_>]) -> Result<Vec<Stored>, MailError> {
    let mut pending = Pending::default();
    let mut rows: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
    for c in copies {
        if pending.needed_by(c) {
            rows.extend(pending.flush(txn).await?);
        }
        let thread = thread::join(txn, c.new.user_id, c.meta, c.new.internal_date).await?;
        pending.push(c, thread);
    }
    rows.extend(pending.flush(txn).await?);
    let mut stored = Vec::with_capacity(copies.len());
    for c in copies {
        let (id, thread_id) = rows.get(&(c.mailbox_id, c.uid)).copied().ok_or(DbErr::RecordNotInserted)?;
        stored.push(Stored { id, user_id: c.new.user_id, mailbox_id: c.mailbox_id, uid: c.uid, thread_id });
    }
    let refs: Vec<_> = copies.iter().zip(&stored).map(|(c, s)| (c.blob, blob_owner(s.id))).collect();
    Blobs::add_refs_in(txn, &refs).await?;
    link_labels(txn, copies, &stored).await?;
    let mut events = Vec::with_capacity(copies.len());
    for (c, s) in copies.iter().zip(&stored) {
        let (user_id, message_id, mailbox_id) = (s.user_id, s.id, s.mailbox_id);
        events.push(Event::MailStored { user_id, message_id, mailbox_id, uid: s.uid, modseq: c.modseq });
        if let Some(recipients) = &c.new.sent_to {
            events.push(Event::MailSent { user_id, message_id, recipients: recipients.clone() });
        }
    }
    Bus::publish_many(txn, &events).await?;
    Ok(stored)
}

/// Message rows not inserted yet, the new threads they start, and what a later message of
/// the same batch may look up to find its thread: their owners' Message-IDs and subject
/// keys. A message that refers to one of them has them inserted first, so threading sees
/// what it would see with one message per transaction.
#[derive(Default)]
struct Pending {
    rows: Vec<message::ActiveModel>,
    /// (index in `rows`, the thread it starts).
    new_threads: Vec<(usize, thread::NewThread)>,
    message_ids: HashSet<(i64, String)>,
    subjects: HashSet<(i64, String)>,
}

impl Pending {
    /// Whether threading `c` may look at a pending row.
    fn needed_by(&self, c: &Placed<'_>) -> bool {
        let user = c.new.user_id;
        let key = subject_key(&c.meta.subject);
        c.meta.references.iter().any(|r| self.message_ids.contains(&(user, r.clone())))
            || (!key.is_empty() && self.subjects.contains(&(user, key)))
    }

    /// Adds `c`'s row, in `thread` or in a new thread when `None`.
    fn push(&mut self, c: &Placed<'_>, thread: Option<i64>) {
        let user = c.new.user_id;
        if let Some(id) = &c.meta.message_id {
            self.message_ids.insert((user, id.clone()));
        }
        let key = subject_key(&c.meta.subject);
        if thread.is_none() {
            self.new_threads.push((self.rows.len(), (user, key.clone(), c.new.internal_date)));
        }
        self.subjects.insert((user, key));
        self.rows.push(row(c, thread.unwrap_or_default()));
    }

    /// Creates the pending threads, then inserts the pending rows, in multi-row
    /// statements; returns each row's (id, thread id) by (mailbox, UID).
    async fn flush(&mut self, txn: &DatabaseTransaction) -> Result<Vec<((i64, i64), (i64, i64))>, DbErr> {
        self.message_ids.clear();
        self.subjects.clear();
        let mut rows = std::mem::take(&mut self.rows);
        let new_threads = std::mem::take(&mut self.new_threads);
        let specs: Vec<thread::NewThread> = new_threads.iter().map(|(_, t)| t.clone()).collect();
        for ((index, _), id) in new_threads.iter().zip(thread::create_many(txn, &specs).await?) {
            if let Some(row) = rows.get_mut(*index) {
                row.thread_id = Set(id);
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(CHUNK));
            let mut insert = message::Entity::insert_many(rows).into_query();
            use message::Column as M;
            insert.returning(Query::returning().columns([M::Id, M::MailboxId, M::Uid, M::ThreadId]));
            for r in txn.query_all(&insert).await? {
                let key = (r.try_get::<i64>("", "mailbox_id")?, r.try_get::<i64>("", "uid")?);
                out.push((key, (r.try_get::<i64>("", "id")?, r.try_get::<i64>("", "thread_id")?)));
            }
            rows = rest;
        }
        Ok(out)
    }
}

/// The message row of `c`.
fn row(c: &Placed<'_>, thread_id: i64) -> message::ActiveModel {
    let (meta, new) = (c.meta, c.new);
    let list = |l: &[super::parse::Mailbox]| l.iter().map(|m| m.address.as_str()).collect::<Vec<_>>().join(",");
    message::ActiveModel {
        id: NotSet,
        user_id: Set(new.user_id),
        mailbox_id: Set(c.mailbox_id),
        uid: Set(c.uid),
        modseq: Set(c.modseq),
        blob_id: Set(c.blob.to_string()),
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
        size: Set(c.size as i64),
        has_attachments: Set(meta.has_attachments),
        flags: Set(new.flags.0),
        keywords: Set("[]".into()),
        spam_verdict: Set(new.spam.as_str().into()),
        spam_score: Set(new.spam_score),
        parsed: Set(meta.parsed),
    }
}

/// Puts each copy's labels on its row (creating missing labels) and counts them.
async fn link_labels(txn: &DatabaseTransaction, copies: &[Placed<'_>], stored: &[Stored]) -> Result<(), DbErr> {
    let mut label_ids: HashMap<(i64, &str), i64> = HashMap::new();
    let mut links = BTreeSet::new();
    let mut counts: BTreeMap<i64, Count> = BTreeMap::new();
    for (c, s) in copies.iter().zip(stored) {
        for name in &c.new.labels {
            let label_id = match label_ids.get(&(s.user_id, name.as_str())) {
                Some(id) => *id,
                None => {
                    let id = ensure_label(txn, s.user_id, name).await?;
                    label_ids.insert((s.user_id, name.as_str()), id);
                    id
                }
            };
            if links.insert((s.id, label_id)) {
                let entry = counts.entry(label_id).or_default();
                *entry = entry.plus(Count::of(c.new.flags));
            }
        }
    }
    let links: Vec<(i64, i64)> = links.into_iter().collect();
    for chunk in links.chunks(CHUNK) {
        let rows = chunk.iter().map(|&(m, l)| message_label::ActiveModel { message_id: Set(m), label_id: Set(l) });
        message_label::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    adjust_labels(txn, &counts).await
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
        Target::Mailbox(id) => super::actions::mailbox_of(conn, user_id, *id).await.map(|m| m.id),
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

/// A new, empty mailbox row (UIDVALIDITY from `at`, as RFC 9051 §2.3.1.1 allows).
pub(crate) fn new_mailbox(user_id: i64, name: &str, role: Option<Role>, at: i64) -> mailbox::ActiveModel {
    mailbox::ActiveModel {
        id: NotSet,
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        role: Set(role.map(|r| r.as_str().to_owned())),
        uid_validity: Set(at),
        uid_next: Set(1),
        highest_modseq: Set(1),
        subscribed: Set(true),
        created_at: Set(at),
        total: Set(0),
        unread: Set(0),
    }
}

/// Creates the six system mailboxes of a user where missing (safe to call concurrently).
pub(crate) async fn ensure_system_mailboxes<C: ConnectionTrait>(conn: &C, user_id: i64) -> Result<(), DbErr> {
    let at = now();
    let rows = Role::ALL.map(|role| new_mailbox(user_id, role.mailbox_name(), Some(role), at));
    mailbox::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([mailbox::Column::UserId, mailbox::Column::Name])
        .exec(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_hooks {
    /// A raw message starting with this makes the committer panic (tests of its recovery).
    pub(crate) const PANIC_MARKER: &[u8] = b"X-Committer-Test: panic\r\n";
}
