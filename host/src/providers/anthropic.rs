//! The native Anthropic dialect of the HTTP adapter: `anthropic/`
//! deployments call `{api_base}/v1/messages` with `x-api-key` and
//! `anthropic-version`, and the chat request and answer are translated by
//! [`crate::translate::anthropic_upstream`]. Everything else (keys,
//! timeouts, size limits, error statuses, `retry-after`, redaction) is the
//! adapter's, so the router's retries, fallbacks and cooldowns apply as to
//! any provider (Anthropic's 529 `overloaded_error` is retryable there).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::http_adapter::{add_absent, complete_native};
use super::{PayloadStream, UpstreamError, sse};
use crate::openai::{Endpoint, RawFields, unix_now};
use crate::translate::anthropic_upstream::{
    self, CLIENT_HEADERS, ChunkStream, NATIVE_FIELD, NATIVE_HEADERS_FIELD, StreamStep,
};

/// The `anthropic-version` sent when the deployment sets no `api_version`.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The Messages URL for `base`: `{base}/v1/messages`, `{base}/messages`
/// when the base already ends in `/v1`, or the base itself when it already
/// names the Messages endpoint (as LiteLLM takes it).
pub fn messages_url(base: &str) -> String {
    if base.ends_with("/v1/messages") {
        base.to_owned()
    } else if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// A request the adapter refuses before calling the upstream (400).
fn refused(message: String, param: Option<String>) -> UpstreamError {
    UpstreamError::Unsendable {
        message,
        param: param.map(String::into_boxed_str),
    }
}

/// How an `anthropic/` deployment's answer reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// As it came: a Messages client's own body was passed through.
    Native,
    /// Translated to chat; `json_tool` when the answer comes through
    /// [`anthropic_upstream::JSON_TOOL`].
    Chat { json_tool: bool },
}

/// The request an `anthropic/` deployment sends for one chat request.
pub struct MessagesRequest {
    /// The Messages body.
    pub bytes: Vec<u8>,
    /// How its answer reaches the client.
    pub reply: Reply,
    /// The client's headers sent with a native body ([`client_headers`]).
    pub headers: HeaderMap,
}

/// The deployment's request defaults a native Messages request takes: the
/// fields Anthropic's API has under the same names.
const NATIVE_DEFAULTS: &[&str] = &["temperature", "top_p", "top_k", "thinking"];

/// The Messages request body for a chat request: a Messages client's own
/// body when the request carries one ([`NATIVE_FIELD`]), sent with the
/// client's beta header and the deployment's Messages defaults where it
/// set none, else the client's chat fields with the deployment's defaults
/// where it set none, translated; `extra_body` joins either.
pub fn request_body(
    endpoint: Endpoint,
    body: &RawFields,
    (defaults, extra_body): (&Map<String, Value>, &Map<String, Value>),
    model: &str,
    stream: bool,
) -> Result<MessagesRequest, UpstreamError> {
    if endpoint != Endpoint::ChatCompletions {
        return Err(refused(
            format!(
                "anthropic/ deployments serve chat completions only, not {}",
                endpoint.path()
            ),
            None,
        ));
    }
    if let Some(native) = body.value(NATIVE_FIELD)
        && let Some(mut request) = anthropic_upstream::native_request(&native, model, stream)
    {
        complete_native(&mut request, defaults, NATIVE_DEFAULTS, extra_body);
        let bytes =
            serde_json::to_vec(&request).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let headers = client_headers(body.value(NATIVE_HEADERS_FIELD).as_ref());
        return Ok(MessagesRequest {
            bytes,
            reply: Reply::Native,
            headers,
        });
    }
    let mut chat = body
        .to_map()
        .map_err(|e| refused(format!("the request body cannot be read: {e}"), None))?;
    for (key, value) in defaults {
        chat.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let mut request = anthropic_upstream::request_from_chat(&Value::Object(chat), model, stream)
        .map_err(|e| refused(e.message, e.param))?;
    if let Some(fields) = request.body.as_object_mut() {
        add_absent(fields, extra_body);
    }
    let bytes =
        serde_json::to_vec(&request.body).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    Ok(MessagesRequest {
        bytes,
        reply: Reply::Chat {
            json_tool: request.json_tool,
        },
        headers: HeaderMap::new(),
    })
}

/// The Messages client's own headers ([`CLIENT_HEADERS`]) from the object
/// its route carried them in; a value that is not a valid header is left
/// out (the route only carries valid ones).
pub fn client_headers(carried: Option<&Value>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(carried) = carried.and_then(Value::as_object) else {
        return headers;
    };
    for name in CLIENT_HEADERS {
        if let Some(value) = carried.get(name).and_then(Value::as_str)
            && let Ok(value) = HeaderValue::from_str(value)
        {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

/// Adds a Messages client's own headers to the deployment's. Both may name
/// beta features (`anthropic-beta`, a comma-separated list): the request
/// gets every feature either names, so that a deployment set up for one
/// (a longer context) keeps it when a client such as Claude Code asks for
/// others. Any other header of the client's replaces the deployment's.
pub fn add_client_headers(headers: &mut HeaderMap, client: HeaderMap) {
    for (name, value) in &client {
        let merged = match headers.get(name) {
            Some(configured) if name == "anthropic-beta" => merged_list(configured, value),
            _ => None,
        };
        headers.insert(name.clone(), merged.unwrap_or_else(|| value.clone()));
    }
}

/// The features of two `anthropic-beta` values, each once, the
/// configured ones first; `None` when either is not text.
fn merged_list(configured: &HeaderValue, client: &HeaderValue) -> Option<HeaderValue> {
    let (configured, client) = (configured.to_str().ok()?, client.to_str().ok()?);
    let mut features: Vec<&str> = Vec::new();
    for feature in configured.split(',').chain(client.split(',')) {
        let feature = feature.trim();
        if !feature.is_empty() && !features.contains(&feature) {
            features.push(feature);
        }
    }
    HeaderValue::from_str(&features.join(",")).ok()
}

/// A `message` body as a `chat.completion` body, or as received for a
/// Messages client's request passed through.
pub fn json_reply(body: Bytes, reply: Reply) -> Result<Bytes, UpstreamError> {
    let Reply::Chat { json_tool } = reply else {
        return Ok(body);
    };
    let message: Value = serde_json::from_slice(&body)
        .map_err(|e| UpstreamError::Protocol(format!("the message body is not JSON: {e}")))?;
    // An error object in a 200 body is that error, as in a stream.
    if message["type"] == "error"
        && let Some(error) = sse::answer_error(&body)
    {
        return Err(error);
    }
    if message["type"] != "message" {
        return Err(UpstreamError::Protocol(
            "the answer is not a Messages `message` object".into(),
        ));
    }
    let chat = anthropic_upstream::answer_to_chat(&message, unix_now(), json_tool);
    serde_json::to_vec(&chat)
        .map(Bytes::from)
        .map_err(|e| UpstreamError::Protocol(e.to_string()))
}

/// The Messages event stream in `bytes` as chat chunk payloads, or as the
/// events' own payloads for a Messages client's request passed through. Anthropic ends a stream with
/// `message_stop` rather than `[DONE]`; a stream that ends without it is
/// broken.
pub fn stream_reply<S>(
    bytes: S,
    idle: Duration,
    room: sse::EventRoom,
    reply: Reply,
) -> PayloadStream
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let done = stream::iter([Ok(Bytes::from_static(b"\n\ndata: [DONE]\n\n"))]);
    let bytes = bytes.chain(done);
    // A translated event is parsed whole in `step`, which checks it there.
    let native = reply == Reply::Native;
    let translator = match reply {
        Reply::Chat { json_tool: true } => {
            ChunkStream::new(unix_now()).answering_through_json_tool()
        }
        _ => ChunkStream::new(unix_now()),
    };
    let payloads = if native {
        sse::decode_objects(bytes, idle, room)
    } else {
        sse::decode(bytes, idle, room)
    };
    let state = Translating {
        payloads,
        translator,
        pending: VecDeque::new(),
        native,
        stopped: false,
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(chunk) = st.pending.pop_front() {
                return Some((Ok(chunk), st));
            }
            if st.finished {
                return None;
            }
            match st.payloads.next().await {
                Some(Ok(payload)) => {
                    if let Err(e) = st.step(&payload) {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.finished = true;
                    if !st.stopped {
                        return Some((
                            Err(UpstreamError::StreamBroken(
                                "the stream ended before message_stop".into(),
                            )),
                            st,
                        ));
                    }
                }
            }
        }
    }))
}

/// One translated stream's state.
struct Translating {
    payloads: PayloadStream,
    translator: ChunkStream,
    pending: VecDeque<Bytes>,
    /// Payloads pass as they are (only `message_stop` is looked for).
    native: bool,
    /// `message_stop` was seen.
    stopped: bool,
    finished: bool,
}

impl Translating {
    /// Translates one event payload into pending chunks.
    fn step(&mut self, payload: &Bytes) -> Result<(), UpstreamError> {
        if self.native {
            static STOP: sse::Needle = sse::Needle::new(b"\"message_stop\"");
            if STOP.is_in(payload) {
                self.stopped = true;
            }
            self.pending.push_back(payload.clone());
            return Ok(());
        }
        let event = match serde_json::from_slice::<Value>(payload) {
            Ok(event @ Value::Object(_)) => event,
            _ => {
                return Err(UpstreamError::Protocol(
                    "a stream event is not a JSON object".into(),
                ));
            }
        };
        match self.translator.push(&event) {
            StreamStep::Chunks(chunks) => {
                for chunk in chunks {
                    let bytes = serde_json::to_vec(&chunk)
                        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                    self.pending.push_back(Bytes::from(bytes));
                }
                Ok(())
            }
            StreamStep::Done => {
                self.stopped = true;
                Ok(())
            }
            StreamStep::Error { kind, message } => {
                Err(UpstreamError::StreamBroken(format!("{kind}: {message}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_object_in_a_200_body_is_that_error() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let chat = Reply::Chat { json_tool: false };
        match json_reply(Bytes::from_static(body), chat) {
            Err(UpstreamError::Status {
                status, message, ..
            }) => {
                assert_eq!(status, 529);
                assert_eq!(message, "Overloaded");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_messages_url_adds_v1_once() {
        assert_eq!(
            messages_url("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url("http://127.0.0.1:9/x/v1"),
            "http://127.0.0.1:9/x/v1/messages"
        );
        assert_eq!(
            messages_url("http://127.0.0.1:9/v1/messages"),
            "http://127.0.0.1:9/v1/messages"
        );
    }
}
