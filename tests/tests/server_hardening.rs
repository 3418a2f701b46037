//! The connection layer on a public network: a client that never finishes
//! its request head is disconnected after `header_read_timeout`, connections
//! past `max_connections` wait instead of failing, and SIGTERM ends in
//! bounded time (open streams get `--shutdown-grace`, then one
//! `server_shutting_down` error event) while in-flight answers complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{
    Behavior, FakeUpstream, Launch, Proxy, SseReader, chat_body, deployments, error_object,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: &FakeUpstream, general: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(
        up,
        &[("m", &[][..]), ("slow", &[][..]), ("s", &[][..])],
    ));
    yaml.push_str("router_settings:\n  num_retries: 0\ngeneral_settings:\n");
    yaml.push_str(general);
    yaml
}

fn addr(proxy: &Proxy) -> &str {
    proxy.base.trim_start_matches("http://")
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected_after_the_header_timeout() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  header_read_timeout: 1\n")).await;
    let mut half = TcpStream::connect(addr(&proxy)).await.unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: conclave\r\ncontent-")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr(&proxy)).await.unwrap();
    let (status, _, body) = proxy.chat(&chat_body("m", "meanwhile")).await;
    assert_eq!(status, 200, "{body}");
    let (half_closed, silent_closed) = tokio::join!(
        closed_within(&mut half, Duration::from_secs(4)),
        closed_within(&mut silent, Duration::from_secs(4)),
    );
    assert!(half_closed > Duration::from_millis(500), "{half_closed:?}");
    assert!(
        silent_closed > Duration::from_millis(500),
        "{silent_closed:?}"
    );
    // A new client is served as before. Not through the pooled connection
    // of the request above: the same timeout closes it once it has idled a
    // second, which may be just as the request would reuse it.
    let after = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat_body("m", "after"))
        .send()
        .await
        .unwrap();
    let status = after.status();
    assert_eq!(status, 200, "{}", after.text().await.unwrap_or_default());
}

/// Reads one HTTP/1 answer with a `content-length` off `tcp`; its head.
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before the answer ended");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if got.len() >= end + 4 + length {
                return head.to_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_kept_alive_connection_whose_next_head_never_completes_is_disconnected() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  header_read_timeout: 1\n")).await;
    let mut tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
    tcp.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: conclave\r\n\r\n")
        .await
        .unwrap();
    let head = read_answer(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: conclave\r\ncontent-")
        .await
        .unwrap();
    let closed = closed_within(&mut tcp, Duration::from_secs(4)).await;
    assert!(closed > Duration::from_millis(500), "{closed:?}");
}

/// One HTTP/2 frame: its 9-byte header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The types of the frames in `bytes` (a whole number of frames or not).
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        types.push(rest[3]);
        rest = rest.get(9 + len..).unwrap_or_default();
    }
    types
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_requests_is_sent_away() {
    const HEADERS: u8 = 0x1;
    const GOAWAY: u8 = 0x7;
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  header_read_timeout: 1\n")).await;
    let mut tcp = TcpStream::connect(addr(&proxy)).await.unwrap();
    // The preface, empty settings, and GET /health/liveliness on stream 1:
    // :method GET and :scheme http from the static table, :path literal.
    let path = b"/health/liveliness";
    let mut headers = vec![0x82, 0x86, 0x44, u8::try_from(path.len()).unwrap()];
    headers.extend_from_slice(path);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[]));
    hello.extend(h2_frame(HEADERS, 0x5, 1, &headers));
    tcp.write_all(&hello).await.unwrap();
    // Everything the server sends until it closes, while the client answers
    // nothing more (an attacker would answer pings; none come this soon).
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Err(_) => panic!("the idle HTTP/2 connection is still open after 5 s: {received:?}"),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    let types = h2_frame_types(&received);
    assert!(types.contains(&HEADERS), "answered first: {types:?}");
    assert!(types.contains(&GOAWAY), "sent away: {types:?}");
    assert!(
        started.elapsed() > Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn answers_that_take_longer_than_the_header_timeout_are_not_cut() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow",
        Behavior::ok("slow answer").delayed(Duration::from_millis(1_500)),
    );
    up.set(
        "s",
        Behavior::ok("x").chunked(15, Duration::from_millis(150)),
    );
    let proxy = Proxy::start(&config(&up, "  header_read_timeout: 1\n")).await;
    let (status, _, body) = proxy.chat(&chat_body("slow", "take your time")).await;
    assert_eq!(status, 200, "{body}");
    let body =
        json!({"model": "s", "messages": [{"role": "user", "content": "go"}], "stream": true});
    let stream = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(stream.status().as_u16(), 200);
    let mut reader = SseReader::new(stream);
    let mut last = String::new();
    while let Some(payload) = reader.next(Duration::from_secs(5)).await {
        last = payload;
    }
    assert_eq!(last, "[DONE]", "the stream was cut");
}

#[tokio::test]
async fn connections_past_max_connections_wait_for_a_free_one_then_are_served() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  max_connections: 4\n")).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&proxy)).await.unwrap());
    }
    // Let the server accept all four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fifth = {
        let client = reqwest::Client::new();
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r = client.post(url).json(&chat_body("m", "fifth")).send().await;
            r.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !fifth.is_finished(),
        "the fifth connection was served past the limit"
    );
    assert_eq!(up.calls("m"), 0);
    let freed = Instant::now();
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), fifth)
        .await
        .expect("the fifth connection is served once one closes")
        .unwrap();
    assert_eq!(status, Ok(200));
    assert!(
        freed.elapsed() < Duration::from_secs(3),
        "{:?}",
        freed.elapsed()
    );
}

/// The first SSE payload that is an error, reading for at most `limit`.
async fn error_event(reader: &mut SseReader, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let payload = reader
            .next(left)
            .await
            .expect("an error event before the stream ends");
        let event: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
        if event.get("error").is_some() {
            return event;
        }
    }
}

#[tokio::test]
async fn sigterm_ends_open_streams_after_the_grace_period_and_lets_answers_finish() {
    let up = FakeUpstream::start().await;
    up.set(
        "s",
        Behavior::ok("x").chunked(100, Duration::from_millis(200)),
    );
    up.set(
        "slow",
        Behavior::ok("slow answer").delayed(Duration::from_millis(700)),
    );
    let mut proxy = Proxy::launch(
        &config(&up, "  header_read_timeout: 30\n"),
        Launch {
            args: vec!["--shutdown-grace".into(), "1".into()],
            ..Launch::default()
        },
    )
    .await;
    let body =
        json!({"model": "s", "messages": [{"role": "user", "content": "go"}], "stream": true});
    let stream = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(stream.status().as_u16(), 200);
    let mut reader = SseReader::new(stream);
    reader
        .next(Duration::from_secs(5))
        .await
        .expect("a first event");
    let answer = {
        let client = proxy.client.clone();
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&chat_body("slow", "in flight"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.calls("slow") == 1)
            .await
    );
    let signalled = Instant::now();
    proxy.signal("TERM");
    let event = error_event(&mut reader, Duration::from_secs(5)).await;
    let waited = signalled.elapsed();
    let error = error_object(&event);
    assert_eq!(error["code"], "server_shutting_down", "{event}");
    assert_eq!(error["type"], "service_unavailable_error", "{event}");
    assert!(waited > Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(
        reader.next(Duration::from_secs(3)).await,
        None,
        "nothing after the error event"
    );
    let (status, text) = answer.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("slow answer"), "{text}");
    let exit = proxy
        .wait(Duration::from_secs(5))
        .await
        .expect("conclave exits");
    assert!(exit.success(), "{exit:?}\n{}", proxy.logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "{:?}",
        signalled.elapsed()
    );
}
