//! Router behaviour across time, in-process with a manual clock: rpm/tpm
//! windows and cooldowns. The router is built from config text exactly as the
//! binary builds it, with a `ManualClock` injected; every call still goes over
//! real HTTP to the fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conclave::config::{Env, load_str};
use conclave::openai::{Endpoint, RawFields};
use conclave::ops::{CallContext, Caller};
use conclave::router::{ManualClock, RouteError, RouteRequest, Routed, Router};
use conclave_e2e::{Behavior, FakeUpstream};
use routing_support::{config, deployment};

fn build(yaml: &str) -> (Router, Arc<ManualClock>) {
    let loaded = load_str(yaml, Path::new("t.yaml"), Env::default()).unwrap();
    let clock = Arc::new(ManualClock::default());
    let built = Router::from_config(&loaded, &[], reqwest::Client::new(), clock.clone(), None)
        .unwrap_or_else(|p| panic!("{p:?}"));
    (built.router, clock)
}

fn body() -> RawFields {
    serde_json::from_str(r#"{"messages": [{"role": "user", "content": "hi"}]}"#).unwrap()
}

async fn route(router: &Router, model: &str) -> Result<Routed, RouteError> {
    let body = body();
    let ctx = CallContext::detached(Caller::Open, "/v1/chat/completions");
    tokio::time::timeout(
        Duration::from_secs(20),
        router.route(RouteRequest {
            endpoint: Endpoint::ChatCompletions,
            model,
            stream: false,
            body: &body,
            fallbacks: None,
            disable_fallbacks: false,
            may_fall_back_to: None,
            limits: Default::default(),
            ctx: &ctx,
        }),
    )
    .await
    .expect("route within 20 s")
}

/// Deployment that served a successful route.
async fn served_by(router: &Router, model: &str) -> String {
    match route(router, model).await {
        Ok(routed) => routed.meta.deployment.to_string(),
        Err(e) => panic!("route failed: {e}"),
    }
}

/// rpm 2 and rpm 4: usage-based routing fills both to their limits (always
/// the one with more room left), refuses the seventh request of the minute,
/// and serves again once the clock moves into the next minute.
#[tokio::test]
async fn usage_based_routing_respects_rpm_within_the_minute_and_resets_after_it() {
    let up = FakeUpstream::start().await;
    let (router, clock) = build(&config(
        &[
            deployment(&up, "g", "a", &[("rpm", "2")]),
            deployment(&up, "g", "b", &[("rpm", "4")]),
        ],
        "routing_strategy: usage-based-routing",
    ));
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(served_by(&router, "g").await);
    }
    assert_eq!(order, ["a", "b", "b", "a", "b", "b"]);
    match route(&router, "g").await {
        Err(RouteError::GroupRateLimited { group, retry_in }) => {
            assert_eq!(group, "g");
            assert!(retry_in > Duration::ZERO && retry_in <= Duration::from_secs(60));
        }
        Err(e) => panic!("expected GroupRateLimited, got {e}"),
        Ok(r) => panic!("expected GroupRateLimited, served by {}", r.meta.deployment),
    }
    assert_eq!(up.calls("a"), 2);
    assert_eq!(up.calls("b"), 4);

    // 59 s later it is still the same minute.
    clock.advance(Duration::from_secs(59));
    assert!(matches!(
        route(&router, "g").await,
        Err(RouteError::GroupRateLimited { .. })
    ));
    clock.advance(Duration::from_secs(1));
    for _ in 0..6 {
        served_by(&router, "g").await;
    }
    assert_eq!(up.calls("a"), 4);
    assert_eq!(up.calls("b"), 8);
    assert!(matches!(
        route(&router, "g").await,
        Err(RouteError::GroupRateLimited { .. })
    ));
    assert_eq!(up.calls("a") + up.calls("b"), 12);
}

/// tpm counts the upstream's reported usage (the fake reports 12 tokens):
/// with tpm 20 the second request is still admitted (12 < 20), the third not.
#[tokio::test]
async fn usage_based_routing_respects_tpm_within_the_minute() {
    let up = FakeUpstream::start().await;
    let (router, clock) = build(&config(
        &[deployment(&up, "g", "a", &[("tpm", "20")])],
        "routing_strategy: usage-based-routing",
    ));
    served_by(&router, "g").await;
    served_by(&router, "g").await;
    assert!(matches!(
        route(&router, "g").await,
        Err(RouteError::GroupRateLimited { .. })
    ));
    assert_eq!(up.calls("a"), 2);
    clock.advance(Duration::from_secs(60));
    served_by(&router, "g").await;
    assert_eq!(up.calls("a"), 3);
}

/// rpm is only enforced by usage-based routing: simple-shuffle ignores it.
#[tokio::test]
async fn simple_shuffle_does_not_enforce_rpm() {
    let up = FakeUpstream::start().await;
    let (router, _clock) = build(&config(
        &[deployment(&up, "g", "a", &[("rpm", "1")])],
        "routing_strategy: simple-shuffle",
    ));
    for _ in 0..3 {
        served_by(&router, "g").await;
    }
    assert_eq!(up.calls("a"), 3);
}

/// A cooled deployment stays out for exactly cooldown_time on the router's
/// clock: still out 1 s before the end, back right after it.
#[tokio::test]
async fn a_cooled_deployment_returns_after_cooldown_time_on_the_clock() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "down"));
    let (router, clock) = build(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\nallowed_fails: 0\ncooldown_time: 300",
    ));
    assert!(matches!(
        route(&router, "g").await,
        Err(RouteError::Upstream { .. })
    ));
    match route(&router, "g").await {
        Err(RouteError::GroupCooling {
            group, retry_in, ..
        }) => {
            assert_eq!(group, "g");
            assert_eq!(retry_in, Duration::from_secs(300));
        }
        other => panic!("expected GroupCooling, got {:?}", other.err()),
    }
    assert_eq!(router.cooling().len(), 1);
    clock.advance(Duration::from_secs(299));
    match route(&router, "g").await {
        Err(RouteError::GroupCooling { retry_in, .. }) => {
            assert_eq!(retry_in, Duration::from_secs(1));
        }
        other => panic!("expected GroupCooling, got {:?}", other.err()),
    }
    assert_eq!(up.calls("a"), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(served_by(&router, "g").await, "a");
    assert_eq!(up.calls("a"), 2);
    assert!(router.cooling().is_empty());
}

/// Failures are counted per minute: allowed_fails 1 tolerates one failure a
/// minute, so two failures a minute apart never cool the deployment.
#[tokio::test]
async fn failures_in_different_minutes_do_not_add_up_to_a_cooldown() {
    let up = FakeUpstream::start().await;
    up.push("a", Behavior::status(500, "down"));
    up.push("a", Behavior::status(500, "down"));
    up.push("a", Behavior::status(500, "down"));
    let (router, clock) = build(&config(
        &[deployment(&up, "g", "a", &[])],
        "num_retries: 0\nallowed_fails: 1\ncooldown_time: 300",
    ));
    assert!(route(&router, "g").await.is_err());
    clock.advance(Duration::from_secs(60));
    assert!(route(&router, "g").await.is_err());
    assert!(router.cooling().is_empty());
    // A second failure in the same minute does cool it.
    assert!(route(&router, "g").await.is_err());
    assert_eq!(router.cooling().len(), 1);
    assert!(matches!(
        route(&router, "g").await,
        Err(RouteError::GroupCooling { .. })
    ));
    assert_eq!(up.calls("a"), 3);
}
