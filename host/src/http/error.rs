//! The HTTP face of every error: OpenAI's error shape with the right status.
//!
//! Mapping: malformed JSON and invalid fields 400; missing or wrong key 401;
//! unknown model 404 (`model_not_found`, as OpenAI does), unknown path 404
//! (`unknown_url`); wrong method 405 (`method_not_allowed`); body too large 413;
//! an upstream 4xx keeps its status (429 stays 429), as does Anthropic's 529
//! (overloaded); other upstream 5xx, broken or unreachable upstreams 502; upstream timeout 504; a model group whose
//! deployments are all cooling down 503 and all at their rpm/tpm limit 429,
//! both with `Retry-After`. A composite strategy's failures: an invalid
//! request 400, an unknown model 404, an upstream failure 502, its deadline
//! 504, a limit, a trap or an invalid answer 500, no strategy available 503. A
//! virtual key: unknown, expired or blocked 401 (`invalid_api_key`,
//! `key_expired`, `key_blocked`, `team_blocked`), the key store unable to
//! answer 503 (`key_store_unavailable`), a model its lists do not allow 403
//! (`key_model_access_denied`, ...), an rpm, tpm or parallel limit 429 with
//! `Retry-After` and `x-ratelimit-*`, a spent budget 400 `budget_exceeded`
//! (LiteLLM's), its code naming the budget. An admin change:
//! refused 400, unknown model 404, a model the config file owns 409, not
//! persisted 500.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};

use crate::openai::ErrorBody;
use crate::ops::admission::Refusal;
use crate::providers::UpstreamError;
use crate::reload::AdminError;
use crate::router::RouteError;

/// The wait before a retry in milliseconds, beside `Retry-After`'s seconds.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
use crate::strategy::StrategyError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed, so that the error stays small where it travels in a `Result`.
    pub body: Box<ErrorBody>,
    pub retry_after: Option<Duration>,
    /// Extra headers the answer carries (a rate limit's `x-ratelimit-*`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with OpenAI's `type`, optional `param` and `code`. Cold:
    /// the code that builds an error is laid out away from the success path
    /// it branches off, so that path spans fewer cache lines.
    #[cold]
    pub fn new(
        status: StatusCode,
        kind: &str,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody::new(message, kind, param, code)),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// 502 for an upstream that could not be reached or whose answer
    /// cannot be read.
    #[cold]
    pub fn upstream_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            message,
            None,
            Some("upstream_unavailable"),
        )
    }

    /// 400 for a request the gateway cannot use.
    #[cold]
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
    #[cold]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            message,
            None,
            Some("invalid_api_key"),
        )
    }

    /// A routed request's failure after `attempts` upstream calls: when the
    /// gateway has retried or fallen back already, OpenAI's and Anthropic's
    /// SDKs are told not to retry it again (`x-should-retry: false`), so
    /// that their retries do not multiply the gateway's own against an
    /// upstream that is failing; the count is in `x-conclave-attempts`.
    #[cold]
    pub fn after_attempts(mut self, attempts: u32) -> Self {
        self.headers.push((ATTEMPTS, HeaderValue::from(attempts)));
        if attempts > 1 {
            self.headers
                .push((SHOULD_RETRY, HeaderValue::from_static("false")));
        }
        self
    }

    /// The error's `code`, or its `type` when it has none: the name an
    /// outcome records.
    pub fn code_or_type(&self) -> &str {
        self.body
            .error
            .code
            .as_deref()
            .unwrap_or(&self.body.error.kind)
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
    /// For failures after a stream started. An upstream's own error event
    /// (the only status error there) keeps its own message, as the upstream
    /// worded it, under the status and type its fields stand for.
    fn from(error: UpstreamError) -> Self {
        let message = match &error {
            UpstreamError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        };
        upstream_error(message, &error)
    }
}

fn upstream_error(message: String, error: &UpstreamError) -> ApiError {
    match error {
        UpstreamError::Timeout(_) | UpstreamError::StreamTooLong(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            message,
            None,
            Some("upstream_timeout"),
        ),
        UpstreamError::Connect(_) | UpstreamError::Protocol(_) | UpstreamError::StreamBroken(_) => {
            ApiError::upstream_unavailable(message)
        }
        UpstreamError::Unsendable { param, .. } => ApiError::invalid(message, param.as_deref()),
        UpstreamError::AnswerRoomFull(_) => super::in_flight::busy(message),
        UpstreamError::Status {
            status,
            code,
            param,
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
                // Anthropic's "overloaded": its SDK tells it from a failure.
                529 => (
                    StatusCode::from_u16(529).unwrap_or(StatusCode::BAD_GATEWAY),
                    "overloaded_error",
                ),
                _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
            };
            let mut e = ApiError::new(status, kind, message, param.as_deref(), code.as_deref());
            e.retry_after = *retry_after;
            e
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        let message = error.to_string();
        let code = error.code();
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
            RouteError::NoDeploymentForTags { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                message,
                Some("tags"),
                Some(code),
            ),
            // OpenAI's own code for a prompt too long for the model.
            RouteError::ContextWindowExceeded { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                message,
                Some("messages"),
                Some(code),
            ),
            RouteError::GroupCooling { retry_in, .. } => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                message,
                code,
                retry_in,
            ),
            RouteError::GroupRateLimited { retry_in, .. } => retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                message,
                code,
                retry_in,
            ),
            // LiteLLM answers a group whose budgets are spent with a 429.
            RouteError::GroupOverBudget { retry_in, .. } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "budget_exceeded",
                    message,
                    None,
                    Some(code),
                );
                e.retry_after = retry_in;
                e
            }
            RouteError::DeploymentBusy { .. } => retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                message,
                code,
                Duration::from_secs(1),
            ),
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

/// A route refused for now (cooling down, at a limit), with the
/// `Retry-After` that says when to ask again.
fn retry_later(
    status: StatusCode,
    kind: &str,
    message: String,
    code: &str,
    retry_after: Duration,
) -> ApiError {
    let mut e = ApiError::new(status, kind, message, None, Some(code));
    e.retry_after = Some(retry_after);
    e
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let status =
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut e = ApiError::new(
            status,
            refusal.kind,
            refusal.message,
            None,
            Some(refusal.code),
        );
        e.retry_after = refusal.retry_after;
        e.headers = refusal.headers;
        e
    }
}

impl From<StrategyError> for ApiError {
    fn from(error: StrategyError) -> Self {
        let message = crate::strategy::error::bounded(error.to_string());
        // `Again` failures fail the same way when the same request comes
        // again: the official SDKs, which retry 5xx, are told not to (each
        // retry runs the strategy's model calls again, and they are paid).
        // `Later` ones (no room now) may pass a moment later.
        enum Retry {
            Default,
            Again,
            Later,
        }
        let (status, kind, code, retry) = match &error {
            StrategyError::InvalidRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "strategy_invalid_request",
                Retry::Default,
            ),
            StrategyError::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                Retry::Default,
            ),
            StrategyError::Upstream { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "strategy_upstream_failed",
                Retry::Default,
            ),
            StrategyError::Deadline { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                "strategy_deadline",
                Retry::Default,
            ),
            StrategyError::LimitExceeded { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "strategy_limit_exceeded",
                Retry::Again,
            ),
            StrategyError::Trap { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "strategy_crashed",
                Retry::Again,
            ),
            StrategyError::InvalidResponse { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "strategy_invalid_response",
                Retry::Again,
            ),
            StrategyError::Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                "strategy_memory_busy",
                Retry::Later,
            ),
        };
        let mut api = ApiError::new(status, kind, message, None, Some(code));
        match retry {
            Retry::Default => {}
            Retry::Again => api
                .headers
                .push((SHOULD_RETRY, HeaderValue::from_static("false"))),
            Retry::Later => api.retry_after = Some(Duration::from_secs(1)),
        }
        api
    }
}

/// OpenAI's SDKs read it before retrying a failed request.
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Upstream calls a request made, counting retries and fallbacks.
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-conclave-attempts");

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Rejected(refused) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("the change was refused; the current version keeps serving: {refused}"),
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
            AdminError::IdTaken(id) => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("a deployment with id {id:?} exists already"),
                Some("id"),
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
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            // The SDKs prefer it: a wait under a second keeps its precision.
            let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            headers.insert(RETRY_AFTER_MS, HeaderValue::from(millis));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
