//! A deployment: one upstream target of a model group, with the live numbers
//! balancing reads (in-flight count, latency, health and usage).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cooldown::Health;
use crate::providers::{Target, Timeouts};

/// Weight of the newest sample in the latency average.
const LATENCY_ALPHA: f64 = 0.3;

/// One deployment of a model group.
pub struct Deployment {
    /// Stable name for headers and logs (`model_info.id`, else `<group>.<index>`).
    pub id: String,
    pub group: String,
    pub target: Target,
    /// Lower is tried first; unset sorts after every set value.
    pub order: u32,
    /// Relative share for simple-shuffle; `None` when unset.
    pub weight: Option<f64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Overrides the router's `num_retries` when this deployment fails.
    pub max_retries: Option<u32>,
    pub timeouts: Timeouts,
    in_flight: AtomicU32,
    /// Average latency in microseconds; 0 until the first success.
    latency_us: AtomicU64,
    health: Mutex<Health>,
}

impl Deployment {
    /// A deployment with no history.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        group: String,
        target: Target,
        order: Option<u32>,
        weight: Option<f64>,
        rpm: Option<u64>,
        tpm: Option<u64>,
        max_retries: Option<u32>,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            id,
            group,
            target,
            order: order.unwrap_or(u32::MAX),
            weight,
            rpm,
            tpm,
            max_retries,
            timeouts,
            in_flight: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    /// Requests currently being served.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Average latency (time to first chunk for streams), if any request succeeded.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Folds one latency sample into the average.
    pub fn record_latency(&self, sample: Duration) {
        let sample_us = (sample.as_micros() as u64).max(1);
        // A lost update under contention only drops one sample.
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample_us
        } else {
            ((1.0 - LATENCY_ALPHA) * old as f64 + LATENCY_ALPHA * sample_us as f64).max(1.0) as u64
        };
        self.latency_us.store(new, Ordering::Relaxed);
    }

    /// Runs `f` on the health record.
    pub fn with_health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        match self.health.lock() {
            Ok(mut h) => f(&mut h),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// When this deployment comes back, if it is cooling down.
    pub fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.with_health(|h| h.cooling_until(now))
    }

    /// Marks one request in flight until the guard drops.
    pub fn enter(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Keeps a deployment's in-flight count up while a request (or its stream) lives.
pub struct InFlight(std::sync::Arc<Deployment>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
