//! The scopes a virtual-key caller is counted in, read from its records:
//! its key, its user and its team (each where it sets a limit), and each of
//! those levels' limits for the model being called (a key's per-model spend
//! starts from the store's `model_spend`; a user's or team's from zero).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::end_user::EndUser;
use super::model::{KeyRecord, Limits, Principal, TeamRecord, UserRecord, budget_period};
use crate::limits::{Budget, Level, Recorded, Scope};

/// How one level of a principal is counted and named.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelNames {
    /// The counters' name (`key:<hash>`, `user:<id>`, `team:<id>`).
    pub counter: String,
    /// How messages name it (`key sk-...abcd`, `user alice`).
    pub label: String,
}

impl LevelNames {
    /// The names of `level`'s scope for entity `id`, shown as `label`.
    pub fn new(level: Level, id: &str, label: String) -> Self {
        Self {
            counter: counter_name(level, id),
            label,
        }
    }
}

/// The counters' name of a key's, user's or team's own scope
/// (`key:<hash>`, `user:<id>`, `team:<id>`): what the limiter counts it
/// under, locally and in Redis.
pub fn counter_name(level: Level, id: &str) -> String {
    format!("{}:{id}", level.name())
}

/// The counters' name of a level's scope for one model
/// (`key-model:<hash>:<model>`).
fn model_counter_name(level: Level, id: &str, model: &str) -> String {
    format!("{}-model:{id}:{model}", level.name())
}

/// Every counter name a key with hash `token_hash` and `limits` is
/// counted under: its own, and one per model its per-model limits name,
/// in an order that depends only on `limits`.
pub fn key_counter_names(token_hash: &str, limits: &Limits) -> Vec<String> {
    let models: std::collections::BTreeSet<&String> = limits
        .model_rpm_limit
        .keys()
        .chain(limits.model_tpm_limit.keys())
        .chain(limits.model_max_budget.keys())
        .collect();
    std::iter::once(counter_name(Level::Key, token_hash))
        .chain(
            models
                .into_iter()
                .map(|model| model_counter_name(Level::Key, token_hash, model)),
        )
        .collect()
}

/// The names of a principal's key, user and team scopes, made once when
/// the principal is read from the store: every request and every
/// composite sub-call borrows them instead of formatting them again.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeNames {
    pub key: LevelNames,
    pub user: Option<LevelNames>,
    pub team: Option<LevelNames>,
}

impl ScopeNames {
    /// The names of a key's scopes, and of its user's and team's.
    pub fn of(key: &KeyRecord, user: Option<&UserRecord>, team: Option<&TeamRecord>) -> Self {
        Self {
            key: LevelNames::new(Level::Key, &key.token_hash, format!("key {}", key.key_name)),
            user: user
                .map(|u| LevelNames::new(Level::User, &u.user_id, format!("user {}", u.user_id))),
            team: team
                .map(|t| LevelNames::new(Level::Team, &t.team_id, format!("team {}", t.team_id))),
        }
    }
}

/// One level's records, as [`scopes`] reads them.
struct LevelRecord<'a> {
    level: Level,
    id: &'a str,
    names: &'a LevelNames,
    limits: &'a Limits,
    spend: f64,
    reset_at: Option<std::time::SystemTime>,
    /// Spend per model as of the read (a key's); other levels' start at zero.
    model_spend: Option<&'a BTreeMap<String, f64>>,
    /// When the record was read.
    read_at: Instant,
    /// Whether the level's budgets hold the call: not a user's personal
    /// budgets for a team's key, which, as in LiteLLM, its team's budgets
    /// hold instead (its spend still counts toward the user's).
    budgets_apply: bool,
}

/// Whether a level of `principal` (its key, user or team) sets a
/// per-model limit or budget for `model`.
pub fn limits_model(principal: &Principal, model: &str) -> bool {
    levels(principal).into_iter().flatten().any(|record| {
        let l = record.limits;
        l.model_rpm_limit.contains_key(model)
            || l.model_tpm_limit.contains_key(model)
            || l.model_max_budget.contains_key(model)
    })
}

/// The scopes of a call by `principal` to `model` (the name it asked for,
/// after the key's aliases). Levels that limit nothing are left out.
pub fn scopes<'a>(principal: &'a Principal, model: &str) -> Vec<Scope<'a>> {
    let mut out = Vec::with_capacity(4);
    for record in levels(principal).into_iter().flatten() {
        push_level(&mut out, &record, model);
    }
    out
}

/// The per-model budgets and token limits alone of `principal`'s levels
/// for `model`: what a composite model's sub-calls count toward besides
/// their own models, so that those limits on the composite's name hold.
/// Its request limit is the client's request's, counted once at admission,
/// not once per sub-call.
pub fn model_scopes<'a>(principal: &'a Principal, model: &str) -> Vec<Scope<'a>> {
    levels(principal)
        .into_iter()
        .flatten()
        .filter_map(|record| model_scope(&record, model, period_of(record.limits)))
        .filter_map(|scope| {
            let scope = Scope { rpm: None, ..scope };
            (scope.tpm.is_some() || scope.budget.is_some()).then_some(scope)
        })
        .collect()
}

/// The scopes of a call by `end_user` to `model` under `limits` (its
/// budget's, or the default of end users without one).
pub fn end_user_scopes<'a>(
    end_user: &'a EndUser,
    limits: &'a Limits,
    model: &str,
) -> Vec<Scope<'a>> {
    let stored = end_user.record.as_ref();
    let record = LevelRecord {
        level: Level::EndUser,
        id: &end_user.id,
        names: &end_user.names,
        limits,
        spend: stored.map_or(0.0, |r| r.spend),
        reset_at: stored.and_then(|r| r.budget_reset_at),
        model_spend: None,
        read_at: end_user.read_at,
        budgets_apply: true,
    };
    let mut out = Vec::new();
    push_level(&mut out, &record, model);
    out
}

/// Adds a level's own scope and its scope for `model`, where they limit
/// anything.
fn push_level<'a>(out: &mut Vec<Scope<'a>>, record: &LevelRecord<'a>, model: &str) {
    let limits = record.limits;
    if limits.is_unlimited() {
        return;
    }
    let period = period_of(limits);
    let own = Scope {
        level: record.level,
        name: Cow::Borrowed(&record.names.counter),
        label: Cow::Borrowed(&record.names.label),
        rpm: limits.rpm_limit,
        tpm: limits.tpm_limit,
        parallel: limits.max_parallel_requests,
        budget: limits
            .max_budget
            .filter(|_| record.budgets_apply)
            .map(|max| Budget {
                max,
                recorded: Recorded {
                    spend: record.spend,
                    reset_at: record.reset_at,
                    period,
                    as_of: record.read_at,
                },
            }),
    };
    if own.rpm.is_some() || own.tpm.is_some() || own.parallel.is_some() || own.budget.is_some() {
        out.push(own);
    }
    if let Some(scope) = model_scope(record, model, period) {
        out.push(scope);
    }
}

/// The per-model scopes of the groups a request names in its own
/// `fallbacks` (other than `model` itself): any of them may answer in the
/// requested model's place, so each one's limits must admit the call too,
/// or naming a fallback would step around a model's own limits.
pub fn fallback_scopes<'a>(
    principal: &'a Principal,
    model: &str,
    fallbacks: &[String],
) -> Vec<Scope<'a>> {
    let mut out: Vec<Scope<'a>> = Vec::new();
    // Most requests name no fallbacks: no level's records need reading.
    if fallbacks.is_empty() {
        return out;
    }
    for record in levels(principal).into_iter().flatten() {
        let period = period_of(record.limits);
        for group in fallbacks.iter().filter(|g| g.as_str() != model) {
            if let Some(scope) = model_scope(&record, group, period)
                && !out.iter().any(|s| s.name == scope.name)
            {
                out.push(scope);
            }
        }
    }
    out
}

/// The key's, its user's and its team's records, as the scopes read them.
fn levels(principal: &Principal) -> [Option<LevelRecord<'_>>; 3] {
    let key = &principal.key;
    let names = &principal.scope_names;
    [
        Some(LevelRecord {
            level: Level::Key,
            id: &key.token_hash,
            names: &names.key,
            limits: &key.limits,
            spend: key.spend,
            reset_at: key.budget_reset_at,
            model_spend: Some(&key.model_spend),
            read_at: principal.read_at,
            budgets_apply: true,
        }),
        principal
            .user
            .as_ref()
            .zip(names.user.as_ref())
            .map(|(u, names)| LevelRecord {
                level: Level::User,
                id: &u.user_id,
                names,
                limits: &u.limits,
                spend: u.spend,
                reset_at: u.budget_reset_at,
                model_spend: None,
                read_at: principal.read_at,
                budgets_apply: key.team_id.is_none(),
            }),
        principal
            .team
            .as_ref()
            .zip(names.team.as_ref())
            .map(|(t, names)| LevelRecord {
                level: Level::Team,
                id: &t.team_id,
                names,
                limits: &t.limits,
                spend: t.spend,
                reset_at: t.budget_reset_at,
                model_spend: None,
                read_at: principal.read_at,
                budgets_apply: true,
            }),
    ]
}

/// A level's limits for one model, as their own scope; its names are made
/// here, since they depend on the model (and few levels set such limits).
fn model_scope(
    record: &LevelRecord<'_>,
    model: &str,
    period: Option<Duration>,
) -> Option<Scope<'static>> {
    let limits = record.limits;
    let rpm = limits.model_rpm_limit.get(model).copied();
    let tpm = limits.model_tpm_limit.get(model).copied();
    let max = limits
        .model_max_budget
        .get(model)
        .filter(|_| record.budgets_apply);
    if rpm.is_none() && tpm.is_none() && max.is_none() {
        return None;
    }
    // A key's per-model spend starts from the store's; other levels' from
    // zero.
    let spend = record
        .model_spend
        .and_then(|m| m.get(model).copied())
        .unwrap_or(0.0);
    Some(Scope {
        level: Level::Model,
        name: Cow::Owned(model_counter_name(record.level, record.id, model)),
        label: Cow::Owned(format!("model {model} of {}", record.names.label)),
        rpm,
        tpm,
        parallel: None,
        budget: max.map(|max| Budget {
            max: *max,
            recorded: Recorded {
                spend,
                reset_at: record.reset_at,
                period,
                as_of: record.read_at,
            },
        }),
    })
}

/// The budget period, when `budget_duration` is set and readable (the
/// management API refuses unreadable ones, so none is expected here).
fn period_of(limits: &Limits) -> Option<Duration> {
    limits
        .budget_duration
        .as_deref()
        .and_then(|d| budget_period(d).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::keys::model::UserRecord;

    fn limits(rpm: u64) -> Limits {
        Limits {
            rpm_limit: Some(rpm),
            ..Limits::default()
        }
    }

    fn principal(key_limits: Limits, user_limits: Limits) -> Principal {
        let now = SystemTime::now();
        let key = KeyRecord {
            key_name: "sk-...wxyz".into(),
            user_id: Some("ada".into()),
            limits: key_limits,
            spend: 0.5,
            model_spend: BTreeMap::from([("gpt".to_owned(), 0.25)]),
            ..KeyRecord::for_test("abc123")
        };
        let user = UserRecord {
            user_id: "ada".into(),
            user_role: None,
            user_email: None,
            models: Vec::new(),
            limits: user_limits,
            spend: 0.0,
            budget_reset_at: None,
            metadata: serde_json::json!({}),
            teams: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        Principal::new(key, Some(user), None)
    }

    #[test]
    fn each_limited_level_is_a_scope_named_after_its_record() {
        let p = principal(limits(10), limits(20));
        let scopes = scopes(&p, "gpt");
        let named: Vec<(&str, &str, Option<u64>)> = scopes
            .iter()
            .map(|s| (&*s.name, &*s.label, s.rpm))
            .collect();
        assert_eq!(
            named,
            [
                ("key:abc123", "key sk-...wxyz", Some(10)),
                ("user:ada", "user ada", Some(20)),
            ]
        );
    }

    #[test]
    fn a_levels_limits_for_one_model_are_a_scope_of_that_model_only() {
        let key_limits = Limits {
            model_max_budget: BTreeMap::from([("gpt".to_owned(), 1.0)]),
            ..Limits::default()
        };
        let p = principal(key_limits, Limits::default());
        let for_gpt = scopes(&p, "gpt");
        assert_eq!(for_gpt.len(), 1);
        assert_eq!(for_gpt[0].name, "key-model:abc123:gpt");
        assert_eq!(for_gpt[0].label, "model gpt of key sk-...wxyz");
        let budget = for_gpt[0].budget.unwrap();
        assert_eq!((budget.max, budget.recorded.spend), (1.0, 0.25));
        assert!(scopes(&p, "other").is_empty());
    }

    #[test]
    fn a_team_key_is_not_held_to_its_users_personal_budget() {
        let user_limits = Limits {
            max_budget: Some(0.001),
            rpm_limit: Some(5),
            model_max_budget: BTreeMap::from([("gpt".to_owned(), 0.001)]),
            ..Limits::default()
        };
        let mut p = principal(Limits::default(), user_limits);
        let personal = scopes(&p, "gpt");
        assert!(
            personal
                .iter()
                .all(|s| s.budget.is_some() || s.rpm.is_some())
        );
        assert_eq!(personal.iter().filter(|s| s.budget.is_some()).count(), 2);
        p.key.team_id = Some("t".into());
        let team_key = scopes(&p, "gpt");
        assert_eq!(team_key.len(), 1, "the user's rate limit still counts");
        assert_eq!(
            (team_key[0].rpm, team_key[0].budget.is_none()),
            (Some(5), true)
        );
    }
}
