//! Anthropic's Messages API ⇄ OpenAI chat completions.
//!
//! [`request_to_chat`] turns a `POST /v1/messages` body into a chat request,
//! [`answer_from_chat`] a `chat.completion` into a `message`, and
//! [`MessagesStream`] chat chunk payloads into Anthropic's stream events.
//! docs/translation.md lists what is kept, mapped and dropped.

use serde_json::{Map, Value, json};

use super::{
    ChatAnswer, Event, Kind, TokenUsage, TranslateError, chat_tool, check_kinds, copy, parse_chunk,
};

/// The Messages API's top-level request fields (those a composite's
/// strategy is not handed as settings).
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_format",
    "output_config",
    "inference_geo",
];

/// A Messages request as a chat completions request (a JSON object).
/// `native` says the request goes to Anthropic models only, which are sent
/// the body as it is: content and tools a chat request cannot carry are
/// then left out of the translation instead of refused, since only the
/// gateway's own records read it.
pub fn request_to_chat(body: &Value, native: bool) -> Result<Value, TranslateError> {
    check_fields(body)?;
    let mut chat = Map::new();
    copy(body, "model", &mut chat, "model");
    let mut messages = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        messages.push(json!({"role": "system", "content": system_text(system)?}));
    }
    let turns = turns(body)?;
    for (i, turn) in turns.iter().enumerate() {
        let last_assistant = i + 1 == turns.len() && turn["role"] == "assistant";
        if !last_assistant {
            refuse_empty_turn(turn, i)?;
        }
        messages.extend(turn_to_chat(turn, native)?);
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        chat.insert("tools".into(), tools_to_chat(tools, native)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|t| !t.is_null()) {
        tool_choice_to_chat(choice, &mut chat)?;
    }
    for key in ["max_tokens", "temperature", "top_p", "top_k"] {
        copy(body, key, &mut chat, key);
    }
    copy(body, "stop_sequences", &mut chat, "stop");
    copy(&body["metadata"], "user_id", &mut chat, "user");
    // A native request's thinking is Anthropic's to judge (its newer
    // settings included); a translated one must be one this reads.
    match thinking_effort(&body["thinking"]) {
        Ok(Some(effort)) => {
            chat.insert("reasoning_effort".into(), json!(effort));
        }
        Err(e) if !native => return Err(e),
        _ => {}
    }
    if let Some(format) = output_schema(body)? {
        chat.insert("response_format".into(), format);
    }
    if body["stream"].as_bool() == Some(true) {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat))
}

/// Checks a `count_tokens` body: the model and every message, as a
/// Messages request without `max_tokens`.
pub fn check_count_request(body: &Value) -> Result<(), TranslateError> {
    check_model(body)?;
    // Refused here as on every model route, though a count is never sent
    // where the client says either.
    if let Some(field) = crate::openai::CLIENT_ROUTING_FIELDS
        .iter()
        .find(|f| body.get(**f).is_some())
    {
        return Err(TranslateError::new(
            format!(
                "`{field}`: a request may not choose its own upstream address or router config; \
                 the gateway calls the deployments its config names"
            ),
            field,
        ));
    }
    for turn in turns(body)? {
        turn_to_chat(turn, true)?;
    }
    Ok(())
}

/// Refuses turn `i` when its content, or a text block of it, is empty or
/// only whitespace, as Anthropic does for every turn but a last assistant
/// one (the answer's start): in chat it would vanish without a word.
fn refuse_empty_turn(turn: &Value, i: usize) -> Result<(), TranslateError> {
    let empty = match &turn["content"] {
        Value::Array(blocks) => blocks.is_empty(),
        Value::String(text) => text.trim().is_empty(),
        _ => false,
    };
    if empty {
        return Err(TranslateError::new(
            format!(
                "messages.{i}.content: every message needs non-empty content but the \
                 optional final assistant message"
            ),
            &format!("messages.{i}.content"),
        ));
    }
    let blocks = turn["content"].as_array().map_or(&[][..], Vec::as_slice);
    match blocks.iter().position(|b| {
        b["type"] == "text" && b["text"].as_str().is_some_and(|t| t.trim().is_empty())
    }) {
        Some(j) => Err(TranslateError::new(
            format!(
                "messages.{i}.content.{j}.text: text content blocks must contain non-whitespace \
                 text"
            ),
            &format!("messages.{i}.content.{j}.text"),
        )),
        None => Ok(()),
    }
}

/// The conversation: a non-empty array.
fn turns(body: &Value) -> Result<&Vec<Value>, TranslateError> {
    match body.get("messages").and_then(Value::as_array) {
        Some(turns) if !turns.is_empty() => Ok(turns),
        Some(_) => Err(TranslateError::new(
            "messages must hold at least one message",
            "messages",
        )),
        None => Err(TranslateError::new(
            "messages is required: an array of messages",
            "messages",
        )),
    }
}

fn check_model(body: &Value) -> Result<(), TranslateError> {
    if !body.is_object() {
        return Err(TranslateError::new(
            "the body must be a JSON object",
            "body",
        ));
    }
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(()),
        None | Some(Value::Null) => Err(TranslateError::new(
            "model is required: a model name",
            "model",
        )),
        Some(Value::String(_)) => Err(TranslateError::new(
            "model must not be empty: a model name",
            "model",
        )),
        Some(_) => Err(TranslateError::new("model must be a string", "model")),
    }
}

/// The fields Anthropic's API requires or types strictly, checked before
/// translating: a malformed request is refused naming its field, never
/// forwarded for a chat upstream to read as something else.
fn check_fields(body: &Value) -> Result<(), TranslateError> {
    check_model(body)?;
    if body.get("max_tokens").is_none_or(Value::is_null) {
        return Err(TranslateError::new(
            "max_tokens is required: the most tokens to generate, a positive integer",
            "max_tokens",
        ));
    }
    check_kinds(
        body,
        &[
            ("max_tokens", Kind::PositiveInteger),
            ("temperature", Kind::Number),
            ("top_p", Kind::Number),
            ("top_k", Kind::NonNegativeInteger),
            ("stream", Kind::Boolean),
            ("stop_sequences", Kind::TextList),
            ("metadata", Kind::Object),
        ],
    )?;
    // `metadata.user_id` becomes the chat request's `user`: its errors must
    // name the field the client wrote.
    match body["metadata"].get("user_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(user)) => crate::openai::checked_end_user(user, "metadata.user_id")
            .map(|_| ())
            .map_err(|message| TranslateError::new(message, "metadata.user_id")),
        Some(_) => Err(TranslateError::new(
            "metadata.user_id must be a string",
            "metadata.user_id",
        )),
    }
}

/// `system` as one string: a string, or the text of its text blocks, joined
/// by blank lines.
fn system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .map(|b| required_str(b, "text", "system text block", "system"))
            .collect::<Result<Vec<_>, _>>()?
            .join("\n\n")),
        _ => Err(TranslateError::new(
            "system must be a string or a list of text blocks",
            "system",
        )),
    }
}

/// `block[key]` as a string, or the 400 naming what `block` (a `kind`)
/// lacks; `param` is the request field it sits in.
fn required_str<'a>(
    block: &'a Value,
    key: &str,
    kind: &str,
    param: &str,
) -> Result<&'a str, TranslateError> {
    block[key]
        .as_str()
        .ok_or_else(|| TranslateError::new(format!("a {kind} needs a string {key}"), param))
}

/// One Anthropic turn as chat messages: a user turn's `tool_result` blocks
/// become `role: tool` messages ahead of its other content; an assistant
/// turn's `tool_use` blocks become `tool_calls`; `thinking` is dropped.
fn turn_to_chat(turn: &Value, native: bool) -> Result<Vec<Value>, TranslateError> {
    let role = match turn["role"].as_str() {
        Some(r @ ("user" | "assistant")) => r,
        _ => {
            return Err(TranslateError::new(
                "every message needs role \"user\" or \"assistant\"",
                "messages",
            ));
        }
    };
    let blocks = match &turn["content"] {
        Value::String(s) => return Ok(vec![json!({"role": role, "content": s})]),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(TranslateError::new(
                "message content must be a string or a list of blocks",
                "messages",
            ));
        }
    };
    if role == "assistant" {
        return Ok(vec![assistant_to_chat(blocks, native)?]);
    }
    user_to_chat(blocks, native)
}

/// A block a chat request has no place for: refused, or left to the native
/// body when only Anthropic models will read the request.
fn untranslatable(kind: Option<&str>, native: bool) -> Result<(), TranslateError> {
    if native {
        return Ok(());
    }
    Err(TranslateError::new(
        format!(
            "content block type {} cannot be sent to this model (it is not an Anthropic one); \
             user turns may hold text, image, document and tool_result blocks, assistant turns \
             text, thinking and tool_use blocks",
            kind.map_or_else(|| "(none)".to_owned(), |k| format!("{k:?}"))
        ),
        "messages",
    ))
}

fn assistant_to_chat(blocks: &[Value], native: bool) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => text.push_str(required_str(block, "text", "text block", "messages")?),
            Some("tool_use") => {
                let input = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input @ Value::Object(_)) => input.to_string(),
                    Some(_) => {
                        return Err(TranslateError::new(
                            "a tool_use block's input must be an object",
                            "messages",
                        ));
                    }
                };
                calls.push(json!({
                    "id": required_str(block, "id", "tool_use block", "messages")?,
                    "type": "function",
                    "function": {
                        "name": required_str(block, "name", "tool_use block", "messages")?,
                        "arguments": input,
                    },
                }));
            }
            // A model's own reasoning is not sent back to a chat model.
            Some("thinking" | "redacted_thinking") => {}
            other => untranslatable(other, native)?,
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(message)
}

fn user_to_chat(blocks: &[Value], native: bool) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for block in blocks {
        let part = match block["type"].as_str() {
            Some("text") => required_str(block, "text", "text block", "messages")
                .map(|text| json!({"type": "text", "text": text})),
            Some("image") => image_part(&block["source"]),
            Some("document") => document_part(block),
            Some("tool_result") => {
                match tool_message(block) {
                    Ok((message, images)) => {
                        out.push(message);
                        parts.extend(images);
                    }
                    Err(e) if !native => return Err(e),
                    Err(_) => {}
                }
                continue;
            }
            other => {
                untranslatable(other, native)?;
                continue;
            }
        };
        match part {
            Ok(part) => parts.push(part),
            // What the native body carries need not translate.
            Err(_) if native => {}
            Err(e) => return Err(e),
        }
    }
    match parts.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => {
            out.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => out.push(json!({"role": "user", "content": parts})),
    }
    Ok(out)
}

/// What a tool result's images are replaced with in its text, when it has
/// no text of its own: the images follow in a user message.
const IMAGE_RESULT: &str = "(the result is the image that follows)";

/// A `tool_result` block as a `role: tool` message, and the image parts
/// its result holds. Chat tool messages carry text only, and have no error
/// flag: an `is_error` result's text starts with `Error: `; its images go
/// in the user message that follows the tool messages; any other block is
/// refused.
fn tool_message(block: &Value) -> Result<(Value, Vec<Value>), TranslateError> {
    let mut images = Vec::new();
    let text = match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for b in blocks {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(text)) => texts.push(text),
                    (Some("image"), _) => images.push(image_part(&b["source"])?),
                    (kind, _) => {
                        return Err(TranslateError::new(
                            format!(
                                "a tool_result for a model that is not an Anthropic one may hold only text and image blocks, got {}",
                                kind.unwrap_or("(none)")
                            ),
                            "messages",
                        ));
                    }
                }
            }
            if texts.is_empty() && !images.is_empty() {
                texts.push(IMAGE_RESULT);
            }
            texts.join("\n")
        }
        _ => {
            return Err(TranslateError::new(
                "tool_result content must be a string or a list of text blocks",
                "messages",
            ));
        }
    };
    let text = if block["is_error"] == true {
        format!("Error: {text}")
    } else {
        text
    };
    let message = json!({
        "role": "tool",
        "tool_call_id": required_str(block, "tool_use_id", "tool_result block", "messages")?,
        "content": text,
    });
    Ok((message, images))
}

/// A `document` block as a chat part: plain text (its `title` first) for a
/// text or content source, a `file` part for a base64 PDF; other sources
/// (a URL, an uploaded file) have no chat form.
fn document_part(block: &Value) -> Result<Value, TranslateError> {
    let source = &block["source"];
    let titled = |text: String| match block["title"].as_str() {
        Some(title) if !title.is_empty() => format!("{title}\n\n{text}"),
        _ => text,
    };
    match (source["type"].as_str(), source["media_type"].as_str()) {
        (Some("text"), _) => {
            let data = source["data"].as_str().ok_or_else(|| {
                TranslateError::new("a document's text source needs its data", "messages")
            })?;
            Ok(json!({"type": "text", "text": titled(data.to_owned())}))
        }
        (Some("content"), _) => {
            let text = match &source["content"] {
                Value::String(s) => s.clone(),
                Value::Array(blocks) => {
                    let mut texts = Vec::with_capacity(blocks.len());
                    for b in blocks {
                        texts.push(
                            b["text"]
                                .as_str()
                                .filter(|_| b["type"] == "text")
                                .ok_or_else(|| {
                                    TranslateError::new(
                                        "a document's content source may hold only text blocks \
                                     for a model that is not an Anthropic one",
                                        "messages",
                                    )
                                })?,
                        );
                    }
                    texts.join("\n")
                }
                _ => String::new(),
            };
            Ok(json!({"type": "text", "text": titled(text)}))
        }
        (Some("base64"), Some("application/pdf")) => Ok(json!({
            "type": "file",
            "file": {
                "filename": block["title"].as_str().unwrap_or("document.pdf"),
                "file_data": format!(
                    "data:application/pdf;base64,{}",
                    base64_data(source, "document")?
                ),
            },
        })),
        _ => Err(TranslateError::new(
            "a document for a model that is not an Anthropic one must have a text or content \
             source, or a base64 PDF",
            "messages",
        )),
    }
}

/// A base64 source's `data`, which must be there.
fn base64_data<'a>(source: &'a Value, what: &str) -> Result<&'a str, TranslateError> {
    source["data"]
        .as_str()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            TranslateError::new(
                format!("a {what}'s base64 source needs its data"),
                "messages",
            )
        })
}

/// An image block's source as a chat `image_url` part (base64 becomes a data URL).
fn image_part(source: &Value) -> Result<Value, TranslateError> {
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"]
                .as_str()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| TranslateError::new(
                    "an image's base64 source needs its media_type",
                    "messages"
                ))?,
            base64_data(source, "image")?
        ),
        Some("url") => source["url"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| TranslateError::new("an image's url source needs its url", "messages"))?
            .to_owned(),
        _ => {
            return Err(TranslateError::new(
                "image source must be of type base64 or url",
                "messages",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn tools_to_chat(tools: &Value, native: bool) -> Result<Value, TranslateError> {
    let Some(tools) = tools.as_array() else {
        return Err(TranslateError::new("tools must be an array", "tools"));
    };
    tools
        .iter()
        // Anthropic's own tools (web search, code execution, ...) reach
        // Anthropic models through the native body.
        .filter(|tool| !native || matches!(tool["type"].as_str(), None | Some("custom")))
        .map(|tool| match tool["type"].as_str() {
            None | Some("custom") => {
                required_str(tool, "name", "tool", "tools")?;
                Ok(chat_tool(
                    &tool["name"],
                    &tool["description"],
                    &tool["input_schema"],
                ))
            }
            Some(other) => Err(TranslateError::new(
                format!(
                    "tool type {other:?} is not supported: only client tools with input_schema"
                ),
                "tools",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn tool_choice_to_chat(
    choice: &Value,
    chat: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let mapped = match choice["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = required_str(choice, "name", "tool_choice of type tool", "tool_choice")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(TranslateError::new(
                "tool_choice.type must be auto, any, tool or none",
                "tool_choice",
            ));
        }
    };
    chat.insert("tool_choice".into(), mapped);
    if choice["disable_parallel_tool_use"].as_bool() == Some(true) {
        chat.insert("parallel_tool_calls".into(), json!(false));
    }
    Ok(())
}

/// Anthropic's structured output (`output_config.format`, or the beta's
/// `output_format`, a JSON schema the answer's text must follow) as a chat
/// `response_format`; `None` when the request asks for none.
fn output_schema(body: &Value) -> Result<Option<Value>, TranslateError> {
    for (format, at) in [
        (&body["output_config"]["format"], "output_config.format"),
        (&body["output_format"], "output_format"),
    ] {
        if format.is_null() {
            continue;
        }
        if format["type"].as_str() != Some("json_schema") {
            return Err(TranslateError::new(
                format!("{at}.type must be \"json_schema\""),
                &format!("{at}.type"),
            ));
        }
        let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
            return Err(TranslateError::new(
                format!("{at}.schema must be a JSON schema object"),
                &format!("{at}.schema"),
            ));
        };
        return Ok(Some(json!({
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        })));
    }
    Ok(None)
}

/// Extended thinking as an OpenAI reasoning effort: by budget, under 4096
/// tokens `low`, under 16384 `medium`, else `high`; disabled is dropped.
/// Enabled without a budget is refused, as Anthropic refuses it.
fn thinking_effort(thinking: &Value) -> Result<Option<&'static str>, TranslateError> {
    match thinking {
        Value::Null => return Ok(None),
        Value::Object(_) => {}
        _ => {
            return Err(TranslateError::new(
                "thinking must be an object ({type: enabled, budget_tokens} or {type: disabled})",
                "thinking",
            ));
        }
    }
    match thinking["type"].as_str() {
        Some("enabled") => {}
        Some("disabled") => return Ok(None),
        // The model chooses how much to think.
        Some("adaptive") => return Ok(Some("medium")),
        _ => {
            return Err(TranslateError::new(
                "thinking.type must be enabled, adaptive or disabled",
                "thinking.type",
            ));
        }
    }
    let Some(budget) = thinking["budget_tokens"].as_u64().filter(|b| *b > 0) else {
        return Err(TranslateError::new(
            "thinking.budget_tokens is required (a whole number of tokens) when thinking is enabled",
            "thinking.budget_tokens",
        ));
    };
    Ok(Some(match budget {
        0..4096 => "low",
        4096..16384 => "medium",
        _ => "high",
    }))
}

/// Anthropic's `stop_reason` for a chat `finish_reason`, for an answer
/// that `called` a tool or `refused`. Some servers finish a tool call with
/// `stop`: a `tool_use` block still stops for the tool, or Anthropic's
/// clients would not run it.
pub fn stop_reason(finish_reason: Option<&str>, called: bool, refused: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if refused => "refusal",
        _ if called => "tool_use",
        _ => "end_turn",
    }
}

/// A `chat.completion` body as an Anthropic `message`. `model` is the
/// client's model, used when the answer names none.
pub fn answer_from_chat(chat: &Value, model: &str, id: &str) -> Value {
    let answer = ChatAnswer::read(chat);
    let mut content = Vec::new();
    if !answer.reasoning.is_empty() {
        content.push(json!({"type": "thinking", "thinking": answer.reasoning, "signature": ""}));
    }
    if !answer.content.is_empty() {
        content.push(json!({"type": "text", "text": answer.content}));
    }
    if !answer.refusal.is_empty() {
        content.push(json!({"type": "text", "text": answer.refusal}));
    }
    for (index, (call_id, name, arguments)) in answer.tool_calls.iter().enumerate() {
        // An upstream that gives a call no id gets one, as in a stream: a
        // tool_result must name the call it answers.
        let call_id = match call_id.as_str() {
            "" => format!("toolu_{}_{index}", id.trim_start_matches("msg_")),
            given => given.to_owned(),
        };
        content.push(json!({
            "type": "tool_use",
            "id": call_id,
            "name": name,
            "input": tool_input(arguments),
        }));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": chat["model"].as_str().unwrap_or(model),
        "content": content,
        "stop_reason": stop_reason(
            answer.finish_reason.as_deref(),
            !answer.tool_calls.is_empty(),
            !answer.refusal.is_empty(),
        ),
        "stop_sequence": null,
        "usage": answer.usage.anthropic(),
    })
}

/// A tool call's arguments as the `input` object; text that is not a JSON
/// object becomes `{}`.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// Whether a tool call's arguments are a JSON object: what a streamed
/// call may send.
fn is_object(arguments: &str) -> bool {
    matches!(serde_json::from_str(arguments), Ok(Value::Object(_)))
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error body for `status` and `message`.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// `/v1/messages/count_tokens`: an estimate, one token per four characters
/// (rounded up) of the serialized `system`, `messages` and `tools`.
pub fn count_tokens(body: &Value) -> u64 {
    let chars: usize = ["system", "messages", "tools"]
        .iter()
        .filter_map(|k| body.get(*k).filter(|v| !v.is_null()))
        .map(|v| v.to_string().chars().count())
        .sum();
    chars.div_ceil(4) as u64
}

/// The block a stream has open.
#[derive(Debug, Clone, PartialEq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its index in the chat choice.
    Tool(u64),
}

/// Chat chunk payloads → Anthropic stream events. Blocks are sequential:
/// a delta of another kind (or another tool call) stops the open block and
/// starts the next one. A tool call's arguments are sent whole when its
/// block stops, once they are known to be a JSON object (else the call's
/// input stays `{}`, as in an answer that is not streamed): Anthropic's
/// clients parse the pieces as they come and fail on a call whose
/// arguments are not JSON, which some upstreams send.
#[derive(Debug)]
pub struct MessagesStream {
    id: String,
    model: String,
    index: u64,
    open: Option<Open>,
    /// The open tool call's arguments so far.
    arguments: String,
    finish_reason: Option<String>,
    usage: TokenUsage,
    calls: super::CallOrder,
    /// A tool call was given.
    called: bool,
    /// The model refused (its refusal is given as text).
    refused: bool,
}

impl MessagesStream {
    /// The `msg_...` id the stream's events give the message.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A translator for the answer to a request for `model`.
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: id.to_owned(),
            model: model.to_owned(),
            index: 0,
            open: None,
            arguments: String::new(),
            finish_reason: None,
            usage: TokenUsage::default(),
            calls: super::CallOrder::default(),
            called: false,
            refused: false,
        }
    }

    /// Names the model the upstream reported in its first chunk, as a
    /// translated answer that is not streamed does.
    pub fn answered_by(&mut self, model: String) {
        self.model = model;
    }

    /// The events before any content: `message_start`, then `ping`.
    pub fn start(&mut self) -> Vec<Event> {
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        vec![
            Event::new(
                "message_start",
                json!({"type": "message_start", "message": message}),
            ),
            Event::new("ping", json!({"type": "ping"})),
        ]
    }

    /// The events for one chunk payload; an error for one that cannot be
    /// read, which ends the stream.
    pub fn push(&mut self, payload: &[u8]) -> Result<Vec<Event>, String> {
        let mut chunk = parse_chunk(payload)?;
        let mut events = Vec::new();
        self.calls.hold_prose(&mut chunk);
        self.prose(chunk.reasoning, chunk.content, &mut events);
        if let Some(refusal) = chunk.refusal {
            self.refused = true;
            self.prose(None, Some(refusal), &mut events);
        }
        for call in self.calls.take(chunk.tool_calls) {
            self.tool_delta(call, &mut events);
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage;
        }
        Ok(events)
    }

    /// The events of a clean end: the open block stopped, `message_delta`
    /// with the stop reason and usage, `message_stop`.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let (reasoning, text) = self.calls.finish_prose();
        self.prose(reasoning, text, &mut events);
        for call in self.calls.finish() {
            self.tool_delta(call, &mut events);
        }
        self.stop_open(&mut events);
        events.push(Event::new(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(self.finish_reason.as_deref(), self.called, self.refused),
                    "stop_sequence": null,
                },
                "usage": self.usage.anthropic(),
            }),
        ));
        events.push(Event::new("message_stop", json!({"type": "message_stop"})));
        events
    }

    /// The event for a stream that broke: Anthropic's `error` event.
    pub fn fail(&mut self, status: u16, message: &str) -> Vec<Event> {
        vec![Event::new("error", error_body(status, message))]
    }

    /// Pieces of thinking and text, each in its block.
    fn prose(&mut self, thinking: Option<String>, text: Option<String>, events: &mut Vec<Event>) {
        if let Some(thinking) = thinking {
            self.enter(
                Open::Thinking,
                events,
                || json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            events.push(self.delta(json!({"type": "thinking_delta", "thinking": thinking})));
        }
        if let Some(text) = text {
            self.enter(Open::Text, events, || json!({"type": "text", "text": ""}));
            events.push(self.delta(json!({"type": "text_delta", "text": text})));
        }
    }

    /// One piece of a tool call: its block (started with its id and name
    /// when it is not the open one); its arguments are kept for the end.
    fn tool_delta(&mut self, call: super::ToolCallDelta, events: &mut Vec<Event>) {
        self.called = true;
        let (id, name) = (call.id, call.name);
        let base = self.id.trim_start_matches("msg_").to_owned();
        let index = call.index.unwrap_or_default();
        self.enter(Open::Tool(index), events, || {
            json!({
                "type": "tool_use",
                "id": id.unwrap_or_else(|| format!("toolu_{}_{index}", base)),
                "name": name.unwrap_or_default(),
                "input": {},
            })
        });
        self.arguments.push_str(&call.arguments);
    }

    /// Makes `kind` the open block, starting it with `block()` if it is not.
    fn enter(&mut self, kind: Open, events: &mut Vec<Event>, block: impl FnOnce() -> Value) {
        if self.open.as_ref() == Some(&kind) {
            return;
        }
        self.stop_open(events);
        events.push(Event::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.index, "content_block": block()}),
        ));
        self.open = Some(kind);
    }

    fn stop_open(&mut self, events: &mut Vec<Event>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if matches!(open, Open::Tool(_)) {
            let arguments = std::mem::take(&mut self.arguments);
            if is_object(&arguments) {
                events.push(
                    self.delta(json!({"type": "input_json_delta", "partial_json": arguments})),
                );
            }
        }
        events.push(Event::new(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.index}),
        ));
        self.index += 1;
    }

    fn delta(&self, delta: Value) -> Event {
        Event::new(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_get_anthropics_error_types() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (402, "billing_error"),
            (429, "rate_limit_error"),
            (502, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
    }

    #[test]
    fn an_empty_turn_is_refused_but_a_last_assistant_one() {
        let turns = |turns: Value| json!({"model": "m", "max_tokens": 10, "messages": turns});
        let e =
            request_to_chat(&turns(json!([{"role": "user", "content": []}])), false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.0.content"), "{e}");
        let prefill = turns(json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": []}]));
        assert!(request_to_chat(&prefill, false).is_ok());
        let e = request_to_chat(&turns(json!([{"role": "user", "content": " \n"}])), false)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.0.content"), "{e}");
        let blank = turns(json!([{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "text", "text": ""}]}]));
        let e = request_to_chat(&blank, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.0.content.1.text"), "{e}");
    }

    #[test]
    fn what_a_chat_model_cannot_be_given_is_refused_not_dropped() {
        let user = |content: Value| json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]});
        let refused = [
            user(
                json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]),
            ),
            user(json!([{"type": "image", "source": {"type": "url"}}])),
            user(
                json!([{"type": "document", "source": {"type": "content", "content": [
                {"type": "text", "text": "C1"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}}]),
            ),
            json!({"model": "m", "max_tokens": 10, "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "notobj"}]},
            ]}),
            json!({"model": "m", "max_tokens": 10, "thinking": {"type": "enabled"},
                   "messages": [{"role": "user", "content": "hi"}]}),
            json!({"model": "m", "max_tokens": 10, "thinking": {"type": "weird"},
                   "messages": [{"role": "user", "content": "hi"}]}),
            json!({"model": "m", "max_tokens": 10, "thinking": "yes",
                   "messages": [{"role": "user", "content": "hi"}]}),
            user(json!([{"type": "document", "source": {"type": "text"}}])),
            user(json!([{"type": "image", "source": {"type": "base64", "data": "AAAA"}}])),
        ];
        for body in refused {
            assert!(request_to_chat(&body, false).is_err(), "{body}");
        }
    }

    #[test]
    fn a_count_that_names_its_own_upstream_is_refused() {
        for field in crate::openai::CLIENT_ROUTING_FIELDS {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                              *field: "http://elsewhere.example"});
            let e = check_count_request(&body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(*field));
        }
        let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(check_count_request(&plain).is_ok());
    }

    #[test]
    fn calls_whose_headers_come_first_stream_as_one_block_each() {
        let chunk = |calls: Value| {
            serde_json::to_vec(&json!({"choices": [{"delta": {"tool_calls": calls}}]})).unwrap()
        };
        let header = |i: u64, id: &str| json!([{"index": i, "id": id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}]);
        let args = |i: u64, text: &str| json!([{"index": i, "function": {"arguments": text}}]);
        let mut stream = MessagesStream::new("msg_1", "m");
        let mut events = stream.start();
        for calls in [
            header(0, "call_a"),
            header(1, "call_b"),
            args(0, "{\"city\":"),
            args(0, "\"Paris\"}"),
            args(1, "{\"city\":\"Rome\"}"),
            json!([{"index": 2, "id": "call_c", "function": {"name": "now", "arguments": ""}}]),
        ] {
            events.extend(stream.push(&chunk(calls)).unwrap());
        }
        events.extend(stream.finish());
        let starts: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.name == "content_block_start")
            .map(|e| {
                let block = &e.data["content_block"];
                (
                    block["id"].as_str().unwrap().to_owned(),
                    block["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("call_a", "get_weather"),
            ("call_b", "get_weather"),
            ("call_c", "now"),
        ];
        assert_eq!(
            starts,
            expected.map(|(id, name)| (id.to_owned(), name.to_owned()))
        );
        let first_args: String = events
            .iter()
            .filter(|e| e.name == "content_block_delta" && e.data["index"] == 0)
            .filter_map(|e| e.data["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(first_args, "{\"city\":\"Paris\"}");
    }

    /// Each `tool_use` block of `events`: its id, name and joined input.
    fn tool_blocks(events: &[Event]) -> Vec<(String, String, String)> {
        let mut blocks: Vec<(String, String, String)> = Vec::new();
        for e in events {
            match e.name.as_str() {
                "content_block_start" => {
                    let block = &e.data["content_block"];
                    assert_eq!(e.data["index"], blocks.len(), "{events:?}");
                    blocks.push((
                        block["id"].as_str().unwrap().to_owned(),
                        block["name"].as_str().unwrap().to_owned(),
                        String::new(),
                    ));
                }
                "content_block_delta" => {
                    assert_eq!(e.data["index"], blocks.len() - 1, "{events:?}");
                    let piece = e.data["delta"]["partial_json"].as_str().unwrap();
                    blocks.last_mut().unwrap().2.push_str(piece);
                }
                _ => {}
            }
        }
        blocks
    }

    fn streamed(chunks: &[Value]) -> Vec<Event> {
        let mut stream = MessagesStream::new("msg_1", "m");
        let mut events = stream.start();
        for calls in chunks {
            let chunk = json!({"choices": [{"delta": {"tool_calls": calls}}]});
            events.extend(stream.push(&serde_json::to_vec(&chunk).unwrap()).unwrap());
        }
        events.extend(stream.finish());
        events
    }

    #[test]
    fn arguments_that_are_not_a_json_object_are_not_streamed() {
        let call = |i: u64, args: &str| json!([{"index": i, "id": format!("c{i}"), "function": {"name": "f", "arguments": args}}]);
        let events = streamed(&[
            call(0, "not json {"),
            call(1, "[1]"),
            call(2, "{\"ok\":"),
            json!([{"index": 2, "function": {"arguments": "true}"}}]),
        ]);
        let args: Vec<String> = tool_blocks(&events)
            .into_iter()
            .map(|(_, _, a)| a)
            .collect();
        assert_eq!(args, ["", "", "{\"ok\":true}"]);
    }

    #[test]
    fn interleaved_pieces_of_parallel_calls_stay_one_block_each() {
        let piece = |i: u64, id: Option<&str>, text: &str| {
            let mut call = json!({"index": i, "function": {"arguments": text}});
            if let Some(id) = id {
                call["id"] = json!(id);
                call["function"]["name"] = json!(format!("tool_{i}"));
            }
            json!([call])
        };
        let events = streamed(&[
            piece(0, Some("call_a"), ""),
            piece(1, Some("call_b"), ""),
            piece(0, None, "{\"x\":"),
            piece(1, None, "{\"y\":"),
            piece(0, None, "1}"),
            piece(1, None, "2}"),
        ]);
        let expected = [
            ("call_a", "tool_0", "{\"x\":1}"),
            ("call_b", "tool_1", "{\"y\":2}"),
        ];
        assert_eq!(
            tool_blocks(&events),
            expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );
    }

    #[test]
    fn text_between_the_pieces_of_a_call_follows_the_call_whole() {
        let mut stream = MessagesStream::new("msg_1", "m");
        let mut events = stream.start();
        for delta in [
            json!({"content": "Let me look. "}),
            json!({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{\"x\""}}]}),
            json!({"content": "Still here."}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        ] {
            let chunk = json!({"choices": [{"delta": delta}]});
            events.extend(stream.push(&serde_json::to_vec(&chunk).unwrap()).unwrap());
        }
        events.extend(stream.finish());
        let blocks: Vec<&Value> = events
            .iter()
            .filter(|e| e.name == "content_block_start")
            .map(|e| &e.data["content_block"])
            .collect();
        let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["text", "tool_use", "text"], "{events:?}");
        assert_eq!(blocks[1]["id"], "call_a");
        assert_eq!(blocks[1]["name"], "f");
        let pieces = |index: u64, field: &str| -> String {
            events
                .iter()
                .filter(|e| e.name == "content_block_delta" && e.data["index"] == index)
                .filter_map(|e| e.data["delta"][field].as_str())
                .collect()
        };
        assert_eq!(pieces(1, "partial_json"), "{\"x\":1}");
        assert_eq!(pieces(2, "text"), "Still here.");
    }

    #[test]
    fn pieces_without_an_index_are_told_apart_by_their_ids() {
        let events = streamed(&[
            json!([{"id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]),
            json!([{"function": {"arguments": ":1}"}}]),
            json!([{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]),
        ]);
        let expected = [("c1", "f", "{\"a\":1}"), ("c2", "g", "{}")];
        assert_eq!(
            tool_blocks(&events),
            expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );
    }

    #[test]
    fn a_structured_output_schema_becomes_a_response_format() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let base = json!({"model": "m", "max_tokens": 9,
            "messages": [{"role": "user", "content": "count"}]});
        for (field, value) in [
            (
                "output_config",
                json!({"format": {"type": "json_schema", "schema": schema}}),
            ),
            (
                "output_format",
                json!({"type": "json_schema", "schema": schema}),
            ),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let chat = request_to_chat(&body, false).unwrap();
            assert_eq!(chat["response_format"]["type"], "json_schema", "{chat}");
            assert_eq!(chat["response_format"]["json_schema"]["schema"], schema);
        }
        assert!(
            request_to_chat(&base, false)
                .unwrap()
                .get("response_format")
                .is_none()
        );
        let mut bad = base;
        bad["output_config"] = json!({"format": {"type": "json_schema", "schema": "x"}});
        let e = request_to_chat(&bad, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("output_config.format.schema"));
    }

    #[test]
    fn tool_calls_an_upstream_gave_no_id_get_distinct_ids() {
        let call =
            |name: &str| json!({"type": "function", "function": {"name": name, "arguments": "{}"}});
        let chat = json!({"choices": [{"message": {"role": "assistant",
            "tool_calls": [call("f"), call("g"), {"id": "call_7", "function": {"name": "h"}}]},
            "finish_reason": "tool_calls"}]});
        let message = answer_from_chat(&chat, "m", "msg_1");
        let ids: Vec<&str> = message["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|block| block["id"].as_str())
            .collect();
        assert_eq!(ids, ["toolu_1_0", "toolu_1_1", "call_7"]);
    }

    #[test]
    fn blocks_and_tools_missing_what_anthropic_requires_are_refused_by_field() {
        let turn = |content: Value| {
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": content}]})
        };
        let refused = [
            (
                turn(json!([{"type": "tool_use", "name": "f", "input": {}}])),
                "messages",
                "tool_use block needs a string id",
            ),
            (
                turn(json!([{"type": "tool_use", "id": "t1", "input": {}}])),
                "messages",
                "tool_use block needs a string name",
            ),
            (
                turn(json!([{"type": "text", "text": 5}])),
                "messages",
                "text block needs a string text",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
                "messages",
                "tool_result block needs a string tool_use_id",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": 5}], "messages": [{"role": "user", "content": "hi"}]}),
                "system",
                "system text block needs a string text",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "tools": [{"input_schema": {}}], "messages": [{"role": "user", "content": "hi"}]}),
                "tools",
                "tool needs a string name",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool"},
                "messages": [{"role": "user", "content": "hi"}]}),
                "tool_choice",
                "needs a string name",
            ),
        ];
        // (A native request's own body goes to Anthropic, which answers for it.)
        for (body, param, says) in refused {
            let e = request_to_chat(&body, false).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert!(e.message.contains(says), "{}: {body}", e.message);
        }
    }

    #[test]
    fn a_user_id_that_is_not_a_string_is_named_as_the_client_wrote_it() {
        let body = json!({"model": "m", "max_tokens": 5, "metadata": {"user_id": 7},
                          "messages": [{"role": "user", "content": "hi"}]});
        let e = request_to_chat(&body, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("metadata.user_id"));
        let long = "u".repeat(crate::openai::MAX_END_USER_BYTES + 1);
        let body = json!({"model": "m", "max_tokens": 5, "metadata": {"user_id": long},
            "messages": [{"role": "user", "content": "hi"}]});
        let e = request_to_chat(&body, false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("metadata.user_id"), "{e}");
        let body = json!({"model": "m", "max_tokens": 5, "metadata": {"user_id": "u-1"},
                          "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(request_to_chat(&body, false).unwrap()["user"], "u-1");
    }
}
