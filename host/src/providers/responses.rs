//! The Responses API served natively by an `openai/` deployment that has it
//! (OpenAI's own api_base, or `supports_responses` / `supported_endpoints`):
//! a Responses client's body, carried in the chat request's
//! [`NATIVE_FIELD`], goes to `{api_base}/responses` and the answer comes
//! back as the upstream sent it. Keys, timeouts, size limits, error statuses
//! and `retry-after` are the adapter's, so the router's retries, fallbacks
//! and cooldowns apply as to a chat call.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use serde_json::{Map, Value};

use super::http_adapter::complete_native;
use super::{PayloadStream, UpstreamError, sse};
use crate::openai::RawFields;
use crate::translate::responses::{NATIVE_FIELD, native_request};

/// The Responses URL for an OpenAI-style `base` (one ending in `/v1`).
pub fn responses_url(base: &str) -> String {
    format!("{base}/responses")
}

/// The upstream body for a chat request carrying a Responses client's body,
/// with the deployment's Responses defaults and `extra_body` where it set
/// none; `None` when it carries none (the request is an ordinary chat call).
pub fn request_body(
    body: &RawFields,
    model: &str,
    stream: bool,
    defaults: &Map<String, Value>,
    extra_body: &Map<String, Value>,
) -> Option<Result<Vec<u8>, UpstreamError>> {
    let native = body.value(NATIVE_FIELD)?;
    let mut request = native_request(&native, model, stream)?;
    complete_native(&mut request, defaults, NATIVE_DEFAULTS, extra_body);
    Some(serde_json::to_vec(&request).map_err(|e| UpstreamError::Protocol(e.to_string())))
}

/// The deployment's request defaults a native Responses request takes: the
/// fields the Responses API has under the same names.
const NATIVE_DEFAULTS: &[&str] = &["temperature", "top_p", "parallel_tool_calls", "user"];

/// Event types that end a Responses stream.
const TERMINAL: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
];

/// The Responses event stream in `bytes` as its events' own payloads.
/// The Responses API ends a stream by closing it after its last event
/// rather than with `[DONE]`: a stream that ends before a terminal event
/// (`response.completed`, `.incomplete`, `.failed` or `error`) is broken.
pub fn stream_reply<S>(bytes: S, idle: Duration, room: sse::EventRoom) -> PayloadStream
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let done = stream::iter([Ok(Bytes::from_static(b"\n\ndata: [DONE]\n\n"))]);
    let payloads = sse::decode_objects(bytes.chain(done), idle, room);
    Box::pin(stream::unfold(
        (payloads, false, false),
        |(mut payloads, ended, finished)| async move {
            if finished {
                return None;
            }
            match payloads.next().await {
                Some(Ok(payload)) => {
                    let ended = ended || is_terminal(&payload);
                    Some((Ok(payload), (payloads, ended, false)))
                }
                Some(Err(e)) => Some((Err(e), (payloads, ended, true))),
                None if ended => None,
                None => Some((
                    Err(UpstreamError::StreamBroken(
                        "the stream ended before response.completed".into(),
                    )),
                    (payloads, ended, true),
                )),
            }
        },
    ))
}

/// The `type` of a Responses stream event's payload, read without the rest.
pub fn event_type(payload: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Typed<'_>>(payload).ok()?.kind
}

/// Whether `payload` is an event that ends the stream.
fn is_terminal(payload: &[u8]) -> bool {
    event_type(payload).is_some_and(|kind| TERMINAL.contains(&kind.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_events_are_told_from_the_rest() {
        assert!(is_terminal(
            br#"{"type":"response.completed","response":{}}"#
        ));
        assert!(is_terminal(br#"{"type":"error","message":"x"}"#));
        assert!(!is_terminal(
            br#"{"type":"response.output_text.delta","delta":"response.completed"}"#
        ));
        assert!(!is_terminal(b"not json"));
    }

    #[tokio::test]
    async fn a_stream_without_a_terminal_event_is_broken() {
        let cut = stream::iter([Ok(Bytes::from_static(
            b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
        ))]);
        let items: Vec<_> = stream_reply(cut, Duration::from_secs(5), (1 << 20).into())
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(UpstreamError::StreamBroken(_))));
        let whole = stream::iter([Ok(Bytes::from_static(
            b"data: {\"type\":\"response.created\"}\n\ndata: {\"type\":\"response.completed\"}\n\n",
        ))]);
        let items: Vec<_> = stream_reply(whole, Duration::from_secs(5), (1 << 20).into())
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }
}
