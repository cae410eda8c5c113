//! Rate limits and failure counts: fixed-window counters in a bounded moka cache, keyed by
//! what is limited (`login:ip:1.2.3.4`, `fail:192.0.2.7:alice`, ...). In memory by design: a restart
//! forgets them, which costs an attacker nothing they could not get by waiting.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::platform::net::client_network;

/// The part of a client address that rate limits count
/// ([`client_network`]), as text: `192.0.2.7`, or `2001:db8:1:2::/64`.
pub fn rate_key(ip: IpAddr) -> String {
    match client_network(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// One window's counter.
struct Window {
    started: Instant,
    count: AtomicU32,
}

/// A family of counters sharing a window length.
#[derive(Clone)]
pub struct Limiter {
    window: Duration,
    counters: moka::sync::Cache<String, Arc<Window>>,
}

impl Limiter {
    /// Counters that reset `window` after their first hit.
    pub fn new(window: Duration) -> Self {
        let counters = moka::sync::Cache::builder().max_capacity(200_000).time_to_live(window).build();
        Self { window, counters }
    }

    fn window(&self, key: &str) -> Arc<Window> {
        self.counters
            .get_with(key.to_owned(), || Arc::new(Window { started: Instant::now(), count: AtomicU32::new(0) }))
    }

    fn retry_after(&self, w: &Window) -> u64 {
        self.window.saturating_sub(w.started.elapsed()).as_secs().max(1)
    }

    /// Counts one attempt; `Err(seconds to wait)` once more than `limit` were made.
    pub fn hit(&self, key: &str, limit: u32) -> Result<(), u64> {
        let w = self.window(key);
        let n = w.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n > limit { Err(self.retry_after(&w)) } else { Ok(()) }
    }

    /// `Err(seconds to wait)` if `limit` or more were counted, without counting.
    pub fn check(&self, key: &str, limit: u32) -> Result<(), u64> {
        match self.counters.get(key) {
            Some(w) if w.count.load(Ordering::SeqCst) >= limit => Err(self.retry_after(&w)),
            _ => Ok(()),
        }
    }

    /// Forgets a key (after a successful login, or once a count led to a ban).
    pub fn reset(&self, key: &str) {
        self.counters.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::1", "::/64"),
            ("127.0.0.1", "127.0.0.1"),
        ];
        for (ip, key) in cases {
            assert_eq!(rate_key(ip.parse().expect("ip")), key, "{ip}");
        }
    }

    #[test]
    fn counts_per_key_and_resets() {
        let l = Limiter::new(Duration::from_secs(60));
        assert!(l.hit("a", 2).is_ok());
        assert!(l.hit("a", 2).is_ok());
        let wait = l.hit("a", 2).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(l.hit("b", 2).is_ok());
        assert!(l.check("a", 2).is_err());
        l.reset("a");
        assert!(l.check("a", 2).is_ok());
    }
}
