//! Deployments that exist only because a composite topology names them (a
//! node's model with a provider bundle) answer the strategy's calls and
//! nobody else's: not by name, not as a request's fallback.

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployment};
use serde_json::json;

const HIDDEN: &str = "openai/p-up@fakeb";

fn config(up: &FakeUpstream) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployment(
        "agg",
        "openai/agg-up",
        &up.api_base("agg"),
        &[],
    ));
    yaml.push_str(
        "  - model_name: moa-test\n    litellm_params:\n      model: composite/profile/moa_test\n",
    );
    yaml.push_str(&format!(
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  composite_llm:\n    providers:\n      \
         fakeb:\n        litellm_params: {{api_base: \"{}\", api_key: sk-bundle}}\n    profiles:\n      \
         moa_test:\n        strategy: moa\n        topology:\n          aggregator: {{model: agg}}\n          \
         proposers: [{{model: openai/p-up, provider: fakeb}}]\n          settings: {{}}\n",
        up.api_base("p")
    ));
    yaml
}

#[tokio::test]
async fn a_topology_only_deployment_serves_its_strategy_but_not_clients() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;

    let (status, _, body) = proxy.chat(&chat_body("moa-test", "question")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("p"), 1, "the strategy reaches its own deployment");

    let (status, _, body) = proxy.chat(&chat_body(HIDDEN, "sneak in")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");

    up.set("agg", Behavior::status(500, "down"));
    let mut with_fallback = chat_body("agg", "sneak in by fallback");
    with_fallback["fallbacks"] = json!([HIDDEN]);
    let (status, _, body) = proxy.chat(&with_fallback).await;
    assert_eq!(status, 502, "{body}");

    assert_eq!(up.calls("p"), 1, "no client call reached it");
    let models = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap();
    let models = models.text().await.unwrap();
    assert!(!models.contains(HIDDEN), "{models}");
}
