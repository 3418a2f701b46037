//! Conversions between OpenAI JSON and the WIT types strategies see.

use serde_json::{Map, Value, json};

use super::bindings::{ChatRequest, ChatResponse, Error, Message, Usage};
use crate::openai::RawFields;

/// The client's request as a WIT `chat-request`: messages typed, every other
/// field (tools included) in `params-json`.
pub fn request_from_client(model: &str, body: &Map<String, Value>) -> ChatRequest {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(message_from_json).collect())
        .unwrap_or_default();
    let params: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| k.as_str() != "messages")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ChatRequest {
        model: model.to_owned(),
        messages,
        params_json: (!params.is_empty()).then(|| Value::Object(params).to_string()),
    }
}

fn message_from_json(m: &Value) -> Message {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    Message {
        role: m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned(),
        content: m.get("content").map(text).unwrap_or_default(),
        name: m.get("name").and_then(Value::as_str).map(str::to_owned),
        tool_call_id: m
            .get("tool_call_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tool_calls_json: m
            .get("tool_calls")
            .filter(|v| !v.is_null())
            .map(Value::to_string),
    }
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
        finish_reason: choice["finish_reason"]
            .as_str()
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

/// Rebuilds a response from stream chunks, for what `respond` returns to the guest.
pub struct StreamAccumulator {
    pub content: String,
    pub reasoning: String,
    tool_calls: Vec<Value>,
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
    /// Folds one chunk in and returns the parts to forward.
    pub fn push(&mut self, payload: &[u8]) -> ChunkDelta {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return ChunkDelta {
                content: None,
                reasoning: None,
                tool_calls: None,
            };
        };
        if let Some(m) = v["model"].as_str()
            && self.model.is_empty()
        {
            self.model = m.to_owned();
        }
        if v["usage"].is_object() {
            self.usage = usage_from(&v["usage"]);
        }
        let choice = &v["choices"][0];
        if let Some(r) = choice["finish_reason"].as_str() {
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
        ChunkDelta {
            content,
            reasoning,
            tool_calls,
        }
    }

    fn merge_tool_call(&mut self, call: &Value) {
        let index = call["index"]
            .as_u64()
            .unwrap_or(self.tool_calls.len() as u64) as usize;
        while self.tool_calls.len() <= index {
            self.tool_calls.push(
                json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}),
            );
        }
        let slot = &mut self.tool_calls[index];
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

    /// The whole response.
    pub fn finish(self) -> ChatResponse {
        ChatResponse {
            content: self.content,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            tool_calls_json: (!self.tool_calls.is_empty())
                .then(|| Value::Array(self.tool_calls).to_string()),
            finish_reason: self.finish_reason.unwrap_or_else(|| "stop".into()),
            model: self.model,
            usage: self.usage,
        }
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
        let req = request_from_client("m", &body);
        assert_eq!(req.messages[0].content, "hi");
        assert!(req.messages[1].tool_calls_json.is_some());
        let back = body_from_request(&req).unwrap().to_map().unwrap();
        assert_eq!(back["temperature"], 0.3);
        assert!(back["tools"].is_array());
        assert_eq!(back["messages"][1]["content"], Value::Null);
        assert_eq!(back["messages"][2]["tool_call_id"], "c1");
    }

    #[test]
    fn streamed_tool_calls_are_reassembled() {
        let mut acc = StreamAccumulator::default();
        acc.push(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#);
        acc.push(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#);
        let r = acc.finish();
        assert_eq!(r.finish_reason, "tool_calls");
        let calls: Value = serde_json::from_str(r.tool_calls_json.as_deref().unwrap()).unwrap();
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\":1}");
    }
}
