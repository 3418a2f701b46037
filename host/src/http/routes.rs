//! Route handlers. Each model endpoint parses the body once, hands it to the
//! router, and turns the answer into JSON or SSE with `x-conclave-*` headers.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::json;

use axum::Extension;
use futures_util::StreamExt;
use tracing::Instrument;

use super::error::ApiError;
use super::sse::sse_response;
use super::stream_cutoff::StreamCutoff;
use super::tracked::Tracked;
use super::{AppState, Scope};
use crate::gateway::Gateway;
use crate::openai::{Endpoint, ProxyRequest};
use crate::ops::admission::{Admitted, Candidate};
use crate::ops::{CallContext, OutcomeHandle};
use crate::providers::UpstreamReply;
use crate::router::{RouteMeta, RouteRequest};

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::ChatCompletions, request)).await
}

pub async fn completions(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Completions, request)).await
}

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Embeddings, request)).await
}

/// The model endpoints' common path, inside the request's span. Callers box
/// its future: it holds the whole routing state machine (retries, the
/// upstream call), and moving that through axum's service layers by value
/// cost more than one allocation. Whatever happens, the request leaves one
/// outcome: set here for errors and JSON answers, by the stream when it ends.
async fn model_call(
    state: AppState,
    scope: Scope,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let ctx = CallContext::client(scope.ctx.clone());
    let outcome = OutcomeHandle::request(&ctx);
    let span = scope.ctx.span.clone();
    let handled = handle(&state, &scope, &ctx, &outcome, endpoint, request)
        .instrument(span)
        .await;
    handled.unwrap_or_else(|error| {
        outcome.finish(error.status.as_u16(), Some(error.code_or_type()));
        error.into_response()
    })
}

/// Reads and checks the body, admits the request, and runs it.
async fn handle(
    state: &AppState,
    scope: &Scope,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    endpoint: Endpoint,
    request: Request,
) -> Result<Response, ApiError> {
    let gateway = &scope.gateway;
    let req = read_request(request, endpoint, gateway.body_limit, gateway.body_timeout).await?;
    outcome.update(|o| {
        o.model.clone_from(&req.model);
        o.stream = req.stream;
    });
    let profile = gateway.strategies.profile_for(&req.model).cloned();
    if profile.is_some() && endpoint != Endpoint::ChatCompletions {
        return Err(ApiError::invalid(
            format!(
                "model {:?} is a composite profile and serves only /v1/chat/completions",
                req.model
            ),
            Some("model"),
        ));
    }
    let admitted = state
        .ops
        .admission
        .run(&Candidate {
            ctx,
            model: &req.model,
            composite: profile.is_some(),
        })
        .await?;
    if let Some(profile) = profile {
        let cutoff = state.stream_cutoff();
        return super::composite::handle(gateway, &profile, &req, ctx, outcome, admitted, cutoff)
            .await;
    }
    let cutoff = state.stream_cutoff();
    route_plain(gateway, ctx, outcome, admitted, endpoint, &req, cutoff).await
}

/// Reads the body and checks what every model endpoint requires of it.
async fn read_request(
    request: Request,
    endpoint: Endpoint,
    limit: usize,
    timeout: Duration,
) -> Result<ProxyRequest, ApiError> {
    let bytes = read_body(request, limit, timeout).await?;
    let req: ProxyRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            format!("request body is not valid JSON for this endpoint: {e}"),
            None,
        )
    })?;
    drop(bytes);
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid("model must not be empty", Some("model")));
    }
    let required = endpoint.required_field();
    if !req.rest.contains_key(required) {
        return Err(ApiError::invalid(
            format!("{required} is required"),
            Some(required),
        ));
    }
    if endpoint == Endpoint::ChatCompletions && !req.rest.is_array("messages") {
        return Err(ApiError::invalid(
            "messages must be an array",
            Some("messages"),
        ));
    }
    if endpoint == Endpoint::Embeddings && req.stream {
        return Err(ApiError::invalid(
            "embeddings cannot be streamed",
            Some("stream"),
        ));
    }
    Ok(req)
}

/// A plain model group: the router picks, retries and falls back.
async fn route_plain(
    gateway: &Gateway,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    admitted: Admitted,
    endpoint: Endpoint,
    req: &ProxyRequest,
    cutoff: &StreamCutoff,
) -> Result<Response, ApiError> {
    let routed = gateway
        .router
        .route(RouteRequest {
            endpoint,
            model: &req.model,
            stream: req.stream,
            body: &req.rest,
            fallbacks: req.fallbacks.as_deref(),
            disable_fallbacks: req.disable_fallbacks,
            ctx,
        })
        .await?;
    let meta = &routed.meta;
    outcome.update(|o| {
        o.model_group = Some(meta.group.clone());
        o.deployment = Some(meta.deployment.clone());
        o.attempts = meta.attempts;
        o.fallback.clone_from(&meta.fallback);
        o.upstream_time = Some(meta.upstream_time);
        o.overhead = Some(ctx.request.started.elapsed().saturating_sub(meta.upstream_time));
    });
    let mut response = match routed.reply {
        UpstreamReply::Json(body) => {
            outcome.first_token();
            outcome.update(|o| o.body = vec![body.clone()]);
            outcome.finish(200, None);
            json_response(body)
        }
        UpstreamReply::Stream(payloads) => {
            let payloads = payloads.map(|item| item.map_err(ApiError::from));
            sse_response(Tracked::new(
                payloads,
                outcome.clone(),
                Box::new(admitted),
                cutoff,
            ))
        }
    };
    route_headers(response.headers_mut(), meta, ctx.request.started);
    Ok(response)
}

/// Reads the whole body, refusing more than `limit` bytes with a 413 and a
/// client that takes longer than `timeout` to send it with a 408.
pub(super) async fn read_body(
    request: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "request body is larger than the limit of {limit} bytes (general_settings.max_request_size_mb)"
            ),
            None,
            Some("request_too_large"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), limit));
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!(
                "the request body did not arrive within {:.0} s (general_settings.request_body_timeout)",
                timeout.as_secs_f64()
            ),
            None,
            Some("request_body_timeout"),
        ));
    };
    read.map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = s.source();
            }
            ApiError::invalid(format!("could not read the request body: {e}"), None)
        })
}

fn json_response(body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

const MODEL_ID: HeaderName = HeaderName::from_static("x-conclave-model-id");
const MODEL_GROUP: HeaderName = HeaderName::from_static("x-conclave-model-group");
const FALLBACK: HeaderName = HeaderName::from_static("x-conclave-fallback");
const OVERHEAD_MS: HeaderName = HeaderName::from_static("x-conclave-overhead-ms");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-conclave-attempts");

fn route_headers(h: &mut HeaderMap, meta: &RouteMeta, started: Instant) {
    let overhead = started.elapsed().saturating_sub(meta.upstream_time);
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(MODEL_ID, &meta.deployment);
    put(MODEL_GROUP, &meta.group);
    if let Some(fallback) = &meta.fallback {
        put(FALLBACK, fallback);
    }
    let us = overhead.as_micros();
    put(OVERHEAD_MS, &format!("{}.{:03}", us / 1000, us % 1000));
    h.insert(ATTEMPTS, HeaderValue::from(meta.attempts));
}

pub async fn models(Extension(scope): Extension<Scope>) -> Response {
    json_response(scope.gateway.models_json.clone())
}

/// LiteLLM's `/model/info`: every deployment, without secrets.
pub async fn model_info(Extension(scope): Extension<Scope>) -> Response {
    json_response(scope.gateway.model_info_json.clone())
}

pub async fn health(Extension(scope): Extension<Scope>) -> Response {
    let gateway = &scope.gateway;
    let total: usize = gateway
        .router
        .groups()
        .iter()
        .map(|g| g.deployments.len())
        .sum();
    let cooling = gateway.router.cooling();
    let unhealthy: Vec<_> = cooling
        .iter()
        .map(|(id, wait)| json!({"model_id": id, "recovers_in_s": (wait.as_secs_f64() * 10.0).ceil() / 10.0}))
        .collect();
    let body = json!({
        "status": if cooling.is_empty() { "healthy" } else { "degraded" },
        "healthy_count": total - cooling.len(),
        "unhealthy_count": cooling.len(),
        "unhealthy_deployments": unhealthy,
    });
    Json(body).into_response()
}

pub async fn liveliness() -> Response {
    Json(json!("I'm alive!")).into_response()
}

pub async fn readiness(State(state): State<AppState>) -> Response {
    let gateway = state.gateway();
    Json(json!({"status": "ready", "models": gateway.model_names.len()})).into_response()
}

pub async fn not_found(request: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route for {} {}", request.method(), request.uri().path()),
        None,
        Some("unknown_url"),
    )
    .into_response()
}

pub async fn method_not_allowed(request: Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
        None,
        Some("method_not_allowed"),
    )
    .into_response()
}
