//! The default cooldown rule, through the real binary: LiteLLM's failure
//! rate (more than half of at least 5 requests in a minute), a 429 cooling
//! at once only where the group has another deployment, a group's only
//! deployment never cooled by either, and `allowed_fails` bringing back the
//! count rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use routing_support::{ask, config, deployment, model_id};

/// Group `g`: `a` first (order 1), then `b`; each request makes one call.
async fn pair(up: &FakeUpstream, settings: &str) -> Proxy {
    Proxy::start(&config(
        &[
            deployment(up, "g", "a", &[("order", "1")]),
            deployment(up, "g", "b", &[("order", "2")]),
        ],
        &format!("num_retries: 0\ncooldown_time: 60\n{settings}"),
    ))
    .await
}

/// Sends one request per queued behaviour of `a`; returns the statuses.
async fn run(up: &FakeUpstream, proxy: &Proxy, script: &[u16]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for &status in script {
        let behavior = match status {
            200 => Behavior::ok("fine"),
            s => Behavior::status(s, "upstream trouble"),
        };
        up.push("a", behavior);
        statuses.push(ask(proxy, "g").await.0);
    }
    statuses
}

#[tokio::test]
async fn a_single_deployment_is_never_cooled_by_500s_or_429s() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[deployment(&up, "solo", "a", &[])],
        "num_retries: 0\ncooldown_time: 60",
    ))
    .await;
    for i in 0..12 {
        let status = if i % 2 == 0 { 500 } else { 429 };
        up.push("a", Behavior::status(status, "upstream trouble"));
        let (got, _, body) = ask(&proxy, "solo").await;
        assert_ne!(
            got, 503,
            "request {i} found the only deployment cooling: {body}"
        );
        assert_eq!(up.calls("a"), i + 1, "request {i} reached the upstream");
    }
    let (status, headers, body) = ask(&proxy, "solo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "a");
}

#[tokio::test]
async fn a_429_cools_a_deployment_with_a_sibling_at_once() {
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "").await;
    assert_eq!(run(&up, &proxy, &[429]).await, [429]);
    for _ in 0..3 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "b");
    }
    assert_eq!(up.calls("a"), 1);
}

#[tokio::test]
async fn three_failures_of_five_requests_cool_the_deployment() {
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "").await;
    let statuses = run(&up, &proxy, &[200, 200, 500, 500, 500]).await;
    assert_eq!(statuses, [200, 200, 502, 502, 502]);
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b", "3 of 5 failed: a is cooling");
    assert_eq!(up.calls("a"), 5);
}

#[tokio::test]
async fn two_failures_of_five_requests_do_not_cool_the_deployment() {
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "").await;
    let statuses = run(&up, &proxy, &[200, 200, 200, 500, 500]).await;
    assert_eq!(statuses, [200, 200, 200, 502, 502]);
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        model_id(&headers),
        "a",
        "2 of 5 failed: a stays in rotation"
    );
    assert_eq!(up.calls("a"), 6);
    assert_eq!(up.calls("b"), 0);
}

/// Four failures in a row are below the 5-request minimum.
#[tokio::test]
async fn fewer_than_five_requests_never_cool_by_rate() {
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "").await;
    run(&up, &proxy, &[500, 500, 500, 500]).await;
    let (_, headers, _) = ask(&proxy, "g").await;
    assert_eq!(model_id(&headers), "a");
}

#[tokio::test]
async fn explicit_allowed_fails_keeps_the_count_rule() {
    // A 429 within allowed_fails does not cool a deployment with a sibling...
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "allowed_fails: 1").await;
    assert_eq!(run(&up, &proxy, &[429]).await, [429]);
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "a");

    // ...and failures beyond it cool even the only deployment of a group.
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[deployment(&up, "solo", "a", &[])],
        "num_retries: 0\ncooldown_time: 60\nallowed_fails: 1",
    ))
    .await;
    for _ in 0..2 {
        up.push("a", Behavior::status(500, "upstream trouble"));
        assert_eq!(ask(&proxy, "solo").await.0, 502);
    }
    let (status, _, body) = ask(&proxy, "solo").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(up.calls("a"), 2);
}

/// `allowed_fails_policy` alone also selects the count rule.
#[tokio::test]
async fn allowed_fails_policy_keeps_the_count_rule() {
    let up = FakeUpstream::start().await;
    let proxy = pair(&up, "allowed_fails_policy: {RateLimitErrorAllowedFails: 2}").await;
    assert_eq!(run(&up, &proxy, &[429, 429]).await, [429, 429]);
    let (_, headers, _) = ask(&proxy, "g").await;
    assert_eq!(model_id(&headers), "a", "two 429s are within the policy");
    assert_eq!(run(&up, &proxy, &[429]).await, [429]);
    let (_, headers, _) = ask(&proxy, "g").await;
    assert_eq!(model_id(&headers), "b", "the third 429 cools a");
}
