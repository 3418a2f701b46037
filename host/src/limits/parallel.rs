//! Requests in flight per scope. A slot is taken when a request is admitted
//! and given back when its guard drops, which is when the request's answer
//! (or stream) ends, however it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::shards::Idle;

/// The in-flight count of one scope.
#[derive(Default)]
pub struct InFlight(AtomicU32);

impl InFlight {
    /// Takes a slot when fewer than `max` are taken.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<LocalSlot> {
        let taken = self.0.fetch_add(1, Ordering::AcqRel);
        if taken >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(LocalSlot(self.clone()))
    }

    /// Slots taken now.
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl Idle for InFlight {
    fn is_idle(&self, _now: Instant) -> bool {
        self.current() == 0
    }
}

/// One taken slot; dropping it gives the slot back.
pub struct LocalSlot(Arc<InFlight>);

impl Drop for LocalSlot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_past_the_maximum_are_refused_and_come_back_on_drop() {
        let counter = Arc::new(InFlight::default());
        let a = counter.try_acquire(2);
        let b = counter.try_acquire(2);
        assert!(a.is_some() && b.is_some());
        assert!(counter.try_acquire(2).is_none());
        assert_eq!(counter.current(), 2);
        drop(a);
        assert!(counter.try_acquire(2).is_some());
        drop(b);
        assert_eq!(counter.current(), 0);
    }
}
