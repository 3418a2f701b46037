//! The path shared by the translated dialects (Responses, Anthropic
//! Messages): read the body, translate it into a chat request, run it
//! through [`execute`] like any chat request, and translate the answer back,
//! a JSON body whole or a stream event by event.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use tracing::Instrument;

use super::error::ApiError;
use super::execute::{Answer, PayloadStream, execute};
use super::routes::{json_response, read_body_of};
use super::{AppState, Scope};
use crate::openai::{Endpoint, MAX_FIELDS, ProxyRequest, too_many_fields};
use crate::ops::{CallContext, OutcomeHandle};
use crate::translate::{Event, TranslateError};

/// A client dialect served by translation to and from chat completions.
pub(super) trait Dialect: Sized + Send + Sync {
    /// Its stream translator.
    type Stream: Translator;
    /// The API's own top-level request fields. A request to a composite
    /// model hands every other field to the strategy as a setting, as a
    /// chat request's fields that are not OpenAI's are.
    const API_FIELDS: &'static [&'static str];
    /// The dialect for the answer to `body` (ids, echoed settings), and for
    /// the client's `headers` a native upstream is sent.
    fn for_request(body: &Value, headers: &HeaderMap) -> Self;
    /// The body to translate, once what it refers to outside itself is
    /// filled in (the Responses API's stored conversation); as sent by
    /// default.
    fn prepare(
        &mut self,
        _state: &AppState,
        _scope: &Scope,
        body: Value,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send {
        std::future::ready(Ok(body))
    }
    /// The request as a chat request.
    fn to_chat(&self, body: &Value) -> Result<Value, TranslateError>;
    /// A `chat.completion` body as the dialect's answer.
    fn answer(&self, chat: &Value) -> Value;
    /// Sees a whole JSON answer before it is sent, and may keep it (and
    /// say so in it); nothing by default.
    fn finished(&self, _answer: &mut Value) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
    /// A translator for a streamed answer.
    fn stream(self) -> Self::Stream;
}

/// Chat chunk payloads → a dialect's events.
pub(super) trait Translator: Send + 'static {
    fn start(&mut self) -> Vec<Event>;
    /// The events for one payload; an error for one that cannot be read,
    /// which ends the stream with it.
    fn push(&mut self, payload: &[u8]) -> Result<Vec<Event>, ApiError>;
    fn finish(&mut self) -> Vec<Event>;
    fn fail(&mut self, error: &ApiError) -> Vec<Event>;
    /// Roughly what the closing events will hold at once, for a translation
    /// whose last events repeat the whole answer (the Responses API's): a
    /// stream whose close would pass the response limit ends early. None
    /// by default.
    fn closing_bytes(&self) -> usize {
        0
    }
    /// The id the client is given for a translated answer, once the stream
    /// shows it is one (a native stream keeps its upstream's id): spend
    /// logs are looked up by it.
    fn client_id(&self) -> Option<&str> {
        None
    }
    /// Sees the events of a cleanly finished stream before they are sent,
    /// and may keep the answer they carry; nothing by default.
    fn finished(&mut self, _events: &mut [Event]) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A translated model call, inside the request's span; leaves one outcome
/// like the chat route does.
pub(super) async fn call<D: Dialect>(state: AppState, scope: Scope, request: Request) -> Response {
    let ctx = CallContext::client(scope.ctx.clone());
    let outcome = OutcomeHandle::request(&ctx);
    let span = scope.ctx.span.clone();
    let handled = handle::<D>(&state, &scope, &ctx, &outcome, request)
        .instrument(span)
        .await;
    handled.unwrap_or_else(|error| {
        outcome.finish(error.status.as_u16(), Some(error.code_or_type()));
        error.into_response()
    })
}

async fn handle<D: Dialect>(
    state: &AppState,
    scope: &Scope,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    request: Request,
) -> Result<Response, ApiError> {
    let gateway = &scope.gateway;
    let (parts, body) = request.into_parts();
    let bytes = read_body_of(
        &parts.headers,
        body,
        gateway.body_limit,
        gateway.body_timeout,
    )
    .await?;
    let body = parse_json(&bytes);
    super::routes::keep_request_body(ctx, outcome, &bytes, body.is_ok());
    let body = body?;
    drop(bytes);
    super::routes::refuse_native_carriers_in(&body)?;
    let mut dialect = D::for_request(&body, &parts.headers);
    let body = dialect.prepare(state, scope, body).await?;
    let mut chat = dialect.to_chat(&body).map_err(invalid)?;
    carry_settings(&body, &mut chat);
    if chat["model"]
        .as_str()
        .is_some_and(|model| gateway.strategies.profile_for(model).is_some())
    {
        carry_strategy_settings(&body, D::API_FIELDS, &mut chat);
    }
    let req = chat_request(&chat)?;
    drop(body);
    let executed = execute(state, scope, ctx, outcome, Endpoint::ChatCompletions, &req).await?;
    let mut response = match executed.answer {
        Answer::Json(bytes) => {
            let chat: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::upstream_unavailable(format!(
                    "the answer is not JSON and cannot be translated: {e}"
                ))
            })?;
            let mut answer = dialect.answer(&chat);
            dialect.finished(&mut answer).await;
            // Spend logs are looked up by the id the client was given.
            if let Some(id) = answer["id"].as_str() {
                outcome.update(|o| o.response_id = Some(id.to_owned()));
            }
            json_response(Bytes::from(answer.to_string()))
        }
        Answer::Stream(payloads) => {
            let limit = gateway.router.max_response_bytes();
            let translating = (dialect.stream(), outcome.clone());
            event_response(translated(payloads, translating, limit))
        }
    };
    super::routes::add_route_headers(&mut response, executed.headers);
    Ok(response)
}

/// The body as a JSON value, or the 400 naming what is wrong with it: not
/// JSON, or more top-level fields than the chat route takes.
pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            format!(
                "request body is not valid JSON: {}",
                crate::openai::describe_json_error(&e)
            ),
            None,
        )
    })?;
    if body
        .as_object()
        .is_some_and(|fields| fields.len() > MAX_FIELDS)
    {
        return Err(ApiError::invalid(too_many_fields(), None));
    }
    Ok(body)
}

pub(super) fn invalid(error: TranslateError) -> ApiError {
    ApiError::invalid(error.message, error.param.as_deref())
}

/// Puts LiteLLM's request settings the client sent (tags, timeout,
/// retries, cache controls, fallbacks), which no translation knows, onto
/// the chat request, where they are read as on the chat route.
fn carry_settings(body: &Value, chat: &mut Value) {
    let (Some(from), Some(to)) = (body.as_object(), chat.as_object_mut()) else {
        return;
    };
    for field in crate::openai::carried_settings() {
        if let Some(value) = from.get(field) {
            to.entry(field).or_insert_with(|| value.clone());
        }
    }
    // Cache controls in `metadata`, as on the chat route (a top-level
    // `cache` wins), though the API's own `metadata` is not carried.
    if let Some(controls) = from.get("metadata").and_then(|m| m.get("cache")) {
        to.entry("cache").or_insert_with(|| controls.clone());
    }
}

/// Puts the fields of `body` that its API does not define (`api_fields`)
/// onto the chat request for a composite model, whose strategy reads them
/// as settings (`samples`, `council_models`), as on the chat route.
fn carry_strategy_settings(body: &Value, api_fields: &[&str], chat: &mut Value) {
    let (Some(from), Some(to)) = (body.as_object(), chat.as_object_mut()) else {
        return;
    };
    for (field, value) in from {
        if !api_fields.contains(&field.as_str()) {
            to.entry(field.as_str()).or_insert_with(|| value.clone());
        }
    }
}

/// The translated chat request, checked as the chat route checks its body.
fn chat_request(chat: &Value) -> Result<ProxyRequest, ApiError> {
    let text = serde_json::to_vec(chat)
        .map_err(|e| ApiError::invalid(format!("cannot translate the request: {e}"), None))?;
    let req: ProxyRequest =
        serde_json::from_slice(&text).map_err(|e| super::routes::body_error(&e))?;
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid("model must not be empty", Some("model")));
    }
    Ok(req)
}

fn sse(events: &[Event]) -> Bytes {
    Bytes::from(events.iter().map(Event::to_sse).collect::<String>())
}

/// The payload stream as the dialect's SSE text: the start events at once,
/// each payload's events as it arrives, the end (or the error) last. A
/// translation may keep the whole answer (the Responses API's last event
/// carries it), so an answer past `limit` bytes (`max_response_size_mb`,
/// as for an answer read whole) ends the stream with the dialect's error
/// and lets the upstream go.
fn translated<T: Translator>(
    payloads: PayloadStream,
    (mut translator, outcome): (T, OutcomeHandle),
    limit: usize,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let start = sse(&translator.start());
    // The outcome until the client's id is noted on it.
    let state = (payloads, translator, 0usize, Some(outcome));
    let rest = stream::unfold(Some(state), move |state| async move {
        let (mut payloads, mut translator, mut received, mut unnoted) = state?;
        loop {
            match payloads.next().await {
                Some(Ok(payload)) => {
                    received = received.saturating_add(payload.len());
                    if received > limit {
                        let error = too_large(limit);
                        tracing::warn!(%error, "ending a translated stream");
                        return Some((Ok(sse(&translator.fail(&error))), None));
                    }
                    let events = match translator.push(&payload) {
                        Ok(events) => events,
                        Err(error) => {
                            tracing::warn!(%error, "ending a translated stream");
                            return Some((Ok(sse(&translator.fail(&error))), None));
                        }
                    };
                    if let Some(id) = translator.client_id()
                        && let Some(outcome) = unnoted.take()
                    {
                        outcome.update(|o| o.response_id = Some(id.to_owned()));
                    }
                    if translator.closing_bytes() > limit {
                        let error = too_large_to_close(limit);
                        tracing::warn!(%error, "ending a translated stream");
                        return Some((Ok(sse(&translator.fail(&error))), None));
                    }
                    if !events.is_empty() {
                        let state = (payloads, translator, received, unnoted);
                        return Some((Ok(sse(&events)), Some(state)));
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "stream failed after it started; sending an error event");
                    return Some((Ok(sse(&translator.fail(&error))), None));
                }
                None => {
                    let mut events = translator.finish();
                    translator.finished(&mut events).await;
                    return Some((Ok(sse(&events)), None));
                }
            }
        }
    });
    stream::once(async move { Ok(start) }).chain(rest)
}

/// The error that ends a translated stream whose answer grew past `limit`.
fn too_large(limit: usize) -> ApiError {
    response_too_large(format!(
        "the upstream's answer grew past {} MiB (general_settings.max_response_size_mb)",
        limit / (1024 * 1024)
    ))
}

/// The error that ends a translated stream whose closing events, which
/// repeat its answer, would pass `limit`.
fn too_large_to_close(limit: usize) -> ApiError {
    response_too_large(format!(
        "the upstream's answer grew too long to close this stream, whose last \
         events repeat it, within {} MiB (general_settings.max_response_size_mb)",
        limit / (1024 * 1024)
    ))
}

fn response_too_large(message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        message,
        None,
        Some("response_too_large"),
    )
}

fn event_response(
    events: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(events));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
