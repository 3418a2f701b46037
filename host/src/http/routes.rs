//! Route handlers. Each model endpoint parses the body once, hands it to the
//! router, and turns the answer into JSON or SSE with `x-conclave-*` headers.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use axum::Extension;
use tracing::Instrument;

use super::error::ApiError;
use super::execute::{Answer, execute};
use super::sse::sse_response;
use super::{AppState, Scope};
use crate::openai::{Endpoint, ProxyRequest};
use crate::ops::{CallContext, OutcomeHandle};

#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    operation_id = "chat_completions",
    tag = "openai",
    summary = "Chat completion (plain model group or composite profile)",
    request_body = super::openapi::ChatCompletionRequest,
    responses(
        (status = 200, description = "A `chat.completion` object, or `text/event-stream` of `chat.completion.chunk` events ending in `[DONE]` when `stream` is true", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::ChatCompletions, request)).await
}

#[utoipa::path(
    post,
    path = "/v1/completions",
    operation_id = "completions",
    tag = "openai",
    summary = "Legacy text completion",
    request_body = super::openapi::CompletionRequest,
    responses(
        (status = 200, description = "A `text_completion` object, or its SSE stream", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn completions(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Completions, request)).await
}

#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "embeddings",
    tag = "openai",
    summary = "Embeddings",
    request_body = super::openapi::EmbeddingRequest,
    responses(
        (status = 200, description = "The upstream's embedding list", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Embeddings, request)).await
}

#[utoipa::path(
    post,
    path = "/v1/moderations",
    operation_id = "moderations",
    tag = "openai",
    summary = "Moderation: whether a text breaks a usage policy",
    request_body = super::openapi::ModerationRequest,
    responses(
        (status = 200, description = "The upstream's moderation results", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn moderations(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Moderations, request)).await
}

#[utoipa::path(
    post,
    path = "/v1/images/generations",
    operation_id = "image_generations",
    tag = "openai",
    summary = "Image generation",
    request_body = super::openapi::ImageGenerationRequest,
    responses(
        (status = 200, description = "The upstream's images (`data` of `url` or `b64_json`)", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn image_generations(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(
        state,
        scope,
        Endpoint::ImageGenerations,
        request,
    ))
    .await
}

#[utoipa::path(
    post,
    path = "/v1/rerank",
    operation_id = "rerank",
    tag = "openai",
    summary = "Rerank documents by relevance to a query (Cohere's shape)",
    request_body = super::openapi::RerankRequest,
    responses(
        (status = 200, description = "The upstream's `results`: each document's `index` and `relevance_score`, most relevant first", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse), (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse), (status = 404, description = "Unknown model", body = super::openapi::ErrorResponse), (status = 429, description = "Rate limited; Retry-After says when to retry", body = super::openapi::ErrorResponse), (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn rerank(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(model_call(state, scope, Endpoint::Rerank, request)).await
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
    model_call_naming(state, scope, endpoint, request, None).await
}

/// The route of Azure OpenAI's paths (`/openai/deployments/{model}/chat/completions`)
/// and the older engine paths (`/engines/{model}/...`) for `endpoint`,
/// which LiteLLM serves for Azure clients: the path names the model, over
/// the body's.
pub fn deployment_route(endpoint: Endpoint) -> axum::routing::MethodRouter<AppState> {
    axum::routing::post(
        move |State(state): State<AppState>,
              Extension(scope): Extension<Scope>,
              Path(model): Path<String>,
              request: Request| {
            Box::pin(model_call_naming(
                state,
                scope,
                endpoint,
                request,
                Some(model),
            ))
        },
    )
}

/// A model call whose model `path_model` names when the path gives one.
async fn model_call_naming(
    state: AppState,
    scope: Scope,
    endpoint: Endpoint,
    request: Request,
    path_model: Option<String>,
) -> Response {
    let ctx = CallContext::client(scope.ctx.clone());
    let outcome = OutcomeHandle::request(&ctx);
    let span = scope.ctx.span.clone();
    let handled = handle(
        &state,
        &scope,
        &ctx,
        &outcome,
        (endpoint, path_model),
        request,
    )
    .instrument(span)
    .await;
    handled.unwrap_or_else(|error| {
        outcome.finish(error.status.as_u16(), Some(error.code_or_type()));
        error.into_response()
    })
}

/// Reads and checks the body, runs it through the pipeline, and frames the
/// answer as OpenAI JSON or SSE.
async fn handle(
    state: &AppState,
    scope: &Scope,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    (endpoint, path_model): (Endpoint, Option<String>),
    request: Request,
) -> Result<Response, ApiError> {
    let gateway = &scope.gateway;
    let keep = |bytes: &Bytes, is_json| keep_request_body(ctx, outcome, bytes, is_json);
    let read = (endpoint, path_model.as_deref());
    let req = read_request(request, read, gateway, keep).await?;
    let executed = execute(state, scope, ctx, outcome, endpoint, &req).await?;
    let mut response = match executed.answer {
        Answer::Json(body) => json_response(body),
        Answer::Stream(payloads) => sse_response(payloads),
    };
    add_route_headers(&mut response, executed.headers);
    Ok(response)
}

/// Gives a framed answer the route's `x-conclave-*` headers. The framing's
/// one or two headers join the route's map, sized once for them and the
/// request ids the outer layer adds: cheaper than moving the route's
/// headers over one by one.
pub(super) fn add_route_headers(response: &mut Response, mut headers: http::HeaderMap) {
    headers.reserve(response.headers().len() + super::request_id::ECHOED_HEADERS);
    let mut last = None;
    for (name, value) in response.headers_mut().drain() {
        match name {
            Some(name) => {
                headers.insert(name.clone(), value);
                last = Some(name);
            }
            // Another value of the header before it.
            None => {
                if let Some(name) = &last {
                    headers.append(name, value);
                }
            }
        }
    }
    *response.headers_mut() = headers;
}

/// Keeps the body the client sent for its request log (a reference to the
/// bytes read, no copy), when request logs are on.
pub(super) fn keep_request_body(
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    bytes: &Bytes,
    is_json: bool,
) {
    if ctx.is_logged() {
        outcome.update(|o| o.keep_request_body(bytes.clone(), is_json));
    }
}

/// Refuses a client body whose field `names` include one the gateway's own
/// routes carry a native body in ([`crate::translate::NATIVE_CARRIERS`]):
/// sent by a client, it would replace what the upstream is sent.
pub(super) fn refuse_native_carriers<'a>(
    mut names: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    match names.find(|name| crate::translate::is_native_carrier(name)) {
        Some(field) => Err(ApiError::invalid(
            format!("`{field}` is the gateway's own field; a request may not set it"),
            Some(field),
        )),
        None => Ok(()),
    }
}

/// [`refuse_native_carriers`] over a JSON body's top-level field names.
pub(super) fn refuse_native_carriers_in(body: &serde_json::Value) -> Result<(), ApiError> {
    let names = body.as_object().into_iter().flat_map(|o| o.keys());
    refuse_native_carriers(names.map(String::as_str))
}

/// A JSON object body with its `model` set to `model`; any other body as
/// it came (its parse reports what is wrong with it).
fn with_model(bytes: Bytes, model: &str) -> Bytes {
    let Ok(mut body) = crate::openai::from_json_bytes::<serde_json::Map<String, Value>>(&bytes)
    else {
        return bytes;
    };
    body.insert("model".into(), Value::String(model.to_owned()));
    serde_json::to_vec(&body).map_or(bytes, Bytes::from)
}

/// Reads the body (handing it to `keep` as read, with whether it parsed)
/// and checks what every model endpoint requires of it.
async fn read_request(
    request: Request,
    (endpoint, path_model): (Endpoint, Option<&str>),
    gateway: &crate::gateway::Gateway,
    keep: impl FnOnce(&Bytes, bool),
) -> Result<ProxyRequest, ApiError> {
    let mut bytes = read_body(request, gateway.body_limit, gateway.body_timeout).await?;
    if let Some(model) = path_model {
        bytes = with_model(bytes, model);
    }
    let req = crate::openai::from_json_bytes::<ProxyRequest>(&bytes);
    keep(&bytes, req.is_ok());
    let req = req.map_err(|e| body_error(&e))?;
    drop(bytes);
    refuse_native_carriers(req.rest.iter().map(|(name, _)| name))?;
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
    check_shapes(endpoint, &req.rest)?;
    if req.stream && !endpoint.streams() {
        return Err(ApiError::invalid(
            format!("{} cannot be streamed", endpoint.name()),
            Some("stream"),
        ));
    }
    Ok(req)
}

/// The shapes the newer endpoints' fields must have, checked before any
/// call: a provider would refuse anything else, or answer it oddly.
fn check_shapes(endpoint: Endpoint, body: &crate::openai::RawFields) -> Result<(), ApiError> {
    let (field, ok, shape) = match endpoint {
        Endpoint::Moderations => (
            "input",
            body.is_string("input") || body.is_array("input"),
            "a string or an array",
        ),
        Endpoint::ImageGenerations => ("prompt", body.is_string("prompt"), "a string"),
        Endpoint::Rerank if !body.is_string("query") => ("query", false, "a string"),
        Endpoint::Rerank => ("documents", body.is_array("documents"), "an array"),
        _ => return Ok(()),
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        format!("{field} is required and must be {shape}"),
        Some(field),
    ))
}

/// The 400 for a body that is not a request: text that is not JSON, or
/// JSON with a field of the wrong shape, which the message names in
/// backquotes and `param` names too.
pub(super) fn body_error(e: &serde_json::Error) -> ApiError {
    let text = crate::openai::describe_json_error(e);
    if !e.is_data() {
        return ApiError::invalid(format!("request body is not valid JSON: {text}"), None);
    }
    let param = text
        .split('`')
        .nth(1)
        .filter(|p| !p.is_empty() && p.len() <= 64 && !p.contains(char::is_whitespace));
    ApiError::invalid(format!("invalid request body: {text}"), param)
}

/// Reads the whole body, refusing more than `limit` bytes with a 413, a
/// client that takes longer than `timeout` to send it with a 408, and a
/// compressed body with a 415 (it would otherwise fail as malformed JSON).
pub(super) async fn read_body(
    request: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let (parts, body) = request.into_parts();
    read_body_of(&parts.headers, body, limit, timeout).await
}

/// [`read_body`] for a request already split, whose headers its handler
/// still reads.
pub(super) async fn read_body_of(
    headers: &http::HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // Every value: a second header (`identity`, then `gzip`) is an encoding too.
    if let Some(encoding) = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .find(|value| {
            !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"identity")
        })
    {
        let named = match encoding.to_str() {
            Ok(text) if text.len() <= 32 => format!(" {text:?}"),
            _ => String::new(),
        };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!(
                "request bodies with a Content-Encoding{named} are not accepted: send the body uncompressed"
            ),
            None,
            Some("unsupported_content_encoding"),
        ));
    }
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit));
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
            if let Some(full) = s.downcast_ref::<super::in_flight::BodiesLimitReached>() {
                return super::in_flight::busy(full.to_string());
            }
            source = s.source();
        }
        ApiError::invalid(format!("could not read the request body: {e}"), None)
    })
}

pub(super) fn json_response(body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "list_models_public",
    tag = "models",
    summary = "Public model names",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The public models: model groups, aliases and composite profiles", body = super::openapi::ModelList),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
    )
)]
pub async fn models(
    scope: Extension<Scope>,
    headers: http::HeaderMap,
    query: Result<Query<super::anthropic_models::Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    if super::anthropic_models::wants_anthropic(&headers) {
        let answer = super::anthropic_models::list(scope, query).await;
        return Ok(answer.unwrap_or_else(|e| super::messages::in_anthropic_shape(&e)));
    }
    Ok(json_response(visible_models(
        &scope,
        &scope.gateway.models_json,
        "id",
    )))
}

/// The entries of `/v1/models` the caller may see.
pub(super) fn public_models(scope: &Scope) -> Vec<Value> {
    visible_entries(scope, &scope.gateway.models_json, "id")
}

/// The entries of `listing` (a `{"data": [...]}` body) the caller may see,
/// each named by its `name_field`.
fn visible_entries(scope: &Scope, listing: &Bytes, name_field: &str) -> Vec<Value> {
    let listing = visible_models(scope, listing, name_field);
    let mut parsed: Value = serde_json::from_slice(&listing).unwrap_or_default();
    match parsed["data"].take() {
        Value::Array(data) => data,
        _ => Vec::new(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    operation_id = "retrieve_model",
    tag = "models",
    summary = "One public model",
    params(("model" = String, Path, description = "The model's id, as /v1/models lists it (it may contain `/`)")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The model, as /v1/models lists it", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such model, or not one the key may use", body = super::openapi::ErrorResponse),
    )
)]
/// `GET /v1/models/{model}` (OpenAI's `models.retrieve`): the entry of
/// `/v1/models` with that id, or, for a name only a wildcard serves, an
/// entry made for it; a key sees only the models it may use.
pub async fn model(
    scope: Extension<Scope>,
    headers: http::HeaderMap,
    id: axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if super::anthropic_models::wants_anthropic(&headers) {
        let answer = super::anthropic_models::retrieve(scope, id).await;
        return Ok(answer.unwrap_or_else(|e| super::messages::in_anthropic_shape(&e)));
    }
    Ok(Json(public_model(&scope, &id)?).into_response())
}

/// The `/v1/models` entry `id` if the caller may see it, or, for a name
/// only a wildcard serves, an entry made for it; 404 otherwise.
pub(super) fn public_model(scope: &Scope, id: &str) -> Result<Value, ApiError> {
    if let Some(entry) = public_models(scope)
        .into_iter()
        .find(|m| m["id"].as_str() == Some(id))
    {
        return Ok(entry);
    }
    // A name only a wildcard serves is not listed, yet it is served.
    let allowed = scope.ctx.caller.principal().is_none_or(|p| {
        crate::ops::admission::denied_by(p, id, &scope.gateway.access_groups).is_none()
    });
    if allowed && scope.gateway.router.serves(id) {
        return Ok(crate::gateway::model_entry(id, 0));
    }
    Err(crate::router::RouteError::ModelNotFound {
        model: id.to_owned(),
    }
    .into())
}

/// LiteLLM's `/model/info`: every deployment, without secrets.
#[utoipa::path(
    get,
    path = "/v1/model/info",
    operation_id = "model_info",
    tag = "models",
    summary = "Deployments without secrets (LiteLLM's /model/info)",
    security(("bearer" = []), ("api_key" = [])),
    params(("litellm_model_id" = Option<String>, Query, description = "Only the deployment with this id (its `model_info.id`)")),
    responses(
        (status = 200, description = "Every deployment with its parameters, api keys removed", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "No deployment the caller may see has the litellm_model_id given", body = super::openapi::ErrorResponse),
    )
)]
pub async fn model_info(
    Extension(scope): Extension<Scope>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text()), None))?;
    let listing = visible_models(&scope, &scope.gateway.model_info_json, "model_name");
    match query.get("litellm_model_id") {
        None => Ok(json_response(listing)),
        Some(id) => one_deployment(&listing, id).map(json_response),
    }
}

/// The most deployments one page of `/v2/model/info` holds.
const MAX_MODEL_PAGE: u32 = 1000;

/// LiteLLM's `/v2/model/info`: the `/model/info` listing in pages.
#[utoipa::path(
    get,
    path = "/v2/model/info",
    operation_id = "model_info_v2",
    tag = "models",
    summary = "Deployments without secrets, in pages (LiteLLM's /v2/model/info)",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("model" = Option<String>, Query, description = "Only the deployments of this model name (also `model_name`)"),
        ("modelId" = Option<String>, Query, description = "Only the deployment with this id (its `model_info.id`)"),
        ("search" = Option<String>, Query, description = "Only model names containing this, in any case"),
        ("page" = Option<u32>, Query, description = "From 1"),
        ("size" = Option<u32>, Query, description = "Deployments a page, 1 to 1000 (default 50)"),
    ),
    responses(
        (status = 200, description = "`data` (the page's deployments, api keys removed), `total_count`, `current_page`, `total_pages`, `size`", body = super::openapi::JsonObject),
        (status = 400, description = "A page or size that is not a whole number in range", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
    )
)]
pub async fn model_info_v2(
    Extension(scope): Extension<Scope>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text()), None))?;
    let page = super::management::keys::page_within(&query, 50, MAX_MODEL_PAGE)?;
    let mut data = visible_entries(&scope, &scope.gateway.model_info_json, "model_name");
    let search = query.get("search").map(|s| s.to_lowercase());
    let model = query.get("model").or_else(|| query.get("model_name"));
    data.retain(|d| {
        let name = d["model_name"].as_str().unwrap_or_default();
        model.is_none_or(|m| m == name)
            && query
                .get("modelId")
                .is_none_or(|id| d["model_info"]["id"].as_str() == Some(id))
            && search
                .as_ref()
                .is_none_or(|s| name.to_lowercase().contains(s))
    });
    let total = data.len();
    let size = page.size as usize;
    let skip = (page.page as usize - 1).saturating_mul(size);
    let shown: Vec<Value> = data.into_iter().skip(skip).take(size).collect();
    Ok(Json(json!({
        "data": shown,
        "total_count": total,
        "current_page": page.page,
        "total_pages": total.div_ceil(size),
        "size": page.size,
    }))
    .into_response())
}

/// The `/model/info` listing narrowed to the deployment with model id
/// `id`, as LiteLLM's `?litellm_model_id=` does: how a script finds the
/// deployment `/model/new` answered.
fn one_deployment(listing: &Bytes, id: &str) -> Result<Bytes, ApiError> {
    let id = super::admin::bounded_model_id(id, "litellm_model_id")?;
    let mut parsed: Value = serde_json::from_slice(listing).unwrap_or_else(|_| json!({}));
    let data = parsed
        .get_mut("data")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let found: Vec<Value> = data
        .into_iter()
        .filter(|d| d["model_info"]["id"].as_str() == Some(id))
        .collect();
    if found.is_empty() {
        let mut e = ApiError::from(crate::router::RouteError::ModelNotFound {
            model: id.to_owned(),
        });
        e.body.error.message = format!("no deployment has the model id {id:?}");
        e.body.error.param = Some("litellm_model_id".into());
        return Err(e);
    }
    let body = json!({"data": found});
    Ok(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

/// LiteLLM's `/model_group/info`: each model group with its providers and
/// what its deployments' `model_info` says.
#[utoipa::path(
    get,
    path = "/model_group/info",
    operation_id = "model_group_info",
    tag = "models",
    summary = "Model groups with their providers, limits and prices (LiteLLM's /model_group/info)",
    security(("bearer" = []), ("api_key" = [])),
    params(("model_group" = Option<String>, Query, description = "Only this model group")),
    responses(
        (status = 200, description = "One entry per model group the caller may use", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
    )
)]
pub async fn model_group_info(
    Extension(scope): Extension<Scope>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let listing = visible_models(&scope, &scope.gateway.model_group_info_json, "model_group");
    // LiteLLM's `?model_group=` narrows the listing to one group.
    let Some(only) = query.get("model_group").filter(|g| !g.is_empty()) else {
        return json_response(listing);
    };
    let Ok(mut parsed) = serde_json::from_slice::<Value>(&listing) else {
        return json_response(listing);
    };
    if let Some(data) = parsed.get_mut("data").and_then(Value::as_array_mut) {
        data.retain(|entry| entry["model_group"] == only.as_str());
    }
    json_response(Bytes::from(serde_json::to_vec(&parsed).unwrap_or_default()))
}

/// A model listing (`data` entries named by `name_field`) as the caller may
/// see it: a virtual key whose key, user or team lists models sees only
/// those (as in LiteLLM); everyone else gets the listing made at load time.
fn visible_models(scope: &Scope, listing: &Bytes, name_field: &str) -> Bytes {
    let Some(may_see) = model_filter(scope) else {
        return listing.clone();
    };
    let Ok(mut parsed) = serde_json::from_slice::<Value>(listing) else {
        return listing.clone();
    };
    if let Some(data) = parsed.get_mut("data").and_then(Value::as_array_mut) {
        data.retain(|entry| entry[name_field].as_str().is_some_and(&may_see));
    }
    Bytes::from(serde_json::to_vec(&parsed).unwrap_or_default())
}

/// Which model names the caller may see in a listing or report: `None`
/// (all of them) unless it is a virtual key whose key, user or team lists
/// models, as in LiteLLM.
pub(super) fn model_filter(scope: &Scope) -> Option<impl Fn(&str) -> bool + '_> {
    let principal = scope.ctx.caller.principal()?;
    let restricted = !principal.key.models.is_empty()
        || principal
            .user
            .as_ref()
            .is_some_and(|u| !u.models.is_empty())
        || principal
            .team
            .as_ref()
            .is_some_and(|t| !t.models.is_empty());
    let groups = &scope.gateway.access_groups;
    restricted.then_some(move |name: &str| {
        crate::ops::admission::denied_by(principal, name, groups).is_none()
    })
}

#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "models",
    summary = "Deployment health",
    security(("bearer" = []), ("api_key" = [])),
    params(("model" = Option<String>, Query, description = "Only this model group's deployments")),
    responses(
        (status = 200, description = "Every deployment (of the `model` group only, when given): healthy or not, its average latency, its last error and its last background health check", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "`model` names no model group the caller may see", body = super::openapi::ErrorResponse),
    )
)]
pub async fn health(
    Extension(scope): Extension<Scope>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text()), None))?;
    let filter = model_filter(&scope);
    let may_see = |name: &str| filter.as_ref().is_none_or(|f| f(name));
    // Upstream error texts come from other callers' requests (and may quote
    // them): only the master key and admin keys read them.
    let errors = crate::health::ErrorTexts::shown_if(
        scope.ctx.caller.principal().is_none_or(|p| p.is_admin()),
    );
    let report = match query.model.as_deref() {
        // LiteLLM's `?model=`: one model group's deployments. A name the
        // caller may not see reads as one that does not exist.
        Some(model) => {
            // An alias reports on the group it names, a name a wildcard
            // serves on the wildcard's group.
            let router = &scope.gateway.router;
            let group = router
                .client_group(model)
                .map(|(group, _)| group)
                .or_else(|| router.group_or_alias(model).cloned());
            let Some(group) = group.filter(|_| may_see(model)) else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    format!("no model named {model:?} to report on"),
                    Some("model"),
                    Some("model_not_found"),
                ));
            };
            crate::health::report(&scope.gateway, &|name| name == &*group.name, errors)
        }
        None => crate::health::report(&scope.gateway, &may_see, errors),
    };
    Ok(Json(report).into_response())
}

/// `GET /health`'s query: `model` limits the report to one model group.
#[derive(serde::Deserialize)]
pub struct HealthQuery {
    model: Option<String>,
}

#[utoipa::path(
    get,
    path = "/health/liveliness",
    operation_id = "liveliness",
    tag = "probes",
    summary = "Liveness probe",
    responses(
        (status = 200, description = "The process is serving"),
    )
)]
pub async fn liveliness() -> Response {
    Json(json!("I'm alive!")).into_response()
}

#[utoipa::path(
    get,
    path = "/health/readiness",
    operation_id = "readiness",
    tag = "probes",
    summary = "Readiness probe",
    responses(
        (status = 200, description = "A config version is loaded, and the key store (when there is one) answers", body = super::openapi::JsonObject),
        (status = 503, description = "The key store does not answer", body = super::openapi::JsonObject),
    )
)]
/// `GET /health/readiness`: ready when a config version is loaded and the
/// key store, when virtual keys are on, answers within [`READINESS_DB_WAIT`];
/// `db` says which (`connected`, `disconnected`, or null without a store),
/// as LiteLLM's probe does.
pub async fn readiness(State(state): State<AppState>) -> Response {
    let gateway = state.gateway();
    let db = match &state.ops.keys {
        None => None,
        Some(keys) => Some(
            tokio::time::timeout(READINESS_DB_WAIT, keys.store().answers())
                .await
                .unwrap_or(false),
        ),
    };
    let ready = db != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "models": gateway.model_names.len(),
        "db": db.map(|up| if up { "connected" } else { "disconnected" }),
        "conclave_version": env!("CARGO_PKG_VERSION"),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// How long the readiness probe waits for the key store.
const READINESS_DB_WAIT: Duration = Duration::from_secs(2);

/// `response` to a request whose body is left unread, with
/// `Connection: close` on HTTP/1 when it has one: the server closes such a
/// connection rather than read the body, and a client told nothing would
/// send its next request into the closing socket.
pub(super) fn closing_if_body_unread<B>(
    request: &http::Request<B>,
    mut response: Response,
) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0");
    if has_body && request.version() < axum::http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The 404 of a path no route serves, in the shape of the API it looks
/// meant for.
pub async fn not_found(request: Request) -> Response {
    let response = not_found_error(&request);
    closing_if_body_unread(&request, response)
}

fn not_found_error(request: &Request) -> Response {
    let path = request.uri().path();
    let mut message = format!("no route for {} {path}", request.method());
    let messages = super::messages::looks_like_messages_path(path);
    if messages && !path.starts_with("/v1/messages") && !path.starts_with("/anthropic/v1/") {
        message.push_str(
            "; the Messages API is at /v1/messages (an Anthropic client's base_url is the \
             gateway's address, without /v1)",
        );
    }
    let error = ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        message,
        None,
        Some("unknown_url"),
    );
    if messages {
        return super::messages::in_anthropic_shape(&error);
    }
    error.into_response()
}

/// Whether `response` is an error answered as plain text (axum's own
/// rejections, such as a path parameter that is not UTF-8), which is
/// rewritten in the API's JSON error shape so that no error leaves in
/// another form.
pub fn is_plain_error(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"))
}

/// The plain-text error `response` (see [`is_plain_error`]) in the JSON
/// error shape, its text as the message.
pub async fn plain_error_as_json(response: Response) -> Response {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(status, kind, message, None, None).into_response()
}

/// The 405 of a route asked with a method it does not serve.
pub async fn method_not_allowed(request: Request) -> Response {
    let path = request.uri().path();
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{} is not allowed on {path}", request.method()),
        None,
        Some("method_not_allowed"),
    );
    let response = match super::messages::is_messages_path(path) {
        true => super::messages::in_anthropic_shape(&error),
        false => error.into_response(),
    };
    closing_if_body_unread(&request, response)
}

#[utoipa::path(
    get,
    path = "/provider/budgets",
    operation_id = "provider_budgets",
    tag = "models",
    summary = "Each provider's spend cap and what its window has spent",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caps of router_settings.provider_budget_config", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
    )
)]
/// `GET /provider/budgets`: LiteLLM's listing of provider spend caps,
/// `{"providers": {"openai": {"budget_limit", "time_period", "spend",
/// "budget_reset_at"}}}` (the reset is null while the window is not open).
pub async fn provider_budgets(Extension(scope): Extension<Scope>) -> Response {
    let now = std::time::SystemTime::now();
    let providers: serde_json::Map<String, serde_json::Value> = scope
        .gateway
        .router
        .spend_caps()
        .into_iter()
        .flat_map(|caps| caps.providers())
        .map(|(name, cap)| {
            let s = cap.state(now);
            let reset = s.resets_at.map(crate::keys::time::rfc3339);
            let entry = serde_json::json!({
                "budget_limit": s.limit,
                "time_period": s.period,
                "spend": s.spent,
                "budget_reset_at": reset,
            });
            (name.to_owned(), entry)
        })
        .collect();
    Json(serde_json::json!({ "providers": providers })).into_response()
}
