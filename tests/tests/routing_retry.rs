//! Retries within one model group, driven over HTTP against the fake
//! upstream: which failures are retried, how often, how long the router
//! waits, and where the retry goes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use routing_support::{ask, attempts, config, deployment, error_message, model_id};

#[tokio::test]
async fn a_500_is_retried_and_the_retry_succeeds() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "boom"));
    up.set("a", Behavior::ok("second time lucky"));
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 2")).await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "second time lucky"
    );
    assert_eq!(up.calls("a"), 2);
    assert_eq!(attempts(&headers), 2);
    assert_eq!(model_id(&headers), "a");
}

#[tokio::test]
async fn a_failure_after_retries_tells_clients_not_to_retry_it_again() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "boom"));
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 2")).await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(attempts(&headers), 3);
    assert_eq!(headers["x-should-retry"], "false");
}

#[tokio::test]
async fn a_failure_on_the_only_call_leaves_retrying_to_the_client() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "boom"));
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 0")).await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(attempts(&headers), 1);
    assert!(headers.get("x-should-retry").is_none());
}

#[tokio::test]
async fn a_400_is_neither_retried_nor_falls_back() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(400, "messages[0].role is invalid"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "g", "a2", &[]),
            deployment(&up, "other", "b", &[]),
        ],
        "num_retries: 3\nfallbacks: [{g: [other]}]\ndefault_fallbacks: [other]",
    ))
    .await;
    // Both deployments of g answer 400; whichever is picked, there is one call.
    up.set("a2", Behavior::status(400, "messages[0].role is invalid"));
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_message(&body).contains("messages[0].role is invalid"),
        "{body}"
    );
    assert_eq!(up.calls("a") + up.calls("a2"), 1);
    assert_eq!(up.calls("b"), 0);
}

/// The first same-deployment backoff is at most 250 ms, so a gap of at
/// least the upstream's hint can only come from honouring it.
#[tokio::test]
async fn retry_after_ms_is_honoured_before_retrying_the_same_deployment() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::status(429, "slow down").header("retry-after-ms", "700"),
    );
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 1")).await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(attempts(&headers), 2);
    let rec = up.recorded();
    assert_eq!(rec.len(), 2);
    let gap = rec[1].at.duration_since(rec[0].at);
    assert!(gap >= Duration::from_millis(700), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_seconds_is_honoured_before_retrying_the_same_deployment() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::status(503, "overloaded").header("retry-after", "1"),
    );
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 1")).await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    let rec = up.recorded();
    assert_eq!(rec.len(), 2);
    let gap = rec[1].at.duration_since(rec[0].at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
}

/// `a` always fails (but never cools: allowed_fails is high), `b` works.
/// Whichever the balancer picks first, every request ends on `b`, and a
/// request that started on `a` moves to `b` rather than retrying `a`.
#[tokio::test]
async fn a_retry_moves_to_another_healthy_deployment() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a is broken"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "g", "b", &[]),
        ],
        "num_retries: 2\nallowed_fails: 1000",
    ))
    .await;
    let n = 20;
    let mut started_on_a = 0;
    for _ in 0..n {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "b");
        match attempts(&headers) {
            1 => {}
            2 => started_on_a += 1,
            other => panic!("{other} attempts"),
        }
    }
    assert_eq!(up.calls("b"), n);
    assert_eq!(up.calls("a"), started_on_a);
    // Shuffle picks a first about half the time; 0 of 20 has odds 2^-20.
    assert!(started_on_a > 0);
}

#[tokio::test]
async fn retry_policy_zero_rate_limit_retries_means_a_429_is_not_retried() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(429, "quota"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 3\nretry_policy: {RateLimitErrorRetries: 0}",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(up.calls("a"), 1);
    // The deployment itself is fine: the next request is answered.
    let (status, _, _) = ask(&proxy, "g").await;
    assert_eq!(status, 200);
    assert_eq!(up.calls("a"), 2);
}

/// `num_retries: 3` would allow four calls; the class's policy allows two.
#[tokio::test]
async fn retry_policy_limits_internal_server_error_retries() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    up.set("b", Behavior::status(502, "b down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[]),
            deployment(&up, "g", "b", &[]),
        ],
        "num_retries: 3\nallowed_fails: 1000\nretry_policy: {InternalServerErrorRetries: 1}",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    // One call each: the retry went to the deployment not yet tried.
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// A deployment's own `max_retries` replaces `num_retries` for its failures.
#[tokio::test]
async fn deployment_max_retries_overrides_num_retries() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[("max_retries", "0")])],
        "num_retries: 3\nallowed_fails: 1000",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.calls("a"), 1);
}

/// LiteLLM's per-deployment `num_retries` counts as the deployment's own,
/// and wins over its `max_retries`.
#[tokio::test]
async fn deployment_num_retries_overrides_num_retries_and_max_retries() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "down"));
    let proxy = Proxy::start(&config(
        &[deployment(
            &up,
            "g",
            "a",
            &[("num_retries", "1"), ("max_retries", "5")],
        )],
        "num_retries: 3\nallowed_fails: 1000",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.calls("a"), 2);
    assert!(!proxy.logs().contains("num_retries: unknown key"));
}

/// A 401 is not retried by default, but `AuthenticationErrorRetries` allows
/// it; the 401 cools `a` at once, so the retry lands on `b`.
#[tokio::test]
async fn retry_policy_authentication_retries_move_a_401_to_another_deployment() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(401, "invalid api key"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
        ],
        "num_retries: 0\nretry_policy: {AuthenticationErrorRetries: 1}",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(attempts(&headers), 2);
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// A request's own `num_retries` replaces the configured one, both ways,
/// and is never forwarded.
#[tokio::test]
async fn a_request_num_retries_replaces_the_configured_one() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "boom"));
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 2")).await;
    let mut body = conclave_e2e::chat_body("g", "hi");
    body["num_retries"] = serde_json::json!(0);
    let (status, _, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(up.calls("a"), 1);
    assert!(up.last_body("a").unwrap().get("num_retries").is_none());

    up.clear();
    up.push("a", Behavior::status(500, "boom"));
    up.push("a", Behavior::status(500, "boom"));
    up.push("a", Behavior::status(500, "boom"));
    up.set("a", Behavior::ok("fourth time"));
    body["num_retries"] = serde_json::json!(3);
    let (status, headers, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(attempts(&headers), 4);

    body["num_retries"] = serde_json::json!(11);
    let (status, _, answer) = routing_support::chat(&proxy, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error_message(&answer).contains("`num_retries`"), "{answer}");
}

/// The Messages and Responses APIs take LiteLLM's request settings as the
/// chat route does: their own `num_retries`, checked `tags` (a 400 naming
/// the field), and none of them reaches the upstream.
#[tokio::test]
async fn messages_and_responses_requests_carry_their_own_settings() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "boom"));
    let proxy = Proxy::start(&config(&[deployment(&up, "g", "a", &[])], "num_retries: 2")).await;
    let messages = serde_json::json!({"model": "g", "max_tokens": 10, "num_retries": 0,
        "messages": [{"role": "user", "content": "hi"}]});
    let responses = serde_json::json!({"model": "g", "input": "hi", "num_retries": 0});
    for (path, body) in [("/v1/messages", &messages), ("/v1/responses", &responses)] {
        up.clear();
        let (status, answer) = proxy
            .call(reqwest::Method::POST, path, Some(body.clone()), None)
            .await;
        assert!(status >= 500, "{path}: {answer}");
        assert_eq!(up.calls("a"), 1, "{path}: one call, no retries");
        assert!(up.last_body("a").unwrap().get("num_retries").is_none());
        let mut bad = body.clone();
        bad["tags"] = serde_json::json!("x");
        let (status, answer) = proxy
            .call(reqwest::Method::POST, path, Some(bad), None)
            .await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer.to_string().contains("`tags`"), "{path}: {answer}");
    }
}
