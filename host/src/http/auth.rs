//! Authentication: resolves the caller from `Authorization: Bearer <key>` or
//! `x-api-key` (compared in constant time) and pins the gateway version the
//! request is served by.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::Secret;
use crate::gateway::Gateway;
use crate::ops::{Caller, RequestContext, RequestId};

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

/// What the auth layer hands every handler behind it: the one gateway
/// version that serves the request from start to end (a reload in between
/// does not change it), and the request's context.
#[derive(Clone)]
pub struct Scope {
    pub gateway: Arc<Gateway>,
    pub ctx: Arc<RequestContext>,
}

/// Resolves who is asking (refusing a wrong or missing master key when one
/// is configured) and pins the gateway version the request was
/// authenticated against.
pub async fn authenticate(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let gateway = state.gateway();
    let caller = match &gateway.master_key {
        Some(expected) => match check_key(request.headers(), expected) {
            Ok(()) => Caller::Master,
            Err(e) => return e.into_response(),
        },
        None => Caller::Open,
    };
    let id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate);
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    let ctx = RequestContext::new(id, caller, route, state.ops.outcomes.clone());
    request.extensions_mut().insert(Scope {
        gateway,
        ctx: Arc::new(ctx),
    });
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
