//! LiteLLM's cache management routes, master key only (the admin API's
//! rule): `GET /cache/ping`, `POST /cache/flushall`, `POST /cache/delete`
//! (`{"keys": [...]}`) and `DELETE /cache/{key}`, where a key is the
//! `x-conclave-cache-key` an answer carried.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::cache::Cache;

/// Largest `POST /cache/delete` body.
const DELETE_BODY_LIMIT: usize = 256 * 1024;
/// Most keys one `POST /cache/delete` may name.
const MAX_DELETE_KEYS: usize = 1000;

fn current(state: &AppState) -> Result<Arc<Cache>, ApiError> {
    let gateway = state.gateway();
    state
        .cache
        .for_settings(gateway.cache.as_ref())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                "the response cache is off (litellm_settings.cache: true turns it on)",
                None,
                Some("cache_disabled"),
            )
        })
}

fn backend_error(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable_error",
        message,
        None,
        Some("cache_unavailable"),
    )
}

#[utoipa::path(
    get,
    path = "/cache/ping",
    operation_id = "cache_ping",
    tag = "cache",
    summary = "Whether the response cache answers",
    responses(
        (status = 200, description = "Whether the response cache answers: done", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /cache/ping`: whether the backend answers, and its size or round trip.
pub async fn ping(State(state): State<AppState>) -> Response {
    let result = async {
        let cache = current(&state)?;
        cache.ping().await.map_err(backend_error)
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/cache/flushall",
    operation_id = "cache_flush_all",
    tag = "cache",
    summary = "Empty the response cache",
    responses(
        (status = 200, description = "Empty the response cache: done", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /cache/flushall`: deletes every entry of this gateway's namespace.
pub async fn flush_all(State(state): State<AppState>) -> Response {
    let result = async {
        let cache = current(&state)?;
        cache.clear().await.map_err(backend_error)
    }
    .await;
    match result {
        Ok(()) => Json(json!({"status": "success"})).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    delete,
    path = "/cache/{key}",
    operation_id = "cache_delete_one",
    tag = "cache",
    summary = "Delete one cache entry",
    params(("key" = String, Path, description = "The x-conclave-cache-key an answer carried")),
    responses(
        (status = 200, description = "Delete one cache entry: done", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `DELETE /cache/{key}`: deletes one entry.
pub async fn delete_one(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    match delete_keys(&state, &[key]).await {
        Ok(0) => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "no cache entry has this key",
            Some("key"),
            Some("cache_key_not_found"),
        )
        .into_response(),
        Ok(n) => Json(json!({"status": "success", "deleted": n})).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/cache/delete",
    operation_id = "cache_delete_many",
    tag = "cache",
    summary = "Delete cache entries by key",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete cache entries by key: done", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /cache/delete` with `{"keys": [...]}` (LiteLLM's form).
pub async fn delete_many(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let gateway = state.gateway();
        let bytes =
            super::routes::read_body(request, DELETE_BODY_LIMIT, gateway.body_timeout).await?;
        #[derive(serde::Deserialize)]
        struct Body {
            keys: Vec<String>,
        }
        let body: Body = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::invalid(
                format!("the body must be {{\"keys\": [\"<key>\", ...]}}: {e}"),
                Some("keys"),
            )
        })?;
        if body.keys.len() > MAX_DELETE_KEYS {
            return Err(ApiError::invalid(
                format!("at most {MAX_DELETE_KEYS} keys per request"),
                Some("keys"),
            ));
        }
        delete_keys(&state, &body.keys).await
    }
    .await;
    match result {
        Ok(n) => Json(json!({"status": "success", "deleted": n})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_keys(state: &AppState, keys: &[String]) -> Result<u64, ApiError> {
    let cache = current(state)?;
    let mut deleted = 0;
    for key in keys {
        if !is_key(key) {
            return Err(ApiError::invalid(
                format!("{key:?} is not a cache key (64 hex digits, as in x-conclave-cache-key)"),
                Some("key"),
            ));
        }
        // Keys are written in lower case; one copied in upper case is the same key.
        if cache
            .remove(&key.to_ascii_lowercase())
            .await
            .map_err(backend_error)?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}
