//! Translation between client dialects and OpenAI chat completions.
//!
//! The pipeline speaks chat completions only; OpenAI's Responses API and
//! Anthropic's Messages API are served by translating the request into a chat
//! request, and the chat answer (a JSON body or a stream of chunk payloads)
//! back. Everything here is a pure function of wire formats, with no HTTP
//! types, so each mapping is tested on its own (golden files, properties).

pub mod anthropic;
pub mod anthropic_upstream;
pub mod responses;

use serde_json::{Map, Value, json};

/// A request that cannot be translated: a 400 naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
    pub param: Option<String>,
}

impl TranslateError {
    /// An error about `param`.
    pub fn new(message: impl Into<String>, param: &str) -> Self {
        Self {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One server-sent event of a translated stream: its `event:` name and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

impl Event {
    pub(crate) fn new(name: &str, data: Value) -> Self {
        Self {
            name: name.to_owned(),
            data,
        }
    }

    /// The event as SSE text: `event: <name>\ndata: <json>\n\n`.
    pub fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

/// What one OpenAI `chat.completion.chunk` payload carries for a
/// translator: the first choice's deltas, its finish reason, and usage.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChunkDelta {
    pub content: Option<String>,
    /// The model's refusal (OpenAI's `refusal`, in place of content).
    pub refusal: Option<String>,
    pub reasoning: Option<String>,
    /// Signed thinking blocks (LiteLLM's `thinking_blocks`), as an
    /// Anthropic upstream's stream gives each when it ends.
    pub thinking_blocks: Vec<Value>,
    pub tool_calls: Vec<ToolCallDelta>,
    pub finish_reason: Option<String>,
    pub usage: Option<TokenUsage>,
}

/// A piece of one streamed tool call, keyed by its index in the choice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolCallDelta {
    /// The call's `index`; `None` when the upstream left it out (some
    /// OpenAI-compatible servers do), for [`CallOrder`] to work out.
    pub index: Option<u64>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// Streamed tool calls in the order the Messages and Responses streams
/// need: one block (item) per call, all of its pieces together, never
/// reopened. A chat stream may send every call's header (id and name)
/// first and the arguments after, or interleave the pieces of parallel
/// calls: the first call to bring arguments streams as it comes, every
/// other call is held whole and given at the end ([`Self::finish`]), where
/// a call that never got arguments is given too. Reasoning and text that
/// come while a call streams are held too ([`Self::hold_prose`]).
#[derive(Debug, Default)]
pub struct CallOrder {
    /// Calls not given yet, by index, their pieces joined.
    held: std::collections::BTreeMap<u64, ToolCallDelta>,
    /// The call whose block is open: its pieces pass at once.
    open: Option<u64>,
    /// The index and id of the last piece that came without an index.
    last_unindexed: Option<(u64, Option<String>)>,
    /// Reasoning and text that came while a call was streaming.
    held_reasoning: String,
    held_text: String,
}

impl CallOrder {
    /// Sets `chunk`'s reasoning and text aside while a call streams: its
    /// block cannot stop before its last piece without splitting the call
    /// in two, so they are given after it ([`Self::finish_prose`]).
    pub fn hold_prose(&mut self, chunk: &mut ChunkDelta) {
        if self.open.is_none() {
            return;
        }
        if let Some(reasoning) = chunk.reasoning.take() {
            self.held_reasoning.push_str(&reasoning);
        }
        if let Some(text) = chunk.content.take() {
            self.held_text.push_str(&text);
        }
    }

    /// What [`Self::hold_prose`] set aside, reasoning then text, to give at
    /// the end of the answer before the held calls.
    pub fn finish_prose(&mut self) -> (Option<String>, Option<String>) {
        let taken = |s: &mut String| Some(std::mem::take(s)).filter(|s| !s.is_empty());
        (taken(&mut self.held_reasoning), taken(&mut self.held_text))
    }

    /// The deltas of one chunk to translate now, each with its index.
    pub fn take(&mut self, calls: Vec<ToolCallDelta>) -> Vec<ToolCallDelta> {
        let mut now = Vec::new();
        for mut call in calls {
            let index = self.index_of(&call);
            call.index = Some(index);
            if self.open == Some(index) {
                now.push(call);
                continue;
            }
            let held = self.held.entry(index).or_default();
            held.index = Some(index);
            held.id = held.id.take().or(call.id);
            // A name may come in pieces too, as OpenAI's SDK joins them.
            held.name = match (held.name.take(), call.name) {
                (Some(first), Some(more)) => Some(first + &more),
                (first, more) => first.or(more),
            };
            held.arguments.push_str(&call.arguments);
            if self.open.is_none()
                && !held.arguments.is_empty()
                && let Some(first) = self.held.remove(&index)
            {
                self.open = Some(index);
                now.push(first);
            }
        }
        now
    }

    /// The index of `call`: its own, else (a server that leaves indexes
    /// out) the previous unindexed call's unless this piece brings a new id.
    fn index_of(&mut self, call: &ToolCallDelta) -> u64 {
        if let Some(index) = call.index {
            return index;
        }
        let index = match &self.last_unindexed {
            Some((last, id)) if call.id.is_none() || call.id == *id => *last,
            Some((last, _)) => last + 1,
            None => self
                .held
                .keys()
                .chain(&self.open)
                .max()
                .map_or(0, |i| i + 1),
        };
        let id = call.id.clone().or_else(|| {
            self.last_unindexed
                .as_ref()
                .filter(|(last, _)| *last == index)
                .and_then(|(_, id)| id.clone())
        });
        self.last_unindexed = Some((index, id));
        index
    }

    /// The calls not given yet, whole, in index order, to give at the end
    /// of the answer.
    pub fn finish(&mut self) -> Vec<ToolCallDelta> {
        self.open = None;
        std::mem::take(&mut self.held).into_values().collect()
    }
}

/// Reads a chunk payload; an error names why one cannot be read (a number
/// out of range, say), for the stream to end with it rather than lose the
/// chunk's text. Only the first choice (index 0) is read: the translated
/// APIs answer with one, as a translated answer that is not streamed keeps
/// the first.
pub fn parse_chunk(payload: &[u8]) -> Result<ChunkDelta, String> {
    let chunk: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the upstream sent a stream event that cannot be read ({e})"))?;
    let mut out = ChunkDelta {
        usage: usage_of(&chunk),
        ..ChunkDelta::default()
    };
    let first = chunk["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["index"].as_u64().unwrap_or(0) == 0);
    let Some(choice) = first else {
        return Ok(out);
    };
    let delta = &choice["delta"];
    out.content = non_empty(&delta["content"]);
    out.refusal = non_empty(&delta["refusal"]);
    out.reasoning = non_empty(reasoning_of(delta));
    out.thinking_blocks = thinking_blocks_of(delta);
    out.finish_reason = choice["finish_reason"].as_str().map(str::to_owned);
    for call in delta["tool_calls"].as_array().into_iter().flatten() {
        out.tool_calls.push(ToolCallDelta {
            index: call["index"].as_u64(),
            id: non_empty(&call["id"]),
            name: non_empty(&call["function"]["name"]),
            arguments: arguments_text(&call["function"]["arguments"]),
        });
    }
    Ok(out)
}

/// A message's or delta's `thinking_blocks`, if it has any.
fn thinking_blocks_of(message: &Value) -> Vec<Value> {
    message["thinking_blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A tool call's `arguments` as the JSON text OpenAI sends: some servers
/// send the object itself, which is written out rather than lost.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn non_empty(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A message's or delta's reasoning text: `reasoning_content`, or
/// `reasoning`, the name vLLM, OpenRouter, Groq and Ollama give it.
fn reasoning_of(message: &Value) -> &Value {
    match &message["reasoning_content"] {
        Value::String(_) => &message["reasoning_content"],
        _ => &message["reasoning"],
    }
}

/// A chat answer's token counts, with the parts the other APIs report on
/// their own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    /// `prompt_tokens`, cached ones included.
    pub input: u64,
    /// `completion_tokens`, reasoning included.
    pub output: u64,
    /// Of `input`, read from the provider's prompt cache
    /// (`prompt_tokens_details.cached_tokens`).
    pub cached: u64,
    /// Of `output`, spent reasoning (`completion_tokens_details.reasoning_tokens`).
    pub reasoning: u64,
}

impl TokenUsage {
    /// Anthropic's `usage`, which counts cache reads apart from the input.
    pub fn anthropic(self) -> Value {
        json!({
            "input_tokens": self.input.saturating_sub(self.cached),
            "output_tokens": self.output,
            "cache_read_input_tokens": self.cached,
        })
    }
}

/// The token counts of a chat answer or chunk.
pub fn usage_of(chat: &Value) -> Option<TokenUsage> {
    let usage = chat.get("usage").filter(|u| u.is_object())?;
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    Some(TokenUsage {
        input: count(&usage["prompt_tokens"]),
        output: count(&usage["completion_tokens"]),
        cached: count(&usage["prompt_tokens_details"]["cached_tokens"]),
        reasoning: count(&usage["completion_tokens_details"]["reasoning_tokens"]),
    })
}

/// A chat answer's first choice: its message text, reasoning (and signed
/// thinking blocks), tool calls `(id, name, arguments)` and finish reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChatAnswer {
    pub content: String,
    /// The model's refusal (OpenAI's `refusal`), empty when none.
    pub refusal: String,
    pub reasoning: String,
    pub thinking_blocks: Vec<Value>,
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: TokenUsage,
}

impl ChatAnswer {
    /// Reads a `chat.completion` body.
    pub fn read(chat: &Value) -> Self {
        // Choice 0 by its index, as a stream's is, wherever it is listed.
        let choice = chat["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["index"].as_u64().unwrap_or(0) == 0)
            .unwrap_or(&Value::Null);
        let message = &choice["message"];
        let tool_calls = message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments_text(&c["function"]["arguments"]),
                )
            })
            .collect();
        Self {
            content: text_of(&message["content"]),
            refusal: message["refusal"].as_str().unwrap_or_default().to_owned(),
            reasoning: reasoning_of(message)
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            thinking_blocks: thinking_blocks_of(message),
            tool_calls,
            finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
            usage: usage_of(chat).unwrap_or_default(),
        }
    }
}

/// A message content's text: a string, or the `text` of every part.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// Whether a chat request field is one a translated route adds for native
/// upstreams (the client's own Messages or Responses body, and the headers
/// a native Messages request keeps): no other upstream is sent it, and no
/// strategy sees it.
pub fn is_native_carrier(field: &str) -> bool {
    // Every field of every request is asked: the prefix turns nearly all away.
    field.starts_with("conclave_native_") && NATIVE_CARRIERS.contains(&field)
}

/// The fields [`is_native_carrier`] names: only the gateway's own routes
/// set them, so a client body holding one is refused (it would choose what
/// a native upstream is sent, and with which headers).
pub const NATIVE_CARRIERS: [&str; 3] = [
    anthropic_upstream::NATIVE_FIELD,
    anthropic_upstream::NATIVE_HEADERS_FIELD,
    responses::NATIVE_FIELD,
];

/// A new id with `prefix`: unique, and unguessable from any other id.
pub fn new_id(prefix: &str) -> String {
    // 128 bits from the system's random source: a stored response is found
    // by its id alone on an open gateway, so ids must not be guessable.
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = fastrand::u128(..).to_le_bytes();
    }
    format!("{prefix}{}", crate::digest::hex(&bytes))
}

/// A chat tool from a name, description and JSON schema.
fn chat_tool(name: &Value, description: &Value, parameters: &Value) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), name.clone());
    if !description.is_null() {
        function.insert("description".into(), description.clone());
    }
    let parameters = if parameters.is_null() {
        json!({"type": "object", "properties": {}})
    } else {
        parameters.clone()
    };
    function.insert("parameters".into(), parameters);
    json!({"type": "function", "function": function})
}

/// What a typed request field must hold.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Number,
    Boolean,
    Text,
    Object,
    PositiveInteger,
    NonNegativeInteger,
    TextList,
}

impl Kind {
    fn holds(self, v: &Value) -> bool {
        match self {
            Kind::Number => v.is_number(),
            Kind::Boolean => v.is_boolean(),
            Kind::Text => v.is_string(),
            Kind::Object => v.is_object(),
            Kind::PositiveInteger => v.as_u64().is_some_and(|n| n > 0),
            Kind::NonNegativeInteger => v.as_u64().is_some(),
            Kind::TextList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        }
    }

    fn wanted(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Boolean => "true or false",
            Kind::Text => "a string",
            Kind::Object => "an object",
            Kind::PositiveInteger => "a positive integer",
            Kind::NonNegativeInteger => "a non-negative integer",
            Kind::TextList => "a list of strings",
        }
    }
}

/// Checks that each of `fields` present in `body` (and not null) holds its
/// kind, so a malformed request is refused naming the field instead of
/// being read as something else (`"stream": "yes"` as not streaming).
fn check_kinds(body: &Value, fields: &[(&str, Kind)]) -> Result<(), TranslateError> {
    for (key, kind) in fields {
        if body
            .get(*key)
            .is_some_and(|v| !v.is_null() && !kind.holds(v))
        {
            return Err(TranslateError::new(
                format!("{key} must be {}", kind.wanted()),
                key,
            ));
        }
    }
    Ok(())
}

/// Copies `from[key]` to `to[as_key]` when present and not null.
fn copy(from: &Value, key: &str, to: &mut Map<String, Value>, as_key: &str) {
    if let Some(v) = from.get(key).filter(|v| !v.is_null()) {
        to.insert(as_key.to_owned(), v.clone());
    }
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_carrier_is_told_apart_by_its_prefix() {
        for field in NATIVE_CARRIERS {
            assert!(is_native_carrier(field), "{field}");
        }
        assert!(!is_native_carrier("conclave_native_other"));
        assert!(!is_native_carrier("messages"));
    }

    #[test]
    fn reasoning_is_read_under_either_name() {
        let answer = json!({"choices": [{"message": {"content": "A", "reasoning": "R"}}]});
        assert_eq!(ChatAnswer::read(&answer).reasoning, "R");
        let chunk = br#"{"choices":[{"delta":{"reasoning":"r"}}]}"#;
        assert_eq!(parse_chunk(chunk).unwrap().reasoning.as_deref(), Some("r"));
        let both = json!({"choices": [{"message": {"reasoning_content": "C", "reasoning": "R"}}]});
        assert_eq!(
            ChatAnswer::read(&both).reasoning,
            "C",
            "OpenAI's name first"
        );
    }

    #[test]
    fn tool_arguments_sent_as_an_object_are_kept_as_text() {
        let answer = json!({"choices": [{"message": {"tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": {"city": "Oslo"}}}]}}]});
        assert_eq!(
            ChatAnswer::read(&answer).tool_calls[0].2,
            r#"{"city":"Oslo"}"#
        );
        let chunk = br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":{"a":1}}}]}}]}"#;
        assert_eq!(
            parse_chunk(chunk).unwrap().tool_calls[0].arguments,
            r#"{"a":1}"#
        );
    }
}
