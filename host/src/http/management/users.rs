//! `/user/*`: the people (or services) keys belong to.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::body::{UserBody, check_id, expiry, metadata};
use super::keys::page_of;
use super::{
    ApiError, AppState, Manager, admin, authenticate, invalid, key_error, read_json,
    read_with_limits, reader, shape,
};
use crate::keys::reset::ResetClock;
use crate::keys::store::{KeyFilter, ListPage, SpendOwner, UserFilter};
use crate::keys::{KeyError, KeyRecord, Keys, Limits, PROXY_BUDGET_USER, UserRecord, token};

/// The roles LiteLLM defines; `proxy_admin` may use the management API.
const ROLES: &[&str] = &[
    "proxy_admin",
    "proxy_admin_viewer",
    "internal_user",
    "internal_user_viewer",
    "team",
    "customer",
];

/// The id of the one user with `email`, if there is one; `field` names the
/// email in the error when several users share it.
pub(super) async fn user_by_email(
    keys: &Keys,
    email: &str,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match users_with_email(keys, email).await?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.user_id.clone())),
        _ => Err(invalid(
            field,
            "is shared by several users: name the member by user_id",
        )),
    }
}

/// Refuses `email` when another user than `user_id` has it (in any case):
/// a shared email could no longer name one member or user, as
/// `/team/member_add` and `/user/update` name them.
async fn check_email_free(keys: &Keys, email: &str, user_id: &str) -> Result<(), ApiError> {
    let found = users_with_email(keys, email).await?;
    match found.iter().find(|u| u.user_id != user_id) {
        Some(other) => Err(invalid(
            "user_email",
            format!("already belongs to user {}", other.user_id),
        )),
        None => Ok(()),
    }
}

/// Up to two users with `email`, in any case: enough to tell none, one and
/// several apart.
async fn users_with_email(keys: &Keys, email: &str) -> Result<Vec<UserRecord>, ApiError> {
    let filter = UserFilter {
        user_email: Some(email.to_owned()),
        ..UserFilter::default()
    };
    let (found, _) = keys
        .store()
        .list_users(&filter, ListPage { page: 1, size: 2 })
        .await
        .map_err(key_error)?;
    Ok(found)
}

/// The user a request names by `user_id`, or by `user_email` alone (LiteLLM
/// takes either): 404 when no user has that email, 400 when neither is given.
pub(super) async fn named_user(
    keys: &Keys,
    user_id: Option<String>,
    user_email: Option<String>,
) -> Result<String, ApiError> {
    match (user_id, user_email) {
        (Some(id), _) => Ok(id),
        (None, Some(email)) => user_by_email(keys, &email, "user_email")
            .await?
            .ok_or_else(|| {
                key_error(KeyError::NotFound {
                    entity: "user",
                    id: format!("user_email {email}"),
                })
            }),
        (None, None) => Err(invalid("user_id", "is required (or user_email)")),
    }
}

/// A fresh id for a user or team the caller did not name.
pub(super) fn new_id(prefix: &str) -> Result<String, ApiError> {
    let value = token::generate().map_err(key_error)?;
    Ok(format!("{prefix}-{}", &value[3..19]))
}

async fn existing(keys: &Keys, user_id: &str) -> Result<UserRecord, ApiError> {
    keys.store()
        .user(user_id)
        .await
        .map_err(key_error)?
        .ok_or_else(|| {
            key_error(KeyError::NotFound {
                entity: "user",
                id: user_id.into(),
            })
        })
}

fn apply(
    u: &mut UserRecord,
    b: &UserBody,
    now: SystemTime,
    clock: &ResetClock,
) -> Result<(), ApiError> {
    if let Some(role) = &b.user_role {
        if let Some(r) = role
            && !ROLES.contains(&r.as_str())
        {
            return Err(invalid(
                "user_role",
                format!("must be one of {}", ROLES.join(", ")),
            ));
        }
        u.user_role = role.clone();
    }
    if let Some(email) = &b.user_email {
        if let Some(email) = email {
            check_id("user_email", email)?;
        }
        u.user_email = email.clone();
    }
    // `null` clears the list, as it clears the other fields.
    if let Some(models) = &b.models {
        u.models = models.clone().unwrap_or_default();
        super::body::check_entries("models", u.models.iter())?;
    }
    if let Some(m) = &b.metadata {
        u.metadata = metadata(m.clone().unwrap_or_default())?;
    }
    if let Some(spend) = b.limits.spend()? {
        u.spend = spend;
    }
    b.limits
        .apply(&mut u.limits, &mut u.budget_reset_at, now, clock)?;
    u.updated_at = now;
    Ok(())
}

#[utoipa::path(
    post,
    path = "/user/new",
    operation_id = "user_new",
    tag = "users",
    summary = "Create a user",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Create a user: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /user/new`: a user and (unless `auto_create_key: false`) a key for it.
pub async fn new(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let headers = request.headers().clone();
    let (mut body, limits): (UserBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    if body.auto_create_key.unwrap_or(true) {
        super::refuse_route_limited(&state, &headers, "make a user's first key").await?;
    }
    let user_id = match &body.user_id {
        Some(id) => {
            check_id("user_id", id)?;
            id.clone()
        }
        None => new_id("user")?,
    };
    if body.auto_create_key.unwrap_or(true) {
        super::keys::refuse_reserved_owner(&user_id)?;
    }
    let now = SystemTime::now();
    let mut user = UserRecord {
        user_id: user_id.clone(),
        user_role: None,
        user_email: None,
        models: Vec::new(),
        limits: Limits::default(),
        spend: 0.0,
        budget_reset_at: None,
        metadata: json!({}),
        teams: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    apply(&mut user, &body, now, &keys.settings().reset_clock)?;
    if let Some(email) = &user.user_email {
        check_email_free(&keys, email, &user_id).await?;
    }
    let mut teams = body.teams.clone().unwrap_or_default();
    if let Some(team) = &body.team_id
        && !teams.contains(team)
    {
        teams.push(team.clone());
    }
    if let Some(alias) = &body.key_alias {
        check_id("key_alias", alias)?;
        // A taken alias refuses the whole request, not only its key.
        super::keys::refuse_taken_alias(&keys, alias, None).await?;
    }
    let expires = expiry(body.duration.as_deref(), now)?;
    for team in &teams {
        if keys.store().team(team).await.map_err(key_error)?.is_none() {
            return Err(key_error(KeyError::NotFound {
                entity: "team",
                id: team.clone(),
            }));
        }
    }
    keys.store().insert_user(&user).await.map_err(key_error)?;
    for team in &teams {
        keys.store()
            .add_member(team, &user_id, "user")
            .await
            .map_err(key_error)?;
        user.teams.push(team.clone());
    }
    let mut out = shape::user(&user);
    if body.auto_create_key.unwrap_or(true) {
        let value = token::generate().map_err(key_error)?;
        let key = KeyRecord {
            token_hash: token::hash(&value),
            key_alias: body.key_alias.clone(),
            key_name: token::display_name(&value),
            user_id: Some(user_id),
            team_id: body.team_id.clone(),
            models: Vec::new(),
            aliases: Default::default(),
            limits: Limits::default(),
            spend: 0.0,
            model_spend: Default::default(),
            budget_reset_at: None,
            expires,
            blocked: false,
            metadata: json!({}),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            allowed_routes: Vec::new(),
        };
        keys.store().insert_key(&key).await.map_err(key_error)?;
        if let Some(o) = out.as_object_mut() {
            o.insert("key".into(), json!(value));
            o.insert("key_name".into(), json!(key.key_name));
            o.insert("token".into(), json!(key.token_hash));
            o.insert("expires".into(), shape::time(key.expires));
            o.insert("key_alias".into(), json!(key.key_alias));
        }
    }
    Ok(Json(out).into_response())
}

#[utoipa::path(
    post,
    path = "/user/update",
    operation_id = "user_update",
    tag = "users",
    summary = "Change a user",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Change a user: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /user/update`: changes the fields the body names (`user_id`, or
/// LiteLLM's alternative `user_email`, says which).
pub async fn update(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let headers = request.headers().clone();
    let (mut body, limits): (UserBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    if body.user_role.is_some() {
        // A role reaches every key of the user, route lists or not.
        super::refuse_route_limited(&state, &headers, "change a user's role").await?;
    }
    let user_id = named_user(
        &keys,
        body.user_id.clone(),
        body.user_email.clone().flatten(),
    )
    .await?;
    if user_id == PROXY_BUDGET_USER && state.gateway().proxy_budget.is_some() {
        config_owned_fields(&body.limits)?;
    }
    let mut user = existing(&keys, &user_id).await?;
    let read_at = user.updated_at;
    apply(
        &mut user,
        &body,
        SystemTime::now(),
        &keys.settings().reset_clock,
    )?;
    if let Some(Some(email)) = &body.user_email
        && body.user_id.is_some()
    {
        check_email_free(&keys, email, &user_id).await?;
    }
    super::written(keys.store().update_user(&user, Some(read_at)).await, "user")?;
    super::set_spend(
        &state,
        &keys,
        SpendOwner::User,
        &user_id,
        body.limits.spend()?,
    )
    .await?;
    keys.invalidate_user(&user_id);
    if user_id == PROXY_BUDGET_USER {
        // The budget's check reads the record every few seconds: a spend
        // set now holds from the next request.
        state
            .ops
            .proxy_budget
            .refresh(&keys)
            .await
            .map_err(key_error)?;
    }
    Ok(Json(shape::with_data(shape::user(&user))).into_response())
}

/// The reserved user's budget is the config's (`litellm_settings`): an
/// update may set its spend, not its cap or period.
fn config_owned_fields(limits: &super::body::LimitsPatch) -> Result<(), ApiError> {
    for (field, set) in [
        ("max_budget", limits.max_budget.is_some()),
        ("budget_duration", limits.budget_duration.is_some()),
    ] {
        if set {
            return Err(invalid(
                field,
                format!(
                    "{PROXY_BUDGET_USER} keeps the gateway's budget, which the config sets: \
                     change litellm_settings.{field} instead (its spend may be set here)"
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct DeleteBody {
    user_ids: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/user/delete",
    operation_id = "user_delete",
    tag = "users",
    summary = "Delete users",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete users: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /user/delete` with `{"user_ids": [...]}`: the users, their
/// memberships and their keys.
pub async fn delete(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: DeleteBody = read_json(&state, request).await?;
    let ids = body
        .user_ids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("user_ids", "name at least one user"))?;
    let ids = super::bounded_list("user_ids", ids)?;
    if state.gateway().proxy_budget.is_some() && ids.iter().any(|id| id == PROXY_BUDGET_USER) {
        return Err(invalid(
            "user_ids",
            format!(
                "{PROXY_BUDGET_USER} keeps the gateway's spend while litellm_settings.max_budget \
                 is set; remove the budget from the config first"
            ),
        ));
    }
    let mut deleted = Vec::new();
    for id in &ids {
        let hashes = keys
            .store()
            .key_hashes_of(crate::keys::store::Owner::User, id)
            .await
            .map_err(key_error)?;
        if keys.store().delete_user(id).await.map_err(key_error)? {
            deleted.push(id.clone());
        }
        for h in &hashes {
            keys.invalidate(h);
        }
        keys.invalidate_user(id);
        super::forget_spend(&state, crate::limits::Level::Key, &hashes).await;
    }
    super::forget_spend(&state, crate::limits::Level::User, &deleted).await;
    if deleted.is_empty() {
        return Err(key_error(KeyError::NotFound {
            entity: "user",
            id: ids.join(", "),
        }));
    }
    Ok(Json(json!({"deleted_users": deleted})).into_response())
}

/// The roles a user may be given in the management API, with what each
/// may do, as `/user/available_roles` shows them (`team` and `customer`
/// are LiteLLM's roles for records, not for people, and are left out as
/// LiteLLM leaves them out).
const ROLE_DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "proxy_admin",
        "every management and admin route, on every record",
        "Admin (All Permissions)",
    ),
    (
        "proxy_admin_viewer",
        "reads every key, user, team and spend record; changes nothing",
        "Admin (View Only)",
    ),
    (
        "internal_user",
        "makes, changes and deletes their own keys; reads their own spend",
        "Internal User (Create/Delete/View)",
    ),
    (
        "internal_user_viewer",
        "reads their own keys and spend",
        "Internal User (View Only)",
    ),
];

#[utoipa::path(
    get,
    path = "/user/available_roles",
    operation_id = "user_available_roles",
    tag = "users",
    summary = "The roles a user may have",
    responses(
        (status = 200, description = "Each role by name, with its description and ui_label", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /user/available_roles`: the roles `/user/new` takes for people,
/// for admin tools that offer them in a list. Any valid key may read it.
pub async fn available_roles(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    authenticate(&state, request.headers()).await?;
    let roles: serde_json::Map<String, serde_json::Value> = ROLE_DESCRIPTIONS
        .iter()
        .map(|(role, description, label)| {
            (
                (*role).to_owned(),
                json!({"description": description, "ui_label": label}),
            )
        })
        .collect();
    Ok(Json(roles).into_response())
}

#[utoipa::path(
    get,
    path = "/user/info",
    operation_id = "user_info",
    tag = "users",
    summary = "A user with their keys and spend",
    responses(
        (status = 200, description = "A user with their keys and spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /user/info?user_id=`: the user, its keys and its teams. A key may
/// read its own user (without `user_id`, the caller's own).
pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let asked = q.get("user_id").cloned();
    let user_id = match (&manager, asked) {
        (Manager::Key { principal, .. }, asked) => {
            let own = principal.key.user_id.clone();
            match asked {
                Some(a) if manager.reads_all() || own.as_deref() == Some(a.as_str()) => a,
                Some(_) => {
                    return Err(ApiError::new(
                        http::StatusCode::FORBIDDEN,
                        "permission_error",
                        "a key may read only its own user",
                        Some("user_id"),
                        Some("not_own_user"),
                    ));
                }
                None => own.ok_or_else(|| invalid("user_id", "this key belongs to no user"))?,
            }
        }
        (Manager::Master, Some(a)) => a,
        (Manager::Master, None) => {
            return Err(invalid("user_id", "is required with the master key"));
        }
    };
    let user = existing(&keys, &user_id).await?;
    let filter = KeyFilter {
        user_id: Some(user_id.clone()),
        ..KeyFilter::default()
    };
    let (owned, _) = keys
        .store()
        .list_keys(
            &filter,
            ListPage {
                page: 1,
                size: 1000,
            },
        )
        .await
        .map_err(key_error)?;
    let mut teams = Vec::new();
    for t in &user.teams {
        if let Some(team) = keys.store().team(t).await.map_err(key_error)? {
            teams.push(super::teams::shown(&keys, &team).await?);
        }
    }
    Ok(Json(json!({
        "user_id": user_id,
        "user_info": shape::user(&user),
        "keys": owned.iter().map(shape::key).collect::<Vec<_>>(),
        "teams": teams,
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/user/list",
    operation_id = "user_list",
    tag = "users",
    summary = "List users",
    responses(
        (status = 200, description = "List users: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /user/list?page=&page_size=`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let page = page_of(&q, 25)?;
    let filter = UserFilter {
        user_ids: q
            .get("user_ids")
            .map(|ids| {
                ids.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        role: q.get("role").cloned(),
        user_email: q.get("user_email").cloned(),
        team_id: q.get("team").or_else(|| q.get("team_id")).cloned(),
        ..UserFilter::default()
    };
    let (users, total) = keys
        .store()
        .list_users(&filter, page)
        .await
        .map_err(key_error)?;
    Ok(Json(json!({
        "users": users.iter().map(shape::user).collect::<Vec<_>>(),
        "total": total,
        "page": page.page,
        "page_size": page.size,
        "total_pages": total.div_ceil(u64::from(page.size)),
    }))
    .into_response())
}
