//! Conversions between OpenAI JSON and the WIT types strategies see.

use serde_json::{Map, Value, json};

use super::bindings::{ChatRequest, ChatResponse, Error, Message, Usage};
use crate::openai::RawFields;

/// Roles a client's message may have.
const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The client's request as a WIT `chat-request`: messages typed, every other
/// field (tools included) in `params-json`. A strategy reads text, so a
/// request it would read as something else is refused, naming what is
/// wrong: no messages, a message without a known role, content that is not
/// text, or more than one choice asked for.
pub fn request_from_client(model: &str, body: &Map<String, Value>) -> Result<ChatRequest, String> {
    let list = match body.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err("messages must hold at least one message".into()),
        None | Some(Value::Null) => return Err("messages is required".into()),
        Some(_) => return Err("messages must be a list of messages".into()),
    };
    if body
        .get("n")
        .is_some_and(|n| !n.is_null() && n.as_u64() != Some(1))
    {
        return Err("a composite profile gives one answer: n must be 1".into());
    }
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message_from_json(m).map_err(|why| format!("messages[{i}]: {why}")))
        .collect::<Result<Vec<_>, _>>()?;
    let params: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| k.as_str() != "messages" && !crate::translate::is_native_carrier(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(ChatRequest {
        model: model.to_owned(),
        messages,
        params_json: (!params.is_empty()).then(|| Value::Object(params).to_string()),
    })
}

/// A message's content as text: a string, or its text parts joined.
fn content_text(content: Option<&Value>) -> Result<String, String> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(format!(
                            "a composite profile reads text only, got a content part of type {}",
                            kind.unwrap_or("(none)")
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err("content must be a string or a list of text parts".into()),
    }
}

fn message_from_json(m: &Value) -> Result<Message, String> {
    let role = match m.get("role").and_then(Value::as_str) {
        Some(role) if ROLES.contains(&role) => role,
        _ => {
            return Err(format!("role must be one of {}", ROLES.join(", ")));
        }
    };
    Ok(Message {
        role: role.to_owned(),
        content: content_text(m.get("content"))?,
        name: m.get("name").and_then(Value::as_str).map(str::to_owned),
        tool_call_id: m
            .get("tool_call_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tool_calls_json: m
            .get("tool_calls")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
    })
}

/// A guest's request as the JSON body the router forwards. `params-json`
/// is kept as raw text; only the messages are built.
pub fn body_from_request(req: &ChatRequest) -> Result<RawFields, Error> {
    let mut body = match &req.params_json {
        None => RawFields::default(),
        Some(text) if text.trim().is_empty() => RawFields::default(),
        Some(text) => serde_json::from_str::<RawFields>(text)
            .map_err(|e| Error::InvalidRequest(format!("params-json is not a JSON object: {e}")))?,
    };
    body.remove("model");
    body.remove("stream");
    // What a client's request may not set, a strategy's may not either.
    if let Some(field) = crate::openai::CLIENT_ROUTING_FIELDS
        .iter()
        .find(|f| body.contains_key(f))
    {
        return Err(Error::InvalidRequest(format!(
            "params-json: `{field}` cannot choose a call's upstream address or router; \
             the gateway calls the deployments its config names"
        )));
    }
    // Nor are the gateway's own request settings sent on to a model (an
    // upstream refuses them).
    for field in crate::openai::carried_settings().chain(["metadata"]) {
        body.remove(field);
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let mut out = Map::new();
        out.insert("role".into(), Value::String(m.role.clone()));
        let tool_calls = match &m.tool_calls_json {
            Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                Error::InvalidRequest(format!("tool-calls-json is not valid JSON: {e}"))
            })?),
            None => None,
        };
        let content = if m.content.is_empty() && tool_calls.is_some() {
            Value::Null
        } else {
            Value::String(m.content.clone())
        };
        out.insert("content".into(), content);
        if let Some(name) = &m.name {
            out.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(id) = &m.tool_call_id {
            out.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        if let Some(calls) = tool_calls {
            out.insert("tool_calls".into(), calls);
        }
        messages.push(Value::Object(out));
    }
    body.insert_value("messages", &Value::Array(messages))
        .map_err(|e| Error::InvalidRequest(format!("messages cannot be encoded: {e}")))?;
    Ok(body)
}

/// An upstream's finish reason; `""` (which some servers send) reads as
/// none, like `null`.
fn finish_reason(value: &Value) -> Option<&str> {
    value.as_str().filter(|r| !r.trim().is_empty())
}

/// A chat.completion body as a WIT `chat-response`.
pub fn response_from_json(bytes: &[u8]) -> Result<ChatResponse, Error> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Upstream(format!("the upstream answer is not JSON: {e}")))?;
    let choice = &v["choices"][0];
    let message = &choice["message"];
    Ok(ChatResponse {
        content: message["content"].as_str().unwrap_or_default().to_owned(),
        reasoning: message["reasoning_content"]
            .as_str()
            .or_else(|| message["reasoning"].as_str())
            .map(str::to_owned),
        tool_calls_json: message
            .get("tool_calls")
            .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
            .map(Value::to_string),
        finish_reason: finish_reason(&choice["finish_reason"])
            .unwrap_or("stop")
            .to_owned(),
        model: v["model"].as_str().unwrap_or_default().to_owned(),
        usage: usage_from(&v["usage"]),
    })
}

fn usage_from(u: &Value) -> Usage {
    let n = |k: &str| {
        u[k].as_u64()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    }
}

/// Tool calls one streamed answer may carry; the upstream's indexes are
/// mapped to these slots, so an absurd index costs one slot, not memory.
pub const MAX_STREAMED_TOOL_CALLS: usize = 1024;

/// Rebuilds a response from stream chunks, for what `respond` returns to the guest.
pub struct StreamAccumulator {
    pub content: String,
    pub reasoning: String,
    /// The calls so far with the upstream's index of each, in arrival order.
    tool_calls: Vec<(u64, Value)>,
    /// An index that found no free slot (past [`MAX_STREAMED_TOOL_CALLS`]).
    overflow: Option<u64>,
    finish_reason: Option<String>,
    model: String,
    usage: Usage,
}

impl Default for StreamAccumulator {
    fn default() -> Self {
        Self {
            content: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
            overflow: None,
            finish_reason: None,
            model: String::new(),
            usage: Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
            },
        }
    }
}

/// What one upstream chunk adds to the client's stream.
pub struct ChunkDelta {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Option<Value>,
}

impl StreamAccumulator {
    /// Folds one chunk in and returns the parts to forward; an error for a
    /// chunk that cannot be read (a number past any float), which ends the
    /// stream rather than lose its text.
    pub fn push(&mut self, payload: &[u8]) -> Result<ChunkDelta, String> {
        let v = serde_json::from_slice::<Value>(payload)
            .map_err(|e| format!("the upstream sent a stream event that cannot be read ({e})"))?;
        if let Some(m) = v["model"].as_str()
            && self.model.is_empty()
        {
            self.model = m.to_owned();
        }
        if v["usage"].is_object() {
            self.usage = usage_from(&v["usage"]);
        }
        let choice = &v["choices"][0];
        // A later empty one (some servers send `""` with the usage chunk)
        // never replaces the reason already given.
        if let Some(r) = finish_reason(&choice["finish_reason"]) {
            self.finish_reason = Some(r.to_owned());
        }
        let delta = &choice["delta"];
        let content = delta["content"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(c) = &content {
            self.content.push_str(c);
        }
        let reasoning = delta["reasoning_content"]
            .as_str()
            .or_else(|| delta["reasoning"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(r) = &reasoning {
            self.reasoning.push_str(r);
        }
        let tool_calls = delta.get("tool_calls").filter(|t| t.is_array()).cloned();
        if let Some(Value::Array(calls)) = &tool_calls {
            for call in calls {
                self.merge_tool_call(call);
            }
        }
        Ok(ChunkDelta {
            content,
            reasoning,
            tool_calls,
        })
    }

    /// The slot of the call with upstream index `index`, opened when new
    /// (none when every slot is taken).
    fn slot(&mut self, index: u64) -> Option<&mut Value> {
        let at = match self.tool_calls.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None if self.tool_calls.len() >= MAX_STREAMED_TOOL_CALLS => {
                self.overflow.get_or_insert(index);
                return None;
            }
            None => {
                self.tool_calls.push((
                    index,
                    json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}),
                ));
                self.tool_calls.len() - 1
            }
        };
        self.tool_calls.get_mut(at).map(|(_, call)| call)
    }

    fn merge_tool_call(&mut self, call: &Value) {
        let next = self
            .tool_calls
            .iter()
            .map(|(i, _)| i.saturating_add(1))
            .max();
        let index = call["index"].as_u64().unwrap_or(next.unwrap_or(0));
        let Some(slot) = self.slot(index) else {
            return;
        };
        if let Some(id) = call["id"].as_str() {
            slot["id"] = Value::String(id.to_owned());
        }
        let f = &call["function"];
        for key in ["name", "arguments"] {
            if let Some(part) = f[key].as_str() {
                let old = slot["function"][key]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                slot["function"][key] = Value::String(old + part);
            }
        }
    }

    /// The whole response; an error when the upstream streamed more tool
    /// calls than an answer may carry.
    pub fn finish(mut self) -> Result<ChatResponse, Error> {
        if let Some(index) = self.overflow {
            return Err(Error::Upstream(format!(
                "the upstream streamed more than {MAX_STREAMED_TOOL_CALLS} tool calls \
                 (index {index})"
            )));
        }
        self.tool_calls.sort_by_key(|(i, _)| *i);
        let calls: Vec<Value> = self.tool_calls.into_iter().map(|(_, c)| c).collect();
        Ok(ChatResponse {
            content: self.content,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            tool_calls_json: (!calls.is_empty()).then(|| Value::Array(calls).to_string()),
            finish_reason: self.finish_reason.unwrap_or_else(|| "stop".into()),
            model: self.model,
            usage: self.usage,
        })
    }
}

/// Bytes of a request as the guest handed it over: what the host copies
/// out of the guest for one call.
pub fn request_bytes(req: &ChatRequest) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let messages: usize = req
        .messages
        .iter()
        .map(|m| {
            m.role.len()
                + m.content.len()
                + opt(&m.name)
                + opt(&m.tool_call_id)
                + opt(&m.tool_calls_json)
        })
        .sum();
    req.model.len() + messages + opt(&req.params_json)
}

/// Why an answer a strategy returned cannot be passed on: the field of its
/// `chat-response` and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct AnswerFault {
    /// The WIT name of the field (`content`, `tool-calls-json`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn fault(field: &'static str, message: impl Into<String>) -> AnswerFault {
    AnswerFault {
        field,
        message: message.into(),
    }
}

/// The longest finish reason a strategy may answer with.
pub const MAX_FINISH_REASON_BYTES: usize = 64;

/// Checks an answer a strategy returned: its size against `max_bytes`,
/// a finish reason (of at most [`MAX_FINISH_REASON_BYTES`]), `tool-calls-json`
/// as an OpenAI `tool_calls` array, and
/// a `tool_calls` finish reason backed by calls. What upstreams send and
/// plain requests relay (duplicate call ids, long model names) passes; a
/// long model name is left out where it would leave in a header.
pub fn check_answer(answer: &ChatResponse, max_bytes: usize) -> Result<(), AnswerFault> {
    // Other values pass (upstreams have their own, which a strategy may
    // relay), but a stream whose last chunk carries none never ends for
    // its client.
    if answer.finish_reason.trim().is_empty() {
        return Err(fault(
            "finish-reason",
            "must not be empty (stop, length, tool_calls, content_filter, ...)",
        ));
    }
    // A reason is a word: one past this would ride in every chunk's
    // header fields and the client's parser unbounded.
    if answer.finish_reason.len() > MAX_FINISH_REASON_BYTES {
        return Err(fault(
            "finish-reason",
            format!(
                "must be at most {MAX_FINISH_REASON_BYTES} bytes (stop, length, tool_calls, ...)"
            ),
        ));
    }
    let parts = [
        ("content", answer.content.len()),
        (
            "reasoning",
            answer.reasoning.as_ref().map_or(0, String::len),
        ),
        (
            "tool-calls-json",
            answer.tool_calls_json.as_ref().map_or(0, String::len),
        ),
    ];
    let mut total = 0usize;
    for (field, len) in parts {
        total = total.saturating_add(len);
        if total > max_bytes {
            return Err(fault(
                field,
                format!(
                    "the answer is over the profile's limit of {max_bytes} bytes \
                     (limits.max_answer_bytes)"
                ),
            ));
        }
    }
    let calls = match &answer.tool_calls_json {
        None => 0,
        Some(text) => check_tool_calls(text)?,
    };
    if answer.finish_reason == "tool_calls" && calls == 0 {
        return Err(fault(
            "finish-reason",
            "is tool_calls but the answer carries no tool calls",
        ));
    }
    Ok(())
}

/// Checks `tool-calls-json` and returns how many calls it holds.
fn check_tool_calls(text: &str) -> Result<usize, AnswerFault> {
    let field = "tool-calls-json";
    let value: Value =
        serde_json::from_str(text).map_err(|e| fault(field, format!("is not valid JSON: {e}")))?;
    let Value::Array(calls) = value else {
        return Err(fault(field, "is not a JSON array of tool calls"));
    };
    for (i, call) in calls.iter().enumerate() {
        tool_call_problem(call).map_or(Ok(()), |why| Err(fault(field, format!("[{i}]: {why}"))))?;
    }
    Ok(calls.len())
}

/// What makes `call` something other than an OpenAI tool call, if anything.
fn tool_call_problem(call: &Value) -> Option<&'static str> {
    let non_empty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    if !call.is_object() {
        Some("is not an object")
    } else if !non_empty(&call["id"]) {
        Some("id must be a non-empty string")
    } else if call["type"] != "function" {
        Some("type must be \"function\"")
    } else if !non_empty(&call["function"]["name"]) {
        Some("function.name must be a non-empty string")
    } else if !call["function"]["arguments"].is_string() {
        Some("function.arguments must be a string")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_round_trips_through_the_wit_shape() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"42"}],
               "temperature":0.3,"tools":[{"type":"function","function":{"name":"f"}}]}"#,
        )
        .unwrap();
        let req = request_from_client("m", &body).unwrap();
        assert_eq!(req.messages[0].content, "hi");
        assert!(req.messages[1].tool_calls_json.is_some());
        let back = body_from_request(&req).unwrap().to_map().unwrap();
        assert_eq!(back["temperature"], 0.3);
        assert!(back["tools"].is_array());
        assert_eq!(back["messages"][1]["content"], Value::Null);
        assert_eq!(back["messages"][2]["tool_call_id"], "c1");
    }

    #[test]
    fn a_request_a_strategy_would_misread_is_refused_naming_the_problem() {
        for (body, expected) in [
            (r#"{}"#, "messages is required"),
            (r#"{"messages":[]}"#, "at least one"),
            (r#"{"messages":[1,2]}"#, "messages[0]: role"),
            (
                r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0]: role",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]}"#,
                "text only",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"n":3}"#,
                "n must be 1",
            ),
        ] {
            let body: Map<String, Value> = serde_json::from_str(body).unwrap();
            let error = request_from_client("m", &body).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_strategys_call_may_not_bring_credentials_or_an_address() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let mut req = request_from_client("m", &body).unwrap();
        req.params_json = Some(
            r#"{"api_key":"sk-x","extra_headers":{"a":"b"},"tags":["t"],"metadata":{},"temperature":0.2}"#.into(),
        );
        let sent = body_from_request(&req).unwrap();
        for gone in ["api_key", "extra_headers", "tags", "metadata"] {
            assert!(!sent.contains_key(gone), "{gone}");
        }
        assert!(sent.contains_key("temperature"));
        req.params_json = Some(r#"{"api_base":"http://elsewhere.example"}"#.into());
        assert!(body_from_request(&req).is_err());
    }

    #[test]
    fn streamed_tool_calls_are_reassembled() {
        let mut acc = StreamAccumulator::default();
        acc.push(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#).unwrap();
        acc.push(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#).unwrap();
        let r = acc.finish().unwrap();
        assert_eq!(r.finish_reason, "tool_calls");
        let calls: Value = serde_json::from_str(r.tool_calls_json.as_deref().unwrap()).unwrap();
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn an_absurd_tool_call_index_takes_one_slot() {
        let mut acc = StreamAccumulator::default();
        acc.push(br#"{"choices":[{"delta":{"tool_calls":[{"index":1000000000000,"id":"c9","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#).unwrap();
        let r = acc.finish().unwrap();
        let calls: Value = serde_json::from_str(r.tool_calls_json.as_deref().unwrap()).unwrap();
        assert_eq!(calls.as_array().map(Vec::len), Some(1));
        assert_eq!(calls[0]["id"], "c9");
    }

    #[test]
    fn too_many_streamed_tool_calls_are_an_upstream_error() {
        let mut acc = StreamAccumulator::default();
        for i in 0..=MAX_STREAMED_TOOL_CALLS {
            let chunk = json!({"choices":[{"delta":{"tool_calls":[{"index": i * 7, "id": "c", "function": {"name": "f", "arguments": ""}}]}}]});
            acc.push(chunk.to_string().as_bytes()).unwrap();
        }
        assert!(matches!(acc.finish(), Err(Error::Upstream(_))));
    }

    fn answer(tool_calls_json: Option<&str>, finish: &str) -> ChatResponse {
        ChatResponse {
            content: String::new(),
            reasoning: None,
            tool_calls_json: tool_calls_json.map(str::to_owned),
            finish_reason: finish.into(),
            model: "m".into(),
            usage: Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
            },
        }
    }

    #[test]
    fn answers_are_checked_not_repaired() {
        let good = r#"[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]"#;
        assert_eq!(
            check_answer(&answer(Some(good), "tool_calls"), 1 << 20),
            Ok(())
        );
        assert_eq!(check_answer(&answer(None, "stop"), 1 << 20), Ok(()));
        let long = "x".repeat(MAX_FINISH_REASON_BYTES + 1);
        let f = check_answer(&answer(None, &long), 1 << 20).unwrap_err();
        assert_eq!(f.field, "finish-reason");
        for bad in [
            "{}",
            "not json",
            r#"[{"id":"c1","function":{"name":"f"}}]"#,
            "[1]",
        ] {
            let f = check_answer(&answer(Some(bad), "tool_calls"), 1 << 20).unwrap_err();
            assert_eq!(f.field, "tool-calls-json", "{bad}");
        }
        let f = check_answer(&answer(None, "tool_calls"), 1 << 20).unwrap_err();
        assert_eq!(f.field, "finish-reason");
        let f = check_answer(&answer(Some("[]"), "tool_calls"), 1 << 20).unwrap_err();
        assert_eq!(f.field, "finish-reason");
        let mut big = answer(None, "stop");
        big.content = "x".repeat(11);
        assert_eq!(check_answer(&big, 10).unwrap_err().field, "content");
        for reason in ["", " "] {
            let f = check_answer(&answer(None, reason), 1 << 20).unwrap_err();
            assert_eq!(f.field, "finish-reason", "{reason:?}");
        }
    }

    #[test]
    fn an_empty_finish_reason_from_an_upstream_reads_as_none() {
        let answer = response_from_json(
            br#"{"model":"m","choices":[{"message":{"content":"hi"},"finish_reason":""}]}"#,
        )
        .unwrap();
        assert_eq!(answer.finish_reason, "stop");
        let mut acc = StreamAccumulator::default();
        acc.push(br#"{"choices":[{"delta":{"content":"a"},"finish_reason":"length"}]}"#)
            .unwrap();
        acc.push(br#"{"choices":[{"delta":{},"finish_reason":""}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#).unwrap();
        assert_eq!(acc.finish().unwrap().finish_reason, "length");
    }
}
