//! `openai/` deployments that serve the Responses API get `/v1/responses`
//! requests passed through natively, through the real binary against a fake
//! upstream in this file (it serves `/v1/responses` and, for the spend
//! checks, Anthropic's `/v1/messages`): unknown fields reach the upstream,
//! its JSON and its event stream (read with the official `openai` SDK) come
//! back as sent; a 500 is retried and falls back like chat;
//! `previous_response_id` is resolved by the gateway across native turns;
//! native Responses and Messages answers are priced from their own usage
//! names and counted in the token metric.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use conclave_e2e::Served;
use conclave_e2e::proxy::Proxy;
use conclave_e2e::sse_payloads;
use serde_json::{Value, json};

const UPSTREAM_KEY: &str = "sk-upstream-responses-key";
const MASTER: &str = "sk-responses-native-master";
const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;

/// One request the fake received.
#[derive(Clone)]
struct Call {
    name: String,
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    /// How many calls to answer 500 before answering.
    failing: AtomicUsize,
}

/// A fake upstream: `/{name}/v1/responses` answers a `response` (JSON or
/// the Responses event stream) with usage and an extra field of its own;
/// `/{name}/v1/messages` answers an Anthropic `message`. Deployments named
/// `down` always answer 500.
struct FakeNative {
    server: Served,
    shared: Arc<Shared>,
}

impl FakeNative {
    async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/{name}/v1/{*rest}", post(answer))
            .with_state(shared.clone());
        Self {
            server: Served::start(app).await,
            shared,
        }
    }

    fn api_base(&self, name: &str) -> String {
        format!("http://{}/{name}/v1", self.server.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

/// The `response` the fake answers for `body`.
fn response_object(body: &Value, id: &str) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "model": body["model"],
        "output": [{
            "id": format!("msg_{id}"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello natively", "annotations": []}],
        }],
        "parallel_tool_calls": true,
        "store": body["store"],
        "previous_response_id": body["previous_response_id"],
        "tools": body["tools"].as_array().cloned().unwrap_or_default(),
        "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 15},
        "upstream_only_field": {"kept": true},
    })
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    Path((name, rest)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let n = {
        let mut calls = shared.calls.lock().unwrap();
        calls.push(Call {
            name: name.clone(),
            path: format!("/v1/{rest}"),
            headers,
            body: body.clone(),
        });
        calls.len()
    };
    let fail_once = shared
        .failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if name == "down" || fail_once {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            r#"{"error":{"message":"upstream exploded","type":"server_error","code":null}}"#,
        )
            .into_response();
    }
    if rest == "messages" {
        return anthropic(&body);
    }
    let id = format!("resp_up{n}");
    if body["stream"] != true {
        return axum::Json(response_object(&body, &id)).into_response();
    }
    let done = response_object(&body, &id);
    let mut open = done.clone();
    open["status"] = json!("in_progress");
    open["output"] = json!([]);
    open["usage"] = Value::Null;
    let item = &done["output"][0];
    let mut empty_item = item.clone();
    empty_item["content"] = json!([]);
    empty_item["status"] = json!("in_progress");
    let events = vec![
        json!({"type": "response.created", "response": open}),
        json!({"type": "response.in_progress", "response": open}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": empty_item}),
        json!({"type": "response.content_part.added", "item_id": item["id"], "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": "Hello", "logprobs": []}),
        json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": " natively", "logprobs": []}),
        json!({"type": "response.output_text.done", "item_id": item["id"], "output_index": 0, "content_index": 0, "text": "Hello natively", "logprobs": []}),
        json!({"type": "response.content_part.done", "item_id": item["id"], "output_index": 0, "content_index": 0, "part": item["content"][0]}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": done}),
    ];
    // `cut` breaks off in the middle of its text.
    let kept = if name == "cut" { 6 } else { events.len() };
    let text: String = events
        .into_iter()
        .take(kept)
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())
        })
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

/// An Anthropic `message` (or its events) with cache usage.
fn anthropic(body: &Value) -> Response {
    let usage = json!({"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 7});
    if body["stream"] != true {
        return axum::Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": "Hello from claude"}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant", "model": body["model"], "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ];
    let text: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

/// A priced `model_list` entry `name` for `model` on the fake's `base`.
fn entry(name: &str, model: &str, base: &str, extra: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: {model}\n      api_base: {base}\n      \
         api_key: {UPSTREAM_KEY}\n{extra}    model_info:\n      supports_responses: true\n      \
         input_cost_per_token: {INPUT_PRICE}\n      output_cost_per_token: {OUTPUT_PRICE}\n"
    )
}

fn config(fake: &FakeNative, tail: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&entry(
        "gpt-native",
        "openai/gpt-up",
        &fake.api_base("a"),
        "",
    ));
    yaml.push_str(&entry(
        "gpt-down",
        "openai/gpt-up",
        &fake.api_base("down"),
        "",
    ));
    yaml.push_str(&entry(
        "gpt-cut",
        "openai/gpt-up",
        &fake.api_base("cut"),
        "",
    ));
    yaml.push_str(&entry(
        "claude",
        "anthropic/claude-up",
        &format!("http://{}/c", fake.server.addr),
        "",
    ));
    yaml.push_str(tail);
    yaml.push_str(&format!(
        "litellm_settings:\n  success_callback: [prometheus]\n\
         general_settings:\n  master_key: {MASTER}\n"
    ));
    yaml
}

async fn send(proxy: &Proxy, path: &str, key: &str, body: &Value) -> reqwest::Response {
    proxy
        .client
        .post(proxy.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn without_store(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.remove("store");
    }
    v
}

#[tokio::test]
async fn a_native_request_of_the_wrong_type_is_refused_as_a_translated_one_is() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    // Built-in tools only a native deployment serves, and a `stream` that is
    // no boolean: refused by name, never read as "not streaming".
    for (field, value) in [("stream", json!("true")), ("store", json!(1))] {
        let mut request = json!({"model": "gpt-native", "input": "hello",
            "tools": [{"type": "web_search"}]});
        request[field] = value;
        let r = send(&proxy, "/v1/responses", MASTER, &request).await;
        assert_eq!(r.status(), 400, "{field}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["param"], field, "{body}");
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_native_answer_keeps_unknown_fields_both_ways() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let request = json!({
        "model": "gpt-native",
        "input": "hello",
        "tools": [{"type": "web_search"}],
        "include": ["reasoning.encrypted_content"],
        "future_field": {"x": [1, 2]},
    });
    let r = send(&proxy, "/v1/responses", MASTER, &request).await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let answer: Value = r.json().await.unwrap();

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/v1/responses");
    assert_eq!(
        call.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    assert_eq!(call.body["model"], "gpt-up");
    assert_eq!(call.body["future_field"], json!({"x": [1, 2]}));
    assert_eq!(call.body["tools"], json!([{"type": "web_search"}]));
    assert_eq!(call.body["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(call.body["store"], false, "the gateway keeps the state");
    let raw = call.body.to_string();
    assert!(!raw.contains("conclave"), "{raw}");
    assert!(call.body.get("messages").is_none(), "{raw}");

    // The upstream's answer, untouched but for `store`, which says the
    // gateway kept it.
    let expected = response_object(&call.body, "resp_up1");
    assert_eq!(without_store(answer.clone()), without_store(expected));
    assert_eq!(answer["store"], true);
    let stored = proxy
        .client
        .get(proxy.url("/v1/responses/resp_up1"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let stored: Value = stored.json().await.unwrap();
    assert_eq!(stored["upstream_only_field"], json!({"kept": true}));
}

const SDK_STREAM: &str = r#"
import json, sys
import openai

base_url, key = sys.argv[1:3]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
types, text, final = [], "", None
for event in client.responses.create(model="gpt-native", input="hello", stream=True):
    types.append(event.type)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        final = event.response
print(json.dumps({"types": types, "text": text, "id": final.id, "output_text": final.output_text,
                  "input_tokens": final.usage.input_tokens}))
"#;

const SDK_BROKEN_STREAM: &str = r#"
import json, sys
import openai

base_url, key = sys.argv[1:3]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
seen, ids = [], {}
with client.responses.stream(model="gpt-cut", input="hello") as stream:
    for event in stream:
        seen.append([event.type, event.sequence_number])
        if event.type in ("response.created", "response.failed"):
            ids[event.type] = event.response.id
        if event.type == "response.failed":
            ids["failed_model"] = event.response.model
            ids["failed_error"] = event.response.error.message
            ids["failed_code"] = event.response.error.code
        if event.type == "error":
            ids["error"] = event.message
print(json.dumps({"seen": seen, "ids": ids}))
"#;

/// A native stream that breaks off ends with `response.failed` for the
/// upstream's own response, numbered after its last event: the SDK's
/// stream helper, which checks both, reads it to the end.
#[tokio::test]
async fn a_broken_native_stream_fails_as_the_upstreams_response() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let base = proxy.url("/v1");
    let Some(out) = sdk_support::run_script(
        &proxy,
        "native_broken.py",
        SDK_BROKEN_STREAM,
        &[&base, MASTER],
    )
    .await
    else {
        return;
    };
    let seen = out["seen"].as_array().unwrap();
    let names: Vec<&str> = seen.iter().map(|e| e[0].as_str().unwrap()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["response.failed", "error"],
        "{out}"
    );
    for (n, event) in seen.iter().enumerate() {
        assert_eq!(
            event[1], n as u64,
            "numbered on from the upstream's events: {out}"
        );
    }
    let ids = &out["ids"];
    assert_eq!(ids["response.created"], "resp_up1");
    assert_eq!(ids["response.failed"], "resp_up1", "{out}");
    assert_eq!(
        ids["failed_model"], "gpt-up",
        "the upstream's response, as created"
    );
    assert!(
        ids["error"].as_str().unwrap().contains("broke off"),
        "{out}"
    );
    assert_eq!(ids["failed_error"], ids["error"]);
    assert_eq!(ids["failed_code"], "server_error");
}

/// A native Responses deployment's temperature default and `extra_body`
/// reach the upstream's body when the client sets neither.
#[tokio::test]
async fn a_native_deployments_defaults_and_extra_body_join_the_request() {
    let fake = FakeNative::start().await;
    let tail = entry(
        "gpt-tuned",
        "openai/gpt-up",
        &fake.api_base("a"),
        "      temperature: 0.2\n      extra_body: {service_tier: flex}\n",
    );
    let proxy = Proxy::start(&config(&fake, &tail)).await;
    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-tuned", "input": "hello"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-tuned", "input": "hello", "temperature": 1.0}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let calls = fake.calls();
    assert_eq!(calls[0].path, "/v1/responses");
    assert_eq!(calls[0].body["temperature"], 0.2, "{}", calls[0].body);
    assert_eq!(calls[0].body["service_tier"], "flex", "{}", calls[0].body);
    assert_eq!(calls[1].body["temperature"], 1.0, "the client's own value");
}

#[tokio::test]
async fn a_native_stream_reaches_the_openai_sdk_event_for_event() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let base = proxy.url("/v1");
    let Some(out) =
        sdk_support::run_script(&proxy, "native_responses.py", SDK_STREAM, &[&base, MASTER]).await
    else {
        return;
    };
    assert_eq!(
        out["types"],
        json!([
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ])
    );
    assert_eq!(out["text"], "Hello natively");
    assert_eq!(out["output_text"], "Hello natively");
    assert_eq!(out["id"], "resp_up1");
    assert_eq!(out["input_tokens"], 11);
    let calls = fake.calls();
    assert_eq!(calls[0].body["stream"], true);
    assert_eq!(calls[0].path, "/v1/responses");
}

#[tokio::test]
async fn a_native_stream_keeps_the_upstreams_payloads() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-native", "input": "hello", "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let text = r.text().await.unwrap();
    let payloads: Vec<Value> = sse_payloads(&text)
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(payloads.len(), 10, "{text}");
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(p["sequence_number"], i, "{p}");
    }
    assert_eq!(payloads[4]["delta"], "Hello");
    assert_eq!(
        payloads[9]["response"]["upstream_only_field"],
        json!({"kept": true})
    );
    // Each event is named after its type.
    assert!(text.contains("event: response.completed\n"), "{text}");
}

#[tokio::test]
async fn a_native_500_is_retried_and_falls_back() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(
        &fake,
        "router_settings:\n  num_retries: 1\n  retry_after: 0\n  fallbacks: [{gpt-down: [gpt-native]}]\n",
    ))
    .await;
    fake.shared.failing.store(1, Ordering::SeqCst);
    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-native", "input": "hello"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    assert_eq!(r.headers()["x-conclave-attempts"], "2");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "response");
    assert_eq!(fake.calls().len(), 2);

    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-down", "input": "hello", "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    assert_eq!(r.headers()["x-conclave-fallback"], "gpt-native");
    let text = r.text().await.unwrap();
    assert!(text.contains("Hello natively"), "{text}");
    let names: Vec<String> = fake.calls().iter().map(|c| c.name.clone()).collect();
    assert_eq!(names[2..], ["down", "down", "a"], "{names:?}");
}

#[tokio::test]
async fn previous_response_id_continues_a_native_turn() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let first: Value = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-native", "input": "first question"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let r = send(
        &proxy,
        "/v1/responses",
        MASTER,
        &json!({"model": "gpt-native", "input": "second question", "previous_response_id": id}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(second["store"], true);

    let sent = &fake.calls()[1].body;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    assert_eq!(sent["store"], false);
    let input = sent["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{sent}");
    assert_eq!(input[0]["content"][0]["text"], "first question");
    // With `store: false` the upstream kept no items: they go without
    // their ids, which it would refuse as not found.
    assert!(input.iter().all(|item| item.get("id").is_none()), "{sent}");
    assert_eq!(input[1]["role"], "assistant");
    assert_eq!(input[1]["content"][0]["text"], "Hello natively");
    assert_eq!(input[2]["content"][0]["text"], "second question");

    // The stored conversation lists the native turns too.
    let items: Value = proxy
        .client
        .get(proxy.url(&format!(
            "/v1/responses/{}/input_items?order=asc",
            second["id"].as_str().unwrap()
        )))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(items["data"].as_array().unwrap().len(), 3, "{items}");
}

/// The spend of `key`, once it is `expected` (or after 10 seconds).
async fn key_spend(proxy: &Proxy, key: &str, expected: f64) -> f64 {
    let mut last = f64::NAN;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let info: Value = proxy
            .client
            .get(proxy.url("/key/info"))
            .query(&[("key", key)])
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        last = info["info"]["spend"].as_f64().unwrap_or(f64::NAN);
        if (last - expected).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// The sum of `gen_ai_client_token_usage` observations of `kind`.
fn token_sum(metrics: &str, kind: &str) -> f64 {
    let label = format!("gen_ai_token_type=\"{kind}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("gen_ai_client_token_usage_sum{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn native_messages_and_responses_answers_are_priced_and_counted() {
    let fake = FakeNative::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let key: Value = send(&proxy, "/key/generate", MASTER, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();

    // Anthropic: 10 + 100 cache reads + 20 cache writes in, 7 out, priced
    // as input (the price table has no cache price); JSON and streamed.
    let messages = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let r = send(&proxy, "/v1/messages", &key, &messages).await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["usage"]["cache_read_input_tokens"], 100);
    let mut streamed = messages.clone();
    streamed["stream"] = json!(true);
    let r = send(&proxy, "/v1/messages", &key, &streamed).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("message_stop"), "{text}");
    let messages_cost = 130.0 * INPUT_PRICE + 7.0 * OUTPUT_PRICE;

    // Responses: 11 in, 4 out; JSON and streamed.
    let responses = json!({"model": "gpt-native", "input": "hi"});
    let r = send(&proxy, "/v1/responses", &key, &responses).await;
    assert_eq!(r.status(), 200);
    let cost: f64 = r.headers()["x-conclave-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let responses_cost = 11.0 * INPUT_PRICE + 4.0 * OUTPUT_PRICE;
    assert!((cost - responses_cost).abs() < 1e-9, "{cost}");
    let mut streamed = responses.clone();
    streamed["stream"] = json!(true);
    let r = send(&proxy, "/v1/responses", &key, &streamed).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("response.completed"), "{text}");

    let expected = 2.0 * messages_cost + 2.0 * responses_cost;
    let spent = key_spend(&proxy, &key, expected).await;
    assert!((spent - expected).abs() < 1e-9, "{spent} != {expected}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (input, output) = loop {
        let metrics = proxy.metrics(Some(MASTER)).await;
        let sums = (token_sum(&metrics, "input"), token_sum(&metrics, "output"));
        if sums == (2.0 * 130.0 + 2.0 * 11.0, 2.0 * 7.0 + 2.0 * 4.0)
            || tokio::time::Instant::now() > deadline
        {
            break sums;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(input, 2.0 * 130.0 + 2.0 * 11.0);
    assert_eq!(output, 2.0 * 7.0 + 2.0 * 4.0);
}
