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
use http::header;
use serde_json::{Value, json};

use super::dialect::{Dialect, Translator, call, read_json};
use super::error::ApiError;
use super::routes::json_response;
use super::{AppState, Scope};
use crate::translate::anthropic::{
    MessagesStream, answer_from_chat, count_tokens, error_body, request_to_chat,
};
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
    params(("anthropic-version" = Option<String>, Header, description = "Accepted and forwarded to Anthropic upstreams")),
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
        (status = 401, description = "Missing or wrong key", body = super::openapi::AnthropicErrorResponse)
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn count(Extension(scope): Extension<Scope>, request: Request) -> Response {
    let gateway = &scope.gateway;
    match read_json(request, gateway.body_limit, gateway.body_timeout).await {
        Ok(body) => json_response(Bytes::from(
            json!({"input_tokens": count_tokens(&body)}).to_string(),
        )),
        Err(error) => error.into_response(),
    }
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

/// The Messages dialect: the answer's id and the client's model.
struct Messages {
    id: String,
    model: String,
}

impl Dialect for Messages {
    type Stream = MessagesStream;

    fn for_request(body: &Value) -> Self {
        Self {
            id: new_id("msg_"),
            model: body["model"].as_str().unwrap_or_default().to_owned(),
        }
    }

    fn to_chat(&self, body: &Value) -> Result<Value, TranslateError> {
        request_to_chat(body)
    }

    fn answer(&self, chat: &Value) -> Value {
        answer_from_chat(chat, &self.model, &self.id)
    }

    fn stream(self) -> MessagesStream {
        MessagesStream::new(&self.id, &self.model)
    }
}

impl Translator for MessagesStream {
    fn start(&mut self) -> Vec<Event> {
        MessagesStream::start(self)
    }

    fn push(&mut self, payload: &[u8]) -> Vec<Event> {
        MessagesStream::push(self, payload)
    }

    fn finish(&mut self) -> Vec<Event> {
        MessagesStream::finish(self)
    }

    fn fail(&mut self, error: &ApiError) -> Vec<Event> {
        MessagesStream::fail(self, error.status.as_u16(), &error.body.error.message)
    }
}
