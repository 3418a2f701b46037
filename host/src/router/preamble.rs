//! The opening payloads of a stream that carry nothing of the answer yet:
//! a chat chunk naming only the role, Anthropic's `message_start` and
//! `ping`, the Responses API's `response.created`. An upstream that fails
//! right after them (Anthropic reports overload as an error event after its
//! 200) has still given the client nothing, so the call is held back until
//! the first payload that does carry the answer, and may be retried or
//! fall back like a call that failed before its first chunk.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// Most opening payloads, and bytes of them, held back before the stream
/// is passed on anyway.
const MAX_HELD: usize = 8;
const MAX_HELD_BYTES: usize = 64 * 1024;

/// Whether a stream that has opened with `count` payloads of `bytes` in all
/// may still be held back.
pub(super) fn may_hold(count: usize, bytes: usize) -> bool {
    count < MAX_HELD && bytes <= MAX_HELD_BYTES
}

/// Event types that open a stream before any of the answer.
const OPENING_EVENTS: &[&str] = &[
    "message_start",
    "ping",
    "content_block_start",
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
];

/// Whether `payload` opens a stream without carrying any of its answer.
pub(super) fn is_preamble(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a str>,
        #[serde(default)]
        choices: Vec<Choice<'a>>,
        #[serde(default)]
        usage: Option<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(default, borrow)]
        delta: Option<Delta<'a>>,
        /// A text completion's chunk.
        #[serde(default, borrow)]
        text: Option<&'a RawValue>,
        #[serde(default)]
        finish_reason: Option<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Delta<'a> {
        #[serde(default, borrow)]
        content: Option<&'a RawValue>,
        #[serde(default, borrow)]
        reasoning_content: Option<&'a RawValue>,
        #[serde(default, borrow)]
        reasoning: Option<&'a RawValue>,
        #[serde(default, borrow)]
        refusal: Option<&'a RawValue>,
        #[serde(default, borrow)]
        tool_calls: Option<&'a RawValue>,
        #[serde(default, borrow)]
        function_call: Option<&'a RawValue>,
    }
    let Ok(head) = serde_json::from_slice::<Head<'_>>(payload) else {
        return false;
    };
    if let Some(kind) = head.kind {
        return OPENING_EVENTS.contains(&kind);
    }
    let empty = |v: Option<&RawValue>| v.is_none_or(|v| matches!(v.get(), "null" | "\"\""));
    head.usage.is_none()
        && head.choices.iter().all(|c| {
            c.finish_reason.is_none()
                && empty(c.text)
                && c.delta.as_ref().is_none_or(|d| {
                    empty(d.content)
                        && empty(d.reasoning_content)
                        && empty(d.reasoning)
                        && empty(d.refusal)
                        && empty(d.tool_calls)
                        && empty(d.function_call)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_carry_no_answer_and_the_rest_do() {
        for opening in [
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
            r#"{"type":"message_start","message":{"id":"m","content":[]}}"#,
            r#"{"type": "ping"}"#,
            r#"{"type":"response.created","response":{"id":"r"}}"#,
        ] {
            assert!(is_preamble(opening.as_bytes()), "{opening}");
        }
        for answer in [
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"Hi"}]}"#,
            r#"{"type":"content_block_delta","delta":{"text":"Hi"}}"#,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
            "not json",
        ] {
            assert!(!is_preamble(answer.as_bytes()), "{answer}");
        }
    }
}
