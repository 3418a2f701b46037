//! Spend, in LiteLLM's routes: `/spend/logs` (one row per request and per
//! composite sub-call), `/spend/keys` and `/spend/users` (the records,
//! highest spend in the current budget period first), and the `/global/spend`
//! family: totals, the keys, teams and model groups that spent most, and
//! `/global/spend/report` (per day and model group), and `/spend/tags`
//! (per request tag). Only administrators
//! may read them: each one shows every caller's spend.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::keys::hash_of;
use super::{ApiError, AppState, invalid, key_error, reader, shape};
use crate::keys::KeyRecord;
use crate::keys::store::{
    KeyFilter, ListOrder, ListPage, SpendBy, SpendFilter, SpendTotals, UserFilter,
};
use crate::keys::time::{day, parse};

/// Rows returned when the query sets no `limit`.
const DEFAULT_LIMIT: u32 = 1000;
/// The most rows one query returns.
const MAX_LIMIT: u32 = 10_000;
const DAY: Duration = Duration::from_secs(86_400);
/// The last second of 9999-12-31, the latest time a filter reads.
fn last_instant() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)
}
/// The window of the `/global/spend` totals, as LiteLLM's views have it.
const GLOBAL_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The `limit` parameter: 1 to [`MAX_LIMIT`] rows, `default` when absent.
fn limit_of(q: &HashMap<String, String>, default: u32) -> Result<u32, ApiError> {
    match q.get("limit") {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
        None => Ok(default),
    }
}

/// The store's day range of the last 30 days, today included.
fn global_window() -> (String, String) {
    let now = SystemTime::now();
    (day(now - GLOBAL_WINDOW), day(now + DAY))
}

/// A group's token and request counts, in the report's field names.
fn counts(t: &SpendTotals) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("prompt_tokens".into(), json!(t.prompt_tokens));
    out.insert("completion_tokens".into(), json!(t.completion_tokens));
    out.insert(
        "total_tokens".into(),
        json!(t.prompt_tokens.saturating_add(t.completion_tokens)),
    );
    out.insert("api_requests".into(), json!(t.requests));
    out
}

/// One row of a `/global/spend` ranking: `name: id`, the spend (as `spend`
/// and LiteLLM's `total_spend`) and the counts.
fn ranked(name: &str, id: String, t: &SpendTotals) -> Map<String, Value> {
    let mut out = counts(t);
    out.insert(name.to_owned(), Value::String(id));
    out.insert("spend".into(), json!(t.spend));
    out.insert("total_spend".into(), json!(t.spend));
    out
}

/// A date filter; a bare `YYYY-MM-DD` end date includes that whole day.
fn date(
    q: &HashMap<String, String>,
    name: &str,
    end: bool,
) -> Result<Option<SystemTime>, ApiError> {
    let Some(text) = q.get(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let t = parse(text).ok_or_else(|| {
        invalid(
            name,
            "must be a date (YYYY-MM-DD) or an RFC 3339 time, from 1970 to 9999",
        )
    })?;
    // The whole day of a bare end date, ending no later than 9999: a day
    // written as 10000-01-01 would sort before every other.
    Ok(Some(if end && text.trim().len() == 10 {
        (t + DAY).min(last_instant())
    } else {
        t.min(last_instant())
    }))
}

/// The `start_date` and `end_date` a query gives, each optional; a start
/// not before the end is a 400.
pub(super) fn optional_window(
    q: &HashMap<String, String>,
) -> Result<(Option<SystemTime>, Option<SystemTime>), ApiError> {
    let (start, end) = (date(q, "start_date", false)?, date(q, "end_date", true)?);
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        return Err(invalid("start_date", "must be before end_date"));
    }
    Ok((start, end))
}

/// The `start_date`..`end_date` window a report covers, each defaulting
/// to `default`'s; a window that ends before it starts is refused rather
/// than answered with nothing.
fn window(
    q: &HashMap<String, String>,
    default: (SystemTime, SystemTime),
) -> Result<(SystemTime, SystemTime), ApiError> {
    let given = date(q, "start_date", false)?;
    let end = date(q, "end_date", true)?.unwrap_or(default.1);
    let start = given.unwrap_or(default.0);
    if start >= end {
        return Err(match given {
            Some(_) => invalid("start_date", "must be before end_date"),
            None => invalid(
                "end_date",
                "must be after start_date, which is 30 days ago when not given",
            ),
        });
    }
    Ok((start, end))
}

#[utoipa::path(
    get,
    path = "/spend/logs",
    operation_id = "spend_logs",
    tag = "spend",
    summary = "Spend log entries",
    responses(
        (status = 200, description = "Spend log entries: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /spend/logs`: filters `api_key` (the key or its hash), `user_id`,
/// `team_id`, `request_id` (the gateway's request id with its sub-calls, or
/// the answer's own `chatcmpl-...` id, as LiteLLM names it), `start_date`,
/// `end_date`, `limit`; newest first, as a JSON array.
pub async fn logs(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, DEFAULT_LIMIT)?;
    let (start, end) = optional_window(&q)?;
    let filter = SpendFilter {
        token_hash: q.get("api_key").map(|k| hash_of(k)),
        user_id: q.get("user_id").cloned(),
        team_id: q.get("team_id").cloned(),
        request_id: q.get("request_id").cloned(),
        start,
        end,
        limit,
    };
    let rows = keys.store().spend_logs(&filter).await.map_err(key_error)?;
    Ok(Json(rows.iter().map(shape::spend_row).collect::<Vec<_>>()).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/report",
    operation_id = "global_spend_report",
    tag = "spend",
    summary = "Spend totals by period",
    responses(
        (status = 200, description = "Spend totals by period: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/report?start_date=&end_date=`: spend, tokens and
/// requests per day and model group (the last 30 days by default).
pub async fn report(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let now = SystemTime::now();
    let (start, end) = window(&q, (now - 30 * DAY, now + DAY))?;
    let rows = keys
        .store()
        .spend_report(SpendBy::Model, &day(start), &day(end))
        .await
        .map_err(key_error)?;
    let mut days: BTreeMap<String, (f64, Vec<Value>)> = BTreeMap::new();
    for r in rows {
        let entry = days.entry(r.day).or_default();
        entry.0 += r.totals.spend;
        let mut model = counts(&r.totals);
        model.insert("model_group".into(), Value::String(r.grouped));
        model.insert("spend".into(), json!(r.totals.spend));
        entry.1.push(Value::Object(model));
    }
    let out: Vec<Value> = days
        .into_iter()
        .map(|(d, (total, models))| json!({"group_by_day": d, "total_spend": total, "models": models}))
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend",
    operation_id = "global_spend",
    tag = "spend",
    summary = "Total spend of the last 30 days",
    responses(
        (status = 200, description = "Total spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend`: what every caller spent in the last 30 days, as
/// `{"spend", "max_budget"}` (the gateway's budget,
/// `litellm_settings.max_budget`; null without one).
pub async fn global(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let (start, end) = global_window();
    let rows = keys
        .store()
        .spend_report(SpendBy::Model, &start, &end)
        .await
        .map_err(key_error)?;
    // From +0.0: an empty sum of f64 is -0.0.
    let spend = rows.iter().fold(0.0, |sum, r| sum + r.totals.spend);
    let max_budget = state.gateway().proxy_budget.as_ref().map(|b| b.max_budget);
    Ok(Json(json!({"spend": spend, "max_budget": max_budget})).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/keys",
    operation_id = "global_spend_keys",
    tag = "spend",
    summary = "The keys that spent most in the last 30 days",
    params(("limit" = Option<u32>, Query, description = "How many keys (default 1000)")),
    responses(
        (status = 200, description = "Keys by spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/keys?limit=`: the keys that spent most in the last
/// 30 days, highest first: `api_key` (the key's hash), `key_alias`,
/// `key_name`, `total_spend` and the token and request counts.
pub async fn global_keys(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, DEFAULT_LIMIT)?;
    let (start, end) = global_window();
    let store = keys.store();
    let top = store
        .spend_totals(SpendBy::Key, &start, &end, limit)
        .await
        .map_err(key_error)?;
    let filter = KeyFilter {
        token_hashes: top.iter().map(|(hash, _)| hash.clone()).collect(),
        ..KeyFilter::default()
    };
    let (records, _) = if filter.token_hashes.is_empty() {
        (Vec::new(), 0)
    } else {
        store
            .list_keys(
                &filter,
                ListPage {
                    page: 1,
                    size: limit,
                },
            )
            .await
            .map_err(key_error)?
    };
    let mut by_hash: HashMap<String, KeyRecord> = records
        .into_iter()
        .map(|k| (k.token_hash.clone(), k))
        .collect();
    let out: Vec<Value> = top
        .into_iter()
        .map(|(hash, t)| {
            let record = by_hash.remove(&hash);
            let mut row = ranked("api_key", hash, &t);
            row.insert(
                "key_alias".into(),
                json!(record.as_ref().and_then(|k| k.key_alias.as_deref())),
            );
            row.insert("key_name".into(), json!(record.map(|k| k.key_name)));
            Value::Object(row)
        })
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/models",
    operation_id = "global_spend_models",
    tag = "spend",
    summary = "The model groups that cost most in the last 30 days",
    params(("limit" = Option<u32>, Query, description = "How many model groups (default 10)")),
    responses(
        (status = 200, description = "Model groups by spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/models?limit=`: the model groups (and composite
/// profiles) that cost most in the last 30 days, highest first, as
/// `{"model", "total_spend", ...}`.
pub async fn global_models(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, 10)?;
    let (start, end) = global_window();
    let top = keys
        .store()
        .spend_totals(SpendBy::Model, &start, &end, limit)
        .await
        .map_err(key_error)?;
    let out: Vec<Value> = top
        .into_iter()
        .map(|(model, t)| Value::Object(ranked("model", model, &t)))
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(
    get,
    path = "/spend/tags",
    operation_id = "spend_tags",
    tag = "spend",
    summary = "Spend per request tag",
    responses(
        (status = 200, description = "Spend per request tag: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /spend/tags?start_date=&end_date=&limit=`: each request tag (from
/// `x-litellm-tags`, `tags`, `metadata.tags` and the key's own) with its
/// spend-log rows and spend, highest spend first, as LiteLLM shapes it:
/// `{"individual_request_tag", "log_count", "total_spend"}`. Without dates,
/// the last 30 days.
pub async fn tags(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, DEFAULT_LIMIT)?;
    let now = SystemTime::now();
    let (start, end) = window(&q, (now - GLOBAL_WINDOW, now + DAY))?;
    let found = keys
        .store()
        .spend_by_tag(start, end, limit)
        .await
        .map_err(key_error)?;
    let out: Vec<Value> = found
        .into_iter()
        .map(|t| {
            json!({
                "individual_request_tag": t.tag,
                "log_count": t.logs,
                "total_spend": t.spend,
            })
        })
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/tags",
    operation_id = "global_spend_tags",
    tag = "spend",
    summary = "Spend per request tag between two dates",
    responses(
        (status = 200, description = "Spend per request tag: done", body = super::super::openapi::JsonObject),
        (status = 400, description = "start_date or end_date missing or not a date", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/tags?start_date=&end_date=&tags=`: LiteLLM's tag
/// report, `{"spend_per_tag": [{"name", "spend", "log_count"}]}`, highest
/// spend first. Both dates are required, as in LiteLLM; `tags` (comma
/// separated; absent or `all-tags` for every tag) picks some.
pub async fn global_tags(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    for name in ["start_date", "end_date"] {
        if q.get(name).is_none_or(|v| v.trim().is_empty()) {
            return Err(invalid(name, "is required (YYYY-MM-DD)"));
        }
    }
    let now = SystemTime::now();
    let (start, end) = window(&q, (now, now))?;
    let wanted: Vec<&str> = q
        .get("tags")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let every = wanted.is_empty() || wanted.contains(&"all-tags");
    let found = keys
        .store()
        .spend_by_tag(start, end, MAX_LIMIT)
        .await
        .map_err(key_error)?;
    let per_tag: Vec<Value> = found
        .into_iter()
        .filter(|t| every || wanted.contains(&t.tag.as_str()))
        .map(|t| json!({"name": t.tag, "spend": t.spend, "log_count": t.logs}))
        .collect();
    Ok(Json(json!({"spend_per_tag": per_tag})).into_response())
}

#[utoipa::path(
    get,
    path = "/global/spend/teams",
    operation_id = "global_spend_teams",
    tag = "spend",
    summary = "Spend per team in the last 30 days",
    responses(
        (status = 200, description = "Spend per team: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /global/spend/teams`: each team's spend in the last 30 days, as
/// LiteLLM shapes it: `teams` (their ids), `total_spend_per_team` (highest
/// first) and `daily_spend` (`{"date", "<team id>": spend, ...}` per day).
pub async fn global_teams(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let (start, end) = global_window();
    let store = keys.store();
    let totals = store
        .spend_totals(SpendBy::Team, &start, &end, MAX_LIMIT)
        .await
        .map_err(key_error)?;
    let rows = store
        .spend_report(SpendBy::Team, &start, &end)
        .await
        .map_err(key_error)?;
    let mut days: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| !r.grouped.is_empty()) {
        days.entry(r.day)
            .or_default()
            .insert(r.grouped, json!(r.totals.spend));
    }
    let daily: Vec<Value> = days
        .into_iter()
        .map(|(date, mut teams)| {
            teams.insert("date".to_owned(), Value::String(date));
            Value::Object(teams)
        })
        .collect();
    Ok(Json(json!({
        "teams": totals.iter().map(|(team, _)| team).collect::<Vec<_>>(),
        "total_spend_per_team": totals
            .iter()
            .map(|(team, t)| json!({"team_id": team, "total_spend": t.spend}))
            .collect::<Vec<_>>(),
        "daily_spend": daily,
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/spend/keys",
    operation_id = "spend_keys",
    tag = "spend",
    summary = "Keys, highest spend first",
    params(("limit" = Option<u32>, Query, description = "How many keys (default 1000)")),
    responses(
        (status = 200, description = "Keys by spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /spend/keys?limit=`: the key records (as `/key/info` shows them),
/// highest spend in their current budget period first.
pub async fn keys_by_spend(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, DEFAULT_LIMIT)?;
    let filter = KeyFilter {
        order: ListOrder::Spend,
        ..KeyFilter::default()
    };
    let (found, _) = keys
        .store()
        .list_keys(
            &filter,
            ListPage {
                page: 1,
                size: limit,
            },
        )
        .await
        .map_err(key_error)?;
    Ok(Json(found.iter().map(shape::key).collect::<Vec<_>>()).into_response())
}

#[utoipa::path(
    get,
    path = "/spend/users",
    operation_id = "spend_users",
    tag = "spend",
    summary = "Users, highest spend first",
    params(
        ("user_id" = Option<String>, Query, description = "Only this user"),
        ("limit" = Option<u32>, Query, description = "How many users (default 1000)")
    ),
    responses(
        (status = 200, description = "Users by spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /spend/users?user_id=&limit=`: the user records (as `/user/info`
/// shows them), highest spend in their current budget period first.
pub async fn users_by_spend(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let limit = limit_of(&q, DEFAULT_LIMIT)?;
    let filter = UserFilter {
        user_ids: q.get("user_id").into_iter().cloned().collect(),
        order: ListOrder::Spend,
        ..UserFilter::default()
    };
    let (found, _) = keys
        .store()
        .list_users(
            &filter,
            ListPage {
                page: 1,
                size: limit,
            },
        )
        .await
        .map_err(key_error)?;
    Ok(Json(found.iter().map(shape::user).collect::<Vec<_>>()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_last_day_of_9999_ends_within_9999() {
        let end = date(&query(&[("end_date", "9999-12-31")]), "end_date", true)
            .unwrap()
            .unwrap();
        assert_eq!(day(end), "9999-12-31");
        let start = date(&query(&[("start_date", "2026-01-01")]), "start_date", false)
            .unwrap()
            .unwrap();
        assert!(start < end);
    }

    #[test]
    fn a_date_before_1970_is_refused_naming_the_range() {
        let refused =
            date(&query(&[("start_date", "1969-12-31")]), "start_date", false).unwrap_err();
        assert!(
            refused.body.error.message.contains("from 1970 to 9999"),
            "{}",
            refused.body.error.message
        );
    }
}
