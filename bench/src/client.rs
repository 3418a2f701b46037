//! A small timing client: one HTTP/1.1 keep-alive connection (hyper), used
//! for the sequential measurements. For streams it timestamps every SSE
//! event as its body frame arrives, so coalesced or delayed chunks show up
//! as missing gaps or late events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{Result, fail};

/// Longest any single request of the sequential measurements may take.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// One connection to `addr`.
pub struct Conn {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A whole (non-streamed) answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
    pub body: Bytes,
}

/// A streamed answer, timed.
#[derive(Debug, Clone, Default)]
pub struct StreamTiming {
    pub status: u16,
    /// Arrival of each `data:` event other than `[DONE]`, from sending.
    pub events: Vec<Duration>,
    /// Arrival of `data: [DONE]`.
    pub done: Option<Duration>,
    /// Body frames that carried at least one complete event.
    pub frames_with_events: usize,
    /// Most events completed by one frame (1 when nothing was coalesced).
    pub max_events_per_frame: usize,
}

impl StreamTiming {
    /// Time to the first data event.
    pub fn ttfb(&self) -> Option<Duration> {
        self.events.first().copied()
    }

    /// Gaps between consecutive data events, in milliseconds.
    pub fn gaps_ms(&self) -> Vec<f64> {
        self.events
            .windows(2)
            .map(|w| (w[1].saturating_sub(w[0])).as_secs_f64() * 1000.0)
            .collect()
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::time::timeout(REQUEST_LIMIT, TcpStream::connect(addr))
            .await
            .map_err(|_| fail(format!("connecting to {addr} timed out")))??;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { addr, sender, task })
    }

    fn request(&self, path: &str, body: &Bytes) -> Result<Request<Full<Bytes>>> {
        Ok(Request::post(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))?)
    }

    /// POSTs `body` to `path` and reads the whole answer.
    pub async fn post(&mut self, path: &str, body: &Bytes) -> Result<Reply> {
        let request = self.request(path, body)?;
        let run = async {
            self.sender.ready().await?;
            let started = Instant::now();
            let response = self.sender.send_request(request).await?;
            let (parts, incoming) = response.into_parts();
            let body = incoming.collect().await?.to_bytes();
            Ok::<_, crate::BoxError>(Reply {
                status: parts.status,
                headers: parts.headers,
                elapsed: started.elapsed(),
                body,
            })
        };
        tokio::time::timeout(REQUEST_LIMIT, run)
            .await
            .map_err(|_| fail(format!("POST {path} took longer than {REQUEST_LIMIT:?}")))?
    }

    /// POSTs a streaming request and times every SSE event of the answer.
    pub async fn post_stream(&mut self, path: &str, body: &Bytes) -> Result<StreamTiming> {
        let request = self.request(path, body)?;
        let run = async {
            self.sender.ready().await?;
            let started = Instant::now();
            let response = self.sender.send_request(request).await?;
            let mut timing = StreamTiming {
                status: response.status().as_u16(),
                ..StreamTiming::default()
            };
            let mut incoming = response.into_body();
            let mut splitter = EventSplitter::default();
            while let Some(frame) = incoming.frame().await {
                let frame = frame?;
                let at = started.elapsed();
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                let mut completed = 0;
                for event in splitter.push(data) {
                    completed += 1;
                    match event {
                        Event::Done => timing.done = Some(at),
                        Event::Data => timing.events.push(at),
                        Event::Other => {}
                    }
                }
                if completed > 0 {
                    timing.frames_with_events += 1;
                    timing.max_events_per_frame = timing.max_events_per_frame.max(completed);
                }
            }
            Ok::<_, crate::BoxError>(timing)
        };
        tokio::time::timeout(REQUEST_LIMIT, run)
            .await
            .map_err(|_| {
                fail(format!(
                    "stream from {path} took longer than {REQUEST_LIMIT:?}"
                ))
            })?
    }
}

/// What an SSE event carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A `data:` payload other than `[DONE]`.
    Data,
    /// `data: [DONE]`.
    Done,
    /// A comment or an event without data.
    Other,
}

/// Splits a byte stream into SSE events (separated by a blank line).
#[derive(Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
}

impl EventSplitter {
    /// Adds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim))
                .collect();
            events.push(match data.as_slice() {
                [] => Event::Other,
                ["[DONE]"] => Event::Done,
                _ => Event::Data,
            });
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_finds_events_across_pieces() {
        let mut s = EventSplitter::default();
        assert_eq!(s.push(b"data: {\"a\":1}\n"), vec![]);
        assert_eq!(
            s.push(b"\ndata: {}\n\n: ping\n\n"),
            vec![Event::Data, Event::Data, Event::Other]
        );
        assert_eq!(s.push(b"data: [DONE]\n\n"), vec![Event::Done]);
    }

    #[test]
    fn gaps_and_ttfb() {
        let t = StreamTiming {
            events: vec![
                Duration::from_millis(2),
                Duration::from_millis(7),
                Duration::from_millis(13),
            ],
            ..StreamTiming::default()
        };
        assert_eq!(t.ttfb(), Some(Duration::from_millis(2)));
        let g = t.gaps_ms();
        assert!((g[0] - 5.0).abs() < 1e-9 && (g[1] - 6.0).abs() < 1e-9);
    }
}
