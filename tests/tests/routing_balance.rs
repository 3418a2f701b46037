//! Balancing within a model group, driven over HTTP: each routing strategy
//! and deployment `order`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body};
use futures_util::StreamExt;
use routing_support::{ask, attempts, config, deployment, error_message, header, model_id};

/// Weights 3:1 over 600 requests. The share of `a` has standard deviation
/// sqrt(0.75 * 0.25 / 600) ≈ 0.018; the tolerance ±0.08 is about 4.5 of
/// them, so a correct router fails this less than once in 100,000 runs, and
/// a router ignoring weights (share 0.5) never passes.
#[tokio::test]
async fn simple_shuffle_honours_weights() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("weight", "3")]),
            deployment(&up, "g", "b", &[("weight", "1")]),
        ],
        "routing_strategy: simple-shuffle",
    ))
    .await;
    let n = 600;
    let statuses: Vec<u16> = futures_util::stream::iter(0..n)
        .map(|_| async { ask(&proxy, "g").await.0 })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(up.calls("a") + up.calls("b"), n);
    let share = up.calls("a") as f64 / n as f64;
    assert!((share - 0.75).abs() <= 0.08, "share of a: {share}");
}

/// LiteLLM's cost-based routing: the deployment whose tokens cost least
/// takes every request; one without a known price is never preferred.
#[tokio::test]
async fn cost_based_routing_sends_to_the_cheapest_deployment() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[
            deployment(
                &up,
                "g",
                "dear",
                &[
                    ("input_cost_per_token", "0.00003"),
                    ("output_cost_per_token", "0.00006"),
                ],
            ),
            deployment(
                &up,
                "g",
                "cheap",
                &[
                    ("input_cost_per_token", "0.000001"),
                    ("output_cost_per_token", "0.000002"),
                ],
            ),
            deployment(&up, "g", "unpriced", &[]),
        ],
        "routing_strategy: cost-based-routing",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(ask(&proxy, "g").await.0, 200);
    }
    assert_eq!(
        (up.calls("cheap"), up.calls("dear"), up.calls("unpriced")),
        (20, 0, 0)
    );
}

/// One request holds a deployment busy; while it is in flight every other
/// request goes to the idle deployment.
#[tokio::test]
async fn least_busy_sends_to_the_idle_deployment() {
    let up = FakeUpstream::start().await;
    let slow = Duration::from_millis(1500);
    up.set("a", Behavior::ok("a").delayed(slow));
    up.set("b", Behavior::ok("b").delayed(slow));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "g", "b", &[]),
        ],
        "routing_strategy: least-busy",
    ))
    .await;
    let client = proxy.client.clone();
    let url = proxy.url("/v1/chat/completions");
    let held = tokio::spawn(async move {
        let r = client
            .post(url)
            .json(&chat_body("g", "hold"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), model_id(r.headers()))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.calls("a") + up.calls("b") == 0 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (busy, idle) = if up.calls("a") == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    // New requests are fast wherever they go; the held one keeps its delay.
    up.set("a", Behavior::ok("a"));
    up.set("b", Behavior::ok("b"));
    let started = Instant::now();
    for _ in 0..8 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), idle);
    }
    assert!(
        started.elapsed() < slow,
        "the held request finished too soon"
    );
    let (status, id) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(id, busy);
    assert_eq!(up.calls(busy), 1);
    assert_eq!(up.calls(idle), 8);
}

/// Each deployment without a latency sample is tried once; after that the
/// faster one takes every request.
#[tokio::test]
async fn latency_based_routing_prefers_the_faster_deployment_after_warm_up() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow",
        Behavior::ok("slow").delayed(Duration::from_millis(200)),
    );
    up.set("fast", Behavior::ok("fast"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "slow", &[]),
            deployment(&up, "g", "fast", &[]),
        ],
        "routing_strategy: latency-based-routing",
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(ask(&proxy, "g").await.0, 200);
    }
    assert_eq!(up.calls("slow"), 1);
    assert_eq!(up.calls("fast"), 1);
    for _ in 0..10 {
        let (status, headers, _) = ask(&proxy, "g").await;
        assert_eq!(status, 200);
        assert_eq!(model_id(&headers), "fast");
    }
    assert_eq!(up.calls("slow"), 1);
    assert_eq!(up.calls("fast"), 11);
}

/// A deployment that only ever times out has no successful latency sample;
/// it must not stay "untried" and be picked first by every request.
#[tokio::test]
async fn latency_based_routing_stops_preferring_a_deployment_that_timed_out() {
    let up = FakeUpstream::start().await;
    up.set("hang", Behavior::ok("late").delayed(Duration::from_secs(5)));
    up.set("fast", Behavior::ok("fast"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "hang", &[]),
            deployment(&up, "g", "fast", &[]),
        ],
        "routing_strategy: latency-based-routing\ntimeout: 0.3\nnum_retries: 1\nallowed_fails: 1000",
    ))
    .await;
    for _ in 0..5 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "fast");
    }
    assert_eq!(up.calls("hang"), 1);
    assert_eq!(up.calls("fast"), 5);
}

/// rpm 1 on each of two deployments: two requests are served, the third is
/// refused with 429 and a Retry-After up to the end of the minute window.
#[tokio::test]
async fn usage_based_routing_answers_429_when_every_deployment_is_at_its_rpm() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("rpm", "1")]),
            deployment(&up, "g", "b", &[("rpm", "1")]),
        ],
        "routing_strategy: usage-based-routing",
    ))
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        ids.push(model_id(&headers));
    }
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "model_group_rate_limited");
    assert!(error_message(&body).contains("\"g\""), "{body}");
    let retry_after: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// With LiteLLM's `enable_pre_call_checks`, simple-shuffle skips a
/// deployment that used up its rpm for the minute; once every deployment
/// has, the group answers 429. Without the switch the same config ignores
/// rpm (a gets about half of twenty requests).
#[tokio::test]
async fn pre_call_checks_keep_any_strategy_within_rpm() {
    let up = FakeUpstream::start().await;
    let deployments = [
        deployment(&up, "g", "a", &[("rpm", "2")]),
        deployment(&up, "g", "b", &[("rpm", "18")]),
    ];
    let proxy = Proxy::start(&config(
        &deployments,
        "routing_strategy: simple-shuffle\nenable_pre_call_checks: true",
    ))
    .await;
    for _ in 0..20 {
        let (status, _, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!((up.calls("a"), up.calls("b")), (2, 18));
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "model_group_rate_limited");

    let up = FakeUpstream::start().await;
    let deployments = [
        deployment(&up, "g", "a", &[("rpm", "2"), ("weight", "1")]),
        deployment(&up, "g", "b", &[("rpm", "18"), ("weight", "1")]),
    ];
    let unchecked = Proxy::start(&config(&deployments, "routing_strategy: simple-shuffle")).await;
    for _ in 0..20 {
        assert_eq!(ask(&unchecked, "g").await.0, 200);
    }
    assert!(up.calls("a") > 2, "rpm applied without pre-call checks");
}

/// Lower order takes every request while it is healthy, including right
/// after a failure that did not cool it down.
#[tokio::test]
async fn lower_order_is_always_tried_first() {
    let up = FakeUpstream::start().await;
    up.set("b", Behavior::ok("b"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "c", &[("order", "3")]),
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
        ],
        "num_retries: 1\nallowed_fails: 5",
    ))
    .await;
    for _ in 0..10 {
        let (status, headers, _) = ask(&proxy, "g").await;
        assert_eq!(status, 200);
        assert_eq!(model_id(&headers), "a");
    }
    // One failure, within allowed_fails: a is not cooling, so even the retry
    // stays on the lowest order ...
    up.push("a", Behavior::status(500, "blip"));
    let (status, headers, _) = ask(&proxy, "g").await;
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "a");
    assert_eq!(attempts(&headers), 2);
    // ... and so does the next request.
    let (status, headers, _) = ask(&proxy, "g").await;
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "a");
    assert_eq!(up.calls("a"), 13);
    assert_eq!(up.calls("b"), 0);
    assert_eq!(up.calls("c"), 0);
}

/// The next order serves only while every lower-order deployment cools.
#[tokio::test]
async fn the_next_order_serves_only_while_the_lower_one_is_cooling() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
            deployment(&up, "g", "c", &[("order", "3")]),
        ],
        "num_retries: 1\nallowed_fails: 0\ncooldown_time: 1.5",
    ))
    .await;
    let (status, headers, _) = ask(&proxy, "g").await;
    let cooled_at = Instant::now();
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "b");
    for _ in 0..3 {
        let (status, headers, _) = ask(&proxy, "g").await;
        assert_eq!(status, 200);
        assert_eq!(model_id(&headers), "b");
        assert_eq!(attempts(&headers), 1);
    }
    assert!(cooled_at.elapsed() < Duration::from_secs(1), "too slow");
    assert_eq!(up.calls("a"), 1);
    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(cooled_at.elapsed())).await;
    let (status, headers, _) = ask(&proxy, "g").await;
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "a");
    assert_eq!(up.calls("a"), 2);
    assert_eq!(up.calls("b"), 4);
    assert_eq!(up.calls("c"), 0);
}
