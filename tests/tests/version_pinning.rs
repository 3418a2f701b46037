//! A request is served by the config version it was authenticated against:
//! a reload that lands while the request's body is still arriving changes
//! what later requests see, never the request already admitted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{FakeUpstream, Proxy, chat_body, deployments, replace_atomically};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(up: &FakeUpstream) -> String {
    format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n\
         general_settings:\n  admin_without_key_on_loopback: true\n  hot_reload: false\n",
        deployments(up, &[("m", &[][..])])
    )
}

#[tokio::test]
async fn a_reload_during_a_slow_body_does_not_change_the_version_serving_it() {
    let first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&first)).await;

    // The head arrives (and is authenticated) now; the body only after the reload.
    let body = serde_json::to_vec(&chat_body("m", "which version serves me?")).unwrap();
    let (start, rest) = body.split_at(body.len() / 2);
    let addr = proxy.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    replace_atomically(&proxy.config_path(), config(&second).as_bytes());
    let reload = proxy.post("/admin/reload", &serde_json::json!({})).await;
    assert_eq!(reload.status(), 200, "{}", reload.text().await.unwrap());
    let (status, _, after) = proxy.chat(&chat_body("m", "after the reload")).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(second.calls("m"), 1, "new requests use the new version");

    tcp.write_all(rest).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        first.calls("m"),
        1,
        "the admitted request is served by the version it was authenticated against"
    );
    assert_eq!(second.calls("m"), 1);
}
