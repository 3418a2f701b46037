//! OpenAI's Responses API ⇄ chat completions.
//!
//! [`request_to_chat`] turns a `POST /v1/responses` body into a chat request,
//! [`answer_from_chat`] a `chat.completion` into a `response` object, and
//! [`ResponsesStream`] chat chunk payloads into the Responses stream events.
//! docs/translation.md lists what is kept, mapped and dropped.

use serde_json::{Map, Value, json};

use super::{
    ChatAnswer, Event, Kind, TokenUsage, TranslateError, chat_tool, check_kinds, copy, parse_chunk,
};

/// The chat request field that carries a Responses client's body (its
/// stored conversation already resolved, set by the `/v1/responses` route):
/// an `openai/` deployment that serves the Responses API sends that body to
/// `{api_base}/responses` and answers natively; every other target leaves
/// the field out, and composite strategies never see it.
pub const NATIVE_FIELD: &str = "conclave_native_responses";

/// Fields of a Responses body that are the gateway's, never sent upstream:
/// its cache controls.
const GATEWAY_FIELDS: &[&str] = &["cache", "caching"];

/// The Responses body a chat request carries, as the upstream request:
/// `model` set to `model`, `stream` to `stream`, `store: false` (the gateway
/// keeps the conversation, and has already put a `previous_response_id`'s
/// items into `input`), the gateway's own fields and `background` left out,
/// reasoning items without `encrypted_content` dropped from `input` and
/// the other items' ids left out, everything else as the client sent it.
pub fn native_request(native: &Value, model: &str, stream: bool) -> Option<Value> {
    let mut body = native.as_object()?.clone();
    body.insert("model".into(), json!(model));
    if stream {
        body.insert("stream".into(), json!(true));
    } else {
        body.remove("stream");
    }
    body.insert("store".into(), json!(false));
    body.remove("previous_response_id");
    // The gateway answers at once (see `background` in the translation
    // docs): an upstream queueing the response would leave it unfinished.
    body.remove("background");
    for field in GATEWAY_FIELDS {
        body.remove(*field);
    }
    // With `store: false` the upstream keeps no items, so a reasoning item
    // only it could resolve (no `encrypted_content` to carry it) is refused
    // there: such items, from earlier turns, are left out, as are those
    // carrying another model's thinking, which it could not read.
    if let Some(Value::Array(input)) = body.get_mut("input") {
        input.retain(|item| {
            item["type"] != "reasoning"
                || (item.get("encrypted_content").is_some_and(|c| c.is_string())
                    && carried_thinking(item).is_none())
        });
        // Nor does it know the items' ids (the gateway's, or those of
        // answers it did not keep): an input item with an id it cannot find
        // is refused, so the items go by their content alone. An
        // `item_reference` is nothing but its id and is left as sent.
        for item in input.iter_mut().filter_map(Value::as_object_mut) {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                item.remove("id");
            }
        }
    }
    Some(Value::Object(body))
}

/// A failed response's `error`: its `code` one of those OpenAI documents
/// (clients may read it as an enum), the gateway's own code staying in the
/// `error` event beside it.
pub fn failed_response_error(status: u16, message: &str) -> Value {
    let code = if status == 429 {
        "rate_limit_exceeded"
    } else {
        "server_error"
    };
    json!({"code": code, "message": message})
}

/// The Responses API's top-level request fields (those a composite's
/// strategy is not handed as settings), the gateway's cache controls
/// among them.
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "previous_response_id",
    "conversation",
    "store",
    "stream",
    "stream_options",
    "text",
    "reasoning",
    "metadata",
    "user",
    "truncation",
    "include",
    "background",
    "service_tier",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "cache",
    "caching",
];

/// A Responses request as a chat completions request (a JSON object).
pub fn request_to_chat(body: &Value) -> Result<Value, TranslateError> {
    check_fields(body)?;
    if !body["previous_response_id"].is_null() {
        // The HTTP layer resolves it against the response store first
        // ([`continued`]); an id left here was never looked up.
        return Err(TranslateError::new(
            "previous_response_id cannot be resolved here: the response store was not consulted",
            "previous_response_id",
        ));
    }
    let mut chat = Map::new();
    copy(body, "model", &mut chat, "model");
    let mut messages = Vec::new();
    if let Some(instructions) = body["instructions"].as_str() {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match &body["input"] {
        Value::String(text) => messages.push(json!({"role": "user", "content": text})),
        Value::Array(items) => {
            for item in items {
                input_item(item, &mut messages)?;
            }
        }
        _ => {
            return Err(TranslateError::new(
                "input must be a string or a list of items",
                "input",
            ));
        }
    }
    if messages.is_empty() {
        return Err(TranslateError::new(
            "input must hold at least one item",
            "input",
        ));
    }
    chat.insert("messages".into(), Value::Array(messages));
    options_to_chat(body, &mut chat)?;
    Ok(Value::Object(chat))
}

/// The fields OpenAI types strictly, checked before translating (and before
/// passing a request through natively): a malformed request is refused
/// naming its field, never read as something else (`"store": "no"` as
/// storing, `"stream": "yes"` as not streaming).
pub fn check_fields(body: &Value) -> Result<(), TranslateError> {
    if !body.is_object() {
        return Err(TranslateError::new(
            "the body must be a JSON object",
            "body",
        ));
    }
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err(TranslateError::new("model must be a model name", "model"));
    }
    // The model would answer without the conversation's earlier turns.
    if !body["conversation"].is_null() {
        return Err(TranslateError::new(
            "conversation is not supported here; continue an answer with \
             previous_response_id, or send the earlier turns in input",
            "conversation",
        ));
    }
    check_kinds(
        body,
        &[
            ("stream", Kind::Boolean),
            ("store", Kind::Boolean),
            ("parallel_tool_calls", Kind::Boolean),
            ("background", Kind::Boolean),
            ("temperature", Kind::Number),
            ("top_p", Kind::Number),
            ("max_output_tokens", Kind::PositiveInteger),
            ("instructions", Kind::Text),
            ("user", Kind::Text),
            ("previous_response_id", Kind::Text),
            ("metadata", Kind::Object),
        ],
    )
}

/// The request's `input` as a list of items: a string is one user message
/// item. An item sent without an `id` gets one derived from `response_id`
/// (`msg_<id>_in<n>`, by item type), and an item with a `role` but no
/// `type` is a `message`, so a stored conversation lists and pages as
/// OpenAI's does. Checked the way [`request_to_chat`] reads it.
pub fn input_items(body: &Value, response_id: &str) -> Result<Vec<Value>, TranslateError> {
    let mut items = match &body["input"] {
        Value::String(text) => vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        })],
        Value::Array(items) => items.clone(),
        _ => {
            return Err(TranslateError::new(
                "input must be a string or a list of items",
                "input",
            ));
        }
    };
    let suffix = response_id.trim_start_matches("resp_");
    for (n, item) in items.iter_mut().enumerate() {
        let Some(obj) = item.as_object_mut() else {
            return Err(TranslateError::new(
                "an input item must be an object",
                "input",
            ));
        };
        if !obj.contains_key("type") && obj.contains_key("role") {
            obj.insert("type".into(), json!("message"));
        }
        if obj.get("type").and_then(Value::as_str) == Some("message") {
            as_listed_message(obj);
        }
        if obj.get("id").is_none_or(Value::is_null) {
            let prefix = match obj.get("type").and_then(Value::as_str) {
                Some("message") => "msg",
                Some("function_call") => "fc",
                Some("function_call_output") => "fco",
                Some("reasoning") => "rs",
                _ => "item",
            };
            obj.insert("id".into(), json!(format!("{prefix}_{suffix}_in{n}")));
        }
    }
    Ok(items)
}

/// A message item as OpenAI lists it: its content a list of parts (a
/// string becomes one `input_text` part, `output_text` for an assistant),
/// and a `status`.
fn as_listed_message(obj: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = obj.get("content") {
        let kind = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        let part = if kind == "output_text" {
            json!({"type": kind, "text": text, "annotations": []})
        } else {
            json!({"type": kind, "text": text})
        };
        obj.insert("content".into(), json!([part]));
    }
    obj.entry("status").or_insert_with(|| json!("completed"));
}

/// The conversation a stored response continues: the input items it was
/// answered from, then its output items.
pub fn conversation(mut input: Vec<Value>, response: &Value) -> Vec<Value> {
    if let Some(output) = response["output"].as_array() {
        input.extend(output.iter().cloned());
    }
    input
}

/// The first id two items of a conversation share, if any. OpenAI refuses
/// such input, and a stored conversation with one could not be paged by id.
pub fn duplicate_item_id(items: &[Value]) -> Option<&str> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items
        .iter()
        .filter_map(|item| item["id"].as_str())
        .find(|id| !seen.insert(*id))
}

/// `body` with `items` as its whole input and `previous_response_id`
/// resolved (removed). Everything else, `instructions` included, is the
/// request's own: an earlier response's instructions are not carried over
/// (OpenAI's rule).
pub fn continued(body: &Value, items: Vec<Value>) -> Value {
    let mut body = body.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.remove("previous_response_id");
        obj.insert("input".into(), Value::Array(items));
    }
    body
}

/// Everything but the conversation: tools, sampling, format, reasoning.
fn options_to_chat(body: &Value, chat: &mut Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        chat.insert("tools".into(), tools_to_chat(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|t| !t.is_null()) {
        chat.insert("tool_choice".into(), tool_choice_to_chat(choice)?);
    }
    for key in [
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "metadata",
        "parallel_tool_calls",
    ] {
        copy(body, key, chat, key);
    }
    copy(body, "max_output_tokens", chat, "max_tokens");
    if let Some(format) = response_format(&body["text"]["format"])? {
        chat.insert("response_format".into(), format);
    }
    copy(&body["reasoning"], "effort", chat, "reasoning_effort");
    if body["stream"].as_bool() == Some(true) {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(())
}

/// One input item appended to the chat messages.
fn input_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), TranslateError> {
    match item["type"].as_str() {
        None | Some("message") => {
            let mut message = message_item(item)?;
            match messages.last_mut() {
                Some(last) if message["role"] == "assistant" && thinking_only(last) => {
                    last["content"] = message["content"].take();
                }
                _ => messages.push(message),
            }
        }
        Some("function_call") => {
            for field in ["call_id", "name", "arguments"] {
                required_text(item, "function_call", field)?;
            }
            let call = json!({
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            });
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    if !last["tool_calls"].is_array() {
                        last["tool_calls"] = json!([]);
                    }
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        Some("function_call_output") => tool_output(messages, item)?,
        // Signed thinking the gateway gave an earlier answer goes back with
        // the assistant turn that follows it, as Anthropic needs it.
        Some("reasoning") => {
            if let Some(blocks) = carried_thinking(item) {
                messages
                    .push(json!({"role": "assistant", "content": null, "thinking_blocks": blocks}));
            }
        }
        Some(other) => {
            return Err(TranslateError::new(
                format!("input item type {other:?} is not supported"),
                "input",
            ));
        }
    }
    Ok(())
}

/// The field of `encrypted_content` that holds the thinking blocks a
/// reasoning item carries (see [`reasoning_item`]).
const CARRIED_THINKING: &str = "conclave_thinking_blocks";

/// The thinking blocks a reasoning item of the gateway's carries in its
/// `encrypted_content`; `None` for any other item (OpenAI's own content is
/// opaque, never this JSON).
fn carried_thinking(item: &Value) -> Option<Vec<Value>> {
    let content = item["encrypted_content"].as_str()?;
    let mut carried: Value = serde_json::from_str(content).ok()?;
    match carried.get_mut(CARRIED_THINKING)?.take() {
        Value::Array(blocks) => Some(blocks),
        _ => None,
    }
}

/// Whether `message` is an assistant turn holding only thinking, waiting
/// for the text that follows it.
fn thinking_only(message: &Value) -> bool {
    message["role"] == "assistant"
        && message["content"].is_null()
        && message.get("tool_calls").is_none()
        && message.get("thinking_blocks").is_some()
}

/// The string `field` of an input item of type `kind`, which OpenAI
/// requires; a 400 naming both when it is missing or not a string.
fn required_text<'a>(item: &'a Value, kind: &str, field: &str) -> Result<&'a str, TranslateError> {
    item[field].as_str().ok_or_else(|| {
        TranslateError::new(
            format!("an input of type {kind:?} needs a string {field:?}"),
            "input",
        )
    })
}

/// A message item: text parts become text (one string for an assistant),
/// `input_image` an `image_url` part.
fn message_item(item: &Value) -> Result<Value, TranslateError> {
    let role = match item["role"].as_str() {
        Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
        _ => {
            return Err(TranslateError::new(
                "a message item needs role user, assistant, system or developer",
                "input",
            ));
        }
    };
    let parts = match &item["content"] {
        Value::String(s) => return Ok(json!({"role": role, "content": s})),
        Value::Array(parts) => parts,
        _ => {
            return Err(TranslateError::new(
                "message content must be a string or a list of parts",
                "input",
            ));
        }
    };
    let mut out = Vec::new();
    for part in parts {
        match part["type"].as_str() {
            Some(kind @ ("input_text" | "output_text" | "text")) => {
                let text = required_text(part, kind, "text")?;
                out.push(json!({"type": "text", "text": text}));
            }
            Some("input_image") => out.push(image_part(part)?),
            // A refusal replayed from an earlier answer is that answer's text.
            Some("refusal") => {
                out.push(json!({"type": "text", "text": part["refusal"]}));
            }
            Some(other) => {
                return Err(TranslateError::new(
                    format!("content part type {other:?} is not supported"),
                    "input",
                ));
            }
            None => {}
        }
    }
    let all_text = out.iter().all(|p| p["type"] == "text");
    if all_text && (role != "user" || out.len() == 1) {
        let text: String = out.iter().filter_map(|p| p["text"].as_str()).collect();
        return Ok(json!({"role": role, "content": text}));
    }
    Ok(json!({"role": role, "content": out}))
}

/// An `input_image` part as chat's `image_url` part.
fn image_part(part: &Value) -> Result<Value, TranslateError> {
    if !part["image_url"].is_string() {
        return Err(TranslateError::new(
            "an input_image needs an image_url (a URL or a data: URL); \
             file_id images are not supported",
            "input",
        ));
    }
    let mut image = Map::new();
    copy(part, "image_url", &mut image, "url");
    copy(part, "detail", &mut image, "detail");
    Ok(json!({"type": "image_url", "image_url": image}))
}

/// A `function_call_output` as chat's tool message, and the images it
/// holds, which a tool message cannot: they go in a user message after the
/// turn's tool messages (as the Messages translation does).
fn tool_output(messages: &mut Vec<Value>, item: &Value) -> Result<(), TranslateError> {
    let call_id = required_text(item, "function_call_output", "call_id")?;
    let mut images = Vec::new();
    let content = match &item["output"] {
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for part in parts {
                match part["type"].as_str() {
                    Some(kind @ ("input_text" | "output_text" | "text")) => {
                        texts.push(required_text(part, kind, "text")?);
                    }
                    Some("input_image") => images.push(image_part(part)?),
                    other => {
                        return Err(TranslateError::new(
                            format!(
                                "a function_call_output part of type {} is not supported \
                                 (text and input_image are)",
                                other.map_or("(none)".to_owned(), |o| format!("{o:?}"))
                            ),
                            "input",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        other => output_text(other),
    };
    let tool = json!({"tool_call_id": call_id, "role": "tool", "content": content});
    // An earlier output's images already follow this turn's tool messages.
    let n = messages.len();
    let images_held =
        n >= 2 && messages[n - 2]["role"] == "tool" && is_image_carrier(&messages[n - 1]);
    if images_held {
        messages.insert(n - 1, tool);
        if let Some(parts) = messages[n]["content"].as_array_mut() {
            parts.extend(images);
        }
    } else {
        messages.push(tool);
        if !images.is_empty() {
            messages.push(json!({"role": "user", "content": images}));
        }
    }
    Ok(())
}

/// Whether `message` is a user message of images alone: the one a turn's
/// tool outputs put their images in.
fn is_image_carrier(message: &Value) -> bool {
    message["role"] == "user"
        && message["content"]
            .as_array()
            .is_some_and(|parts| parts.iter().all(|p| p["type"] == "image_url"))
}

/// A function call's output that is not a list of parts, as text: a
/// string as it is, any other JSON written out.
fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tools_to_chat(tools: &Value) -> Result<Value, TranslateError> {
    let Some(tools) = tools.as_array() else {
        return Err(TranslateError::new("tools must be an array", "tools"));
    };
    tools
        .iter()
        .map(|tool| {
            if tool["type"] != "function" {
                return Err(TranslateError::new(
                    format!(
                        "tool type {} is not supported: only function tools",
                        tool["type"]
                    ),
                    "tools",
                ));
            }
            let mut chat = chat_tool(&tool["name"], &tool["description"], &tool["parameters"]);
            if let Some(strict) = tool.get("strict").filter(|s| !s.is_null()) {
                chat["function"]["strict"] = strict.clone();
            }
            Ok(chat)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `tool_choice` in chat's shape: a mode string as it is, a named function,
/// or `allowed_tools` (its function tools named chat's way); any other
/// choice names a tool a chat request cannot carry.
fn tool_choice_to_chat(choice: &Value) -> Result<Value, TranslateError> {
    if choice.is_string() {
        return Ok(choice.clone());
    }
    match choice["type"].as_str() {
        Some("function") => Ok(json!({"type": "function", "function": {"name": choice["name"]}})),
        Some("allowed_tools") => {
            let tools: Vec<Value> = choice["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| match t["type"].as_str() {
                    Some("function") => {
                        Ok(json!({"type": "function", "function": {"name": t["name"]}}))
                    }
                    other => Err(TranslateError::new(
                        format!(
                            "tool_choice.tools may name function tools only, got {}",
                            other.unwrap_or("(none)")
                        ),
                        "tool_choice",
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(json!({
                "type": "allowed_tools",
                "allowed_tools": {"mode": choice["mode"].as_str().unwrap_or("auto"), "tools": tools},
            }))
        }
        other => Err(TranslateError::new(
            format!(
                "tool_choice of type {} is not supported: only auto, none, required, a function or allowed_tools",
                other.unwrap_or("(none)")
            ),
            "tool_choice",
        )),
    }
}

/// `text.format` as a chat `response_format` (`text` needs none); a
/// `json_schema` format needs its `name` and `schema`, as OpenAI's does.
fn response_format(format: &Value) -> Result<Option<Value>, TranslateError> {
    let Some(kind) = format["type"].as_str() else {
        return Ok(None);
    };
    Ok(match kind {
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            if format["name"].as_str().is_none_or(str::is_empty) || !format["schema"].is_object() {
                return Err(TranslateError::new(
                    "a json_schema format needs a name and a schema (a JSON object)",
                    "text.format",
                ));
            }
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                copy(format, key, &mut schema, key);
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => None,
    })
}

/// What a `response` object says besides its output: its id, time, model
/// and the request's settings echoed back.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    echo: Map<String, Value>,
}

impl Envelope {
    /// The envelope of the answer to `request`.
    pub fn new(request: &Value, id: &str, created_at: u64) -> Self {
        let mut echo = Map::new();
        let defaults = [
            ("instructions", Value::Null),
            ("max_output_tokens", Value::Null),
            ("metadata", json!({})),
            ("parallel_tool_calls", json!(true)),
            ("previous_response_id", Value::Null),
            ("temperature", Value::Null),
            ("text", json!({"format": {"type": "text"}})),
            ("tool_choice", json!("auto")),
            ("tools", json!([])),
            ("top_p", Value::Null),
            ("user", Value::Null),
        ];
        for (key, default) in defaults {
            let value = request.get(key).filter(|v| !v.is_null()).cloned();
            echo.insert(key.to_owned(), value.unwrap_or(default));
        }
        echo.insert(
            "store".into(),
            json!(request["store"].as_bool() != Some(false)),
        );
        let effort = request["reasoning"]["effort"].clone();
        echo.insert(
            "reasoning".into(),
            json!({"effort": effort, "summary": null}),
        );
        Self {
            id: id.to_owned(),
            created_at,
            model: request["model"].as_str().unwrap_or_default().to_owned(),
            echo,
        }
    }

    /// Says whether the answer is kept: false when the gateway will not
    /// store it whatever the request asked.
    pub fn set_store(&mut self, store: bool) {
        let asked = self.store();
        self.echo.insert("store".into(), json!(asked && store));
    }

    /// Whether the answer is to be kept: the request did not say
    /// `store: false` (OpenAI's default is to store).
    pub fn store(&self) -> bool {
        self.echo.get("store").and_then(Value::as_bool) == Some(true)
    }

    /// An output item's id: `<prefix>_<response id suffix>_<output index>`.
    fn item_id(&self, prefix: &str, output_index: usize) -> String {
        format!(
            "{prefix}_{}_{output_index}",
            self.id.trim_start_matches("resp_")
        )
    }

    /// The `response` object with this status, output and usage.
    fn response(&self, status: &str, output: &[Value], ending: &Ending) -> Value {
        let mut r = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": ending.error,
            "incomplete_details": ending.incomplete.map(|reason| json!({"reason": reason})),
            "model": self.model,
            "output": output,
            "truncation": "disabled",
            "usage": ending.usage.map(usage),
        });
        if let Some(obj) = r.as_object_mut() {
            obj.extend(self.echo.clone());
        }
        r
    }
}

/// How a response ended: why it is incomplete, its error, its usage.
#[derive(Debug, Default)]
struct Ending {
    incomplete: Option<&'static str>,
    error: Value,
    usage: Option<TokenUsage>,
}

fn usage(u: TokenUsage) -> Value {
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input.saturating_add(u.output),
    })
}

/// A status and, for `incomplete`, its reason, from a chat finish reason.
fn status_of(finish_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish_reason {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// A `chat.completion` body as a `response` object.
pub fn answer_from_chat(chat: &Value, envelope: &Envelope) -> Value {
    let answer = ChatAnswer::read(chat);
    let mut output = Vec::new();
    if !answer.reasoning.is_empty() || !answer.thinking_blocks.is_empty() {
        output.push(reasoning_item(
            envelope.item_id("rs", output.len()),
            &answer.reasoning,
            &answer.thinking_blocks,
        ));
    }
    // Text, then a refusal, in the order a stream gives them.
    let nothing_else = answer.tool_calls.is_empty() && answer.refusal.is_empty();
    if !answer.content.is_empty() || nothing_else {
        output.push(message_output(
            envelope.item_id("msg", output.len()),
            &answer.content,
            "completed",
        ));
    }
    if !answer.refusal.is_empty() {
        output.push(refusal_output(
            envelope.item_id("msg", output.len()),
            &answer.refusal,
            "completed",
        ));
    }
    for (call_id, name, arguments) in &answer.tool_calls {
        let id = envelope.item_id("fc", output.len());
        // An upstream that gives a call no id gets one, as in a stream: a
        // function_call_output must name the call it answers.
        let call_id = match call_id.as_str() {
            "" => format!("call_{id}"),
            given => given.to_owned(),
        };
        // A tool without arguments: `{}`, as a stream gives it.
        let arguments = if arguments.is_empty() {
            "{}"
        } else {
            arguments
        };
        output.push(function_call_item(
            id,
            &call_id,
            name,
            arguments,
            "completed",
        ));
    }
    let (status, incomplete) = status_of(answer.finish_reason.as_deref());
    if incomplete.is_some() {
        // The cut item is the last one.
        if let Some(last) = output.last_mut().filter(|i| i["type"] != "reasoning") {
            last["status"] = json!("incomplete");
        }
    }
    let ending = Ending {
        incomplete,
        error: Value::Null,
        usage: Some(answer.usage),
    };
    envelope.response(status, &output, &ending)
}

/// A reasoning item. Signed thinking (an Anthropic model's, which it needs
/// back with the next turn) rides in `encrypted_content`, the field a
/// Responses client gives back untouched.
fn reasoning_item(id: String, text: &str, thinking: &[Value]) -> Value {
    let mut item = json!({
        "type": "reasoning", "id": id, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    });
    if !thinking.is_empty() {
        let mut carried = Map::new();
        carried.insert(CARRIED_THINKING.into(), Value::Array(thinking.to_vec()));
        item["encrypted_content"] = json!(Value::Object(carried).to_string());
    }
    item
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_output(id: String, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [output_text_part(text)],
    })
}

fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

/// A message whose content is the model's refusal, as OpenAI gives one.
fn refusal_output(id: String, refusal: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [refusal_part(refusal)],
    })
}

fn function_call_item(
    id: String,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id,
        "name": name, "arguments": arguments, "status": status,
    })
}

/// The output item a stream has open.
#[derive(Debug)]
enum Open {
    Reasoning {
        text: String,
        thinking: Vec<Value>,
    },
    Message {
        text: String,
    },
    /// A message holding the model's refusal.
    Refusal {
        text: String,
    },
    /// A function call, by its index in the chat choice.
    Call {
        index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Chat chunk payloads → Responses stream events, each with its `type` and
/// a `sequence_number` counting from 0. Items are sequential: a delta of
/// another kind (or another call) finishes the open item first.
#[derive(Debug)]
pub struct ResponsesStream {
    pub envelope: Envelope,
    sequence: u64,
    output: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    /// The status an item gets when it is done (`incomplete` for the item
    /// open when a cut answer ends).
    item_status: &'static str,
    calls: super::CallOrder,
    /// Bytes of text, reasoning and call arguments kept so far.
    kept: usize,
}

/// How many times the closing events hold an answer's text at once: in
/// `.done`, `content_part.done`, `output_item.done` and the final
/// response, as values and as the SSE text written from them, besides the
/// items kept for the final response (measured: about 13 for a long text).
const CLOSING_COPIES: usize = 14;

impl ResponsesStream {
    /// A translator for the answer described by `envelope`.
    pub fn new(envelope: Envelope) -> Self {
        Self {
            envelope,
            sequence: 0,
            output: Vec::new(),
            open: None,
            finish_reason: None,
            usage: None,
            item_status: "completed",
            calls: super::CallOrder::default(),
            kept: 0,
        }
    }

    /// Roughly the bytes its closing events will hold at once.
    pub fn closing_bytes(&self) -> usize {
        self.kept.saturating_mul(CLOSING_COPIES)
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<Event> {
        let response = self
            .envelope
            .response("in_progress", &[], &Ending::default());
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    /// The events for one chunk payload; an error for one that cannot be
    /// read, which ends the stream.
    pub fn push(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let mut chunk = parse_chunk(payload)?;
        let mut events = Vec::new();
        self.calls.hold_prose(&mut chunk);
        if let Some(delta) = chunk.reasoning {
            self.reasoning_delta(&delta, &mut events);
        }
        if !chunk.thinking_blocks.is_empty() {
            self.open_reasoning(&mut events);
            if let Some(Open::Reasoning { thinking, .. }) = &mut self.open {
                thinking.extend(chunk.thinking_blocks);
            }
        }
        if let Some(delta) = chunk.content {
            self.text_delta(&delta, &mut events);
        }
        if let Some(delta) = chunk.refusal {
            self.refusal_delta(&delta, &mut events);
        }
        for call in self.calls.take(chunk.tool_calls) {
            self.call_delta(call, &mut events);
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        Ok(events)
    }

    /// A clean end: the open item done, then `response.completed` (or
    /// `response.incomplete` when the answer was cut).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let (status, incomplete) = status_of(self.finish_reason.as_deref());
        if incomplete.is_some() {
            self.item_status = "incomplete";
        }
        let (reasoning, text) = self.calls.finish_prose();
        if let Some(delta) = reasoning {
            self.reasoning_delta(&delta, &mut events);
        }
        if let Some(delta) = text {
            self.text_delta(&delta, &mut events);
        }
        for call in self.calls.finish() {
            self.call_delta(call, &mut events);
        }
        self.close(&mut events);
        let ending = Ending {
            incomplete,
            error: Value::Null,
            usage: self.usage.or(Some(TokenUsage::default())),
        };
        let response = self.envelope.response(status, &self.output, &ending);
        let name = if incomplete.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(self.event(name, json!({"response": response})));
        events
    }

    /// A broken stream (a failure answered with `status`): `response.failed`
    /// with the error, then `error`.
    pub fn fail(&mut self, status: u16, code: &str, message: &str) -> Vec<Event> {
        // Only finished answers are kept: a failed one must not claim it is.
        self.envelope.set_store(false);
        let ending = Ending {
            error: failed_response_error(status, message),
            ..Ending::default()
        };
        let response = self.envelope.response("failed", &self.output, &ending);
        vec![
            self.event("response.failed", json!({"response": response})),
            self.event(
                "error",
                json!({"code": code, "message": message, "param": null}),
            ),
        ]
    }

    /// Makes a reasoning item the open one.
    fn open_reasoning(&mut self, events: &mut Vec<Event>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(events);
            let item = json!({"type": "reasoning", "id": self.current_id("rs"), "summary": [], "content": []});
            self.added(item, events);
            self.open = Some(Open::Reasoning {
                text: String::new(),
                thinking: Vec::new(),
            });
        }
    }

    fn reasoning_delta(&mut self, delta: &str, events: &mut Vec<Event>) {
        self.open_reasoning(events);
        self.kept = self.kept.saturating_add(delta.len());
        if let Some(Open::Reasoning { text, .. }) = &mut self.open {
            text.push_str(delta);
        }
        let data = json!({"item_id": self.current_id("rs"), "output_index": self.output.len(), "content_index": 0, "delta": delta});
        events.push(self.event("response.reasoning_text.delta", data));
    }

    fn text_delta(&mut self, delta: &str, events: &mut Vec<Event>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(events);
            let id = self.current_id("msg");
            let mut item = message_output(id.clone(), "", "in_progress");
            item["content"] = json!([]);
            self.added(item, events);
            let data = json!({"item_id": id, "output_index": self.output.len(), "content_index": 0, "part": output_text_part("")});
            events.push(self.event("response.content_part.added", data));
            self.open = Some(Open::Message {
                text: String::new(),
            });
        }
        if let Some(Open::Message { text }) = &mut self.open {
            text.push_str(delta);
        }
        self.kept = self.kept.saturating_add(delta.len());
        let id = self.current_id("msg");
        let data = json!({"item_id": id, "output_index": self.output.len(), "content_index": 0, "delta": delta, "logprobs": []});
        events.push(self.event("response.output_text.delta", data));
    }

    fn refusal_delta(&mut self, delta: &str, events: &mut Vec<Event>) {
        if !matches!(self.open, Some(Open::Refusal { .. })) {
            self.close(events);
            let id = self.current_id("msg");
            let mut item = refusal_output(id.clone(), "", "in_progress");
            item["content"] = json!([]);
            self.added(item, events);
            let data = json!({"item_id": id, "output_index": self.output.len(), "content_index": 0, "part": refusal_part("")});
            events.push(self.event("response.content_part.added", data));
            self.open = Some(Open::Refusal {
                text: String::new(),
            });
        }
        if let Some(Open::Refusal { text }) = &mut self.open {
            text.push_str(delta);
        }
        self.kept = self.kept.saturating_add(delta.len());
        let id = self.current_id("msg");
        let data = json!({"item_id": id, "output_index": self.output.len(), "content_index": 0, "delta": delta});
        events.push(self.event("response.refusal.delta", data));
    }

    fn call_delta(&mut self, call: super::ToolCallDelta, events: &mut Vec<Event>) {
        let call_index = call.index.unwrap_or_default();
        let same = matches!(&self.open, Some(Open::Call { index, .. }) if *index == call_index);
        if !same {
            self.close(events);
            let id = self.current_id("fc");
            let call_id = call.id.clone().unwrap_or_else(|| format!("call_{id}"));
            let name = call.name.clone().unwrap_or_default();
            self.added(
                function_call_item(id, &call_id, &name, "", "in_progress"),
                events,
            );
            self.open = Some(Open::Call {
                index: call_index,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        if call.arguments.is_empty() {
            return;
        }
        if let Some(Open::Call { arguments, .. }) = &mut self.open {
            arguments.push_str(&call.arguments);
        }
        self.kept = self.kept.saturating_add(call.arguments.len());
        let data = json!({"item_id": self.current_id("fc"), "output_index": self.output.len(), "delta": call.arguments});
        events.push(self.event("response.function_call_arguments.delta", data));
    }

    /// Finishes the open item: its `.done` events, then `output_item.done`.
    fn close(&mut self, events: &mut Vec<Event>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.output.len();
        let item = match open {
            Open::Reasoning { text, thinking } => {
                let id = self.current_id("rs");
                let data = json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text});
                events.push(self.event("response.reasoning_text.done", data));
                reasoning_item(id, &text, &thinking)
            }
            Open::Message { text } => {
                let id = self.current_id("msg");
                let data = json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []});
                events.push(self.event("response.output_text.done", data));
                let data = json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": output_text_part(&text)});
                events.push(self.event("response.content_part.done", data));
                message_output(id, &text, self.item_status)
            }
            Open::Refusal { text } => {
                let id = self.current_id("msg");
                let data = json!({"item_id": id, "output_index": output_index, "content_index": 0, "refusal": text});
                events.push(self.event("response.refusal.done", data));
                let data = json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": refusal_part(&text)});
                events.push(self.event("response.content_part.done", data));
                refusal_output(id, &text, self.item_status)
            }
            Open::Call {
                call_id,
                name,
                arguments,
                ..
            } => {
                let id = self.current_id("fc");
                // A tool without arguments: `{}`, which clients parse,
                // streamed as a last piece so that the pieces add up.
                let arguments = if arguments.is_empty() {
                    let data = json!({"item_id": id, "output_index": output_index, "delta": "{}"});
                    events.push(self.event("response.function_call_arguments.delta", data));
                    "{}".to_owned()
                } else {
                    arguments
                };
                let data = json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments});
                events.push(self.event("response.function_call_arguments.done", data));
                function_call_item(id, &call_id, &name, &arguments, self.item_status)
            }
        };
        let data = json!({"output_index": output_index, "item": item});
        events.push(self.event("response.output_item.done", data));
        self.output.push(item);
    }

    /// `response.output_item.added` for the item about to open.
    fn added(&mut self, item: Value, events: &mut Vec<Event>) {
        let data = json!({"output_index": self.output.len(), "item": item});
        events.push(self.event("response.output_item.added", data));
    }

    /// The id of the item at the next output index.
    fn current_id(&self, prefix: &str) -> String {
        self.envelope.item_id(prefix, self.output.len())
    }

    fn event(&mut self, name: &str, mut data: Value) -> Event {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), json!(name));
            obj.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        Event::new(name, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored first turn: its input items and its answer.
    fn first_turn() -> (Vec<Value>, Value) {
        let input = input_items(&json!({"input": "hi"}), "resp_1").unwrap();
        let envelope = Envelope::new(&json!({"model": "m", "input": "hi"}), "resp_1", 1);
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "hello",
            "reasoning_content": "thinking"}, "finish_reason": "stop"}]});
        (input, answer_from_chat(&chat, &envelope))
    }

    #[test]
    fn a_tool_called_without_arguments_gets_an_empty_object() {
        let envelope = Envelope::new(&json!({"model": "m", "input": "hi"}), "resp_1", 1);
        let chat = json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}]},
            "finish_reason": "tool_calls"}]});
        let answer = answer_from_chat(&chat, &envelope);
        assert_eq!(answer["output"][0]["arguments"], "{}", "{answer}");
    }

    #[test]
    fn allowed_tools_take_chats_shape_and_other_choices_are_refused() {
        let choice = json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]});
        assert_eq!(
            tool_choice_to_chat(&choice).unwrap(),
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}})
        );
        assert_eq!(tool_choice_to_chat(&json!("auto")).unwrap(), json!("auto"));
        assert!(tool_choice_to_chat(&json!({"type": "web_search_preview"})).is_err());
    }

    #[test]
    fn a_continued_request_sends_the_earlier_turn_first() {
        let (input, response) = first_turn();
        let body = json!({"model": "m", "input": "again", "instructions": "Be new.",
            "previous_response_id": "resp_1"});
        let mut items = conversation(input, &response);
        items.extend(input_items(&body, "resp_2").unwrap());
        let chat = request_to_chat(&continued(&body, items)).unwrap();
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "Be new."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "again"},
            ])
        );
    }

    #[test]
    fn earlier_instructions_are_not_carried_over() {
        let earlier = json!({"model": "m", "input": "hi", "instructions": "Be old."});
        let input = input_items(&earlier, "resp_1").unwrap();
        let body = json!({"model": "m", "input": "again", "previous_response_id": "resp_1"});
        let mut items = conversation(input, &json!({"output": []}));
        items.extend(input_items(&body, "resp_2").unwrap());
        let chat = request_to_chat(&continued(&body, items)).unwrap();
        assert!(!chat.to_string().contains("Be old."), "{chat}");
        assert_eq!(
            chat["messages"][0],
            json!({"role": "user", "content": "hi"})
        );
    }

    #[test]
    fn a_native_request_drops_background_and_reasoning_the_upstream_cannot_resolve() {
        let client = json!({"model": "public", "background": true, "input": [
            {"type": "message", "role": "user", "content": "hi"},
            {"type": "reasoning", "id": "rs_gw_0", "summary": []},
            {"type": "reasoning", "id": "rs_up_1", "summary": [], "encrypted_content": "opaque"},
            reasoning_item("rs_gw_2".into(), "t", &[json!({"type": "thinking", "thinking": "t", "signature": "s"})]),
        ]});
        let sent = native_request(&client, "upstream-model", false).unwrap();
        assert_eq!(sent["model"], "upstream-model");
        assert_eq!(sent["store"], false);
        assert!(sent.get("background").is_none(), "{sent}");
        let kept: Vec<&Value> = sent["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["encrypted_content"])
            .collect();
        assert_eq!(kept, [&Value::Null, &json!("opaque")], "{sent}");
    }

    #[test]
    fn a_native_request_sends_items_without_ids_the_upstream_did_not_keep() {
        let client = json!({"model": "public", "input": [
            {"type": "message", "id": "msg_gw_in0", "role": "user", "content": "hi", "status": "completed"},
            {"type": "function_call", "id": "fc_up_1", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "id": "fco_gw_in2", "call_id": "call_1", "output": "ok"},
            {"type": "item_reference", "id": "msg_kept_upstream"},
        ]});
        let sent = native_request(&client, "upstream-model", true).unwrap();
        let ids: Vec<&Value> = sent["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["id"])
            .collect();
        assert_eq!(
            ids,
            [
                &Value::Null,
                &Value::Null,
                &Value::Null,
                &json!("msg_kept_upstream")
            ],
            "{sent}"
        );
        assert_eq!(sent["input"][1]["call_id"], "call_1");
    }

    #[test]
    fn signed_thinking_rides_in_a_reasoning_item_and_goes_back_before_its_turn() {
        let block = json!({"type": "thinking", "thinking": "Plan.", "signature": "sig"});
        let envelope = Envelope::new(&json!({"model": "m"}), "resp_1", 1);
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "Checking.",
            "reasoning_content": "Plan.", "thinking_blocks": [block],
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        let answer = answer_from_chat(&chat, &envelope);
        let mut input = vec![json!({"role": "user", "content": "go"})];
        input.extend(answer["output"].as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": "call_1", "output": "ok"}));
        let next = request_to_chat(&json!({"model": "m", "input": input})).unwrap();
        let turn = &next["messages"][1];
        assert_eq!(turn["thinking_blocks"], json!([block]), "{next}");
        assert_eq!(turn["content"], "Checking.");
        assert_eq!(turn["tool_calls"][0]["id"], "call_1");
        assert_eq!(next["messages"][2]["role"], "tool");
    }

    #[test]
    fn cached_and_reasoning_tokens_are_reported_in_their_details() {
        let envelope = Envelope::new(&json!({"model": "m"}), "resp_1", 1);
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "x"},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 11, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 2}}});
        let usage = &answer_from_chat(&chat, &envelope)["usage"];
        assert_eq!(usage["input_tokens"], 11);
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 3);
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 2);
        let anthropic = super::super::anthropic::answer_from_chat(&chat, "m", "msg_1");
        assert_eq!(
            anthropic["usage"]["input_tokens"], 8,
            "cache reads are counted apart"
        );
        assert_eq!(anthropic["usage"]["cache_read_input_tokens"], 3);
        assert_eq!(anthropic["usage"]["output_tokens"], 7);
    }

    #[test]
    fn calls_an_upstream_gave_no_id_get_distinct_ids() {
        let envelope = Envelope::new(&json!({"model": "m"}), "resp_1", 1);
        let call =
            |name: &str| json!({"type": "function", "function": {"name": name, "arguments": "{}"}});
        let chat = json!({"choices": [{"message": {"role": "assistant",
            "tool_calls": [call("f"), call("g")]}, "finish_reason": "tool_calls"}]});
        let response = answer_from_chat(&chat, &envelope);
        let ids: Vec<&str> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item["call_id"].as_str())
            .collect();
        assert_eq!(ids.len(), 2, "{response}");
        assert!(ids.iter().all(|id| id.starts_with("call_")), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn a_conversation_with_a_repeated_item_id_is_found_out() {
        let items = [
            json!({"id": "a"}),
            json!({"role": "user"}),
            json!({"id": "b"}),
        ];
        assert_eq!(duplicate_item_id(&items), None);
        let items = [json!({"id": "a"}), json!({"id": "b"}), json!({"id": "a"})];
        assert_eq!(duplicate_item_id(&items), Some("a"));
    }

    #[test]
    fn a_function_call_answer_continues_with_its_output() {
        let envelope = Envelope::new(&json!({"model": "m"}), "resp_1", 1);
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]});
        let response = answer_from_chat(&chat, &envelope);
        let input = input_items(&json!({"input": "call f"}), "resp_1").unwrap();
        let body = json!({"model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "call_1", "output": "42"}]});
        let mut items = conversation(input, &response);
        items.extend(input_items(&body, "resp_2").unwrap());
        let chat = request_to_chat(&continued(&body, items)).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{chat}");
        assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "42"})
        );
    }

    #[test]
    fn input_items_get_ids_and_types_without_losing_the_clients() {
        let body = json!({"input": [
            {"role": "user", "content": "a"},
            {"type": "message", "id": "msg_mine", "role": "user", "content": "b"},
            {"type": "function_call_output", "call_id": "c", "output": "o"},
        ]});
        let items = input_items(&body, "resp_abc").unwrap();
        assert_eq!(items[0]["type"], "message");
        assert_eq!(items[0]["id"], "msg_abc_in0");
        assert_eq!(items[1]["id"], "msg_mine");
        assert_eq!(items[2]["id"], "fco_abc_in2");
        assert!(input_items(&json!({"input": [1]}), "resp_x").is_err());
        assert!(input_items(&json!({"input": 1}), "resp_x").is_err());
    }

    #[test]
    fn items_openai_would_refuse_are_refused_naming_their_field() {
        for (input, text, param, says) in [
            (
                json!([{"type": "function_call_output", "output": "x"}]),
                json!(null),
                "input",
                "call_id",
            ),
            (
                json!([{"type": "function_call", "call_id": "c", "arguments": "{}"}]),
                json!(null),
                "input",
                "name",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_text"}]}]),
                json!(null),
                "input",
                "text",
            ),
            (json!([]), json!(null), "input", "at least one"),
            (
                json!("hi"),
                json!({"format": {"type": "json_schema"}}),
                "text.format",
                "schema",
            ),
        ] {
            let body = json!({"model": "m", "input": input, "text": text});
            let error = request_to_chat(&body).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
            assert!(error.message.contains(says), "{body}: {}", error.message);
        }
        let named = json!({"model": "m", "input": "hi",
                           "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}}});
        assert!(request_to_chat(&named).is_ok());
    }

    #[test]
    fn an_unresolved_previous_response_id_is_refused() {
        let body = json!({"model": "m", "input": "x", "previous_response_id": "resp_1"});
        let error = request_to_chat(&body).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("previous_response_id"));
    }

    #[test]
    fn the_answer_says_whether_it_is_stored() {
        let request = json!({"model": "m", "previous_response_id": "resp_0"});
        let mut envelope = Envelope::new(&request, "resp_1", 1);
        assert!(envelope.store());
        let r = envelope.response("completed", &[], &Ending::default());
        assert_eq!(r["store"], true);
        assert_eq!(r["previous_response_id"], "resp_0");
        envelope.set_store(false);
        let r = envelope.response("completed", &[], &Ending::default());
        assert_eq!(r["store"], false);
        let refused = Envelope::new(&json!({"store": false}), "resp_2", 1);
        assert!(!refused.store());
    }

    #[test]
    fn closing_bytes_grow_with_the_text_kept() {
        let envelope = Envelope::new(&json!({"model": "m"}), "resp_1", 0);
        let mut stream = ResponsesStream::new(envelope);
        assert_eq!(stream.closing_bytes(), 0);
        stream.start();
        stream
            .push(br#"{"choices":[{"index":0,"delta":{"content":"abcd"}}]}"#)
            .unwrap();
        stream
            .push(br#"{"choices":[{"index":0,"delta":{"reasoning_content":"xy"}}]}"#)
            .unwrap();
        assert_eq!(stream.closing_bytes(), 6 * CLOSING_COPIES);
    }

    #[test]
    fn a_function_call_output_keeps_its_text_parts_and_images() {
        let body = json!({"model": "m", "input": [
            {"role": "user", "content": "shoot"},
            {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "shot", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_text", "text": "one"}, {"type": "input_text", "text": "two"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "function_call_output", "call_id": "c2", "output": [
                {"type": "input_image", "image_url": "https://example.com/b.png"}]},
        ]});
        let chat = request_to_chat(&body).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "tool", "tool", "user"],
            "{chat}"
        );
        assert_eq!(messages[2]["content"], "one\ntwo");
        assert_eq!(
            messages[4]["content"].as_array().unwrap().len(),
            2,
            "{chat}"
        );
        let file = json!({"model": "m", "input": [
            {"type": "function_call_output", "call_id": "c1", "output": [
                {"type": "input_file", "file_id": "f"}]}]});
        let refused = request_to_chat(&file).unwrap_err();
        assert!(
            refused.message.contains("input_file"),
            "{}",
            refused.message
        );
    }
}
