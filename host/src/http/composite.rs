//! Composite requests: a public model backed by a strategy profile. The
//! strategy host answers with one JSON body, or with a stream whose
//! `reasoning_content` carries the stage trace and whose content is the final
//! stage's tokens as they arrive. A JSON answer also names the model that
//! gave the final answer in `x-conclave-final-model`.

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::sse::sse_response;
use crate::gateway::Gateway;
use crate::openai::ProxyRequest;
use crate::strategy::{LoadedProfile, StrategyError};

impl From<StrategyError> for ApiError {
    fn from(error: StrategyError) -> Self {
        let message = error.to_string();
        let (status, kind, code) = match &error {
            StrategyError::InvalidRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "strategy_invalid_request",
            ),
            StrategyError::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
            ),
            StrategyError::Upstream { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "strategy_upstream_failed",
            ),
            StrategyError::Deadline { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                "strategy_deadline",
            ),
            StrategyError::LimitExceeded { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "strategy_limit_exceeded",
            ),
            StrategyError::Trap { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "strategy_crashed",
            ),
            StrategyError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable_error",
                "strategy_unavailable",
            ),
        };
        ApiError::new(status, kind, message, None, Some(code))
    }
}

/// Answers a request for a composite model.
pub async fn handle(
    gateway: &Gateway,
    profile: &std::sync::Arc<LoadedProfile>,
    req: &ProxyRequest,
) -> Result<Response, ApiError> {
    let strategies = &gateway.strategies;
    let router = gateway.router.clone();
    let mut response = if req.stream {
        let (rx, abort) = strategies.execute_stream(profile, &req.model, req, router)?;
        // The abort guard lives in the body: a client that goes away stops the run.
        let payloads = ReceiverStream::new(rx).map(move |item| {
            let _keep = &abort;
            item.map_err(ApiError::from)
        });
        sse_response(Box::pin(payloads))
    } else {
        let answer = strategies
            .execute_answer(profile, &req.model, req, router)
            .await?;
        let mut r = Response::new(Body::from(answer.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Streams start before the final model is known: there only the
        // trace names it.
        if !answer.final_model.is_empty()
            && let Ok(v) = HeaderValue::from_str(&answer.final_model)
        {
            r.headers_mut().insert("x-conclave-final-model", v);
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&profile.plan.name) {
        response.headers_mut().insert("x-conclave-strategy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&req.model) {
        response.headers_mut().insert("x-conclave-model-group", v);
    }
    Ok(response)
}
