//! `/budget/*`: named sets of limits that end users are linked to
//! (`/customer/new` with `budget_id`, or `litellm_settings.
//! max_end_user_budget_id` for every end user without one). Each linked
//! end user is counted on its own against the budget's limits.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{BudgetBody, LimitsPatch, check_id, soft_budget};
use super::keys::page_of;
use super::users::new_id;
use super::{
    ApiError, AppState, admin, invalid, key_error, read_json, read_with_limits, reader, shape,
};
use crate::keys::{BudgetRecord, KeyError, Keys, Limits};

/// The budget `id`, or a 404 naming it.
pub(super) async fn existing_budget(keys: &Keys, id: &str) -> Result<BudgetRecord, ApiError> {
    keys.store()
        .budget(id)
        .await
        .map_err(key_error)?
        .ok_or_else(|| {
            key_error(KeyError::NotFound {
                entity: "budget",
                id: id.into(),
            })
        })
}

/// A new budget `budget_id` of `limits` and `soft` (checked), stored.
pub(super) async fn create(
    keys: &Keys,
    budget_id: String,
    limits: &LimitsPatch,
    soft: Option<f64>,
    now: SystemTime,
) -> Result<BudgetRecord, ApiError> {
    let mut budget = BudgetRecord {
        budget_id,
        limits: Limits::default(),
        soft_budget: soft,
        created_at: now,
        updated_at: now,
    };
    limits.patch(&mut budget.limits)?;
    keys.store()
        .insert_budget(&budget)
        .await
        .map_err(key_error)?;
    Ok(budget)
}

/// Applies `limits` and `soft` (checked; `None` leaves it) to a stored
/// budget and writes it; a changed period starts anew, now, for every end
/// user linked to it, and the cached end users linked to it are dropped.
/// Returns whether the period changed.
pub(super) async fn change(
    keys: &Keys,
    budget: &mut BudgetRecord,
    limits: &LimitsPatch,
    soft: Option<Option<f64>>,
    now: SystemTime,
) -> Result<bool, ApiError> {
    let read_at = budget.updated_at;
    let period_changed = limits.patch(&mut budget.limits)?;
    if let Some(soft) = soft {
        budget.soft_budget = soft;
    }
    budget.updated_at = now;
    super::written(keys.store().update_budget(budget, read_at).await, "budget")?;
    if period_changed {
        let reset_at = budget
            .limits
            .budget_reset_after(now, &keys.settings().reset_clock);
        keys.store()
            .reschedule_end_users(&budget.budget_id, reset_at)
            .await
            .map_err(key_error)?;
    }
    keys.invalidate_budget(&budget.budget_id);
    Ok(period_changed)
}

#[utoipa::path(
    post,
    path = "/budget/new",
    operation_id = "budget_new",
    tag = "budgets",
    summary = "Create a budget",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Create a budget: done", body = super::super::openapi::JsonObject),
        (status = 400, description = "A field was refused, or the budget exists", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /budget/new`: `max_budget`, `budget_duration`, `rpm_limit`,
/// `tpm_limit`, `max_parallel_requests`, `model_max_budget`,
/// `soft_budget`; `budget_id` is made when not given.
pub async fn new(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (body, limits): (BudgetBody, _) = read_with_limits(&state, request).await?;
    let budget_id = match body.budget_id {
        Some(id) => {
            check_id("budget_id", &id)?;
            id
        }
        None => new_id("budget")?,
    };
    let soft = soft_budget(body.soft_budget.flatten())?;
    let budget = create(&keys, budget_id, &limits, soft, SystemTime::now()).await?;
    // A default budget named before it existed is cached as missing.
    keys.invalidate_budget(&budget.budget_id);
    Ok(Json(shape::budget(&budget, None)).into_response())
}

#[utoipa::path(
    post,
    path = "/budget/update",
    operation_id = "budget_update",
    tag = "budgets",
    summary = "Change a budget",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Change a budget: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such budget", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /budget/update`: changes the fields the body names, for every
/// end user linked to the budget.
pub async fn update(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (body, limits): (BudgetBody, _) = read_with_limits(&state, request).await?;
    let id = body
        .budget_id
        .ok_or_else(|| invalid("budget_id", "is required"))?;
    let mut budget = existing_budget(&keys, &id).await?;
    let soft = body.soft_budget.map(soft_budget).transpose()?;
    change(&keys, &mut budget, &limits, soft, SystemTime::now()).await?;
    Ok(Json(shape::budget(&budget, None)).into_response())
}

#[derive(Deserialize)]
struct InfoBody {
    budgets: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/budget/info",
    operation_id = "budget_info",
    tag = "budgets",
    summary = "Budgets by id",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Budgets by id: done", body = [super::super::openapi::JsonObject]),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "A budget named does not exist", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /budget/info` with `{"budgets": [...]}`: those budgets, in order.
pub async fn info(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let body: InfoBody = read_json(&state, request).await?;
    let ids = body
        .budgets
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("budgets", "name at least one budget"))?;
    let ids = super::bounded_list("budgets", ids)?;
    let mut shown = Vec::with_capacity(ids.len());
    for id in &ids {
        shown.push(shape::budget(&existing_budget(&keys, id).await?, None));
    }
    Ok(Json(shown).into_response())
}

#[utoipa::path(
    get,
    path = "/budget/list",
    operation_id = "budget_list",
    tag = "budgets",
    summary = "List budgets",
    responses(
        (status = 200, description = "List budgets: done", body = [super::super::openapi::JsonObject]),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /budget/list?page=&page_size=`: a JSON array, oldest first, 100 to
/// a page.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let page = page_of(&q, 100)?;
    let (found, total) = keys.store().list_budgets(page).await.map_err(key_error)?;
    let shown: Vec<_> = found.iter().map(|b| shape::budget(b, None)).collect();
    Ok(([("x-total-count", total.to_string())], Json(shown)).into_response())
}

/// The fields `/budget/settings` describes: name, JSON type, meaning.
const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "max_budget",
        "float",
        "Most each linked end user may spend per period, in USD",
    ),
    (
        "soft_budget",
        "float",
        "Spend at which to warn (shown, never refused on)",
    ),
    (
        "max_parallel_requests",
        "integer",
        "Requests each linked end user may have in flight",
    ),
    (
        "tpm_limit",
        "integer",
        "Tokens per minute for each linked end user",
    ),
    (
        "rpm_limit",
        "integer",
        "Requests per minute for each linked end user",
    ),
    (
        "budget_duration",
        "string",
        "Period after which spend starts again from zero (30s, 1h, 1d, 30d)",
    ),
    (
        "model_max_budget",
        "object",
        "Most each linked end user may spend per model per period",
    ),
];

#[utoipa::path(
    get,
    path = "/budget/settings",
    operation_id = "budget_settings",
    tag = "budgets",
    summary = "A budget's fields, described",
    params(("budget_id" = String, Query, description = "The budget's id")),
    responses(
        (status = 200, description = "A budget's fields, described: done", body = [super::super::openapi::JsonObject]),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such budget", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /budget/settings?budget_id=`: each field with its value, as
/// LiteLLM's admin UI reads them.
pub async fn settings(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let id = q
        .get("budget_id")
        .ok_or_else(|| invalid("budget_id", "is required"))?;
    let shown = shape::budget(&existing_budget(&keys, id).await?, None);
    let fields: Vec<Value> = SETTINGS
        .iter()
        .map(|(name, kind, about)| {
            json!({
                "field_name": name,
                "field_type": kind,
                "field_description": about,
                "field_value": shown.get(*name).cloned().unwrap_or(Value::Null),
                "stored_in_db": true,
                "field_default_value": Value::Null,
            })
        })
        .collect();
    Ok(Json(fields).into_response())
}

#[derive(Deserialize)]
struct DeleteBody {
    id: Option<String>,
    budget_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/budget/delete",
    operation_id = "budget_delete",
    tag = "budgets",
    summary = "Delete a budget",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete a budget: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such budget", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /budget/delete` with `{"id": ...}`: the end users linked to it
/// are left with none of their own (the default applies to them, when
/// one is set).
pub async fn delete(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: DeleteBody = read_json(&state, request).await?;
    let id = body
        .id
        .or(body.budget_id)
        .ok_or_else(|| invalid("id", "is required: the budget_id to delete"))?;
    let budget = existing_budget(&keys, &id).await?;
    keys.store().delete_budget(&id).await.map_err(key_error)?;
    keys.invalidate_budget(&id);
    Ok(Json(shape::budget(&budget, None)).into_response())
}
