//! Server-sent events from an upstream: split into `data:` payloads, forwarded
//! one by one as they arrive, never coalesced.
//!
//! An upstream is not trusted to be well behaved: every byte is looked at
//! once (a long event arriving in small reads costs linear time), one event
//! may hold at most a fixed number of bytes, and an error event ends the
//! stream as an error classified by its own status, type and code.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use serde_json::Value;

use super::{PayloadStream, UpstreamError};

/// Largest single event accepted from an upstream (its `data:` lines plus
/// any line still being received), unless the response size limit is lower.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// [`decode`], with every payload refused unless it is a JSON object
/// ([`object_event`]).
pub fn decode_objects<S>(bytes: S, idle: Duration, room: impl Into<EventRoom>) -> PayloadStream
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    Box::pin(decode(bytes, idle, room).map(|item| item.and_then(object_event)))
}

/// What a stream's decoder may hold: one event of at most `max_event`
/// bytes, counted (past its free bytes) in the room every answer being read
/// shares, when there is one.
#[derive(Clone)]
pub struct EventRoom {
    pub max_event: usize,
    pub shared: Option<std::sync::Arc<super::answer_room::AnswerRoom>>,
}

impl From<usize> for EventRoom {
    fn from(max_event: usize) -> Self {
        Self {
            max_event,
            shared: None,
        }
    }
}

/// A stream's event, refused unless it is a JSON object: a client's
/// SDK parses every event as one, so text, a number, a cut object or
/// invalid UTF-8 ends the stream with an error here rather than breaking
/// the client.
fn object_event(payload: Bytes) -> Result<Bytes, UpstreamError> {
    // Skipping a string does not check its UTF-8: that is checked first.
    let text = std::str::from_utf8(&payload).map_err(|e| {
        UpstreamError::Protocol(format!(
            "the upstream sent a stream event that is not UTF-8 ({e})"
        ))
    })?;
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        // Skipping a string does not pair its surrogate escapes either: an
        // event with any is read whole, so a lone half (`\ud83d`, from a
        // server that cut a string between the two) is refused here rather
        // than dropped by a translation that cannot read it.
        Ok(_) if has_surrogate_escape(&payload) => {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(Value::Object(_)) => Ok(payload),
                Ok(_) => Err(UpstreamError::Protocol(
                    "the upstream sent a stream event that is JSON but not an object".into(),
                )),
                Err(e) => Err(UpstreamError::Protocol(format!(
                    "the upstream sent a stream event that is not valid JSON ({e})"
                ))),
            }
        }
        Ok(_) if crate::openai::nested_too_deep(text) => Err(UpstreamError::Protocol(format!(
            "the upstream sent a stream event nested deeper than {} levels, which clients \
             cannot read",
            crate::openai::MAX_DEPTH
        ))),
        Ok(_) if crate::ops::is_object_text(text) => Ok(payload),
        Ok(_) => Err(UpstreamError::Protocol(
            "the upstream sent a stream event that is JSON but not an object".into(),
        )),
        Err(e) => Err(UpstreamError::Protocol(format!(
            "the upstream sent a stream event that is not JSON ({e})"
        ))),
    }
}

/// Whether `payload` holds a `\uD800`-`\uDFFF` escape (half of a
/// surrogate pair).
fn has_surrogate_escape(payload: &[u8]) -> bool {
    static ESCAPE: Needle = Needle::new(b"\\u");
    let mut rest = payload;
    while let Some(end) = ESCAPE.end_in(rest) {
        rest = &rest[end..];
        if let [first, second, ..] = rest
            && first.eq_ignore_ascii_case(&b'd')
            && matches!(second.to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
        {
            return true;
        }
    }
    false
}

/// Decodes a byte stream of SSE into payloads. Ends cleanly at `data: [DONE]`,
/// or where the upstream closes the stream right after a chunk that
/// finished the answer (a `finish_reason`, or the usage chunk after it), as
/// some OpenAI-compatible servers do; a stream that ends otherwise, sends no
/// payload for longer than `idle`
/// (bytes that complete none, such as keep-alive comments or a trickle,
/// do not count), sends an event larger than `max_event` bytes, sends an
/// error event, or fails is ended with one error item.
pub fn decode<S>(bytes: S, idle: Duration, room: impl Into<EventRoom>) -> PayloadStream
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let room = room.into();
    let state = Decoder {
        inner: Box::pin(bytes),
        lines: Lines::new(room.max_event),
        held: room.shared.map(super::answer_room::Held::of),
        finished: false,
        last: None,
        idle_since_ping: None,
    };
    Box::pin(stream::unfold(state, move |mut st| async move {
        if st.finished {
            return None;
        }
        let deadline = st
            .idle_since_ping
            .take()
            .unwrap_or_else(|| tokio::time::Instant::now() + idle);
        loop {
            match st.lines.next_event() {
                Ok(Some(Event::Done)) => return None,
                // A keep-alive is passed on but, like a comment, does not
                // show that the answer is still coming.
                Ok(Some(Event::Data(data))) if is_ping(&data) => {
                    st.idle_since_ping = Some(deadline);
                    return Some((Ok(data), st));
                }
                Ok(Some(Event::Data(data))) => {
                    let item = match stream_error(&data) {
                        Some(error) => {
                            st.finished = true;
                            Err(error)
                        }
                        None => {
                            st.last = Some(data.clone());
                            Ok(data)
                        }
                    };
                    return Some((item, st));
                }
                Ok(None) => {}
                Err(error) => {
                    st.finished = true;
                    return Some((Err(error), st));
                }
            }
            match tokio::time::timeout_at(deadline, st.inner.next()).await {
                Err(_) => {
                    st.finished = true;
                    return Some((Err(UpstreamError::Timeout(idle)), st));
                }
                Ok(Some(Ok(chunk))) => {
                    st.lines.push(&chunk);
                    if let Some(held) = &mut st.held
                        && !held.resize(st.lines.held_bytes())
                    {
                        st.finished = true;
                        let full = UpstreamError::AnswerRoomFull(held.limit_mb());
                        return Some((Err(full), st));
                    }
                }
                Ok(Some(Err(e))) => {
                    st.finished = true;
                    return Some((Err(UpstreamError::StreamBroken(e)), st));
                }
                Ok(None) => {
                    st.finished = true;
                    let why = match st.last.as_deref() {
                        Some(last) if ends_the_answer(last) => return None,
                        Some(_) => "the stream ended before data: [DONE]",
                        None if st.lines.holds_unfinished_event() => {
                            "the stream ended inside an event: its data: lines were never \
                             followed by the blank line that ends an event"
                        }
                        None => {
                            "the stream ended without an event: the upstream sent no data: line"
                        }
                    };
                    return Some((Err(UpstreamError::StreamBroken(why.into())), st));
                }
            }
        }
    }))
}

struct Decoder {
    inner: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>,
    lines: Lines,
    /// What the bytes held in `lines` take of the shared room.
    held: Option<super::answer_room::Held>,
    finished: bool,
    /// The last payload passed on, read only if the stream ends without
    /// `[DONE]`.
    last: Option<Bytes>,
    /// After a keep-alive event: the deadline it did not move, which the
    /// next payload must still meet.
    idle_since_ping: Option<tokio::time::Instant>,
}

/// Whether a payload is a keep-alive event (Anthropic's
/// `{"type": "ping"}`): short, so longer payloads are never parsed here.
fn is_ping(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    payload.len() <= 64
        && serde_json::from_slice::<Typed<'_>>(payload).is_ok_and(|t| t.kind == Some("ping"))
}

/// Whether a chunk ends the answer: it sets a `finish_reason` or carries
/// the usage that follows the last one.
fn ends_the_answer(payload: &[u8]) -> bool {
    let Ok(chunk) = serde_json::from_slice::<Value>(payload) else {
        return false;
    };
    let finished = chunk["choices"].as_array().is_some_and(|choices| {
        !choices.is_empty() && choices.iter().all(|c| c["finish_reason"].is_string())
    });
    finished || chunk["usage"].is_object()
}

/// One decoded event.
#[derive(Debug, PartialEq)]
enum Event {
    Data(Bytes),
    Done,
}

/// The `data:` lines of the event being received.
enum Data {
    Empty,
    /// One line, kept without a copy.
    One(Bytes),
    /// Several lines joined by `\n`.
    Many(BytesMut),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(b) => b.len(),
        }
    }
}

/// The incremental SSE line parser: bytes in, events out.
struct Lines {
    /// Received bytes not yet consumed: at most one unfinished line once
    /// [`Lines::next_event`] has returned `None`.
    buf: BytesMut,
    /// How much of `buf` is known to hold no line end.
    scanned: usize,
    data: Data,
    max_event: usize,
    /// Whether the stream's start was looked at for a byte order mark.
    started: bool,
    /// The last line ended with a `\r` at the end of the bytes received:
    /// a `\n` arriving next belongs to that line end.
    after_cr: bool,
}

/// UTF-8's byte order mark, which the SSE format lets a stream start with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Lines {
    fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            data: Data::Empty,
            max_event,
            started: false,
            after_cr: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if !self.started && (self.buf.len() >= BOM.len() || !BOM.starts_with(&self.buf)) {
            self.started = true;
            if self.buf.starts_with(BOM) {
                self.buf.advance(BOM.len());
                self.scanned = 0;
            }
        }
        if self.after_cr && !self.buf.is_empty() {
            self.after_cr = false;
            if self.buf[0] == b'\n' {
                self.buf.advance(1);
            }
        }
    }

    /// The next complete event with data, `None` when more bytes are
    /// needed, or an error when the event grows past the size limit. A line
    /// ends with `\n`, `\r\n` or a lone `\r`, as the SSE format says.
    /// Whether data lines were received (ended or not) that no blank line
    /// has ended as an event.
    /// Bytes received and not yet passed on as an event.
    fn held_bytes(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    fn holds_unfinished_event(&self) -> bool {
        self.data.len() > 0 || self.buf.starts_with(b"data:")
    }

    fn next_event(&mut self) -> Result<Option<Event>, UpstreamError> {
        loop {
            let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                self.check_size()?;
                return Ok(None);
            };
            let end = self.scanned + pos;
            let cr = self.buf[end] == b'\r';
            let mut line = self.buf.split_to(end + 1);
            self.scanned = 0;
            line.truncate(end);
            if cr {
                match self.buf.first() {
                    Some(b'\n') => self.buf.advance(1),
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if line.is_empty() {
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            if let Some(value) = data_value(line.freeze()) {
                self.add_data(value);
                self.check_size()?;
            }
        }
    }

    fn check_size(&self) -> Result<(), UpstreamError> {
        if self.buf.len().saturating_add(self.data.len()) > self.max_event {
            return Err(UpstreamError::Protocol(format!(
                "an event of the upstream's stream is larger than the limit of {} bytes",
                self.max_event
            )));
        }
        Ok(())
    }

    fn add_data(&mut self, value: Bytes) {
        self.data = match std::mem::replace(&mut self.data, Data::Empty) {
            Data::Empty => Data::One(value),
            Data::One(first) => {
                let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&value);
                Data::Many(joined)
            }
            Data::Many(mut joined) => {
                joined.extend_from_slice(b"\n");
                joined.extend_from_slice(&value);
                Data::Many(joined)
            }
        };
    }

    /// Ends the current event at a blank line.
    fn dispatch(&mut self) -> Option<Event> {
        let payload = match std::mem::replace(&mut self.data, Data::Empty) {
            Data::Empty => return None,
            Data::One(line) => line,
            Data::Many(joined) => one_json_line(joined),
        };
        Some(if payload.as_ref() == b"[DONE]" {
            Event::Done
        } else {
            Event::Data(payload)
        })
    }
}

/// The value of a `data` field line (`data:value`, `data: value` or a bare
/// `data`), or `None` for comments and other fields.
fn data_value(line: Bytes) -> Option<Bytes> {
    if line.as_ref() == b"data" {
        return Some(Bytes::new());
    }
    let rest = line.strip_prefix(b"data:")?;
    let offset = line.len() - rest.len() + usize::from(rest.first() == Some(&b' '));
    Some(line.slice(offset..))
}

/// Several `data:` lines joined by `\n`: when they form one JSON text, the
/// line breaks (whitespace between tokens, as JSON strings cannot hold a raw
/// one) become spaces, so the payload is one line again.
fn one_json_line(mut joined: BytesMut) -> Bytes {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&joined).is_ok() {
        for b in joined.iter_mut() {
            if *b == b'\n' {
                *b = b' ';
            }
        }
    }
    joined.freeze()
}

/// A byte string looked for in every payload of a stream before the
/// payload is parsed (`"error"`, `"usage"`, ...). Comparing the needle at
/// every offset of a 200-byte chunk costs a thousand instructions or more;
/// memchr's vectorised searcher, built once per needle, about a hundred.
pub struct Needle {
    text: &'static [u8],
    finder: std::sync::OnceLock<memchr::memmem::Finder<'static>>,
}

impl Needle {
    /// A needle for a `static`.
    pub const fn new(text: &'static [u8]) -> Self {
        Self {
            text,
            finder: std::sync::OnceLock::new(),
        }
    }

    /// Whether `haystack` holds the needle.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        self.find(haystack).is_some()
    }

    /// Where the first needle in `haystack` ends.
    pub fn end_in(&self, haystack: &[u8]) -> Option<usize> {
        self.find(haystack).map(|at| at + self.text.len())
    }

    fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.finder
            .get_or_init(|| memchr::memmem::Finder::new(self.text))
            .find(haystack)
    }
}

/// The failure a stream payload reports, when it is an error object
/// (`{"error": ...}`) rather than a chunk: its status comes from the error's
/// own `status`/`code`, else from its `type`/`code` words (a `rate_limit_error`
/// is a 429), else 500.
pub fn stream_error(payload: &[u8]) -> Option<UpstreamError> {
    static ERROR_KEY: Needle = Needle::new(b"\"error\"");
    if !ERROR_KEY.is_in(payload) {
        return None;
    }
    let json: Value = serde_json::from_slice(payload).ok()?;
    error_in(&json, payload)
}

/// The fields that make a JSON body an answer, whatever else it carries.
const ANSWER_FIELDS: [&str; 4] = ["choices", "data", "output", "content"];

/// The failure a 200 JSON body reports instead of an answer: an error
/// object and none of an answer's own fields ([`ANSWER_FIELDS`]). Some
/// upstreams (OpenRouter) answer a failure so; it is retried and falls back
/// like the same error sent with its status.
pub fn answer_error(body: &[u8]) -> Option<UpstreamError> {
    let json: Value = serde_json::from_slice(body).ok()?;
    if ANSWER_FIELDS
        .iter()
        .any(|field| json.get(field).is_some_and(|v| !v.is_null()))
    {
        return None;
    }
    error_in(&json, body)
}

/// The failure in a parsed payload's `error` field, if it has one.
fn error_in(json: &Value, payload: &[u8]) -> Option<UpstreamError> {
    let error = json.get("error").filter(|e| !e.is_null())?;
    let text = |key: &str| match error.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let message = error
        .as_str()
        .map(str::to_owned)
        .or_else(|| text("message"))
        .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
    let code = text("code");
    let words = format!(
        "{} {}",
        text("type").unwrap_or_default(),
        code.as_deref().unwrap_or_default()
    );
    Some(UpstreamError::Status {
        status: error_status(error).unwrap_or_else(|| status_from_words(&words)),
        message,
        code,
        param: error.get("param").and_then(Value::as_str).map(Box::from),
        retry_after: None,
    })
}

/// An explicit HTTP error status in an error object.
fn error_status(error: &Value) -> Option<u16> {
    ["status", "status_code", "code"].iter().find_map(|key| {
        let value = error.get(*key)?;
        let n = value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
        u16::try_from(n).ok().filter(|s| (400..600).contains(s))
    })
}

/// The status an error's `type` and `code` words stand for.
fn status_from_words(words: &str) -> u16 {
    let w = words.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| w.contains(n));
    if has(&[
        "rate_limit",
        "rate limit",
        "too_many_requests",
        "resource_exhausted",
        "insufficient_quota",
    ]) {
        429
    } else if has(&["context_length", "invalid_request", "bad_request"]) {
        400
    } else if has(&["authentication", "invalid_api_key", "unauthorized"]) {
        401
    } else if has(&["permission"]) {
        403
    } else if has(&["not_found"]) {
        404
    } else if has(&["timeout"]) {
        408
    } else if has(&["overloaded"]) {
        // Anthropic's own status for it, which its clients tell apart.
        529
    } else if has(&["unavailable"]) {
        503
    } else {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect_bytes(parts: Vec<Bytes>, max_event: usize) -> Vec<Result<String, String>> {
        decode(
            stream::iter(parts.into_iter().map(Ok)),
            Duration::from_secs(5),
            max_event,
        )
        .map(|r| {
            r.map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| e.to_string())
        })
        .collect()
        .await
    }

    async fn collect(parts: Vec<&'static str>) -> Vec<Result<String, String>> {
        let parts = parts
            .into_iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect();
        collect_bytes(parts, MAX_EVENT_BYTES).await
    }

    #[tokio::test]
    async fn events_split_across_reads_are_reassembled() {
        let out = collect(vec![
            "data: {\"a\"",
            ":1}\n\nda",
            "ta:{\"b\":2}\r\n\r\n: ping\n\ndata: [DONE]\n\n",
        ])
        .await;
        assert_eq!(
            out,
            vec![Ok("{\"a\":1}".to_owned()), Ok("{\"b\":2}".to_owned())]
        );
    }

    #[tokio::test]
    async fn a_byte_order_mark_and_lone_carriage_returns_are_read_as_the_format_says() {
        // A `\r\n` split across reads is one line end, not two.
        let out = collect(vec![
            "\u{FEFF}data: {\"a\":1}\r\r",
            "data: {\"b\":2}\r",
            "\n\rdata: {\"c\":3}\r\n\r\n",
            "data: [DONE]\n\n",
        ])
        .await;
        let payloads: Vec<_> = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
            .map(|p| Ok(p.to_owned()))
            .into();
        assert_eq!(out, payloads);
        // A mark split across reads is still the stream's start.
        let out = collect(vec!["\u{FEFF}", "data: {}\n\ndata: [DONE]\n\n"]).await;
        assert_eq!(out, vec![Ok("{}".to_owned())]);
    }

    #[tokio::test]
    async fn a_stream_without_done_ends_with_an_error() {
        let out = collect(vec!["data: {}\n\n"]).await;
        assert_eq!(out.len(), 2);
        assert!(out[1].as_ref().unwrap_err().contains("[DONE]"));
        let unfinished = r#"data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#;
        let out = collect(vec![unfinished, "\n\n"]).await;
        assert!(out[1].as_ref().unwrap_err().contains("[DONE]"), "{out:?}");
    }

    #[tokio::test]
    async fn a_stream_that_never_ends_its_events_is_said_to_end_inside_one() {
        let out = collect(vec!["data: {\"a\":1}\n", "data: {\"b\":2}"]).await;
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert!(error.contains("ended inside an event"), "{out:?}");
        let out = collect(vec![": keep-alive\n\n"]).await;
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert!(error.contains("no data: line"), "{out:?}");
    }

    #[tokio::test]
    async fn a_stream_closed_right_after_its_finish_or_usage_chunk_ends_cleanly() {
        let finish = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        let out = collect(vec![finish]).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].is_ok());
        let usage = "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        let out = collect(vec![finish, usage]).await;
        assert!(out.iter().all(Result::is_ok), "{out:?}");
    }

    #[tokio::test]
    async fn multi_line_data_is_joined() {
        let out = collect(vec!["data: a\ndata: b\n\ndata: [DONE]\n\n"]).await;
        assert_eq!(out, vec![Ok("a\nb".to_owned())]);
    }

    #[tokio::test]
    async fn multi_line_json_becomes_one_line() {
        let out = collect(vec!["data: {\"a\":\ndata: \"x\\ny\"}\n\ndata: [DONE]\n\n"]).await;
        assert_eq!(out, vec![Ok("{\"a\": \"x\\ny\"}".to_owned())]);
    }

    #[tokio::test]
    async fn an_error_event_ends_the_stream_as_one_classified_error() {
        let out = collect(vec![
            "data: {}\n\n",
            "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n",
            "data: {}\n\n",
        ])
        .await;
        assert_eq!(out.len(), 2, "{out:?}");
        let err = out[1].as_ref().unwrap_err();
        assert!(err.contains("429") && err.contains("slow down"), "{err}");
    }

    #[tokio::test]
    async fn an_event_larger_than_the_limit_ends_the_stream() {
        let long = Bytes::from(format!("data: {}", "a".repeat(4096)));
        let out = collect_bytes(vec![long.clone(), long], 5000).await;
        assert_eq!(out.len(), 1);
        assert!(out[0].as_ref().unwrap_err().contains("5000"), "{out:?}");
        let lines = Bytes::from("data: aaaa\n".repeat(2000));
        let out = collect_bytes(vec![lines], 5000).await;
        assert!(out[0].as_ref().unwrap_err().contains("5000"), "{out:?}");
    }

    #[tokio::test]
    async fn keep_alives_without_data_do_not_hold_the_stream_open() {
        let pings = stream::iter(0..).then(|_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Bytes::from_static(b": ping\n\n"))
        });
        let idle = Duration::from_millis(300);
        let mut payloads = decode(pings, idle, MAX_EVENT_BYTES);
        let started = std::time::Instant::now();
        let first = payloads.next().await;
        assert!(
            matches!(first, Some(Err(UpstreamError::Timeout(_)))),
            "{first:?}"
        );
        assert!(started.elapsed() < idle * 3, "{:?}", started.elapsed());
        assert!(payloads.next().await.is_none());
    }

    #[tokio::test]
    async fn ping_events_are_passed_on_but_do_not_hold_the_stream_open() {
        let pings = stream::iter(0..).then(|_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Bytes::from_static(
                b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
            ))
        });
        let idle = Duration::from_millis(300);
        let mut payloads = decode(pings, idle, MAX_EVENT_BYTES);
        let started = std::time::Instant::now();
        let mut passed = 0;
        let ended = loop {
            match payloads.next().await {
                Some(Ok(_)) => passed += 1,
                other => break other,
            }
        };
        assert!(passed >= 1, "the pings reach the client");
        assert!(
            matches!(ended, Some(Err(UpstreamError::Timeout(_)))),
            "{ended:?}"
        );
        assert!(started.elapsed() < idle * 3, "{:?}", started.elapsed());
        assert!(!is_ping(
            br#"{"type":"content_block_delta","delta":{"text":"ping"}}"#
        ));
    }

    #[test]
    fn a_stream_event_must_be_json_in_utf8() {
        assert!(object_event(Bytes::from_static(br#"{"a":"b"}"#)).is_ok());
        assert!(object_event(Bytes::from_static(br#"{"a":"\ud83d\ude00 \u00e9"}"#)).is_ok());
        for bad in [
            &br#"{"a":"A\ud83d"}"#[..],
            br#"{"a":"\uDE00B"}"#,
            b"{notjson",
            b"plain text",
            b"{\"a\":\"\xff\xfe\"}",
            b"42",
            b"[1,2,3]",
        ] {
            let refused = object_event(Bytes::copy_from_slice(bad));
            assert!(
                matches!(refused, Err(UpstreamError::Protocol(_))),
                "{bad:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_needle_is_found_at_every_offset_and_nowhere_else() {
        static KEY: Needle = Needle::new(b"\"usage\"");
        for len in 0..80 {
            for at in 0..=len {
                let mut text = vec![b'x'; len];
                text.splice(at..at, b"\"usage\"".iter().copied());
                assert!(KEY.is_in(&text), "at {at} of {len}");
                // One byte short of the needle is not the needle.
                text.remove(at + 3);
                assert!(!KEY.is_in(&text), "cut at {at} of {len}");
            }
        }
        assert!(!KEY.is_in(b""));
        assert!(!KEY.is_in(b"\"usag\""));
    }

    #[test]
    fn a_long_event_in_one_byte_reads_is_scanned_once() {
        let mut lines = Lines::new(MAX_EVENT_BYTES);
        let started = std::time::Instant::now();
        for _ in 0..2_000_000 {
            lines.push(b"a");
            assert!(matches!(lines.next_event(), Ok(None)));
        }
        lines.push(b"\n\n");
        assert!(matches!(lines.next_event(), Ok(None)), "not a data line");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stream_errors_are_classified_by_their_own_fields() {
        let status = |p: &str| match stream_error(p.as_bytes()) {
            Some(UpstreamError::Status { status, .. }) => Some(status),
            _ => None,
        };
        assert_eq!(
            status(r#"{"error":{"message":"m","type":"rate_limit_error"}}"#),
            Some(429)
        );
        assert_eq!(
            status(r#"{ "error": {"message":"m","code":"rate_limit_exceeded"}}"#),
            Some(429)
        );
        assert_eq!(status(r#"{"error":{"message":"m","code":429}}"#), Some(429));
        assert_eq!(
            status(r#"{"type":"error","error":{"type":"overloaded_error","message":"m"}}"#),
            Some(529)
        );
        assert_eq!(status(r#"{"error":"boom"}"#), Some(500));
        assert_eq!(
            status(r#"{"error":{"message":"m","type":"invalid_request_error"}}"#),
            Some(400)
        );
        assert_eq!(
            status(r#"{"choices":[{"delta":{"content":"error"}}]}"#),
            None
        );
        assert_eq!(status(r#"{"error":null,"choices":[]}"#), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A well-formed stream of `payloads`, then `[DONE]`.
        fn encode(payloads: &[String]) -> Vec<u8> {
            let mut out = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                if i % 3 == 0 {
                    out.extend_from_slice(b": keep-alive\n\n");
                }
                for line in p.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
                }
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
            out
        }

        /// `bytes` cut at the given (sorted, deduplicated) points.
        fn cut(bytes: &[u8], mut points: Vec<usize>) -> Vec<Bytes> {
            points.retain(|p| *p < bytes.len());
            points.sort_unstable();
            points.dedup();
            let mut parts = Vec::new();
            let mut start = 0;
            for p in points.into_iter().chain([bytes.len()]) {
                parts.push(Bytes::copy_from_slice(&bytes[start..p]));
                start = p;
            }
            parts
        }

        fn run(parts: Vec<Bytes>, max_event: usize) -> Vec<Result<String, String>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(collect_bytes(parts, max_event))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn any_chunking_yields_the_same_events(
                payloads in prop::collection::vec("[a-z{}\":, \n]{1,40}", 0..12),
                points in prop::collection::vec(0usize..2000, 0..40),
            ) {
                let payloads: Vec<String> = payloads
                    .into_iter()
                    .filter(|p| p != "[DONE]" && !p.contains("\"error\""))
                    .collect();
                let expected: Vec<Result<String, String>> = run(
                    vec![Bytes::from(encode(&payloads))],
                    MAX_EVENT_BYTES,
                );
                let whole = encode(&payloads);
                prop_assert_eq!(run(cut(&whole, points), MAX_EVENT_BYTES), expected.clone());
                let bytewise: Vec<Bytes> =
                    whole.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
                prop_assert_eq!(run(bytewise, MAX_EVENT_BYTES), expected.clone());
                prop_assert_eq!(expected.len(), payloads.len());
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_stay_bounded(
                chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            ) {
                let mut lines = Lines::new(256);
                'feed: for chunk in &chunks {
                    lines.push(chunk);
                    loop {
                        match lines.next_event() {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => break 'feed,
                        }
                    }
                    // What is kept never exceeds the limit by more than the
                    // last read.
                    prop_assert!(lines.buf.len() + lines.data.len() <= 256 + chunk.len());
                }
                let parts = chunks.into_iter().map(Bytes::from).collect();
                let out = run(parts, 256);
                prop_assert!(out.iter().filter(|r| r.is_err()).count() <= 1);
            }
        }
    }
}
