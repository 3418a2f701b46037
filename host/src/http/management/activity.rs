//! LiteLLM's daily activity, from the daily spend aggregates:
//! `GET /user/daily/activity` and `GET /team/daily/activity` (per day: the
//! metrics, and a breakdown by model, provider, key and user or team, in
//! LiteLLM's shapes), and `GET /global/spend/logs` (spend per day). An
//! administrator reads anyone's; any other key reads its own user's (or
//! its teams'), as in LiteLLM, whose usage pages and scripts call these.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::keys::hash_of;
use super::{ApiError, AppState, Manager, authenticate, invalid, key_error, reader};
use crate::keys::store::{ActivityFilter, ActivityRow, KeyFilter, ListPage, SpendTotals};
use crate::keys::time::day;

/// The most aggregate rows one page holds, as in LiteLLM.
const MAX_PAGE_SIZE: u32 = 1000;
/// The most teams one team query names.
const MAX_TEAMS: usize = 100;
/// Days `/global/spend/logs` covers, today included.
const GLOBAL_DAYS: u64 = 30;

#[utoipa::path(
    get,
    path = "/user/daily/activity",
    operation_id = "user_daily_activity",
    tag = "spend",
    summary = "Spend, tokens and requests per day, with a breakdown (LiteLLM's usage view)",
    params(
        ("start_date" = String, Query, description = "First day, YYYY-MM-DD"),
        ("end_date" = String, Query, description = "Last day, YYYY-MM-DD (included)"),
        ("user_id" = Option<String>, Query, description = "One user (a key that is not an administrator's reads only its own)"),
        ("api_key" = Option<String>, Query, description = "One key, by value or hash"),
        ("model" = Option<String>, Query, description = "One model group"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Aggregate rows per page, 1 to 1000 (default 50)")
    ),
    responses(
        (status = 200, description = "The activity: done", body = super::super::openapi::JsonObject),
        (status = 400, description = "A missing or unreadable parameter", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Another user's activity, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /user/daily/activity`: one user's activity (every user's for an
/// administrator who names none).
pub async fn user_activity(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let mut filter = common_filter(&q)?;
    let asked = q.get("user_id").filter(|u| !u.is_empty()).cloned();
    match &manager {
        m if m.reads_all() => filter.user_id = asked,
        Manager::Key { principal, .. } => match (&principal.key.user_id, asked) {
            (Some(own), Some(asked)) if *own != asked => return Err(not_own("user_id")),
            (Some(own), _) => filter.user_id = Some(own.clone()),
            (None, Some(_)) => return Err(not_own("user_id")),
            // A key of no user reads its own calls.
            (None, None) => {
                let own = &principal.key.token_hash;
                if filter.token_hash.as_ref().is_some_and(|h| h != own) {
                    return Err(not_own("api_key"));
                }
                filter.token_hash = Some(own.clone());
            }
        },
        Manager::Master => filter.user_id = asked,
    }
    let page = page_of(&q, 50)?;
    let (rows, total) = keys
        .store()
        .daily_activity(&filter, page)
        .await
        .map_err(key_error)?;
    let entity = |r: &ActivityRow| {
        (
            non_empty(&r.user_id, "Unassigned"),
            Value::Object(Map::new()),
        )
    };
    let out = Activity::of(&state, &keys, &rows, entity).await?;
    Ok(Json(out.json(page, total)).into_response())
}

#[utoipa::path(
    get,
    path = "/team/daily/activity",
    operation_id = "team_daily_activity",
    tag = "spend",
    summary = "Spend, tokens and requests per day and team, with a breakdown",
    params(
        ("start_date" = String, Query, description = "First day, YYYY-MM-DD"),
        ("end_date" = String, Query, description = "Last day, YYYY-MM-DD (included)"),
        ("team_ids" = Option<String>, Query, description = "Teams, comma separated (a key that is not an administrator's reads only its own teams)"),
        ("exclude_team_ids" = Option<String>, Query, description = "Teams left out, comma separated"),
        ("api_key" = Option<String>, Query, description = "One key, by value or hash"),
        ("model" = Option<String>, Query, description = "One model group"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Aggregate rows per page, 1 to 1000 (default 10)")
    ),
    responses(
        (status = 200, description = "The activity: done", body = super::super::openapi::JsonObject),
        (status = 400, description = "A missing or unreadable parameter", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Another team's activity, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /team/daily/activity`: the activity of teams' keys, by team.
pub async fn team_activity(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let mut filter = common_filter(&q)?;
    let asked = id_list(&q, "team_ids")?;
    let excluded = id_list(&q, "exclude_team_ids")?;
    filter.team_ids = match &manager {
        m if m.reads_all() => asked,
        Manager::Key { principal, .. } => {
            let mut own: Vec<String> = principal
                .user
                .as_ref()
                .map(|u| u.teams.clone())
                .unwrap_or_default();
            own.extend(principal.key.team_id.clone());
            if let Some(other) = asked.iter().find(|t| !own.contains(t)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    format!("team {other} is not one of this key's user's teams"),
                    Some("team_ids"),
                    Some("not_own_team"),
                ));
            }
            if asked.is_empty() { own } else { asked }
        }
        Manager::Master => asked,
    };
    filter.team_ids.retain(|t| !excluded.contains(t));
    let page = page_of(&q, 10)?;
    let nothing_to_read = filter.team_ids.is_empty() && !manager.reads_all();
    let (rows, total) = if nothing_to_read {
        (Vec::new(), 0)
    } else {
        filter.teams_only = true;
        filter.excluded_team_ids = excluded;
        keys.store()
            .daily_activity(&filter, page)
            .await
            .map_err(key_error)?
    };
    let aliases = team_aliases(&keys, &rows).await?;
    let entity = |r: &ActivityRow| {
        let alias = aliases.get(&r.team_id).cloned().flatten();
        (r.team_id.clone(), json!({"team_alias": alias}))
    };
    let out = Activity::of(&state, &keys, &rows, entity).await?;
    Ok(Json(out.json(page, total)).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/logs",
    operation_id = "global_spend_logs",
    tag = "spend",
    summary = "Spend per day of the last 30 days",
    params(("api_key" = Option<String>, Query, description = "One key, by value or hash")),
    responses(
        (status = 200, description = "Spend per day: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/logs?api_key=`: `[{"date", "spend"}]` per day of the
/// last 30 days with any, oldest first; with `api_key`, that key's, each
/// row naming it (its hash).
pub async fn global_logs(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let hash = q
        .get("api_key")
        .filter(|k| !k.is_empty())
        .map(|k| hash_of(k));
    let now = SystemTime::now();
    let start = day(now - std::time::Duration::from_secs((GLOBAL_DAYS - 1) * 86_400));
    let end = day(now + std::time::Duration::from_secs(86_400));
    let days = keys
        .store()
        .spend_per_day(&start, &end, hash.as_deref())
        .await
        .map_err(key_error)?;
    let out: Vec<Value> = days
        .into_iter()
        .map(|(date, spend)| match &hash {
            Some(h) => json!({"date": date, "spend": spend, "api_key": h}),
            None => json!({"date": date, "spend": spend}),
        })
        .collect();
    Ok(Json(out).into_response())
}

/// The filters both activity routes take: the dates (both required, as
/// in LiteLLM), `model` and `api_key`.
fn common_filter(q: &HashMap<String, String>) -> Result<ActivityFilter, ApiError> {
    let start = day_param(q, "start_date")?;
    let end = day_param(q, "end_date")?;
    if end < start {
        return Err(invalid("end_date", "must not be before start_date"));
    }
    Ok(ActivityFilter {
        start: start.to_owned(),
        end: day(day_after(end)?),
        model_group: q.get("model").filter(|m| !m.is_empty()).cloned(),
        token_hash: q
            .get("api_key")
            .filter(|k| !k.is_empty())
            .map(|k| hash_of(k)),
        ..ActivityFilter::default()
    })
}

/// A required `YYYY-MM-DD` parameter.
fn day_param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    let value = q
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            invalid(
                name,
                "is required (YYYY-MM-DD), with start_date and end_date",
            )
        })?;
    let valid = value.len() == 10 && crate::keys::time::parse(value).is_some();
    if !valid {
        return Err(invalid(name, "must be a date, YYYY-MM-DD"));
    }
    Ok(value)
}

/// The day after `date` (`YYYY-MM-DD`), as a time.
fn day_after(date: &str) -> Result<SystemTime, ApiError> {
    crate::keys::time::parse(date)
        .and_then(|t| t.checked_add(std::time::Duration::from_secs(86_400)))
        .ok_or_else(|| invalid("end_date", "must be a date, YYYY-MM-DD"))
}

/// `page` (from 1) and `page_size` (1 to [`MAX_PAGE_SIZE`], `default`).
fn page_of(q: &HashMap<String, String>, default: u32) -> Result<ListPage, ApiError> {
    super::keys::page_within(q, default, MAX_PAGE_SIZE)
}

/// A comma-separated list of ids, at most [`MAX_TEAMS`].
fn id_list(q: &HashMap<String, String>, name: &str) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = q
        .get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if ids.len() > MAX_TEAMS {
        return Err(invalid(name, format!("names at most {MAX_TEAMS} teams")));
    }
    Ok(ids)
}

/// 403: a key that is not an administrator's reads only its own activity.
fn not_own(param: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        "a key that is not an administrator's may read only its own user's activity",
        Some(param),
        Some("not_own_user"),
    )
}

fn non_empty(id: &str, otherwise: &str) -> String {
    if id.is_empty() { otherwise } else { id }.to_owned()
}

/// The aliases of the teams in `rows`.
async fn team_aliases(
    keys: &crate::keys::Keys,
    rows: &[ActivityRow],
) -> Result<HashMap<String, Option<String>>, ApiError> {
    let mut aliases = HashMap::new();
    for row in rows {
        if aliases.contains_key(&row.team_id) {
            continue;
        }
        let team = keys.store().team(&row.team_id).await.map_err(key_error)?;
        aliases.insert(row.team_id.clone(), team.and_then(|t| t.team_alias));
    }
    Ok(aliases)
}

/// Counts in LiteLLM's `SpendMetrics` names.
#[derive(Default, Clone, Copy)]
struct Metrics {
    totals: SpendTotals,
    failed: u64,
}

impl Metrics {
    fn add(&mut self, row: &ActivityRow) {
        let t = &mut self.totals;
        t.spend += row.totals.spend;
        t.prompt_tokens = t.prompt_tokens.saturating_add(row.totals.prompt_tokens);
        t.completion_tokens = t
            .completion_tokens
            .saturating_add(row.totals.completion_tokens);
        t.requests = t.requests.saturating_add(row.totals.requests);
        self.failed = self.failed.saturating_add(row.failed);
    }

    fn json(&self) -> Value {
        let t = &self.totals;
        json!({
            "spend": t.spend,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens.saturating_add(t.completion_tokens),
            // Cached prompt tokens are counted in the prompt's, not apart.
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "api_requests": t.requests,
            "successful_requests": t.requests.saturating_sub(self.failed),
            "failed_requests": self.failed,
        })
    }
}

/// One breakdown entry: its metrics and, per key, the key's.
#[derive(Default)]
struct Entry {
    metrics: Metrics,
    metadata: Value,
    by_key: BTreeMap<String, Metrics>,
}

impl Entry {
    fn add(&mut self, row: &ActivityRow) {
        self.metrics.add(row);
        self.by_key
            .entry(row.token_hash.clone())
            .or_default()
            .add(row);
    }
}

/// One day: its metrics and breakdowns.
#[derive(Default)]
struct Day {
    metrics: Metrics,
    model_groups: BTreeMap<String, Entry>,
    providers: BTreeMap<String, Entry>,
    entities: BTreeMap<String, Entry>,
    keys: BTreeMap<String, Metrics>,
}

/// A page of activity, by day.
struct Activity {
    days: BTreeMap<String, Day>,
    totals: Metrics,
    /// Each key's `key_alias` and `team_id`.
    key_metadata: HashMap<String, Value>,
}

impl Activity {
    /// The page `rows` sorted into days, each row's entity (a user or
    /// team, and its metadata) given by `entity`.
    async fn of(
        state: &AppState,
        keys: &crate::keys::Keys,
        rows: &[ActivityRow],
        entity: impl Fn(&ActivityRow) -> (String, Value),
    ) -> Result<Self, ApiError> {
        let providers = providers(state);
        let mut days: BTreeMap<String, Day> = BTreeMap::new();
        let mut totals = Metrics::default();
        for row in rows {
            totals.add(row);
            let d = days.entry(row.day.clone()).or_default();
            d.metrics.add(row);
            let provider = providers
                .get(&row.model_group)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            for (map, name) in [
                (&mut d.model_groups, row.model_group.clone()),
                (&mut d.providers, provider),
            ] {
                map.entry(name).or_default().add(row);
            }
            let (name, metadata) = entity(row);
            let e = d.entities.entry(name).or_default();
            e.add(row);
            e.metadata = metadata;
            d.keys.entry(row.token_hash.clone()).or_default().add(row);
        }
        let key_metadata = key_metadata(keys, rows).await?;
        Ok(Self {
            days,
            totals,
            key_metadata,
        })
    }

    /// LiteLLM's `SpendAnalyticsPaginatedResponse`: days newest first; the
    /// metadata's totals are the page's, as LiteLLM's are.
    fn json(&self, page: ListPage, total_rows: u64) -> Value {
        let results: Vec<Value> = self
            .days
            .iter()
            .rev()
            .map(|(date, d)| {
                let model_groups = self.entries(&d.model_groups);
                json!({
                    "date": date,
                    "metrics": d.metrics.json(),
                    "breakdown": {
                        "models": model_groups,
                        "model_groups": model_groups,
                        "providers": self.entries(&d.providers),
                        "api_keys": self.keys(&d.keys),
                        "entities": self.entries(&d.entities),
                        "mcp_servers": {},
                        "endpoints": {},
                    },
                })
            })
            .collect();
        let size = u64::from(page.size);
        let t = self.totals.json();
        json!({
            "results": results,
            "metadata": {
                "total_spend": t["spend"],
                "total_prompt_tokens": t["prompt_tokens"],
                "total_completion_tokens": t["completion_tokens"],
                "total_tokens": t["total_tokens"],
                "total_api_requests": t["api_requests"],
                "total_successful_requests": t["successful_requests"],
                "total_failed_requests": t["failed_requests"],
                "total_cache_read_input_tokens": 0,
                "total_cache_creation_input_tokens": 0,
                "page": page.page,
                "total_pages": total_rows.div_ceil(size),
                "has_more": u64::from(page.page).saturating_mul(size) < total_rows,
            },
        })
    }

    fn entries(&self, entries: &BTreeMap<String, Entry>) -> Value {
        let map: Map<String, Value> = entries
            .iter()
            .map(|(name, e)| {
                let metadata = if e.metadata.is_null() {
                    json!({})
                } else {
                    e.metadata.clone()
                };
                let entry = json!({
                    "metrics": e.metrics.json(),
                    "metadata": metadata,
                    "api_key_breakdown": self.keys(&e.by_key),
                });
                (name.clone(), entry)
            })
            .collect();
        Value::Object(map)
    }

    fn keys(&self, keys: &BTreeMap<String, Metrics>) -> Value {
        let map: Map<String, Value> = keys
            .iter()
            .map(|(hash, m)| {
                let metadata = self
                    .key_metadata
                    .get(hash)
                    .cloned()
                    .unwrap_or_else(|| json!({"key_alias": null, "team_id": null}));
                (
                    hash.clone(),
                    json!({"metrics": m.json(), "metadata": metadata}),
                )
            })
            .collect();
        Value::Object(map)
    }
}

/// The provider of each model group whose deployments all have one.
fn providers(state: &AppState) -> HashMap<String, String> {
    let gateway = state.gateway();
    gateway
        .router
        .groups()
        .iter()
        .filter_map(|g| {
            let mut all = g.deployments.iter().map(|d| d.target.provider());
            let first = all.next()?;
            all.all(|p| p == first)
                .then(|| (g.name.to_string(), first.to_owned()))
        })
        .collect()
}

/// `key_alias` and `team_id` of the keys in `rows` (a deleted key has none).
async fn key_metadata(
    keys: &crate::keys::Keys,
    rows: &[ActivityRow],
) -> Result<HashMap<String, Value>, ApiError> {
    let mut hashes: Vec<String> = rows
        .iter()
        .map(|r| r.token_hash.clone())
        .filter(|h| !h.is_empty())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let size = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
    let filter = KeyFilter {
        token_hashes: hashes,
        ..KeyFilter::default()
    };
    let (records, _) = keys
        .store()
        .list_keys(&filter, ListPage { page: 1, size })
        .await
        .map_err(key_error)?;
    Ok(records
        .into_iter()
        .map(|k| {
            let metadata = json!({"key_alias": k.key_alias, "team_id": k.team_id});
            (k.token_hash, metadata)
        })
        .collect())
}
