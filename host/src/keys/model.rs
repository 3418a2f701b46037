//! The virtual-key entities as the rest of the gateway sees them: keys,
//! users and teams with LiteLLM's field names and meanings, the limits each
//! level may set, and one spend-log row per model call. Plain data with no
//! storage or HTTP types, so the admission checks, the spend sink and the
//! management API all speak the same words.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::scopes::ScopeNames;

/// The user role that may use the management API with its own key
/// (LiteLLM's `proxy_admin`).
pub const PROXY_ADMIN_ROLE: &str = "proxy_admin";

/// The user role that may read, never change, what an administrator may
/// (LiteLLM's `proxy_admin_viewer`).
pub const PROXY_ADMIN_VIEWER_ROLE: &str = "proxy_admin_viewer";

/// The limits a key, a user or a team may set. Every limit is checked at
/// each level where it is set; `None` (or an empty map) means no limit at
/// that level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Spend (in USD) allowed per budget period, or in total without one.
    pub max_budget: Option<f64>,
    /// The budget period, in LiteLLM's form (`30s`, `1h`, `1d`, `30d`):
    /// spend resets to zero at `budget_reset_at`, which then moves on by one
    /// period. Parse it with [`budget_period`].
    pub budget_duration: Option<String>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm_limit: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel_requests: Option<u32>,
    /// Requests per minute for one model name (the name the caller asked for).
    pub model_rpm_limit: BTreeMap<String, u64>,
    /// Tokens per minute for one model name.
    pub model_tpm_limit: BTreeMap<String, u64>,
    /// Spend allowed per budget period for one model name.
    pub model_max_budget: BTreeMap<String, f64>,
}

impl Limits {
    /// Whether nothing is limited at this level, so checks can skip it.
    pub fn is_unlimited(&self) -> bool {
        self.max_budget.is_none()
            && self.rpm_limit.is_none()
            && self.tpm_limit.is_none()
            && self.max_parallel_requests.is_none()
            && self.model_rpm_limit.is_empty()
            && self.model_tpm_limit.is_empty()
            && self.model_max_budget.is_empty()
    }
}

/// Why a duration string such as `budget_duration` or `duration` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: write a whole number followed by s, m, h, d, w or mo (e.g. \"30s\", \"1h\", \"30d\"), or hourly, daily, weekly or monthly"
)]
pub struct PeriodError(pub String);

/// The longest period accepted: ten years, so adding it to a clock cannot overflow.
const MAX_PERIOD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses LiteLLM's duration strings: a whole number and a unit, `s`
/// (seconds), `m` (minutes), `h` (hours), `d` (days), `w` (weeks) or `mo`
/// (months of 30 days), as `budget_duration`, `duration` and
/// `maximum_spend_logs_retention_period` are written, or one of LiteLLM's
/// words for them (`hourly`, `daily`, `weekly`, `monthly`). Zero and
/// anything past ten years are refused.
pub fn budget_period(text: &str) -> Result<Duration, PeriodError> {
    period_parts(text).map(|(_, _, length)| length)
}

/// The unit of a duration string, as the calendar-aligned budget resets
/// read it (`min` is a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeriodUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl PeriodUnit {
    fn of(unit: &str) -> Option<Self> {
        Some(match unit {
            "s" => Self::Second,
            "m" | "min" => Self::Minute,
            "h" => Self::Hour,
            "d" => Self::Day,
            "w" => Self::Week,
            "mo" => Self::Month,
            _ => return None,
        })
    }

    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
            Self::Month => 30 * 86_400,
        }
    }
}

/// A duration string [`budget_period`] accepts, as its count, its unit and
/// its length: what the calendar-aligned budget resets need besides the
/// length.
pub(crate) fn period_parts(text: &str) -> Result<(u64, PeriodUnit, Duration), PeriodError> {
    let refuse = || PeriodError(text.to_owned());
    let t = text.trim();
    let t = word_period(t).unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(refuse)?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| refuse())?;
    let unit = PeriodUnit::of(unit.trim()).ok_or_else(refuse)?;
    let secs = n.checked_mul(unit.seconds()).ok_or_else(refuse)?;
    let period = Duration::from_secs(secs);
    if secs == 0 || period > MAX_PERIOD {
        return Err(refuse());
    }
    Ok((n, unit, period))
}

/// The period LiteLLM's word for it stands for: `daily` is a day (so it
/// ends at the reset time of day), `weekly` seven days (from Monday),
/// `monthly` thirty (from the 1st).
fn word_period(word: &str) -> Option<&'static str> {
    const WORDS: [(&str, &str); 4] = [
        ("hourly", "1h"),
        ("daily", "1d"),
        ("weekly", "7d"),
        ("monthly", "30d"),
    ];
    WORDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, period)| *period)
}

/// One virtual key. Only the SHA-256 of the key is ever stored; the full key
/// exists once, in the answer that created it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Lowercase hex SHA-256 of the full key: the key's id (LiteLLM's `token`).
    pub token_hash: String,
    /// A unique, human name for the key.
    pub key_alias: Option<String>,
    /// `sk-...abcd`: enough to recognise a key in a list without revealing it.
    pub key_name: String,
    /// The user the key belongs to, if any.
    pub user_id: Option<String>,
    /// The team the key belongs to, if any.
    pub team_id: Option<String>,
    /// Model names or access groups the key may call; empty means all
    /// (within its user's and team's lists).
    pub models: Vec<String>,
    /// Model names the key may use in place of others (`{"gpt-4": "gpt-4o"}`):
    /// a request for a key of this map goes to its value.
    pub aliases: BTreeMap<String, String>,
    /// The key's own limits.
    pub limits: Limits,
    /// Spend (USD) in the current budget period, as of the last store read.
    pub spend: f64,
    /// Spend per model name in the current budget period (for
    /// `model_max_budget`), as of the last store read.
    pub model_spend: BTreeMap<String, f64>,
    /// When the key's spend next resets (set when `budget_duration` is).
    pub budget_reset_at: Option<SystemTime>,
    /// When the key stops working; `None` never.
    pub expires: Option<SystemTime>,
    /// A blocked key is refused (401) until unblocked.
    pub blocked: bool,
    /// Free-form JSON the caller attached.
    pub metadata: serde_json::Value,
    /// Tags copied onto every spend-log row of the key.
    pub tags: Vec<String>,
    pub created_at: SystemTime,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// The routes the key may call (LiteLLM's `allowed_routes`: paths,
    /// `/prefix/*` or route groups); empty allows every route.
    pub allowed_routes: Vec<String>,
}

impl KeyRecord {
    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

/// One user: the person (or service) keys belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    /// `proxy_admin` may use the management API with its own keys
    /// ([`PROXY_ADMIN_ROLE`]); other roles (`internal_user`, ...) may not.
    pub user_role: Option<String>,
    pub user_email: Option<String>,
    /// Model names or access groups the user's keys may call; empty means all.
    pub models: Vec<String>,
    pub limits: Limits,
    /// Spend in the current budget period, summed over the user's keys.
    pub spend: f64,
    pub budget_reset_at: Option<SystemTime>,
    pub metadata: serde_json::Value,
    /// Teams the user is a member of.
    pub teams: Vec<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl UserRecord {
    /// Whether this user may manage keys, users and teams.
    pub fn is_admin(&self) -> bool {
        self.user_role.as_deref() == Some(PROXY_ADMIN_ROLE)
    }
}

/// One team: a shared budget and limits over its members' keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    pub team_id: String,
    pub team_alias: Option<String>,
    /// Model names or access groups the team's keys may call; empty means all.
    pub models: Vec<String>,
    pub limits: Limits,
    /// Spend in the current budget period, summed over the team's keys.
    pub spend: f64,
    pub budget_reset_at: Option<SystemTime>,
    /// A blocked team's keys are refused.
    pub blocked: bool,
    /// User ids of the members.
    pub members: Vec<String>,
    pub metadata: serde_json::Value,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl TeamRecord {
    /// A team with nothing set yet, made at `now`: `/team/new` fills in
    /// what its body gives.
    pub fn new(team_id: String, now: SystemTime) -> Self {
        Self {
            team_id,
            team_alias: None,
            models: Vec::new(),
            limits: Limits::default(),
            spend: 0.0,
            budget_reset_at: None,
            blocked: false,
            members: Vec::new(),
            metadata: serde_json::json!({}),
            created_at: now,
            updated_at: now,
        }
    }
}

/// Everything a request needs to know about its caller, resolved once per
/// key (and cached) so the admission checks never reach the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key: KeyRecord,
    /// The key's user, when it has one and the user exists.
    pub user: Option<UserRecord>,
    /// The key's team, when it has one and the team exists.
    pub team: Option<TeamRecord>,
    /// The names its limits are counted under, made from the records above.
    pub scope_names: ScopeNames,
    /// When the records were read: the spend counters take in a user's or
    /// team's spend from the newest copy any of its keys holds.
    pub read_at: std::time::Instant,
}

impl Principal {
    /// A principal of these records, just read, with their scope names.
    pub fn new(key: KeyRecord, user: Option<UserRecord>, team: Option<TeamRecord>) -> Self {
        let scope_names = ScopeNames::of(&key, user.as_ref(), team.as_ref());
        Self {
            key,
            user,
            team,
            scope_names,
            read_at: std::time::Instant::now(),
        }
    }

    /// Whether this caller may use the management API: its user is a
    /// `proxy_admin`.
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(UserRecord::is_admin)
    }

    /// Whether this caller may read what the management API shows an
    /// administrator: its user is a `proxy_admin_viewer`.
    pub fn is_viewer(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.user_role.as_deref() == Some(PROXY_ADMIN_VIEWER_ROLE))
    }
}

/// A named set of limits (LiteLLM's budget table): end users linked to it
/// each get its limits, counted for each of them on their own.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRecord {
    pub budget_id: String,
    /// `max_budget` and `budget_duration` per end user, and the per-minute
    /// and in-flight limits.
    pub limits: Limits,
    /// The spend at which LiteLLM alerts; kept and shown, never refused on.
    pub soft_budget: Option<f64>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// One end user (LiteLLM's customer): whoever a request names in its
/// `user` field or the customer headers. A row is made the first time an
/// end user spends, or by `/customer/new`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndUserRecord {
    pub user_id: String,
    pub alias: Option<String>,
    /// A blocked end user's requests are refused.
    pub blocked: bool,
    /// The budget the end user is linked to, with its record when it exists.
    pub budget_id: Option<String>,
    pub budget: Option<BudgetRecord>,
    /// Spend in the current budget period.
    pub spend: f64,
    pub budget_reset_at: Option<SystemTime>,
    /// Shown as LiteLLM shows them; conclave does not route by them.
    pub default_model: Option<String>,
    pub allowed_model_region: Option<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl EndUserRecord {
    /// A record for an end user seen for the first time, with nothing set.
    pub fn new(user_id: String, now: SystemTime) -> Self {
        Self {
            user_id,
            alias: None,
            blocked: false,
            budget_id: None,
            budget: None,
            spend: 0.0,
            budget_reset_at: None,
            default_model: None,
            allowed_model_region: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The limits that apply: its budget's, none without one.
    pub fn limits(&self) -> Option<&Limits> {
        self.budget.as_ref().map(|b| &b.limits)
    }
}

/// One spend-log row: a request, or one model call a composite strategy made
/// (linked to its request by `parent_request_id`). Written in batches by the
/// background writer; its `spend` is added to the key's, user's and team's
/// totals and to the daily aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    /// The request id (`x-conclave-request-id`), or the sub-call's own id.
    pub request_id: String,
    /// The composite request a sub-call belongs to.
    pub parent_request_id: Option<String>,
    /// The answer's own id (`chatcmpl-...`): LiteLLM's spend logs call it
    /// the request id, so `/spend/logs?request_id=` finds a row by either.
    pub response_id: Option<String>,
    /// The key that paid, if the caller used a virtual key.
    pub token_hash: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// The model name the caller asked for.
    pub model: String,
    /// The model group that served it.
    pub model_group: Option<String>,
    /// The model whose per-model budget the call was charged to, when not
    /// `model` (a key's or the router's alias, a client's own fallback):
    /// the key's per-model spend is kept under it. Not a spend-log column.
    pub budget_model: Option<String>,
    /// The deployment (model id) that answered.
    pub deployment: Option<String>,
    /// The composite profile, for composite requests and their sub-calls.
    pub profile: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Cost in USD.
    pub spend: f64,
    /// A composite request's cost, its sub-calls' (whose own rows carry
    /// it): counted only toward the key's per-model spend under the
    /// composite's name, so a per-model budget on that name holds. Not a
    /// spend-log column.
    pub composite_cost: f64,
    /// HTTP status of the answer.
    pub status: u16,
    /// Served from the response cache.
    pub cache_hit: bool,
    pub started_at: SystemTime,
    pub latency_ms: u64,
    /// The key's tags and the request's own.
    pub tags: Vec<String>,
    /// The request's `user` (LiteLLM's `end_user`).
    pub end_user: Option<String>,
}

#[cfg(test)]
impl KeyRecord {
    /// A key with no owner, limits or spend, for a test to adjust.
    pub(crate) fn for_test(token_hash: &str) -> Self {
        let now = SystemTime::now();
        Self {
            token_hash: token_hash.into(),
            key_alias: None,
            key_name: "sk-...test".into(),
            user_id: None,
            team_id: None,
            models: Vec::new(),
            aliases: BTreeMap::new(),
            limits: Limits::default(),
            spend: 0.0,
            model_spend: BTreeMap::new(),
            budget_reset_at: None,
            expires: None,
            blocked: false,
            metadata: serde_json::json!({}),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            allowed_routes: Vec::new(),
        }
    }
}

#[cfg(test)]
impl SpendRow {
    /// A top-level row of model `m` that used and spent nothing, for a
    /// test to adjust.
    pub(crate) fn for_test(request_id: &str, token_hash: Option<&str>) -> Self {
        Self {
            request_id: request_id.into(),
            parent_request_id: None,
            response_id: None,
            token_hash: token_hash.map(str::to_owned),
            user_id: None,
            team_id: None,
            model: "m".into(),
            model_group: None,
            budget_model: None,
            deployment: None,
            profile: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            spend: 0.0,
            composite_cost: 0.0,
            status: 200,
            cache_hit: false,
            started_at: SystemTime::UNIX_EPOCH,
            latency_ms: 0,
            tags: Vec::new(),
            end_user: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_periods_parse() {
        assert_eq!(budget_period("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(budget_period("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(budget_period("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(budget_period("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(budget_period("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(budget_period("1mo"), Ok(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn litellms_words_for_periods_stand_for_their_lengths() {
        let parts = |t: &str| period_parts(t).map(|(n, unit, _)| (n, unit));
        assert_eq!(parts("hourly"), Ok((1, PeriodUnit::Hour)));
        assert_eq!(parts("daily"), Ok((1, PeriodUnit::Day)));
        assert_eq!(parts(" Weekly "), Ok((7, PeriodUnit::Day)));
        assert_eq!(parts("MONTHLY"), Ok((30, PeriodUnit::Day)));
        let error = budget_period("yearly").unwrap_err().to_string();
        assert!(
            error.contains("\"yearly\"") && error.contains("monthly"),
            "{error}"
        );
    }

    #[test]
    fn bad_periods_are_refused() {
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1x",
            "1.5h",
            "99999999999999999999d",
            "40000d",
        ] {
            assert!(budget_period(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
