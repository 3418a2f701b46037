//! The counters behind virtual-key limits: requests and tokens per minute,
//! requests in flight and spend per budget period, for every scope a limit
//! can be set on (a key, its user, its team, and the key's use of one
//! model). They live in memory for the life of the server (a config reload
//! keeps them), sharded by scope name so requests of different keys rarely
//! meet on a lock, and no lock is ever held across an await.
//!
//! What a request's scopes are is decided by the caller's records
//! ([`principal`]); this module only counts and compares. Admission asks
//! [`Limiter::admit`] before a request (or a composite's sub-call) runs, and
//! the answer's tokens and cost are charged with [`Limiter::charge`] as soon
//! as they are known, on the response path, so the very next call sees them.

mod ledger;
mod parallel;
pub mod principal;
mod shards;
mod window;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use ledger::Recorded;
use ledger::SpendCell;
use parallel::InFlight;
pub use parallel::Slot;
use shards::Shards;
use window::RateWindow;
pub use window::{RateDenied, RateKind, Remaining, WINDOW};

/// Counters kept per kind before idle ones are dropped to make room.
const MAX_SCOPES: usize = 1 << 20;

/// The level a limit is set at, as error messages and codes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Key,
    User,
    Team,
    /// A key's limit for one model (`model_rpm_limit`, `model_max_budget`, ...).
    Model,
}

impl Level {
    /// The level's name in messages and error codes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::User => "user",
            Level::Team => "team",
            Level::Model => "model",
        }
    }
}

/// A budget of one scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// `max_budget` (USD per period).
    pub max: f64,
    /// Where the spend counter starts and how its periods run.
    pub recorded: Recorded,
}

/// One scope a request is counted in, with the limits set on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub level: Level,
    /// The counters' name: unique per scope (`key:<hash>`, `user:<id>`, ...).
    pub name: String,
    /// How messages name it, never a secret (`key sk-...abcd`, `team core`).
    pub label: String,
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

/// The rate figures of the tightest limited scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateFigures {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl RateFigures {
    fn tighten(&mut self, scope: &Scope, remaining: Remaining) {
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

/// The server's limit counters; cheap to clone.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    windows: Shards<RateWindow>,
    in_flight: Shards<InFlight>,
    spend: Shards<SpendCell>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Limiter")
    }
}

/// A refusal with the rate figures of the scope that refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub exceeded: Exceeded,
    pub figures: RateFigures,
}

impl Limiter {
    /// Empty counters.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            windows: Shards::new(MAX_SCOPES),
            in_flight: Shards::new(MAX_SCOPES),
            spend: Shards::new(MAX_SCOPES),
        }))
    }

    /// Admits a call counted in `scopes`: no budget spent, then (when
    /// `hold_slot`) an in-flight slot in every scope that limits them, then
    /// one request in every per-minute window. A refusal gives back what
    /// was taken before it.
    pub fn admit(&self, scopes: &[Scope], hold_slot: bool) -> Result<Admit, Box<Refused>> {
        let refused = |exceeded| {
            Box::new(Refused {
                exceeded,
                figures: RateFigures::default(),
            })
        };
        self.check_budgets(scopes).map_err(refused)?;
        let mut admit = Admit::default();
        let now = Instant::now();
        if hold_slot {
            for scope in scopes {
                let Some(limit) = scope.parallel else {
                    continue;
                };
                let (counter, _) = self.0.in_flight.get(&scope.name, now, InFlight::default);
                match counter.try_acquire(limit) {
                    Some(slot) => admit.slots.push(slot),
                    None => {
                        return Err(refused(Exceeded::Parallel {
                            level: scope.level,
                            label: scope.label.clone(),
                            limit,
                        }));
                    }
                }
            }
        }
        let mut taken: Vec<Arc<RateWindow>> = Vec::new();
        for scope in scopes {
            if scope.rpm.is_none() && scope.tpm.is_none() {
                continue;
            }
            let (window, _) = self
                .0
                .windows
                .get(&scope.name, now, || RateWindow::new(now));
            match window.take(now, scope.rpm, scope.tpm) {
                Ok(remaining) => {
                    admit.limits.tighten(scope, remaining);
                    taken.push(window);
                }
                Err(denied) => {
                    for w in &taken {
                        w.untake();
                    }
                    return Err(Box::new(Refused {
                        figures: RateFigures::of_denial(scope.rpm, scope.tpm, &denied),
                        exceeded: Exceeded::Rate {
                            level: scope.level,
                            label: scope.label.clone(),
                            denied,
                        },
                    }));
                }
            }
        }
        Ok(admit)
    }

    /// Refuses when any scope's budget for the current period is spent.
    pub fn check_budgets(&self, scopes: &[Scope]) -> Result<(), Exceeded> {
        let now = SystemTime::now();
        for scope in scopes {
            let Some(budget) = &scope.budget else {
                continue;
            };
            let (cell, _) = self.0.spend.get(&scope.name, Instant::now(), || {
                SpendCell::new(budget.recorded, now)
            });
            let (spent, reset_at) = cell.current(Some(budget.recorded), now);
            if spent >= budget.max {
                return Err(Exceeded::Budget {
                    level: scope.level,
                    label: scope.label.clone(),
                    limit: budget.max,
                    spent,
                    reset_at,
                });
            }
        }
        Ok(())
    }

    /// Counts an answered call's tokens and cost in every scope that has a
    /// window or a spend counter.
    pub fn charge(&self, scopes: &[Scope], tokens: u64, cost: f64) {
        let now = Instant::now();
        let wall = SystemTime::now();
        for scope in scopes {
            if tokens > 0
                && let Some(window) = self.0.windows.find(&scope.name)
            {
                window.add_tokens(now, tokens);
            }
            if cost > 0.0
                && let Some(cell) = self.0.spend.find(&scope.name)
            {
                cell.add(cost, wall);
            }
        }
    }

    /// The spend counted so far in the current period of `name`, if counted.
    pub fn spent(&self, name: &str) -> Option<f64> {
        self.0
            .spend
            .find(name)
            .map(|cell| cell.current(None, SystemTime::now()).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(name: &str, level: Level) -> Scope {
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

    #[test]
    fn a_refusal_by_a_later_scope_gives_back_the_earlier_requests() {
        let limiter = Limiter::new();
        let key = Scope {
            rpm: Some(5),
            ..scope("key:a", Level::Key)
        };
        let team = Scope {
            rpm: Some(1),
            ..scope("team:t", Level::Team)
        };
        assert!(limiter.admit(&[key.clone(), team.clone()], true).is_ok());
        let refused = limiter.admit(&[key.clone(), team], true).err().unwrap();
        assert!(matches!(
            refused.exceeded,
            Exceeded::Rate {
                level: Level::Team,
                ..
            }
        ));
        let admitted = limiter.admit(&[key], true).ok().unwrap();
        assert_eq!(admitted.limits.remaining_requests, Some(3));
    }

    #[test]
    fn a_spent_budget_is_refused_with_its_limit_and_reset_time() {
        let limiter = Limiter::new();
        let reset = SystemTime::now() + Duration::from_secs(3600);
        let key = Scope {
            budget: Some(Budget {
                max: 1.0,
                recorded: Recorded {
                    spend: 0.4,
                    reset_at: Some(reset),
                    period: Some(Duration::from_secs(3600)),
                },
            }),
            ..scope("key:b", Level::Key)
        };
        assert!(limiter.admit(std::slice::from_ref(&key), true).is_ok());
        limiter.charge(std::slice::from_ref(&key), 10, 0.7);
        let refused = limiter.admit(&[key], true).err().unwrap();
        let text = refused.exceeded.to_string();
        assert!(text.contains("max_budget $1.000000"), "{text}");
        assert!(text.contains("resets at"), "{text}");
        assert!(refused.exceeded.retry_after().is_some());
    }

    #[test]
    fn parallel_slots_are_held_until_the_admit_drops() {
        let limiter = Limiter::new();
        let key = Scope {
            parallel: Some(1),
            ..scope("key:c", Level::Key)
        };
        let first = limiter
            .admit(std::slice::from_ref(&key), true)
            .ok()
            .unwrap();
        assert!(limiter.admit(std::slice::from_ref(&key), true).is_err());
        assert!(limiter.admit(std::slice::from_ref(&key), false).is_ok());
        drop(first);
        assert!(limiter.admit(&[key], true).is_ok());
    }
}
