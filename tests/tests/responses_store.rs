//! Stored Responses API responses through the real binary: a stored
//! answer is fetched by `GET /v1/responses/{id}`, `previous_response_id`
//! sends the earlier turn upstream, streamed answers are stored and
//! chainable, `store: false` keeps nothing, `DELETE` removes, another key
//! reaches nothing, size and configuration bounds hold, on SQLite and on
//! PostgreSQL, and the official `openai` client chains responses against a
//! plain model group and a composite profile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;
mod sdk_support;

use std::time::Duration;

use conclave_e2e::services::postgres_database;
use conclave_e2e::{Behavior, FakeUpstream, Proxy, deployment};
use keys_support::{MASTER, new_key};
use reqwest::Method;
use serde_json::{Value, json};

/// Calls `path` with `key` (none: no header); the status and the JSON body
/// (a string when the body is not JSON).
async fn send(
    proxy: &Proxy,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = proxy.client.request(method, proxy.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// Creates a response; asserts it was answered.
async fn create(proxy: &Proxy, key: Option<&str>, body: Value) -> Value {
    let (status, answer) = send(proxy, Method::POST, "/v1/responses", key, Some(&body)).await;
    assert_eq!(status, 200, "{body}: {answer}\n{}", proxy.logs());
    answer
}

/// `GET /v1/responses/{id}`.
async fn fetch(proxy: &Proxy, key: Option<&str>, id: &str) -> (u16, Value) {
    send(
        proxy,
        Method::GET,
        &format!("/v1/responses/{id}"),
        key,
        None,
    )
    .await
}

/// Asserts an OpenAI-shaped 404 naming `id`, with `param` and `code`.
fn assert_not_found(status: u16, body: &Value, id: &str, param: &str, code: &str) {
    assert_eq!(status, 404, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    assert_eq!(error["param"], param, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().unwrap().contains(id), "{body}");
}

/// The messages the fake deployment `name` received last.
fn last_messages(up: &FakeUpstream, name: &str) -> Value {
    up.last_body(name).unwrap()["messages"].clone()
}

/// The SSE events of a Responses stream: (name, data).
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// A gateway with the master key (and so the key store) and the priced
/// model group `m`; `extra` lines go under `general_settings`.
async fn keyed_proxy(up: &FakeUpstream, extra: &[&str]) -> Proxy {
    let mut yaml = keys_support::config(up, &["m"], "");
    for line in extra {
        yaml.push_str(&format!("  {line}\n"));
    }
    Proxy::start(&yaml).await
}

/// A gateway without a master key, with model group `m`; `extra` lines go
/// under `general_settings`.
async fn open_proxy(up: &FakeUpstream, extra: &[&str]) -> Proxy {
    let mut yaml = format!(
        "model_list:\n{}",
        deployment("m", "openai/m-up", &up.api_base("m"), &[])
    );
    if !extra.is_empty() {
        yaml.push_str("general_settings:\n");
    }
    for line in extra {
        yaml.push_str(&format!("  {line}\n"));
    }
    Proxy::start(&yaml).await
}

/// Store, fetch, chain, list, isolate and delete, with two virtual keys.
/// Returns the first key and the id of a response it keeps.
async fn conversation_scenario(proxy: &Proxy, up: &FakeUpstream) -> (String, String) {
    let alice = new_key(proxy, json!({})).await;
    let bob = new_key(proxy, json!({})).await;
    up.set("m", Behavior::ok("Hello Ada."));
    let first = create(
        proxy,
        Some(&alice),
        json!({"model": "m", "input": "My name is Ada.", "instructions": "Be old."}),
    )
    .await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert!(first_id.starts_with("resp_"), "{first}");
    assert_eq!(first["store"], true, "{first}");
    assert_eq!(first["previous_response_id"], Value::Null, "{first}");

    // The stored object is the answer as it was sent.
    let (status, got) = fetch(proxy, Some(&alice), &first_id).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, first);
    let (status, got) = send(
        proxy,
        Method::GET,
        &format!("/responses/{first_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!((status, &got), (200, &first));

    // The next turn carries the first one upstream; instructions are the
    // new request's only.
    up.set("m", Behavior::ok("Your name is Ada."));
    let second = create(
        proxy,
        Some(&alice),
        json!({"model": "m", "input": "What is my name?", "instructions": "Be new.",
               "previous_response_id": first_id}),
    )
    .await;
    assert_eq!(
        second["previous_response_id"],
        first_id.as_str(),
        "{second}"
    );
    assert_eq!(
        last_messages(up, "m"),
        json!([
            {"role": "system", "content": "Be new."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "What is my name?"},
        ])
    );
    let second_id = second["id"].as_str().unwrap().to_owned();

    // A third turn continues the chain through the second.
    create(
        proxy,
        Some(&alice),
        json!({"model": "m", "input": "Thanks.", "previous_response_id": second_id}),
    )
    .await;
    let messages = last_messages(up, "m");
    let texts: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "My name is Ada.",
            "Hello Ada.",
            "What is my name?",
            "Your name is Ada.",
            "Thanks."
        ]
    );

    // The input items of the second response: the whole conversation.
    let items_path = format!("/v1/responses/{second_id}/input_items");
    let (status, list) = send(proxy, Method::GET, &items_path, Some(&alice), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    assert_eq!(list["has_more"], false);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{list}");
    // Newest first by default.
    assert_eq!(data[0]["content"][0]["text"], "What is my name?", "{list}");
    assert_eq!(data[1]["role"], "assistant", "{list}");
    assert_eq!(list["first_id"], data[0]["id"]);
    assert_eq!(list["last_id"], data[2]["id"]);
    let asc = format!("{items_path}?order=asc&limit=1");
    let (status, page) = send(proxy, Method::GET, &asc, Some(&alice), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["has_more"], true, "{page}");
    assert_eq!(page["data"][0]["content"][0]["text"], "My name is Ada.");
    let after = page["last_id"].as_str().unwrap();
    let next = format!("{items_path}?order=asc&limit=5&after={after}");
    let (_, page) = send(proxy, Method::GET, &next, Some(&alice), None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["has_more"], false, "{page}");

    // Another key reaches none of it, and nothing goes upstream for it.
    let calls = up.calls("m");
    let (status, body) = fetch(proxy, Some(&bob), &first_id).await;
    assert_not_found(
        status,
        &body,
        &first_id,
        "response_id",
        "response_not_found",
    );
    let (status, body) = send(
        proxy,
        Method::DELETE,
        &format!("/v1/responses/{first_id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_not_found(
        status,
        &body,
        &first_id,
        "response_id",
        "response_not_found",
    );
    let (status, body) = send(proxy, Method::GET, &items_path, Some(&bob), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = send(
        proxy,
        Method::POST,
        "/v1/responses",
        Some(&bob),
        Some(&json!({"model": "m", "input": "hi", "previous_response_id": first_id})),
    )
    .await;
    assert_not_found(
        status,
        &body,
        &first_id,
        "previous_response_id",
        "previous_response_not_found",
    );
    // The master key is an owner of its own too.
    let (status, _) = fetch(proxy, Some(MASTER), &first_id).await;
    assert_eq!(status, 404);
    assert_eq!(up.calls("m"), calls, "no upstream call for a refused chain");

    // Deleted: gone for good.
    let (status, body) = send(
        proxy,
        Method::DELETE,
        &format!("/v1/responses/{second_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": second_id, "object": "response.deleted", "deleted": true})
    );
    let (status, body) = fetch(proxy, Some(&alice), &second_id).await;
    assert_not_found(
        status,
        &body,
        &second_id,
        "response_id",
        "response_not_found",
    );
    let (status, _) = send(
        proxy,
        Method::DELETE,
        &format!("/responses/{second_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 404);
    (alice, first_id)
}

#[tokio::test]
async fn a_conversation_is_stored_chained_and_kept_per_key_on_sqlite() {
    let up = FakeUpstream::start().await;
    let proxy = keyed_proxy(&up, &[]).await;
    conversation_scenario(&proxy, &up).await;
    assert!(proxy.dir.path().join("conclave.db").exists());
}

#[tokio::test]
async fn a_conversation_is_stored_chained_and_kept_per_key_on_postgres() {
    let test = "a_conversation_is_stored_chained_and_kept_per_key_on_postgres";
    let Some(url) = postgres_database(test).await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let database_url = format!("database_url: {url}");
    let proxy = keyed_proxy(&up, &[&database_url]).await;
    let (alice, first_id) = conversation_scenario(&proxy, &up).await;
    assert!(!proxy.dir.path().join("conclave.db").exists());
    let first = fetch(&proxy, Some(&alice), &first_id).await.1;
    drop(proxy);
    // Another instance on the same database continues the conversation.
    let proxy = keyed_proxy(&up, &[&database_url]).await;
    let (status, again) = fetch(&proxy, Some(&alice), &first_id).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    up.set("m", Behavior::ok("still Ada"));
    create(
        &proxy,
        Some(&alice),
        json!({"model": "m", "input": "And now?", "previous_response_id": first_id}),
    )
    .await;
    assert_eq!(last_messages(&up, "m")[0]["content"], "My name is Ada.");
}

#[tokio::test]
async fn a_streamed_response_is_stored_and_chainable_on_an_open_gateway() {
    let up = FakeUpstream::start().await;
    up.set(
        "m",
        Behavior::ok("streamed first answer").chunked(3, Duration::ZERO),
    );
    let proxy = open_proxy(&up, &[]).await;
    assert!(
        !proxy.dir.path().join("conclave.db").exists(),
        "nothing is created before a response is stored"
    );
    let r = proxy
        .client
        .post(proxy.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "stream it", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let (name, completed) = events.last().unwrap();
    assert_eq!(name, "response.completed");
    let response = &completed["response"];
    assert_eq!(response["store"], true, "{response}");
    let id = response["id"].as_str().unwrap();
    let (status, got) = fetch(&proxy, None, id).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(&got, response);
    assert_eq!(
        got["output"][0]["content"][0]["text"],
        "streamed first answer"
    );
    assert!(proxy.dir.path().join("conclave.db").exists());

    // A streamed continuation, itself stored.
    let r = proxy
        .client
        .post(proxy.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "and more", "stream": true,
                      "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    let events = sse_events(&r.text().await.unwrap());
    let second = &events.last().unwrap().1["response"];
    assert_eq!(second["previous_response_id"], id);
    assert_eq!(
        last_messages(&up, "m"),
        json!([
            {"role": "user", "content": "stream it"},
            {"role": "assistant", "content": "streamed first answer"},
            {"role": "user", "content": "and more"},
        ])
    );
    let (status, _) = fetch(&proxy, None, second["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn store_false_keeps_nothing() {
    let up = FakeUpstream::start().await;
    let proxy = keyed_proxy(&up, &[]).await;
    let answer = create(
        &proxy,
        Some(MASTER),
        json!({"model": "m", "input": "forget this", "store": false}),
    )
    .await;
    assert_eq!(answer["store"], false, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let (status, body) = fetch(&proxy, Some(MASTER), id).await;
    assert_not_found(status, &body, id, "response_id", "response_not_found");
    let (status, body) = send(
        &proxy,
        Method::POST,
        "/v1/responses",
        Some(MASTER),
        Some(&json!({"model": "m", "input": "hi", "previous_response_id": id})),
    )
    .await;
    assert_not_found(
        status,
        &body,
        id,
        "previous_response_id",
        "previous_response_not_found",
    );
    // `store` is the gateway's: it is not sent upstream.
    create(
        &proxy,
        Some(MASTER),
        json!({"model": "m", "input": "x", "store": true}),
    )
    .await;
    assert!(up.last_body("m").unwrap().get("store").is_none());
}

#[tokio::test]
async fn malformed_fields_are_refused_naming_them_and_nothing_is_stored() {
    let up = FakeUpstream::start().await;
    let proxy = open_proxy(&up, &[]).await;
    let cases = [
        (json!({"model": "m", "input": "hi", "store": "no"}), "store"),
        (
            json!({"model": "m", "input": "hi", "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "m", "input": "hi", "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "m", "input": "hi", "instructions": 5}),
            "instructions",
        ),
        (
            json!({"model": "m", "input": "hi", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
            "file_id",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = send(&proxy, Method::POST, "/v1/responses", None, Some(&body)).await;
        assert_eq!(status, 400, "{body}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn listed_input_messages_hold_their_content_as_parts() {
    let up = FakeUpstream::start().await;
    let proxy = open_proxy(&up, &[]).await;
    let answer = create(
        &proxy,
        None,
        json!({"model": "m", "input": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ]}),
    )
    .await;
    let id = answer["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}/input_items?order=asc");
    let (status, items) = send(&proxy, Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{items}");
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{items}");
    assert_eq!(
        data[0]["content"],
        json!([{"type": "input_text", "text": "first question"}])
    );
    assert_eq!(data[1]["content"][0]["type"], "output_text", "{items}");
    assert_eq!(data[1]["content"][0]["text"], "first answer", "{items}");
    assert!(
        data.iter().all(|item| item["status"] == "completed"),
        "{items}"
    );
    let path = format!("/v1/responses/{id}?stream=true");
    let (status, body) = send(&proxy, Method::GET, &path, None, None).await;
    assert_eq!(status, 400, "nothing to replay: {body}");
}

#[tokio::test]
async fn store_responses_false_turns_storing_off() {
    let up = FakeUpstream::start().await;
    let proxy = open_proxy(&up, &["store_responses: false"]).await;
    let answer = create(&proxy, None, json!({"model": "m", "input": "hi"})).await;
    assert_eq!(answer["store"], false, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let (status, body) = fetch(&proxy, None, id).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store_responses"),
        "{body}"
    );
    let (status, body) = send(
        &proxy,
        Method::POST,
        "/v1/responses",
        None,
        Some(&json!({"model": "m", "input": "hi", "previous_response_id": id})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "previous_response_id", "{body}");
    assert!(!proxy.dir.path().join("conclave.db").exists());
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_is_served_but_not_stored() {
    let up = FakeUpstream::start().await;
    up.set("m", Behavior::ok(&"long answer ".repeat(200)));
    let proxy = open_proxy(&up, &["max_stored_response_mb: 0.001"]).await;
    let answer = create(&proxy, None, json!({"model": "m", "input": "hi"})).await;
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["store"], false, "{answer}");
    let (status, _) = fetch(&proxy, None, answer["id"].as_str().unwrap()).await;
    assert_eq!(status, 404);
    assert!(
        proxy.logs().contains("too large to store"),
        "{}",
        proxy.logs()
    );
    // A small one still is.
    up.set("m", Behavior::ok("short"));
    let answer = create(&proxy, None, json!({"model": "m", "input": "hi"})).await;
    assert_eq!(answer["store"], true, "{answer}");
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_is_a_clear_error_not_a_failed_answer() {
    let up = FakeUpstream::start().await;
    // A directory that does not exist: SQLite cannot create the file.
    let proxy = open_proxy(
        &up,
        &["database_url: sqlite:///nonexistent-conclave-dir/x/responses.db"],
    )
    .await;
    let answer = create(&proxy, None, json!({"model": "m", "input": "hi"})).await;
    assert_eq!(answer["store"], false, "{answer}");
    let (status, body) = fetch(&proxy, None, answer["id"].as_str().unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["code"], "response_store_unavailable",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("response store"),
        "{body}"
    );
}

#[tokio::test]
async fn a_retention_period_is_checked_at_start() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n{}general_settings:\n  responses_retention_period: soon\n",
        deployment("m", "openai/m-up", &up.api_base("m"), &[])
    );
    let dir = conclave_e2e::proxy::TempDir::new();
    let config = dir.write("config.yaml", &yaml);
    let out = conclave_e2e::proxy::run_conclave(
        &[
            "serve",
            "--port",
            "0",
            "--config",
            &config.display().to_string(),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("responses_retention_period"), "{stderr}");
}

const SCRIPT: &str = r#"
import json, sys
import openai

base_url, model, key = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
first = client.responses.create(model=model, input="My name is Ada.", instructions="Be brief.")
second = client.responses.create(model=model, input="What is my name?", previous_response_id=first.id)
fetched = client.responses.retrieve(first.id)
items = client.responses.input_items.list(second.id, order="asc")
with client.responses.stream(model=model, input="Stream on.", previous_response_id=second.id) as stream:
    for _ in stream:
        pass
    streamed = stream.get_final_response()
third = client.responses.create(model=model, input="Last.", previous_response_id=streamed.id)
client.responses.delete(first.id)
try:
    client.responses.retrieve(first.id)
    gone = None
except openai.NotFoundError as e:
    gone = {"status": e.status_code, "code": e.code}
out = {
    "first": first.id, "first_text": first.output_text,
    "second_previous": second.previous_response_id, "second_text": second.output_text,
    "fetched_id": fetched.id, "fetched_text": fetched.output_text,
    "item_roles": [getattr(i, "role", i.type) for i in items.data],
    "streamed_previous": streamed.previous_response_id,
    "third_previous": third.previous_response_id,
    "gone": gone,
}
print(json.dumps(out))
"#;

/// Runs the chaining script; `None` (printed) when the client is missing.
async fn sdk_chain(proxy: &Proxy, model: &str, key: &str) -> Option<Value> {
    let base = proxy.url("/v1");
    sdk_support::run_script(proxy, "responses_chain.py", SCRIPT, &[&base, model, key]).await
}

/// `roles`: the first turn's conversation as listed (a composite answer
/// has a reasoning item before its message).
fn check_chain(out: &Value, roles: Value) {
    assert_eq!(out["first_text"], "answer", "{out}");
    assert_eq!(out["second_previous"], out["first"], "{out}");
    assert_eq!(out["fetched_id"], out["first"], "{out}");
    assert_eq!(out["fetched_text"], "answer", "{out}");
    assert_eq!(out["item_roles"], roles, "{out}");
    assert!(out["streamed_previous"].as_str().is_some(), "{out}");
    assert!(out["third_previous"].as_str().is_some(), "{out}");
    assert_eq!(out["gone"]["status"], 404, "{out}");
    assert_eq!(out["gone"]["code"], "response_not_found", "{out}");
}

/// The user turns a chained request carried upstream, in order.
fn user_turns(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_openai_client_chains_responses_on_a_model_group() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer"));
    let proxy = sdk_support::plain_proxy(&up, "sdk-model", MASTER).await;
    let Some(out) = sdk_chain(&proxy, "sdk-model", MASTER).await else {
        return;
    };
    check_chain(&out, json!(["user", "assistant", "user"]));
    assert_eq!(
        user_turns(&up.last_body("a").unwrap()),
        ["My name is Ada.", "What is my name?", "Stream on.", "Last."]
    );
}

#[tokio::test]
async fn the_openai_client_chains_responses_on_a_composite_profile() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("answer"));
    let proxy = sdk_support::one_tier_composite(&up).await;
    let Some(out) = sdk_chain(&proxy, "composite", "anything").await else {
        return;
    };
    check_chain(&out, json!(["user", "reasoning", "assistant", "user"]));
    let turns = user_turns(&up.last_body("tier-a").unwrap());
    let text = turns.join("\n");
    for turn in ["My name is Ada.", "What is my name?", "Stream on.", "Last."] {
        assert!(text.contains(turn), "{turn} missing upstream: {turns:?}");
    }
}

#[tokio::test]
async fn an_item_sent_again_beside_its_previous_response_is_refused_by_id() {
    let up = FakeUpstream::start().await;
    up.set("m", Behavior::ok("first answer"));
    let proxy = open_proxy(&up, &[]).await;
    let first = create(&proxy, None, json!({"model": "m", "input": "first"})).await;
    let mut input = first["output"].as_array().unwrap().clone();
    input.push(json!({"role": "user", "content": "second"}));
    let body = json!({"model": "m", "previous_response_id": first["id"], "input": input});
    let (status, error) = send(&proxy, Method::POST, "/v1/responses", None, Some(&body)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "input", "{error}");
    let repeated = first["output"][0]["id"].as_str().unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(repeated),
        "{error}"
    );
    // Without the previous response, the same items are one conversation.
    let body = json!({"model": "m", "input": body["input"]});
    create(&proxy, None, body).await;
}
