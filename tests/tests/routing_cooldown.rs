//! Cooldowns, driven over HTTP with a short real `cooldown_time`: failing
//! deployments leave the rotation and come back, a whole group cooling
//! answers 503 or falls back, and `disable_cooldowns` turns it all off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use routing_support::{ask, attempts, config, deployment, error_message, header, model_id};

/// `a` (order 1) fails twice with allowed_fails 1: the first failure is
/// tolerated, the second cools it. While it cools, requests go straight to
/// `b` and `a`'s call count stops growing; after cooldown_time it serves again.
#[tokio::test]
async fn a_deployment_failing_more_than_allowed_fails_is_skipped_until_its_cooldown_ends() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    up.push("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
        ],
        "num_retries: 2\nallowed_fails: 1\ncooldown_time: 2",
    ))
    .await;
    // a stays first while it is within allowed_fails (order wins over trying
    // someone new); its second failure cools it and the retry moves to b.
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(attempts(&headers), 3);
    let cooled_at = Instant::now();
    assert_eq!(up.calls("a"), 2);
    for _ in 0..4 {
        let (status, headers, _) = ask(&proxy, "g").await;
        assert_eq!(status, 200);
        assert_eq!(model_id(&headers), "b");
        assert_eq!(attempts(&headers), 1);
    }
    assert!(
        cooled_at.elapsed() < Duration::from_millis(1500),
        "too slow to observe the cooldown"
    );
    assert_eq!(up.calls("a"), 2);
    assert_eq!(up.calls("b"), 5);

    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(cooled_at.elapsed())).await;
    let (status, headers, _) = ask(&proxy, "g").await;
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "a");
    assert_eq!(up.calls("a"), 3);
}

/// A 401 cools the deployment at once, even with allowed_fails 3 left.
#[tokio::test]
async fn a_401_cools_the_deployment_at_once() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(401, "invalid api key"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
        ],
        "num_retries: 2\nallowed_fails: 3\ncooldown_time: 30",
    ))
    .await;
    // The 401 is a's own problem: the healthy sibling answers the same request.
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(attempts(&headers), 2);
    assert_eq!(up.calls("a"), 1);
    // a would answer now (its 401 was a one-off), but it is cooling down.
    for _ in 0..3 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "b");
    }
    assert_eq!(up.calls("a"), 1);
    let health: serde_json::Value = proxy
        .client
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["unhealthy_deployments"][0]["model_id"], "a",
        "{health}"
    );
}

/// An image or embedding call naming a chat model is the caller's choice
/// of endpoint: its 404 leaves the model in rotation for everyone's chat.
#[tokio::test]
async fn a_404_on_another_endpoint_than_chat_cools_nothing() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\ncooldown_time: 30",
    ))
    .await;
    for (path, body) in [
        (
            "/v1/images/generations",
            serde_json::json!({"model": "g", "prompt": "a cat"}),
        ),
        (
            "/v1/embeddings",
            serde_json::json!({"model": "g", "input": "hi"}),
        ),
    ] {
        up.push(
            "a",
            Behavior::status(404, "this model does not serve this endpoint"),
        );
        let r = proxy.post(path, &body).await;
        assert!(!r.status().is_success(), "{path}: {}", r.status());
        let (status, _, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "after {path}: {body}");
    }
}

#[tokio::test]
async fn a_group_with_every_deployment_cooling_answers_503_with_retry_after() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "slow-group", "a", &[])],
        "num_retries: 2\nallowed_fails: 0\ncooldown_time: 30",
    ))
    .await;
    // The failure that cools the only deployment is reported as itself.
    let (status, _, body) = ask(&proxy, "slow-group").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.calls("a"), 1);

    let (status, headers, body) = ask(&proxy, "slow-group").await;
    assert_eq!(status, 503, "{body}");
    let retry_after: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!(
        (29..=30).contains(&retry_after),
        "retry-after {retry_after}"
    );
    assert!(error_message(&body).contains("\"slow-group\""), "{body}");
    assert_eq!(body["error"]["code"], "model_group_cooling_down");
    assert_eq!(up.calls("a"), 1);
}

#[tokio::test]
async fn a_cooling_groups_503_names_the_failure_that_cooled_it() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "the quota ran out"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 30",
    ))
    .await;
    assert_eq!(ask(&proxy, "g").await.0, 502);
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 503, "{body}");
    let message = error_message(&body);
    assert!(
        message.contains("last error") && message.contains("the quota ran out"),
        "{message}"
    );
}

#[tokio::test]
async fn a_cooling_group_falls_back_when_it_has_a_fallback() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "h", "h1", &[]),
        ],
        "num_retries: 2\nallowed_fails: 0\ncooldown_time: 30\nfallbacks: [{g: [h]}]",
    ))
    .await;
    for _ in 0..3 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-conclave-fallback"), "h");
    }
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("h1"), 3);
}

/// `g` fails upstream and its fallback `h` is cooling down: the client is
/// told `g`'s failure, not `h`'s cooldown (which made no call and says
/// nothing about the request).
#[tokio::test]
async fn a_cooling_fallback_does_not_hide_the_requested_groups_failure() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a is broken"));
    up.push("h1", Behavior::status(500, "h1 down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "h", "h1", &[]),
        ],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 30\nfallbacks: [{g: [h]}]",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "h").await;
    assert_eq!(status, 502, "{body}");
    let (status, headers, body) = ask(&proxy, "h").await;
    assert_eq!(status, 503, "h is cooling: {body}");
    assert!(headers.get("retry-after").is_some(), "{headers:?}");

    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    assert!(error_message(&body).contains("a is broken"), "{body}");
    assert!(headers.get("retry-after").is_none(), "{headers:?}");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("h1"), 1);
}

/// A deployment's own `cooldown_time` replaces the router's: `a` is back
/// after its 1 s while the router says 30; `cooldown_time: 0` never cools `b`.
#[tokio::test]
async fn a_deployments_own_cooldown_time_replaces_the_routers() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    up.push("b", Behavior::status(500, "b down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("cooldown_time", "1")]),
            deployment(&up, "h", "b", &[("cooldown_time", "0")]),
        ],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 30",
    ))
    .await;
    let (status, _, _) = ask(&proxy, "g").await;
    assert_eq!(status, 502);
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 503, "a is cooling: {body}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "a is back after its own 1 s: {body}");

    let (status, _, _) = ask(&proxy, "h").await;
    assert_eq!(status, 502);
    let (status, _, body) = ask(&proxy, "h").await;
    assert_eq!(status, 200, "b was never cooled: {body}");
    assert_eq!(up.calls("b"), 2);
}

/// With allowed_fails 0 one failure would cool `a`; with cooldowns disabled
/// the next request still reaches it.
#[tokio::test]
async fn disable_cooldowns_keeps_a_failing_deployment_in_rotation() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 30\ndisable_cooldowns: true",
    ))
    .await;
    let (status, _, _) = ask(&proxy, "g").await;
    assert_eq!(status, 502);
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "a");
    assert_eq!(up.calls("a"), 2);
}

/// The same setup without `disable_cooldowns`, so the test above cannot
/// pass by accident.
#[tokio::test]
async fn without_disable_cooldowns_the_same_failure_cools_the_deployment() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 30",
    ))
    .await;
    let (status, _, _) = ask(&proxy, "g").await;
    assert_eq!(status, 502);
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(up.calls("a"), 1);
}

/// A 400 is the request's fault: it never cools a deployment.
#[tokio::test]
async fn bad_requests_never_cool_a_deployment() {
    let up = FakeUpstream::start().await;
    for _ in 0..3 {
        up.push("a", Behavior::status(400, "bad field"));
    }
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "allowed_fails: 0\ncooldown_time: 30",
    ))
    .await;
    for _ in 0..3 {
        let (status, _, _) = ask(&proxy, "g").await;
        assert_eq!(status, 400);
    }
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("a"), 4);
}
