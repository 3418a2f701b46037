//! At most one warning per interval from a failure that repeats (a store
//! that is down, sinks falling behind): the first occurrence logs, the
//! rest of the interval stays quiet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a repeated warning was last logged; lock-free, shared by reference.
#[derive(Debug)]
pub struct Throttle {
    every_s: u64,
    /// Seconds since the epoch of the last warning allowed.
    last_s: AtomicU64,
}

impl Throttle {
    /// A throttle allowing one warning per `every` (whole seconds).
    pub const fn new(every: Duration) -> Self {
        Self {
            every_s: every.as_secs(),
            last_s: AtomicU64::new(0),
        }
    }

    /// Whether this occurrence may log: the first one past the interval
    /// since the last allowed warning (one caller wins a race for it).
    pub fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_s.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.every_s
            && self
                .last_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval() {
        let throttle = Throttle::new(Duration::from_secs(60));
        assert!(throttle.allow());
        assert!(!throttle.allow());
        assert!(Throttle::new(Duration::ZERO).allow());
    }
}
