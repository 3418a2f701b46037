//! Limits a public endpoint needs: a client that trickles its body is cut
//! with 408, a client that stops reading is disconnected (over HTTP/1 and
//! HTTP/2), and requests past `global_max_parallel_requests` are refused at
//! once with 503 and `Retry-After` instead of piling up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployments};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(up: &FakeUpstream, general: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(up, &[("m", &[][..]), ("slow", &[][..])]));
    yaml.push_str("router_settings:\n  num_retries: 0\ngeneral_settings:\n");
    yaml.push_str(general);
    yaml
}

/// Sends headers promising `length` bytes, then `sent` bytes, then waits for
/// the answer's status line.
async fn trickle(proxy: &Proxy, length: usize, sent: &[u8]) -> (String, Duration) {
    let addr = proxy.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(sent).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut answer))
        .await
        .expect("an answer before the test's own limit")
        .unwrap();
    (
        String::from_utf8_lossy(&answer[..n]).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_trickles_its_body_is_cut_with_408() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "  request_body_timeout: 1\n")).await;
    let (answer, waited) = trickle(&proxy, 1000, br#"{"model": "m", "#).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_body_timeout"), "{answer}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(up.calls("m"), 0);
    let (status, _, _) = proxy.chat(&chat_body("m", "still serving")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_past_the_parallel_limit_get_503_with_retry_after_at_once() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow",
        Behavior::ok("slow").delayed(Duration::from_millis(1500)),
    );
    let proxy = Proxy::start(&config(&up, "  global_max_parallel_requests: 2\n")).await;
    let busy = || async { proxy.chat(&chat_body("slow", "hold a slot")).await.0 };
    let over = async {
        assert!(
            up.wait_until(Duration::from_secs(5), |u| u.calls("slow") == 2)
                .await
        );
        let started = Instant::now();
        let r = proxy
            .post("/v1/chat/completions", &chat_body("m", "one too many"))
            .await;
        (
            r.status().as_u16(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap(),
            started.elapsed(),
        )
    };
    let (a, b, (status, retry_after, body, waited)) = tokio::join!(busy(), busy(), over);
    assert_eq!((a, b), (200, 200));
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(body.contains("gateway_busy"), "{body}");
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert_eq!(up.calls("m"), 0);
    // The slots come back when the answers are done.
    let (status, _, _) = proxy.chat(&chat_body("m", "after")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bodies_past_the_gateways_byte_budget_get_503_until_the_held_ones_are_answered() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow",
        Behavior::ok("slow").delayed(Duration::from_millis(1500)),
    );
    let proxy = Proxy::start(&config(
        &up,
        "  max_request_bodies_mb: 1\n  max_request_size_mb: 1\n",
    ))
    .await;
    // Each body is about 0.6 MiB: one fits in the budget, two do not.
    let large = |model: &str| chat_body(model, &"x".repeat(600 * 1024));
    let held = async { proxy.chat(&large("slow")).await.0 };
    let over = async {
        assert!(
            up.wait_until(Duration::from_secs(5), |u| u.calls("slow") == 1)
                .await
        );
        let r = proxy.post("/v1/chat/completions", &large("m")).await;
        (
            r.status().as_u16(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap(),
        )
    };
    let (held, (status, retry_after, body)) = tokio::join!(held, over);
    assert_eq!(held, 200);
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(body.contains("max_request_bodies_mb"), "{body}");
    assert_eq!(up.calls("m"), 0);
    // The bytes come back when the held request is answered.
    let (status, _, _) = proxy.chat(&large("m")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_stream_is_disconnected_and_its_slot_freed() {
    let up = FakeUpstream::start().await;
    // About 12 MB of stream: more than the socket buffers of both ends hold.
    up.set(
        "slow",
        Behavior::ok(&"x".repeat(12 << 20)).chunked(3000, Duration::ZERO),
    );
    let proxy = Proxy::start(&config(
        &up,
        "  global_max_parallel_requests: 1\n  client_write_timeout: 1\n",
    ))
    .await;
    let addr: std::net::SocketAddr = proxy.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let body =
        r#"{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "go"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // Never read. Once the gateway gives up on this client, the one slot is
    // free again for the next request.
    assert_slot_freed_within(&proxy, Duration::from_secs(15)).await;
    drop(tcp);
}

/// Asks for a chat answer until one comes (the one slot is free), at most
/// for `limit`.
async fn assert_slot_freed_within(proxy: &Proxy, limit: Duration) {
    let started = Instant::now();
    let mut status = 0;
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = proxy.chat(&chat_body("m", "next")).await.0;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "the stalled stream still holds the slot");
}

#[tokio::test]
async fn an_http2_client_that_grants_no_window_is_disconnected_and_its_slot_freed() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow",
        Behavior::ok(&"x".repeat(64 << 10)).chunked(64, Duration::from_millis(10)),
    );
    let proxy = Proxy::start(&config(
        &up,
        "  global_max_parallel_requests: 1\n  client_write_timeout: 1\n",
    ))
    .await;
    let addr = proxy.base.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A client that opens no window for answers: the socket stays readable
    // and h2 answers the gateway's pings, but no answer data may be sent.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (answer, mut body) = client.send_request(request, false).unwrap();
    let chat =
        r#"{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "go"}]}"#;
    body.send_data(bytes::Bytes::from_static(chat.as_bytes()), true)
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("the answer's head within 5 s")
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_slot_freed_within(&proxy, Duration::from_secs(15)).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "the stalled connection is still open");
    drop(answer);
}
