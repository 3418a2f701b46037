//! The floor conclave is measured against: the same axum server and reqwest
//! client (same pool and socket settings, same allocator), doing nothing but
//! copy each request body to the upstream and its answer back. No parsing,
//! no routing, no headers of its own. Whatever saturation this reaches on a
//! machine is what the stack allows there before conclave does any work.
//!
//! Usage: `bare-forwarder <port> <upstream chat completions URL>`; serves
//! `POST /v1/chat/completions` and `GET /health` on 127.0.0.1 until killed.
//!
//! With `--answer` in place of the URL it is the floor of a cache hit
//! instead: the same server reads each body and answers the mock's fixed
//! chat.completion from memory, calling nothing.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let sent = up
        .client
        .post(up.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The flag that makes this the cache-hit floor.
const ANSWER: &str = "--answer";

async fn answer(State(body): State<Bytes>, _request: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port = args.get(1).and_then(|p| p.parse::<u16>().ok());
    let app = match (port, args.get(2).map(String::as_str)) {
        (Some(_), Some(ANSWER)) => Some(
            Router::new()
                .route("/v1/chat/completions", post(answer))
                .route("/health", get(|| async { "ok" }))
                .with_state(Bytes::from(conclave_bench::mock::completion_json())),
        ),
        (Some(_), Some(url)) => reqwest::Url::parse(url).ok().and_then(forwarder),
        _ => None,
    };
    let (Some(port), Some(app)) = (port, app) else {
        eprintln!("usage: bare-forwarder <port> <upstream chat completions URL | {ANSWER}>");
        return ExitCode::FAILURE;
    };
    match serve(port, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-forwarder: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The forwarding app, with conclave's client settings (host/src/server.rs).
fn forwarder(url: reqwest::Url) -> Option<Router> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    Some(
        Router::new()
            .route("/v1/chat/completions", post(forward))
            .route("/health", get(|| async { "ok" }))
            .with_state(Upstream { client, url }),
    )
}

fn serve(port: u16, app: Router) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        axum::serve(listener, app).await
    })?;
    Ok(())
}
