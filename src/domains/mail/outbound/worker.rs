//! The delivery worker of the outbound queue: one task that takes due messages (at most
//! `outbound.parallel_deliveries` at a time), runs one attempt each — recipients grouped by
//! route, every group delivered concurrently — records each recipient's outcome, schedules
//! the next attempt with exponential back-off, gives up after `outbound.give_up_hours`,
//! hands one DSN per failure to the bounce sink, and finishes messages (releasing their
//! blob). It sleeps until the next due message, a wake-up from the service, or shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::delivery::{Outcome, Route};
use super::dsn::{self, FailedRecipient};
use super::entities::{message, recipient};
use super::{MessageStatus, OutboundQueue, QueueError, RecipientStatus};
use crate::platform::blobs::{BlobError, BlobId};
use crate::platform::db::now;

/// The longest the worker sleeps without looking at the queue (picks up changes made by
/// another process, such as `postcast queue retry`).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How long finished messages stay listed.
const KEEP_FINISHED_SECONDS: i64 = 7 * 24 * 3600;
/// A `new` row older than this belongs to an enqueue that crashed.
const ABANDONED_SECONDS: i64 = 3600;
/// How often finished and abandoned rows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How long shutdown waits for running attempts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Marks a reply recorded when the queue gave up on a recipient.
pub(super) const GAVE_UP: &str = "gave up after";

/// Drops a message from the in-flight set when its attempt ends, however it ends.
struct Claim(OutboundQueue, i64);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.inner.in_flight.lock() {
            set.remove(&self.1);
        }
    }
}

impl OutboundQueue {
    /// Starts the delivery worker; it stops when `shutdown` turns true, giving running
    /// attempts a few seconds to finish (an attempt cut short is simply repeated later).
    pub fn start(&self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let q = self.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            let mut last_sweep: Option<tokio::time::Instant> = None;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                    q.sweep().await;
                    last_sweep = Some(tokio::time::Instant::now());
                }
                let free = q.inner.config.parallel_deliveries.saturating_sub(tasks.len());
                if free > 0 {
                    match q.claim_due(free).await {
                        Ok(claims) => {
                            for claim in claims {
                                let q = q.clone();
                                tasks.spawn(async move {
                                    let id = claim.1;
                                    if let Err(e) = q.attempt(id).await {
                                        tracing::warn!(queue_id = id, error = %e, "delivery attempt failed");
                                        q.postpone(id).await;
                                    }
                                    drop(claim);
                                });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the outbound queue"),
                    }
                }
                if let Ok(n) = q.queued_count().await {
                    metrics::gauge!("outbound_queue_size").set(n as f64);
                }
                let wait =
                    if tasks.len() >= q.inner.config.parallel_deliveries { MAX_IDLE } else { q.idle_time().await };
                tokio::select! {
                    _ = q.inner.wake.notified() => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
            tasks.abort_all();
        })
    }

    /// Claims up to `limit` due messages no attempt is running for.
    async fn claim_due(&self, limit: usize) -> Result<Vec<Claim>, QueueError> {
        let busy: Vec<i64> = self.inner.in_flight.lock().map(|s| s.iter().copied().collect()).unwrap_or_default();
        let due = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::Status.eq(MessageStatus::Queued))
            .filter(message::Column::NextAttemptAt.lte(now()))
            .filter(message::Column::Id.is_not_in(busy))
            .order_by_asc(message::Column::NextAttemptAt)
            .limit(limit as u64)
            .into_tuple::<i64>()
            .all(&self.inner.db)
            .await?;
        let mut claims = Vec::with_capacity(due.len());
        if let Ok(mut set) = self.inner.in_flight.lock() {
            for id in due {
                if set.insert(id) {
                    claims.push(Claim(self.clone(), id));
                }
            }
        }
        Ok(claims)
    }

    /// How long until the next message not in flight is due (at most [`MAX_IDLE`]).
    async fn idle_time(&self) -> Duration {
        let busy: Vec<i64> = self.inner.in_flight.lock().map(|s| s.iter().copied().collect()).unwrap_or_default();
        let next = message::Entity::find()
            .select_only()
            .column(message::Column::NextAttemptAt)
            .filter(message::Column::Status.eq(MessageStatus::Queued))
            .filter(message::Column::Id.is_not_in(busy))
            .order_by_asc(message::Column::NextAttemptAt)
            .into_tuple::<i64>()
            .one(&self.inner.db)
            .await;
        match next {
            Ok(Some(at)) => Duration::from_secs((at - now()).clamp(0, MAX_IDLE.as_secs() as i64) as u64),
            _ => MAX_IDLE,
        }
    }

    /// After an attempt that could not record its outcome: try again after the base delay.
    async fn postpone(&self, id: i64) {
        let at = now() + self.inner.config.retry_base_seconds as i64;
        let _ = message::Entity::update_many()
            .col_expr(message::Column::NextAttemptAt, Expr::value(at))
            .filter(message::Column::Id.eq(id))
            .exec(&self.inner.db)
            .await;
    }

    /// The delay before attempt number `attempts + 1`: base × 2^(attempts − 1), capped.
    pub(super) fn backoff(&self, attempts: i32) -> i64 {
        let c = &self.inner.config;
        let exp = Ord::min(Ord::max(attempts, 1) - 1, 30) as u32;
        Ord::min(c.retry_base_seconds.saturating_mul(1u64 << exp), c.retry_max_seconds) as i64
    }

    /// One attempt at message `id`: deliver its waiting recipients, record, bounce, finish.
    pub(super) async fn attempt(&self, id: i64) -> Result<(), QueueError> {
        let db = &self.inner.db;
        let Some(msg) = message::Entity::find_by_id(id).one(db).await? else { return Ok(()) };
        if msg.status != MessageStatus::Queued {
            return Ok(());
        }
        let rcpts = recipient::Entity::find().filter(recipient::Column::MessageId.eq(id)).all(db).await?;
        let waiting: Vec<&recipient::Model> = rcpts.iter().filter(|r| r.status == RecipientStatus::Queued).collect();
        if !waiting.is_empty() {
            let outcomes = self.deliver(&msg, &waiting).await?;
            self.record(&msg, outcomes).await?;
        }
        self.bounce(&msg).await?;
        self.finish_if_done(&msg).await
    }

    /// Delivers to every waiting recipient, route by route, concurrently.
    async fn deliver(
        &self,
        msg: &message::Model,
        waiting: &[&recipient::Model],
    ) -> Result<Vec<(i64, Outcome)>, QueueError> {
        let blob = BlobId::try_from(msg.blob_id.clone()).map_err(|e| QueueError::Internal(e.into()))?;
        let raw = match self.inner.blobs.get(&blob).await {
            Ok(raw) => raw,
            Err(BlobError::NotFound) => {
                let lost = Outcome::Failed { reply: "554 5.3.0 the queued message was lost".into(), remote: None };
                return Ok(waiting.iter().map(|r| (r.id, lost.clone())).collect());
            }
            Err(e) => return Err(e.into()),
        };
        let d = &self.inner.deliverer;
        let mut groups: BTreeMap<Route, Vec<&recipient::Model>> = BTreeMap::new();
        for r in waiting {
            groups.entry(d.route(&r.domain)).or_default().push(r);
        }
        let attempts = groups.into_iter().map(|(route, rs)| {
            let raw = raw.clone();
            async move {
                let addresses: Vec<String> = rs.iter().map(|r| r.address.clone()).collect();
                let outcomes = d.deliver(&route, &msg.envelope_from, &addresses, &raw).await;
                rs.iter().map(|r| r.id).zip(outcomes).collect::<Vec<_>>()
            }
        });
        Ok(futures::future::join_all(attempts).await.into_iter().flatten().collect())
    }

    /// Records the outcomes, gives up on recipients waiting too long, schedules the next try.
    async fn record(&self, msg: &message::Model, outcomes: Vec<(i64, Outcome)>) -> Result<(), QueueError> {
        let t = now();
        let give_up = t >= msg.created_at.saturating_add(self.inner.config.give_up_hours as i64 * 3600);
        let silent = msg.envelope_from.is_empty();
        let mut last_error = None;
        let txn = self.inner.db.begin().await?;
        for (rid, outcome) in outcomes {
            let (state, reply, remote, result) = match outcome {
                Outcome::Delivered { reply, remote } => (RecipientStatus::Delivered, reply, Some(remote), "delivered"),
                Outcome::Failed { reply, remote } => (RecipientStatus::Failed, reply, remote, "failed"),
                Outcome::Deferred { reply, remote } if give_up => {
                    let hours = self.inner.config.give_up_hours;
                    (RecipientStatus::Failed, format!("{GAVE_UP} {hours} h; last error: {reply}"), remote, "gave_up")
                }
                Outcome::Deferred { reply, remote } => {
                    last_error.get_or_insert_with(|| reply.clone());
                    (RecipientStatus::Queued, reply, remote, "deferred")
                }
            };
            metrics::counter!("outbound_deliveries_total", "result" => result).increment(1);
            tracing::info!(queue_id = msg.id, result, reply = %reply, "delivery outcome");
            recipient::Entity::update_many()
                .col_expr(recipient::Column::Status, Expr::value(state))
                .col_expr(recipient::Column::Reply, Expr::value(reply))
                .col_expr(recipient::Column::RemoteMta, Expr::value(remote))
                // The null sender gets no bounce: nothing to notify.
                .col_expr(recipient::Column::Notified, Expr::value(state != RecipientStatus::Failed || silent))
                .col_expr(recipient::Column::UpdatedAt, Expr::value(t))
                .filter(recipient::Column::Id.eq(rid))
                .exec(&txn)
                .await?;
        }
        let attempts = msg.attempts.saturating_add(1);
        message::Entity::update_many()
            .col_expr(message::Column::Attempts, Expr::value(attempts))
            .col_expr(message::Column::LastAttemptAt, Expr::value(t))
            .col_expr(message::Column::NextAttemptAt, Expr::value(t + self.backoff(attempts)))
            .col_expr(message::Column::LastError, Expr::value(last_error))
            .filter(message::Column::Id.eq(msg.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Hands one DSN for every failed, not yet notified recipient to the bounce sink.
    async fn bounce(&self, msg: &message::Model) -> Result<(), QueueError> {
        let db = &self.inner.db;
        let failed = recipient::Entity::find()
            .filter(recipient::Column::MessageId.eq(msg.id))
            .filter(recipient::Column::Status.eq(RecipientStatus::Failed))
            .filter(recipient::Column::Notified.eq(false))
            .all(db)
            .await?;
        if failed.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = failed.iter().map(|r| r.id).collect();
        // RFC 3464 §2 / RFC 5321 §4.5.5: never bounce a bounce.
        if !msg.envelope_from.is_empty() {
            let original = match BlobId::try_from(msg.blob_id.clone()) {
                Ok(blob) => self.inner.blobs.get(&blob).await.unwrap_or_default(),
                Err(_) => Default::default(),
            };
            let list: Vec<FailedRecipient> = failed
                .iter()
                .map(|r| {
                    let reply = r.reply.clone().unwrap_or_default();
                    FailedRecipient {
                        address: r.address.clone(),
                        gave_up: reply.starts_with(GAVE_UP),
                        reply,
                        remote_mta: r.remote_mta.clone(),
                    }
                })
                .collect();
            let report = dsn::Report {
                domain: &self.inner.domain,
                reporting_mta: &self.inner.deliverer.helo,
                to: &msg.envelope_from,
                arrival: msg.created_at,
                last_attempt: now(),
                failed: &list,
                original: &original,
            };
            let raw = dsn::build(&report).map_err(|e| QueueError::Internal(e.into()))?;
            let Some(sink) = self.sink() else { return Err(QueueError::Internal("bounce sink unavailable".into())) };
            sink.deliver_bounce(&msg.envelope_from, raw).await.map_err(|e| QueueError::Internal(e.into()))?;
            metrics::counter!("outbound_bounces_total").increment(1);
            tracing::info!(queue_id = msg.id, recipients = ids.len(), "bounce handed over");
        }
        recipient::Entity::update_many()
            .col_expr(recipient::Column::Notified, Expr::value(true))
            .filter(recipient::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Marks the message done and lets its blob go once nothing is left to do.
    async fn finish_if_done(&self, msg: &message::Model) -> Result<(), QueueError> {
        let db = &self.inner.db;
        let open =
            recipient::Entity::find()
                .filter(recipient::Column::MessageId.eq(msg.id))
                .filter(recipient::Column::Status.eq(RecipientStatus::Queued).or(
                    recipient::Column::Status.eq(RecipientStatus::Failed).and(recipient::Column::Notified.eq(false)),
                ))
                .one(db)
                .await?;
        if open.is_some() {
            return Ok(());
        }
        // The blob goes first, so a message listed as done holds none (letting go twice,
        // after a crash between the two steps, is harmless).
        self.release_blob(msg).await;
        message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(MessageStatus::Done))
            .col_expr(message::Column::FinishedAt, Expr::value(now()))
            .col_expr(message::Column::LastError, Expr::value(Option::<String>::None))
            .filter(message::Column::Id.eq(msg.id))
            .filter(message::Column::Status.eq(MessageStatus::Queued))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Deletes finished messages past their listing time and rows of crashed enqueues.
    async fn sweep(&self) {
        let db = &self.inner.db;
        let t = now();
        let old = message::Entity::find()
            .filter(
                message::Column::Status
                    .eq(MessageStatus::Done)
                    .and(message::Column::FinishedAt.lt(t - KEEP_FINISHED_SECONDS))
                    .or(message::Column::Status
                        .eq(MessageStatus::New)
                        .and(message::Column::CreatedAt.lt(t - ABANDONED_SECONDS))),
            )
            .all(db)
            .await;
        match old {
            Ok(rows) => {
                for m in rows {
                    if message::Entity::delete_by_id(m.id).exec(db).await.is_ok() && m.status == MessageStatus::New {
                        // A done message's blob went when it finished.
                        self.release_blob(&m).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot sweep the outbound queue"),
        }
    }
}
