//! Giving spend back: LiteLLM's `POST /key/{key}/reset_spend` (one key's
//! spend set to a lower value, its per-model spend forgotten) and
//! `POST /global/spend/reset` (every key's and team's spend to zero). Both
//! change the store and the live limit counters, so that a budget given
//! back admits the very next request, on this instance and on every one
//! sharing the Redis.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::keys::existing;
use super::{ApiError, AppState, Manager, admin, authenticate, invalid, key_error, shape};
use crate::keys::scopes::{counter_name, key_counter_names};
use crate::keys::store::SpendOwner;
use crate::limits::Level;

#[derive(Deserialize)]
struct ResetBody {
    reset_to: serde_json::Value,
}

#[utoipa::path(
    post,
    path = "/key/{key}/reset_spend",
    operation_id = "key_reset_spend",
    tag = "keys",
    summary = "Set a virtual key's spend back",
    request_body = super::super::openapi::JsonObject,
    params(("key" = String, Path, description = "The key or its hash")),
    responses(
        (status = 200, description = "The key's hash, its spend before and after, its max_budget and budget_reset_at", body = super::super::openapi::JsonObject),
        (status = 400, description = "reset_to missing, negative, above the key's spend or above its max_budget", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not the master key or a proxy_admin's key, or the key store is off", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such key", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/{key}/reset_spend` with `{"reset_to": <number>}`: sets the
/// key's spend to `reset_to` (from 0 to its spend, and not above its
/// `max_budget`) and forgets its spend on each model, so its
/// `model_max_budget` entries start again. For administrators only: a
/// key's holder could otherwise lift its own budget.
pub async fn reset_key(
    State(state): State<AppState>,
    Path(given): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: ResetBody = super::read_json(&state, request).await?;
    let reset_to = body
        .reset_to
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid("reset_to", "must be a number"))?;
    let record = existing(&keys, &given).await?;
    let hash = record.token_hash.clone();
    if reset_to < 0.0 {
        return Err(invalid("reset_to", "must be 0 or more"));
    }
    if reset_to > record.spend {
        return Err(invalid(
            "reset_to",
            format!(
                "{reset_to} is above the key's spend of {}: spend can only be given back",
                record.spend
            ),
        ));
    }
    if let Some(max) = record.limits.max_budget
        && reset_to > max
    {
        return Err(invalid(
            "reset_to",
            format!("{reset_to} is above the key's max_budget of {max}"),
        ));
    }
    super::set_spend(&state, &keys, SpendOwner::Key, &hash, Some(reset_to)).await?;
    keys.store()
        .clear_model_spend(&hash)
        .await
        .map_err(key_error)?;
    let own = counter_name(Level::Key, &hash);
    let per_model: Vec<String> = key_counter_names(&hash, &record.limits)
        .into_iter()
        .filter(|name| *name != own)
        .collect();
    zero_counters(&state, &per_model).await?;
    keys.invalidate(&hash);
    Ok(Json(json!({
        "key_hash": hash,
        "spend": reset_to,
        "previous_spend": record.spend,
        "max_budget": record.limits.max_budget,
        "budget_reset_at": shape::time(record.budget_reset_at),
    }))
    .into_response())
}

#[utoipa::path(
    post,
    path = "/global/spend/reset",
    operation_id = "global_spend_reset",
    tag = "spend",
    summary = "Set every key's and team's spend to zero",
    responses(
        (status = 200, description = "Done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not the master key, or the key store is off", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /global/spend/reset`: every key's and every team's spend to zero,
/// as LiteLLM's does (users, end users and spend logs are kept). The
/// master key's alone, as in LiteLLM.
pub async fn reset_global(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    if !matches!(manager, Manager::Master) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "resetting every key's and team's spend needs the master key",
            None,
            Some("not_master_key"),
        ));
    }
    for (owner, level) in [
        (SpendOwner::Key, Level::Key),
        (SpendOwner::Team, Level::Team),
    ] {
        let ids = keys
            .store()
            .reset_all_spend(owner)
            .await
            .map_err(key_error)?;
        let names: Vec<String> = ids.iter().map(|id| counter_name(level, id)).collect();
        zero_counters(&state, &names).await?;
    }
    keys.invalidate_all();
    Ok(Json(json!({
        "message": "Spend for all API Keys and Teams reset successfully",
        "status": "success",
    }))
    .into_response())
}

/// Sets the spend of each counter in `names` to zero; see
/// [`super::set_counter`].
async fn zero_counters(state: &AppState, names: &[String]) -> Result<(), ApiError> {
    for name in names {
        super::set_counter(state, name, 0.0).await?;
    }
    Ok(())
}
