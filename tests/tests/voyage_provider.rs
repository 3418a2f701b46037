//! The `voyage/` provider through the real binary: a LiteLLM config naming
//! it loads (no deployment skipped), embeddings go to `{api_base}/embeddings`
//! in OpenAI's shape with the key from `VOYAGE_API_KEY`, and a deployment
//! without api_base uses Voyage's own base.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::FakeUpstream;
use conclave_e2e::proxy::Proxy;
use serde_json::{Value, json};

const VOYAGE_KEY: &str = "pa-voyage-test-key";

fn config(up: &FakeUpstream) -> String {
    format!(
        "model_list:\n  \
         - model_name: voyage-3\n    litellm_params:\n      model: voyage/voyage-3\n      \
         api_base: {}\n  \
         - model_name: voyage-default\n    litellm_params:\n      model: voyage/voyage-3-lite\n",
        up.api_base("voyage")
    )
}

async fn start(up: &FakeUpstream) -> Proxy {
    Proxy::start_with(&config(up), &[("VOYAGE_API_KEY", VOYAGE_KEY)], &[]).await
}

#[tokio::test]
async fn voyage_embeddings_reach_the_api_base_with_the_voyage_key() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let r = proxy
        .post(
            "/v1/embeddings",
            &json!({"model": "voyage-3", "input": ["hello", "world"], "input_type": "document"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-model-id"], "voyage-3.0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));

    let recorded = up.recorded();
    assert_eq!(recorded.len(), 1);
    let call = &recorded[0];
    assert_eq!(call.deployment, "voyage");
    assert_eq!(call.path, "/v1/embeddings");
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {VOYAGE_KEY}")
    );
    assert_eq!(call.body["model"], "voyage-3");
    assert_eq!(call.body["input"], json!(["hello", "world"]));
    // Voyage's own fields pass through untouched.
    assert_eq!(call.body["input_type"], "document");
}

#[tokio::test]
async fn a_config_naming_voyage_loads_every_deployment() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let models: Value = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["voyage-3", "voyage-default"]);
    assert!(!proxy.logs().contains("skipp"), "{}", proxy.logs());
    let info: Value = proxy
        .client
        .get(proxy.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let default = info["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "voyage-default")
        .unwrap();
    assert_eq!(default["deployments"][0]["provider"], "voyage");
    assert_eq!(
        default["deployments"][0]["api_base"],
        "https://api.voyageai.com/v1"
    );
}
