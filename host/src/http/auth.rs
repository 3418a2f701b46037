//! Master-key authentication: `Authorization: Bearer <key>` or `x-api-key`,
//! compared in constant time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::Secret;

/// The key a client presented, from either header.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return Some(
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim(),
        );
    }
    headers
        .get("x-api-key")
        .or_else(|| headers.get("api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Rejects requests without the master key when one is configured.
pub async fn require_master_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let gateway = state.gateway();
    if let Some(expected) = &gateway.master_key
        && let Err(e) = check_key(request.headers(), expected)
    {
        return e.into_response();
    }
    next.run(request).await
}

/// Checks the presented key against `expected` in constant time.
pub(super) fn check_key(headers: &HeaderMap, expected: &Secret) -> Result<(), ApiError> {
    match presented_key(headers) {
        None => Err(ApiError::unauthorized(
            "missing API key: send Authorization: Bearer <key> or x-api-key",
        )),
        Some(key) if !bool::from(key.as_bytes().ct_eq(expected.expose().as_bytes())) => {
            Err(ApiError::unauthorized("invalid API key"))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_x_api_key_are_both_read() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-2"));
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }
}
