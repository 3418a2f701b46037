//! GenAI attributes read from a model call's answer on the export task:
//! the response model and id, token usage, finish reasons and, with the
//! content opt-in, the messages in the conventions' `parts` form.

use opentelemetry::{KeyValue, Value as OtelValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::span::Answer;
use crate::ops::Reported;

#[derive(Deserialize, Default)]
struct Reply<'a> {
    id: Option<String>,
    model: Option<String>,
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    usage: Option<ReplyUsage>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: usize,
    finish_reason: Option<String>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    delta: Option<Message<'a>>,
    text: Option<String>,
}

/// A message's content stays raw JSON: it is read only with the content
/// opt-in, so an answer's text is not copied for every traced call.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReplyUsage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
}

/// What the answer said, merged over a stream's payloads.
#[derive(Default)]
struct Read {
    id: Option<String>,
    model: Option<String>,
    usage: Option<(i64, i64)>,
    /// Per choice index: finish reason and text.
    choices: Vec<(Option<String>, String)>,
}

impl Read {
    fn take(&mut self, reply: Reply<'_>, capture: bool) {
        self.id = self.id.take().or(reply.id);
        self.model = reply.model.filter(|m| !m.is_empty()).or(self.model.take());
        if let Some(u) = reply.usage {
            self.usage = Some((u.prompt_tokens, u.completion_tokens));
        }
        for c in reply.choices {
            if self.choices.len() <= c.index && c.index < 64 {
                self.choices.resize(c.index + 1, (None, String::new()));
            }
            let Some(slot) = self.choices.get_mut(c.index) else {
                continue;
            };
            if c.finish_reason.is_some() {
                slot.0 = c.finish_reason;
            }
            if capture {
                let text = c
                    .message
                    .or(c.delta)
                    .and_then(|m| m.content)
                    .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                    .map(|v| text_of(&v))
                    .or(c.text);
                if let Some(text) = text {
                    slot.1.push_str(&text);
                }
            }
        }
    }
}

/// The text of an OpenAI `content` (a string or a list of parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Adds the response attributes of `answer` to `attributes`.
pub fn answer_attributes(answer: &Answer, capture: bool, attributes: &mut Vec<KeyValue>) {
    let mut read = Read::default();
    match answer {
        Answer::Json(body) => {
            if let Ok(reply) = serde_json::from_slice::<Reply>(body) {
                read.take(reply, capture);
            }
        }
        Answer::Chunks(payloads) => {
            for p in payloads {
                if let Ok(reply) = serde_json::from_slice::<Reply>(p) {
                    read.take(reply, capture);
                }
            }
        }
    }
    let reasons = read.choices.iter().filter_map(|(r, _)| r.clone());
    response_attributes(read.id, read.model, read.usage, reasons, attributes);
    if capture && !read.choices.is_empty() {
        let messages: Vec<Value> = read
            .choices
            .iter()
            .map(|(reason, text)| {
                json!({
                    "role": "assistant",
                    "parts": [{"type": "text", "content": text}],
                    "finish_reason": reason,
                })
            })
            .collect();
        attributes.push(KeyValue::new(
            "gen_ai.output.messages",
            Value::Array(messages).to_string(),
        ));
    }
}

/// Adds the response attributes of an answer the router already read.
pub fn reported_attributes(reported: &Reported, attributes: &mut Vec<KeyValue>) {
    let usage = reported.any_usage().map(|u| {
        let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (tokens(u.prompt_tokens), tokens(u.completion_tokens))
    });
    let model = reported.model.clone().filter(|m| !m.is_empty());
    let reasons = reported.choices.finish_reasons.iter().cloned();
    response_attributes(reported.id.clone(), model, usage, reasons, attributes);
}

/// The response id, model, token usage and finish reasons, in the
/// conventions' names.
fn response_attributes(
    id: Option<String>,
    model: Option<String>,
    usage: Option<(i64, i64)>,
    reasons: impl IntoIterator<Item = String>,
    attributes: &mut Vec<KeyValue>,
) {
    if let Some(id) = id {
        attributes.push(KeyValue::new("gen_ai.response.id", id));
    }
    if let Some(model) = model {
        attributes.push(KeyValue::new("gen_ai.response.model", model));
    }
    if let Some((input, output)) = usage {
        attributes.push(KeyValue::new("gen_ai.usage.input_tokens", input));
        attributes.push(KeyValue::new("gen_ai.usage.output_tokens", output));
    }
    let reasons: Vec<opentelemetry::StringValue> = reasons.into_iter().map(Into::into).collect();
    if !reasons.is_empty() {
        attributes.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            OtelValue::Array(reasons.into()),
        ));
    }
}

/// Adds `gen_ai.input.messages` from the request's `messages` (or a
/// completion's `prompt`) JSON.
pub fn input_attributes(input: &str, attributes: &mut Vec<KeyValue>) {
    let Ok(value) = serde_json::from_str::<Value>(input) else {
        return;
    };
    let messages: Vec<Value> = match &value {
        Value::Array(list) if list.iter().all(Value::is_object) => list
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let text = m.get("content").map(text_of).unwrap_or_default();
                json!({"role": role, "parts": [{"type": "text", "content": text}]})
            })
            .collect(),
        other => {
            vec![json!({"role": "user", "parts": [{"type": "text", "content": text_of(other)}]})]
        }
    };
    attributes.push(KeyValue::new(
        "gen_ai.input.messages",
        Value::Array(messages).to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a OtelValue> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn a_stream_yields_usage_model_and_finish_reason_without_contents() {
        let chunks = vec![
            Bytes::from_static(br#"{"id":"c1","model":"m-1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#),
            Bytes::from_static(br#"{"id":"c1","model":"m-1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#),
            Bytes::from_static(br#"{"id":"c1","model":"m-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#),
        ];
        let mut attrs = Vec::new();
        answer_attributes(&Answer::Chunks(chunks.clone()), false, &mut attrs);
        assert_eq!(
            find(&attrs, "gen_ai.response.model").unwrap().as_str(),
            "m-1"
        );
        assert_eq!(
            find(&attrs, "gen_ai.usage.input_tokens"),
            Some(&OtelValue::I64(3))
        );
        assert!(find(&attrs, "gen_ai.output.messages").is_none());
        let mut attrs = Vec::new();
        answer_attributes(&Answer::Chunks(chunks), true, &mut attrs);
        let out = find(&attrs, "gen_ai.output.messages").unwrap().as_str();
        assert!(out.contains("\"Hello\""), "{out}");
    }
}
