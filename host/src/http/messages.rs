//! `POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages
//! API, served by translation to chat completions
//! ([`crate::translate::anthropic`]). Every error on these routes, the auth
//! layer's included, leaves in Anthropic's shape ([`anthropic_errors`]).

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::{Value, json};

use super::dialect::{Dialect, Translator, call, parse_json};
use super::error::ApiError;
use super::routes::{json_response, read_body_of};
use super::{AppState, Scope};
use crate::translate::anthropic::{
    MessagesStream, answer_from_chat, check_count_request, count_tokens, error_body,
    request_to_chat,
};
use crate::translate::anthropic_upstream::{CLIENT_HEADERS, NATIVE_FIELD, NATIVE_HEADERS_FIELD};
use crate::translate::{Event, TranslateError, new_id};

/// Largest error body rewritten into Anthropic's shape.
const ERROR_BODY_LIMIT: usize = 1024 * 1024;

#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "create_message",
    tag = "anthropic",
    summary = "Anthropic Messages API",
    description = "Put an Anthropic SDK behind the gateway with `ANTHROPIC_BASE_URL` \
        (the gateway's address) and `ANTHROPIC_API_KEY` (a gateway key). Errors use Anthropic's shape.",
    request_body = super::openapi::MessagesRequest,
    params(
        ("anthropic-version" = Option<String>, Header, description = "Accepted; an `anthropic/` deployment is sent its own `api_version` (default 2023-06-01)"),
        ("anthropic-beta" = Option<String>, Header, description = "Sent on to an `anthropic/` deployment with a request passed through")
    ),
    responses(
        (status = 200, description = "A `message` object, or Anthropic's event stream (`message_start` ... `message_stop`) when `stream` is true", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::AnthropicErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::AnthropicErrorResponse),
        (status = 404, description = "Unknown model", body = super::openapi::AnthropicErrorResponse),
        (status = 502, description = "The upstream failed", body = super::openapi::AnthropicErrorResponse)
    ),
    security(("api_key" = []), ("bearer" = []))
)]
/// `POST /v1/messages`.
pub async fn create(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    Box::pin(call::<Messages>(state, scope, request)).await
}

/// `POST /v1/messages/count_tokens`: an estimate, see [`count_tokens`].
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    operation_id = "count_message_tokens",
    tag = "anthropic",
    summary = "Count a Messages request's input tokens",
    request_body = super::openapi::MessagesRequest,
    responses(
        (status = 200, description = "The input token count", body = super::openapi::CountTokensResponse),
        (status = 400, description = "Invalid request", body = super::openapi::AnthropicErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::AnthropicErrorResponse),
        (status = 404, description = "No such model", body = super::openapi::AnthropicErrorResponse)
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn count(Extension(scope): Extension<Scope>, request: Request) -> Response {
    let gateway = &scope.gateway;
    let (parts, body) = request.into_parts();
    let read = read_body_of(
        &parts.headers,
        body,
        gateway.body_limit,
        gateway.body_timeout,
    );
    let body = match read.await.and_then(|bytes| parse_json(&bytes)) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = check_count_request(&body) {
        return super::dialect::invalid(error).into_response();
    }
    if let Err(error) = super::routes::refuse_native_carriers_in(&body) {
        return error.into_response();
    }
    let model = body["model"].as_str().unwrap_or_default();
    if !gateway.router.serves(model) && gateway.strategies.profile_for(model).is_none() {
        let unknown = crate::router::RouteError::ModelNotFound {
            model: model.to_owned(),
        };
        return ApiError::from(unknown).into_response();
    }
    if let Some(refused) = model_refused(&scope, &body) {
        return ApiError::from(refused).into_response();
    }
    let headers = client_headers(&parts.headers);
    if let Some(counted) = count_upstream(gateway, &body, headers.as_ref()).await {
        return match counted.and_then(checked_count) {
            Ok(bytes) => json_response(bytes),
            Err(error) => ApiError::from(error).into_response(),
        };
    }
    json_response(Bytes::from(
        json!({"input_tokens": count_tokens(&body)}).to_string(),
    ))
}

/// An upstream's token count, passed on only when a client can read it:
/// an object whose `input_tokens` is a whole number, nested no deeper than
/// any answer may be.
fn checked_count(bytes: Bytes) -> Result<Bytes, crate::providers::UpstreamError> {
    #[derive(serde::Deserialize)]
    struct Count {
        #[serde(rename = "input_tokens")]
        _input_tokens: u64,
    }
    let readable = std::str::from_utf8(&bytes).is_ok_and(|text| {
        !crate::openai::nested_too_deep(text) && serde_json::from_str::<Count>(text).is_ok()
    });
    if readable {
        Ok(bytes)
    } else {
        Err(crate::providers::UpstreamError::Protocol(
            "the upstream's token count is not an object with a whole number of input_tokens"
                .into(),
        ))
    }
}

/// The refusal of a virtual key counting tokens for a model it may not use.
fn model_refused(scope: &Scope, body: &Value) -> Option<crate::ops::admission::Refusal> {
    use crate::ops::admission::{access_refusal, denied_by};
    let principal = scope.ctx.caller.principal()?;
    let model = body["model"].as_str()?;
    let level = denied_by(principal, model, &scope.gateway.access_groups)?;
    Some(access_refusal(principal, level, model))
}

/// Whether every deployment of `model`'s group is an `anthropic/` one, so
/// that the request is sent as the client wrote it and its translation is
/// only the gateway's record of it.
fn served_natively(gateway: &crate::gateway::Gateway, model: &str) -> bool {
    gateway.router.client_group(model).is_some_and(|(g, _)| {
        !g.deployments.is_empty()
            && g.deployments.iter().all(
                |d| matches!(&d.target, crate::providers::Target::Http(t) if t.speaks_anthropic()),
            )
    })
}

/// Anthropic's own count, when the model (or the alias naming it) is a
/// group whose first deployment is an `anthropic/` one; `None` otherwise
/// (the estimate answers).
async fn count_upstream(
    gateway: &crate::gateway::Gateway,
    body: &Value,
    headers: Option<&Value>,
) -> Option<Result<Bytes, crate::providers::UpstreamError>> {
    let (group, upstream_model) = gateway.router.client_group(body["model"].as_str()?)?;
    let deployment = group.deployments.first()?;
    let crate::providers::Target::Http(target) = &deployment.target else {
        return None;
    };
    target
        .count_tokens(
            gateway.router.client(),
            body,
            upstream_model.as_deref(),
            headers,
            deployment.timeouts.request,
        )
        .await
}

/// Whether `path` is one of Anthropic's routes (the Messages API's, or any
/// under `/anthropic/`), whose every error leaves in Anthropic's shape (a
/// wrong method's included).
pub fn is_messages_path(path: &str) -> bool {
    path.starts_with("/anthropic/") || path == "/v1/messages" || path == "/v1/messages/count_tokens"
}

/// Whether an unknown `path` looks meant for the Messages API (under its
/// prefix, or its path behind another one, as `/v1/v1/messages` from an
/// Anthropic client whose base_url ends in `/v1`): its 404 is then in
/// Anthropic's shape, which that client reads.
pub fn looks_like_messages_path(path: &str) -> bool {
    path.starts_with("/anthropic/")
        || path.starts_with("/v1/messages/")
        || path.ends_with("/v1/messages")
        || path.ends_with("/v1/messages/count_tokens")
}

/// `error` as an answer in Anthropic's shape, for the errors answered
/// outside the Messages routes' own layer.
pub fn in_anthropic_shape(error: &ApiError) -> Response {
    let body = error_body(error.status.as_u16(), &error.body.error.message).to_string();
    let mut response = json_response(Bytes::from(body));
    *response.status_mut() = error.status;
    response
}

/// Rewrites an error answer in OpenAI's shape (from the handlers, the auth
/// layer or the in-flight limit) into Anthropic's, keeping status and headers.
pub async fn anthropic_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().as_u16() < 400 {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if value["type"] == "error" {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| parts.status.to_string());
    let body = error_body(parts.status.as_u16(), &message).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The client's [`CLIENT_HEADERS`] as a JSON object of strings (a header
/// sent more than once joined with commas), `None` when it sent none.
fn client_headers(headers: &HeaderMap) -> Option<Value> {
    let mut kept = serde_json::Map::new();
    for name in CLIENT_HEADERS {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if !values.is_empty() {
            kept.insert(name.into(), Value::String(values.join(",")));
        }
    }
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// The Messages dialect: the answer's id and the client's model.
struct Messages {
    id: String,
    model: String,
    /// Whether only Anthropic models serve it ([`served_natively`]).
    native: bool,
    /// The client's headers a native request is sent with ([`client_headers`]).
    headers: Option<Value>,
}

impl Dialect for Messages {
    type Stream = MessagesEvents;
    const API_FIELDS: &'static [&'static str] = crate::translate::anthropic::REQUEST_FIELDS;

    fn for_request(body: &Value, headers: &HeaderMap) -> Self {
        Self {
            id: new_id("msg_"),
            model: body["model"].as_str().unwrap_or_default().to_owned(),
            native: false,
            headers: client_headers(headers),
        }
    }

    fn prepare(
        &mut self,
        _state: &AppState,
        scope: &Scope,
        body: Value,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send {
        self.native = served_natively(&scope.gateway, &self.model);
        std::future::ready(Ok(body))
    }

    /// The chat translation, carrying the original body for `anthropic/`
    /// deployments, which send it as it is ([`NATIVE_FIELD`]) but for the
    /// gateway's own settings, which Anthropic would refuse, with the
    /// client's beta header ([`NATIVE_HEADERS_FIELD`]).
    fn to_chat(&self, body: &Value) -> Result<Value, TranslateError> {
        let mut chat = request_to_chat(body, self.native)?;
        if let Some(map) = chat.as_object_mut() {
            let native = crate::openai::native_copy(body);
            map.insert(NATIVE_FIELD.into(), native);
            if let Some(headers) = &self.headers {
                map.insert(NATIVE_HEADERS_FIELD.into(), headers.clone());
            }
        }
        Ok(chat)
    }

    /// A native `message` (from an `anthropic/` deployment) passes as it
    /// is; a chat answer is translated.
    fn answer(&self, chat: &Value) -> Value {
        if chat["type"] == "message" {
            return chat.clone();
        }
        answer_from_chat(chat, &self.model, &self.id)
    }

    fn stream(self) -> MessagesEvents {
        MessagesEvents {
            inner: MessagesStream::new(&self.id, &self.model),
            mode: Mode::Unknown,
        }
    }
}

/// Whether a stream's payloads are chat chunks (translated) or Anthropic's
/// own events (passed through), known from the first payload that is not a
/// ping: a native stream opens with `message_start`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Native,
    Translated,
}

/// The Messages event stream: Anthropic's events from an `anthropic/`
/// deployment as they came, or chat chunks translated. The opening events
/// wait for the first payload that tells the two apart.
struct MessagesEvents {
    inner: MessagesStream,
    mode: Mode,
}

impl MessagesEvents {
    /// An Anthropic event payload as the event it came in.
    fn native(payload: &[u8]) -> Option<Event> {
        let data: Value = serde_json::from_slice(payload).ok()?;
        let name = data["type"].as_str()?.to_owned();
        Some(Event { name, data })
    }

    /// A native stream's event, or the error that ends the stream at one
    /// that cannot be read (or names no type).
    fn native_event(payload: &[u8]) -> Result<Event, ApiError> {
        Self::native(payload).ok_or_else(|| {
            ApiError::upstream_unavailable(
                "the upstream sent a stream event that cannot be read as an Anthropic event",
            )
        })
    }
}

/// The model a chat chunk names, when it names one.
fn chunk_model(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
    }
    serde_json::from_slice::<Named>(payload)
        .ok()?
        .model
        .filter(|m| !m.is_empty())
}

impl Translator for MessagesEvents {
    fn start(&mut self) -> Vec<Event> {
        Vec::new()
    }

    fn client_id(&self) -> Option<&str> {
        (self.mode == Mode::Translated).then(|| self.inner.id())
    }

    fn push(&mut self, payload: &[u8]) -> Result<Vec<Event>, ApiError> {
        if self.mode == Mode::Unknown {
            match Self::native(payload) {
                // Anthropic may send a ping anywhere; one before the
                // message starts says nothing yet about the stream.
                Some(event) if event.name == "ping" => return Ok(Vec::new()),
                Some(event) if event.name == "message_start" => {
                    self.mode = Mode::Native;
                    return Ok(vec![event]);
                }
                _ => {
                    self.mode = Mode::Translated;
                    if let Some(model) = chunk_model(payload) {
                        self.inner.answered_by(model);
                    }
                    let mut events = self.inner.start();
                    events.extend(
                        self.inner
                            .push(payload)
                            .map_err(ApiError::upstream_unavailable)?,
                    );
                    return Ok(events);
                }
            }
        }
        match self.mode {
            Mode::Native => Ok(vec![Self::native_event(payload)?]),
            _ => self
                .inner
                .push(payload)
                .map_err(ApiError::upstream_unavailable),
        }
    }

    fn finish(&mut self) -> Vec<Event> {
        match self.mode {
            Mode::Native => Vec::new(),
            Mode::Translated => self.inner.finish(),
            Mode::Unknown => {
                let mut events = self.inner.start();
                events.extend(self.inner.finish());
                events
            }
        }
    }

    fn fail(&mut self, error: &ApiError) -> Vec<Event> {
        self.inner
            .fail(error.status.as_u16(), &error.body.error.message)
    }
}
