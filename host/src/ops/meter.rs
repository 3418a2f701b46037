//! What a request costs and what it may still spend. Every model call is
//! priced when its usage is known, on the response path (a hash lookup and
//! two multiplications), and charged at once to the caller's limit counters,
//! so the next call — a composite's next sub-call included — sees it. The
//! request's total is what `x-conclave-response-cost` reports: one call's
//! cost, or the sum of a composite's calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::admission::Refusal;
use super::caller::Caller;
use super::outcome::Usage;
use crate::keys::{EndUser, Limits, scopes};
use crate::limits::{Limiter, Scope};
use crate::pricing::PriceBook;
use crate::router::budgets::SpendCaps;

/// The end user a request is counted for, and the limits that apply to it
/// (its budget's, or the default's).
struct CountedEndUser {
    end_user: Arc<EndUser>,
    limits: Arc<Limits>,
}

/// The pricing and limit counters a request is metered with, and its total.
pub struct Meter {
    limiter: Option<Limiter>,
    prices: Arc<PriceBook>,
    /// The router's provider and deployment spend caps, when any is set.
    caps: Option<Arc<SpendCaps>>,
    /// The request's cost so far, as f64 bits (added with compare-and-swap).
    total: AtomicU64,
    /// The first time the caller's limits refused one of a composite's
    /// sub-calls: a run that then fails is answered with this refusal (a
    /// 429 or a spent budget), since the caller's limit is why it failed.
    refused: OnceLock<Refusal>,
    /// Set by admission when the request names an end user with limits.
    end_user: OnceLock<CountedEndUser>,
    /// Set by admission when the gateway has a budget.
    proxy: OnceLock<Scope<'static>>,
    /// The composite model a request runs, whose per-model limits its
    /// sub-calls count toward too.
    composite: OnceLock<String>,
}

impl Default for Meter {
    /// A meter that prices nothing and limits nothing (commands that do not
    /// serve, start-up validation).
    fn default() -> Self {
        Self::new(None, Arc::default(), None)
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("total", &self.total())
            .finish()
    }
}

impl Meter {
    /// A meter pricing with `prices` and charging `limiter` (when key limits
    /// are enforced) and the router's spend `caps` (when set).
    pub fn new(
        limiter: Option<Limiter>,
        prices: Arc<PriceBook>,
        caps: Option<Arc<SpendCaps>>,
    ) -> Self {
        Self {
            limiter,
            prices,
            caps,
            total: AtomicU64::new(0f64.to_bits()),
            refused: OnceLock::new(),
            end_user: OnceLock::new(),
            proxy: OnceLock::new(),
            composite: OnceLock::new(),
        }
    }

    /// Counts the request's calls toward the per-model limits of
    /// `model`, the composite model it runs (the first one set stays).
    pub fn count_composite(&self, model: &str) {
        let _ = self.composite.set(model.to_owned());
    }

    /// Counts the request's calls for `end_user` too, under `limits` (a
    /// request names one end user; the first one set stays).
    pub fn count_end_user(&self, end_user: Arc<EndUser>, limits: Arc<Limits>) {
        let _ = self.end_user.set(CountedEndUser { end_user, limits });
    }

    /// Counts the request's calls toward the gateway's budget too, in
    /// `scope` (the first one set stays).
    pub fn count_proxy(&self, scope: Scope<'static>) {
        let _ = self.proxy.set(scope);
    }

    /// Every scope a call to `model` by `caller` counts in: its key's,
    /// user's and team's, the request's end user's and the gateway's.
    pub fn scopes<'a>(&'a self, caller: &'a Caller, model: &str) -> Vec<Scope<'a>> {
        let mut out = match caller.principal() {
            Some(p) => scopes::scopes(p, model),
            None => Vec::new(),
        };
        if let (Some(p), Some(composite)) = (caller.principal(), self.composite.get())
            && composite != model
        {
            out.extend(scopes::model_scopes(p, composite));
        }
        if let Some(counted) = self.end_user.get() {
            out.extend(scopes::end_user_scopes(
                &counted.end_user,
                &counted.limits,
                model,
            ));
        }
        if let Some(proxy) = self.proxy.get() {
            out.push(proxy.clone());
        }
        out
    }

    /// Remembers that the caller's limits refused a sub-call (the first
    /// refusal is kept).
    pub fn note_refusal(&self, refusal: &Refusal) {
        let _ = self.refused.get_or_init(|| refusal.clone());
    }

    /// The first refusal of a sub-call by the caller's limits, if any.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refused.get()
    }

    /// The limit counters, when keys are enforced.
    pub fn limiter(&self) -> Option<&Limiter> {
        self.limiter.as_ref()
    }

    /// The cost of one call answered by `deployment` for `model`.
    pub fn price(&self, deployment: Option<&str>, model: &str, usage: Usage) -> f64 {
        self.prices
            .price(deployment, model)
            .cost(usage.prompt_tokens, usage.completion_tokens)
    }

    /// Prices one answered call, adds it to the request's total and charges
    /// its tokens and cost to `caller`'s scopes; returns the cost.
    pub fn charge(
        &self,
        caller: &Caller,
        model: &str,
        deployment: Option<&str>,
        usage: Usage,
    ) -> f64 {
        let cost = self.price(deployment, model, usage);
        self.add(cost);
        if let (Some(caps), Some(deployment)) = (&self.caps, deployment) {
            caps.charge(deployment, cost);
        }
        if let Some(limiter) = &self.limiter {
            let scopes = self.scopes(caller, model);
            if !scopes.is_empty() {
                let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
                limiter.charge(&scopes, tokens, cost);
            }
        }
        cost
    }

    /// The request's cost so far.
    pub fn total(&self) -> f64 {
        f64::from_bits(self.total.load(Ordering::Acquire))
    }

    fn add(&self, cost: f64) {
        if cost == 0.0 {
            return;
        }
        let _ = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                Some((f64::from_bits(bits) + cost).to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_sum_of_the_charged_calls() {
        let meter = Meter::default();
        meter.add(0.25);
        meter.add(0.5);
        assert_eq!(meter.total(), 0.75);
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 10,
        };
        assert_eq!(meter.charge(&Caller::Open, "m", None, usage), 0.0);
        assert_eq!(meter.total(), 0.75);
    }
}
