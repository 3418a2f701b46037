//! OpenAI's Responses API: `POST /v1/responses`, served by translation to
//! chat completions ([`crate::translate::responses`]) or, by an `openai/`
//! deployment that has the Responses API, passed through natively
//! ([`crate::providers::responses`]), and the stored
//! responses behind `previous_response_id`: `GET` and `DELETE
//! /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`
//! ([`crate::keys::responses`] keeps them, each for the key that made it).
//! Errors keep OpenAI's shape. `general_settings.enable_responses_endpoint:
//! false` turns every route off.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::dialect::{Dialect, Translator, call};
use super::error::ApiError;
use super::routes::json_response;
use super::{AppState, Scope};
use crate::keys::{KeyError, ResponseStore};
use crate::openai::unix_now;
use crate::ops::Caller;
use crate::translate::responses::{
    Envelope, NATIVE_FIELD, ResponsesStream, answer_from_chat, continued, conversation,
    duplicate_item_id, failed_response_error, request_to_chat,
};
use crate::translate::{Event, TranslateError, new_id};

#[utoipa::path(
    post,
    path = "/v1/responses",
    operation_id = "create_response",
    tag = "openai",
    summary = "OpenAI Responses API",
    description = "Passed through natively to `openai/` deployments that serve the Responses API \
        (OpenAI's own api_base, or `supports_responses` / `supported_endpoints` in model_info); \
        translated to chat completions for every other upstream and composite profile. \
        With `store` (the default) the answer is kept for `previous_response_id` and \
        `GET /v1/responses/{response_id}`, for the key that made it. \
        Off when `general_settings.enable_responses_endpoint` is false (404).",
    request_body = super::openapi::ResponsesRequest,
    responses(
        (status = 200, description = "A `response` object, or its documented event stream (`response.created` ... `response.completed`) when `stream` is true", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid request", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "Unknown model, unknown `previous_response_id`, or the endpoint is off", body = super::openapi::ErrorResponse),
        (status = 502, description = "The upstream failed", body = super::openapi::ErrorResponse),
        (status = 503, description = "The response store cannot be read", body = super::openapi::ErrorResponse)
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

#[utoipa::path(
    get,
    path = "/v1/responses/{response_id}",
    operation_id = "get_response",
    tag = "openai",
    summary = "A stored response",
    description = "The `response` object as it was answered, for the key that made it.",
    params(("response_id" = String, Path, description = "The response's id (`resp_...`)")),
    responses(
        (status = 200, description = "The stored `response` object", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such response for this key, or the endpoint is off", body = super::openapi::ErrorResponse),
        (status = 503, description = "The response store cannot be read", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// `GET /v1/responses/{response_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    if !scope.gateway.responses_endpoint {
        return super::routes::not_found(request).await;
    }
    let streamed = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "stream=true"));
    if streamed {
        // OpenAI replays a background response's events; responses here are
        // stored once finished, so there is nothing to replay.
        return ApiError::invalid(
            "stream=true is for background responses, which this gateway does not run; \
             retrieve the stored response without it",
            Some("stream"),
        )
        .into_response();
    }
    match stored(&state, &scope, &id).await {
        Ok(found) => json_response(Bytes::from(found.response.to_string())),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/responses/{response_id}",
    operation_id = "delete_response",
    tag = "openai",
    summary = "Delete a stored response",
    params(("response_id" = String, Path, description = "The response's id (`resp_...`)")),
    responses(
        (status = 200, description = "`{id, object: \"response.deleted\", deleted: true}`", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such response for this key, or the endpoint is off", body = super::openapi::ErrorResponse),
        (status = 503, description = "The response store cannot be reached", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// `DELETE /v1/responses/{response_id}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    if !scope.gateway.responses_endpoint {
        return super::routes::not_found(request).await;
    }
    let store = &state.ops.responses;
    if !store.enabled() {
        return not_found(store, &id).into_response();
    }
    match store.delete(&id, &owner(&scope.ctx.caller)).await {
        Ok(true) => {
            let body = json!({"id": id, "object": "response.deleted", "deleted": true});
            json_response(Bytes::from(body.to_string()))
        }
        Ok(false) => not_found(store, &id).into_response(),
        Err(e) => unavailable(&e).into_response(),
    }
}

/// `GET /v1/responses/{response_id}/input_items`: OpenAI's paging.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// 1 to 100; 20 when unset.
    limit: Option<usize>,
    /// `asc` or `desc` (the default).
    order: Option<String>,
    /// Items after the one with this id, in the listing's order.
    after: Option<String>,
    /// Items before the one with this id, in the listing's order: the
    /// page that ends just before it.
    before: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/responses/{response_id}/input_items",
    operation_id = "list_response_input_items",
    tag = "openai",
    summary = "The input items of a stored response",
    description = "The conversation the response answered (earlier turns of a \
        `previous_response_id` chain included), as OpenAI lists it: \
        `{object: list, data, first_id, last_id, has_more}`; `limit` (1 to 100, 20), \
        `order` (`desc` by default, or `asc`), `after` and `before` (item ids) page it.",
    params(
        ("response_id" = String, Path, description = "The response's id (`resp_...`)"),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 100 (20)"),
        ("order" = Option<String>, Query, description = "`desc` (default) or `asc`"),
        ("after" = Option<String>, Query, description = "Items after this item id"),
        ("before" = Option<String>, Query, description = "Items before this item id")
    ),
    responses(
        (status = 200, description = "A list of input items", body = super::openapi::JsonObject),
        (status = 400, description = "An invalid `limit` or `order`", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such response for this key, or the endpoint is off", body = super::openapi::ErrorResponse),
        (status = 503, description = "The response store cannot be read", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// The route handler.
pub async fn list_input_items(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
    request: Request,
) -> Response {
    if !scope.gateway.responses_endpoint {
        return super::routes::not_found(request).await;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => {
            return ApiError::invalid(format!("invalid query: {}", e.body_text()), None)
                .into_response();
        }
    };
    let found = match stored(&state, &scope, &id).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    match list_page(found.input, &query) {
        Ok(page) => json_response(Bytes::from(page.to_string())),
        Err(e) => e.into_response(),
    }
}

/// One page of `items` as OpenAI's list object.
fn list_page(mut items: Vec<Value>, query: &ListQuery) -> Result<Value, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "limit must be between 1 and 100",
            Some("limit"),
        ));
    }
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                format!("order must be asc or desc, got {other:?}"),
                Some("order"),
            ));
        }
    }
    let position = |id: &str, param: &str| {
        // The last item with that id: a conversation stored with a repeated
        // id (refused now, kept before) pages forward instead of in a loop.
        items
            .iter()
            .rposition(|item| item["id"] == id)
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("no input item of this response has the id {id:?}"),
                    Some(param),
                )
            })
    };
    let start = match &query.after {
        Some(after) => position(after, "after")? + 1,
        None => 0,
    };
    let end = match &query.before {
        Some(before) => position(before, "before")?,
        None => items.len(),
    };
    let rest = items.get(start..end.max(start)).unwrap_or_default();
    // Paging back from `before`, the page is the items just before it.
    let skip = match &query.before {
        Some(_) => rest.len().saturating_sub(limit),
        None => 0,
    };
    let page: Vec<Value> = rest.iter().skip(skip).take(limit).cloned().collect();
    Ok(json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": rest.len() > limit,
    }))
}

/// The caller's stored response `id`, or the error to answer.
async fn stored(
    state: &AppState,
    scope: &Scope,
    id: &str,
) -> Result<crate::keys::StoredResponse, ApiError> {
    let store = &state.ops.responses;
    if !store.enabled() {
        return Err(not_found(store, id));
    }
    match store.get(id, &owner(&scope.ctx.caller)).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(not_found(store, id)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Whose stored responses a caller reaches: a virtual key's own (by its
/// hash), the master key's, or, on an open gateway, everyone's.
fn owner(caller: &Caller) -> String {
    match caller {
        Caller::Master => "master".into(),
        Caller::Open => "open".into(),
        Caller::Key(principal) => principal.key.token_hash.clone(),
        // Refused before any route that stores answers runs.
        Caller::Unknown => "unknown".into(),
    }
}

/// 404 for a response this caller has not stored (OpenAI's wording).
fn not_found(store: &ResponseStore, id: &str) -> ApiError {
    let off = if store.enabled() {
        ""
    } else {
        " (stored responses are off: general_settings.store_responses is false)"
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Response with id '{id}' not found.{off}"),
        Some("response_id"),
        Some("response_not_found"),
    )
}

/// 503 for a store that cannot answer.
fn unavailable(error: &KeyError) -> ApiError {
    tracing::warn!(error = %error, "the response store cannot answer");
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable_error",
        format!("the response store cannot be read: {error}"),
        None,
        Some("response_store_unavailable"),
    );
    e.retry_after = Some(std::time::Duration::from_secs(1));
    e
}

/// The Responses dialect: the envelope of the answer being built, and
/// where the answer is kept when it is stored.
struct Responses {
    envelope: Envelope,
    keeper: Option<Keeper>,
    /// The client's `previous_response_id`, echoed by native answers too.
    previous: Value,
    /// Every deployment of the requested group serves the Responses API
    /// natively: a request the chat translation refuses (built-in tools,
    /// item types chat cannot carry) still goes to them.
    native_only: bool,
    /// Some deployment serves it natively, so the request carries its own
    /// body for them ([`NATIVE_FIELD`]).
    carry_native: bool,
}

/// Whether `model` (or the alias naming it) is a plain group whose every
/// deployment serves the Responses API natively.
fn native_only(gateway: &crate::gateway::Gateway, model: &str) -> bool {
    if gateway.strategies.profile_for(model).is_some() {
        return false;
    }
    gateway.router.group_named(model).is_some_and(|g| {
        !g.deployments.is_empty() && g.deployments.iter().all(|d| d.target.serves_responses())
    })
}

/// Sets what the gateway, not the upstream, decides in a natively passed
/// `response` object: whether it is stored (the upstream is sent `store:
/// false`) and the `previous_response_id` the gateway resolved.
fn mark(response: &mut Value, stored: bool, previous: &Value) {
    if let Some(obj) = response.as_object_mut() {
        obj.insert("store".into(), json!(stored));
        if !previous.is_null() {
            obj.insert("previous_response_id".into(), previous.clone());
        }
    }
}

/// Stores a finished answer for its owner with the conversation it answered.
#[derive(Clone)]
struct Keeper {
    store: ResponseStore,
    owner: String,
    input: Arc<Vec<Value>>,
}

impl Keeper {
    /// Stores `answer`; when it cannot be, the answer says `store: false`.
    async fn keep(&self, answer: &mut Value) {
        if !self.store.keep(&self.owner, answer, &self.input).await {
            answer["store"] = json!(false);
        }
    }
}

impl Dialect for Responses {
    type Stream = KeptStream;
    const API_FIELDS: &'static [&'static str] = crate::translate::responses::REQUEST_FIELDS;

    fn for_request(body: &Value, _headers: &http::HeaderMap) -> Self {
        Self {
            envelope: Envelope::new(body, &new_id("resp_"), unix_now()),
            keeper: None,
            previous: body["previous_response_id"].clone(),
            native_only: false,
            carry_native: false,
        }
    }

    /// Resolves `previous_response_id` (the stored conversation goes
    /// first) and decides whether the answer is stored.
    async fn prepare(
        &mut self,
        state: &AppState,
        scope: &Scope,
        body: Value,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Ok(body);
        }
        self.carry_native = scope.gateway.router.serves_native_responses();
        if self.carry_native
            && let Some(model) = body["model"].as_str()
        {
            self.native_only = native_only(&scope.gateway, model);
        }
        let store = &state.ops.responses;
        let owner = owner(&scope.ctx.caller);
        let mut items = match &body["previous_response_id"] {
            Value::Null => Vec::new(),
            Value::String(id) => earlier(store, id, &owner).await?,
            _ => {
                return Err(ApiError::invalid(
                    "previous_response_id must be a string",
                    Some("previous_response_id"),
                ));
            }
        };
        let own = crate::translate::responses::input_items(&body, &self.envelope.id);
        items.extend(own.map_err(invalid)?);
        if let Some(id) = duplicate_item_id(&items) {
            return Err(ApiError::invalid(
                format!(
                    "Duplicate item found with id {id}. Remove duplicate items from your input \
                     (an item of the previous response counts too) and try again."
                ),
                Some("input"),
            ));
        }
        self.envelope.set_store(store.enabled());
        if self.envelope.store() {
            self.keeper = Some(Keeper {
                store: store.clone(),
                owner,
                input: Arc::new(items.clone()),
            });
        }
        Ok(continued(&body, items))
    }

    /// The chat translation, carrying the (resolved) body for deployments
    /// that serve the Responses API, which send it as it is ([`NATIVE_FIELD`]),
    /// when the gateway has any.
    fn to_chat(&self, body: &Value) -> Result<Value, TranslateError> {
        let mut chat = match request_to_chat(body) {
            Ok(chat) => chat,
            // Only native deployments can answer it: the chat fields are
            // a stub (a fallback to a translating group gets no messages).
            Err(_) if self.native_only => {
                crate::translate::responses::check_fields(body)?;
                let stream = body["stream"] == true;
                let mut stub = json!({"model": body["model"], "messages": []});
                if stream {
                    stub["stream"] = json!(true);
                    stub["stream_options"] = json!({"include_usage": true});
                }
                stub
            }
            Err(e) => return Err(e),
        };
        if self.carry_native
            && let Some(map) = chat.as_object_mut()
        {
            // The gateway's settings never go to the upstream.
            let native = crate::openai::native_copy(body);
            map.insert(NATIVE_FIELD.into(), native);
        }
        Ok(chat)
    }

    /// A native `response` passes as it is (but for [`mark`]); a chat
    /// answer is translated.
    fn answer(&self, chat: &Value) -> Value {
        if chat["object"] == "response" {
            let mut answer = chat.clone();
            mark(&mut answer, self.keeper.is_some(), &self.previous);
            return answer;
        }
        answer_from_chat(chat, &self.envelope)
    }

    async fn finished(&self, answer: &mut Value) {
        if let Some(keeper) = &self.keeper {
            keeper.keep(answer).await;
        }
    }

    fn stream(self) -> KeptStream {
        KeptStream {
            events: ResponsesStream::new(self.envelope),
            stored: self.keeper.is_some(),
            keeper: self.keeper,
            previous: self.previous,
            mode: Mode::Unknown,
            held: None,
            native_progress: NativeProgress::default(),
        }
    }
}

/// The conversation of the stored response `id`: its input items, then its
/// output; 404 (OpenAI's) when this caller has none by that id.
async fn earlier(store: &ResponseStore, id: &str, owner: &str) -> Result<Vec<Value>, ApiError> {
    if !store.enabled() {
        return Err(ApiError::invalid(
            "previous_response_id needs stored responses, which general_settings.store_responses: false turns off; send the whole conversation in input",
            Some("previous_response_id"),
        ));
    }
    match store.get(id, owner).await {
        Ok(Some(found)) => Ok(conversation(found.input, &found.response)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Previous response with id '{id}' not found."),
            Some("previous_response_id"),
            Some("previous_response_not_found"),
        )),
        Err(e) => Err(unavailable(&e)),
    }
}

fn invalid(error: TranslateError) -> ApiError {
    ApiError::invalid(error.message, error.param.as_deref())
}

/// Whether a stream's payloads are chat chunks (translated) or the
/// Responses API's own events (passed through), known from the first one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Native,
    Translated,
}

/// The Responses stream: a native deployment's events as they came, or
/// chat chunks translated; its final response is kept when it ends cleanly.
struct KeptStream {
    events: ResponsesStream,
    keeper: Option<Keeper>,
    /// Native events' `response.store` (see [`mark`]).
    stored: bool,
    previous: Value,
    mode: Mode,
    /// A native `response.completed` (or `.incomplete`), sent at the end
    /// once it is stored.
    held: Option<Event>,
    /// What a native stream has said so far, for its failure events.
    native_progress: NativeProgress,
}

/// A native stream's lifecycle so far: a failure the gateway reports must
/// name the upstream's response and continue its numbering, or clients that
/// check a stream's identity (the `openai` SDK's stream helper) reject it.
#[derive(Default)]
struct NativeProgress {
    /// The response as the stream opened it (`response.created` or
    /// `.in_progress`, which carry no output yet).
    response: Option<Value>,
    /// The latest event's `sequence_number`.
    sequence: Option<u64>,
}

impl NativeProgress {
    fn saw(&mut self, name: &str, data: &Value) {
        if let Some(n) = data["sequence_number"].as_u64() {
            self.sequence = Some(n);
        }
        // Only the opening events: the final one carries the whole answer,
        // and after it there is nothing left to fail.
        if matches!(name, "response.created" | "response.in_progress")
            && data["response"].is_object()
        {
            self.response = Some(data["response"].clone());
        }
    }

    /// `response.failed` and `error`, numbered after the last event. The
    /// items streamed before the failure reached the client as events and
    /// are not repeated, as on the translated path.
    fn fail(&mut self, status: u16, code: &str, message: &str) -> Vec<Event> {
        let mut response = self.response.take().unwrap_or_else(|| json!({}));
        if let Some(obj) = response.as_object_mut() {
            obj.insert("status".into(), json!("failed"));
            // Only finished answers are kept: a failed one is not.
            obj.insert("store".into(), json!(false));
            obj.insert("output".into(), json!([]));
            obj.insert("error".into(), failed_response_error(status, message));
        }
        let next = self.sequence.map_or(0, |n| n.saturating_add(1));
        vec![
            Event::new(
                "response.failed",
                json!({"type": "response.failed", "sequence_number": next, "response": response}),
            ),
            Event::new(
                "error",
                json!({"type": "error", "sequence_number": next.saturating_add(1),
                       "code": code, "message": message, "param": null}),
            ),
        ]
    }
}

impl KeptStream {
    /// A native event payload as the event it came in, marked.
    fn native(&mut self, payload: &[u8]) -> Result<Vec<Event>, ApiError> {
        let mut data = serde_json::from_slice::<Value>(payload).map_err(|e| {
            ApiError::upstream_unavailable(format!(
                "the upstream sent a stream event that cannot be read ({e})"
            ))
        })?;
        let name = data["type"].as_str().unwrap_or("message").to_owned();
        if data["response"].is_object() {
            mark(&mut data["response"], self.stored, &self.previous);
        }
        self.native_progress.saw(&name, &data);
        let event = Event { name, data };
        if is_final(&event.name) {
            self.held = Some(event);
            return Ok(Vec::new());
        }
        Ok(vec![event])
    }
}

/// Whether `name` is the event that carries the finished response.
fn is_final(name: &str) -> bool {
    name == "response.completed" || name == "response.incomplete"
}

/// Whether a stream's first payload is a Responses event rather than a
/// chat chunk.
fn is_native_event(payload: &[u8]) -> bool {
    crate::providers::responses::event_type(payload)
        .is_some_and(|kind| kind.starts_with("response.") || kind == "error")
}

impl Translator for KeptStream {
    /// Nothing yet: the first payload tells a native stream (which has its
    /// own opening events) from a translated one.
    fn start(&mut self) -> Vec<Event> {
        Vec::new()
    }

    fn client_id(&self) -> Option<&str> {
        (self.mode == Mode::Translated).then_some(self.events.envelope.id.as_str())
    }

    fn push(&mut self, payload: &[u8]) -> Result<Vec<Event>, ApiError> {
        if self.mode == Mode::Unknown {
            if is_native_event(payload) {
                self.mode = Mode::Native;
            } else {
                self.mode = Mode::Translated;
                let mut events = self.events.start();
                events.extend(
                    self.events
                        .push(payload)
                        .map_err(ApiError::upstream_unavailable)?,
                );
                return Ok(events);
            }
        }
        match self.mode {
            Mode::Native => self.native(payload),
            _ => self
                .events
                .push(payload)
                .map_err(ApiError::upstream_unavailable),
        }
    }

    fn finish(&mut self) -> Vec<Event> {
        match self.mode {
            Mode::Native => self.held.take().into_iter().collect(),
            Mode::Translated => self.events.finish(),
            Mode::Unknown => {
                let mut events = self.events.start();
                events.extend(self.events.finish());
                events
            }
        }
    }

    /// A native stream's events pass as they come (only its opening
    /// response and final event are kept).
    fn closing_bytes(&self) -> usize {
        match self.mode {
            Mode::Native => 0,
            _ => self.events.closing_bytes(),
        }
    }

    fn fail(&mut self, error: &ApiError) -> Vec<Event> {
        let (status, code) = (error.status.as_u16(), error.code_or_type());
        let message = &error.body.error.message;
        if self.mode == Mode::Native {
            return self.native_progress.fail(status, code, message);
        }
        let mut events = if self.mode == Mode::Unknown {
            self.events.start()
        } else {
            Vec::new()
        };
        events.extend(self.events.fail(status, code, message));
        events
    }

    /// Stores the response of `response.completed` (or
    /// `response.incomplete`) before that event is sent.
    async fn finished(&mut self, events: &mut [Event]) {
        let Some(keeper) = &self.keeper else {
            return;
        };
        let last = events.iter_mut().rev().find(|e| is_final(&e.name));
        if let Some(event) = last {
            keeper.keep(&mut event.data["response"]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Value) -> Vec<&str> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn input_items_page_after_and_before_an_item() {
        let items: Vec<Value> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| json!({"id": id}))
            .collect();
        let query = |after: Option<&str>, before: Option<&str>| ListQuery {
            limit: Some(2),
            order: Some("asc".into()),
            after: after.map(Into::into),
            before: before.map(Into::into),
        };
        let page = list_page(items.clone(), &query(Some("a"), None)).unwrap();
        assert_eq!(
            (ids(&page), &page["has_more"]),
            (vec!["b", "c"], &json!(true))
        );
        let page = list_page(items.clone(), &query(None, Some("d"))).unwrap();
        assert_eq!(
            (ids(&page), &page["has_more"]),
            (vec!["b", "c"], &json!(true))
        );
        let page = list_page(items.clone(), &query(Some("a"), Some("c"))).unwrap();
        assert_eq!((ids(&page), &page["has_more"]), (vec!["b"], &json!(false)));
        let unknown = list_page(items, &query(None, Some("zz"))).unwrap_err();
        assert_eq!(unknown.body.error.param.as_deref(), Some("before"));
    }
}
