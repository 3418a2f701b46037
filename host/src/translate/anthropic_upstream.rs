//! Chat completions to a native Anthropic upstream and back: the request a
//! `anthropic/` deployment sends to `{api_base}/v1/messages`, and its answer
//! (a `message` body or the Messages event stream) as a `chat.completion`
//! or `chat.completion.chunk` payloads. The inbound direction (Anthropic
//! clients served by chat upstreams) is [`super::anthropic`].
//!
//! Kept: system and developer messages (as `system`), text and image parts,
//! `cache_control` on parts, assistant tool calls (`tool_use`), tool results
//! (`tool_result` in a user turn), an assistant message's signed thinking
//! (LiteLLM's `thinking_blocks`, which Anthropic needs back in a turn with
//! tool calls when thinking is on), `tools`, `tool_choice`,
//! `parallel_tool_calls: false`, `max_tokens` / `max_completion_tokens`,
//! `temperature`, `top_p`, `top_k`, `stop`, `user` (as `metadata.user_id`),
//! `thinking` (as sent), `metadata`. Mapped: `reasoning_effort` to a thinking
//! budget when no `thinking` is given; a `response_format` JSON schema to a
//! tool the answer is given through ([`JSON_TOOL`], as LiteLLM does), whose
//! input comes back as the message's content. Dropped: fields Anthropic has
//! no counterpart for (`n`, `logprobs`, `seed`, penalties, `response_format`
//! `json_object`, `stream_options`, ...).

use serde_json::{Map, Value, json};

use super::TranslateError;

/// The chat request field that carries a Messages client's original body
/// (set by the `/v1/messages` route): an `anthropic/` deployment sends that
/// body as it is (with its own model name) and answers natively; every
/// other target leaves the field out, and composite strategies never see it.
pub const NATIVE_FIELD: &str = "conclave_native_messages";

/// The chat request field that carries, beside [`NATIVE_FIELD`], the
/// client's own [`CLIENT_HEADERS`] as a JSON object of strings: a native
/// request is sent with them, since its body was written for them.
pub const NATIVE_HEADERS_FIELD: &str = "conclave_native_headers";

/// The headers of a Messages client that its request passed through to an
/// `anthropic/` deployment keeps: the beta features it asks for, which
/// Anthropic reads only there. (The API version is the deployment's
/// `api_version`, as in LiteLLM: an SDK newer than the upstream would
/// otherwise name a version it does not know.)
pub const CLIENT_HEADERS: [&str; 1] = ["anthropic-beta"];

/// The original Messages body a chat request carries, as the upstream
/// request: `model` set to `model`, `stream` to `stream`, nothing else changed.
pub fn native_request(native: &Value, model: &str, stream: bool) -> Option<Value> {
    let mut body = native.as_object()?.clone();
    body.insert("model".into(), json!(model));
    if stream {
        body.insert("stream".into(), json!(true));
    } else {
        body.remove("stream");
    }
    Some(Value::Object(body))
}

/// `max_tokens` when the chat request sets none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A chat request as a Messages request.
#[derive(Debug)]
pub struct MessagesBody {
    pub body: Value,
    /// Whether the answer comes through [`JSON_TOOL`] (the request asked
    /// for a `response_format` schema): the answer's translation needs to
    /// know, since a client's own tool could bear the name otherwise.
    pub json_tool: bool,
}

/// The Messages request for chat request `chat`, sent as `model`.
pub fn request_from_chat(
    chat: &Value,
    model: &str,
    stream: bool,
) -> Result<MessagesBody, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let (system, messages) = messages_from_chat(&chat["messages"])?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    // A thinking budget the effort asks for, when `thinking` is not given.
    let wanted = match chat["thinking"].is_object() {
        true => None,
        false => effort_budget(&chat["reasoning_effort"]),
    };
    // Without a client's figure, room for the answer besides the thinking.
    let max_tokens = chat["max_completion_tokens"]
        .as_u64()
        .or_else(|| chat["max_tokens"].as_u64())
        .unwrap_or(DEFAULT_MAX_TOKENS + wanted.unwrap_or(0));
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = chat.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    match &chat["stop"] {
        Value::String(s) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Value::Array(list) if !list.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    let thinking = match &chat["thinking"] {
        given @ Value::Object(_) => Some(given.clone()),
        _ => wanted
            .and_then(|w| thinking_budget(w, max_tokens))
            .map(|budget| json!({"type": "enabled", "budget_tokens": budget})),
    };
    let thinks = thinking
        .as_ref()
        .is_some_and(|t| t["type"].as_str() != Some("disabled"));
    let json_tool = add_tools(chat, thinks, &mut out)?;
    let mut metadata = chat["metadata"].as_object().cloned().unwrap_or_default();
    if let Some(user) = chat["user"].as_str() {
        metadata.insert("user_id".into(), json!(user));
    }
    if !metadata.is_empty() {
        out.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(thinking) = thinking {
        out.insert("thinking".into(), thinking);
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    Ok(MessagesBody {
        body: Value::Object(out),
        json_tool,
    })
}

/// The tool a `response_format` JSON schema becomes (LiteLLM's name): the
/// model answers by calling it, and its input is the answer's content.
pub const JSON_TOOL: &str = "json_tool_call";

/// What the model is told about [`JSON_TOOL`] when it is not forced to call
/// it (thinking is on, which a forced tool refuses, or the client's own
/// tools must stay callable).
const JSON_TOOL_DESCRIPTION: &str = "Give your final answer by calling this tool, \
     with the answer as its input; do not answer in plain text.";

/// The client's `tools` and `tool_choice`, and the tool a `response_format`
/// schema asks for: forced when nothing else competes with it (no thinking,
/// no tools of the client's, no choice of the client's). Says whether that
/// tool was added.
fn add_tools(
    chat: &Value,
    thinks: bool,
    out: &mut Map<String, Value>,
) -> Result<bool, TranslateError> {
    let mut tools: Vec<Value> = chat["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(tool)
        .collect();
    let client_tools = !tools.is_empty();
    let json_tool = json_tool(&chat["response_format"])?;
    if json_tool.is_some() && tools.iter().any(|t| t["name"] == JSON_TOOL) {
        return Err(TranslateError::new(
            format!(
                "a tool named {JSON_TOOL} cannot be given with a response_format schema, which an Anthropic deployment answers through a tool of that name"
            ),
            "tools",
        ));
    }
    let answers_through_tool = json_tool.is_some();
    let mut choice = match client_tools {
        true => {
            let allowed = allowed_tools(&chat["tool_choice"])?;
            if let Some(allowed) = allowed {
                if let Some(name) = allowed
                    .iter()
                    .find(|n| !tools.iter().any(|t| t["name"] == **n))
                {
                    return Err(TranslateError::new(
                        format!(
                            "tool_choice.allowed_tools names {name:?}, which no tool in `tools` is"
                        ),
                        "tool_choice.allowed_tools.tools",
                    ));
                }
                tools.retain(|t| t["name"].as_str().is_some_and(|n| allowed.contains(&n)));
            }
            tool_choice(&chat["tool_choice"], &chat["parallel_tool_calls"])?
        }
        false => None,
    };
    if let Some(mut schema_tool) = json_tool {
        if thinks || client_tools {
            schema_tool["description"] = json!(JSON_TOOL_DESCRIPTION);
        } else if choice.is_none() {
            choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
        }
        tools.push(schema_tool);
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".into(), choice);
    }
    Ok(answers_through_tool)
}

/// The tool a chat `response_format` of type `json_schema` becomes; `None`
/// for `text`, for `json_object` and for a `json_schema` without a schema
/// (Anthropic has no JSON mode without one). Anthropic's tool input is an
/// object, so a schema of another type is refused.
fn json_tool(format: &Value) -> Result<Option<Value>, TranslateError> {
    if format["type"].as_str() != Some("json_schema") {
        return Ok(None);
    }
    let schema = &format["json_schema"]["schema"];
    let mut schema = match schema {
        Value::Null => return Ok(None),
        Value::Object(fields) => fields.clone(),
        _ => {
            return Err(TranslateError::new(
                "response_format.json_schema.schema must be a JSON schema object",
                "response_format.json_schema.schema",
            ));
        }
    };
    match schema.get("type") {
        None => {
            schema.insert("type".into(), json!("object"));
        }
        Some(kind) if kind == "object" => {}
        Some(_) => {
            return Err(TranslateError::new(
                "response_format.json_schema.schema must describe an object on an anthropic/ deployment (the answer comes as a tool's input, which is one)",
                "response_format.json_schema.schema.type",
            ));
        }
    }
    Ok(Some(json!({"name": JSON_TOOL, "input_schema": schema})))
}

/// The thinking budget a reasoning effort asks for.
fn effort_budget(effort: &Value) -> Option<u64> {
    match effort.as_str()? {
        "low" | "minimal" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        _ => None,
    }
}

/// The budget `wanted`, at most three quarters of `max_tokens` so that
/// thinking leaves room for the answer (Anthropic counts both against
/// `max_tokens`, and its minimum budget is 1024); `None` when there is no
/// room for one.
fn thinking_budget(wanted: u64, max_tokens: u64) -> Option<u64> {
    let budget = wanted.min(max_tokens.saturating_mul(3) / 4);
    (budget >= 1024).then_some(budget)
}

/// System blocks and alternating turns from chat `messages`.
fn messages_from_chat(messages: &Value) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let list = messages
        .as_array()
        .ok_or_else(|| TranslateError::new("messages must be an array", "messages"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m["role"].as_str().unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(content_blocks(&m["content"], &at)?);
                continue;
            }
            "user" => ("user", content_blocks(&m["content"], &at)?),
            "assistant" => ("assistant", assistant_blocks(m, &at)?),
            "tool" | "function" => ("user", vec![tool_result(m, &at)?]),
            other => {
                return Err(TranslateError::new(
                    format!("{at}.role {other:?} is not a chat role"),
                    &format!("{at}.role"),
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants turns to alternate: consecutive turns of one role
        // (several tool results, a result and the next user text) are merged.
        match turns.last_mut() {
            Some((last, content)) if last == role => content.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, turns))
}

/// A chat message's content as Anthropic blocks.
fn content_blocks(content: &Value, at: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part_block(p, &format!("{at}.content[{j}]")))
            .collect(),
        _ => Err(TranslateError::new(
            format!("{at}.content must be a string or an array of parts"),
            &format!("{at}.content"),
        )),
    }
}

/// One content part: text, or an image (a data URL or a link).
fn part_block(part: &Value, at: &str) -> Result<Value, TranslateError> {
    let mut block = match part["type"].as_str() {
        Some("text") => json!({"type": "text", "text": part["text"].as_str().unwrap_or("")}),
        Some("image_url") => {
            let url = part["image_url"]["url"]
                .as_str()
                .or_else(|| part["image_url"].as_str())
                .unwrap_or("");
            json!({"type": "image", "source": image_source(url)})
        }
        Some("file") => file_block(&part["file"], at)?,
        other => {
            let kind = other.map_or_else(|| "(missing)".to_owned(), |k| format!("{k:?}"));
            return Err(TranslateError::new(
                format!("{at}.type {kind} is not supported by Anthropic upstreams"),
                &format!("{at}.type"),
            ));
        }
    };
    if let Some(cache) = part.get("cache_control") {
        block["cache_control"] = cache.clone();
    }
    Ok(block)
}

/// A chat `file` part (a PDF or an image as a `data:` URL, or a PDF's
/// URL) as Anthropic's `document` or `image` block, its `filename` as the
/// document's title. An uploaded file (`file_id`) has no Messages form.
fn file_block(file: &Value, at: &str) -> Result<Value, TranslateError> {
    let field = format!("{at}.file.file_data");
    let Some(data) = file["file_data"].as_str().filter(|d| !d.is_empty()) else {
        return Err(TranslateError::new(
            format!(
                "{field} is required for an Anthropic upstream (a file_id names a file uploaded elsewhere)"
            ),
            &field,
        ));
    };
    let source = image_source(data);
    if data.starts_with("data:") && source["type"] != "base64" {
        return Err(TranslateError::new(
            format!("{field} must be a base64 data: URL or an https URL"),
            &field,
        ));
    }
    let media_type = source["media_type"].as_str().unwrap_or("application/pdf");
    if media_type.starts_with("image/") {
        return Ok(json!({"type": "image", "source": source}));
    }
    if media_type != "application/pdf" {
        return Err(TranslateError::new(
            format!("{field} holds {media_type}; an Anthropic upstream reads PDFs and images"),
            &field,
        ));
    }
    let mut block = json!({"type": "document", "source": source});
    if let Some(name) = file["filename"].as_str() {
        block["title"] = json!(name);
    }
    Ok(block)
}

/// An image URL as Anthropic's image source.
fn image_source(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media_type, data)) = rest.split_once(";base64,")
    {
        return json!({"type": "base64", "media_type": media_type, "data": data});
    }
    json!({"type": "url", "url": url})
}

/// An assistant turn: its thinking, its text, then its tool calls as
/// `tool_use` blocks.
fn assistant_blocks(m: &Value, at: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = thinking_blocks(&m["thinking_blocks"], at)?;
    blocks.extend(content_blocks(&m["content"], at)?);
    for (k, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{at}.tool_calls[{k}].function.arguments");
        // Arguments are JSON text; some clients send the object itself.
        let input: Value = match &call["function"]["arguments"] {
            Value::String(text) if text.trim().is_empty() => json!({}),
            Value::String(text) => serde_json::from_str(text)
                .map_err(|e| TranslateError::new(format!("{field} is not JSON: {e}"), &field))?,
            other => other.clone(),
        };
        // A tool's input is an object to Anthropic; `null` is no arguments.
        let input = match input {
            Value::Object(_) => input,
            Value::Null => json!({}),
            _ => {
                return Err(TranslateError::new(
                    format!("{field} must be a JSON object (a tool's input)"),
                    &field,
                ));
            }
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": call["id"].as_str().unwrap_or(""),
            "name": call["function"]["name"].as_str().unwrap_or(""),
            "input": input,
        }));
    }
    Ok(blocks)
}

/// The thinking an assistant message gives back (LiteLLM's
/// `thinking_blocks`, as answers carry them): `thinking` blocks with their
/// signatures and `redacted_thinking` blocks with their data, as Anthropic
/// wrote them. Anthropic checks the signatures; a block missing one is
/// refused here, naming it.
fn thinking_blocks(blocks: &Value, at: &str) -> Result<Vec<Value>, TranslateError> {
    let list = match blocks {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => {
            return Err(TranslateError::new(
                format!("{at}.thinking_blocks must be an array"),
                &format!("{at}.thinking_blocks"),
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (k, block) in list.iter().enumerate() {
        let path = format!("{at}.thinking_blocks[{k}]");
        let text = |name: &str| {
            block[name].as_str().ok_or_else(|| {
                TranslateError::new(
                    format!("{path}.{name} must be a string"),
                    &format!("{path}.{name}"),
                )
            })
        };
        out.push(match block["type"].as_str() {
            Some("thinking") => json!({
                "type": "thinking",
                "thinking": text("thinking")?,
                "signature": text("signature")?,
            }),
            Some("redacted_thinking") => {
                json!({"type": "redacted_thinking", "data": text("data")?})
            }
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.type must be \"thinking\" or \"redacted_thinking\""),
                    &format!("{path}.type"),
                ));
            }
        });
    }
    Ok(out)
}

/// A `tool` message as a `tool_result` block.
fn tool_result(m: &Value, at: &str) -> Result<Value, TranslateError> {
    let content = match &m["content"] {
        Value::String(text) => json!(text),
        Value::Array(_) => Value::Array(content_blocks(&m["content"], at)?),
        _ => json!(""),
    };
    Ok(json!({
        "type": "tool_result",
        "tool_use_id": m["tool_call_id"].as_str().unwrap_or(""),
        "content": content,
    }))
}

/// A chat function tool as an Anthropic tool.
fn tool(t: &Value) -> Value {
    let f = &t["function"];
    let mut out = json!({
        "name": f["name"].as_str().unwrap_or(""),
        "input_schema": if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object"}) },
    });
    if let Some(d) = f["description"].as_str() {
        out["description"] = json!(d);
    }
    if let Some(cache) = t.get("cache_control") {
        out["cache_control"] = cache.clone();
    }
    out
}

/// `tool_choice` (and `parallel_tool_calls: false`) in Anthropic's shape.
fn tool_choice(choice: &Value, parallel: &Value) -> Result<Option<Value>, TranslateError> {
    let mut out = match choice {
        Value::Null => json!({"type": "auto"}),
        Value::String(s) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(unknown_tool_choice()),
        },
        Value::Object(_) => match (choice["type"].as_str(), choice["function"]["name"].as_str()) {
            (Some("function") | None, Some(name)) => json!({"type": "tool", "name": name}),
            (Some("allowed_tools"), _) => match &choice["allowed_tools"]["mode"] {
                Value::String(mode) if mode == "required" => json!({"type": "any"}),
                Value::String(mode) if mode == "auto" => json!({"type": "auto"}),
                _ => {
                    return Err(TranslateError::new(
                        "tool_choice.allowed_tools.mode must be \"auto\" or \"required\"",
                        "tool_choice.allowed_tools.mode",
                    ));
                }
            },
            _ => return Err(unknown_tool_choice()),
        },
        _ => return Err(unknown_tool_choice()),
    };
    if parallel == &Value::Bool(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = json!(true);
    }
    if choice.is_null() && parallel.is_null() {
        return Ok(None);
    }
    Ok(Some(out))
}

fn unknown_tool_choice() -> TranslateError {
    TranslateError::new(
        "tool_choice must be \"auto\", \"required\", \"none\", a function or allowed_tools \
         for an Anthropic deployment",
        "tool_choice",
    )
}

/// The tool names a chat `tool_choice` of type `allowed_tools` lets the
/// model call (Anthropic has no such choice: the other tools are not sent);
/// `None` for any other choice. A name no tool has is refused.
fn allowed_tools(choice: &Value) -> Result<Option<Vec<&str>>, TranslateError> {
    if choice["type"].as_str() != Some("allowed_tools") {
        return Ok(None);
    }
    let listed = choice["allowed_tools"]["tools"].as_array();
    let names: Option<Vec<&str>> = listed.map(|tools| {
        tools
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().or(t["name"].as_str()))
            .collect()
    });
    match names {
        Some(names) if names.len() == listed.map_or(0, Vec::len) && !names.is_empty() => {
            Ok(Some(names))
        }
        _ => Err(TranslateError::new(
            "tool_choice.allowed_tools.tools must list the functions the model may call, each by name",
            "tool_choice.allowed_tools.tools",
        )),
    }
}

/// A chat `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic usage in OpenAI's shape: prompt tokens include the cached
/// reads and the cache writes, reads reported as
/// `prompt_tokens_details.cached_tokens`; the writes also as
/// `cache_creation_input_tokens` (LiteLLM's name).
pub fn usage(u: &Value) -> Value {
    let input = u["input_tokens"].as_u64().unwrap_or(0);
    let read = u["cache_read_input_tokens"].as_u64().unwrap_or(0);
    let created = u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
    let output = u["output_tokens"].as_u64().unwrap_or(0);
    let prompt = input + read + created;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    })
}

/// A `message` body as a `chat.completion`. With `json_tool` (the request
/// asked for a [`JSON_TOOL`]), that tool's input is the content, in place of
/// any prose beside it, and a call of it alone finishes as `stop`.
pub fn answer_to_chat(message: &Value, created: u64, json_tool: bool) -> Value {
    let mut text = String::new();
    let mut json_answer: Option<String> = None;
    let mut reasoning = String::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    for block in message["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") if json_tool && block["name"] == JSON_TOOL => {
                json_answer
                    .get_or_insert_default()
                    .push_str(&block["input"].to_string());
            }
            Some("thinking") => {
                let piece = block["thinking"].as_str().unwrap_or("");
                reasoning.push_str(piece);
                thinking.push(thinking_block(
                    piece,
                    block["signature"].as_str().unwrap_or(""),
                ));
            }
            Some("redacted_thinking") => thinking.push(redacted_block(&block["data"])),
            Some("tool_use") => calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let stop_reason = message["stop_reason"].as_str().unwrap_or("end_turn");
    let mut finish = finish_reason(stop_reason);
    if let Some(answer) = json_answer {
        text = answer;
        if calls.is_empty() && finish == "tool_calls" {
            finish = "stop";
        }
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !reasoning.is_empty() {
        msg["reasoning_content"] = json!(reasoning);
    }
    if !thinking.is_empty() {
        msg["thinking_blocks"] = Value::Array(thinking);
    }
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": message["id"],
        "object": "chat.completion",
        "created": created,
        "model": message["model"],
        "choices": [{
            "index": 0,
            "message": msg,
            "finish_reason": finish,
        }],
        "usage": usage(&message["usage"]),
    })
}

/// A thinking block in the shape chat answers carry it (LiteLLM's
/// `thinking_blocks`), to be given back with the next turn.
fn thinking_block(thinking: &str, signature: &str) -> Value {
    json!({"type": "thinking", "thinking": thinking, "signature": signature})
}

/// A redacted thinking block as chat answers carry it.
fn redacted_block(data: &Value) -> Value {
    json!({"type": "redacted_thinking", "data": data})
}

/// What one Messages stream event means for the chat stream.
#[derive(Debug, PartialEq)]
pub enum StreamStep {
    /// Chunk payloads to send (possibly none).
    Chunks(Vec<Value>),
    /// `message_stop`: the stream is complete.
    Done,
    /// An `error` event: the upstream's error type and message.
    Error { kind: String, message: String },
}

/// Turns Messages stream events into `chat.completion.chunk` payloads:
/// text deltas as `content`, thinking as `reasoning_content` (and each
/// thinking block whole, with its signature, in `thinking_blocks` when it
/// ends), tool_use blocks as `tool_calls` (indexed in order), the final
/// chunk with the finish reason, and then the usage in a chunk without
/// choices (input and cache tokens from `message_start`, output tokens
/// from `message_delta`).
#[derive(Debug, Default)]
pub struct ChunkStream {
    id: String,
    model: String,
    created: u64,
    /// `message_start`'s usage, completed by `message_delta`'s.
    usage: Map<String, Value>,
    /// The tool calls so far, in order.
    tools: Vec<ToolBlock>,
    /// The thinking block being streamed, given whole when it stops.
    thinking: Option<ThinkingSoFar>,
    /// Set when the request asked for a [`JSON_TOOL`], whose input is
    /// streamed as content.
    json: Option<JsonAnswer>,
}

/// The answer through [`JSON_TOOL`] of a stream so far.
#[derive(Debug, Default)]
struct JsonAnswer {
    /// The tool's block, once it has started.
    block: Option<u64>,
    /// Whether any of its input came.
    has_input: bool,
    /// Prose held back until the stream shows whether the answer comes
    /// through the tool (then the prose is dropped, as LiteLLM drops it) or
    /// not (then it is given at the end).
    held: String,
}

/// A `thinking` block of the stream so far: its index, text and signature.
#[derive(Debug, Default)]
struct ThinkingSoFar {
    block: u64,
    text: String,
    signature: String,
}

/// A `tool_use` block of the stream, as a chat tool call.
#[derive(Debug)]
struct ToolBlock {
    /// The block's index in the Messages stream.
    block: u64,
    /// Whether any arguments were given for it: a call without arguments
    /// gets `{}` when its block stops, as a chat client parses them.
    has_arguments: bool,
}

impl ChunkStream {
    /// A translator for one stream; `created` stamps every chunk.
    pub fn new(created: u64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    /// The same translator for a request that asked for a [`JSON_TOOL`]:
    /// the tool's input is streamed as the content.
    pub fn answering_through_json_tool(mut self) -> Self {
        self.json = Some(JsonAnswer::default());
        self
    }

    /// The chat steps for one event payload (its JSON data).
    pub fn push(&mut self, event: &Value) -> StreamStep {
        let chunks = match event["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &event["message"];
                self.id = m["id"].as_str().unwrap_or("").to_owned();
                self.model = m["model"].as_str().unwrap_or("").to_owned();
                self.merge_usage(&m["usage"]);
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                // A thinking block whose stop never came ends where the
                // next block starts.
                let mut chunks = self.thinking_stop();
                chunks.extend(self.block_start(event));
                chunks
            }
            "content_block_delta" => self.block_delta(event),
            "content_block_stop" => self.block_stop(event),
            "message_delta" => {
                self.merge_usage(&event["usage"]);
                let mut reason =
                    finish_reason(event["delta"]["stop_reason"].as_str().unwrap_or("end_turn"));
                let mut chunks = self.thinking_stop();
                if let Some(json) = &mut self.json {
                    let held = std::mem::take(&mut json.held);
                    let answered = json.block.is_some();
                    if !answered && !held.is_empty() {
                        chunks.push(self.chunk(json!({"content": held}), None));
                    } else if answered && self.tools.is_empty() && reason == "tool_calls" {
                        reason = "stop";
                    }
                }
                chunks.push(self.chunk(json!({}), Some(reason)));
                // The usage in a chunk of its own, as OpenAI sends it when
                // asked: one the client did not ask for is kept from it.
                let mut totals = self.chunk(json!({}), None);
                totals["choices"] = json!([]);
                totals["usage"] = usage(&Value::Object(self.usage.clone()));
                chunks.push(totals);
                chunks
            }
            "message_stop" => return StreamStep::Done,
            "error" => {
                return StreamStep::Error {
                    kind: event["error"]["type"]
                        .as_str()
                        .unwrap_or("error")
                        .to_owned(),
                    message: event["error"]["message"].as_str().unwrap_or("").to_owned(),
                };
            }
            _ => Vec::new(),
        };
        StreamStep::Chunks(chunks)
    }

    fn merge_usage(&mut self, u: &Value) {
        for (k, v) in u.as_object().into_iter().flatten() {
            if v.is_number() {
                self.usage.insert(k.clone(), v.clone());
            }
        }
    }

    fn block_start(&mut self, event: &Value) -> Vec<Value> {
        let block = &event["content_block"];
        match block["type"].as_str() {
            Some("tool_use") if block["name"] == JSON_TOOL && self.json.is_some() => {
                if let Some(json) = &mut self.json {
                    json.block = Some(event["index"].as_u64().unwrap_or(0));
                    json.held.clear();
                }
                Vec::new()
            }
            Some("tool_use") => {
                let index = self.tools.len() as u64;
                self.tools.push(ToolBlock {
                    block: event["index"].as_u64().unwrap_or(0),
                    has_arguments: false,
                });
                vec![self.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "id": block["id"],
                        "type": "function",
                        "function": {"name": block["name"], "arguments": ""},
                    }]}),
                    None,
                )]
            }
            Some("text") if block["text"].as_str().is_some_and(|t| !t.is_empty()) => {
                self.text(&block["text"])
            }
            Some("thinking") => {
                self.thinking = Some(ThinkingSoFar {
                    block: event["index"].as_u64().unwrap_or(0),
                    ..ThinkingSoFar::default()
                });
                Vec::new()
            }
            Some("redacted_thinking") => {
                let blocks = json!({"thinking_blocks": [redacted_block(&block["data"])]});
                vec![self.chunk(blocks, None)]
            }
            _ => Vec::new(),
        }
    }

    fn block_delta(&mut self, event: &Value) -> Vec<Value> {
        let delta = &event["delta"];
        let out = match delta["type"].as_str() {
            Some("text_delta") => return self.text(&delta["text"]),
            Some("thinking_delta") => {
                if let (Some(so_far), Some(piece)) =
                    (&mut self.thinking, delta["thinking"].as_str())
                {
                    so_far.text.push_str(piece);
                }
                json!({"reasoning_content": delta["thinking"]})
            }
            Some("signature_delta") => {
                if let (Some(so_far), Some(piece)) =
                    (&mut self.thinking, delta["signature"].as_str())
                {
                    so_far.signature.push_str(piece);
                }
                return Vec::new();
            }
            Some("input_json_delta") if self.is_json_block(event) => {
                let piece = delta["partial_json"].as_str().unwrap_or_default();
                if piece.is_empty() {
                    return Vec::new();
                }
                if let Some(json) = &mut self.json {
                    json.has_input = true;
                }
                json!({"content": piece})
            }
            Some("input_json_delta") => {
                let Some(index) = self.tool_of(event) else {
                    return Vec::new();
                };
                let piece = delta["partial_json"].as_str().unwrap_or_default();
                if piece.is_empty() {
                    return Vec::new();
                }
                if let Some(tool) = self.tools.get_mut(index) {
                    tool.has_arguments = true;
                }
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            }
            _ => return Vec::new(),
        };
        vec![self.chunk(out, None)]
    }

    /// A block's end: a thinking block is given whole; a tool call's
    /// block ending without arguments (a tool that takes none) gets `{}`,
    /// which chat clients parse, rather than nothing.
    fn block_stop(&mut self, event: &Value) -> Vec<Value> {
        let block = event["index"].as_u64().unwrap_or(0);
        if self.thinking.as_ref().is_some_and(|t| t.block == block) {
            return self.thinking_stop();
        }
        if self.is_json_block(event) {
            let without_input = self
                .json
                .as_mut()
                .is_some_and(|j| !std::mem::replace(&mut j.has_input, true));
            return match without_input {
                true => vec![self.chunk(json!({"content": "{}"}), None)],
                false => Vec::new(),
            };
        }
        let Some(index) = self.tool_of(event) else {
            return Vec::new();
        };
        match self.tools.get_mut(index) {
            Some(tool) if !tool.has_arguments => {
                tool.has_arguments = true;
                let args =
                    json!({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]});
                vec![self.chunk(args, None)]
            }
            _ => Vec::new(),
        }
    }

    /// A thinking block's end: the block whole, signed, for the client to
    /// give back with its next turn.
    fn thinking_stop(&mut self) -> Vec<Value> {
        let Some(done) = self.thinking.take() else {
            return Vec::new();
        };
        let blocks = json!({"thinking_blocks": [thinking_block(&done.text, &done.signature)]});
        vec![self.chunk(blocks, None)]
    }

    /// Text as a content chunk, or held back (or dropped, once the
    /// answer came through it) while a [`JSON_TOOL`] may answer.
    fn text(&mut self, text: &Value) -> Vec<Value> {
        match &mut self.json {
            Some(json) => {
                if json.block.is_none() {
                    json.held.push_str(text.as_str().unwrap_or(""));
                }
                Vec::new()
            }
            None => vec![self.chunk(json!({"content": text}), None)],
        }
    }

    /// Whether the block an event names is the [`JSON_TOOL`]'s.
    fn is_json_block(&self, event: &Value) -> bool {
        let block = event["index"].as_u64().unwrap_or(0);
        self.json.as_ref().and_then(|j| j.block) == Some(block)
    }

    /// The tool call index of the block an event names, if it is a tool's.
    fn tool_of(&self, event: &Value) -> Option<usize> {
        let block = event["index"].as_u64().unwrap_or(0);
        self.tools.iter().position(|t| t.block == block)
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tool-call arguments of every chunk the events become, joined by call index.
    fn arguments(events: &[Value]) -> Vec<String> {
        let mut stream = ChunkStream::new(0);
        let mut joined: Vec<String> = Vec::new();
        for event in events {
            let StreamStep::Chunks(chunks) = stream.push(event) else {
                continue;
            };
            for chunk in chunks {
                for call in chunk["choices"][0]["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let index = call["index"].as_u64().unwrap() as usize;
                    if joined.len() <= index {
                        joined.resize(index + 1, String::new());
                    }
                    joined[index].push_str(call["function"]["arguments"].as_str().unwrap());
                }
            }
        }
        joined
    }

    #[test]
    fn a_streamed_tool_without_arguments_gets_an_empty_object() {
        let start = |i: u64, name: &str| {
            json!({"type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}})
        };
        let piece = |i: u64, text: &str| {
            json!({"type": "content_block_delta", "index": i,
                "delta": {"type": "input_json_delta", "partial_json": text}})
        };
        let stop = |i: u64| json!({"type": "content_block_stop", "index": i});
        let events = [
            start(0, "now"),
            piece(0, ""),
            stop(0),
            start(1, "weather"),
            piece(1, "{\"city\":"),
            piece(1, "\"Oslo\"}"),
            stop(1),
        ];
        assert_eq!(arguments(&events), ["{}", "{\"city\":\"Oslo\"}"]);
    }
    /// The thinking blocks of every chunk the events become, in order.
    fn streamed_thinking(events: &[Value]) -> Vec<Value> {
        let mut stream = ChunkStream::new(0);
        let mut blocks = Vec::new();
        for event in events {
            if let StreamStep::Chunks(chunks) = stream.push(event) {
                for chunk in chunks {
                    let delta = &chunk["choices"][0]["delta"];
                    blocks.extend(
                        delta["thinking_blocks"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        blocks
    }

    #[test]
    fn streamed_thinking_blocks_come_whole_and_signed_in_their_order() {
        let delta = |i: u64, delta: Value| json!({"type": "content_block_delta", "index": i, "delta": delta});
        let events = [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            delta(0, json!({"type": "thinking_delta", "thinking": "First, "})),
            delta(
                0,
                json!({"type": "thinking_delta", "thinking": "the weather."}),
            ),
            delta(0, json!({"type": "signature_delta", "signature": "sig-a"})),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
            json!({"type": "content_block_stop", "index": 1}),
            // A thinking block whose stop does not come ends with the message.
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "thinking", "thinking": ""}}),
            delta(
                2,
                json!({"type": "thinking_delta", "thinking": "Then reply."}),
            ),
            delta(2, json!({"type": "signature_delta", "signature": "sig-c"})),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        ];
        assert_eq!(
            streamed_thinking(&events),
            [
                json!({"type": "thinking", "thinking": "First, the weather.", "signature": "sig-a"}),
                json!({"type": "redacted_thinking", "data": "opaque"}),
                json!({"type": "thinking", "thinking": "Then reply.", "signature": "sig-c"}),
            ]
        );
    }

    #[test]
    fn thinking_blocks_round_trip_between_an_answer_and_the_next_request() {
        let content = json!([
            {"type": "thinking", "thinking": "Plan.", "signature": "sig-b"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
        ]);
        let answer = answer_to_chat(
            &json!({"content": content, "stop_reason": "tool_use"}),
            0,
            false,
        );
        let message = &answer["choices"][0]["message"];
        assert_eq!(message["thinking_blocks"], json!([content[0], content[1]]));
        let chat = json!({"messages": [{"role": "user", "content": "time?"}, message]});
        let sent = request_from_chat(&chat, "claude", false).unwrap().body;
        assert_eq!(sent["messages"][1]["content"], content);
    }

    #[test]
    fn allowed_tools_send_only_those_tools_and_other_choices_are_refused() {
        let tools = json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}]);
        let chat = |choice: Value| json!({"messages": [{"role": "user", "content": "go"}], "tools": tools, "tool_choice": choice});
        let allowed = |mode: &str, name: &str| {
            json!({"type": "allowed_tools", "allowed_tools": {"mode": mode,
                "tools": [{"type": "function", "function": {"name": name}}]}})
        };
        let sent = request_from_chat(&chat(allowed("required", "a")), "claude", false)
            .unwrap()
            .body;
        assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
        assert_eq!(sent["tools"][0]["name"], "a");
        assert_eq!(sent["tool_choice"], json!({"type": "any"}));
        let sent = request_from_chat(&chat(allowed("auto", "b")), "claude", false)
            .unwrap()
            .body;
        assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
        for (choice, param) in [
            (allowed("auto", "c"), "tool_choice.allowed_tools.tools"),
            (json!({"type": "bogus"}), "tool_choice"),
            (
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "wat",
                    "tools": [{"type": "function", "function": {"name": "a"}}]}}),
                "tool_choice.allowed_tools.mode",
            ),
            (json!("sometimes"), "tool_choice"),
        ] {
            let e = request_from_chat(&chat(choice), "claude", false).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{e}");
        }
    }

    #[test]
    fn a_thinking_block_of_an_unknown_type_is_refused_naming_it() {
        let chat = json!({"messages": [
            {"role": "assistant", "content": "x", "thinking_blocks": [{"type": "musing", "thinking": "?"}]},
        ]});
        let e = request_from_chat(&chat, "claude", false).unwrap_err();
        assert!(
            e.to_string()
                .contains("messages[0].thinking_blocks[0].type"),
            "{e}"
        );
    }
}
