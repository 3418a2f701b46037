//! The one place OpenAI response objects are built: `chat.completion`
//! bodies, `chat.completion.chunk` payloads and `usage` objects, for every
//! answer conclave writes itself (the mock and exec providers, composite
//! strategies). Upstream answers are forwarded as received, never rebuilt.

use serde_json::{Value, json};

use super::unix_now;

/// A fresh completion id: `chatcmpl-<16 hex digits>`, or
/// `chatcmpl-<source>-<16 hex digits>` to tell where an answer came from.
pub fn completion_id(source: Option<&str>) -> String {
    let random = fastrand::u64(..);
    match source {
        Some(source) => format!("chatcmpl-{source}-{random:016x}"),
        None => format!("chatcmpl-{random:016x}"),
    }
}

/// What every object of one answer shares: its id, creation time and model.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    pub model: &'a str,
}

impl<'a> Head<'a> {
    /// A head created now.
    pub fn now(id: &'a str, model: &'a str) -> Self {
        Self {
            id,
            created: unix_now(),
            model,
        }
    }
}

/// A `usage` object with its total.
pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens.saturating_add(completion_tokens),
    })
}

/// The assistant message of a finished answer: `reasoning_content` when
/// there is reasoning, `tool_calls` when it calls tools (content `null` if
/// it says nothing besides).
pub fn assistant_message(
    content: &str,
    reasoning: Option<&str>,
    tool_calls: Option<Value>,
) -> Value {
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(reasoning) = reasoning.filter(|r| !r.is_empty()) {
        message["reasoning_content"] = Value::String(reasoning.to_owned());
    }
    if let Some(calls) = tool_calls {
        message["tool_calls"] = calls;
        if content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    message
}

/// A `chat.completion` body with one choice.
pub fn completion(head: Head<'_>, message: Value, finish_reason: &str, usage: Value) -> Value {
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

/// A `chat.completion.chunk` payload with one choice's `delta`.
pub fn chunk(head: Head<'_>, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
}

/// The last chunk of a stream whose client asked for usage: no choices.
pub fn usage_chunk(head: Head<'_>, usage: Value) -> Value {
    json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "choices": [],
        "usage": usage,
    })
}

/// A whole answer as one delta (for a stream that did not carry it token
/// by token): the role, the content and the tool calls with their indexes.
pub fn assistant_delta(content: &str, tool_calls: Option<Vec<Value>>) -> Value {
    let mut delta = json!({"role": "assistant", "content": content});
    if let Some(calls) = tool_calls {
        let indexed = calls
            .into_iter()
            .enumerate()
            .map(|(i, mut call)| {
                call["index"] = json!(i);
                call
            })
            .collect();
        delta["tool_calls"] = Value::Array(indexed);
    }
    delta
}

/// A JSON value as bytes for a body or an SSE payload.
pub fn to_bytes(value: &Value) -> bytes::Bytes {
    bytes::Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_carries_reasoning_tool_calls_and_usage() {
        let head = Head {
            id: "chatcmpl-1",
            created: 7,
            model: "m",
        };
        let calls = json!([{"id": "c1", "type": "function"}]);
        let message = assistant_message("", Some("thought"), Some(calls.clone()));
        let body = completion(head, message, "tool_calls", usage(3, 4));
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["created"], 7);
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            body["choices"][0]["message"]["reasoning_content"],
            "thought"
        );
        assert_eq!(body["choices"][0]["message"]["tool_calls"], calls);
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["usage"]["total_tokens"], 7);
        let plain = assistant_message("hi", Some(""), None);
        assert_eq!(plain, json!({"role": "assistant", "content": "hi"}));
    }

    #[test]
    fn chunks_share_the_head_and_index_tool_calls() {
        let head = Head::now("chatcmpl-2", "m");
        let delta = assistant_delta("", Some(vec![json!({"id": "a"}), json!({"id": "b"})]));
        let c = chunk(head, delta, None);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(c["choices"][0]["delta"]["tool_calls"][1]["index"], 1);
        let last = usage_chunk(head, usage(1, 2));
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["created"], c["created"]);
        assert!(completion_id(Some("exec")).starts_with("chatcmpl-exec-"));
    }
}
