//! The web dashboard: its pages at `/ui` (static files embedded in the
//! binary, sent with a strict content security policy) and the JSON they
//! read under `/ui/api/`. The pages are public; the data takes the same key
//! as the model routes: the master key (or any caller on an open gateway)
//! sees everything, a virtual key only its own requests and spend.
//! `general_settings.ui: false` turns it all off (404).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::AppState;
use super::auth::resolve_caller;
use super::error::ApiError;
use crate::dashboard::recent::{Entry, Filter, StatusFilter, Summary, Viewer};
use crate::dashboard::{Dashboard, Window, assets};
use crate::keys::time::unix_seconds;
use crate::ops::Caller;

/// What the pages may load and run: only their own files and this
/// gateway's API, no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";
/// Requests the table gets when the page does not say.
const DEFAULT_LIST_LIMIT: usize = 100;
/// Most requests one table read returns.
const MAX_LIST_LIMIT: usize = 1000;

/// `GET /ui` and `GET /ui/`: the page.
pub async fn index(State(state): State<AppState>) -> Response {
    asset_response(&state, "index.html")
}

/// `GET /ui/assets/{file}`.
pub async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    asset_response(&state, &file)
}

fn asset_response(state: &AppState, file: &str) -> Response {
    let (Some(_), Some(asset)) = (&state.ops.dashboard, assets::get(file)) else {
        return off_or_missing(file).into_response();
    };
    let mut response = Body::from(asset.bytes).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&asset.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    // The files change with the binary: revalidate, never serve stale.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn off_or_missing(file: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no dashboard file {file:?} (or the dashboard is off: general_settings.ui)"),
        None,
        Some("unknown_url"),
    )
}

/// Who reads the dashboard's data, and what they may see.
struct Reader {
    dashboard: Arc<Dashboard>,
    caller: Caller,
    viewer: Viewer,
}

async fn reader(state: &AppState, headers: &HeaderMap) -> Result<Reader, ApiError> {
    let Some(dashboard) = state.ops.dashboard.clone() else {
        return Err(off_or_missing("/ui/api"));
    };
    let gateway = state.gateway();
    let caller = resolve_caller(state, &gateway, headers, false).await?;
    // Without a master key, the dashboard shows everything to whoever
    // asks: not to a page of another site the operator visits.
    if matches!(caller, Caller::Open)
        && let Some(refused) = super::keyless::page_refusal(headers, state.loopback_only)
    {
        return Err(refused);
    }
    let viewer = match &caller {
        Caller::Key(p) if !p.is_admin() => Viewer::Key(p.key.token_hash.clone()),
        _ => Viewer::All,
    };
    Ok(Reader {
        dashboard,
        caller,
        viewer,
    })
}

/// `GET /ui/api/session`: who the key belongs to and what is turned on.
/// Asked without a key where one is needed, it answers `login_required`
/// instead of 401, so the page can show its login form without an error.
pub async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.ops.dashboard.is_some()
        && state.gateway().master_key.is_some()
        && super::auth::presented_key(&headers).is_none_or(str::is_empty)
    {
        return Ok(Json(json!({"role": null, "login_required": true})).into_response());
    }
    let reader = reader(&state, &headers).await?;
    let role = match (&reader.caller, &reader.viewer) {
        (Caller::Open, _) => "open",
        (Caller::Unknown, _) => "unknown",
        (_, Viewer::All) => "admin",
        (_, Viewer::Key(_)) => "key",
    };
    let gateway = state.gateway();
    Ok(Json(json!({
        "login_required": false,
        "role": role,
        "caller": reader.caller.label(),
        "key_alias": reader.caller.principal().and_then(|p| p.key.key_alias.clone()),
        "user_id": reader.caller.user_id(),
        "team_id": reader.caller.team_id(),
        "features": {
            "keys": state.ops.keys.is_some(),
            "request_logs": reader.dashboard.keeps_bodies(),
            "cache": gateway.cache.is_some(),
            "metrics": true,
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response())
}

/// `GET /ui/api/overview?window=1h|1d`.
pub async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let reader = reader(&state, &headers).await?;
    let window = match query.get("window").map(String::as_str) {
        None => Window::Hour,
        Some(text) => Window::parse(text).ok_or_else(|| {
            ApiError::invalid(
                format!("window must be 1h or 1d, not {text:?}"),
                Some("window"),
            )
        })?,
    };
    let overview = reader.dashboard.overview(window, &reader.viewer);
    let mut body = serde_json::to_value(&overview).unwrap_or(Value::Null);
    body["in_flight"] = json!(state.in_flight.in_use());
    Ok(Json(body).into_response())
}

/// `GET /ui/api/requests`: the live table.
pub async fn requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let reader = reader(&state, &headers).await?;
    let (filter, limit) = list_query(&query)?;
    let (mut summaries, kept, capacity, kept_since) = {
        let recent = reader.dashboard.recent();
        let summaries: Vec<Summary> = recent
            .list(&reader.viewer, &filter, limit)
            .iter()
            .map(|e| e.summary.clone())
            .collect();
        let (kept, capacity) = recent.len_and_capacity();
        (summaries, kept, capacity, recent.kept_since())
    };
    if summaries.len() < limit
        && let Some(keys) = &state.ops.keys
    {
        let before = filter
            .until
            .map_or(kept_since, |until| until.min(kept_since));
        let older = history(
            keys,
            &reader.viewer,
            &filter,
            before,
            limit - summaries.len(),
        )
        .await;
        summaries.extend(older);
    }
    Ok(Json(json!({"requests": summaries, "kept": kept, "capacity": capacity})).into_response())
}

/// Spend-log rows to read for history per row the table still lacks: rows
/// of sub-calls and rows the filters drop are read and skipped.
const HISTORY_READ_FACTOR: usize = 4;

/// Requests older than the ones kept in memory, from the spend logs (which
/// outlive restarts): client requests only, `filter` applied, each marked
/// `source: spend_log`. A store that cannot answer leaves the table as it is.
async fn history(
    keys: &crate::keys::Keys,
    viewer: &Viewer,
    filter: &Filter,
    before: f64,
    wanted: usize,
) -> Vec<Summary> {
    // The spend logs name the key by its hash only: a filter on a key's
    // name or alias cannot be matched there (but `master`/`open` can).
    let keyless = matches!(filter.key.as_deref(), Some("master" | "open"));
    if filter.key.is_some() && !keyless {
        return Vec::new();
    }
    let at = |t: f64| {
        UNIX_EPOCH
            + std::time::Duration::try_from_secs_f64(t.clamp(0.0, LATEST_TIME)).unwrap_or_default()
    };
    let store_filter = crate::keys::store::SpendFilter {
        token_hash: match viewer {
            Viewer::Key(hash) => Some(hash.clone()),
            Viewer::All => None,
        },
        user_id: None,
        team_id: None,
        request_id: None,
        start: filter.since.map(at),
        end: Some(at(before)),
        limit: u32::try_from(wanted.saturating_mul(HISTORY_READ_FACTOR)).unwrap_or(u32::MAX),
    };
    let rows = match keys.store().spend_logs(&store_filter).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "the dashboard cannot read request history from the spend logs");
            return Vec::new();
        }
    };
    rows.iter()
        .filter(|r| r.parent_request_id.is_none() && (!keyless || r.token_hash.is_none()))
        .map(Summary::from_spend_row)
        .filter(|s| filter.matches(s))
        .take(wanted)
        .collect()
}

/// The latest time a filter may name, in Unix seconds (the last second of
/// the year 9999): a later one is no time a request was made at.
const LATEST_TIME: f64 = 253_402_300_799.0;

/// Reads the table's filters; a value that means nothing is refused, naming it.
fn list_query(query: &HashMap<String, String>) -> Result<(Filter, usize), ApiError> {
    let text = |name: &str| query.get(name).filter(|v| !v.is_empty()).cloned();
    let time = |name: &str| -> Result<Option<f64>, ApiError> {
        text(name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && t.abs() <= LATEST_TIME)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("{name} must be Unix seconds, not {v:?}"),
                            Some(name),
                        )
                    })
            })
            .transpose()
    };
    let status = text("status")
        .map(|v| {
            StatusFilter::parse(&v).ok_or_else(|| {
                ApiError::invalid(
                    format!("status must be ok, error, 1xx..5xx or a status code, not {v:?}"),
                    Some("status"),
                )
            })
        })
        .transpose()?;
    let limit = match text("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("limit must be a number from 1 to {MAX_LIST_LIMIT}, not {v:?}"),
                    Some("limit"),
                )
            })?,
    };
    let filter = Filter {
        model: text("model"),
        status,
        key: text("key"),
        since: time("since")?,
        until: time("until")?,
    };
    Ok((filter, limit))
}

/// `GET /ui/api/requests/{id}`: one request with its attempts, body,
/// sub-calls and composite trace.
pub async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let reader = reader(&state, &headers).await?;
    let found = reader.dashboard.recent().find(&id, &reader.viewer);
    let Some((entry, calls)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "request {id:?} is not among the recent requests kept in memory (the spend logs keep older ones)"
            ),
            Some("id"),
            Some("request_not_found"),
        ));
    };
    Ok(Json(request_json(&entry, &calls)).into_response())
}

fn request_json(entry: &Entry, calls: &[Arc<Entry>]) -> Value {
    let body = entry
        .request_body
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let calls: Vec<&Summary> = calls.iter().map(|c| &c.summary).collect();
    json!({
        "request": entry.summary,
        "attempts": entry.attempts,
        "attempts_omitted": entry.attempts_omitted,
        "request_body": body,
        "request_body_truncated": entry.request_body_truncated,
        "calls": calls,
        "trace": entry.composite.as_ref().map(|c| &c.trace),
        "composite_error": entry.composite.as_ref().and_then(|c| c.error.as_deref()),
    })
}

/// `GET /ui/api/models`: every deployment's live state, the composite
/// profiles and the last reloads.
pub async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reader = reader(&state, &headers).await?;
    let gateway = state.gateway();
    let status = state.control.status_json();
    let can_reload = super::admin::admission(
        gateway.master_key.as_ref(),
        state.loopback_only && gateway.admin_without_key_on_loopback,
        &headers,
    )
    .is_ok();
    // A key that is no admin's sees the models it may use, and nothing of
    // the config file (its path, its reload errors) the admin API keeps, nor
    // the upstream errors other callers' requests met.
    let limited = reader.caller.principal().filter(|p| !p.is_admin());
    let mut groups = deployment_groups(
        &gateway,
        crate::health::ErrorTexts::shown_if(limited.is_none()),
    );
    let admin_only = |value: &Value| match limited {
        None => value.clone(),
        Some(_) => Value::Null,
    };
    let mut profiles = profiles_with_model_names(&gateway, &status);
    if let Some(principal) = limited {
        let may_use = |name: Option<&str>| {
            name.is_some_and(|name| {
                crate::ops::admission::denied_by(principal, name, &gateway.access_groups).is_none()
            })
        };
        groups.retain(|group| may_use(group["name"].as_str()));
        // A profile is shown under the public model name that serves it.
        profiles.retain(|profile| may_use(profile["model_name"].as_str()));
    }
    Ok(Json(json!({
        "version": status["version"],
        "loaded_at": status["loaded_at"],
        "config": admin_only(&status["config"]),
        "groups": groups,
        "profiles": profiles,
        // Its error text may quote the config, as the error field does.
        "last_reload": admin_only(&status["last_reload"]),
        "last_reload_error": admin_only(&status["last_reload_error"]),
        "reloads": admin_only(&status["reloads"]),
        "can_reload": can_reload,
    }))
    .into_response())
}

/// Every group with its deployments' live state, in group name order.
fn deployment_groups(
    gateway: &crate::gateway::Gateway,
    errors: crate::health::ErrorTexts,
) -> Vec<Value> {
    let text = |e| errors.apply(e);
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for d in gateway.router.deployment_states() {
        let view = json!({
            "id": d.id,
            "provider": d.provider,
            "model": d.upstream_model,
            "state": d.availability.label(),
            "cooling_until": match d.availability {
                crate::router::states::Availability::Cooling { until } => Some(unix_seconds(until)),
                _ => None,
            },
            "latency_ms": d.latency.map(|l| l.as_secs_f64() * 1000.0),
            "in_flight": d.in_flight,
            "last_error": d.last_error.map(|e| json!({"message": text(Some(e.message)), "at": unix_seconds(e.at)})),
            "last_check": d.last_check.map(|c| json!({
                "at": unix_seconds(c.at),
                "latency_ms": c.latency.as_secs_f64() * 1000.0,
                "error": text(c.error),
            })),
        });
        match groups.last_mut() {
            Some((name, list)) if *name == d.group => list.push(view),
            _ => groups.push((d.group, vec![view])),
        }
    }
    groups
        .into_iter()
        .map(|(name, deployments)| json!({"name": name, "deployments": deployments}))
        .collect()
}

/// The status report's profiles, each with the public model name that runs it.
fn profiles_with_model_names(gateway: &crate::gateway::Gateway, status: &Value) -> Vec<Value> {
    let public: HashMap<&str, &str> = gateway
        .strategies
        .public_names()
        .filter_map(|name| {
            let profile = gateway.strategies.profile_for(name)?;
            Some((profile.plan.name.as_str(), name.as_str()))
        })
        .collect();
    status["profiles"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    let mut p = p.clone();
                    let name = p["name"].as_str().unwrap_or_default();
                    p["model_name"] = json!(public.get(name));
                    p
                })
                .collect()
        })
        .unwrap_or_default()
}
