//! The job pool: a fixed number of workers pulling from one queue bounded twice, in jobs
//! and in the bytes the waiting and running jobs hold, each job under a timeout and
//! retried with exponential back-off, with counters and queue gauges in `/metrics`. It is
//! configured by `[jobs]` and built once by `app.rs`; the stream domain runs its transcodes
//! here. It knows nothing of what a job does: a job names its kind, declares its weight and
//! may ask for its own time limit. A job that times out is dropped, so anything it owns (a
//! child process spawned with `kill_on_drop`) dies with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::platform::config::JobsConfig;

/// Why one attempt of a job failed: the job's own error, type-erased so that one pool
/// runs jobs of every kind.
pub type JobFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The queue is full, in jobs or in bytes held: try later (back-pressure).
    #[error("job queue is full")]
    QueueFull,
    /// The pool is shutting down.
    #[error("job pool is stopped")]
    Stopped,
    /// The job ran out of time on its last attempt.
    #[error("job timed out")]
    TimedOut,
    /// The job failed on its last attempt.
    #[error("job failed: {0}")]
    Failed(#[source] JobFailure),
}

/// A unit of work; `run` is called once per attempt.
pub trait Job: Send + Sync + 'static {
    /// A short kind name for metrics and logs, e.g. `transcode`.
    fn kind(&self) -> &'static str;
    /// The bytes this job holds from its submission until it finishes (e.g. its input),
    /// counted against the pool's byte budget.
    fn weight(&self) -> u64 {
        0
    }
    /// The time limit of one attempt; None takes the pool's.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// One attempt; the future owns what it needs, so the pool can time it out by dropping it.
    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), JobFailure>>;
}

/// Bytes a queued job holds against the budget; given back when it is dropped (the job
/// finished for good, or the pool went away), so no path can leak budget.
struct Held {
    total: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::AcqRel);
        metrics::gauge!("postcast_jobs_queued_bytes").decrement(self.bytes as f64);
    }
}

struct Queued {
    job: Arc<dyn Job>,
    attempt: u32,
    done: oneshot::Sender<Result<(), JobError>>,
    held: Held,
}

impl Queued {
    /// Gives the bytes back, then reports the final outcome.
    fn finish(self, outcome: Result<(), JobError>) {
        let Queued { done, held, .. } = self;
        drop(held);
        let _ = done.send(outcome);
    }
}

/// Pool settings (`[jobs]`).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Concurrent workers.
    pub workers: usize,
    /// Jobs that may wait in the queue.
    pub queue: usize,
    /// Bytes that queued and running jobs may hold together (their declared weights).
    pub queue_bytes: u64,
    /// Per-attempt time limit of jobs that declare none.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// First retry delay, doubled each time.
    pub backoff: Duration,
}

impl PoolSettings {
    /// The settings `[jobs]` asks for, with `workers = 0` meaning one per core.
    pub fn from_config(c: &JobsConfig) -> Self {
        Self {
            workers: if c.workers == 0 { num_cpus::get().max(1) } else { c.workers },
            queue: c.queue,
            queue_bytes: c.queue_bytes,
            timeout: Duration::from_secs(c.timeout_seconds),
            retries: c.retries,
            backoff: Duration::from_millis(c.backoff_ms),
        }
    }
}

/// The pool handle; cheap to clone.
#[derive(Clone)]
pub struct JobPool {
    tx: mpsc::Sender<Queued>,
    held: Arc<AtomicU64>,
    settings: Arc<PoolSettings>,
}

/// Resolves when the job finished, with its outcome.
pub struct JobHandle(oneshot::Receiver<Result<(), JobError>>);

impl JobHandle {
    /// Waits for the job's final outcome (after its retries).
    pub async fn outcome(self) -> Result<(), JobError> {
        self.0.await.unwrap_or(Err(JobError::Stopped))
    }
}

impl JobPool {
    /// Starts the workers; they stop when every handle to the pool is dropped.
    pub fn start(settings: PoolSettings) -> Self {
        let (tx, rx) = mpsc::channel::<Queued>(settings.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let settings = Arc::new(settings);
        let pool = Self { tx, held: Arc::new(AtomicU64::new(0)), settings: settings.clone() };
        for _ in 0..settings.workers.max(1) {
            let rx = rx.clone();
            let retry_tx = pool.tx.downgrade();
            let settings = settings.clone();
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(item) = next else { return };
                    metrics::gauge!("postcast_jobs_queued").decrement(1.0);
                    run_one(item, &settings, &retry_tx).await;
                }
            });
        }
        pool
    }

    /// Takes `bytes` from the budget, or None when they do not fit.
    fn hold(&self, bytes: u64) -> Option<Held> {
        let budget = self.settings.queue_bytes;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| now.checked_add(bytes).filter(|t| *t <= budget))
            .ok()?;
        metrics::gauge!("postcast_jobs_queued_bytes").increment(bytes as f64);
        Some(Held { total: self.held.clone(), bytes })
    }

    /// Queues a job without waiting; `QueueFull` when the queue is at capacity in jobs, or
    /// when the job's weight does not fit in the bytes left.
    pub fn submit(&self, job: Arc<dyn Job>) -> Result<JobHandle, JobError> {
        let kind = job.kind();
        let refused = || {
            metrics::counter!("postcast_jobs_rejected_total", "kind" => kind).increment(1);
            JobError::QueueFull
        };
        let held = self.hold(job.weight()).ok_or_else(refused)?;
        let (done, rx) = oneshot::channel();
        let item = Queued { job, attempt: 0, done, held };
        match self.tx.try_send(item) {
            Ok(()) => {
                metrics::counter!("postcast_jobs_submitted_total", "kind" => kind).increment(1);
                metrics::gauge!("postcast_jobs_queued").increment(1.0);
                Ok(JobHandle(rx))
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(refused()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(JobError::Stopped),
        }
    }

    /// Bytes the queued and running jobs hold now.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// The settings the pool runs with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }
}

/// Runs one attempt of `item`, then reports it, retries it later, or gives up.
async fn run_one(mut item: Queued, settings: &PoolSettings, retry_tx: &mpsc::WeakSender<Queued>) {
    let kind = item.job.kind();
    let started = Instant::now();
    let limit = item.job.timeout().unwrap_or(settings.timeout);
    let result = match tokio::time::timeout(limit, item.job.clone().run()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(JobError::Failed(e)),
        Err(_) => {
            metrics::counter!("postcast_jobs_timed_out_total", "kind" => kind).increment(1);
            Err(JobError::TimedOut)
        }
    };
    metrics::histogram!("postcast_job_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            metrics::counter!("postcast_jobs_succeeded_total", "kind" => kind).increment(1);
            item.finish(Ok(()));
        }
        Err(e) if item.attempt < settings.retries => {
            tracing::warn!(kind, attempt = item.attempt + 1, error = %e, "job failed, retrying");
            metrics::counter!("postcast_jobs_retried_total", "kind" => kind).increment(1);
            let delay = settings.backoff.saturating_mul(1 << item.attempt.min(16));
            item.attempt += 1;
            let retry_tx = retry_tx.clone();
            // The back-off waits outside the worker, so other jobs keep running.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(tx) = retry_tx.upgrade() {
                    metrics::gauge!("postcast_jobs_queued").increment(1.0);
                    if let Err(mpsc::error::SendError(item)) = tx.send(item).await {
                        metrics::gauge!("postcast_jobs_queued").decrement(1.0);
                        item.finish(Err(JobError::Stopped));
                    }
                }
            });
        }
        Err(e) => {
            tracing::error!(kind, error = %e, "job failed for good");
            metrics::counter!("postcast_jobs_failed_total", "kind" => kind).increment(1);
            item.finish(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// The error a [`Flaky`] attempt fails with.
    #[derive(Debug, thiserror::Error)]
    #[error("attempt {0} failed")]
    struct AttemptFailed(u32);

    struct Flaky {
        calls: Arc<AtomicU32>,
        fail_first: u32,
        hang_first: bool,
        weight: u64,
    }

    impl Flaky {
        fn new(calls: &Arc<AtomicU32>, fail_first: u32, hang_first: bool) -> Arc<Self> {
            Arc::new(Self { calls: calls.clone(), fail_first, hang_first, weight: 0 })
        }
    }

    impl Job for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn weight(&self) -> u64 {
            self.weight
        }
        fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), JobFailure>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = n < self.fail_first;
            let hang = self.hang_first && n == 0;
            Box::pin(async move {
                if hang {
                    futures::future::pending::<()>().await;
                }
                if fail { Err(AttemptFailed(n).into()) } else { Ok(()) }
            })
        }
    }

    /// A job that waits for a permit, holding `weight` bytes.
    struct Gate {
        open: Arc<tokio::sync::Semaphore>,
        weight: u64,
    }

    impl Job for Gate {
        fn kind(&self) -> &'static str {
            "gate"
        }
        fn weight(&self) -> u64 {
            self.weight
        }
        fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), JobFailure>> {
            Box::pin(async move {
                self.open.acquire().await?.forget();
                Ok(())
            })
        }
    }

    fn pool(queue: usize, queue_bytes: u64, retries: u32) -> JobPool {
        JobPool::start(PoolSettings {
            workers: 2,
            queue,
            queue_bytes,
            timeout: Duration::from_millis(200),
            retries,
            backoff: Duration::from_millis(5),
        })
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_retried_then_reported() {
        let p = pool(8, 1 << 20, 2);
        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Flaky::new(&calls, 2, false)).unwrap();
        assert!(h.outcome().await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Flaky::new(&calls, 0, true)).unwrap();
        assert!(h.outcome().await.is_ok(), "a hung first attempt is cut off and retried");

        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Flaky::new(&calls, 99, false)).unwrap();
        let err = h.outcome().await.unwrap_err();
        assert!(matches!(&err, JobError::Failed(e) if e.to_string() == "attempt 2 failed"), "{err:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one try plus two retries");
    }

    #[tokio::test]
    async fn a_full_queue_pushes_back() {
        let p = JobPool::start(PoolSettings {
            workers: 1,
            queue: 1,
            queue_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
            retries: 0,
            backoff: Duration::from_millis(1),
        });
        let calls = Arc::new(AtomicU32::new(0));
        let mut results = vec![];
        for _ in 0..10 {
            results.push(p.submit(Flaky::new(&calls, 0, true)).is_ok());
        }
        assert!(results.iter().any(|ok| !ok), "some submissions must be refused: {results:?}");
    }

    #[tokio::test]
    async fn the_byte_budget_refuses_heavy_jobs_until_bytes_are_given_back() {
        let p = pool(100, 1000, 0);
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = |weight| Arc::new(Gate { open: open.clone(), weight });
        let first = p.submit(gate(600)).unwrap();
        let second = p.submit(gate(400)).unwrap();
        assert_eq!(p.held_bytes(), 1000);
        assert!(matches!(p.submit(gate(1)), Err(JobError::QueueFull)), "one byte over the budget");
        let calls = Arc::new(AtomicU32::new(0));
        assert!(p.submit(Flaky::new(&calls, 0, false)).is_ok(), "a weightless job still fits");
        open.add_permits(2);
        assert!(first.outcome().await.is_ok() && second.outcome().await.is_ok());
        assert_eq!(p.held_bytes(), 0, "finished jobs give their bytes back");
        assert!(p.submit(gate(1000)).is_ok(), "the bytes are back once the jobs finished");
        assert!(matches!(p.submit(gate(1001)), Err(JobError::QueueFull)), "a job heavier than the budget");
    }
}
