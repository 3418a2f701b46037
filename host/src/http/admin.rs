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
use crate::reload::{AdminError, Control};

/// Largest admin request body.
const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

/// Why the admin API refuses a request before looking at it, if it does:
/// with a master key, the key must be presented; without one, only a
/// server listening on loopback only accepts admin requests.
pub(super) fn admission(
    master_key: Option<&crate::config::Secret>,
    loopback_only: bool,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    match master_key {
        Some(key) => check_key(headers, key),
        None if loopback_only => Ok(()),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "the admin API is disabled: no master key is configured (set general_settings.master_key \
             or CONCLAVE_MASTER_KEY) and the server does not listen on loopback only",
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
        state.loopback_only,
        request.headers(),
    ) {
        return e.into_response();
    }
    next.run(request).await
}

fn control(state: &AppState) -> Result<&std::sync::Arc<Control>, ApiError> {
    state.control.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            "the admin API is not available in this server",
            None,
            None,
        )
    })
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Rejected(message) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("the change was refused; the current version keeps serving: {message}"),
                None,
                Some("invalid_model"),
            ),
            AdminError::NotFound(message) => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                message,
                Some("model_name"),
                Some("model_not_found"),
            ),
            AdminError::Conflict(message) => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                message,
                Some("model_name"),
                Some("model_in_config"),
            ),
            AdminError::Failed(message) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the change was not applied: {message}"),
                None,
                Some("persist_failed"),
            ),
        }
    }
}

pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(control(&state)?.status_json()).into_response())
}

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

pub async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data = control(&state)?.registrations();
    Ok(Json(json!({"data": data})).into_response())
}

pub async fn register_model(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let bytes = super::routes::read_body(request, ADMIN_BODY_LIMIT).await?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}"), None))?;
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
