//! Composite runs are bounded by the strategy engine's instance pool. A run
//! past the pool's size waits a bounded time for a slot and is then refused
//! with 503 and `Retry-After`, so a burst of composite requests queues or is
//! turned away cleanly instead of failing inside the engine. No one virtual
//! key holds more than three quarters of the slots: past its share it is
//! refused at once (429), so a flood from one key leaves room for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{AdmissionCheck, Candidate, Refusal, Verdict};
use crate::ops::Caller;
use crate::strategy::engine::POOL_INSTANCES;

/// How long a composite request waits for a free slot by default.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Admits at most as many concurrent composite runs as the engine can host.
pub struct CompositeCapacity {
    slots: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
    /// Runs each virtual key holds (by its hash); keys with none are absent.
    held: Arc<Mutex<HashMap<String, usize>>>,
    /// The most runs one virtual key may hold.
    key_share: usize,
}

impl CompositeCapacity {
    /// A check with one slot per pooled instance.
    pub fn new(queue_timeout: Duration) -> Self {
        Self::with_slots(POOL_INSTANCES as usize, queue_timeout)
    }

    /// A check with `slots` concurrent runs.
    pub fn with_slots(slots: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            capacity: slots,
            queue_timeout,
            held: Arc::default(),
            key_share: (slots * 3 / 4).max(1),
        }
    }

    /// Counts one more run for `key`, or refuses it past its share.
    fn take_share(&self, key: &str) -> Result<KeyShare, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(key.to_owned()).or_insert(0);
        if *count >= self.key_share {
            return Err(Refusal {
                status: 429,
                kind: "rate_limit_error",
                code: "composite_key_share",
                message: format!(
                    "this key already runs {} composite requests at once, the most one key may \
                     (three quarters of the gateway's {} composite slots)",
                    self.key_share, self.capacity
                ),
                retry_after: Some(Duration::from_secs(1)),
                headers: Vec::new(),
            });
        }
        *count += 1;
        Ok(KeyShare {
            held: self.held.clone(),
            key: key.to_owned(),
        })
    }
}

/// One run counted against a key's share, given back when the run ends.
struct KeyShare {
    held: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// An admitted run's slot, and its key's share when a virtual key asked.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _share: Option<KeyShare>,
}

impl AdmissionCheck for CompositeCapacity {
    fn name(&self) -> &'static str {
        "composite-capacity"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        if !candidate.composite {
            return Verdict::Now(Ok(None));
        }
        let share = match &candidate.ctx.request.caller {
            Caller::Key(principal) => match self.take_share(&principal.key.token_hash) {
                Ok(share) => Some(share),
                Err(refusal) => return Verdict::Now(Err(refusal)),
            },
            _ => None,
        };
        Verdict::Later(Box::pin(async move {
            let waited =
                tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
            match waited {
                Ok(Ok(permit)) => Ok(Some(Box::new(Slot {
                    _permit: permit,
                    _share: share,
                }) as super::Guard)),
                _ => Err(Refusal {
                    status: 503,
                    kind: "service_unavailable_error",
                    code: "composite_capacity",
                    message: format!(
                        "every composite slot is busy ({} runs at once); waited {:.1} s",
                        self.capacity,
                        self.queue_timeout.as_secs_f64()
                    ),
                    retry_after: Some(Duration::from_secs(1)),
                    headers: Vec::new(),
                }),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_holds_at_most_three_quarters_of_the_slots() {
        let capacity = CompositeCapacity::with_slots(8, Duration::from_millis(10));
        let held: Vec<KeyShare> = (0..6).map(|_| capacity.take_share("k1").unwrap()).collect();
        let refused = capacity.take_share("k1").err().unwrap();
        assert_eq!((refused.status, refused.code), (429, "composite_key_share"));
        assert!(refused.retry_after.is_some());
        let other = capacity.take_share("k2").unwrap();
        drop(held);
        assert!(capacity.take_share("k1").is_ok());
        drop(other);
        assert!(capacity.held.lock().unwrap().is_empty());
    }
}
