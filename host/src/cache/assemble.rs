//! Storing a streamed answer: the chunks are folded into one body of the
//! endpoint's [`Shape`] (`chat.completion` or `text_completion`) as they
//! pass to the client, and the body is stored only when the stream ended
//! cleanly with a finish reason for every choice. A stream that fails, is
//! cut, or whose client leaves stores nothing; one that grows past the entry
//! limit stops being collected. Both shapes share the fold of the answer's
//! head, usage and choices; only what a choice's chunk adds differs.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value, json};

use super::shape::{Shape, carries_logprobs};

/// Most choices collected from one stream (`n` beyond it is not stored).
const MAX_CHOICES: usize = 128;
/// Most tool calls collected per choice.
const MAX_TOOL_CALLS: usize = 128;

#[derive(Default)]
struct Choice {
    index: u64,
    content: String,
    reasoning: String,
    tool_calls: Vec<Value>,
    finish_reason: Option<Value>,
}

/// Folds a stream's chunk payloads into one answer.
pub struct Assembler {
    shape: Shape,
    id: Option<Value>,
    created: Option<Value>,
    model: Option<Value>,
    fingerprint: Option<Value>,
    usage: Option<Value>,
    choices: Vec<Choice>,
    bytes: usize,
    max_bytes: usize,
}

impl Assembler {
    /// An assembler of `shape` answers that gives up past `max_bytes` of
    /// collected text.
    pub fn new(shape: Shape, max_bytes: usize) -> Self {
        Self {
            shape,
            id: None,
            created: None,
            model: None,
            fingerprint: None,
            usage: None,
            choices: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Folds one payload in; `false` when the answer cannot be stored
    /// (not a chunk, an error event, logprobs, too large).
    pub fn push(&mut self, payload: &[u8]) -> bool {
        self.bytes += payload.len();
        if self.bytes > self.max_bytes {
            return false;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(payload) else {
            return false;
        };
        if chunk.contains_key("error") {
            return false;
        }
        for (field, slot) in [
            ("id", &mut self.id),
            ("created", &mut self.created),
            ("model", &mut self.model),
            ("system_fingerprint", &mut self.fingerprint),
        ] {
            if slot.is_none()
                && let Some(v) = chunk.remove(field).filter(|v| !v.is_null())
            {
                *slot = Some(v);
            }
        }
        if let Some(usage) = chunk.remove("usage").filter(Value::is_object) {
            self.usage = Some(usage);
        }
        let Some(Value::Array(choices)) = chunk.remove("choices") else {
            return true;
        };
        choices.into_iter().all(|c| self.push_choice(c))
    }

    fn push_choice(&mut self, choice: Value) -> bool {
        let index = choice["index"].as_u64().unwrap_or(0);
        let slot = match self.choices.iter().position(|c| c.index == index) {
            Some(i) => i,
            None if self.choices.len() < MAX_CHOICES => {
                self.choices.push(Choice {
                    index,
                    ..Choice::default()
                });
                self.choices.len() - 1
            }
            None => return false,
        };
        // Logprobs are not folded: an answer that carries them is not
        // stored rather than stored without them.
        if carries_logprobs(&choice) {
            return false;
        }
        let acc = &mut self.choices[slot];
        match self.shape {
            Shape::Chat => {
                let delta = &choice["delta"];
                if let Some(text) = delta["content"].as_str() {
                    acc.content.push_str(text);
                }
                if let Some(text) = delta["reasoning_content"].as_str() {
                    acc.reasoning.push_str(text);
                }
                if let Some(calls) = delta["tool_calls"].as_array() {
                    for call in calls {
                        if !merge_tool_call(&mut acc.tool_calls, call) {
                            return false;
                        }
                    }
                }
            }
            Shape::Text => {
                if let Some(text) = choice["text"].as_str() {
                    acc.content.push_str(text);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            acc.finish_reason = Some(reason.clone());
        }
        true
    }

    /// The whole answer as one body of the assembler's shape, if every
    /// choice finished.
    pub fn finish(self) -> Option<Bytes> {
        if self.choices.is_empty() || self.choices.iter().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let mut choices: Vec<Choice> = self.choices;
        choices.sort_by_key(|c| c.index);
        let shape = self.shape;
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|c| match shape {
                Shape::Chat => chat_choice_json(c),
                Shape::Text => text_choice_json(c),
            })
            .collect();
        let mut body = json!({
            "id": self.id.unwrap_or_else(|| json!(shape.fallback_id())),
            "object": shape.object(),
            "created": self.created.unwrap_or_else(|| json!(crate::openai::unix_now())),
            "model": self.model.unwrap_or(Value::Null),
            "choices": choices,
        });
        if let Some(fp) = self.fingerprint {
            body["system_fingerprint"] = fp;
        }
        if let Some(usage) = self.usage {
            body["usage"] = usage;
        }
        Some(Bytes::from(body.to_string()))
    }
}

fn chat_choice_json(c: Choice) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if c.content.is_empty() && !c.tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(c.content)
    };
    message.insert("content".into(), content);
    if !c.reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(c.reasoning));
    }
    if !c.tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(c.tool_calls));
    }
    json!({
        "index": c.index,
        "message": message,
        "finish_reason": c.finish_reason,
    })
}

fn text_choice_json(c: Choice) -> Value {
    json!({
        "index": c.index,
        "text": c.content,
        "logprobs": null,
        "finish_reason": c.finish_reason,
    })
}

/// Folds one streamed tool-call fragment into the calls so far: the first
/// fragment of an index brings id, type and name; later ones append to
/// the arguments.
fn merge_tool_call(calls: &mut Vec<Value>, fragment: &Value) -> bool {
    let index = fragment["index"].as_u64().unwrap_or(0) as usize;
    if index >= MAX_TOOL_CALLS {
        return false;
    }
    while calls.len() <= index {
        calls.push(
            json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}),
        );
    }
    let call = &mut calls[index];
    if let Some(id) = fragment.get("id").filter(|v| v.is_string()) {
        call["id"] = id.clone();
    }
    if let Some(kind) = fragment.get("type").filter(|v| v.is_string()) {
        call["type"] = kind.clone();
    }
    let function = &fragment["function"];
    if let Some(name) = function["name"].as_str() {
        let joined = format!("{}{name}", call["function"]["name"].as_str().unwrap_or(""));
        call["function"]["name"] = Value::String(joined);
    }
    if let Some(args) = function["arguments"].as_str() {
        let joined = format!(
            "{}{args}",
            call["function"]["arguments"].as_str().unwrap_or("")
        );
        call["function"]["arguments"] = Value::String(joined);
    }
    true
}

/// What receives a cleanly finished stream's assembled body.
pub type OnComplete = Box<dyn FnOnce(Bytes) + Send>;

/// A payload stream that assembles what passes and hands the body to
/// `on_complete` when it ends cleanly.
pub struct Filling<S> {
    inner: S,
    assembler: Option<Assembler>,
    on_complete: Option<OnComplete>,
}

impl<S> Filling<S> {
    /// Wraps `inner`, a stream of `shape` chunks; `max_bytes` bounds what
    /// is collected.
    pub fn new(inner: S, shape: Shape, max_bytes: usize, on_complete: OnComplete) -> Self {
        Self {
            inner,
            assembler: Some(Assembler::new(shape, max_bytes)),
            on_complete: Some(on_complete),
        }
    }
}

impl<S, E> Stream for Filling<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(payload))) => {
                if let Some(asm) = &mut self.assembler
                    && !asm.push(payload)
                {
                    self.assembler = None;
                }
            }
            Poll::Ready(Some(Err(_))) => self.assembler = None,
            Poll::Ready(None) => {
                if let (Some(asm), Some(store)) = (self.assembler.take(), self.on_complete.take())
                    && let Some(body) = asm.finish()
                {
                    store(body);
                }
            }
            Poll::Pending => {}
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    fn chunk(v: Value) -> Result<Bytes, String> {
        Ok(Bytes::from(v.to_string()))
    }

    fn answer_chunks() -> Vec<Result<Bytes, String>> {
        vec![
            chunk(
                json!({"id":"x","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}),
            ),
            chunk(
                json!({"id":"x","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}),
            ),
            chunk(json!({"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})),
            chunk(
                json!({"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}),
            ),
        ]
    }

    async fn run(items: Vec<Result<Bytes, String>>) -> Option<Value> {
        run_shape(Shape::Chat, items).await
    }

    async fn run_shape(shape: Shape, items: Vec<Result<Bytes, String>>) -> Option<Value> {
        let stored = Arc::new(Mutex::new(None));
        let sink = stored.clone();
        let filling = Filling::new(
            futures_util::stream::iter(items),
            shape,
            1 << 20,
            Box::new(move |b| *sink.lock().unwrap() = Some(b)),
        );
        let _: Vec<_> = filling.collect().await;
        let body = stored.lock().unwrap().take();
        body.map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn a_clean_stream_becomes_one_answer() {
        let body = run(answer_chunks()).await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hello");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 3);
        assert_eq!(body["object"], "chat.completion");
    }

    #[tokio::test]
    async fn a_broken_or_unfinished_stream_stores_nothing() {
        let mut broken = answer_chunks();
        broken.insert(1, Err("cut".into()));
        assert!(run(broken).await.is_none());
        let unfinished: Vec<_> = answer_chunks().into_iter().take(2).collect();
        assert!(run(unfinished).await.is_none());
    }

    #[test]
    fn tool_call_fragments_are_joined() {
        let mut asm = Assembler::new(Shape::Chat, 1 << 20);
        for c in [
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}),
        ] {
            assert!(asm.push(c.to_string().as_bytes()));
        }
        let body: Value = serde_json::from_slice(&asm.finish().unwrap()).unwrap();
        let call = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert_eq!(call["id"], "call_1");
        assert!(body["choices"][0]["message"]["content"].is_null());
    }

    fn text_chunks() -> Vec<Result<Bytes, String>> {
        vec![
            chunk(
                json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"index":0,"text":"Once ","logprobs":null,"finish_reason":null}]}),
            ),
            chunk(
                json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"index":1,"text":"Twice","logprobs":null,"finish_reason":null}]}),
            ),
            chunk(
                json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"index":0,"text":"upon","logprobs":null,"finish_reason":"length"}]}),
            ),
            chunk(
                json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[{"index":1,"text":"","logprobs":null,"finish_reason":"stop"}]}),
            ),
            chunk(
                json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}),
            ),
        ]
    }

    #[tokio::test]
    async fn a_clean_text_stream_becomes_one_text_completion() {
        let body = run_shape(Shape::Text, text_chunks()).await.unwrap();
        assert_eq!(
            body,
            json!({"id":"cmpl-1","object":"text_completion","created":5,"model":"m",
                "choices":[
                    {"index":0,"text":"Once upon","logprobs":null,"finish_reason":"length"},
                    {"index":1,"text":"Twice","logprobs":null,"finish_reason":"stop"}],
                "usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}})
        );
    }

    #[tokio::test]
    async fn a_cut_unfinished_or_oversized_text_stream_stores_nothing() {
        let mut broken = text_chunks();
        broken.insert(2, Err("cut".into()));
        assert!(run_shape(Shape::Text, broken).await.is_none());
        // Choice 1 never gets its finish reason.
        let unfinished: Vec<_> = text_chunks().into_iter().take(3).collect();
        assert!(run_shape(Shape::Text, unfinished).await.is_none());
        let mut errored = text_chunks();
        errored.insert(4, chunk(json!({"error":{"message":"overloaded"}})));
        assert!(run_shape(Shape::Text, errored).await.is_none());
        let mut asm = Assembler::new(Shape::Text, 64);
        let pushed: Vec<bool> = text_chunks()
            .into_iter()
            .map(|c| asm.push(&c.unwrap()))
            .collect();
        assert!(pushed.contains(&false), "past the limit it gives up");
    }

    #[test]
    fn an_answer_with_logprobs_is_not_folded() {
        let mut asm = Assembler::new(Shape::Text, 1 << 20);
        let c = json!({"choices":[{"index":0,"text":"a","logprobs":{"tokens":["a"],"token_logprobs":[-0.5]},"finish_reason":"stop"}]});
        assert!(!asm.push(c.to_string().as_bytes()));
        let mut asm = Assembler::new(Shape::Chat, 1 << 20);
        let c = json!({"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":-0.5}]},"finish_reason":"stop"}]});
        assert!(!asm.push(c.to_string().as_bytes()));
    }

    #[test]
    fn each_shape_reads_only_its_own_fields() {
        // A chat delta on the text endpoint adds no text, and the other way round.
        let mut asm = Assembler::new(Shape::Text, 1 << 20);
        let c = json!({"choices":[{"index":0,"delta":{"content":"chat"},"text":"text","finish_reason":"stop"}]});
        assert!(asm.push(c.to_string().as_bytes()));
        let body: Value = serde_json::from_slice(&asm.finish().unwrap()).unwrap();
        assert_eq!(body["choices"][0]["text"], "text");
        assert_eq!(body["id"], "cmpl-cached");
        let mut asm = Assembler::new(Shape::Chat, 1 << 20);
        assert!(asm.push(c.to_string().as_bytes()));
        let body: Value = serde_json::from_slice(&asm.finish().unwrap()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "chat");
        assert_eq!(body["object"], "chat.completion");
    }
}
