//! Timeouts, driven over HTTP: an upstream slower than `timeout` (or
//! `stream_timeout` for the first chunk of a stream) is abandoned and
//! retried, and the retry's answer is what the client gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, sse_content, sse_payloads};
use routing_support::{ask, attempts, config, deployment, stream_chat};

#[tokio::test]
async fn an_upstream_slower_than_timeout_is_retried_and_the_retry_succeeds() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::ok("too late").delayed(Duration::from_secs(3)),
    );
    up.set("a", Behavior::ok("in time"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "timeout: 0.5\nnum_retries: 1",
    ))
    .await;
    let started = Instant::now();
    let (status, headers, body) = ask(&proxy, "g").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "in time");
    assert_eq!(up.calls("a"), 2);
    assert_eq!(attempts(&headers), 2);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn a_timeout_with_no_retries_left_answers_504() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("too late").delayed(Duration::from_secs(3)),
    );
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "timeout: 0.3\nnum_retries: 0",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(up.calls("a"), 1);
}

/// A deployment's own `timeout` wins over router_settings.timeout.
#[tokio::test]
async fn a_deployment_timeout_overrides_the_router_timeout() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::ok("too late").delayed(Duration::from_secs(3)),
    );
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[("timeout", "0.4")])],
        "timeout: 60\nnum_retries: 1",
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("a"), 2);
    assert!(started.elapsed() < Duration::from_millis(2500));
}

/// `stream_timeout` bounds the wait for a stream's first chunk, while the
/// (longer) `timeout` still governs non-streaming calls.
#[tokio::test]
async fn stream_timeout_bounds_the_wait_for_the_first_chunk() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::ok("too late").delayed(Duration::from_secs(3)),
    );
    up.set("a", Behavior::ok("streamed in time"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "timeout: 30\nstream_timeout: 0.5\nnum_retries: 1",
    ))
    .await;
    let started = Instant::now();
    let (status, headers, text) = stream_chat(&proxy, "g").await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    assert_eq!(sse_content(&payloads), "streamed in time");
    assert_eq!(up.calls("a"), 2);
    assert_eq!(attempts(&headers), 2);
    assert!(took < Duration::from_millis(2500), "{took:?}");

    // The same delay on a non-streaming call is within `timeout`: one call.
    up.push(
        "a",
        Behavior::ok("slow but fine").delayed(Duration::from_millis(900)),
    );
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "slow but fine");
    assert_eq!(up.calls("a"), 3);
}

/// A request's own `timeout` (LiteLLM's per-request setting) shortens the
/// deployment's; one longer than the configured timeout changes nothing,
/// and neither reaches the upstream.
#[tokio::test]
async fn a_request_timeout_shortens_the_configured_one_and_never_lengthens_it() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("too late").delayed(Duration::from_millis(1500)),
    );
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "timeout: 10\nnum_retries: 0",
    ))
    .await;
    let mut body = conclave_e2e::chat_body("g", "hi");
    body["timeout"] = serde_json::json!(0.3);
    let started = Instant::now();
    let (status, _, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 504, "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "timeout: 0.3\nnum_retries: 0",
    ))
    .await;
    body["timeout"] = serde_json::json!(60);
    let (status, _, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 504, "the config's 0.3 s still holds: {answer}");
    let forwarded = up.last_body("a").unwrap();
    assert!(forwarded.get("timeout").is_none(), "{forwarded}");

    body["timeout"] = serde_json::json!(-1);
    let (status, _, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`timeout`"),
        "{answer}"
    );
}

/// A request's own short `timeout` running out says nothing about the
/// deployments: it must not cool them down for everyone else.
#[tokio::test]
async fn a_clients_own_short_timeout_cools_no_deployment_down() {
    let up = FakeUpstream::start().await;
    for dep in ["a", "b"] {
        up.set(
            dep,
            Behavior::ok("slow but fine").delayed(Duration::from_millis(300)),
        );
    }
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "g", "b", &[]),
        ],
        "timeout: 10\nnum_retries: 0\nallowed_fails: 1\ncooldown_time: 60",
    ))
    .await;
    let mut hasty = conclave_e2e::chat_body("g", "hi");
    hasty["timeout"] = serde_json::json!(0.02);
    for _ in 0..6 {
        let (status, _, answer) = routing_support::chat(&proxy, &hasty).await;
        assert_eq!(status, 504, "{answer}");
    }
    for _ in 0..4 {
        let (status, _, answer) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "a patient caller is still served: {answer}");
    }
    // Nor do the deployments look failing to whoever watches them.
    let metrics = proxy.metrics(None).await;
    let failed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("conclave_deployment_failed_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 0.0, "{metrics}");
}
