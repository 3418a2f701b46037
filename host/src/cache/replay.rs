//! A cached answer sent again: as the stored JSON body, or as a stream of
//! chunk payloads for a client that asked for one. A chat stream
//! (`chat.completion.chunk`) carries the reasoning and content in pieces of
//! [`PIECE_BYTES`], tool calls whole, then the original finish reason; a
//! text stream (`text_completion`) carries the text in such pieces, the last
//! with the original finish reason. Either ends with the usage chunk when
//! the client asked for usage (`[DONE]` is the SSE framing's). A
//! composite's cached answer says in its reasoning that it is a replay.

use bytes::Bytes;
use serde_json::{Value, json};

use super::entry::Entry;
use super::shape::{Shape, carries_logprobs};

/// Bytes of content per replayed chunk: small enough to render
/// progressively, large enough that a long answer is a few dozen events.
pub const PIECE_BYTES: usize = 256;

/// The line that opens a replayed composite answer's reasoning.
const CACHED_TRACE_NOTE: &str =
    "[cached answer: the reasoning below is from the run that produced it]\n";

/// The JSON body to send for `entry`.
pub fn json_body(entry: &Entry) -> Bytes {
    if !entry.composite {
        return entry.body.clone();
    }
    match serde_json::from_slice::<Value>(&entry.body) {
        Ok(mut body) => {
            mark_composite(&mut body);
            Bytes::from(body.to_string())
        }
        Err(_) => entry.body.clone(),
    }
}

/// Prefixes every choice's reasoning with the note that it is a replay.
fn mark_composite(body: &mut Value) {
    if let Some(choices) = body["choices"].as_array_mut() {
        for choice in choices {
            if let Some(reasoning) = choice["message"]["reasoning_content"].as_str() {
                let marked = format!("{CACHED_TRACE_NOTE}{reasoning}");
                choice["message"]["reasoning_content"] = Value::String(marked);
            }
        }
    }
}

/// The chunk payloads replaying `entry` to a client of a `shape` endpoint;
/// `None` when the body is not an answer of that shape or carries logprobs
/// (which a replay would lose): the caller then treats the lookup as a miss.
pub fn chunks(entry: &Entry, shape: Shape, include_usage: bool) -> Option<Vec<Bytes>> {
    let mut body: Value = serde_json::from_slice(&entry.body).ok()?;
    if body["object"] != shape.object() {
        return None;
    }
    let choices = body["choices"].as_array()?;
    if choices.iter().any(carries_logprobs) {
        return None;
    }
    if entry.composite {
        mark_composite(&mut body);
    }
    let head = Head {
        object: shape.chunk_object(),
        id: body["id"]
            .as_str()
            .unwrap_or(shape.fallback_id())
            .to_owned(),
        created: body["created"].clone(),
        model: body["model"].clone(),
        fingerprint: body.get("system_fingerprint").cloned(),
    };
    let mut out = Vec::new();
    for (i, choice) in body["choices"].as_array()?.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or_else(|| json!(i));
        match shape {
            Shape::Chat => chat_choice_chunks(&head, &index, choice, &mut out),
            Shape::Text => text_choice_chunks(&head, &index, choice, &mut out),
        }
    }
    if include_usage && let Some(usage) = body.get("usage").filter(|u| u.is_object()) {
        let mut chunk = head.chunk(Value::Array(Vec::new()));
        chunk["usage"] = usage.clone();
        out.push(Bytes::from(chunk.to_string()));
    }
    Some(out)
}

struct Head {
    object: &'static str,
    id: String,
    created: Value,
    model: Value,
    fingerprint: Option<Value>,
}

impl Head {
    fn chunk(&self, choices: Value) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(fp) = &self.fingerprint {
            chunk["system_fingerprint"] = fp.clone();
        }
        chunk
    }

    /// A chunk of one choice: `field` (a chat `delta` or a text's `text`)
    /// and, on its last chunk, the finish reason.
    fn piece(&self, index: &Value, field: (&str, Value), finish_reason: Option<&Value>) -> Bytes {
        let mut choice = json!({
            "index": index,
            "logprobs": null,
            "finish_reason": finish_reason.cloned().unwrap_or(Value::Null),
        });
        choice[field.0] = field.1;
        Bytes::from(self.chunk(json!([choice])).to_string())
    }

    fn delta(&self, index: &Value, delta: Value, finish_reason: Option<&Value>) -> Bytes {
        self.piece(index, ("delta", delta), finish_reason)
    }

    fn text(&self, index: &Value, text: &str, finish_reason: Option<&Value>) -> Bytes {
        self.piece(index, ("text", json!(text)), finish_reason)
    }
}

/// A stored choice's finish reason (`stop` if it somehow has none).
fn finish_reason(choice: &Value) -> Value {
    choice
        .get("finish_reason")
        .filter(|f| !f.is_null())
        .cloned()
        .unwrap_or_else(|| json!("stop"))
}

fn chat_choice_chunks(head: &Head, index: &Value, choice: &Value, out: &mut Vec<Bytes>) {
    let message = &choice["message"];
    out.push(head.delta(index, json!({"role": "assistant", "content": ""}), None));
    if let Some(reasoning) = message["reasoning_content"].as_str() {
        for piece in pieces(reasoning) {
            out.push(head.delta(index, json!({"reasoning_content": piece}), None));
        }
    }
    if let Some(content) = message["content"].as_str() {
        for piece in pieces(content) {
            out.push(head.delta(index, json!({"content": piece}), None));
        }
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut call = call.clone();
                call["index"] = json!(i);
                call
            })
            .collect();
        out.push(head.delta(index, json!({"tool_calls": indexed}), None));
    }
    out.push(head.delta(index, json!({}), Some(&finish_reason(choice))));
}

/// A text choice as its pieces, the last one carrying the finish reason
/// (an empty text is one empty piece).
fn text_choice_chunks(head: &Head, index: &Value, choice: &Value, out: &mut Vec<Bytes>) {
    let finish = finish_reason(choice);
    let mut pieces = pieces(choice["text"].as_str().unwrap_or(""));
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        out.push(head.text(index, piece, None));
    }
    out.push(head.text(index, last, Some(&finish)));
}

/// `text` in pieces of about [`PIECE_BYTES`], cut at character boundaries.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / PIECE_BYTES + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(PIECE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: Value, composite: bool) -> Entry {
        Entry::new(Bytes::from(body.to_string()), composite)
    }

    fn parse(chunks: &[Bytes]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| serde_json::from_slice(c).unwrap())
            .collect()
    }

    #[test]
    fn a_stored_answer_replays_as_chunks_with_its_finish_reason_and_usage() {
        let long = "é".repeat(300);
        let e = entry(
            json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",
                "choices":[{"index":0,"message":{"role":"assistant","content":long},"finish_reason":"length"}],
                "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}),
            false,
        );
        let parsed = parse(&chunks(&e, Shape::Chat, true).unwrap());
        let content: String = parsed
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, long);
        assert!(parsed.len() >= 5, "content comes in pieces");
        let finish = &parsed[parsed.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        let last = parsed.last().unwrap();
        assert_eq!(last["usage"]["total_tokens"], 3);
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            chunks(&e, Shape::Chat, false).unwrap().len(),
            parsed.len() - 1
        );
    }

    #[test]
    fn a_composite_answer_says_it_is_cached() {
        let e = entry(
            json!({"id":"c","object":"chat.completion","created":1,"model":"council",
                "choices":[{"index":0,"message":{"role":"assistant","content":"a","reasoning_content":"trace"},"finish_reason":"stop"}]}),
            true,
        );
        let body: Value = serde_json::from_slice(&json_body(&e)).unwrap();
        let reasoning = body["choices"][0]["message"]["reasoning_content"]
            .as_str()
            .unwrap();
        assert!(reasoning.starts_with("[cached answer"), "{reasoning}");
        assert!(reasoning.ends_with("trace"));
    }

    #[test]
    fn embeddings_do_not_replay_as_chunks() {
        let e = entry(json!({"object":"list","data":[]}), false);
        assert!(chunks(&e, Shape::Chat, false).is_none());
    }

    fn text_entry(text: &str, finish: &str) -> Entry {
        entry(
            json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
                "choices":[{"index":0,"text":text,"logprobs":null,"finish_reason":finish}],
                "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},
                "system_fingerprint":"fp"}),
            false,
        )
    }

    #[test]
    fn a_text_answer_replays_as_text_chunks_with_its_finish_reason_and_usage() {
        let long = "ü".repeat(300);
        let e = text_entry(&long, "length");
        let parsed = parse(&chunks(&e, Shape::Text, true).unwrap());
        assert!(parsed.len() >= 4, "text comes in pieces: {parsed:?}");
        for chunk in &parsed {
            assert_eq!(chunk["object"], "text_completion");
            assert_eq!(chunk["id"], "cmpl-1");
            assert_eq!(chunk["system_fingerprint"], "fp");
        }
        let (usage, content) = parsed.split_last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 3);
        let text: String = content
            .iter()
            .map(|c| c["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, long);
        let (last, earlier) = content.split_last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert!(
            earlier
                .iter()
                .all(|c| c["choices"][0]["finish_reason"].is_null())
        );
        assert!(content.iter().all(|c| c["choices"][0]["delta"].is_null()));
        assert_eq!(
            chunks(&e, Shape::Text, false).unwrap().len(),
            parsed.len() - 1
        );
    }

    #[test]
    fn an_empty_text_is_one_chunk_with_the_finish_reason() {
        let parsed = parse(&chunks(&text_entry("", "stop"), Shape::Text, false).unwrap());
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0]["choices"][0]["text"], "");
        assert_eq!(parsed[0]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn an_answer_replays_only_to_its_own_endpoint() {
        let text = text_entry("a", "stop");
        assert!(chunks(&text, Shape::Chat, false).is_none());
        let chat = entry(
            json!({"id":"c","object":"chat.completion","created":1,"model":"m",
                "choices":[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}]}),
            false,
        );
        assert!(chunks(&chat, Shape::Text, false).is_none());
    }

    #[test]
    fn an_answer_with_logprobs_is_not_replayed_as_chunks() {
        let e = entry(
            json!({"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
                "choices":[{"index":0,"text":"a","logprobs":{"tokens":["a"],"token_logprobs":[-0.1]},"finish_reason":"stop"}]}),
            false,
        );
        assert!(chunks(&e, Shape::Text, false).is_none());
    }
}
