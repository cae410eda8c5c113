//! The per-user storage quota: one limit over everything a user keeps (each domain
//! registers a [`UsageSource`] saying how many bytes a user holds in its tables: mail,
//! uploads, recordings). Sums are cached for a short while and what is stored meanwhile is
//! charged to the cached figure, so checking costs no query per message. It knows nothing
//! of what the bytes are.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};

/// How long a user's summed usage is trusted before it is summed again.
const USAGE_FRESH: Duration = Duration::from_secs(30);

/// `[quota]`: how much each user may store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Storage per user in MiB, covering mail, attachments being written and stream
    /// recordings; 0 = no limit.
    pub storage_mb: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self { storage_mb: 20 * 1024 }
    }
}

/// Something that holds bytes on behalf of users.
pub trait UsageSource: Send + Sync {
    /// The bytes `user_id` holds here.
    fn bytes_used(&self, user_id: i64) -> BoxFuture<'_, Result<u64, DbErr>>;
}

/// Why something may not be stored.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The user's storage is full.
    #[error("storage quota exceeded: {used} of {limit} bytes used")]
    Exceeded {
        /// Bytes in use (with what was to be added).
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// Usage could not be read.
    #[error("usage unreadable: {0}")]
    Db(#[from] DbErr),
}

/// The quota: a limit and the sources summed against it. Cheap to clone.
#[derive(Clone)]
pub struct Quota {
    inner: Arc<Inner>,
}

struct Inner {
    limit: Option<u64>,
    sources: RwLock<Vec<Arc<dyn UsageSource>>>,
    usage: moka::sync::Cache<i64, u64>,
}

impl Quota {
    /// A quota as `[quota]` sets it, with no sources yet.
    pub fn new(config: &QuotaConfig) -> Self {
        let limit = (config.storage_mb > 0).then(|| config.storage_mb.saturating_mul(1024 * 1024));
        let usage = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(USAGE_FRESH).build();
        Self { inner: Arc::new(Inner { limit, sources: RwLock::new(Vec::new()), usage }) }
    }

    /// Adds a source whose bytes count against the limit.
    pub fn add_source(&self, source: Arc<dyn UsageSource>) {
        if let Ok(mut sources) = self.inner.sources.write() {
            sources.push(source);
        }
    }

    /// The limit in bytes, if there is one.
    pub fn limit(&self) -> Option<u64> {
        self.inner.limit
    }

    /// The bytes `user_id` holds in all sources (summed at most every 30 s, plus what was
    /// charged since).
    pub async fn used(&self, user_id: i64) -> Result<u64, DbErr> {
        if let Some(used) = self.inner.usage.get(&user_id) {
            return Ok(used);
        }
        let sources: Vec<_> = self.inner.sources.read().map(|s| s.clone()).unwrap_or_default();
        let mut total = 0u64;
        for source in sources {
            total = total.saturating_add(source.bytes_used(user_id).await?);
        }
        self.inner.usage.insert(user_id, total);
        Ok(total)
    }

    /// Whether `user_id` may store `adding` more bytes.
    pub async fn check(&self, user_id: i64, adding: u64) -> Result<(), QuotaError> {
        let Some(limit) = self.inner.limit else { return Ok(()) };
        let used = self.used(user_id).await?.saturating_add(adding);
        if used > limit || (adding == 0 && used >= limit) {
            return Err(QuotaError::Exceeded { used, limit });
        }
        Ok(())
    }

    /// Counts `bytes` just stored for `user_id` until usage is summed again.
    pub fn charge(&self, user_id: i64, bytes: u64) {
        self.inner.usage.entry(user_id).and_compute_with(|entry| match entry {
            Some(e) => moka::ops::compute::Op::Put(e.into_value().saturating_add(bytes)),
            None => moka::ops::compute::Op::Nop,
        });
    }

    /// Forgets the cached figure of `user_id` (after deleting), so the next check sums afresh.
    pub fn forget(&self, user_id: i64) {
        self.inner.usage.invalidate(&user_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Fixed(AtomicU64);

    impl UsageSource for Fixed {
        fn bytes_used(&self, _: i64) -> BoxFuture<'_, Result<u64, DbErr>> {
            Box::pin(async move { Ok(self.0.load(Ordering::SeqCst)) })
        }
    }

    #[tokio::test]
    async fn sums_sources_charges_and_refuses_past_the_limit() {
        let quota = Quota::new(&QuotaConfig { storage_mb: 1 });
        let mail = Arc::new(Fixed(AtomicU64::new(600 * 1024)));
        quota.add_source(mail.clone());
        quota.add_source(Arc::new(Fixed(AtomicU64::new(300 * 1024))));
        assert_eq!(quota.used(7).await.unwrap(), 900 * 1024);
        quota.check(7, 100 * 1024).await.expect("fits");
        assert!(matches!(quota.check(7, 200 * 1024).await, Err(QuotaError::Exceeded { .. })));
        quota.charge(7, 124 * 1024);
        assert!(matches!(quota.check(7, 0).await, Err(QuotaError::Exceeded { .. })), "full at the limit");
        mail.0.store(0, Ordering::SeqCst);
        quota.forget(7);
        quota.check(7, 0).await.expect("after deleting, summed afresh");
        let unlimited = Quota::new(&QuotaConfig { storage_mb: 0 });
        unlimited.add_source(mail);
        unlimited.check(7, u64::MAX).await.expect("0 means no limit");
    }
}
