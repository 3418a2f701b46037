//! The SSE body sent to clients: each payload as its own `data:` event the
//! moment it arrives, `data: [DONE]` at a clean end, and an error event (with
//! no `[DONE]`) when the upstream fails after the stream has started.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};

use super::error::ApiError;

/// Frames payloads as SSE events; the first error ends the stream with an
/// error event.
pub fn event_stream<S, E>(payloads: S) -> impl Stream<Item = Result<Bytes, Infallible>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<ApiError> + std::fmt::Display + Send,
{
    stream::unfold(Some(payloads), |state| async move {
        let mut payloads = state?;
        match payloads.next().await {
            Some(Ok(payload)) => Some((Ok(frame(&payload)), Some(payloads))),
            Some(Err(error)) => {
                tracing::warn!(%error, "stream failed after it started; sending an error event");
                Some((Ok(error.into().sse_event()), None))
            }
            None => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None)),
        }
    })
}

/// One payload as one SSE event. A payload with line breaks becomes one
/// `data:` line per line (a client joins them back with `\n`), so it never
/// turns into a broken event or into fields of its own.
fn frame(payload: &[u8]) -> Bytes {
    let mut event = BytesMut::with_capacity(payload.len() + 8);
    let mut start = 0;
    let mut i = 0;
    while i < payload.len() {
        if matches!(payload[i], b'\n' | b'\r') {
            put_line(&mut event, &payload[start..i]);
            if payload[i] == b'\r' && payload.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    put_line(&mut event, &payload[start..]);
    event.put_slice(b"\n");
    event.freeze()
}

fn put_line(event: &mut BytesMut, line: &[u8]) {
    event.put_slice(b"data: ");
    event.put_slice(line);
    event.put_slice(b"\n");
}

/// A streaming response: SSE headers that keep proxies from buffering, and
/// the framed events as the body.
pub fn sse_response<S, E>(payloads: S) -> Response
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<ApiError> + std::fmt::Display + Send + 'static,
{
    let mut r = Response::new(Body::from_stream(event_stream(payloads)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_line_payload_is_one_data_line() {
        assert_eq!(frame(b"{\"a\":1}").as_ref(), b"data: {\"a\":1}\n\n");
    }

    #[test]
    fn every_line_of_a_multi_line_payload_is_a_data_line() {
        assert_eq!(
            frame(b"a\nb\r\nc\rd").as_ref(),
            b"data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(frame(b"a\n").as_ref(), b"data: a\ndata: \n\n");
    }
}
