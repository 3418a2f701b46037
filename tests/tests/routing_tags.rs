//! `router_settings.enable_tag_filtering` (LiteLLM's tag routing), driven
//! over HTTP: a request's tags, from its body, its metadata or the
//! `x-litellm-tags` header, pick the deployments whose `tags` match.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::{FakeUpstream, Proxy, chat_body};
use routing_support::{chat, config, deployment, error_message, model_id};
use serde_json::{Value, json};

/// Free, paid and default deployments of group `g`.
fn tiers(up: &FakeUpstream) -> Vec<String> {
    vec![
        deployment(up, "g", "free", &[("tags", "[free]")]),
        deployment(up, "g", "paid", &[("tags", "[paid, eu]")]),
        deployment(up, "g", "fallback", &[("tags", "[default]")]),
    ]
}

/// A chat request for `g` with `extra` fields merged in.
fn tagged(extra: Value) -> Value {
    let mut body = chat_body("g", "hi");
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Which deployment answered each of `n` requests of `body`.
async fn answered_by(proxy: &Proxy, body: &Value, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (status, headers, answer) = chat(proxy, body).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(model_id(&headers));
    }
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn a_requests_tags_pick_the_deployments_that_carry_them() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&tiers(&up), "enable_tag_filtering: true")).await;
    let free = tagged(json!({"tags": ["free"]}));
    assert_eq!(answered_by(&proxy, &free, 8).await, ["free"]);
    let paid = tagged(json!({"metadata": {"tags": ["paid"]}}));
    assert_eq!(answered_by(&proxy, &paid, 8).await, ["paid"]);
    // One tag in common is enough.
    let either = tagged(json!({"tags": ["eu", "nowhere"]}));
    assert_eq!(answered_by(&proxy, &either, 8).await, ["paid"]);
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("x-litellm-tags", "free")
        .json(&chat_body("g", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-conclave-model-id"].to_str().unwrap(), "free");
}

#[tokio::test]
async fn untagged_requests_and_unknown_tags_go_to_the_default_deployments() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&tiers(&up), "enable_tag_filtering: true")).await;
    assert_eq!(
        answered_by(&proxy, &chat_body("g", "hi"), 8).await,
        ["fallback"]
    );
    let unknown = tagged(json!({"tags": ["gold"]}));
    assert_eq!(answered_by(&proxy, &unknown, 8).await, ["fallback"]);
}

#[tokio::test]
async fn tags_no_deployment_serves_are_a_400_naming_them_and_nothing_is_called() {
    let up = FakeUpstream::start().await;
    let deployments = [
        deployment(&up, "g", "free", &[("tags", "[free]")]),
        deployment(&up, "g", "paid", &[("tags", "[paid, eu]")]),
    ];
    let proxy = Proxy::start(&config(
        &deployments,
        "enable_tag_filtering: true\ntag_filtering_match_any: false",
    ))
    .await;
    for tags in [json!(["gold"]), json!(["free", "eu"])] {
        let (status, _, body) = chat(&proxy, &tagged(json!({"tags": tags}))).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "no_deployment_for_tags");
        assert_eq!(body["error"]["param"], "tags");
        assert!(error_message(&body).contains("\"g\""), "{body}");
    }
    // With every tag required, the deployment that has them all serves.
    let both = tagged(json!({"tags": ["paid", "eu"]}));
    assert_eq!(answered_by(&proxy, &both, 4).await, ["paid"]);
    assert_eq!(up.calls("free"), 0);
}

#[tokio::test]
async fn without_tag_filtering_tags_pick_nothing() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&tiers(&up), "")).await;
    // 30 requests tagged `paid`, spread over three deployments: each of the
    // other two is missed with probability (2/3)^30.
    let paid = tagged(json!({"tags": ["paid"]}));
    let ids = answered_by(&proxy, &paid, 30).await;
    assert_eq!(ids, ["fallback", "free", "paid"]);
}
