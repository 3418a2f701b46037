//! The HTTP face of every error: OpenAI's error shape with the right status.
//!
//! Mapping: malformed JSON and invalid fields 400; missing or wrong key 401;
//! unknown model 404 (`model_not_found`, as OpenAI does), unknown path 404
//! (`unknown_url`); wrong method 405 (`method_not_allowed`); body too large 413;
//! an upstream 4xx keeps its status (429 stays 429); upstream 5xx, broken or
//! unreachable upstreams 502; upstream timeout 504; a model group whose
//! deployments are all cooling down 503 and all at their rpm/tpm limit 429,
//! both with `Retry-After`.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::openai::ErrorBody;
use crate::providers::UpstreamError;
use crate::router::RouteError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with OpenAI's `type`, optional `param` and `code`.
    pub fn new(
        status: StatusCode,
        kind: &str,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody::new(message, kind, param, code),
            retry_after: None,
        }
    }

    /// 400 for a request the gateway cannot use.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            param,
            None,
        )
    }

    /// 401 for a missing or wrong key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            message,
            None,
            Some("invalid_api_key"),
        )
    }

    /// The error as an SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> Bytes {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.body.to_bytes());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body.error.message)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        upstream_error(error.to_string(), &error)
    }
}

fn upstream_error(message: String, error: &UpstreamError) -> ApiError {
    match error {
        UpstreamError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            message,
            None,
            Some("upstream_timeout"),
        ),
        UpstreamError::Connect(_) | UpstreamError::Protocol(_) | UpstreamError::StreamBroken(_) => {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                message,
                None,
                Some("upstream_unavailable"),
            )
        }
        UpstreamError::Status {
            status,
            code,
            retry_after,
            ..
        } => {
            let (status, kind) = match *status {
                429 => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
                401 | 403 => (
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::UNAUTHORIZED),
                    "authentication_error",
                ),
                s @ 400..=499 => (
                    StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
                    "invalid_request_error",
                ),
                _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
            };
            let mut e = ApiError::new(status, kind, message, None, code.as_deref());
            e.retry_after = *retry_after;
            e
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        let message = error.to_string();
        match error {
            RouteError::ModelNotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                message,
                Some("model"),
                Some("model_not_found"),
            ),
            RouteError::InvalidRequest { param, .. } => {
                ApiError::invalid(message, param.as_deref())
            }
            RouteError::GroupCooling { retry_in, .. } => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable_error",
                    message,
                    None,
                    Some("model_group_cooling_down"),
                );
                e.retry_after = Some(retry_in);
                e
            }
            RouteError::GroupRateLimited { retry_in, .. } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    message,
                    None,
                    Some("model_group_rate_limited"),
                );
                e.retry_after = Some(retry_in);
                e
            }
            RouteError::Upstream { error, .. } => upstream_error(message, &error),
            RouteError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                message,
                None,
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body.to_bytes()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
