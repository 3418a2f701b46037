//! The two answer shapes the cache folds streams into and replays streams
//! from: a chat completion and a text completion. Both are stored as the
//! body a plain request gets, so one entry serves streamed and plain
//! requests alike; the shape says which names that body and its chunks use.

use serde_json::Value;

use crate::openai::Endpoint;

/// A completion endpoint's answer shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/v1/chat/completions`: `message`s and `delta`s.
    Chat,
    /// `/v1/completions`: `text` in the body and in every chunk.
    Text,
}

impl Shape {
    /// The shape of `endpoint`'s answers; `None` for an endpoint that
    /// never streams (embeddings, moderations, images, rerank).
    pub fn of(endpoint: Endpoint) -> Option<Self> {
        match endpoint {
            Endpoint::ChatCompletions => Some(Self::Chat),
            Endpoint::Completions => Some(Self::Text),
            Endpoint::Embeddings
            | Endpoint::Moderations
            | Endpoint::ImageGenerations
            | Endpoint::Rerank => None,
        }
    }

    /// The `object` of a whole answer.
    pub fn object(self) -> &'static str {
        match self {
            Self::Chat => "chat.completion",
            Self::Text => "text_completion",
        }
    }

    /// The `object` of a streamed chunk (a text completion's chunks are
    /// named like its whole answer).
    pub fn chunk_object(self) -> &'static str {
        match self {
            Self::Chat => "chat.completion.chunk",
            Self::Text => "text_completion",
        }
    }

    /// The id given to an answer whose stream carried none.
    pub fn fallback_id(self) -> &'static str {
        match self {
            Self::Chat => "chatcmpl-cached",
            Self::Text => "cmpl-cached",
        }
    }
}

/// Whether a choice (whole or a chunk's) carries logprobs. The cache keeps
/// only text, so such an answer is neither folded from a stream nor
/// replayed as one; `null` and empty lists carry nothing.
pub fn carries_logprobs(choice: &Value) -> bool {
    match choice.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Object(parts)) => parts
            .values()
            .any(|v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty))),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_real_logprobs_count() {
        assert!(!carries_logprobs(&json!({"text": "a"})));
        assert!(!carries_logprobs(&json!({"logprobs": null})));
        assert!(!carries_logprobs(
            &json!({"logprobs": {"content": null, "refusal": []}})
        ));
        assert!(carries_logprobs(
            &json!({"logprobs": {"content": [{"token": "a", "logprob": -0.1}]}})
        ));
        assert!(carries_logprobs(
            &json!({"logprobs": {"tokens": ["a"], "token_logprobs": [-0.1]}})
        ));
    }
}
