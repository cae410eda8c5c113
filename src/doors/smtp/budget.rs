//! The one memory budget of the SMTP doors (`smtp.max_bytes_in_flight`): how many bytes of
//! message data all sessions of all doors may hold in memory at once, counted while a body
//! is received and while a whole message is handed to delivery. A session's body buffer is
//! charged as it grows and given back when its bytes go to the spool or the message is
//! delivered. It owns only the counting (a tokio semaphore whose permits are bytes): what to
//! do when the budget is spent (spool sooner, answer 452 4.3.1) is the session's and the
//! door's business. It does no I/O and never blocks but in [`Charge::wait_to`].

use std::fmt;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The shared budget; cheap to clone (all clones count against the same bytes).
#[derive(Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget").field("total", &self.total).field("free", &self.free()).finish()
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes (capped at what a semaphore can count).
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        Self { permits: Arc::new(Semaphore::new(total)), total }
    }

    /// The size of the budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The bytes nobody holds now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    /// A charge of no bytes, to grow later.
    pub fn charge(&self) -> Charge {
        Charge { permits: Arc::clone(&self.permits), total: self.total, held: None }
    }
}

/// Bytes held of a [`MemoryBudget`]; given back when dropped.
pub struct Charge {
    permits: Arc<Semaphore>,
    total: usize,
    held: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Charge").field(&self.bytes()).finish()
    }
}

impl Charge {
    /// The bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds `bytes` in all if the budget has room now; false (and no change) if not.
    pub fn try_grow_to(&mut self, bytes: usize) -> bool {
        let Some(more) = self.missing(bytes) else {
            return true;
        };
        match u32::try_from(more).ok().map(|n| Arc::clone(&self.permits).try_acquire_many_owned(n)) {
            Some(Ok(permit)) => {
                self.add(permit);
                true
            }
            _ => false,
        }
    }

    /// Holds `bytes` in all, waiting for others to give bytes back until `until`. False when
    /// `until` passed first, or at once when `bytes` is more than the whole budget.
    pub async fn wait_to(&mut self, bytes: usize, until: Instant) -> bool {
        let Some(more) = self.missing(bytes) else {
            return true;
        };
        if bytes > self.total {
            return false;
        }
        let Ok(more) = u32::try_from(more) else {
            return false;
        };
        let acquire = Arc::clone(&self.permits).acquire_many_owned(more);
        match tokio::time::timeout_at(until, acquire).await {
            Ok(Ok(permit)) => {
                self.add(permit);
                true
            }
            _ => false,
        }
    }

    /// Gives back what is held beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes == 0 {
            self.held = None;
        } else if let Some(held) = &mut self.held {
            let excess = held.num_permits().saturating_sub(bytes);
            drop(held.split(excess));
        }
    }

    /// The bytes still to get for `bytes` in all; None when held already.
    fn missing(&self, bytes: usize) -> Option<usize> {
        bytes.checked_sub(self.bytes()).filter(|&more| more > 0)
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn charges_grow_shrink_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.charge();
        assert!(a.try_grow_to(60));
        assert!(a.try_grow_to(40), "already held");
        assert_eq!((a.bytes(), budget.free()), (60, 40));
        let mut b = budget.charge();
        assert!(!b.try_grow_to(41));
        assert_eq!((b.bytes(), budget.free()), (0, 40), "a refused grow takes nothing");
        assert!(b.try_grow_to(40));
        a.shrink_to(10);
        assert_eq!((a.bytes(), budget.free()), (10, 50));
        a.shrink_to(0);
        assert_eq!(budget.free(), 60);
        drop(b);
        assert_eq!(budget.free(), 100);
    }

    #[tokio::test]
    async fn waiting_ends_when_bytes_come_back_or_at_the_deadline() {
        let budget = MemoryBudget::new(100);
        let mut first = budget.charge();
        assert!(first.try_grow_to(80));
        let mut second = budget.charge();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!second.wait_to(50, soon).await, "nobody gave bytes back");
        assert!(!second.wait_to(101, Instant::now() + Duration::from_secs(60)).await, "more than the budget: at once");
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        };
        let (got, ()) = tokio::join!(second.wait_to(50, Instant::now() + Duration::from_secs(10)), release);
        assert!(got);
        assert_eq!((second.bytes(), budget.free()), (50, 50));
    }
}
