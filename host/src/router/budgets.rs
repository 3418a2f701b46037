//! Spend caps on where calls go, LiteLLM's budget routing: a provider's
//! (`router_settings.provider_budget_config`: `budget_limit` USD per
//! `time_period`) and one deployment's (`litellm_params.max_budget` per
//! `budget_duration`). A deployment whose own cap or whose provider's is
//! spent is passed over when a deployment is chosen; a group with no other
//! is refused with [`super::RouteError::GroupOverBudget`], after which its
//! fallbacks are tried. Each cap counts answered calls' cost in a window
//! that opens with the first call it counts and lasts one period, as
//! LiteLLM's do; the counts live in this process and are carried from one
//! config version to the next.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::build::{Findings, Groups, Wildcards};
use crate::config::Config;
use crate::keys::budget_period;

/// One spend cap and what it counted in its current window.
#[derive(Debug)]
pub struct SpendCap {
    /// How refusals and listings name it (`provider openai`).
    label: String,
    limit: f64,
    period: Duration,
    /// The period as the config wrote it (`1d`).
    period_text: String,
    window: Mutex<Window>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    spent: f64,
    /// When the current window ends; `None` before the first call.
    ends_at: Option<SystemTime>,
}

impl Window {
    /// The window as it stands at `now`: an ended one counts nothing.
    fn at(self, now: SystemTime) -> Self {
        match self.ends_at {
            Some(end) if now >= end => Self::default(),
            _ => self,
        }
    }
}

/// What a cap shows of itself (`GET /provider/budgets`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapState {
    pub limit: f64,
    pub period: String,
    pub spent: f64,
    /// When the current window ends; `None` while nothing is counted.
    pub resets_at: Option<SystemTime>,
}

impl SpendCap {
    fn new(label: String, spec: CapSpec) -> Self {
        Self {
            label,
            limit: spec.limit,
            period: spec.period,
            period_text: spec.period_text,
            window: Mutex::new(Window::default()),
        }
    }

    /// The window's end when the cap is spent at `now` (`Some(None)`: spent
    /// with no window open, a cap of zero); `None` while it has room.
    fn spent(&self, now: SystemTime) -> Option<Option<SystemTime>> {
        let window = self.window.lock().ok()?.at(now);
        crate::limits::reached(window.spent, self.limit).then_some(window.ends_at)
    }

    /// Counts one answered call.
    fn charge(&self, cost: f64, now: SystemTime) {
        let Ok(mut held) = self.window.lock() else {
            return;
        };
        let mut window = held.at(now);
        if window.ends_at.is_none() {
            window.ends_at = now.checked_add(self.period);
        }
        window.spent += cost;
        *held = window;
    }

    /// A cap of `spec` that goes on with `old`'s window.
    fn carrying(label: String, spec: CapSpec, old: &SpendCap) -> Self {
        let window = old.window.lock().map(|w| *w).unwrap_or_default();
        Self {
            window: Mutex::new(window),
            ..Self::new(label, spec)
        }
    }

    /// The cap and its current window.
    pub fn state(&self, now: SystemTime) -> CapState {
        let window = self.window.lock().map(|w| w.at(now)).unwrap_or_default();
        CapState {
            limit: self.limit,
            period: self.period_text.clone(),
            spent: window.spent,
            resets_at: window.ends_at,
        }
    }

    /// One line for an error message.
    fn describe(&self, now: SystemTime) -> String {
        let s = self.state(now);
        format!(
            "{} spent ${:.6} of ${:.6} per {}",
            self.label, s.spent, s.limit, s.period
        )
    }
}

/// The sooner of two renewals, where `None` is one that never comes.
pub(super) fn sooner(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (one, None) | (None, one) => one,
    }
}

/// How much a cap allows per how long, as read from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct CapSpec {
    limit: f64,
    period: Duration,
    /// The period as the config wrote it (`1d`).
    period_text: String,
}

/// Reads a cap of `limit` USD per `period` set at `path` (the key holding
/// both); a problem names the key that is wrong.
pub(super) fn read_cap(
    path: &str,
    (limit_key, limit): (&str, Option<f64>),
    (period_key, period): (&str, Option<&str>),
    found: &mut Findings,
) -> Option<CapSpec> {
    let limit = limit?;
    if !(limit.is_finite() && limit >= 0.0) {
        found.problem(
            format!("{path}.{limit_key}"),
            format!("must be a finite, non-negative number of USD, not {limit}"),
        );
        return None;
    }
    let Some(text) = period else {
        found.problem(
            format!("{path}.{period_key}"),
            format!("is required with {limit_key}: how long each budget window lasts (e.g. 1d, 30d, 1mo)"),
        );
        return None;
    };
    match budget_period(text) {
        Ok(length) if !length.is_zero() => Some(CapSpec {
            limit,
            period: length,
            period_text: text.to_owned(),
        }),
        Ok(_) => {
            found.problem(format!("{path}.{period_key}"), "must be longer than zero");
            None
        }
        Err(e) => {
            found.problem(format!("{path}.{period_key}"), e.to_string());
            None
        }
    }
}

/// Every cap of a router: by provider, each deployment's own, and the caps
/// each deployment is held to (its own, then its provider's).
#[derive(Debug, Default)]
pub struct SpendCaps {
    providers: BTreeMap<String, Arc<SpendCap>>,
    own: HashMap<String, Arc<SpendCap>>,
    deployments: HashMap<String, Vec<Arc<SpendCap>>>,
}

impl SpendCaps {
    /// The caps `config` and the deployments of `groups` set, each keeping
    /// what `previous` counted under the same name, limit and period;
    /// `None` when none is set. A provider cap that cannot be read is a
    /// problem at its key.
    pub(super) fn build(
        config: &Config,
        groups: &Groups,
        wildcards: &Wildcards,
        previous: Option<&SpendCaps>,
        found: &mut Findings,
    ) -> Option<Arc<Self>> {
        let mut caps = Self::default();
        let kept = |old: Option<&Arc<SpendCap>>, label: String, spec: CapSpec| match old {
            Some(old) if old.limit == spec.limit && old.period == spec.period => old.clone(),
            // A new limit over the same period goes on counting its window.
            Some(old) if old.period == spec.period => {
                Arc::new(SpendCap::carrying(label, spec, old))
            }
            _ => Arc::new(SpendCap::new(label, spec)),
        };
        let configured = config
            .router_settings
            .provider_budget_config
            .iter()
            .flatten();
        for (provider, budget) in configured {
            let path = format!("router_settings.provider_budget_config.{provider}");
            let Some(limit) = budget.budget_limit else {
                found.problem(
                    format!("{path}.budget_limit"),
                    "is required: the USD each window allows",
                );
                continue;
            };
            let limit = ("budget_limit", Some(limit));
            let period = ("time_period", budget.time_period.as_deref());
            if let Some(spec) = read_cap(&path, limit, period, found) {
                let old = previous.and_then(|p| p.providers.get(provider));
                let cap = kept(old, format!("provider {provider}"), spec);
                caps.providers.insert(provider.clone(), cap);
            }
        }
        let deployments = groups
            .values()
            .chain(wildcards.iter().map(|(_, g)| g))
            .flat_map(|g| g.deployments.iter());
        for d in deployments {
            let mut held = Vec::new();
            if let Some(spec) = &d.budget {
                let old = previous.and_then(|p| p.own.get(&*d.id));
                let cap = kept(old, format!("deployment {}", d.id), spec.clone());
                caps.own.insert(d.id.to_string(), cap.clone());
                held.push(cap);
            }
            if let Some(cap) = caps.providers.get(d.target.provider()) {
                held.push(cap.clone());
            }
            if !held.is_empty() {
                caps.deployments.insert(d.id.to_string(), held);
            }
        }
        caps.warn_about_unusual(found);
        (!caps.deployments.is_empty() || !caps.providers.is_empty()).then(|| Arc::new(caps))
    }

    /// Warns about caps that hold nothing back (a provider none of the
    /// deployments has: a misspelt name turns its cap off) and about caps
    /// of zero, which pass their deployments over always.
    fn warn_about_unusual(&self, found: &mut Findings) {
        for (provider, cap) in &self.providers {
            let used = self
                .deployments
                .values()
                .any(|held| held.iter().any(|c| Arc::ptr_eq(c, cap)));
            if !used {
                found.warn(format_args!(
                    "router_settings.provider_budget_config.{provider}: no deployment has \
                     provider {provider:?}, so this cap limits nothing (providers are the \
                     model prefixes, lower-case: openai, azure, anthropic, ...)"
                ));
            }
        }
        let zero = self.providers.values().chain(self.own.values());
        for cap in zero.filter(|c| c.limit == 0.0) {
            found.warn(format_args!(
                "{}: a budget of 0 is always spent, so its deployments get no calls",
                cap.label
            ));
        }
    }

    /// When deployment `id` may be called again, if one of its caps is
    /// spent: once the last of its spent caps renews (`Some(None)`: one of
    /// them never does, a cap of zero).
    pub(super) fn spent(&self, id: &str, now: SystemTime) -> Option<Option<SystemTime>> {
        let mut spent = self
            .deployments
            .get(id)?
            .iter()
            .filter_map(|cap| cap.spent(now))
            .peekable();
        spent.peek()?;
        Some(spent.try_fold(SystemTime::UNIX_EPOCH, |last, renews| {
            renews.map(|r| last.max(r))
        }))
    }

    /// Counts an answered call's cost in deployment `id`'s caps.
    pub fn charge(&self, id: &str, cost: f64) {
        if let Some(caps) = self.deployments.get(id) {
            let now = SystemTime::now();
            for cap in caps {
                cap.charge(cost, now);
            }
        }
    }

    /// The spent caps of deployment `id`, one line each, for an error.
    pub(super) fn describe_spent(&self, id: &str, now: SystemTime) -> Vec<String> {
        self.deployments
            .get(id)
            .into_iter()
            .flatten()
            .filter(|cap| cap.spent(now).is_some())
            .map(|cap| cap.describe(now))
            .collect()
    }

    /// Every provider's cap, by provider name.
    pub fn providers(&self) -> impl Iterator<Item = (&str, &SpendCap)> {
        self.providers
            .iter()
            .map(|(name, cap)| (name.as_str(), &**cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(limit: f64) -> SpendCap {
        let spec = CapSpec {
            limit,
            period: Duration::from_secs(60),
            period_text: "1m".into(),
        };
        SpendCap::new("provider p".into(), spec)
    }

    #[test]
    fn a_cap_is_spent_at_its_limit_until_its_window_ends() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let c = cap(1.0);
        assert_eq!(c.spent(t0), None);
        c.charge(0.6, t0);
        assert_eq!(c.spent(t0), None);
        c.charge(0.4, t0 + Duration::from_secs(10));
        let end = t0 + Duration::from_secs(60);
        assert_eq!(c.spent(t0 + Duration::from_secs(20)), Some(Some(end)));
        // The window opened by the first call ends one period after it.
        assert_eq!(c.spent(end), None);
        assert_eq!(c.state(end).spent, 0.0);
    }

    #[test]
    fn a_deployment_held_by_a_cap_that_never_renews_is_never_called_again() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let timed = Arc::new(cap(1.0));
        timed.charge(1.0, t0);
        let caps = SpendCaps {
            deployments: HashMap::from([
                ("timed".to_owned(), vec![timed.clone()]),
                ("both".to_owned(), vec![timed, Arc::new(cap(0.0))]),
            ]),
            ..SpendCaps::default()
        };
        let end = t0 + Duration::from_secs(60);
        assert_eq!(caps.spent("timed", t0), Some(Some(end)));
        assert_eq!(caps.spent("both", t0), Some(None));
        assert_eq!(caps.spent("unknown", t0), None);
        // A group waits for the deployment that renews soonest.
        assert_eq!(sooner(None, Some(end)), Some(end));
        assert_eq!(sooner(Some(end), Some(t0)), Some(t0));
        assert_eq!(sooner(None, None), None);
    }

    #[test]
    fn a_cap_of_zero_is_always_spent() {
        let c = cap(0.0);
        assert_eq!(c.spent(SystemTime::now()), Some(None));
    }
}
