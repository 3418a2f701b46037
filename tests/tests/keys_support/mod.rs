//! Shared helpers for the `keys_*` end-to-end tests: a gateway with a
//! master key (and so the virtual-key store, SQLite beside the config),
//! priced deployments on the fake upstream, keys made through
//! `POST /key/generate`, and requests made with them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{FakeUpstream, Proxy, deployment};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The master key of every test gateway.
pub const MASTER: &str = "sk-master-for-tests";
/// USD per prompt token and per completion token of the priced deployments.
pub const INPUT_PRICE: f64 = 0.001;
pub const OUTPUT_PRICE: f64 = 0.002;
/// What one fake answer (5 prompt and 7 completion tokens) costs.
pub const CALL_COST: f64 = 5.0 * INPUT_PRICE + 7.0 * OUTPUT_PRICE;

/// A `model_list` entry for fake deployment `name` with the test prices in
/// its `model_info`.
pub fn priced(up: &FakeUpstream, name: &str) -> String {
    let mut entry = deployment(name, &format!("openai/{name}-up"), &up.api_base(name), &[]);
    entry.push_str(&format!(
        "    model_info:\n      input_cost_per_token: {INPUT_PRICE}\n      output_cost_per_token: {OUTPUT_PRICE}\n"
    ));
    entry
}

/// A config with priced deployments `names`, the master key, no retries,
/// and `extra` appended (more `model_list` entries must come first).
pub fn config(up: &FakeUpstream, names: &[&str], extra_entries: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in names {
        yaml.push_str(&priced(up, name));
    }
    yaml.push_str(extra_entries);
    yaml.push_str(&format!(
        "router_settings:\n  num_retries: 0\n  retry_after: 0\ngeneral_settings:\n  master_key: {MASTER}\n"
    ));
    yaml
}

/// Calls a management route with the master key; asserts it succeeded.
pub async fn manage(proxy: &Proxy, path: &str, body: Value) -> Value {
    let r = proxy
        .client
        .post(proxy.url(path))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path} {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A new virtual key with the settings in `body` (LiteLLM's field names).
pub async fn new_key(proxy: &Proxy, body: Value) -> String {
    let answer = manage(proxy, "/key/generate", body).await;
    answer["key"]
        .as_str()
        .expect("a key in the answer")
        .to_owned()
}

/// Posts a chat completion for `model` with `key`.
pub async fn chat_as(proxy: &Proxy, key: &str, model: &str) -> (u16, HeaderMap, Value) {
    chat_body_as(
        proxy,
        key,
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
}

/// Posts `body` to the chat route with `key`.
pub async fn chat_body_as(proxy: &Proxy, key: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, json)
}

/// The `error.code` of an error answer.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A header's value as text ("" when absent).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The key's `/key/info` record, once `caught_up` holds for it (the spend
/// writer writes in batches); the last one read after 10 s otherwise.
pub async fn key_info_once(proxy: &Proxy, key: &str, caught_up: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = proxy
            .client
            .get(proxy.url("/key/info"))
            .query(&[("key", key)])
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        let info: Value = r.json().await.unwrap();
        if caught_up(&info["info"]) || tokio::time::Instant::now() >= deadline {
            return info["info"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The key's recorded spend, once the spend writer has caught up with
/// `expected`; the last value read otherwise.
pub async fn key_spend(proxy: &Proxy, key: &str, expected: f64) -> f64 {
    let info = key_info_once(proxy, key, |info| {
        close(info["spend"].as_f64().unwrap_or(f64::NAN), expected)
    })
    .await;
    info["spend"].as_f64().unwrap_or(f64::NAN)
}

/// The spend-log rows of a request and of its sub-calls, once there are
/// `rows` of them (the writer batches); what is there otherwise.
pub async fn spend_rows(proxy: &Proxy, request_id: &str, rows: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let r = proxy
            .client
            .get(proxy.url("/spend/logs"))
            .query(&[("request_id", request_id)])
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        last = body
            .as_array()
            .cloned()
            .or_else(|| body["data"].as_array().cloned())
            .unwrap_or_default();
        if last.len() >= rows {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Equal within float rounding of a sum of a few prices.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A config with priced deployments `names`, the public composite models
/// `(model_name, profile)`, the master key and `profiles` (YAML for
/// `general_settings.composite_llm.profiles`, indented by six spaces).
pub fn composite(
    up: &FakeUpstream,
    names: &[&str],
    public: &[(&str, &str)],
    profiles: &str,
) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in names {
        yaml.push_str(&priced(up, name));
    }
    for (model_name, profile) in public {
        yaml.push_str(&format!(
            "  - model_name: {model_name}\n    litellm_params:\n      model: composite/profile/{profile}\n"
        ));
    }
    yaml.push_str(&format!(
        "router_settings:\n  num_retries: 0\n  retry_after: 0\ngeneral_settings:\n  master_key: {MASTER}\n  composite_llm:\n    profiles:\n{profiles}"
    ));
    yaml
}
