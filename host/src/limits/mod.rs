//! The counters behind virtual-key limits: requests and tokens per minute,
//! requests in flight and spend per budget period, for every scope a limit
//! can be set on (a key, its user, its team, and the key's use of one
//! model).
//!
//! [`Limiter`] is the one interface the request path sees: admission asks
//! [`Limiter::admit`] before a request (or a composite's sub-call) runs, and
//! the answer's tokens and cost are charged with [`Limiter::charge`] as soon
//! as they are known, on the response path, so the very next call sees
//! them. Behind it, two kinds of counters:
//!
//! - [`local`]: this process's memory, sharded by scope name so requests of
//!   different keys rarely meet on a lock (no lock is held across an
//!   await). A config reload keeps them.
//! - [`shared`]: one Redis for every instance, each check-and-count one
//!   atomic script, when a Redis is configured. While it does not answer
//!   (within a small budget), requests are counted in the local counters
//!   instead: limits fail open to per-instance counting, as LiteLLM's do.
//!
//! What a request's scopes are is decided by the caller's records
//! (`keys::scopes`); this module only counts and compares.

mod ledger;
mod local;
pub(crate) mod parallel;
mod shards;
pub mod shared;
mod window;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use ledger::Recorded;
use local::LocalCounters;
use parallel::LocalSlot;
use shared::{SharedCounters, SharedSlot};
pub use window::{RateDenied, RateKind, Remaining, WINDOW};

/// The level a limit is set at, as error messages and codes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Key,
    User,
    Team,
    /// A key's limit for one model (`model_rpm_limit`, `model_max_budget`, ...).
    Model,
    /// The end user a request names (`user`, LiteLLM's customer), under
    /// the budget it is linked to.
    EndUser,
    /// The whole gateway (`litellm_settings.max_budget`), whoever calls.
    Proxy,
}

impl Level {
    /// The level's name in messages and error codes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::User => "user",
            Level::Team => "team",
            Level::Model => "model",
            Level::EndUser => "end_user",
            Level::Proxy => "proxy",
        }
    }
}

/// The share of a budget that sums of prices may miss it by and still
/// count as reaching it: costs are added as floats, and ten calls of
/// $0.05 add up to $0.49999999999999994, which must spend a $0.50 budget.
/// A billionth is far below any call's price and far above float error.
pub const BUDGET_TOLERANCE: f64 = 1e-9;

/// Whether `spent` has reached the budget `max`, allowing for the float
/// error of adding prices ([`BUDGET_TOLERANCE`]).
pub fn reached(spent: f64, max: f64) -> bool {
    spent >= max - max.abs() * BUDGET_TOLERANCE
}

/// A budget of one scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// `max_budget` (USD per period).
    pub max: f64,
    /// Where the spend counter starts and how its periods run.
    pub recorded: Recorded,
}

/// One scope a request is counted in, with the limits set on it. Its
/// names are borrowed from the caller's principal where they can be.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope<'a> {
    pub level: Level,
    /// The counters' name: unique per scope (`key:<hash>`, `user:<id>`, ...).
    pub name: Cow<'a, str>,
    /// How messages name it, never a secret (`key sk-...abcd`, `team core`).
    pub label: Cow<'a, str>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u32>,
    pub budget: Option<Budget>,
}

/// Why a scope refused a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Exceeded {
    /// A per-minute limit is reached.
    Rate {
        level: Level,
        label: String,
        denied: RateDenied,
    },
    /// As many requests as allowed are in flight.
    Parallel {
        level: Level,
        label: String,
        limit: u32,
    },
    /// The budget of the current period is spent.
    Budget {
        level: Level,
        label: String,
        limit: f64,
        spent: f64,
        reset_at: Option<SystemTime>,
    },
}

impl Exceeded {
    /// How long until retrying could succeed, when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Exceeded::Rate { denied, .. } => Some(denied.retry_after),
            Exceeded::Parallel { .. } => Some(Duration::from_secs(1)),
            Exceeded::Budget { reset_at, .. } => reset_at
                .and_then(|r| r.duration_since(SystemTime::now()).ok())
                .map(|d| d.max(Duration::from_secs(1))),
        }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Rate { label, denied, .. } => {
                let (what, name) = match denied.kind {
                    RateKind::Requests => ("requests", "rpm_limit"),
                    RateKind::Tokens => ("tokens", "tpm_limit"),
                };
                write!(
                    f,
                    "rate limit reached for {label}: {name} {} {what} per minute; retry in {} s",
                    denied.limit,
                    denied.retry_after.as_secs_f64().ceil().max(1.0)
                )
            }
            Exceeded::Parallel { label, limit, .. } => write!(
                f,
                "too many requests in flight for {label}: max_parallel_requests is {limit}"
            ),
            Exceeded::Budget {
                label,
                limit,
                spent,
                reset_at,
                ..
            } => {
                write!(
                    f,
                    "budget exceeded for {label}: spent ${spent:.6} of max_budget ${limit:.6}"
                )?;
                match reset_at {
                    Some(at) => write!(f, "; resets at {}", humantime::format_rfc3339_seconds(*at)),
                    None => f.write_str("; the budget has no budget_duration and does not reset"),
                }
            }
        }
    }
}

/// What admitting a request reserved and what remains.
#[derive(Default)]
pub struct Admit {
    /// In-flight slots, given back when dropped.
    pub slots: Vec<Slot>,
    /// The rate-limit figures of the tightest scope, for headers.
    pub limits: RateFigures,
}

/// In-flight slots taken by one admission; dropping it gives them back
/// (in this process, or in Redis for shared counters).
pub struct Slot {
    _held: Held,
}

/// Each kind gives its slots back when dropped.
enum Held {
    Local { _slot: LocalSlot },
    Shared { _slots: SharedSlot },
}

impl Slot {
    fn local(slot: LocalSlot) -> Self {
        Self {
            _held: Held::Local { _slot: slot },
        }
    }

    fn shared(slots: SharedSlot) -> Self {
        Self {
            _held: Held::Shared { _slots: slots },
        }
    }
}

/// The rate figures of the tightest limited scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateFigures {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl RateFigures {
    fn tighten(&mut self, scope: &Scope<'_>, remaining: Remaining) {
        if let (Some(limit), Some(left)) = (scope.rpm, remaining.requests)
            && self.remaining_requests.is_none_or(|r| left < r)
        {
            self.limit_requests = Some(limit);
            self.remaining_requests = Some(left);
        }
        if let (Some(limit), Some(left)) = (scope.tpm, remaining.tokens)
            && self.remaining_tokens.is_none_or(|r| left < r)
        {
            self.limit_tokens = Some(limit);
            self.remaining_tokens = Some(left);
        }
    }

    /// The figures of a refusal by `scope`.
    pub fn of_denial(scope_rpm: Option<u64>, scope_tpm: Option<u64>, d: &RateDenied) -> Self {
        Self {
            limit_requests: scope_rpm,
            remaining_requests: d.remaining_requests,
            limit_tokens: scope_tpm,
            remaining_tokens: d.remaining_tokens,
        }
    }
}

/// A refusal with the rate figures of the scope that refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub exceeded: Exceeded,
    pub figures: RateFigures,
}

/// The server's limit counters; cheap to clone.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    local: LocalCounters,
    shared: Option<SharedCounters>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.shared.is_some() {
            "Limiter(shared)"
        } else {
            "Limiter(local)"
        })
    }
}

impl Limiter {
    /// Counters in this process only.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            local: LocalCounters::default(),
            shared: None,
        }))
    }

    /// Counters shared through Redis, with this process's as the fallback
    /// while Redis does not answer.
    pub fn shared(shared: SharedCounters) -> Self {
        Self(Arc::new(Inner {
            local: LocalCounters::default(),
            shared: Some(shared),
        }))
    }

    /// Whether the counters are shared by instances.
    pub fn is_shared(&self) -> bool {
        self.0.shared.is_some()
    }

    /// How many calls to the shared counters' Redis failed or timed out
    /// (each a decision this instance made alone); `None` when not shared.
    pub fn shared_failures(&self) -> Option<u64> {
        self.0.shared.as_ref().map(SharedCounters::failures)
    }

    /// Admits a call counted in `scopes`: no budget spent, then (when
    /// `hold_slot`) an in-flight slot in every scope that limits them, then
    /// one request in every per-minute window. A refusal takes nothing.
    /// With shared counters this is one Redis round trip; when Redis does
    /// not answer within its budget, the local counters decide.
    pub async fn admit(
        &self,
        scopes: &[Scope<'_>],
        hold_slot: bool,
    ) -> Result<Admit, Box<Refused>> {
        if let Some(shared) = &self.0.shared
            && let Ok(decided) = shared.admit(scopes, hold_slot, &self.0.local).await
        {
            return decided;
        }
        self.0.local.admit(scopes, hold_slot)
    }

    /// Counts an answered call's tokens and cost in every scope that has a
    /// window or a spend counter. Never waits: shared counters are charged
    /// by the next pipeline to Redis, before this instance's next admission.
    pub fn charge(&self, scopes: &[Scope<'_>], tokens: u64, cost: f64) {
        self.0.local.charge(scopes, tokens, cost);
        if let Some(shared) = &self.0.shared {
            shared.charge(scopes, tokens, cost);
        }
    }

    /// Sets the current period's spend of scope `name`, an administrator's
    /// correction (`spend` on the management API's update routes), in the
    /// local counters and the shared ones: both only ever move up from the
    /// records they are given, so a lower spend must be set. A Redis that
    /// does not answer leaves its counters as they were, which the error says.
    pub async fn set_spent(&self, name: &str, spend: f64) -> Result<(), String> {
        self.0.local.set_spent(name, spend);
        match &self.0.shared {
            Some(shared) => shared.set_spent(name, spend).await,
            None => Ok(()),
        }
    }

    /// Gives scope `to` what scope `from` has counted of its current rate
    /// window (and, when shared, its spend counter): a key given a new value
    /// is counted under a new name, and must not start its minute afresh.
    /// A Redis that does not answer leaves the shared counters as they were,
    /// which the error says.
    pub async fn carry(&self, from: &str, to: &str) -> Result<(), String> {
        self.0.local.carry_window(from, to);
        match &self.0.shared {
            Some(shared) => shared.carry(from, to).await,
            None => Ok(()),
        }
    }

    /// The spend this process counted so far in the current period of
    /// `name`, if it counted any (the local counters).
    pub fn spent(&self, name: &str) -> Option<f64> {
        self.0.local.spent(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_reached_by_a_sum_of_prices_that_float_error_leaves_short() {
        let spent = (0..10).fold(0.0, |sum, _| sum + 0.05);
        assert!(spent < 0.5, "the float sum falls short: {spent}");
        assert!(reached(spent, 0.5));
        assert!(!reached(0.45, 0.5));
        assert!(reached(0.0, 0.0), "a budget of 0 admits nothing");
    }

    fn scope(name: &str, level: Level) -> Scope<'_> {
        Scope {
            level,
            name: name.into(),
            label: name.into(),
            rpm: None,
            tpm: None,
            parallel: None,
            budget: None,
        }
    }

    #[tokio::test]
    async fn a_refusal_by_a_later_scope_gives_back_the_earlier_requests() {
        let limiter = Limiter::new();
        let key = Scope {
            rpm: Some(5),
            ..scope("key:a", Level::Key)
        };
        let team = Scope {
            rpm: Some(1),
            ..scope("team:t", Level::Team)
        };
        assert!(
            limiter
                .admit(&[key.clone(), team.clone()], true)
                .await
                .is_ok()
        );
        let refused = limiter
            .admit(&[key.clone(), team], true)
            .await
            .err()
            .unwrap();
        assert!(matches!(
            refused.exceeded,
            Exceeded::Rate {
                level: Level::Team,
                ..
            }
        ));
        let admitted = limiter.admit(&[key], true).await.ok().unwrap();
        assert_eq!(admitted.limits.remaining_requests, Some(3));
    }

    #[tokio::test]
    async fn a_spent_budget_is_refused_with_its_limit_and_reset_time() {
        let limiter = Limiter::new();
        let reset = SystemTime::now() + Duration::from_secs(3600);
        let key = Scope {
            budget: Some(Budget {
                max: 1.0,
                recorded: Recorded {
                    spend: 0.4,
                    reset_at: Some(reset),
                    period: Some(Duration::from_secs(3600)),
                    as_of: std::time::Instant::now(),
                },
            }),
            ..scope("key:b", Level::Key)
        };
        assert!(
            limiter
                .admit(std::slice::from_ref(&key), true)
                .await
                .is_ok()
        );
        limiter.charge(std::slice::from_ref(&key), 10, 0.7);
        let refused = limiter.admit(&[key], true).await.err().unwrap();
        let text = refused.exceeded.to_string();
        assert!(text.contains("max_budget $1.000000"), "{text}");
        assert!(text.contains("resets at"), "{text}");
        assert!(refused.exceeded.retry_after().is_some());
    }

    #[tokio::test]
    async fn parallel_slots_are_held_until_the_admit_drops() {
        let limiter = Limiter::new();
        let key = Scope {
            parallel: Some(1),
            ..scope("key:c", Level::Key)
        };
        let first = limiter
            .admit(std::slice::from_ref(&key), true)
            .await
            .ok()
            .unwrap();
        assert!(
            limiter
                .admit(std::slice::from_ref(&key), true)
                .await
                .is_err()
        );
        assert!(
            limiter
                .admit(std::slice::from_ref(&key), false)
                .await
                .is_ok()
        );
        drop(first);
        assert!(limiter.admit(&[key], true).await.is_ok());
    }
}
