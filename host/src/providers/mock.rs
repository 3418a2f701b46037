//! `mock/<name>`: a deterministic in-process provider for the offline demo,
//! tests and strategy development. It goes through the router like any other
//! deployment, so retries, fallbacks and streaming behave as in production.
//!
//! litellm_params it reads: `mock_response` (template with `{model}`,
//! `{prompt}`, `{call}`), `mock_latency_ms`, `mock_chunks`,
//! `mock_chunk_delay_ms`, `mock_error_status`, `mock_error_count` (fail only
//! the first N calls), `mock_error_message`, `mock_break_after_chunks`.
//!
//! A deployment of any other provider with a `mock_response` is one too,
//! answering with that text, as LiteLLM's are. In both, a `mock_response`
//! naming one of LiteLLM's errors (`litellm.RateLimitError`, ...) fails
//! every call with that error's status, as LiteLLM's mock does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};

use super::{UpstreamCall, UpstreamError, UpstreamReply, mock_answers};
use crate::config::LitellmParams;
use crate::openai::response::{self, Head, to_bytes, usage};
use crate::openai::{Endpoint, RawFields, unix_now};

const DEFAULT_TEMPLATE: &str = "Mock answer from {model}: you said \"{prompt}\"";

/// A mock deployment.
pub struct MockTarget {
    name: String,
    template: String,
    latency: Duration,
    chunks: Option<usize>,
    chunk_delay: Duration,
    error_status: Option<u16>,
    error_count: Option<u64>,
    error_message: String,
    /// The error's `code`, for a LiteLLM error that has one (a context
    /// window's, a content policy's), by which fallbacks choose their list.
    error_code: Option<&'static str>,
    break_after_chunks: Option<usize>,
    calls: AtomicU64,
}

impl MockTarget {
    pub(super) fn from_params(name: &str, params: &LitellmParams) -> Result<Self, String> {
        let get_u64 = |key: &str| -> Result<Option<u64>, String> {
            match params.extra.get(key) {
                None | Some(serde_yaml::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be a non-negative integer")),
            }
        };
        let template = match params.extra.get("mock_response") {
            None | Some(serde_yaml::Value::Null) => DEFAULT_TEMPLATE.to_owned(),
            Some(answer) => answer_text(answer)?,
        };
        let error_status = get_u64("mock_error_status")?
            .map(|s| u16::try_from(s).ok().filter(|s| (400..600).contains(s)))
            .map(|s| {
                s.ok_or_else(|| {
                    "mock_error_status must be an HTTP error status (400-599)".to_owned()
                })
            })
            .transpose()?;
        let error_message = match params.extra.get("mock_error_message") {
            Some(serde_yaml::Value::String(s)) => s.clone(),
            _ => "injected mock failure".to_owned(),
        };
        let mock = Self {
            latency: Duration::from_millis(get_u64("mock_latency_ms")?.unwrap_or(0)),
            chunks: get_u64("mock_chunks")?.map(|n| n.max(1) as usize),
            chunk_delay: Duration::from_millis(get_u64("mock_chunk_delay_ms")?.unwrap_or(0)),
            error_status,
            error_count: get_u64("mock_error_count")?,
            error_message,
            break_after_chunks: get_u64("mock_break_after_chunks")?.map(|n| n as usize),
            ..Self::answering(name, template)
        };
        Ok(mock.failing_as_litellm_names())
    }

    /// A deployment of another provider that has a `mock_response`
    /// ([`crate::config::LitellmParams::mock_answer`]): it answers with it,
    /// and reads none of the mock provider's other settings.
    pub(super) fn from_answer(name: &str, answer: &serde_yaml::Value) -> Result<Self, String> {
        Ok(Self::answering(name, answer_text(answer)?).failing_as_litellm_names())
    }

    /// A mock answering `template` at once, every time.
    fn answering(name: &str, template: String) -> Self {
        Self {
            name: name.to_owned(),
            template,
            latency: Duration::ZERO,
            chunks: None,
            chunk_delay: Duration::ZERO,
            error_status: None,
            error_count: None,
            error_message: String::new(),
            error_code: None,
            break_after_chunks: None,
            calls: AtomicU64::new(0),
        }
    }

    /// When the answer names one of LiteLLM's errors, every call fails with it.
    fn failing_as_litellm_names(mut self) -> Self {
        if let Some((status, code)) = litellm_error(&self.template) {
            self.error_status = Some(status);
            self.error_code = code;
            self.error_count = None;
            self.error_message = format!(
                "{}: a mock failure, as mock_response asks",
                self.template.trim()
            );
        }
        self
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) async fn call(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<UpstreamReply, UpstreamError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let model = call.model_override.unwrap_or(&self.name).to_owned();
        if !self.latency.is_zero() {
            let wait = if call.stream {
                call.timeouts.stream
            } else {
                call.timeouts.request
            };
            if self.latency > wait {
                tokio::time::sleep(wait).await;
                return Err(UpstreamError::Timeout(wait));
            }
            tokio::time::sleep(self.latency).await;
        }
        if let Some(status) = self.error_status
            && self.error_count.is_none_or(|count| n < count)
        {
            return Err(UpstreamError::Status {
                status,
                message: self.error_message.clone(),
                code: self.error_code.map(str::to_owned),
                param: None,
                retry_after: None,
            });
        }
        let prompt = prompt_text(call.endpoint, call.body);
        let text = self
            .template
            .replace("{model}", &model)
            .replace("{prompt}", &prompt)
            .replace("{call}", &(n + 1).to_string());
        let prompt_tokens = approx_tokens(&prompt);
        let id = format!("mock-{n}");
        match call.endpoint {
            Endpoint::Embeddings => Ok(UpstreamReply::Json(embeddings(
                &model,
                call.body,
                prompt_tokens,
            ))),
            Endpoint::Moderations => Ok(UpstreamReply::Json(to_bytes(&mock_answers::moderation(
                &id, &model, call.body,
            )))),
            Endpoint::ImageGenerations => Ok(UpstreamReply::Json(to_bytes(&mock_answers::images(
                call.body,
            )))),
            Endpoint::Rerank => Ok(UpstreamReply::Json(to_bytes(&mock_answers::rerank(
                &id, call.body,
            )))),
            _ if call.stream => Ok(UpstreamReply::Stream(self.stream(
                call,
                id,
                model,
                text,
                prompt_tokens,
            ))),
            Endpoint::ChatCompletions => {
                let id = format!("chatcmpl-{id}");
                Ok(UpstreamReply::Json(to_bytes(&response::completion(
                    Head::now(&id, &model),
                    response::assistant_message(&text, None, None),
                    "stop",
                    usage(prompt_tokens, approx_tokens(&text)),
                ))))
            }
            Endpoint::Completions => Ok(UpstreamReply::Json(to_bytes(&json!({
                "id": format!("cmpl-{id}"),
                "object": "text_completion",
                "created": unix_now(),
                "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage(prompt_tokens, approx_tokens(&text)),
            })))),
        }
    }

    fn stream(
        &self,
        call: UpstreamCall<'_>,
        id: String,
        model: String,
        text: String,
        prompt_tokens: u64,
    ) -> super::PayloadStream {
        let chat = call.endpoint == Endpoint::ChatCompletions;
        let include_usage = call
            .body
            .value("stream_options")
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let completion_tokens = approx_tokens(&text);
        let pieces = split_pieces(&text, self.chunks);
        let id = format!("chatcmpl-{id}");
        let head = Head::now(&id, &model);
        let totals = include_usage.then(|| usage(prompt_tokens, completion_tokens));
        let payloads = if chat {
            chat_chunks(head, &pieces, totals)
        } else {
            text_chunks(head, &pieces, totals)
        };
        let delay = self.chunk_delay;
        let break_after = self.break_after_chunks;
        let items = payloads.into_iter().enumerate();
        Box::pin(stream::unfold(items, move |mut items| async move {
            let (i, payload) = items.next()?;
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if break_after.is_some_and(|k| i >= k) {
                // Drain so the stream ends after this one error.
                for _ in items.by_ref() {}
                return Some((
                    Err(UpstreamError::StreamBroken(
                        "mock stream broken on purpose".into(),
                    )),
                    items,
                ));
            }
            Some((Ok(to_bytes(&payload)), items))
        }))
    }
}

/// The chunks of a streamed chat answer: the role, one chunk per piece, the
/// finish reason and, when asked, the usage.
fn chat_chunks(head: Head<'_>, pieces: &[String], usage: Option<Value>) -> Vec<Value> {
    let mut payloads = Vec::with_capacity(pieces.len() + 3);
    payloads.push(response::chunk(
        head,
        json!({"role": "assistant", "content": ""}),
        None,
    ));
    for piece in pieces {
        payloads.push(response::chunk(head, json!({"content": piece}), None));
    }
    payloads.push(response::chunk(head, json!({}), Some("stop")));
    payloads.extend(usage.map(|u| response::usage_chunk(head, u)));
    payloads
}

/// The chunks of a streamed text completion (`/v1/completions`).
fn text_chunks(head: Head<'_>, pieces: &[String], usage: Option<Value>) -> Vec<Value> {
    let base = |choices: Value| json!({"id": head.id, "object": "text_completion", "created": head.created, "model": head.model, "choices": choices});
    let mut payloads: Vec<Value> = pieces
        .iter()
        .map(|piece| base(json!([{"index": 0, "text": piece, "finish_reason": null}])))
        .collect();
    payloads.push(base(
        json!([{"index": 0, "text": "", "finish_reason": "stop"}]),
    ));
    if let Some(usage) = usage {
        let mut last = base(json!([]));
        last["usage"] = usage;
        payloads.push(last);
    }
    payloads
}

/// A rough token count (about four characters per token), so usage is never zero.
fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The text a mock answers to: the last user message, the prompt, or the input.
/// A `mock_response` as text: it must be a string.
fn answer_text(answer: &serde_yaml::Value) -> Result<String, String> {
    answer
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "mock_response must be a string".to_owned())
}

/// The status (and `code`) of the LiteLLM error `text` names, as LiteLLM's
/// mock raises it for a `mock_response` of `litellm.<ErrorName>`.
fn litellm_error(text: &str) -> Option<(u16, Option<&'static str>)> {
    let name = text.trim().strip_prefix("litellm.")?;
    Some(match name {
        "BadRequestError" | "UnsupportedParamsError" => (400, None),
        "ContextWindowExceededError" => (400, Some("context_length_exceeded")),
        "ContentPolicyViolationError" => (400, Some("content_policy_violation")),
        "AuthenticationError" => (401, None),
        "PermissionDeniedError" => (403, None),
        "NotFoundError" => (404, None),
        "Timeout" => (408, None),
        "UnprocessableEntityError" => (422, None),
        "RateLimitError" => (429, None),
        "InternalServerError" | "APIError" | "APIConnectionError" => (500, None),
        "BadGatewayError" => (502, None),
        "ServiceUnavailableError" => (503, None),
        _ => return None,
    })
}

fn prompt_text(endpoint: Endpoint, body: &RawFields) -> String {
    let value = match endpoint {
        Endpoint::ChatCompletions => body.value("messages").and_then(|mut messages| {
            messages.as_array_mut().and_then(|msgs| {
                msgs.iter_mut()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                    .and_then(|m| m.get_mut("content").map(Value::take))
            })
        }),
        Endpoint::Completions | Endpoint::ImageGenerations => body.value("prompt"),
        Endpoint::Embeddings | Endpoint::Moderations => body.value("input"),
        Endpoint::Rerank => body.value("query"),
    };
    match value {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Splits `text` into `n` pieces on word boundaries, or one piece per word.
fn split_pieces(text: &str, n: Option<usize>) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let n = n.unwrap_or(words.len()).clamp(1, words.len().max(1));
    let per = words.len().div_ceil(n).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

fn embeddings(model: &str, body: &RawFields, prompt_tokens: u64) -> Bytes {
    let inputs: Vec<String> = match body.value("input") {
        Some(Value::Array(items)) => items.iter().map(|i| i.to_string()).collect(),
        Some(other) => vec![other.to_string()],
        None => vec![String::new()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": pseudo_embedding(text)}))
        .collect();
    to_bytes(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

/// Eight numbers derived from the text, so equal inputs embed equally.
fn pseudo_embedding(text: &str) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..8)
        .map(|_| {
            for b in text.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            h = h.rotate_left(17);
            ((h % 2000) as f32 / 1000.0) - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text_exactly() {
        let text = "one two three four five";
        for n in [None, Some(1), Some(2), Some(3), Some(50)] {
            assert_eq!(split_pieces(text, n).concat(), text);
        }
        assert_eq!(split_pieces(text, Some(2)).len(), 2);
    }

    #[test]
    fn prompt_is_the_last_user_message() {
        let body: RawFields = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":[{"type":"text","text":"c"}]}]}"#,
        )
        .unwrap();
        assert_eq!(prompt_text(Endpoint::ChatCompletions, &body), "c");
    }
}
