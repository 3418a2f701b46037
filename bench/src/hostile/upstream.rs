//! A hostile upstream on 127.0.0.1: one server plays every broken or lying
//! provider of the hostile run, chosen by the first path segment of the
//! request (`api_base` is `http://<addr>/<behaviour>/v1`):
//!
//! - `stall`: a 500 whose body never arrives;
//! - `ra/<value>` and `rams/<value>`: a 429 with `retry-after: <value>`
//!   (or `retry-after-ms`), e.g. `1e300`;
//! - `giant`: a JSON body of [`GIANT_BYTES`], sent as fast as it is read;
//! - `endless`: one SSE event that never ends, up to [`GIANT_BYTES`];
//! - `multiline`: SSE events of several `data:` lines each;
//! - `midstream`: one chunk, then a rate-limit error event;
//! - `hidden`: a normal answer (a deployment only a topology names);
//! - `wild`: a normal answer to any path under it, recording the path and
//!   query (the last [`RECORDED`]) so a caller can see where a wildcard
//!   model name sent the request.
//!
//! Every answer is bounded in size; the stalled ones last until the gateway
//! closes the connection, which [`Hostile::closed_stalls`] counts.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Result;

/// Size of the giant JSON body and of the endless event: past the
/// gateway's default `max_response_size_mb` (64), bounded all the same.
pub const GIANT_BYTES: usize = 96 << 20;
/// Wildcard paths kept for inspection.
pub const RECORDED: usize = 64;
/// The piece the giant answers are made of.
const PIECE: usize = 256 << 10;

type Body = BoxBody<Bytes, Infallible>;

/// One request a wildcard deployment made: its raw path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<BTreeMap<String, u64>>,
    recorded: Mutex<Vec<Recorded>>,
    closed_stalls: AtomicU64,
}

/// The running hostile upstream; it stops with the runtime it was started on.
#[derive(Clone)]
pub struct Hostile {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Hostile {
    /// Binds an ephemeral port of 127.0.0.1 and serves on the current runtime.
    pub async fn start() -> Result<Hostile> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        tokio::spawn(serve(listener, shared.clone()));
        Ok(Hostile { addr, shared })
    }

    /// `http://<addr>/<behaviour>` (append `/v1` for an OpenAI `api_base`).
    pub fn base(&self, behaviour: &str) -> String {
        format!("http://{}/{behaviour}", self.addr)
    }

    /// Requests a behaviour (the first path segment) has received.
    pub fn calls(&self, behaviour: &str) -> u64 {
        lock(&self.shared.calls)
            .get(behaviour)
            .copied()
            .unwrap_or(0)
    }

    /// Stalled answers whose connection the gateway has closed.
    pub fn closed_stalls(&self) -> u64 {
        self.shared.closed_stalls.load(Ordering::Relaxed)
    }

    /// The wildcard requests, oldest first, and forgets them.
    pub fn take_recorded(&self) -> Vec<Recorded> {
        std::mem::take(&mut *lock(&self.shared.recorded))
    }
}

/// Locks a mutex, whether or not a holder panicked (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> std::result::Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let mut segments = path.trim_start_matches('/').split('/');
    let behaviour = segments.next().unwrap_or_default().to_owned();
    let value = segments.next().unwrap_or_default().to_owned();
    // The request body is read (and dropped) so the gateway is never
    // blocked on sending it.
    let _ = req.into_body().collect().await;
    let known = [
        "stall",
        "ra",
        "rams",
        "giant",
        "endless",
        "multiline",
        "midstream",
        "hidden",
        "wild",
    ];
    if !known.contains(&behaviour.as_str()) {
        return Ok(simple(StatusCode::NOT_FOUND, "application/json", "{}"));
    }
    *lock(&shared.calls).entry(behaviour.clone()).or_default() += 1;
    Ok(match behaviour.as_str() {
        "stall" => stalled(shared),
        "ra" | "rams" => rate_limited(&behaviour, &value),
        "giant" => giant_json(),
        "endless" => endless_event(),
        "multiline" => sse(&[MULTI_LINE_CHUNK, MULTI_LINE_TEXT, DONE]),
        "midstream" => sse(&[FIRST_CHUNK, RATE_LIMIT_EVENT]),
        "wild" => {
            let mut recorded = lock(&shared.recorded);
            if recorded.len() >= RECORDED {
                recorded.remove(0);
            }
            recorded.push(Recorded { path, query });
            drop(recorded);
            completion()
        }
        _ => completion(),
    })
}

fn simple(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// A short, well-formed chat.completion.
fn completion() -> Response<Body> {
    simple(
        StatusCode::OK,
        "application/json",
        r#"{"id":"chatcmpl-h","object":"chat.completion","created":1700000000,"model":"hostile-up","choices":[{"index":0,"message":{"role":"assistant","content":"from the hostile upstream"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#,
    )
}

/// Counts the stalled answer as closed when the gateway drops it.
struct StallGuard(Arc<Shared>);

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.0.closed_stalls.fetch_add(1, Ordering::Relaxed);
    }
}

/// A 500 with its headers sent and a body that never comes.
fn stalled(shared: Arc<Shared>) -> Response<Body> {
    let guard = StallGuard(shared);
    let frames = stream::unfold(guard, |guard| async move {
        std::future::pending::<()>().await;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::new())), guard))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A 429 whose retry hint is `value`, whatever it says.
fn rate_limited(kind: &str, value: &str) -> Response<Body> {
    let mut r = simple(
        StatusCode::TOO_MANY_REQUESTS,
        "application/json",
        r#"{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#,
    );
    let name = if kind == "rams" {
        "retry-after-ms"
    } else {
        "retry-after"
    };
    if let Ok(v) = header::HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

/// `prefix`, then pieces of `fill` up to [`GIANT_BYTES`] in all.
fn flood(content_type: &'static str, prefix: &'static [u8], fill: u8) -> Response<Body> {
    let piece = Bytes::from(vec![fill; PIECE]);
    let pieces = GIANT_BYTES / PIECE;
    let frames = stream::iter(
        std::iter::once(Bytes::from_static(prefix))
            .chain(std::iter::repeat_n(piece, pieces))
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// A chat.completion whose content string goes on for [`GIANT_BYTES`].
fn giant_json() -> Response<Body> {
    flood(
        "application/json",
        br#"{"id":"chatcmpl-g","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""#,
        b'a',
    )
}

/// One SSE `data:` line that never ends.
fn endless_event() -> Response<Body> {
    flood(
        "text/event-stream",
        br#"data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":""#,
        b'a',
    )
}

/// A chat chunk with `content`, spread over several `data:` lines.
pub const MULTI_LINE_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\n\
     data: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"multi\"},\n\
     data: \"finish_reason\":null}]}\n\n";
/// A text payload on two `data:` lines.
pub const MULTI_LINE_TEXT: &str = "data: plain text,\ndata: on two lines\n\n";
const DONE: &str = "data: [DONE]\n\n";
/// An upstream's rate-limit error, sent inside its stream.
pub const RATE_LIMIT_EVENT: &str = "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\"}}\n\n";
/// A first, well-formed chunk.
pub const FIRST_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first \"},\"finish_reason\":null}]}\n\n";

/// An SSE answer of the given raw events.
fn sse(events: &[&'static str]) -> Response<Body> {
    let frames = stream::iter(
        events
            .iter()
            .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from_static(e.as_bytes()))))
            .collect::<Vec<_>>(),
    );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r
}
