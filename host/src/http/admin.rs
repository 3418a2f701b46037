//! The admin API: `/admin/status`, `/admin/reload` and runtime models under
//! `/admin/models`. It needs the master key; without one it is disabled
//! unless the server listens on loopback only.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::auth::check_key;
use super::error::ApiError;
use crate::admin::Registration;
use crate::reload::Control;

/// Largest admin request body.
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

/// Why the admin API refuses a request before looking at it, if it does:
/// with a master key, the key must be presented; without one, the API is
/// off unless the config opts in to keyless access on a server listening on
/// loopback only (`admin_without_key_on_loopback`).
pub(super) fn admission(
    master_key: Option<&crate::config::Secret>,
    keyless_on_loopback: bool,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    match master_key {
        Some(key) => check_key(headers, key),
        None if keyless_on_loopback => Ok(()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "the admin API is disabled: no master key is configured (set general_settings.master_key \
             or CONCLAVE_MASTER_KEY); on a server listening on loopback only, \
             general_settings.admin_without_key_on_loopback: true opens it without a key",
            None,
            Some("admin_disabled"),
        )),
    }
}

pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let gateway = state.gateway();
    if let Err(e) = admission(
        gateway.master_key.as_ref(),
        state.loopback_only && gateway.admin_without_key_on_loopback,
        request.headers(),
    ) {
        return e.into_response();
    }
    next.run(request).await
}

fn control(state: &AppState) -> Result<&std::sync::Arc<Control>, ApiError> {
    Ok(&state.control)
}

#[utoipa::path(
    get,
    path = "/admin/status",
    operation_id = "admin_status",
    tag = "admin",
    summary = "The loaded version, reloads and runtime models",
    responses(
        (status = 200, description = "The status report", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(control(&state)?.status_json()).into_response())
}

#[utoipa::path(
    post,
    path = "/admin/reload",
    operation_id = "admin_reload",
    tag = "admin",
    summary = "Reload the config now",
    responses(
        (status = 200, description = "The new version serves", body = super::openapi::JsonObject),
        (status = 422, description = "The config was refused; the previous version keeps serving", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let outcome = control(&state)?.reload("admin").await;
    if outcome.ok {
        Ok(Json(outcome.to_json()).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            format!(
                "reload failed; the previous version keeps serving: {}",
                outcome.message
            ),
            None,
            Some("reload_failed"),
        ))
    }
}

#[utoipa::path(
    get,
    path = "/admin/models",
    operation_id = "admin_list_models",
    tag = "admin",
    summary = "Runtime model registrations",
    responses(
        (status = 200, description = "The registrations", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data = control(&state)?.registrations();
    Ok(Json(json!({"data": data})).into_response())
}

#[utoipa::path(
    post,
    path = "/admin/models",
    operation_id = "admin_register_model",
    tag = "admin",
    summary = "Register (or replace) a runtime model deployment",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Replaced an existing registration (201 when new)", body = super::openapi::JsonObject),
        (status = 201, description = "Registered", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid registration", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn register_model(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let timeout = state.gateway().body_timeout;
    let bytes = super::routes::read_body(request, ADMIN_BODY_LIMIT, timeout).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            format!(
                "the body is not valid JSON: {}",
                crate::openai::describe_json_error(&e)
            ),
            None,
        )
    })?;
    let registration = Registration::from_json(&body)
        .map_err(|e| ApiError::invalid(e.message, e.param.as_deref()))?;
    let replaced = control.register(registration.clone()).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = Json(json!({
        "model_name": registration.model_name,
        "model_id": registration.deployment_id(),
        "replaced": replaced,
        "registration": registration.to_json(false),
    }))
    .into_response();
    *response.status_mut() = status;
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/admin/models/{model_name}",
    operation_id = "admin_delete_model",
    tag = "admin",
    summary = "Delete a runtime model registration",
    params(("model_name" = String, Path, description = "The model name; may contain slashes")),
    responses(
        (status = 200, description = "Deleted", body = super::openapi::JsonObject),
        (status = 404, description = "No such runtime model", body = super::openapi::ErrorResponse),
        (status = 409, description = "The config file owns this model", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn delete_model(
    State(state): State<AppState>,
    Path(model_name): Path<String>,
) -> Result<Response, ApiError> {
    control(&state)?.unregister(&model_name).await?;
    Ok(Json(json!({"deleted": model_name})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn without_a_master_key_only_loopback_admits() {
        let none = http::HeaderMap::new();
        assert!(admission(None, true, &none).is_ok());
        let refused = admission(None, false, &none).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.body.error.message.contains("master key"));
    }

    #[test]
    fn with_a_master_key_it_is_required_even_on_loopback() {
        let key = Secret::new("sk-admin");
        let none = http::HeaderMap::new();
        assert_eq!(
            admission(Some(&key), true, &none).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let mut good = http::HeaderMap::new();
        good.insert("authorization", "Bearer sk-admin".parse().unwrap());
        assert!(admission(Some(&key), false, &good).is_ok());
        let mut bad = http::HeaderMap::new();
        bad.insert("authorization", "Bearer sk-nope".parse().unwrap());
        assert!(admission(Some(&key), true, &bad).is_err());
    }
}
