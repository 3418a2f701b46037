//! The whole gateway's budget (`litellm_settings.max_budget`, renewed every
//! `budget_duration`): every model call counts toward it, whoever makes it
//! (the master key, a virtual key, an open gateway's client, a composite's
//! sub-call), and once it is spent every model request is refused until
//! the period ends. As in LiteLLM, its spend is kept on a reserved user,
//! [`PROXY_BUDGET_USER`]: the spend writer adds every call to it, the budget
//! reset job renews it on the usual calendar boundaries, and `/user/info`
//! shows it. Without a key store it is counted in this process's memory,
//! from start-up.
//!
//! The config is the budget's source: each config version carries its
//! [`ProxyBudgetSettings`], and the store's record is brought in line with
//! them (and its spend read back) every few seconds by [`spawn_sync`].

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::model::{Limits, UserRecord, budget_period};
use super::reset::{ResetClock, next_budget_reset};
use super::store::SpendOwner;
use super::{KeyError, Keys};
use crate::config::{Config, Problem};
use crate::limits::{Budget, Level, Recorded, Scope};
use crate::logging::Throttle;

/// The reserved user the gateway's spend is kept on (LiteLLM's id).
pub const PROXY_BUDGET_USER: &str = "litellm-proxy-budget";

/// The limiter's counter: the reserved user's, so that an administrator's
/// `spend` correction on `/user/update` reaches it.
const COUNTER: &str = "user:litellm-proxy-budget";

/// How refusals name the budget.
const LABEL: &str = "the gateway (litellm_settings.max_budget)";

/// How often the store's record is brought in line and read back.
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// At most one warning a minute that the store could not be read.
static SYNC_FAILED: Throttle = Throttle::new(Duration::from_secs(60));

/// What a config version sets: a cap, and how often it renews.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyBudgetSettings {
    /// USD per period (or in all, without a period); above zero.
    pub max_budget: f64,
    /// LiteLLM's form (`30d`, `1mo`), as the reserved user keeps it.
    pub budget_duration: Option<String>,
    period: Option<Duration>,
    /// The clock periods end on (`timezone`, `budget_reset_time`).
    clock: ResetClock,
}

impl ProxyBudgetSettings {
    /// The budget `litellm_settings` sets; `None` when it sets none (or a
    /// cap of 0, which is LiteLLM's "no cap").
    pub fn from_config(config: &Config) -> Result<Option<Self>, Problem> {
        let ls = &config.litellm_settings;
        let period = ls
            .budget_duration
            .as_deref()
            .map(budget_period)
            .transpose()
            .map_err(|e| Problem::new("litellm_settings.budget_duration", e.to_string()))?;
        Ok(ls
            .max_budget
            .filter(|max| max.is_finite() && *max > 0.0)
            .map(|max_budget| Self {
                max_budget,
                budget_duration: ls.budget_duration.clone(),
                period,
                clock: ResetClock::of(ls),
            }))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_budget: Some(self.max_budget),
            budget_duration: self.budget_duration.clone(),
            ..Limits::default()
        }
    }
}

/// What this process knows of the budget's current period.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    spend: f64,
    reset_at: Option<SystemTime>,
    read_at: Instant,
    /// Read from the store (else counted in memory from start-up).
    stored: bool,
}

/// The gateway budget's spend record, one per process: read from the
/// store's reserved user, or kept in memory without a store.
#[derive(Debug, Default)]
pub struct ProxyBudget {
    snapshot: RwLock<Option<Snapshot>>,
}

impl ProxyBudget {
    /// The scope a model call counts in under `settings`: the record last
    /// read, which the limiter's own count of this process's calls tops up.
    pub fn scope(&self, settings: &ProxyBudgetSettings) -> Scope<'static> {
        let snapshot = self.snapshot(settings);
        Scope {
            level: Level::Proxy,
            name: Cow::Borrowed(COUNTER),
            label: Cow::Borrowed(LABEL),
            rpm: None,
            tpm: None,
            parallel: None,
            budget: Some(Budget {
                max: settings.max_budget,
                recorded: Recorded {
                    spend: snapshot.spend,
                    reset_at: snapshot.reset_at,
                    period: settings.period,
                    as_of: snapshot.read_at,
                },
            }),
        }
    }

    /// The record as last read; without a store, the period the first
    /// call started (a new `budget_duration` applies from its end on, and
    /// one set where there was none starts the first period now).
    fn snapshot(&self, settings: &ProxyBudgetSettings) -> Snapshot {
        let usable = |s: &Snapshot| s.stored || s.reset_at.is_some() == settings.period.is_some();
        if let Ok(held) = self.snapshot.read()
            && let Some(s) = *held
            && usable(&s)
        {
            return s;
        }
        let Ok(mut held) = self.snapshot.write() else {
            return in_memory(settings);
        };
        match *held {
            Some(s) if usable(&s) => s,
            _ => *held.insert(in_memory(settings)),
        }
    }

    /// Takes in the stored record's spend and period end, read at `read_at`.
    fn take(&self, user: &UserRecord, read_at: Instant) {
        if let Ok(mut held) = self.snapshot.write() {
            *held = Some(Snapshot {
                spend: user.spend,
                reset_at: user.budget_reset_at,
                read_at,
                stored: true,
            });
        }
    }

    /// Brings the reserved user in line with `settings` (making it, or
    /// setting its `max_budget` and `budget_duration`) and reads its spend
    /// back. A new duration applies from the end of the current period, as
    /// the reset job renews it; the first duration set starts a period now,
    /// and one taken away ends the periods.
    pub async fn sync(&self, keys: &Keys, settings: &ProxyBudgetSettings) -> Result<(), KeyError> {
        let store = keys.store();
        let read_at = Instant::now();
        let now = SystemTime::now();
        let limits = settings.limits();
        let user = match store.user(PROXY_BUDGET_USER).await? {
            Some(mut user) if user.limits != limits => {
                let renews = |l: &Limits| l.budget_duration.is_some();
                let new_periods = renews(&user.limits) != renews(&limits);
                if new_periods {
                    user.budget_reset_at = limits.budget_reset_after(now, &settings.clock);
                }
                user.limits = limits;
                user.updated_at = now;
                store.update_user(&user, None).await?;
                if new_periods {
                    store
                        .set_spend(SpendOwner::User, PROXY_BUDGET_USER, 0.0)
                        .await?;
                    user.spend = 0.0;
                }
                user
            }
            Some(user) => user,
            None => {
                let user = reserved_user(limits, now, &settings.clock);
                match store.insert_user(&user).await {
                    Ok(()) => user,
                    // Another instance made it first: read what it made.
                    Err(KeyError::Invalid { .. }) => {
                        store.user(PROXY_BUDGET_USER).await?.ok_or_else(|| {
                            KeyError::Store("the proxy budget's user vanished".into())
                        })?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.take(&user, read_at);
        Ok(())
    }

    /// Reads the reserved user's record again at once: after an
    /// administrator set its spend, so the next request sees it.
    pub async fn refresh(&self, keys: &Keys) -> Result<(), KeyError> {
        let read_at = Instant::now();
        if let Some(user) = keys.store().user(PROXY_BUDGET_USER).await? {
            self.take(&user, read_at);
        }
        Ok(())
    }
}

/// A period of the in-memory count: from now to the next boundary of the
/// config's `budget_duration` (none: the cap is for all time).
fn in_memory(settings: &ProxyBudgetSettings) -> Snapshot {
    let reset_at = settings
        .budget_duration
        .as_deref()
        .and_then(|d| next_budget_reset(d, SystemTime::now(), &settings.clock));
    Snapshot {
        spend: 0.0,
        reset_at,
        read_at: Instant::now(),
        stored: false,
    }
}

/// The reserved user as first made: the budget, nothing spent.
fn reserved_user(limits: Limits, now: SystemTime, clock: &ResetClock) -> UserRecord {
    UserRecord {
        user_id: PROXY_BUDGET_USER.to_owned(),
        user_role: None,
        user_email: None,
        models: Vec::new(),
        budget_reset_at: limits.budget_reset_after(now, clock),
        limits,
        spend: 0.0,
        metadata: serde_json::json!({}),
        teams: Vec::new(),
        created_at: now,
        updated_at: now,
    }
}

/// Keeps the reserved user in line with the budget that `settings` reads
/// from the version being served, every few seconds, while the process
/// runs. A version without a budget leaves the record as it is (its spend
/// goes on counting, ready for a budget set again).
pub fn spawn_sync(
    budget: Arc<ProxyBudget>,
    keys: Keys,
    settings: impl Fn() -> Option<ProxyBudgetSettings> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(current) = settings() else { continue };
            if let Err(e) = budget.sync(&keys, &current).await
                && SYNC_FAILED.allow()
            {
                tracing::warn!("litellm_settings.max_budget: reading the gateway's spend: {e}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<Option<ProxyBudgetSettings>, Problem> {
        let text = format!("model_list: []\nlitellm_settings:\n{yaml}");
        let loaded = crate::config::load_str(
            &text,
            std::path::Path::new("/srv/c.yaml"),
            crate::config::Env::default(),
        )
        .unwrap();
        ProxyBudgetSettings::from_config(&loaded.config)
    }

    #[test]
    fn the_counter_is_the_reserved_users_so_spend_corrections_reach_it() {
        assert_eq!(
            COUNTER,
            crate::keys::scopes::counter_name(Level::User, PROXY_BUDGET_USER)
        );
    }

    #[test]
    fn a_cap_of_zero_or_none_sets_no_budget() {
        assert_eq!(settings("  max_budget: 0\n").unwrap(), None);
        assert_eq!(settings("  drop_params: true\n").unwrap(), None);
        let set = settings("  max_budget: 2.5\n  budget_duration: 30d\n")
            .unwrap()
            .unwrap();
        assert_eq!(set.max_budget, 2.5);
        assert_eq!(set.budget_duration.as_deref(), Some("30d"));
    }

    #[test]
    fn a_duration_that_is_not_one_is_refused_at_its_key() {
        let refused = settings("  max_budget: 1\n  budget_duration: fortnightly\n").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("litellm_settings.budget_duration"),
            "{refused}"
        );
    }

    #[test]
    fn without_a_store_the_period_ends_on_the_durations_next_boundary() {
        let set = settings("  max_budget: 1\n  budget_duration: 1h\n")
            .unwrap()
            .unwrap();
        let scope = ProxyBudget::default().scope(&set);
        let recorded = scope.budget.unwrap().recorded;
        let reset_at = recorded.reset_at.unwrap();
        let left = reset_at.duration_since(SystemTime::now()).unwrap();
        assert!(left <= Duration::from_secs(3600), "{left:?}");
        assert_eq!(recorded.spend, 0.0);
        assert_eq!(scope.level, Level::Proxy);
    }

    #[test]
    fn in_memory_a_new_duration_waits_for_the_period_but_a_first_one_starts_it() {
        let budget = ProxyBudget::default();
        let all_time = settings("  max_budget: 1\n").unwrap().unwrap();
        let hourly = settings("  max_budget: 1\n  budget_duration: 1h\n")
            .unwrap()
            .unwrap();
        let daily = settings("  max_budget: 1\n  budget_duration: 1d\n")
            .unwrap()
            .unwrap();
        let reset = |s: &ProxyBudgetSettings| budget.scope(s).budget.unwrap().recorded.reset_at;
        assert_eq!(reset(&all_time), None);
        let first = reset(&hourly);
        assert!(first.is_some());
        // The current period runs on; the ledger applies the new length after it.
        assert_eq!(reset(&daily), first);
    }
}
