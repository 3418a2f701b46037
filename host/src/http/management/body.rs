//! The request bodies of the management API, with LiteLLM's field names.
//! A field that is absent leaves the value alone; `null` clears it (for the
//! update routes); fields conclave does not use are accepted and ignored so
//! a LiteLLM script's extra fields do not break it, except restrictions it
//! does not enforce ([`unenforced`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::unenforced::{self, Restricting, Restriction};
use super::{ApiError, invalid};
use crate::keys::reset::ResetClock;
use crate::keys::{Limits, budget_period};

/// `Some(None)` for an explicit `null`, `None` when absent.
fn double<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// [`double`] for a number that may also come written as a string
/// (`"5"`): LiteLLM's server reads both, so scripts send both.
fn double_number<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + std::str::FromStr,
{
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None => Ok(Some(None)),
        Some(Value::String(text)) => text
            .trim()
            .parse()
            .map(|n| Some(Some(n)))
            .map_err(|_| D::Error::custom(format!("expected a number, got {text:?}"))),
        Some(other) => T::deserialize(other)
            .map(|n| Some(Some(n)))
            .map_err(D::Error::custom),
    }
}

/// The limits every level shares.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct LimitsPatch {
    #[serde(default, deserialize_with = "double_number")]
    pub max_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double")]
    pub budget_duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_number")]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_number")]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_number")]
    pub max_parallel_requests: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double")]
    pub model_rpm_limit: Option<Option<BTreeMap<String, u64>>>,
    #[serde(default, deserialize_with = "double")]
    pub model_tpm_limit: Option<Option<BTreeMap<String, u64>>>,
    #[serde(default, deserialize_with = "double")]
    pub model_max_budget: Option<Option<BTreeMap<String, Value>>>,
    /// The spend of the current period, set by an administrator (LiteLLM's
    /// field; `0` gives a spent budget back). Not a limit, but every level
    /// has one, like the limits.
    pub spend: Option<f64>,
}

impl LimitsPatch {
    /// The spend the body sets, checked.
    pub fn spend(&self) -> Result<Option<f64>, ApiError> {
        match self.spend {
            Some(s) if !s.is_finite() || s < 0.0 => {
                Err(invalid("spend", "must be a non-negative number"))
            }
            s => Ok(s),
        }
    }

    /// Applies the patch to `limits`, checking each value, and moves
    /// `budget_reset_at` to the end of the current period (on `clock`) when
    /// the period changed or had no reset scheduled yet.
    pub fn apply(
        &self,
        limits: &mut Limits,
        budget_reset_at: &mut Option<SystemTime>,
        now: SystemTime,
        clock: &ResetClock,
    ) -> Result<(), ApiError> {
        if self.patch(limits)? || (budget_reset_at.is_none() && limits.budget_duration.is_some()) {
            *budget_reset_at = limits.budget_reset_after(now, clock);
        }
        Ok(())
    }

    /// Whether the body sets any limit (the spend is not one).
    pub fn sets_any(&self) -> bool {
        self.max_budget.is_some()
            || self.budget_duration.is_some()
            || self.rpm_limit.is_some()
            || self.tpm_limit.is_some()
            || self.max_parallel_requests.is_some()
            || self.model_rpm_limit.is_some()
            || self.model_tpm_limit.is_some()
            || self.model_max_budget.is_some()
    }

    /// Applies the patch to `limits`, checking each value; returns whether
    /// the budget period changed.
    pub fn patch(&self, limits: &mut Limits) -> Result<bool, ApiError> {
        if let Some(v) = self.max_budget {
            if v.is_some_and(|b| !b.is_finite() || b < 0.0) {
                return Err(invalid("max_budget", "must be a non-negative number"));
            }
            limits.max_budget = v;
        }
        let mut period_changed = false;
        if let Some(v) = &self.budget_duration {
            if let Some(text) = v {
                budget_period(text).map_err(|e| invalid("budget_duration", e))?;
            }
            period_changed = limits.budget_duration != *v;
            limits.budget_duration = v.clone();
        }
        if let Some(v) = self.rpm_limit {
            limits.rpm_limit = v;
        }
        if let Some(v) = self.tpm_limit {
            limits.tpm_limit = v;
        }
        if let Some(v) = self.max_parallel_requests {
            limits.max_parallel_requests = v;
        }
        if let Some(v) = &self.model_rpm_limit {
            limits.model_rpm_limit = v.clone().unwrap_or_default();
            check_entries("model_rpm_limit", limits.model_rpm_limit.keys())?;
            model_limit_names("model_rpm_limit", limits.model_rpm_limit.keys())?;
        }
        if let Some(v) = &self.model_tpm_limit {
            limits.model_tpm_limit = v.clone().unwrap_or_default();
            check_entries("model_tpm_limit", limits.model_tpm_limit.keys())?;
            model_limit_names("model_tpm_limit", limits.model_tpm_limit.keys())?;
        }
        if let Some(v) = &self.model_max_budget {
            let (budgets, period) = model_budgets(v.as_ref())?;
            limits.model_max_budget = budgets;
            check_entries("model_max_budget", limits.model_max_budget.keys())?;
            model_limit_names("model_max_budget", limits.model_max_budget.keys())?;
            if let Some(period) = period {
                period_changed |= shared_period(limits, period)?;
            }
        }
        Ok(period_changed)
    }
}

/// Per-model budgets share the key's `budget_duration`: a period written
/// beside one (LiteLLM's `time_period`) must be that period, or becomes it
/// when the key has neither a period nor a budget of its own it would reset.
/// Returns whether the key's period changed.
fn shared_period(limits: &mut Limits, (field, text): NamedPeriod) -> Result<bool, ApiError> {
    let asked = budget_period(&text).map_err(|e| invalid(&field, e))?;
    match &limits.budget_duration {
        Some(own) if budget_period(own).ok() == Some(asked) => Ok(false),
        Some(own) => Err(invalid(
            &field,
            format!(
                "is {text:?}, but per-model budgets reset with the key's budget_duration \
                 ({own:?}): give both the same period, or leave {field} out"
            ),
        )),
        None if limits.max_budget.is_some() => Err(invalid(
            &field,
            format!(
                "is {text:?}, but per-model budgets reset with the key's budget_duration, \
                 which is unset while its max_budget never resets: set budget_duration: {text:?} \
                 for both, or leave {field} out"
            ),
        )),
        None => {
            limits.budget_duration = Some(text);
            Ok(true)
        }
    }
}

/// LiteLLM's names for sets of models in a key's `models`.
const SPECIAL_MODEL_NAMES: &[&str] = &["all-proxy-models", "all-team-models"];

/// Refuses a per-model limit named by a wildcard pattern (`wild/*`) or a
/// set of models (`all-proxy-models`): it
/// is counted by the name a request asks for, which a pattern never is, so
/// it would limit nothing while seeming to.
fn model_limit_names<'a>(
    field: &str,
    mut names: impl Iterator<Item = &'a String>,
) -> Result<(), ApiError> {
    match names.find(|name| name.contains('*') || SPECIAL_MODEL_NAMES.contains(&name.as_str())) {
        Some(pattern) => Err(invalid(
            &format!("{field}.{pattern}"),
            "names a wildcard pattern or a set of models, which no request's model is: limit \
             the model names it stands for, or set the key's own limit",
        )),
        None => Ok(()),
    }
}

/// The field of a body that wrote a budget period, and the period as
/// written (`model_max_budget.gpt-4.time_period`, `"1d"`).
type NamedPeriod = (String, String);

/// `model_max_budget` as LiteLLM writes it: `{"model": 10.0}`,
/// `{"model": {"max_budget": 10.0, "budget_duration": "1d"}}` or, in its
/// newer form, `{"model": {"budget_limit": 10.0, "time_period": "1d"}}`
/// (the key's own period applies to each here).
/// Also returns the one period the entries name (`time_period` or
/// `budget_duration`, with the field that named it first); several
/// different ones are a 400, since the entries share the key's.
fn model_budgets(
    v: Option<&BTreeMap<String, Value>>,
) -> Result<(BTreeMap<String, f64>, Option<NamedPeriod>), ApiError> {
    let mut out = BTreeMap::new();
    let mut period: Option<NamedPeriod> = None;
    for (model, value) in v.into_iter().flatten() {
        for name in ["time_period", "budget_duration"] {
            let Some(given) = value.get(name).filter(|p| !p.is_null()) else {
                continue;
            };
            let field = format!("model_max_budget.{model}.{name}");
            let Some(text) = given.as_str() else {
                return Err(invalid(&field, "must be a period such as \"30d\""));
            };
            match &period {
                Some((first, seen)) if seen != text => {
                    return Err(invalid(
                        &field,
                        format!(
                            "is {text:?} where {first} is {seen:?}: per-model budgets share \
                             the key's one budget_duration"
                        ),
                    ));
                }
                Some(_) => {}
                None => period = Some((field, text.to_owned())),
            }
        }
        let budget = value
            .as_f64()
            .or_else(|| value.get("max_budget").and_then(Value::as_f64))
            .or_else(|| value.get("budget_limit").and_then(Value::as_f64))
            .filter(|b| b.is_finite() && *b >= 0.0)
            .ok_or_else(|| {
                invalid(
                    &format!("model_max_budget.{model}"),
                    "must be a non-negative number, {\"max_budget\": number} or {\"budget_limit\": number}",
                )
            })?;
        out.insert(model.clone(), budget);
    }
    Ok((out, period))
}

/// When a key given `duration` now expires: never for none or
/// `permanent`; a duration that does not parse is a 400 naming `duration`.
pub fn expiry(duration: Option<&str>, now: SystemTime) -> Result<Option<SystemTime>, ApiError> {
    match duration {
        None | Some("permanent") => Ok(None),
        Some(d) => {
            let period = budget_period(d).map_err(|e| invalid("duration", e))?;
            Ok(now.checked_add(period))
        }
    }
}

/// `/key/generate` and `/key/update`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct KeyBody {
    /// The key to update (`/key/update`), or a chosen value for a new key.
    pub key: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub key_alias: Option<Option<String>>,
    /// `30s`, `1h`, `30d`; `null` (or absent on generate) never expires.
    #[serde(default, deserialize_with = "double")]
    pub duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    pub aliases: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "double")]
    pub user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub metadata: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double")]
    pub tags: Option<Option<Vec<String>>>,
    /// The routes the key may call: paths, `/prefix/*` or LiteLLM's route
    /// groups; `null` or `[]` allows every route.
    #[serde(default, deserialize_with = "double")]
    pub allowed_routes: Option<Option<Vec<String>>>,
    /// LiteLLM's shorthand for `allowed_routes`: `llm_api`, `management`,
    /// `read_only` (their route groups) or `default` (as given).
    #[serde(default, deserialize_with = "double")]
    pub key_type: Option<Option<String>>,
    pub blocked: Option<bool>,
    /// Read on its own from the same body (see `read_with_limits`).
    #[serde(skip)]
    pub limits: LimitsPatch,
}

/// `/user/new` and `/user/update`.
#[derive(Debug, Default, Deserialize)]
pub struct UserBody {
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub user_role: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub user_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    pub metadata: Option<Option<Value>>,
    /// `/user/new` makes a key for the user unless this is false (LiteLLM's default).
    pub auto_create_key: Option<bool>,
    /// Teams to join on creation.
    pub teams: Option<Vec<String>>,
    /// LiteLLM's `team_id` on `/user/new`: a team to join, whose key the
    /// user's first key becomes.
    pub team_id: Option<String>,
    /// The first key's alias (`/user/new`).
    pub key_alias: Option<String>,
    /// The first key's lifetime (`/user/new`), as `/key/generate` reads it.
    pub duration: Option<String>,
    /// Read on its own from the same body (see `read_with_limits`).
    #[serde(skip)]
    pub limits: LimitsPatch,
}

/// `/team/new` and `/team/update`.
#[derive(Debug, Default, Deserialize)]
pub struct TeamBody {
    pub team_id: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub team_alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    pub metadata: Option<Option<Value>>,
    pub blocked: Option<bool>,
    /// `[{"user_id": "...", "role": "user"}]` (LiteLLM's `members_with_roles`).
    pub members_with_roles: Option<Vec<Member>>,
    /// Read on its own from the same body (see `read_with_limits`).
    #[serde(skip)]
    pub limits: LimitsPatch,
}

/// `/customer/new` and `/customer/update` (LiteLLM's end users). The
/// budget fields beside these are the end user's budget's.
#[derive(Debug, Default, Deserialize)]
pub struct CustomerBody {
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub alias: Option<Option<String>>,
    pub blocked: Option<bool>,
    /// A budget made with `/budget/new` to link the end user to.
    #[serde(default, deserialize_with = "double")]
    pub budget_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub default_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_number")]
    pub soft_budget: Option<Option<f64>>,
    /// Read on its own from the same body (see `read_with_limits`).
    #[serde(skip)]
    pub limits: LimitsPatch,
}

/// `/budget/new` and `/budget/update`.
#[derive(Debug, Default, Deserialize)]
pub struct BudgetBody {
    pub budget_id: Option<String>,
    #[serde(default, deserialize_with = "double_number")]
    pub soft_budget: Option<Option<f64>>,
}

/// A `soft_budget` as given: non-negative.
pub fn soft_budget(v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(s) if !s.is_finite() || s < 0.0 => {
            Err(invalid("soft_budget", "must be a non-negative number"))
        }
        s => Ok(s),
    }
}

impl Restricting for CustomerBody {
    const UNENFORCED: &'static [Restriction] = unenforced::ON_CUSTOMERS;
}

impl Restricting for BudgetBody {
    const UNENFORCED: &'static [Restriction] = unenforced::ON_BUDGETS;
}

impl Restricting for KeyBody {
    const UNENFORCED: &'static [Restriction] = unenforced::ON_KEYS;
}

impl Restricting for UserBody {
    const UNENFORCED: &'static [Restriction] = unenforced::ON_USERS;
}

impl Restricting for TeamBody {
    const UNENFORCED: &'static [Restriction] = unenforced::ON_TEAMS;
}

/// A team member as LiteLLM writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "user".into()
}

/// The most bytes a record's `metadata` may take as JSON. A record is
/// cached whole (up to the key cache's count) and read back with every
/// lookup, so what a client stores in it is bounded like every other value
/// it sets.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The most entries of a record's list or map (`models`, `tags`,
/// `aliases`, the per-model limits), and the longest entry.
pub const MAX_ENTRIES: usize = 1000;
pub const MAX_ENTRY_BYTES: usize = 512;

/// `metadata` must be an object (or null, which is `{}`) of at most
/// [`MAX_METADATA_BYTES`].
pub fn metadata(v: Value) -> Result<Value, ApiError> {
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => {
            let size = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
            if size > MAX_METADATA_BYTES {
                return Err(invalid(
                    "metadata",
                    format!("takes {size} bytes as JSON; at most {MAX_METADATA_BYTES} are kept"),
                ));
            }
            Ok(v)
        }
        _ => Err(invalid("metadata", "must be a JSON object")),
    }
}

/// A list's (or a map's keys') entries: at most [`MAX_ENTRIES`], each at
/// most [`MAX_ENTRY_BYTES`].
pub fn check_entries<'a>(
    field: &str,
    entries: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    if entries.len() > MAX_ENTRIES {
        return Err(invalid(
            field,
            format!("has {} entries; at most {MAX_ENTRIES}", entries.len()),
        ));
    }
    for entry in entries {
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(invalid(
                field,
                format!("has an entry longer than {MAX_ENTRY_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// An id (user, team, alias): non-empty, printable, at most 256 characters.
pub fn check_id(field: &str, v: &str) -> Result<(), ApiError> {
    if v.contains('\0') {
        return Err(invalid(
            field,
            "must be 1 to 256 printable characters (it holds a NUL)",
        ));
    }
    if v.trim().is_empty() || v.chars().count() > 256 || v.chars().any(char::is_control) {
        return Err(invalid(field, "must be 1 to 256 printable characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(limits: &mut Limits, body: Value) -> Result<bool, ApiError> {
        let patch: LimitsPatch = serde_json::from_value(body).unwrap();
        patch.patch(limits)
    }

    #[test]
    fn a_per_model_period_becomes_the_keys_when_it_has_none() {
        let mut limits = Limits::default();
        let body = serde_json::json!({"model_max_budget": {"m1": {"budget_limit": 0.5, "time_period": "1d"}}});
        assert!(patched(&mut limits, body).unwrap());
        assert_eq!(limits.budget_duration.as_deref(), Some("1d"));
        assert_eq!(limits.model_max_budget.get("m1"), Some(&0.5));
    }

    #[test]
    fn a_per_model_period_other_than_the_keys_is_refused_by_name() {
        let mut limits = Limits {
            budget_duration: Some("30s".into()),
            ..Limits::default()
        };
        let body = serde_json::json!({"model_max_budget": {"m1": {"budget_limit": 0.5, "time_period": "30d"}}});
        let refused = patched(&mut limits, body).unwrap_err();
        assert_eq!(
            refused.body.error.param.as_deref(),
            Some("model_max_budget.m1.time_period")
        );
        let same = serde_json::json!({"model_max_budget": {"m1": {"budget_limit": 0.5, "time_period": "30s"}}});
        assert!(!patched(&mut limits, same).unwrap());
    }

    #[test]
    fn per_model_periods_must_agree_and_not_reset_a_lifetime_budget() {
        let mut limits = Limits::default();
        let two = serde_json::json!({"model_max_budget": {
            "a": {"budget_limit": 1, "time_period": "1d"},
            "b": {"budget_limit": 1, "time_period": "7d"}}});
        assert!(patched(&mut limits, two).is_err());
        let mut lifetime = Limits {
            max_budget: Some(10.0),
            ..Limits::default()
        };
        let body = serde_json::json!({"model_max_budget": {"m1": {"max_budget": 1, "budget_duration": "1d"}}});
        assert!(patched(&mut lifetime, body).is_err());
        assert_eq!(lifetime.budget_duration, None);
    }
}
