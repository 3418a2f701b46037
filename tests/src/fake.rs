//! A fake OpenAI-compatible upstream. Each deployment is a path prefix
//! (`/<name>/v1/...`), so one server plays many deployments; each records
//! what it received and answers as scripted: delays, error statuses, streams
//! of N chunks, connections dropped mid-stream, or no answer at all.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

/// How a deployment answers one request.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// 200 answers normally; anything else answers with an error body.
    pub status: u16,
    pub error_message: String,
    /// The error body's `param`, when set.
    pub error_param: Option<String>,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(String, String)>,
    /// Wait before sending the response headers.
    pub delay: Duration,
    /// The answer text (split into `chunks` pieces when streaming).
    pub content: String,
    pub chunks: usize,
    /// Wait between stream chunks.
    pub chunk_interval: Duration,
    /// Close the connection after this many chunks, without `[DONE]`.
    pub drop_after_chunks: Option<usize>,
    /// After this many chunks, send `data: {"error": ...}` with
    /// `error_message` and end the stream cleanly, without `[DONE]`.
    pub error_after_chunks: Option<usize>,
    /// Never answer (until the client gives up).
    pub hang: bool,
    /// Answer with a call of this tool (`(name, arguments JSON)`) instead
    /// of `content`, with `finish_reason: tool_calls`.
    pub tool_call: Option<(String, String)>,
    /// A hostile or broken answer, sent instead of the normal one.
    pub raw: Option<RawAnswer>,
}

/// Answers a well-behaved upstream never gives, for testing that the
/// gateway stays bounded in time and memory whatever arrives.
#[derive(Debug, Clone)]
pub enum RawAnswer {
    /// The status and headers, then a body that never arrives.
    StalledBody,
    /// A `text/event-stream` body of exactly these pieces (each its own
    /// write, `chunk_interval` apart), with no `[DONE]` added.
    Sse(Vec<String>),
    /// `data: ` and then `a` forever: one event that never ends.
    EndlessEvent,
    /// `data: ` and this many `a`s, then nothing more, never ending: an
    /// event held unfinished.
    StalledEvent(usize),
    /// A 200 body of this many bytes, sent in pieces without a length.
    LargeBody(usize),
    /// This body with this content type, byte for byte.
    Body(&'static str, Vec<u8>),
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            status: 200,
            error_message: "fake upstream error".into(),
            error_param: None,
            headers: Vec::new(),
            delay: Duration::ZERO,
            content: "fake answer".into(),
            chunks: 3,
            chunk_interval: Duration::ZERO,
            drop_after_chunks: None,
            error_after_chunks: None,
            hang: false,
            tool_call: None,
            raw: None,
        }
    }
}

impl Behavior {
    /// A normal answer with this content.
    pub fn ok(content: &str) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    /// An error status with this message.
    pub fn status(status: u16, message: &str) -> Self {
        Self {
            status,
            error_message: message.into(),
            ..Self::default()
        }
    }

    /// Names the request field at fault in the error body's `param`.
    pub fn param(mut self, param: &str) -> Self {
        self.error_param = Some(param.into());
        self
    }

    /// Adds a delay before the response headers.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Streams in `chunks` pieces with `interval` between them.
    pub fn chunked(mut self, chunks: usize, interval: Duration) -> Self {
        self.chunks = chunks;
        self.chunk_interval = interval;
        self
    }

    /// Closes the connection after `n` stream chunks, without `[DONE]`.
    pub fn drop_after(mut self, n: usize) -> Self {
        self.drop_after_chunks = Some(n);
        self
    }

    /// Sends an error event with `message` after `n` stream chunks.
    pub fn error_after(mut self, n: usize, message: &str) -> Self {
        self.error_after_chunks = Some(n);
        self.error_message = message.into();
        self
    }

    /// Answers with one call of tool `name` with `arguments` (JSON text);
    /// the call's id is `call_fake_1`.
    pub fn tool_call(name: &str, arguments: &str) -> Self {
        Self {
            content: String::new(),
            tool_call: Some((name.into(), arguments.into())),
            ..Self::default()
        }
    }

    /// Sends `status` and its headers, then never sends the body.
    pub fn stalled_body(status: u16) -> Self {
        Self {
            status,
            raw: Some(RawAnswer::StalledBody),
            ..Self::default()
        }
    }

    /// Streams exactly these SSE pieces (no `[DONE]` added).
    pub fn raw_sse(pieces: &[&str]) -> Self {
        Self {
            raw: Some(RawAnswer::Sse(
                pieces.iter().map(|p| (*p).to_owned()).collect(),
            )),
            ..Self::default()
        }
    }

    /// Streams one event that never ends.
    pub fn endless_event() -> Self {
        Self {
            raw: Some(RawAnswer::EndlessEvent),
            ..Self::default()
        }
    }

    /// Streams `data: ` and `bytes` bytes of one event, then stalls.
    pub fn stalled_event(bytes: usize) -> Self {
        Self {
            raw: Some(RawAnswer::StalledEvent(bytes)),
            ..Self::default()
        }
    }

    /// Answers with `body` as `content_type`, whatever it holds.
    pub fn raw_body(content_type: &'static str, body: impl AsRef<[u8]>) -> Self {
        Self {
            raw: Some(RawAnswer::Body(content_type, body.as_ref().to_vec())),
            ..Self::default()
        }
    }

    /// Answers 200 with a body of `bytes` bytes and no declared length.
    pub fn large_body(bytes: usize) -> Self {
        Self {
            raw: Some(RawAnswer::LargeBody(bytes)),
            ..Self::default()
        }
    }

    /// Never answers.
    pub fn hanging() -> Self {
        Self {
            hang: true,
            ..Self::default()
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub deployment: String,
    /// Path below the deployment prefix, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as it arrived.
    pub raw_body: Bytes,
    pub at: Instant,
}

#[derive(Default)]
struct Script {
    queued: VecDeque<Behavior>,
    default: Option<Behavior>,
}

#[derive(Default)]
struct Shared {
    scripts: Mutex<HashMap<String, Script>>,
    recorded: Mutex<Vec<Recorded>>,
    /// Requests whose response was dropped before it completed.
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    /// Woken whenever a request is recorded, completed or cancelled.
    changed: tokio::sync::Notify,
}

/// An axum app served on an ephemeral port of 127.0.0.1 until dropped:
/// what every fake server of the tests stands on.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Binds a fresh loopback port and serves `app` on it.
    pub async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }

    /// Binds a fresh loopback port and serves `app` on it over TLS: each
    /// connection's handshake by `acceptor`, then HTTP/1 or HTTP/2.
    pub async fn start_tls(app: Router, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder;
        use hyper_util::service::TowerToHyperService;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A refused handshake is the client's answer: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running fake upstream; stops when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// `http` or `https`.
    scheme: &'static str,
    _server: Served,
}

impl FakeUpstream {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let server = Served::start(Self::app(&shared)).await;
        Self {
            addr: server.addr,
            shared,
            scheme: "http",
            _server: server,
        }
    }

    /// Starts on an ephemeral port of 127.0.0.1, served over TLS by `acceptor`.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let shared = Arc::new(Shared::default());
        let server = Served::start_tls(Self::app(&shared), acceptor).await;
        Self {
            addr: server.addr,
            shared,
            scheme: "https",
            _server: server,
        }
    }

    fn app(shared: &Arc<Shared>) -> Router {
        Router::new()
            .route("/{deployment}/v1/{*rest}", post(handle))
            .with_state(shared.clone())
    }

    /// The api_base for deployment `name`.
    pub fn api_base(&self, name: &str) -> String {
        format!("{}://{}/{name}/v1", self.scheme, self.addr)
    }

    /// How `name` answers when nothing is queued.
    pub fn set(&self, name: &str, behavior: Behavior) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .default = Some(behavior);
    }

    /// Queues a behaviour for `name`'s next request (before the default).
    pub fn push(&self, name: &str, behavior: Behavior) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .entry(name.into())
            .or_default()
            .queued
            .push_back(behavior);
    }

    /// Every request received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Requests `name` received.
    pub fn calls(&self, name: &str) -> usize {
        self.shared
            .recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.deployment == name)
            .count()
    }

    /// The last request body `name` received.
    pub fn last_body(&self, name: &str) -> Option<Value> {
        self.shared
            .recorded
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.deployment == name)
            .map(|r| r.body.clone())
    }

    /// Responses dropped by the client before they completed.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Responses sent to the end.
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Waits until `done(self)` holds, re-checking whenever a request is
    /// recorded, completed or cancelled; false if `limit` passes first.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }

    /// Forgets recorded requests.
    pub fn clear(&self) {
        self.shared.recorded.lock().unwrap().clear();
    }
}

/// Counts a response as cancelled unless it is marked complete before drop.
struct Completion {
    shared: Arc<Shared>,
    done: bool,
}

impl Completion {
    fn finish(mut self) {
        self.done = true;
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
            self.shared.changed.notify_waiters();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((deployment, rest)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_body = body;
    let body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
    shared.recorded.lock().unwrap().push(Recorded {
        deployment: deployment.clone(),
        path: format!("/v1/{rest}"),
        headers,
        body: body.clone(),
        raw_body,
        at: Instant::now(),
    });
    shared.changed.notify_waiters();
    let behavior = {
        let mut scripts = shared.scripts.lock().unwrap();
        let script = scripts.entry(deployment.clone()).or_default();
        script
            .queued
            .pop_front()
            .or_else(|| script.default.clone())
            .unwrap_or_default()
    };
    let completion = Completion {
        shared: shared.clone(),
        done: false,
    };
    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }
    let mut response = if let Some(raw) = &behavior.raw {
        raw_response(raw, &behavior, completion)
    } else if behavior.status != 200 {
        completion.finish();
        let status =
            StatusCode::from_u16(behavior.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [("content-type", "application/json")],
            json!({"error": {"message": behavior.error_message, "type": "fake_error", "code": null, "param": behavior.error_param}}).to_string(),
        )
            .into_response()
    } else if rest.starts_with("embeddings") {
        completion.finish();
        axum::Json(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": body["model"],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        }))
        .into_response()
    } else if body["stream"] == true {
        stream_response(&rest, &body, behavior.clone(), completion)
    } else {
        completion.finish();
        axum::Json(complete_response(&rest, &body, &behavior)).into_response()
    };
    for (name, value) in &behavior.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

/// Answers with a [`RawAnswer`]; the completion is counted only when a
/// finite body has been sent to the end.
fn raw_response(raw: &RawAnswer, behavior: &Behavior, completion: Completion) -> Response {
    type Piece = Result<Bytes, std::io::Error>;
    let status = StatusCode::from_u16(behavior.status).unwrap_or(StatusCode::OK);
    let (content_type, body) = match raw.clone() {
        RawAnswer::StalledBody => {
            let body = stream::once(async move {
                let _keep = completion;
                std::future::pending::<Piece>().await
            });
            ("application/json", Body::from_stream(body))
        }
        RawAnswer::Sse(pieces) => {
            let interval = behavior.chunk_interval;
            let st = (pieces.into_iter(), Some(completion), true);
            let body = stream::unfold(st, move |(mut pieces, mut completion, first)| async move {
                if !first && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                match pieces.next() {
                    Some(p) => Some((
                        Ok::<_, std::io::Error>(Bytes::from(p)),
                        (pieces, completion, false),
                    )),
                    None => {
                        completion.take()?.finish();
                        None
                    }
                }
            });
            ("text/event-stream", Body::from_stream(body))
        }
        RawAnswer::EndlessEvent => {
            let filler = Bytes::from(vec![b'a'; 64 * 1024]);
            let head =
                stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"data: ")) });
            let tail = stream::repeat_with(move || {
                let _keep = &completion;
                Ok(filler.clone())
            });
            ("text/event-stream", Body::from_stream(head.chain(tail)))
        }
        RawAnswer::StalledEvent(bytes) => {
            let mut start = b"data: ".to_vec();
            start.resize(6 + bytes, b'a');
            let head = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(start)) });
            let tail = stream::once(async move {
                let _keep = completion;
                std::future::pending::<Piece>().await
            });
            ("text/event-stream", Body::from_stream(head.chain(tail)))
        }
        RawAnswer::LargeBody(total) => {
            let st = (0usize, Some(completion));
            let body = stream::unfold(st, move |(sent, mut completion)| async move {
                if sent >= total {
                    completion.take()?.finish();
                    return None;
                }
                let n = (total - sent).min(64 * 1024);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '; n])),
                    (sent + n, completion),
                ))
            });
            ("application/json", Body::from_stream(body))
        }
        RawAnswer::Body(content_type, text) => {
            completion.finish();
            (content_type, Body::from(text))
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

/// The id of the tool call a [`Behavior::tool_call`] answer makes.
pub const FAKE_CALL_ID: &str = "call_fake_1";

fn complete_response(rest: &str, body: &Value, behavior: &Behavior) -> Value {
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12});
    if rest.starts_with("completions") {
        json!({
            "id": "cmpl-fake", "object": "text_completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "text": behavior.content, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "fp_fake",
        })
    } else if let Some((name, arguments)) = &behavior.tool_call {
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": FAKE_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": usage, "system_fingerprint": "fp_fake",
        })
    } else {
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": behavior.content}, "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "fp_fake", "x_fake_extra": {"kept": true},
        })
    }
}

fn stream_response(
    rest: &str,
    body: &Value,
    behavior: Behavior,
    completion: Completion,
) -> Response {
    let chat = !rest.starts_with("completions");
    // A text completion's chunks are named like its whole answer.
    let (id, object) = if chat {
        ("chatcmpl-fake", "chat.completion.chunk")
    } else {
        ("cmpl-fake", "text_completion")
    };
    let model = body["model"].clone();
    let include_usage = body["stream_options"]["include_usage"] == true;
    let words: Vec<&str> = behavior.content.split_inclusive(' ').collect();
    let n = behavior.chunks.max(1);
    let per = words.len().div_ceil(n).max(1);
    let mut pieces: Vec<String> = words.chunks(per).map(|c| c.concat()).collect();
    while pieces.len() < n {
        pieces.push(String::new());
    }
    let mut events: Vec<String> = pieces
        .iter()
        .map(|p| {
            let choice = if chat {
                json!({"index": 0, "delta": {"content": p}, "finish_reason": null})
            } else {
                json!({"index": 0, "text": p, "logprobs": null, "finish_reason": null})
            };
            json!({"id": id, "object": object, "created": 1, "model": model, "choices": [choice]})
                .to_string()
        })
        .collect();
    let mut finish = "stop";
    if let (true, Some((name, arguments))) = (chat, &behavior.tool_call) {
        // The call's name first, then its arguments in two pieces.
        let half = arguments.len() / 2;
        let half = (0..=half)
            .rev()
            .find(|i| arguments.is_char_boundary(*i))
            .unwrap_or(0);
        let parts = [
            json!({"index": 0, "id": FAKE_CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": &arguments[..half]}}),
            json!({"index": 0, "function": {"arguments": &arguments[half..]}}),
        ];
        events = parts
            .into_iter()
            .map(|call| {
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
                .to_string()
            })
            .collect();
        finish = "tool_calls";
    }
    let last = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish})
    };
    events.push(
        json!({"id": id, "object": object, "created": 1, "model": model, "choices": [last]})
            .to_string(),
    );
    if include_usage {
        events.push(
            json!({"id": id, "object": object, "created": 1, "model": model, "choices": [],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
            .to_string(),
        );
    }
    if let Some(k) = behavior.error_after_chunks {
        events.truncate(k);
        events.push(
            json!({"error": {"message": behavior.error_message, "type": "fake_error", "code": null}})
                .to_string(),
        );
    }
    let interval = behavior.chunk_interval;
    let drop_after = behavior.drop_after_chunks;
    struct St {
        events: std::vec::IntoIter<String>,
        sent: usize,
        completion: Option<Completion>,
        interval: Duration,
        drop_after: Option<usize>,
        done_marker: bool,
    }
    let st = St {
        events: events.into_iter(),
        sent: 0,
        completion: Some(completion),
        interval,
        drop_after,
        done_marker: behavior.error_after_chunks.is_none(),
    };
    let body_stream = stream::unfold(st, |mut st| async move {
        if st.drop_after.is_some_and(|k| st.sent >= k) {
            // Give hyper a moment to flush the chunks already sent: the
            // error below makes it abort the connection mid-body, dropping
            // whatever is still buffered.
            tokio::time::sleep(st.interval.max(Duration::from_millis(20))).await;
            if let Some(c) = st.completion.take() {
                c.finish();
            }
            return Some((Err(std::io::Error::other("dropped on purpose")), st));
        }
        if st.sent > 0 && !st.interval.is_zero() {
            tokio::time::sleep(st.interval).await;
        }
        match st.events.next() {
            Some(e) => {
                st.sent += 1;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(format!("data: {e}\n\n"))),
                    st,
                ))
            }
            None => {
                let c = st.completion.take()?;
                c.finish();
                if !st.done_marker {
                    return None;
                }
                Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), st))
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body_stream))
        .unwrap()
}
