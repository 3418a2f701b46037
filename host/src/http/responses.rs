//! `POST /v1/responses`: OpenAI's Responses API, served by translation to
//! chat completions ([`crate::translate::responses`]). Errors keep OpenAI's
//! shape. `general_settings.enable_responses_endpoint: false` turns it off.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value;

use super::dialect::{Dialect, Translator, call};
use super::error::ApiError;
use super::{AppState, Scope};
use crate::openai::unix_now;
use crate::translate::responses::{Envelope, ResponsesStream, answer_from_chat, request_to_chat};
use crate::translate::{Event, TranslateError, new_id};

#[utoipa::path(
    post,
    path = "/v1/responses",
    operation_id = "create_response",
    tag = "openai",
    summary = "OpenAI Responses API",
    description = "Translated to chat completions for every upstream and composite profile. \
        Off when `general_settings.enable_responses_endpoint` is false (404).",
    request_body = super::openapi::ResponsesRequest,
    responses(
        (status = 200, description = "A `response` object, or its documented event stream (`response.created` ... `response.completed`) when `stream` is true", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "Unknown model, or the endpoint is off", body = super::openapi::ErrorResponse),
        (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// The route handler.
pub async fn create(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    request: Request,
) -> Response {
    if !scope.gateway.responses_endpoint {
        return super::routes::not_found(request).await;
    }
    Box::pin(call::<Responses>(state, scope, request)).await
}

/// The Responses dialect: the envelope of the answer being built.
struct Responses(Envelope);

impl Dialect for Responses {
    type Stream = ResponsesStream;

    fn for_request(body: &Value) -> Self {
        Self(Envelope::new(body, &new_id("resp_"), unix_now()))
    }

    fn to_chat(&self, body: &Value) -> Result<Value, TranslateError> {
        request_to_chat(body)
    }

    fn answer(&self, chat: &Value) -> Value {
        answer_from_chat(chat, &self.0)
    }

    fn stream(self) -> ResponsesStream {
        ResponsesStream::new(self.0)
    }
}

impl Translator for ResponsesStream {
    fn start(&mut self) -> Vec<Event> {
        ResponsesStream::start(self)
    }

    fn push(&mut self, payload: &[u8]) -> Vec<Event> {
        ResponsesStream::push(self, payload)
    }

    fn finish(&mut self) -> Vec<Event> {
        ResponsesStream::finish(self)
    }

    fn fail(&mut self, error: &ApiError) -> Vec<Event> {
        ResponsesStream::fail(self, error.code_or_type(), &error.body.error.message)
    }
}
