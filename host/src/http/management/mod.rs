//! The management API in LiteLLM's paths and JSON shapes: keys, users,
//! teams, end users (customers) and their budgets, and spend. Every route needs the master key or the key of a user
//! whose `user_role` is `proxy_admin` (or, for the routes that only read,
//! `proxy_admin_viewer`); `GET /key/info` also answers a key
//! asking about itself or its user's keys, and an `internal_user`'s key
//! manages that user's own keys ([`key_scope`]). The routes exist only when the key store is open
//! (a master key is configured); otherwise they answer 403.

// Visible to the OpenAPI document, which lists the handlers.
pub(super) mod activity;
// Visible to the OpenAPI document and the application's assembly.
pub(super) mod audit;
mod body;
// Visible to the OpenAPI document, which lists the handlers.
pub(super) mod budgets;
pub(super) mod customers;
mod key_scope;
// Visible to the OpenAPI document, which lists the handlers.
pub(super) mod keys;
mod shape;
pub(super) mod spend;
pub(super) mod spend_calculate;
pub(super) mod spend_reset;
pub(super) mod teams;
mod unenforced;
pub(super) mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::{is_master, presented_key};
use super::error::ApiError;
use crate::keys::{KeyError, Keys, Principal};

/// The management routes, to be merged into the application.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/key/generate", post(keys::generate))
        .route("/key/update", post(keys::update))
        .route("/key/delete", post(keys::delete))
        .route("/key/info", get(keys::info))
        .route("/key/health", post(keys::health))
        .route("/key/list", get(keys::list))
        .route("/key/block", post(keys::block))
        .route("/key/unblock", post(keys::unblock))
        .route("/key/regenerate", post(keys::regenerate))
        .route("/key/{key}/regenerate", post(keys::regenerate_path))
        .route("/key/{key}/reset_spend", post(spend_reset::reset_key))
        .route("/v2/key/info", post(keys::info_many))
        .route("/user/new", post(users::new))
        .route("/user/update", post(users::update))
        .route("/user/delete", post(users::delete))
        .route("/user/info", get(users::info))
        .route("/user/list", get(users::list))
        .route("/user/available_roles", get(users::available_roles))
        .route("/user/daily/activity", get(activity::user_activity))
        .route("/team/new", post(teams::new))
        .route("/team/update", post(teams::update))
        .route("/team/delete", post(teams::delete))
        .route("/team/block", post(teams::block))
        .route("/team/unblock", post(teams::unblock))
        .route("/team/member_add", post(teams::member_add))
        .route("/team/bulk_member_add", post(teams::bulk_member_add))
        .route("/team/member_delete", post(teams::member_delete))
        .route("/team/member_update", post(teams::member_update))
        .route("/team/model/add", post(teams::model_add))
        .route("/team/model/delete", post(teams::model_delete))
        .route("/team/info", get(teams::info))
        .route("/team/list", get(teams::list))
        .route("/team/daily/activity", get(activity::team_activity))
        .merge(customer_routes("/customer"))
        .merge(customer_routes("/end_user"))
        .route("/budget/new", post(budgets::new))
        .route("/budget/update", post(budgets::update))
        .route("/budget/info", post(budgets::info))
        .route("/budget/list", get(budgets::list))
        .route("/budget/settings", get(budgets::settings))
        .route("/budget/delete", post(budgets::delete))
        .route("/spend/logs", get(spend::logs))
        .route("/spend/keys", get(spend::keys_by_spend))
        .route("/spend/users", get(spend::users_by_spend))
        .route("/spend/tags", get(spend::tags))
        .route("/global/spend", get(spend::global))
        .route("/global/spend/keys", get(spend::global_keys))
        .route("/global/spend/models", get(spend::global_models))
        .route("/global/spend/teams", get(spend::global_teams))
        .route("/global/spend/tags", get(spend::global_tags))
        .route("/global/spend/report", get(spend::report))
        .route("/global/spend/logs", get(activity::global_logs))
        .route("/global/spend/reset", post(spend_reset::reset_global))
        .route("/spend/calculate", post(spend_calculate::calculate))
        .route("/audit", get(audit::routes::list))
        .route("/audit/{id}", get(audit::routes::entry))
}

/// The end-user routes under `prefix`: LiteLLM's `/customer/*`, and its
/// older `/end_user/*` names for them.
fn customer_routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/new"), post(customers::new))
        .route(&format!("{prefix}/update"), post(customers::update))
        .route(&format!("{prefix}/delete"), post(customers::delete))
        .route(&format!("{prefix}/info"), get(customers::info))
        .route(&format!("{prefix}/list"), get(customers::list))
        .route(&format!("{prefix}/block"), post(customers::block))
        .route(&format!("{prefix}/unblock"), post(customers::unblock))
}

/// Who is using the management API.
pub(crate) enum Manager {
    /// The master key.
    Master,
    /// A virtual key; `admin` when its user is a `proxy_admin`.
    Key {
        principal: Arc<Principal>,
        admin: bool,
    },
}

impl Manager {
    /// Whether the caller may read every record: an administrator, or a
    /// `proxy_admin_viewer` user's key.
    fn reads_all(&self) -> bool {
        match self {
            Manager::Master => true,
            Manager::Key { principal, admin } => *admin || principal.is_viewer(),
        }
    }

    /// Refuses anyone who may not read every record.
    fn require_reader(&self) -> Result<(), ApiError> {
        if self.reads_all() {
            return Ok(());
        }
        Err(not_admin("proxy_admin or proxy_admin_viewer"))
    }

    /// Refuses anyone who is not the master key or an admin user's key.
    fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Manager::Master | Manager::Key { admin: true, .. } => Ok(()),
            Manager::Key { .. } => Err(not_admin("proxy_admin")),
        }
    }
}

/// 403 `not_admin`: the route needs the master key or a key of a user with
/// one of `roles`.
fn not_admin(roles: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!("this route needs the master key or the key of a user with user_role {roles}"),
        None,
        Some("not_admin"),
    )
}

/// Admits the key of a `proxy_admin` user (the master key is checked
/// first by the caller): the admin API's routes (`/model/new`,
/// `/cache/flushall`, ...) are open to them in LiteLLM, and scripts use
/// their keys there. 401 for a key that is not valid, 403 for another
/// user's key or with no key store.
pub(super) async fn require_admin_key(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    authenticate(state, headers).await?.1.require_admin()
}

/// The key store and the caller, or why the request is refused: 403 when
/// there is no store (no master key), 401 for a missing, unknown, blocked
/// or expired key.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(Keys, Manager), ApiError> {
    let Some(keys) = state.ops.keys.clone() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "virtual keys are off: they need a master key (general_settings.master_key) and the key store it opens",
            None,
            Some("keys_disabled"),
        ));
    };
    let Some(presented) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(ApiError::unauthorized(
            "missing API key: send Authorization: Bearer <key> or x-api-key",
        ));
    };
    let gateway = state.gateway();
    if let Some(master) = &gateway.master_key
        && is_master(presented, master)
    {
        return Ok((keys, Manager::Master));
    }
    let principal = keys
        .resolve(presented)
        .await
        .map_err(key_error)?
        .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
    if principal.key.blocked {
        return Err(ApiError::unauthorized("this key is blocked"));
    }
    if principal.key.is_expired(std::time::SystemTime::now()) {
        return Err(ApiError::unauthorized("this key has expired"));
    }
    let admin = principal.is_admin();
    Ok((keys, Manager::Key { principal, admin }))
}

/// Refuses a virtual key held to its own `allowed_routes` when it would
/// make a key, give one a new value or change a key's route list
/// (`what`): any of these could hand its holder a key that calls routes
/// beyond its own. The key cache answers the lookup.
pub(super) async fn refuse_route_limited(
    state: &AppState,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), ApiError> {
    let (_, manager) = authenticate(state, headers).await?;
    match manager {
        Manager::Key { principal, .. } if !principal.key.allowed_routes.is_empty() => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!(
                    "a key limited by its own allowed_routes may not {what}: the master key or an \
                     unlimited administrator's key may"
                ),
                None,
                Some("route_limited_key"),
            ))
        }
        _ => Ok(()),
    }
}

/// [`authenticate`], then [`Manager::require_admin`].
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Keys, ApiError> {
    let (keys, manager) = authenticate(state, headers).await?;
    manager.require_admin()?;
    Ok(keys)
}

/// [`authenticate`], then [`Manager::require_reader`]: for the routes
/// that only read.
async fn reader(state: &AppState, headers: &HeaderMap) -> Result<Keys, ApiError> {
    let (keys, manager) = authenticate(state, headers).await?;
    manager.require_reader()?;
    Ok(keys)
}

/// Reads a JSON body as `T`; a field of the wrong type is a 400 naming it.
async fn read_json<T: DeserializeOwned>(state: &AppState, request: Request) -> Result<T, ApiError> {
    let value = read_object(state, request).await?;
    typed(value)
}

/// Reads a JSON body as `T` and the limit fields beside it (each read on
/// its own, so an error names the exact field). A restriction conclave
/// does not enforce is refused ([`unenforced`]).
async fn read_with_limits<T: DeserializeOwned + unenforced::Restricting>(
    state: &AppState,
    request: Request,
) -> Result<(T, body::LimitsPatch), ApiError> {
    let value = read_object(state, request).await?;
    with_limits(value)
}

/// A body read as `T` and the limit fields beside it; see [`read_with_limits`].
fn with_limits<T: DeserializeOwned + unenforced::Restricting>(
    value: serde_json::Value,
) -> Result<(T, body::LimitsPatch), ApiError> {
    unenforced::refuse(&value, T::UNENFORCED)?;
    Ok((typed(value.clone())?, typed(value)?))
}

/// A body over a ceiling of the config's rules for new keys, as a 400
/// naming the field.
fn over_bound(e: crate::keys::OverBound) -> ApiError {
    invalid(e.field, e.message)
}

/// The body as a JSON object (an empty body is `{}`).
async fn read_object(state: &AppState, request: Request) -> Result<serde_json::Value, ApiError> {
    // The limit every request body has (`max_request_size_mb`), which the
    // error names.
    let gateway = state.gateway();
    let bytes = super::routes::read_body(request, gateway.body_limit, gateway.body_timeout).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    match serde_json::from_slice(&bytes) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object", None)),
        Err(e) => Err(ApiError::invalid(
            format!(
                "the body is not valid JSON: {}",
                crate::openai::describe_json_error(&e)
            ),
            None,
        )),
    }
}

/// `value` as `T`; an error names the field's path.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("the body is not usable: {inner}"), None)
        } else {
            ApiError::invalid(format!("{path}: {inner}"), Some(&path))
        }
    })
}

/// Sets a key's, user's or team's spend when the body gave one, in the
/// store and in the limit counters, so a budget given back (`spend: 0`)
/// admits the next request at once.
pub(super) async fn set_spend(
    state: &AppState,
    keys: &Keys,
    owner: crate::keys::store::SpendOwner,
    id: &str,
    spend: Option<f64>,
) -> Result<(), ApiError> {
    let Some(spend) = spend else { return Ok(()) };
    keys.store()
        .set_spend(owner, id, spend)
        .await
        .map_err(key_error)?;
    use crate::keys::store::SpendOwner;
    use crate::limits::Level;
    let level = match owner {
        SpendOwner::Key => Level::Key,
        SpendOwner::User => Level::User,
        SpendOwner::Team => Level::Team,
        SpendOwner::EndUser => Level::EndUser,
    };
    set_counter(state, &crate::keys::scopes::counter_name(level, id), spend).await
}

/// Sets the spend of the limit counter `name` (after the store took the
/// change); 503 when the shared counters do not take it, and sending the
/// request again finishes the change.
pub(super) async fn set_counter(state: &AppState, name: &str, spend: f64) -> Result<(), ApiError> {
    state.ops.limiter.set_spent(name, spend).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            format!(
                "the spend was saved, but the shared limit counters did not take it ({e}); \
                 send the request again"
            ),
            None,
            Some("shared_state_unavailable"),
        )
    })
}

/// Zeroes the limit counters of deleted keys, users or teams, so that one
/// made again with the same id starts from nothing, as its new record does.
/// A counter Redis does not take now is logged: the delete itself stands.
pub(super) async fn forget_spend(state: &AppState, level: crate::limits::Level, ids: &[String]) {
    for id in ids {
        let scope = crate::keys::scopes::counter_name(level, id);
        if let Err(e) = state.ops.limiter.set_spent(&scope, 0.0).await {
            tracing::warn!(error = %e, "a deleted entity's shared spend counter was not reset");
        }
    }
}

/// The outcome of a conditional write of a `what` (see
/// `Store::update_key`): 409 when another request changed or deleted it
/// between this one's read and its write, so that neither change is lost
/// without a word; the client sends its change again.
fn written(outcome: Result<bool, KeyError>, what: &str) -> Result<(), ApiError> {
    match outcome.map_err(key_error)? {
        true => Ok(()),
        false => Err(changed_meanwhile(what)),
    }
}

/// The 409 of [`written`].
fn changed_meanwhile(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict_error",
        format!(
            "the {what} was changed by another request while this one was applied; \
             nothing was written: send the change again"
        ),
        None,
        Some("changed_meanwhile"),
    )
}

/// A store error as an API error: unknown entities 404, refused values 400
/// naming the field, an unreachable store 503.
pub(crate) fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound { entity, id } => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("{entity} not found: {id}"),
            Some(entity),
            Some(&format!("{entity}_not_found")),
        ),
        KeyError::Invalid { field, message } => {
            ApiError::invalid(format!("{field}: {message}"), Some(&field))
        }
        KeyError::Unstorable => ApiError::invalid(e.to_string(), None),
        KeyError::Store(m) => {
            tracing::warn!("key store: {m}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "the key store is unavailable; try again",
                None,
                Some("store_unavailable"),
            )
        }
        KeyError::Migration(m) | KeyError::Config(m) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            m,
            None,
            Some("store_error"),
        ),
    }
}

/// Most objects one delete names: bounded so that a request cannot make
/// the store look up objects without end.
const MAX_NAMED: usize = 1000;

/// `names` when there are at most [`MAX_NAMED`] of them, else a 400 naming `field`.
fn bounded_list<T>(field: &str, names: Vec<T>) -> Result<Vec<T>, ApiError> {
    if names.len() > MAX_NAMED {
        return Err(invalid(
            field,
            format!(
                "names {} objects; one request may name at most {MAX_NAMED}",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// 400 naming `field`.
fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{field}: {message}"), Some(field))
}
