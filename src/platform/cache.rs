//! In-memory caches on moka, with hit and miss counters in `/metrics`. Domains own their
//! caches (what is cached, when it is invalidated); this module only builds them.

use std::hash::Hash;
use std::time::Duration;

/// A bounded, concurrent cache with an idle expiry and named metrics.
#[derive(Clone)]
pub struct Cache<K, V> {
    name: &'static str,
    inner: moka::future::Cache<K, V>,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache called `name` (used in metrics) holding at most `capacity` entries, each
    /// dropped after `idle` without use.
    pub fn new(name: &'static str, capacity: u64, idle: Duration) -> Self {
        let inner = moka::future::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(idle)
            .support_invalidation_closures()
            .build();
        Self { name, inner }
    }

    /// The cached value, counting a hit or a miss.
    pub async fn get(&self, key: &K) -> Option<V> {
        let v = self.inner.get(key).await;
        let outcome = if v.is_some() { "hit" } else { "miss" };
        metrics::counter!("postcast_cache_lookups_total", "cache" => self.name, "outcome" => outcome).increment(1);
        v
    }

    /// Stores a value.
    pub async fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value).await;
    }

    /// Drops one key.
    pub async fn invalidate(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    /// Drops every entry for which `pred` holds (e.g. all sessions of one user).
    pub fn invalidate_if(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) {
        // Only fails when invalidation closures are not enabled, and `new` enables them.
        let _ = self.inner.invalidate_entries_if(pred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalidate_if_drops_matching_entries_only() {
        let c: Cache<u32, u32> = Cache::new("test", 100, Duration::from_secs(60));
        c.insert(1, 10).await;
        c.insert(2, 20).await;
        c.invalidate_if(|_, v| *v == 10);
        c.inner.run_pending_tasks().await;
        assert_eq!(c.get(&1).await, None);
        assert_eq!(c.get(&2).await, Some(20));
        c.invalidate(&2).await;
        assert_eq!(c.get(&2).await, None);
    }
}
