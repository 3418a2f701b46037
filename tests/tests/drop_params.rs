//! LiteLLM's parameter handling, end to end: what a deployment of an OpenAI
//! reasoning model receives for the fields such models refuse, and what
//! `drop_params` and `additional_drop_params` leave out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::{FakeUpstream, Proxy, chat_body, deployment, error_object};
use serde_json::{Value, json};

/// A chat request to `model` with `fields` added.
fn request(model: &str, fields: Value) -> Value {
    let mut body = chat_body(model, "hi");
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Sends `body` and returns what upstream `name` received.
async fn sent(proxy: &Proxy, up: &FakeUpstream, name: &str, body: &Value) -> Value {
    let r = proxy.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    up.last_body(name).unwrap()
}

fn sampling() -> Value {
    json!({"temperature": 0.2, "top_p": 0.9, "presence_penalty": 0.5, "seed": 3})
}

#[tokio::test]
async fn a_reasoning_models_max_tokens_is_sent_as_max_completion_tokens() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}",
        deployment("reasoner", "openai/o3-mini", &up.api_base("o"), &[]),
        deployment("chat", "openai/gpt-4o", &up.api_base("g"), &[]),
    ))
    .await;
    let body = request("reasoner", json!({"max_tokens": 50}));
    let got = sent(&proxy, &up, "o", &body).await;
    assert_eq!(got["max_completion_tokens"], 50, "{got}");
    assert!(got.get("max_tokens").is_none(), "{got}");
    // A model that takes max_tokens gets it as written.
    let got = sent(
        &proxy,
        &up,
        "g",
        &request("chat", json!({"max_tokens": 50})),
    )
    .await;
    assert_eq!(got["max_tokens"], 50, "{got}");
    assert!(got.get("max_completion_tokens").is_none(), "{got}");
}

#[tokio::test]
async fn without_drop_params_refused_fields_are_sent_as_written() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}",
        deployment("reasoner", "openai/o3", &up.api_base("o"), &[]),
    ))
    .await;
    let got = sent(&proxy, &up, "o", &request("reasoner", sampling())).await;
    for field in ["temperature", "top_p", "presence_penalty", "seed"] {
        assert!(got.get(field).is_some(), "{field} missing: {got}");
    }
}

#[tokio::test]
async fn drop_params_in_litellm_settings_leaves_out_what_the_model_refuses() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}{}litellm_settings:\n  drop_params: true\n",
        deployment("reasoner", "openai/gpt-5-mini", &up.api_base("o"), &[]),
        deployment("chat", "openai/gpt-4o", &up.api_base("g"), &[]),
        deployment(
            "strict",
            "openai/o3",
            &up.api_base("s"),
            &["drop_params: false"]
        ),
    ))
    .await;
    let got = sent(&proxy, &up, "o", &request("reasoner", sampling())).await;
    assert_eq!(got["seed"], 3, "{got}");
    for field in ["temperature", "top_p", "presence_penalty"] {
        assert!(got.get(field).is_none(), "{field} sent: {got}");
    }
    // The one temperature a reasoning model takes is kept.
    let got = sent(
        &proxy,
        &up,
        "o",
        &request("reasoner", json!({"temperature": 1})),
    )
    .await;
    assert_eq!(got["temperature"], 1, "{got}");
    // Models that take the fields get them all.
    let got = sent(&proxy, &up, "g", &request("chat", sampling())).await;
    assert_eq!(got["temperature"], 0.2, "{got}");
    assert_eq!(got["top_p"], 0.9, "{got}");
    // A deployment's own `drop_params: false` wins over the global one.
    let got = sent(&proxy, &up, "s", &request("strict", sampling())).await;
    assert_eq!(got["temperature"], 0.2, "{got}");
}

#[tokio::test]
async fn a_request_may_ask_for_drop_params_itself() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}",
        deployment("reasoner", "openai/o4-mini", &up.api_base("o"), &[]),
    ))
    .await;
    let mut fields = sampling();
    fields["drop_params"] = json!(true);
    let got = sent(&proxy, &up, "o", &request("reasoner", fields)).await;
    assert_eq!(got["seed"], 3, "{got}");
    assert!(got.get("temperature").is_none(), "{got}");
    assert!(got.get("drop_params").is_none(), "{got}");
}

#[tokio::test]
async fn a_wildcard_deployment_applies_the_rules_of_the_model_asked_for() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}litellm_settings:\n  drop_params: true\n",
        deployment("*", "openai/*", &up.api_base("w"), &[]),
    ))
    .await;
    let mut fields = sampling();
    fields["max_tokens"] = json!(9);
    let got = sent(&proxy, &up, "w", &request("o3-pro", fields.clone())).await;
    assert_eq!(got["model"], "o3-pro");
    assert_eq!(got["max_completion_tokens"], 9, "{got}");
    assert!(got.get("top_p").is_none(), "{got}");
    let got = sent(&proxy, &up, "w", &request("gpt-4.1", fields)).await;
    assert_eq!(got["max_tokens"], 9, "{got}");
    assert_eq!(got["top_p"], 0.9, "{got}");
}

#[tokio::test]
async fn additional_drop_params_leave_fields_out_for_a_deployment_and_for_a_request() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}",
        deployment(
            "vllm",
            "openai/llama",
            &up.api_base("v"),
            &["additional_drop_params: [logit_bias, seed]"]
        ),
        deployment("chat", "openai/gpt-4o", &up.api_base("g"), &[]),
    ))
    .await;
    let fields = json!({"logit_bias": {"42": -100}, "seed": 3, "temperature": 0.5});
    let got = sent(&proxy, &up, "v", &request("vllm", fields.clone())).await;
    assert!(got.get("logit_bias").is_none(), "{got}");
    assert!(got.get("seed").is_none(), "{got}");
    assert_eq!(got["temperature"], 0.5, "{got}");
    let got = sent(&proxy, &up, "g", &request("chat", fields.clone())).await;
    assert_eq!(got["seed"], 3, "{got}");
    // A request's own list applies to whatever serves it.
    let mut own = fields;
    own["additional_drop_params"] = json!(["temperature", "user"]);
    own["user"] = json!("alice");
    let got = sent(&proxy, &up, "g", &request("chat", own)).await;
    assert!(got.get("temperature").is_none(), "{got}");
    assert!(got.get("user").is_none(), "{got}");
    assert!(got.get("additional_drop_params").is_none(), "{got}");
    assert_eq!(got["seed"], 3, "{got}");
}

#[tokio::test]
async fn malformed_drop_settings_in_a_request_are_refused_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}",
        deployment("chat", "openai/gpt-4o", &up.api_base("g"), &[]),
    ))
    .await;
    let too_many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    for (fields, named) in [
        (json!({"drop_params": "yes"}), "drop_params"),
        (
            json!({"additional_drop_params": "seed"}),
            "additional_drop_params",
        ),
        (
            json!({"additional_drop_params": [1]}),
            "additional_drop_params",
        ),
        (json!({"additional_drop_params": too_many}), "at most 64"),
    ] {
        let r = proxy
            .post("/v1/chat/completions", &request("chat", fields))
            .await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        let message = error_object(&body)["message"].as_str().unwrap().to_owned();
        assert!(message.contains(named), "{message}");
    }
    assert_eq!(up.calls("g"), 0);
}
