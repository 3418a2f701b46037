//! `/spend/logs` (one row per request and per composite sub-call) and
//! `/global/spend/report` (spend per day and model group).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::keys::hash_of;
use super::{ApiError, AppState, admin, invalid, key_error, shape};
use crate::keys::store::SpendFilter;
use crate::keys::time::{day, parse};

/// Rows returned when the query sets no `limit`.
const DEFAULT_LIMIT: u32 = 1000;
/// The most rows one query returns.
const MAX_LIMIT: u32 = 10_000;
const DAY: Duration = Duration::from_secs(86_400);

/// A date filter; a bare `YYYY-MM-DD` end date includes that whole day.
fn date(
    q: &HashMap<String, String>,
    name: &str,
    end: bool,
) -> Result<Option<SystemTime>, ApiError> {
    let Some(text) = q.get(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let t = parse(text)
        .ok_or_else(|| invalid(name, "must be a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    Ok(Some(if end && text.trim().len() == 10 {
        t + DAY
    } else {
        t
    }))
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
/// `team_id`, `request_id` (the request and its sub-calls), `start_date`,
/// `end_date`, `limit`; newest first, as a JSON array.
pub async fn logs(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let filter = SpendFilter {
        token_hash: q.get("api_key").map(|k| hash_of(k)),
        user_id: q.get("user_id").cloned(),
        team_id: q.get("team_id").cloned(),
        request_id: q.get("request_id").cloned(),
        start: date(&q, "start_date", false)?,
        end: date(&q, "end_date", true)?,
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
    let keys = admin(&state, request.headers()).await?;
    let now = SystemTime::now();
    let end = date(&q, "end_date", true)?.unwrap_or(now + DAY);
    let start = date(&q, "start_date", false)?.unwrap_or(now - 30 * DAY);
    if start >= end {
        return Err(invalid("start_date", "must be before end_date"));
    }
    let rows = keys
        .store()
        .spend_report(&day(start), &day(end))
        .await
        .map_err(key_error)?;
    let mut days: BTreeMap<String, (f64, Vec<Value>)> = BTreeMap::new();
    for r in rows {
        let entry = days.entry(r.day.clone()).or_default();
        entry.0 += r.spend;
        entry.1.push(json!({
            "model_group": r.model_group,
            "spend": r.spend,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens.saturating_add(r.completion_tokens),
            "api_requests": r.requests,
        }));
    }
    let out: Vec<Value> = days
        .into_iter()
        .map(|(d, (total, models))| json!({"group_by_day": d, "total_spend": total, "models": models}))
        .collect();
    Ok(Json(out).into_response())
}
