//! A count of bytes many holders share under one limit, for the memory the
//! gateway holds on behalf of others: request bodies being read, upstream
//! answers being read, and running strategies' guest memory. Each of those
//! is bounded per holder elsewhere; this bounds them all together, so that
//! many at once cannot add up past the machine's memory. The count is one
//! atomic: nothing ever waits for room, a holder that does not fit is told
//! so at once and the caller refuses its work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held together, and the most that may be.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// A budget of `mb` MiB, as configs give them (between 1 MiB and
    /// 1 TiB; config validation refuses values that are not positive).
    pub fn of_mb(mb: f64) -> Self {
        Self::new((mb.clamp(1.0, 1024.0 * 1024.0) * 1024.0 * 1024.0) as usize)
    }

    /// The most the budget holds, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most the budget holds, in whole MiB, for errors to name.
    pub fn limit_mb(&self) -> usize {
        self.limit >> 20
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Counts `n` more bytes when they fit under the limit.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// What one holder has of a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct HeldBytes {
    budget: Arc<ByteBudget>,
    bytes: AtomicUsize,
}

impl HeldBytes {
    /// Nothing held yet of `budget`.
    pub fn of(budget: Arc<ByteBudget>) -> Self {
        Self {
            budget,
            bytes: AtomicUsize::new(0),
        }
    }

    /// The budget this holds a part of.
    pub fn budget(&self) -> &ByteBudget {
        &self.budget
    }

    /// Holds `n` more bytes; false, holding what it held, when the budget
    /// cannot take them. Takes `&self` so that a holder shared by a body
    /// and the response that outlives it can count as bytes arrive.
    pub fn add(&self, n: usize) -> bool {
        if !self.budget.try_take(n) {
            return false;
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
        true
    }

    /// Holds exactly `bytes`, giving back what is no longer needed; false,
    /// holding what it held, when growing does not fit.
    pub fn resize(&mut self, bytes: usize) -> bool {
        let held = self.bytes.get_mut();
        // Unchanged (a stream's next chunk within what it holds): the
        // shared counter is left untouched.
        if bytes == *held {
            return true;
        }
        if bytes < *held {
            self.budget.give_back(*held - bytes);
        } else if !self.budget.try_take(bytes - *held) {
            return false;
        }
        *held = bytes;
        true
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.budget.give_back(*self.bytes.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_the_limit_and_give_back_when_dropped() {
        let budget = Arc::new(ByteBudget::new(100));
        let mut a = HeldBytes::of(budget.clone());
        let b = HeldBytes::of(budget.clone());
        assert!(a.resize(60));
        assert!(!b.add(50), "60 + 50 is past the limit");
        assert!(b.add(40));
        assert!(a.resize(60), "an unchanged size asks for nothing");
        drop(a);
        assert!(b.add(60));
        assert_eq!(budget.in_use(), 100);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn shrinking_gives_back_and_a_refused_growth_keeps_what_was_held() {
        let budget = Arc::new(ByteBudget::new(100));
        let mut a = HeldBytes::of(budget.clone());
        assert!(a.resize(80));
        assert!(!a.resize(101));
        assert_eq!(budget.in_use(), 80);
        assert!(a.resize(10));
        assert_eq!(budget.in_use(), 10);
    }

    #[test]
    fn a_budget_in_mib_is_clamped_to_at_least_one() {
        assert_eq!(ByteBudget::of_mb(0.25).limit_mb(), 1);
        assert_eq!(ByteBudget::of_mb(64.0).limit(), 64 << 20);
    }
}
