//! A deployment: one upstream target of a model group, with the live numbers
//! balancing reads (in-flight count, latency, health and usage). The live
//! numbers outlive a config version: a deployment whose identity did not
//! change shares them with its successor, so a reload keeps its cooldown,
//! usage windows and latency.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cooldown::Health;
use crate::providers::{Target, Timeouts};

/// Weight of the newest sample in the latency average.
const LATENCY_ALPHA: f64 = 0.3;

/// One deployment of a model group.
pub struct Deployment {
    /// Stable name for headers and logs (`model_info.id`, else `<group>.<index>`).
    pub id: Arc<str>,
    pub group: Arc<str>,
    pub target: Target,
    /// Lower is tried first; unset sorts after every set value.
    pub order: u32,
    /// Relative share for simple-shuffle; `None` when unset.
    pub weight: Option<f64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Overrides the router's `num_retries` when this deployment fails.
    pub max_retries: Option<u32>,
    /// Overrides the router's `cooldown_time` for this deployment.
    pub cooldown_time: Option<Duration>,
    pub timeouts: Timeouts,
    /// The longest prompt it takes, in tokens, when known: pre-call checks
    /// send a longer one elsewhere.
    pub max_input_tokens: Option<u64>,
    /// Its `tags`, which tag filtering matches a request's against.
    pub tags: Box<[String]>,
    /// Its own spend cap, which the router's caps count.
    pub budget: Option<super::budgets::CapSpec>,
    /// Its `max_parallel_requests`, when it has one.
    slots: Option<Arc<CallSlots>>,
    /// Hash of what the deployment calls (provider, model, api_base, key).
    fingerprint: String,
    live: Arc<LiveState>,
}

/// A deployment's `max_parallel_requests`: one permit per call in flight,
/// handed out in the order the calls asked for them. A reload that changes
/// the cap resizes these rather than starting afresh, so calls already in
/// flight (and those waiting) count against the new cap.
#[derive(Debug)]
pub struct CallSlots {
    /// The cap in force.
    limit: AtomicU32,
    permits: Arc<Semaphore>,
    /// Permits a lowered cap has yet to take back: while it is above zero,
    /// a call that ends keeps its permit out instead of returning it.
    owed: AtomicU32,
}

impl CallSlots {
    fn new(limit: u32) -> Self {
        Self {
            limit: AtomicU32::new(limit),
            permits: Arc::new(Semaphore::new(limit as usize)),
            owed: AtomicU32::new(0),
        }
    }

    /// Moves the cap to `limit`, counting the calls in flight against it.
    fn resize(&self, limit: u32) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old {
            let more = limit - old;
            let forgiven = take_up_to(&self.owed, more);
            self.permits.add_permits((more - forgiven) as usize);
        } else if limit < old {
            let fewer = old - limit;
            let taken = self.permits.forget_permits(fewer as usize) as u32;
            self.owed.fetch_add(fewer - taken, Ordering::SeqCst);
        }
    }

    /// Returns the permit of a call that ended, unless a lowered cap is
    /// still owed one.
    fn release(&self, permit: OwnedSemaphorePermit) {
        if take_up_to(&self.owed, 1) == 1 {
            permit.forget();
        }
    }
}

/// Takes up to `n` from `counter`; returns how much it took.
fn take_up_to(counter: &AtomicU32, n: u32) -> u32 {
    let before = counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| Some(c - c.min(n)))
        .unwrap_or(0);
    before.min(n)
}

/// One call's slot of a deployment with `max_parallel_requests`, given
/// back when the call (or its stream) ends.
pub struct CallSlot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<CallSlots>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.slots.release(permit);
        }
    }
}

/// A call to a deployment at its `max_parallel_requests` that no slot
/// freed for within the time it could wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFreeSlot {
    /// The deployment's `max_parallel_requests`.
    pub limit: u32,
}

/// The live numbers of a deployment, shared by every config version in
/// which its id and target fingerprint stay the same.
#[derive(Debug, Default)]
pub struct LiveState {
    in_flight: AtomicU32,
    /// Average latency in microseconds; 0 until the first success.
    latency_us: AtomicU64,
    health: Mutex<Health>,
    /// The last failed call and the background health checks' findings,
    /// for `/health` and the metrics.
    checks: Mutex<super::checks::Checks>,
    /// The call slots, kept for the next config versions, so that calls
    /// begun before a reload still hold theirs.
    slots: Mutex<Option<Arc<CallSlots>>>,
}

impl LiveState {
    /// The call slots for `limit`: the ones already kept, resized to it,
    /// else new ones.
    fn slots_for(&self, limit: u32) -> Arc<CallSlots> {
        let mut kept = match self.slots.lock() {
            Ok(kept) => kept,
            Err(poisoned) => poisoned.into_inner(),
        };
        match kept.as_ref() {
            Some(slots) => {
                slots.resize(limit);
                Arc::clone(slots)
            }
            None => {
                let slots = Arc::new(CallSlots::new(limit));
                *kept = Some(Arc::clone(&slots));
                slots
            }
        }
    }
}

/// What a deployment is, as read from its model_list entry; the live
/// numbers start empty in [`Deployment::new`].
pub struct DeploymentSpec {
    /// Stable name for headers and logs.
    pub id: String,
    /// The model group it serves.
    pub group: String,
    /// Where its requests go.
    pub target: Target,
    /// Lower is tried first; `None` sorts after every set value.
    pub order: Option<u32>,
    /// Relative share for simple-shuffle.
    pub weight: Option<f64>,
    /// Requests per minute it accepts, for usage-based routing.
    pub rpm: Option<u64>,
    /// Tokens per minute it accepts, for usage-based routing.
    pub tpm: Option<u64>,
    /// Overrides the router's `num_retries`.
    pub max_retries: Option<u32>,
    /// Overrides the router's `cooldown_time` (zero: never cooled).
    pub cooldown_time: Option<Duration>,
    /// Resolved from the entry, then router_settings and litellm_settings.
    pub timeouts: Timeouts,
    /// Calls it may have in flight at once; past it, a call waits.
    pub max_parallel_requests: Option<u32>,
    /// Its context window: `model_info.max_input_tokens`, else the catalog's.
    pub max_input_tokens: Option<u64>,
    /// Its `tags`, for tag filtering.
    pub tags: Vec<String>,
    /// Its own spend cap (`max_budget` per `budget_duration`).
    pub budget: Option<super::budgets::CapSpec>,
    /// Hash of what it calls: with `id`, its identity across config versions.
    pub fingerprint: String,
}

#[cfg(test)]
impl Deployment {
    /// A mock deployment `id` of group `g` carrying `tags`, for unit tests
    /// of the choices the router makes among deployments.
    pub fn for_test(id: &str, tags: &[&str]) -> Arc<Self> {
        let params = crate::config::LitellmParams {
            model: "mock/m".into(),
            ..Default::default()
        };
        let env = crate::config::Env::default();
        Arc::new(Self::new(DeploymentSpec {
            id: id.into(),
            group: "g".into(),
            target: Target::from_params(&params, &env, false).unwrap(),
            order: None,
            weight: None,
            rpm: None,
            tpm: None,
            max_retries: None,
            cooldown_time: None,
            timeouts: Timeouts {
                request: Duration::from_secs(1),
                stream: Duration::from_secs(1),
            },
            max_parallel_requests: None,
            max_input_tokens: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            budget: None,
            fingerprint: String::new(),
        }))
    }
}

impl Deployment {
    /// A deployment with no history.
    pub fn new(spec: DeploymentSpec) -> Self {
        Self::with_live(spec, Arc::default())
    }

    /// A deployment that carries on `live`, the numbers of the same
    /// deployment in the previous config version.
    pub fn with_live(spec: DeploymentSpec, live: Arc<LiveState>) -> Self {
        let DeploymentSpec {
            id,
            group,
            target,
            order,
            weight,
            rpm,
            tpm,
            max_retries,
            cooldown_time,
            timeouts,
            max_parallel_requests,
            max_input_tokens,
            tags,
            budget,
            fingerprint,
        } = spec;
        let slots = max_parallel_requests.map(|limit| live.slots_for(limit));
        Self {
            id: id.into(),
            group: group.into(),
            target,
            order: order.unwrap_or(u32::MAX),
            weight,
            rpm,
            tpm,
            max_retries,
            cooldown_time,
            timeouts,
            max_input_tokens,
            tags: tags.into(),
            budget,
            slots,
            fingerprint,
            live,
        }
    }

    /// Hash of what this deployment calls; never the key itself.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The live numbers, for the next config version to carry on.
    pub fn live(&self) -> &Arc<LiveState> {
        &self.live
    }

    /// Requests currently being served.
    pub fn in_flight(&self) -> u32 {
        self.live.in_flight.load(Ordering::Relaxed)
    }

    /// Average latency (time to first chunk for streams), if any request succeeded.
    pub fn latency(&self) -> Option<Duration> {
        match self.live.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Folds one latency sample into the average.
    pub fn record_latency(&self, sample: Duration) {
        let sample_us = (sample.as_micros() as u64).max(1);
        // A lost update under contention only drops one sample.
        let old = self.live.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample_us
        } else {
            ((1.0 - LATENCY_ALPHA) * old as f64 + LATENCY_ALPHA * sample_us as f64).max(1.0) as u64
        };
        self.live.latency_us.store(new, Ordering::Relaxed);
    }

    /// Runs `f` on the health record; a cooldown `f` started is announced
    /// to the other instances (when they share state), after the lock.
    pub fn with_health<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        let (result, started) = match self.live.health.lock() {
            Ok(mut h) => (f(&mut h), h.take_started()),
            Err(poisoned) => {
                let mut h = poisoned.into_inner();
                (f(&mut h), h.take_started())
            }
        };
        if let Some(time) = started {
            super::cooldown::announce(&self.id, &self.fingerprint, time);
        }
        result
    }

    /// Cools this deployment until `until` for a cooldown another instance
    /// started (announcing nothing).
    pub fn cool_until(&self, until: Instant) {
        match self.live.health.lock() {
            Ok(mut h) => h.cool_until(until),
            Err(poisoned) => poisoned.into_inner().cool_until(until),
        }
    }

    /// When this deployment comes back, if it is cooling down.
    pub fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.with_health(|h| h.cooling_until(now))
    }

    /// Runs `f` on the last error and health-check record.
    pub fn with_checks<R>(&self, f: impl FnOnce(&mut super::checks::Checks) -> R) -> R {
        match self.live.checks.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Its `max_parallel_requests`, when it has one.
    pub fn call_limit(&self) -> Option<u32> {
        self.slots.as_ref().map(|s| s.limit.load(Ordering::Relaxed))
    }

    /// Whether a call may start now without waiting for a slot.
    pub fn has_free_slot(&self) -> bool {
        self.slots
            .as_ref()
            .is_none_or(|s| s.permits.available_permits() > 0)
    }

    /// A slot for one call, waiting up to `within` for one to free when the
    /// deployment is at its `max_parallel_requests`; `None` (and no wait)
    /// when it has no such limit.
    pub async fn wait_for_slot(&self, within: Duration) -> Result<Option<CallSlot>, NoFreeSlot> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        let permit = match Arc::clone(&slots.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                match tokio::time::timeout(within, Arc::clone(&slots.permits).acquire_owned()).await
                {
                    Ok(Ok(permit)) => permit,
                    // The permits are never closed; a closed set is a full one.
                    Ok(Err(_)) | Err(_) => {
                        return Err(NoFreeSlot {
                            limit: slots.limit.load(Ordering::Relaxed),
                        });
                    }
                }
            }
        };
        Ok(Some(CallSlot {
            permit: Some(permit),
            slots: Arc::clone(slots),
        }))
    }

    /// Marks one request in flight, holding `slot`, until the guard drops.
    pub fn enter(&self, slot: Option<CallSlot>) -> InFlight {
        self.live.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            live: self.live.clone(),
            _slot: slot,
        }
    }
}

/// Keeps a deployment's in-flight count up, and its call slot taken, while
/// a request (or its stream) lives; the count is the shared one, so a
/// request that started before a reload still counts, and is still taken
/// off, after it.
pub struct InFlight {
    live: Arc<LiveState>,
    _slot: Option<CallSlot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
