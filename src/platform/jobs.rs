//! The job pool: a fixed number of workers pulling from a bounded queue, each job under a
//! timeout and retried with exponential back-off, with counters and a queue gauge in
//! `/metrics`. Streaming transcodes and mail delivery run here. A job that times out is
//! dropped, so anything it owns (a child process spawned with `kill_on_drop`) dies with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a job did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The queue is full: try later (back-pressure).
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
    Failed(String),
}

/// A unit of work; `run` is called once per attempt.
pub trait Job: Send + Sync + 'static {
    /// A short kind name for metrics and logs, e.g. `transcode`.
    fn kind(&self) -> &'static str;
    /// One attempt.
    fn run(&self) -> BoxFuture<'static, Result<(), String>>;
}

struct Queued {
    job: Arc<dyn Job>,
    attempt: u32,
    done: Option<oneshot::Sender<Result<(), JobError>>>,
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Concurrent workers.
    pub workers: usize,
    /// Queue capacity.
    pub queue: usize,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// First retry delay, doubled each time.
    pub backoff: Duration,
}

/// The pool handle; cheap to clone.
#[derive(Clone)]
pub struct JobPool {
    tx: mpsc::Sender<Queued>,
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
        let pool = Self { tx, settings: settings.clone() };
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

    /// Queues a job without waiting; `QueueFull` when the queue is at capacity.
    pub fn submit(&self, job: Arc<dyn Job>) -> Result<JobHandle, JobError> {
        let (done, rx) = oneshot::channel();
        let kind = job.kind();
        let item = Queued { job, attempt: 0, done: Some(done) };
        match self.tx.try_send(item) {
            Ok(()) => {
                metrics::counter!("postcast_jobs_submitted_total", "kind" => kind).increment(1);
                metrics::gauge!("postcast_jobs_queued").increment(1.0);
                Ok(JobHandle(rx))
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("postcast_jobs_rejected_total", "kind" => kind).increment(1);
                Err(JobError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(JobError::Stopped),
        }
    }

    /// The settings the pool runs with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }
}

async fn run_one(mut item: Queued, settings: &PoolSettings, retry_tx: &mpsc::WeakSender<Queued>) {
    let kind = item.job.kind();
    let started = Instant::now();
    let result = match tokio::time::timeout(settings.timeout, item.job.run()).await {
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
            if let Some(done) = item.done.take() {
                let _ = done.send(Ok(()));
            }
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
                    if let Err(mpsc::error::SendError(mut item)) = tx.send(item).await {
                        metrics::gauge!("postcast_jobs_queued").decrement(1.0);
                        if let Some(done) = item.done.take() {
                            let _ = done.send(Err(JobError::Stopped));
                        }
                    }
                }
            });
        }
        Err(e) => {
            tracing::error!(kind, error = %e, "job failed for good");
            metrics::counter!("postcast_jobs_failed_total", "kind" => kind).increment(1);
            if let Some(done) = item.done.take() {
                let _ = done.send(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        calls: Arc<AtomicU32>,
        fail_first: u32,
        hang_first: bool,
    }

    impl Job for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn run(&self) -> BoxFuture<'static, Result<(), String>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = n < self.fail_first;
            let hang = self.hang_first && n == 0;
            Box::pin(async move {
                if hang {
                    futures::future::pending::<()>().await;
                }
                if fail { Err(format!("attempt {n} failed")) } else { Ok(()) }
            })
        }
    }

    fn pool(queue: usize, retries: u32) -> JobPool {
        JobPool::start(PoolSettings {
            workers: 2,
            queue,
            timeout: Duration::from_millis(200),
            retries,
            backoff: Duration::from_millis(5),
        })
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_retried_then_reported() {
        let p = pool(8, 2);
        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Arc::new(Flaky { calls: calls.clone(), fail_first: 2, hang_first: false })).unwrap();
        assert_eq!(h.outcome().await, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Arc::new(Flaky { calls: calls.clone(), fail_first: 0, hang_first: true })).unwrap();
        assert_eq!(h.outcome().await, Ok(()), "a hung first attempt is cut off and retried");

        let calls = Arc::new(AtomicU32::new(0));
        let h = p.submit(Arc::new(Flaky { calls: calls.clone(), fail_first: 99, hang_first: false })).unwrap();
        assert!(matches!(h.outcome().await, Err(JobError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one try plus two retries");
    }

    #[tokio::test]
    async fn a_full_queue_pushes_back() {
        let p = JobPool::start(PoolSettings {
            workers: 1,
            queue: 1,
            timeout: Duration::from_secs(5),
            retries: 0,
            backoff: Duration::from_millis(1),
        });
        let calls = Arc::new(AtomicU32::new(0));
        let mut results = vec![];
        for _ in 0..10 {
            results.push(p.submit(Arc::new(Flaky { calls: calls.clone(), fail_first: 0, hang_first: true })).is_ok());
        }
        assert!(results.iter().any(|ok| !ok), "some submissions must be refused: {results:?}");
    }
}
