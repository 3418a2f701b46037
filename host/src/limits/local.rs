//! The counters of one instance, in memory: what every limit is counted in
//! when no Redis is configured, and what an instance falls back to while a
//! configured Redis does not answer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ledger::SpendCell;
use super::parallel::InFlight;
use super::shards::Shards;
use super::window::RateWindow;
use super::{Admit, Exceeded, RateFigures, Refused, Scope, Slot};

/// Counters kept per kind before idle ones are dropped to make room.
const MAX_SCOPES: usize = 1 << 20;

/// What the shared counters hold for one scope once they admitted a
/// request (see [`LocalCounters::follow`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Requests and tokens in the window, where the scope limits them.
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    /// How long until the window closes, where the scope has one.
    pub closes_in: Option<Duration>,
    /// The spend of the current period, where the scope has a budget.
    pub spent: Option<f64>,
}

/// Rate windows, in-flight counts and spend per scope, in this process.
pub struct LocalCounters {
    windows: Shards<RateWindow>,
    in_flight: Shards<InFlight>,
    spend: Shards<SpendCell>,
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self {
            windows: Shards::new(MAX_SCOPES),
            in_flight: Shards::new(MAX_SCOPES),
            spend: Shards::new(MAX_SCOPES),
        }
    }
}

impl LocalCounters {
    /// Admits a call counted in `scopes`: no budget spent, then (when
    /// `hold_slot`) an in-flight slot in every scope that limits them, then
    /// one request in every per-minute window. A refusal gives back what
    /// was taken before it.
    pub fn admit(&self, scopes: &[Scope<'_>], hold_slot: bool) -> Result<Admit, Box<Refused>> {
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
                let (counter, _) = self.in_flight.get(&scope.name, now, InFlight::default);
                match counter.try_acquire(limit) {
                    Some(slot) => admit.slots.push(Slot::local(slot)),
                    None => {
                        return Err(refused(Exceeded::Parallel {
                            level: scope.level,
                            label: scope.label.to_string(),
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
            let (window, _) = self.windows.get(&scope.name, now, || RateWindow::new(now));
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
                            label: scope.label.to_string(),
                            denied,
                        },
                    }));
                }
            }
        }
        Ok(admit)
    }

    /// Takes in what the shared counters hold for `scope` after they
    /// admitted a request. Should Redis stop answering, this instance then
    /// decides from every instance's count, not from a window and a spend
    /// of its own that missed the others' requests.
    pub fn follow(&self, scope: &Scope<'_>, seen: Seen) {
        let now = Instant::now();
        if let Some(closes_in) = seen.closes_in
            && (scope.rpm.is_some() || scope.tpm.is_some())
        {
            let (window, _) = self.windows.get(&scope.name, now, || RateWindow::new(now));
            window.follow(now, closes_in, seen.requests, seen.tokens);
        }
        if let (Some(budget), Some(spent)) = (&scope.budget, seen.spent) {
            let wall = SystemTime::now();
            let (cell, _) = self
                .spend
                .get(&scope.name, now, || SpendCell::new(budget.recorded, wall));
            cell.at_least(spent, wall);
        }
    }

    /// Refuses when any scope's budget for the current period is spent.
    pub fn check_budgets(&self, scopes: &[Scope<'_>]) -> Result<(), Exceeded> {
        let now = SystemTime::now();
        for scope in scopes {
            let Some(budget) = &scope.budget else {
                continue;
            };
            let (cell, _) = self.spend.get(&scope.name, Instant::now(), || {
                SpendCell::new(budget.recorded, now)
            });
            let (spent, reset_at) = cell.current(Some(budget.recorded), now);
            if super::reached(spent, budget.max) {
                return Err(Exceeded::Budget {
                    level: scope.level,
                    label: scope.label.to_string(),
                    limit: budget.max,
                    spent,
                    reset_at,
                });
            }
        }
        Ok(())
    }

    /// Counts an answered call's tokens and cost in every scope that has a
    /// window or a spend counter here.
    pub fn charge(&self, scopes: &[Scope<'_>], tokens: u64, cost: f64) {
        let now = Instant::now();
        let wall = SystemTime::now();
        for scope in scopes {
            if tokens > 0
                && let Some(window) = self.windows.find(&scope.name)
            {
                window.add_tokens(now, tokens);
            }
            if cost > 0.0
                && let Some(cell) = self.spend.find(&scope.name)
            {
                cell.add(cost, wall);
            }
        }
    }

    /// Gives `to` the open rate window of `from`, if any: a key given a new
    /// value keeps what it used of this minute.
    pub fn carry_window(&self, from: &str, to: &str) {
        let now = Instant::now();
        let Some((closes_in, requests, tokens)) =
            self.windows.find(from).and_then(|w| w.snapshot(now))
        else {
            return;
        };
        let (window, _) = self.windows.get(to, now, || RateWindow::new(now));
        window.follow(now, closes_in, Some(requests), Some(tokens));
    }

    /// Sets the spend of the current period of `name`, if it is counted here.
    pub fn set_spent(&self, name: &str, spend: f64) {
        if let Some(cell) = self.spend.find(name) {
            cell.set(spend);
        }
    }

    /// The spend counted here so far in the current period of `name`.
    pub fn spent(&self, name: &str) -> Option<f64> {
        self.spend
            .find(name)
            .map(|cell| cell.current(None, SystemTime::now()).0)
    }
}
