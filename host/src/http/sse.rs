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
            Some(Ok(payload)) => {
                let mut event = BytesMut::with_capacity(payload.len() + 8);
                event.put_slice(b"data: ");
                event.put_slice(&payload);
                event.put_slice(b"\n\n");
                Some((Ok(event.freeze()), Some(payloads)))
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "stream failed after it started; sending an error event");
                Some((Ok(error.into().sse_event()), None))
            }
            None => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None)),
        }
    })
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
