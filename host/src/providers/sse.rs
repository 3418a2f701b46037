//! Server-sent events from an upstream: split into `data:` payloads, forwarded
//! one by one as they arrive, never coalesced.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};

use super::{PayloadStream, UpstreamError};

/// Decodes a byte stream of SSE into payloads. Ends cleanly at `data: [DONE]`;
/// a stream that ends without it, stalls for longer than `idle`, or fails is
/// ended with one error item.
pub fn decode<S>(bytes: S, idle: Duration) -> PayloadStream
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let state = Decoder {
        inner: Box::pin(bytes),
        buf: BytesMut::new(),
        finished: false,
    };
    Box::pin(stream::unfold(state, move |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            match st.next_event() {
                Some(Event::Done) => return None,
                Some(Event::Data(data)) => return Some((Ok(data), st)),
                None => {}
            }
            match tokio::time::timeout(idle, st.inner.next()).await {
                Err(_) => {
                    st.finished = true;
                    return Some((Err(UpstreamError::Timeout(idle)), st));
                }
                Ok(Some(Ok(chunk))) => st.buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => {
                    st.finished = true;
                    return Some((Err(UpstreamError::StreamBroken(e)), st));
                }
                Ok(None) => {
                    st.finished = true;
                    return Some((
                        Err(UpstreamError::StreamBroken(
                            "the stream ended before data: [DONE]".into(),
                        )),
                        st,
                    ));
                }
            }
        }
    }))
}

struct Decoder {
    inner: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>,
    buf: BytesMut,
    finished: bool,
}

enum Event {
    Data(Bytes),
    Done,
}

impl Decoder {
    /// Takes the next complete event with data out of the buffer.
    fn next_event(&mut self) -> Option<Event> {
        loop {
            let (end, sep) = find_event_end(&self.buf)?;
            let raw = self.buf.split_to(end).freeze();
            self.buf.advance(sep);
            if let Some(data) = event_data(raw) {
                return Some(if data.as_ref() == b"[DONE]" {
                    Event::Done
                } else {
                    Event::Data(data)
                });
            }
        }
    }
}

/// Position of the blank line ending the first event, and its length.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

/// The `data:` payload of one event (lines joined by `\n`), or `None` for
/// comments and events without data.
fn event_data(raw: Bytes) -> Option<Bytes> {
    let mut found: Vec<Bytes> = Vec::new();
    let mut start = 0;
    while start <= raw.len() {
        let end = raw[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(raw.len(), |p| start + p);
        let mut line = raw.slice(start..end);
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let offset = line.len() - rest.len() + usize::from(rest.first() == Some(&b' '));
            found.push(line.slice(offset..));
        }
        start = end + 1;
    }
    match found.len() {
        0 => None,
        1 => found.pop(),
        _ => Some(Bytes::from(found.join(&b'\n'))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(parts: Vec<&'static str>) -> Vec<Result<String, String>> {
        let s = stream::iter(
            parts
                .into_iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes()))),
        );
        decode(s, Duration::from_secs(5))
            .map(|r| {
                r.map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string())
            })
            .collect()
            .await
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
    async fn a_stream_without_done_ends_with_an_error() {
        let out = collect(vec!["data: {}\n\n"]).await;
        assert_eq!(out.len(), 2);
        assert!(out[1].as_ref().unwrap_err().contains("[DONE]"));
    }

    #[tokio::test]
    async fn multi_line_data_is_joined() {
        let out = collect(vec!["data: a\ndata: b\n\ndata: [DONE]\n\n"]).await;
        assert_eq!(out, vec![Ok("a\nb".to_owned())]);
    }
}
