//! `GET /info` through the real binary: version, uptime, every public model
//! with its deployments, aliases, composite profiles with their strategies
//! and the features on, as JSON and as text; no configured key, header
//! value or URL password ever appears; the model routes' key is required.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::proxy::Proxy;
use conclave_e2e::{FakeUpstream, deployment};
use serde_json::Value;

const MASTER: &str = "sk-info-master";
const UPSTREAM_KEY: &str = "sk-upstream-secret-4711";
const URL_PASSWORD: &str = "url-password-0815";
const HEADER_VALUE: &str = "header-secret-2342";

fn config(up: &FakeUpstream) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployment(
        "plain",
        "openai/plain-up",
        &up.api_base("plain"),
        &[],
    ));
    let with_password =
        up.api_base("second")
            .replacen("http://", &format!("http://user:{URL_PASSWORD}@"), 1);
    yaml.push_str(&format!(
        "  - model_name: plain\n    litellm_params:\n      model: openai/second-up\n      \
         api_base: {with_password}?token=abc\n      api_key: {UPSTREAM_KEY}\n      \
         extra_headers: {{x-secret: {HEADER_VALUE}}}\n    model_info: {{id: plain-second}}\n"
    ));
    for name in ["agg", "p1"] {
        yaml.push_str(&deployment(
            name,
            &format!("openai/{name}-up"),
            &up.api_base(name),
            &[],
        ));
    }
    yaml.push_str(
        "  - model_name: moa-test\n    litellm_params:\n      model: composite/profile/moa_test\n",
    );
    yaml.push_str("router_settings:\n  model_group_alias: {fast: plain}\n");
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {MASTER}\n  composite_llm:\n    profiles:\n      \
         moa_test:\n        strategy: moa\n        topology:\n          aggregator: {{model: agg}}\n          \
         proposers: [{{model: p1}}]\n          settings: {{}}\n"
    ));
    yaml
}

async fn get(proxy: &Proxy, path: &str) -> reqwest::Response {
    proxy
        .client
        .get(proxy.url(path))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
}

fn model<'a>(info: &'a Value, name: &str) -> &'a Value {
    info["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {info}"))
}

#[tokio::test]
async fn info_describes_models_profiles_and_features_as_json() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = get(&proxy, "/info").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["name"], "conclave");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(info["started_at"].as_str().unwrap().ends_with('Z'));

    let plain = model(&info, "plain");
    assert_eq!(plain["kind"], "group");
    let deployments = plain["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2, "{plain}");
    assert_eq!(deployments[0]["id"], "plain.0");
    assert_eq!(deployments[0]["provider"], "openai");
    assert_eq!(deployments[0]["model"], "plain-up");
    assert_eq!(deployments[0]["api_base"], up.api_base("plain"));
    assert_eq!(deployments[1]["id"], "plain-second");
    assert_eq!(deployments[1]["api_base"], up.api_base("second"));

    let alias = model(&info, "fast");
    assert_eq!(alias["kind"], "alias");
    assert_eq!(alias["target"], "plain");
    assert_eq!(alias["deployments"].as_array().unwrap().len(), 2);

    let composite = model(&info, "moa-test");
    assert_eq!(composite["kind"], "composite");
    assert_eq!(composite["profile"], "moa_test");
    assert_eq!(composite["strategy"], "moa");
    let profile = &info["profiles"][0];
    assert_eq!(profile["name"], "moa_test");
    assert_eq!(profile["strategy"], "moa");
    assert_eq!(profile["models"], serde_json::json!(["moa-test"]));

    let features = &info["features"];
    assert_eq!(features["auth"], "master_key");
    assert_eq!(features["responses_api"], true);
    assert_eq!(features["messages_api"], true);
    assert_eq!(features["composite_profiles"], true);
    assert_eq!(features["public_docs"], true);
}

#[tokio::test]
async fn info_as_text_reads_for_a_person() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = get(&proxy, "/info?format=text").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with(&format!("conclave {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains("  plain\n    - plain.0: openai/plain-up at "),
        "{text}"
    );
    assert!(text.contains("  fast  alias of plain"), "{text}");
    assert!(
        text.contains("moa-test  composite profile moa_test (strategy moa)"),
        "{text}"
    );
    assert!(text.contains("Features:\n"), "{text}");
}

#[tokio::test]
async fn no_configured_secret_appears_in_info() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    for path in ["/info", "/info?format=text"] {
        let body = get(&proxy, path).await.text().await.unwrap();
        for secret in [
            MASTER,
            UPSTREAM_KEY,
            URL_PASSWORD,
            HEADER_VALUE,
            "sk-test-key",
            "token=abc",
        ] {
            assert!(!body.contains(secret), "{secret} leaked by {path}: {body}");
        }
    }
}

#[tokio::test]
async fn info_needs_the_model_routes_key() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = proxy.client.get(proxy.url("/info")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let wrong = proxy
        .client
        .get(proxy.url("/info"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
