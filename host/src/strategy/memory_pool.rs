//! The memory all running guests hold together. Each run is bounded by
//! its profile's `memory_mb`, but as many runs as the instance pool holds
//! may run at once, so without a bound of their own together they could
//! hold 256 times that. A run's linear memory counts against
//! [`DEFAULT_TOTAL_BYTES`] as it grows; growth past it is refused (the run
//! fails with a 503 the client may retry), and a run's share is given back
//! when it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What all running guests may hold together: 4 GiB, 64 runs at the
/// default `memory_mb` (most hold far less than their limit).
pub const DEFAULT_TOTAL_BYTES: usize = 4 << 30;

/// The guests' memory, shared by every run of one engine.
#[derive(Clone)]
pub struct MemoryPool {
    held: Arc<AtomicUsize>,
    total: usize,
}

impl MemoryPool {
    /// A pool of `total` bytes.
    pub fn new(total: usize) -> Self {
        Self {
            held: Arc::default(),
            total,
        }
    }

    /// A run's share, empty until its memory grows.
    pub fn share(&self) -> Share {
        Share {
            pool: self.clone(),
            held: 0,
        }
    }
}

/// One run's memory in the pool, given back when dropped.
pub struct Share {
    pool: MemoryPool,
    held: usize,
}

impl Share {
    /// The pool's size in bytes.
    pub fn pool_total(&self) -> usize {
        self.pool.total
    }

    /// Grows the share to `bytes` if the pool has room; false otherwise.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let more = bytes.saturating_sub(self.held);
        let held = &self.pool.held;
        let granted = held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(more)
                    .filter(|after| *after <= self.pool.total)
            })
            .is_ok();
        if granted {
            self.held += more;
        }
        granted
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.pool.held.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_grow_within_the_pool_and_give_back_when_dropped() {
        let pool = MemoryPool::new(100);
        let mut a = pool.share();
        let mut b = pool.share();
        assert!(a.grow_to(60));
        assert!(!b.grow_to(50), "60 + 50 is past the pool");
        assert!(b.grow_to(40));
        assert!(a.grow_to(60), "no growth asks for nothing");
        drop(a);
        assert!(b.grow_to(100));
    }
}
