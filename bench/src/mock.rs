//! A fast mock OpenAI upstream on 127.0.0.1: plain hyper, HTTP/1.1 with
//! keep-alive, answers built once at start.
//!
//! `POST /v1/chat/completions` answers a non-streamed request at once with a
//! fixed chat.completion (only its id differs from one answer to the next,
//! as a real upstream's does, since the gateway stores and indexes it), and a streamed one (`"stream": true`) with 50
//! chunks 5 ms apart (on a fixed schedule from the first chunk, so timer
//! slack does not accumulate), then `data: [DONE]`.
//!
//! A path prefix changes that per deployment: `/<spec>/v1/chat/completions`
//! with `<spec>` made of `-`-separated items `lat<ms>` (wait before
//! answering, e.g. `lat40`), `n<chunks>` and `gap<ms>` (stream shape), so
//! one server plays every deployment of a config. `POST /v1/traces` plays
//! an OTLP/HTTP collector: it reads the export and answers 200 with an empty
//! body (an empty `ExportTraceServiceResponse`). Anything else is a 404.
//!
//! Why not `tests/src/fake.rs`: it records every request (headers and the
//! parsed body, cloned) in a `Mutex<Vec<_>>` that grows without bound, takes
//! a second lock per request for its script and builds every answer with
//! `serde_json::json!`; under tens of thousands of requests per second that
//! is the bottleneck and the memory of the measurement, not conclave's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::Result;

const CHAT_PATH: &str = "/v1/chat/completions";
/// Where conclave's OTLP/HTTP exporter posts spans when pointed at the mock.
pub const TRACES_PATH: &str = "/v1/traces";
/// Streamed answers: this many content chunks...
pub const DEFAULT_CHUNKS: usize = 50;
/// ...this far apart.
pub const DEFAULT_GAP: Duration = Duration::from_millis(5);

/// How one deployment path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Wait before the response headers.
    pub latency: Duration,
    /// Content chunks of a streamed answer.
    pub chunks: usize,
    /// Time between stream chunks.
    pub gap: Duration,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunks: DEFAULT_CHUNKS,
            gap: DEFAULT_GAP,
        }
    }
}

impl Spec {
    /// The spec a request path selects, or `None` for an unknown path.
    pub fn from_path(path: &str) -> Option<Spec> {
        let prefix = path.strip_suffix(CHAT_PATH)?;
        let mut spec = Spec::default();
        if prefix.is_empty() {
            return Some(spec);
        }
        let items = prefix.strip_prefix('/')?;
        if items.contains('/') {
            return None;
        }
        for item in items.split('-') {
            let number = |name: &str| -> Option<u64> { item.strip_prefix(name)?.parse().ok() };
            if let Some(ms) = number("lat") {
                spec.latency = Duration::from_millis(ms);
            } else if let Some(ms) = number("gap") {
                spec.gap = Duration::from_millis(ms);
            } else if let Some(n) = number("n") {
                spec.chunks = usize::try_from(n).ok()?.clamp(1, 10_000);
            } else {
                return None;
            }
        }
        Some(spec)
    }

    /// A deployment that waits `latency_ms` before answering, and streams
    /// as by default.
    pub fn waiting(latency_ms: u64) -> Self {
        Self {
            latency: Duration::from_millis(latency_ms),
            ..Self::default()
        }
    }

    /// The `api_base` path that selects this spec, e.g. `/lat40-n3/v1`;
    /// [`Spec::from_path`] reads it back. Items at their default are left out.
    pub fn api_path(&self) -> String {
        let mut items = Vec::new();
        if !self.latency.is_zero() {
            items.push(format!("lat{}", self.latency.as_millis()));
        }
        if self.chunks != DEFAULT_CHUNKS {
            items.push(format!("n{}", self.chunks));
        }
        if self.gap != DEFAULT_GAP {
            items.push(format!("gap{}", self.gap.as_millis()));
        }
        if items.is_empty() {
            "/v1".to_owned()
        } else {
            format!("/{}/v1", items.join("-"))
        }
    }
}

/// The `api_base` path of a deployment that waits `latency_ms` before
/// answering, e.g. `/lat40/v1`.
pub fn api_path(latency_ms: u64) -> String {
    Spec::waiting(latency_ms).api_path()
}

type Body = BoxBody<Bytes, Infallible>;

struct Shared {
    requests: AtomicU64,
    /// OTLP export requests, and the bytes they carried.
    trace_exports: AtomicU64,
    trace_bytes: AtomicU64,
    completion: Bytes,
    /// Where the id's digits are in `completion`.
    id_digits_at: usize,
}

/// A running mock; its runtime (and with it the server) stops when dropped.
pub struct Mock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Mock {
    /// Starts on an ephemeral port of 127.0.0.1 with its own runtime of
    /// `threads` worker threads.
    pub fn start(threads: usize) -> Result<Mock> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("bench-mock")
            .enable_all()
            .build()?;
        // Bound here (not with block_on) so a mock can start inside another runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let completion = Bytes::from(completion_json());
        let shared = Arc::new(Shared {
            requests: AtomicU64::new(0),
            trace_exports: AtomicU64::new(0),
            trace_bytes: AtomicU64::new(0),
            id_digits_at: id_digits_at(&completion),
            completion,
        });
        runtime.spawn(serve(listener, shared.clone()));
        Ok(Mock {
            addr,
            shared,
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Chat requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// OTLP export requests received so far, and their total size in bytes.
    pub fn trace_exports(&self) -> (u64, u64) {
        (
            self.shared.trace_exports.load(Ordering::Relaxed),
            self.shared.trace_bytes.load(Ordering::Relaxed),
        )
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: back off briefly.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(serde::Deserialize, Default)]
struct Peek {
    #[serde(default)]
    stream: Option<bool>,
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> std::result::Result<Response<Body>, Infallible> {
    if req.uri().path() == TRACES_PATH && req.method() == Method::POST {
        return Ok(collect_traces(req, &shared).await);
    }
    let Some(spec) = Spec::from_path(req.uri().path()) else {
        return Ok(plain(StatusCode::NOT_FOUND, "no such path"));
    };
    if req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let stream = serde_json::from_slice::<Peek>(&body)
        .unwrap_or_default()
        .stream
        .unwrap_or(false);
    if !spec.latency.is_zero() {
        tokio::time::sleep(spec.latency).await;
    }
    Ok(if stream {
        stream_response(spec)
    } else {
        let answer = with_id(&shared.completion, shared.id_digits_at, n);
        let mut r = Response::new(Full::new(answer).boxed());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    })
}

/// Reads an OTLP export and counts it; the spans themselves are not decoded.
async fn collect_traces(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let Ok(body) = req.into_body().collect().await else {
        return plain(StatusCode::BAD_REQUEST, "unreadable body");
    };
    shared.trace_exports.fetch_add(1, Ordering::Relaxed);
    shared
        .trace_bytes
        .fetch_add(body.to_bytes().len() as u64, Ordering::Relaxed);
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    r
}

/// The id of [`completion_json`]: its digits are replaced in each answer.
const ID_TEMPLATE: &str = "chatcmpl-0000000000000000";

/// Where the id's 16 digits start in `answer` (past its end when absent,
/// so that no answer is changed).
fn id_digits_at(answer: &[u8]) -> usize {
    answer
        .windows(ID_TEMPLATE.len())
        .position(|w| w == ID_TEMPLATE.as_bytes())
        .map_or(answer.len(), |i| i + "chatcmpl-".len())
}

/// `answer` with the id digits at `at` made from `n`: the count multiplied
/// by an odd constant, so consecutive answers' ids are spread over the id
/// space as a real upstream's random ones are (the gateway's index of them
/// sees inserts all over, not appends).
fn with_id(answer: &Bytes, at: usize, n: u64) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = answer.to_vec();
    let id = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if let Some(digits) = out.get_mut(at..at + 16) {
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    Bytes::from(out)
}

/// A chat.completion of about 600 bytes, the size of a short real answer.
pub fn completion_json() -> Vec<u8> {
    let content = "Designing Data-Intensive Applications (cat. 4471) is in stock with three copies left. \
                   Compared with Distributed Systems by van Steen and Tanenbaum (cat. 5120), it is more \
                   practical and covers consensus through real systems rather than proofs.";
    serde_json::to_vec(&serde_json::json!({
        "id": ID_TEMPLATE,
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 183, "completion_tokens": 52, "total_tokens": 235},
        "system_fingerprint": "fp_bench"
    }))
    .unwrap_or_default()
}

/// The SSE event of content chunk `i` of `n`.
pub fn chunk_event(i: usize, n: usize) -> Bytes {
    let delta = if i == 0 {
        serde_json::json!({"role": "assistant", "content": format!("tok{i} ")})
    } else {
        serde_json::json!({"content": format!("tok{i} ")})
    };
    let finish = if i + 1 == n {
        serde_json::json!("stop")
    } else {
        serde_json::Value::Null
    };
    let chunk = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn stream_response(spec: Spec) -> Response<Body> {
    let n = spec.chunks;
    let events: Arc<Vec<Bytes>> = Arc::new(
        (0..n)
            .map(|i| chunk_event(i, n))
            .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
            .collect(),
    );
    let start = tokio::time::Instant::now();
    let gap = spec.gap;
    let frames = stream::unfold(0usize, move |i| {
        let events = events.clone();
        async move {
            let event = events.get(i)?.clone();
            // Chunk i leaves at start + i * gap; [DONE] right after the last.
            if i > 0 && i < n && !gap.is_zero() {
                let at = start + gap.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                tokio::time::sleep_until(at).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(event)), i + 1))
        }
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_select_specs() {
        assert_eq!(
            Spec::from_path("/v1/chat/completions"),
            Some(Spec::default())
        );
        let s = Spec::from_path("/lat40/v1/chat/completions").unwrap();
        assert_eq!(s.latency, Duration::from_millis(40));
        assert_eq!(s.chunks, DEFAULT_CHUNKS);
        let s = Spec::from_path("/lat5-n3-gap0/v1/chat/completions").unwrap();
        assert_eq!(
            (s.latency.as_millis(), s.chunks, s.gap),
            (5, 3, Duration::ZERO)
        );
        assert_eq!(Spec::from_path("/v1/embeddings"), None);
        assert_eq!(Spec::from_path("/x/y/v1/chat/completions"), None);
        assert_eq!(Spec::from_path("/fast/v1/chat/completions"), None);
        assert_eq!(api_path(0), "/v1");
        assert_eq!(api_path(30), "/lat30/v1");
    }

    #[test]
    fn a_spec_path_reads_back_as_the_same_spec() {
        let ms = Duration::from_millis;
        for spec in [
            Spec::default(),
            Spec::waiting(40),
            Spec {
                chunks: 20,
                gap: Duration::ZERO,
                ..Spec::default()
            },
            Spec {
                latency: ms(5),
                chunks: 3,
                gap: ms(10),
            },
        ] {
            let path = format!("{}/chat/completions", spec.api_path());
            assert_eq!(Spec::from_path(&path), Some(spec), "{path}");
        }
    }

    #[tokio::test]
    async fn answers_json_and_timed_streams() {
        let mock = Mock::start(1).unwrap();
        let mut conn = crate::client::Conn::connect(mock.addr()).await.unwrap();
        let body = Bytes::from(crate::body::short_body("m", false));
        let reply = conn.post("/v1/chat/completions", &body).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        let again = conn.post("/v1/chat/completions", &body).await.unwrap();
        let w: serde_json::Value = serde_json::from_slice(&again.body).unwrap();
        let id = v["id"].as_str().unwrap();
        assert!(
            id.starts_with("chatcmpl-") && id.len() == ID_TEMPLATE.len(),
            "{id}"
        );
        assert_ne!(v["id"], w["id"], "each answer has its own id");
        let reply = conn
            .post("/lat20/v1/chat/completions", &body)
            .await
            .unwrap();
        assert!(reply.elapsed >= Duration::from_millis(20));
        let reply = conn.post("/v1/embeddings", &body).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND);

        let body = Bytes::from(crate::body::short_body("m", true));
        let t = conn
            .post_stream("/n5-gap10/v1/chat/completions", &body)
            .await
            .unwrap();
        assert_eq!(t.status, 200);
        assert_eq!(t.events.len(), 5);
        assert!(t.done.is_some());
        // Chunk i leaves at i * 10 ms: the last one at least 40 ms in.
        assert!(t.events[4] - t.events[0] >= Duration::from_millis(39));
        assert_eq!(mock.requests(), 4);
    }

    #[test]
    fn events_are_sse_chunks() {
        let e = chunk_event(0, 2);
        let text = std::str::from_utf8(&e).unwrap();
        assert!(text.starts_with("data: {") && text.ends_with("}\n\n"));
        let v: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        let last = chunk_event(1, 2);
        let v: serde_json::Value = serde_json::from_str(
            std::str::from_utf8(&last)
                .unwrap()
                .trim_start_matches("data: ")
                .trim(),
        )
        .unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
}
