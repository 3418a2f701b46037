//! `/customer/*` (also `/end_user/*`): the end users requests name in
//! their `user` field or LiteLLM's customer headers. An end user is made
//! here or the first time it spends; its limits are those of the budget it
//! is linked to (`/budget/*`). Budget fields given here make a budget for
//! the end user, or change the one it is linked to, as LiteLLM does.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::body::{CustomerBody, check_id, soft_budget};
use super::budgets::{change, create, existing_budget};
use super::keys::page_of;
use super::users::new_id;
use super::{
    ApiError, AppState, admin, invalid, key_error, read_json, read_with_limits, reader, shape,
};
use crate::keys::store::SpendOwner;
use crate::keys::{BudgetRecord, EndUserRecord, KeyError, Keys, Limits};

/// An end user's id as the routes take it: any name a request may give
/// (`user` or a customer header), so every end user can be managed.
fn check_end_user_id(field: &str, id: &str) -> Result<(), ApiError> {
    match crate::openai::checked_end_user(id, field) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(invalid(field, "must not be empty")),
        Err(message) => Err(ApiError::invalid(message, Some(field))),
    }
}

/// Checks every field of a body before anything is written, so a refused
/// request changes nothing: the spend, `soft_budget` and the budget's
/// limits (applied to a scratch copy here).
fn check_body(b: &CustomerBody) -> Result<(Option<f64>, Option<Option<f64>>), ApiError> {
    let spend = b.limits.spend()?;
    let soft = b.soft_budget.map(soft_budget).transpose()?;
    b.limits.patch(&mut Limits::default())?;
    if let Some(Some(alias)) = &b.alias {
        check_id("alias", alias)?;
    }
    Ok((spend, soft))
}

/// The end user `id`, or a 404 naming it.
async fn existing(keys: &Keys, id: &str) -> Result<EndUserRecord, ApiError> {
    keys.store()
        .end_user(id)
        .await
        .map_err(key_error)?
        .ok_or_else(|| {
            key_error(KeyError::NotFound {
                entity: "customer",
                id: id.into(),
            })
        })
}

/// Links `e` to `budget`: its period starts now.
fn link(e: &mut EndUserRecord, budget: BudgetRecord, keys: &Keys, now: SystemTime) {
    e.budget_reset_at = budget
        .limits
        .budget_reset_after(now, &keys.settings().reset_clock);
    e.budget_id = Some(budget.budget_id.clone());
    e.budget = Some(budget);
}

/// The fields of `b` other than the budget's (checked by [`check_body`]).
fn apply(e: &mut EndUserRecord, b: &CustomerBody) {
    if let Some(alias) = &b.alias {
        e.alias = alias.clone();
    }
    if let Some(blocked) = b.blocked {
        e.blocked = blocked;
    }
    if let Some(model) = &b.default_model {
        e.default_model = model.clone();
    }
}

/// The refusal of a body naming a budget and giving budget fields too.
fn budget_id_and_fields() -> ApiError {
    invalid(
        "budget_id",
        "give either budget_id or the budget's own fields (max_budget, ...), not both",
    )
}

/// Whether the body sets a field of the end user's budget.
fn sets_budget_fields(b: &CustomerBody) -> bool {
    b.limits.sets_any() || b.soft_budget.is_some()
}

#[utoipa::path(
    post,
    path = "/customer/new",
    operation_id = "customer_new",
    tag = "customers",
    summary = "Create an end user",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Create an end user: done", body = super::super::openapi::JsonObject),
        (status = 400, description = "A field was refused, or the end user exists", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /customer/new`: an end user, linked to `budget_id` or to a new
/// budget of the body's budget fields (`max_budget`, `budget_duration`,
/// `rpm_limit`, ...).
pub async fn new(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (mut body, limits): (CustomerBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    let id = body.user_id.clone().ok_or_else(|| {
        invalid(
            "user_id",
            "is required: the id requests name the end user by",
        )
    })?;
    check_end_user_id("user_id", &id)?;
    let (spend, soft) = check_body(&body)?;
    let now = SystemTime::now();
    let mut record = EndUserRecord::new(id.clone(), now);
    apply(&mut record, &body);
    if let Some(spend) = spend {
        record.spend = spend;
    }
    if keys
        .store()
        .end_user(&id)
        .await
        .map_err(key_error)?
        .is_some()
    {
        return Err(invalid(
            "user_id",
            format!("a customer {id:?} already exists"),
        ));
    }
    match body.budget_id.clone().flatten() {
        Some(_) if sets_budget_fields(&body) => return Err(budget_id_and_fields()),
        Some(budget_id) => link(
            &mut record,
            existing_budget(&keys, &budget_id).await?,
            &keys,
            now,
        ),
        None if sets_budget_fields(&body) => link(
            &mut record,
            create(&keys, new_id("budget")?, &body.limits, soft.flatten(), now).await?,
            &keys,
            now,
        ),
        None => {}
    }
    if let Err(e) = keys.store().insert_end_user(&record).await {
        // Made the same end user first: the budget made for this one
        // would be linked to nothing.
        if sets_budget_fields(&body)
            && let Some(made) = &record.budget_id
        {
            let _ = keys.store().delete_budget(made).await;
        }
        return Err(key_error(e));
    }
    // It may be cached as not seen yet, or with an earlier life's record.
    keys.invalidate_end_user(&id);
    super::forget_spend(&state, crate::limits::Level::EndUser, &[id]).await;
    Ok(Json(shape::customer(&record)).into_response())
}

#[utoipa::path(
    post,
    path = "/customer/update",
    operation_id = "customer_update",
    tag = "customers",
    summary = "Change an end user",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Change an end user: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such end user or budget", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /customer/update`: changes the fields the body names. Budget
/// fields change the budget the end user is linked to (every end user
/// linked to it gets them), or make one when it has none.
pub async fn update(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (mut body, limits): (CustomerBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    let id = body
        .user_id
        .clone()
        .ok_or_else(|| invalid("user_id", "is required"))?;
    let (spend, soft) = check_body(&body)?;
    let mut record = existing(&keys, &id).await?;
    let read_at = record.updated_at;
    let now = SystemTime::now();
    apply(&mut record, &body);
    match body.budget_id.clone() {
        Some(Some(_)) if sets_budget_fields(&body) => return Err(budget_id_and_fields()),
        Some(Some(budget_id)) => link(
            &mut record,
            existing_budget(&keys, &budget_id).await?,
            &keys,
            now,
        ),
        Some(None) => {
            record.budget_id = None;
            record.budget = None;
            record.budget_reset_at = None;
        }
        None if sets_budget_fields(&body) => match record.budget.clone() {
            Some(mut budget) => {
                let period_changed = change(&keys, &mut budget, &body.limits, soft, now).await?;
                if period_changed {
                    link(&mut record, budget, &keys, now);
                } else {
                    record.budget = Some(budget);
                }
            }
            None => link(
                &mut record,
                create(&keys, new_id("budget")?, &body.limits, soft.flatten(), now).await?,
                &keys,
                now,
            ),
        },
        None => {}
    }
    record.updated_at = now;
    super::written(
        keys.store().update_end_user(&record, Some(read_at)).await,
        "end user",
    )?;
    super::set_spend(&state, &keys, SpendOwner::EndUser, &id, spend).await?;
    keys.invalidate_end_user(&id);
    let record = existing(&keys, &id).await?;
    Ok(Json(shape::customer(&record)).into_response())
}

#[utoipa::path(
    get,
    path = "/customer/info",
    operation_id = "customer_info",
    tag = "customers",
    summary = "An end user, its spend and its budget",
    params(("end_user_id" = String, Query, description = "The end user's id")),
    responses(
        (status = 200, description = "An end user, its spend and its budget: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such end user", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /customer/info?end_user_id=`.
pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let id = q
        .get("end_user_id")
        .or_else(|| q.get("user_id"))
        .ok_or_else(|| invalid("end_user_id", "is required"))?;
    let record = existing(&keys, id).await?;
    Ok(Json(shape::customer(&record)).into_response())
}

#[utoipa::path(
    get,
    path = "/customer/list",
    operation_id = "customer_list",
    tag = "customers",
    summary = "List end users",
    responses(
        (status = 200, description = "List end users: done", body = [super::super::openapi::JsonObject]),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /customer/list?page=&page_size=`: a JSON array, as LiteLLM
/// answers, oldest first, 100 to a page (the most a page holds).
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let page = page_of(&q, 100)?;
    let (found, total) = keys.store().list_end_users(page).await.map_err(key_error)?;
    let shown: Vec<_> = found.iter().map(shape::customer).collect();
    Ok(([("x-total-count", total.to_string())], Json(shown)).into_response())
}

/// The body of `/customer/delete`, `/customer/block` and `/customer/unblock`.
#[derive(Deserialize)]
struct NamedBody {
    user_ids: Option<Vec<String>>,
}

/// The end users a body names: at least one, at most the usual bound.
async fn named(state: &AppState, request: Request) -> Result<Vec<String>, ApiError> {
    let body: NamedBody = read_json(state, request).await?;
    let ids = body
        .user_ids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("user_ids", "name at least one end user"))?;
    for id in &ids {
        check_end_user_id("user_ids", id)?;
    }
    super::bounded_list("user_ids", ids)
}

#[utoipa::path(
    post,
    path = "/customer/delete",
    operation_id = "customer_delete",
    tag = "customers",
    summary = "Delete end users",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete end users: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "An end user named does not exist; none was deleted", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /customer/delete` with `{"user_ids": [...]}`: all of them, or
/// none when one does not exist.
pub async fn delete(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let ids = named(&state, request).await?;
    let mut missing = Vec::new();
    for id in &ids {
        if keys
            .store()
            .end_user(id)
            .await
            .map_err(key_error)?
            .is_none()
        {
            missing.push(id.as_str());
        }
    }
    if !missing.is_empty() {
        return Err(key_error(KeyError::NotFound {
            entity: "customer",
            id: missing.join(", "),
        }));
    }
    let deleted = keys
        .store()
        .delete_end_users(&ids)
        .await
        .map_err(key_error)?;
    for id in &ids {
        keys.invalidate_end_user(id);
    }
    super::forget_spend(&state, crate::limits::Level::EndUser, &ids).await;
    Ok(Json(json!({
        "deleted_customers": deleted,
        "message": format!("deleted the customers {}", ids.join(", ")),
    }))
    .into_response())
}

/// Blocks or unblocks the end users a body names, answering with their
/// records under `field`.
async fn set_blocked(
    state: AppState,
    request: Request,
    blocked: bool,
    field: &str,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let ids = named(&state, request).await?;
    keys.store()
        .set_end_users_blocked(&ids, blocked, SystemTime::now())
        .await
        .map_err(key_error)?;
    let mut shown = Vec::with_capacity(ids.len());
    for id in &ids {
        keys.invalidate_end_user(id);
        shown.push(shape::customer(&existing(&keys, id).await?));
    }
    Ok(Json(json!({ field: shown })).into_response())
}

#[utoipa::path(
    post,
    path = "/customer/block",
    operation_id = "customer_block",
    tag = "customers",
    summary = "Refuse end users' requests",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Refuse end users' requests: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /customer/block` with `{"user_ids": [...]}`: their requests are
/// refused from now on, end users not seen yet included.
pub async fn block(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    set_blocked(state, request, true, "blocked_users").await
}

#[utoipa::path(
    post,
    path = "/customer/unblock",
    operation_id = "customer_unblock",
    tag = "customers",
    summary = "Serve end users' requests again",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Serve end users' requests again: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /customer/unblock` with `{"user_ids": [...]}`.
pub async fn unblock(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    set_blocked(state, request, false, "unblocked_users").await
}
