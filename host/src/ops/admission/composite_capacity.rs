//! Composite runs are bounded by the strategy engine's instance pool. A run
//! past the pool's size waits a bounded time for a slot and is then refused
//! with 503 and `Retry-After`, so a burst of composite requests queues or is
//! turned away cleanly instead of failing inside the engine.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{AdmissionCheck, Candidate, Refusal, Verdict};
use crate::strategy::engine::POOL_INSTANCES;

/// How long a composite request waits for a free slot by default.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Admits at most as many concurrent composite runs as the engine can host.
pub struct CompositeCapacity {
    slots: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
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
        }
    }
}

impl AdmissionCheck for CompositeCapacity {
    fn name(&self) -> &'static str {
        "composite-capacity"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        if !candidate.composite {
            return Verdict::Now(Ok(None));
        }
        Verdict::Later(Box::pin(async move {
            let waited =
                tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
            match waited {
                Ok(Ok(permit)) => Ok(Some(Box::new(permit) as super::Guard)),
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
