//! Shared helpers for the `routing_*` end-to-end tests: config text for
//! deployments on the fake upstream, and small readers for responses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{FakeUpstream, Proxy};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// One `model_list` entry of group `group` served by the fake deployment
/// `dep`, with `model_info.id: dep` so `x-conclave-model-id` names it.
/// `params` are extra `litellm_params` lines (`order`, `weight`, `rpm`, ...).
pub fn deployment(up: &FakeUpstream, group: &str, dep: &str, params: &[(&str, &str)]) -> String {
    let mut s = format!(
        "  - model_name: {group}\n    litellm_params:\n      model: openai/{dep}-model\n      api_base: {}\n      api_key: sk-test\n",
        up.api_base(dep)
    );
    for (k, v) in params {
        s.push_str(&format!("      {k}: {v}\n"));
    }
    s.push_str(&format!("    model_info:\n      id: {dep}\n"));
    s
}

/// A whole config: the deployments and `router_settings` given as one
/// `key: value` per line (flow style for lists and maps).
pub fn config(deployments: &[String], router_settings: &str) -> String {
    let settings: String = router_settings
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("  {l}\n"))
        .collect();
    if settings.is_empty() {
        format!(
            "model_list:\n{}router_settings: {{}}\n",
            deployments.concat()
        )
    } else {
        format!(
            "model_list:\n{}router_settings:\n{settings}",
            deployments.concat()
        )
    }
}

/// A response header as text ("" when absent).
pub fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The deployment that answered (`x-conclave-model-id`).
pub fn model_id(headers: &HeaderMap) -> String {
    header(headers, "x-conclave-model-id")
}

/// `x-conclave-attempts` as a number (0 when absent).
pub fn attempts(headers: &HeaderMap) -> u32 {
    header(headers, "x-conclave-attempts").parse().unwrap_or(0)
}

/// The error message of an OpenAI-shaped error body.
pub fn error_message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or("").to_owned()
}

/// Sends a streaming chat request; returns status, headers and the raw body.
pub async fn stream_chat(proxy: &Proxy, model: &str) -> (u16, HeaderMap, String) {
    let mut body = conclave_e2e::chat_body(model, "hi");
    body["stream"] = Value::Bool(true);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        proxy.post("/v1/chat/completions", &body),
    )
    .await
    .expect("stream request within 20 s");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("stream body within 20 s")
        .unwrap_or_default();
    (status, headers, text)
}

/// Sends a chat request, bounded to 20 s.
pub async fn chat(proxy: &Proxy, body: &Value) -> (u16, HeaderMap, Value) {
    tokio::time::timeout(Duration::from_secs(20), proxy.chat(body))
        .await
        .expect("chat request within 20 s")
}

/// A plain chat request for `model`, bounded to 20 s.
pub async fn ask(proxy: &Proxy, model: &str) -> (u16, HeaderMap, Value) {
    chat(proxy, &conclave_e2e::chat_body(model, "hi")).await
}
