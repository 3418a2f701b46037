//! Anthropic's Messages API (`POST /v1/messages`) through the real binary,
//! translated to chat completions: the official `anthropic` client against
//! a plain model group and a composite profile, and the wire format itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FAKE_CALL_ID, FakeUpstream, Proxy};
use serde_json::{Value, json};

const MASTER_KEY: &str = "sk-e2e-anthropic";

const SCRIPT: &str = r#"
import json, sys
import anthropic

base_url, mode, model, key = sys.argv[1:5]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)
tools = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
messages = [{"role": "user", "content": "hello from the sdk"}]
if mode == "plain":
    r = client.messages.create(model=model, max_tokens=100, system="Be brief.", messages=messages, extra_body={"temperature": 0.5})
    out = {"type": r.type, "role": r.role, "text": [b.text for b in r.content if b.type == "text"][0],
           "blocks": [b.type for b in r.content], "stop_reason": r.stop_reason,
           "input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens, "id": r.id,
           "model": r.model}
elif mode == "tools":
    ask = [{"role": "user", "content": "weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=100, messages=ask, tools=tools)
    use = [b for b in first.content if b.type == "tool_use"][0]
    ask.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    ask.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}]})
    second = client.messages.create(model=model, max_tokens=100, messages=ask, tools=tools)
    out = {"stop_reason": first.stop_reason, "name": use.name, "input": use.input, "id": use.id,
           "text": [b.text for b in second.content if b.type == "text"][0]}
elif mode == "stream":
    types = []
    with client.messages.stream(model=model, max_tokens=100, messages=messages) as stream:
        for event in stream:
            types.append(event.type)
        final = stream.get_final_message()
    out = {"types": types, "text": [b.text for b in final.content if b.type == "text"][0], "stop_reason": final.stop_reason,
           "output_tokens": final.usage.output_tokens, "model": final.model}
elif mode == "stream_tools":
    types = []
    with client.messages.stream(model=model, max_tokens=100, messages=messages, tools=tools) as stream:
        for event in stream:
            types.append(event.type)
        final = stream.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    out = {"types": types, "name": use.name, "input": use.input, "stop_reason": final.stop_reason}
elif mode == "models":
    listed = [[m.type, m.id, m.display_name, m.created_at.year >= 2024] for m in client.models.list(limit=1)]
    one = client.models.retrieve(model)
    try:
        client.models.retrieve("no-such-model")
        missing = None
    except anthropic.NotFoundError as e:
        missing = [e.status_code, e.body["error"]["type"]]
    out = {"listed": listed, "one": [one.type, one.id], "missing": missing}
elif mode == "count":
    r = client.messages.count_tokens(model=model, messages=messages, system="Be brief.")
    out = {"input_tokens": r.input_tokens}
else:
    try:
        client.messages.create(model=model, max_tokens=10, messages=messages)
        out = {"raised": None}
    except anthropic.APIStatusError as e:
        out = {"raised": type(e).__name__, "status": e.status_code, "type": e.body["error"]["type"],
               "message": e.body["error"]["message"]}
print(json.dumps(out))
"#;

async fn sdk(proxy: &Proxy, base: &str, mode: &str, model: &str, key: &str) -> Option<Value> {
    let base = proxy.url(base);
    sdk_support::run_script(
        proxy,
        "anthropic_check.py",
        SCRIPT,
        &[&base, mode, model, key],
    )
    .await
}

async fn plain_proxy(up: &FakeUpstream) -> Proxy {
    sdk_support::plain_proxy(up, "claude-group", MASTER_KEY).await
}

fn check_plain(out: &Value) {
    assert_eq!(out["type"], "message", "{out}");
    assert_eq!(out["role"], "assistant", "{out}");
    assert_eq!(out["text"], "answer for claude clients", "{out}");
    assert_eq!(out["stop_reason"], "end_turn", "{out}");
    assert_eq!(out["input_tokens"], 5, "{out}");
    assert_eq!(out["output_tokens"], 7, "{out}");
}

fn check_tools(out: &Value, second_body: &Value) {
    assert_eq!(out["stop_reason"], "tool_use", "{out}");
    assert_eq!(out["name"], "get_weather", "{out}");
    assert_eq!(out["input"], json!({"city": "Paris"}), "{out}");
    assert_eq!(out["id"], FAKE_CALL_ID, "{out}");
    assert_eq!(out["text"], "It is 18 C.", "{out}");
    let messages = second_body["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], FAKE_CALL_ID);
    assert_eq!(tool["content"], "18 C");
}

fn check_stream(out: &Value) {
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types[0], "message_start", "{out}");
    assert!(types.contains(&"content_block_start"), "{out}");
    assert!(types.contains(&"content_block_stop"), "{out}");
    assert_eq!(
        types[types.len() - 2..],
        ["message_delta", "message_stop"],
        "{out}"
    );
    assert_eq!(out["text"], "streamed to the anthropic sdk", "{out}");
    assert_eq!(out["stop_reason"], "end_turn", "{out}");
    assert_eq!(out["output_tokens"], 7, "{out}");
}

#[tokio::test]
async fn the_anthropic_client_creates_a_message_from_a_model_group() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for claude clients"));
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "", "plain", "claude-group", MASTER_KEY).await else {
        return;
    };
    check_plain(&out);
    assert_eq!(out["blocks"], json!(["text"]), "{out}");
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["model"], "gpt-up");
    // The model the upstream answered as, streamed or not.
    assert_eq!(out["model"], "gpt-up", "{out}");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    // The /anthropic prefix serves the same API.
    let out = sdk(&proxy, "/anthropic", "plain", "claude-group", MASTER_KEY)
        .await
        .unwrap();
    check_plain(&out);
}

#[tokio::test]
async fn the_anthropic_client_round_trips_tool_use_through_a_model_group() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    up.push("a", Behavior::ok("It is 18 C."));
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "", "tools", "claude-group", MASTER_KEY).await else {
        return;
    };
    check_tools(&out, &up.last_body("a").unwrap());
}

#[tokio::test]
async fn the_anthropic_client_streams_text_and_tool_use_from_a_model_group() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("streamed to the anthropic sdk").chunked(3, Duration::ZERO),
    );
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "", "stream", "claude-group", MASTER_KEY).await else {
        return;
    };
    check_stream(&out);
    assert_eq!(out["model"], "gpt-up", "{out}");

    up.set(
        "a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    let out = sdk(&proxy, "", "stream_tools", "claude-group", MASTER_KEY)
        .await
        .unwrap();
    assert_eq!(out["name"], "get_weather", "{out}");
    assert_eq!(out["input"], json!({"city": "Paris"}), "{out}");
    assert_eq!(out["stop_reason"], "tool_use", "{out}");
    assert!(
        out["types"]
            .as_array()
            .unwrap()
            .contains(&json!("input_json")),
        "{out}"
    );
}

#[tokio::test]
async fn the_anthropic_client_counts_tokens() {
    let up = FakeUpstream::start().await;
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "", "count", "claude-group", MASTER_KEY).await else {
        return;
    };
    // chars/4 of the serialized system and messages, rounded up.
    let chars = json!("Be brief.").to_string().len()
        + json!([{"role": "user", "content": "hello from the sdk"}])
            .to_string()
            .len();
    assert_eq!(out["input_tokens"], chars.div_ceil(4), "{out}");
    assert_eq!(up.recorded().len(), 0);
}

/// Anthropic's clients (and Claude Code) list a gateway's models in
/// Anthropic's shape, page by page, under either base URL.
#[tokio::test]
async fn the_anthropic_client_lists_and_retrieves_models() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}general_settings:\n  master_key: {MASTER_KEY}\n",
        conclave_e2e::deployment("claude-group", "openai/gpt-up", &up.api_base("a"), &[]),
        conclave_e2e::deployment("claude-other", "openai/gpt-up", &up.api_base("a"), &[]),
    ))
    .await;
    for base in ["", "/anthropic"] {
        let Some(out) = sdk(&proxy, base, "models", "claude-other", MASTER_KEY).await else {
            return;
        };
        assert_eq!(
            out["listed"],
            json!([
                ["model", "claude-group", "claude-group", true],
                ["model", "claude-other", "claude-other", true]
            ]),
            "two pages of one, in the listing's order: {out}"
        );
        assert_eq!(out["one"], json!(["model", "claude-other"]), "{out}");
        assert_eq!(out["missing"], json!([404, "not_found_error"]), "{out}");
    }
}

#[tokio::test]
async fn the_anthropic_client_reads_an_unknown_model_as_not_found() {
    let up = FakeUpstream::start().await;
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "", "error", "no-such-model", MASTER_KEY).await else {
        return;
    };
    assert_eq!(out["raised"], "NotFoundError", "{out}");
    assert_eq!(out["status"], 404, "{out}");
    assert_eq!(out["type"], "not_found_error", "{out}");
}

#[tokio::test]
async fn the_anthropic_client_is_served_by_a_composite_profile() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("answer for claude clients"));
    let proxy = sdk_support::one_tier_composite(&up).await;
    let Some(out) = sdk(&proxy, "", "plain", "composite", "anything").await else {
        return;
    };
    check_plain(&out);
    // The strategy's reasoning comes back as a thinking block.
    assert_eq!(out["blocks"], json!(["thinking", "text"]), "{out}");

    up.clear();
    up.push(
        "tier-a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    up.push("tier-a", Behavior::ok("It is 18 C."));
    let out = sdk(&proxy, "", "tools", "composite", "anything")
        .await
        .unwrap();
    check_tools(&out, &up.last_body("tier-a").unwrap());

    up.clear();
    up.set(
        "tier-a",
        Behavior::ok("streamed to the anthropic sdk").chunked(3, Duration::ZERO),
    );
    let out = sdk(&proxy, "", "stream", "composite", "anything")
        .await
        .unwrap();
    check_stream(&out);

    let out = sdk(&proxy, "", "count", "composite", "anything")
        .await
        .unwrap();
    assert!(out["input_tokens"].as_u64().unwrap() > 0, "{out}");
    let out = sdk(&proxy, "", "error", "no-such-model", "anything")
        .await
        .unwrap();
    assert_eq!(out["status"], 404, "{out}");
    assert_eq!(out["type"], "not_found_error", "{out}");
}

fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = e.lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn errors_leave_in_anthropic_shape_with_their_status() {
    let up = FakeUpstream::start().await;
    let proxy = plain_proxy(&up).await;
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-group", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    for path in ["/v1/messages", "/anthropic/v1/messages"] {
        let r = client
            .post(proxy.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "authentication_error", "{error}");
    }
    let r = client
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", MASTER_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-group", "messages": "not a list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    assert_eq!(up.recorded().len(), 0);
}

/// Posts a Messages body with the master key; the status and the answer.
async fn post_messages(proxy: &Proxy, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(proxy.url(path))
        .header("x-api-key", MASTER_KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_messages_requests_are_refused_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = plain_proxy(&up).await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "claude-group", "messages": hi}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-group", "max_tokens": "ten", "messages": hi}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-group", "max_tokens": -5, "messages": hi}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-group", "max_tokens": 10, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "claude-group", "max_tokens": 10, "messages": hi, "stream": "yes"}),
            "stream",
        ),
        (
            json!({"model": "claude-group", "max_tokens": 10, "messages": hi, "temperature": "hot"}),
            "temperature",
        ),
        (json!({"max_tokens": 10, "messages": hi}), "model"),
    ];
    for (body, field) in cases {
        let (status, error) = post_messages(&proxy, "/v1/messages", &body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
    }
    for body in [
        json!({"messages": hi}),
        json!([1, 2]),
        json!({"model": "claude-group", "messages": null}),
    ] {
        let (status, error) = post_messages(&proxy, "/v1/messages/count_tokens", &body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["type"], "error", "{error}");
    }
    let unknown = json!({"model": "no-such-model", "messages": hi});
    let (status, error) = post_messages(&proxy, "/v1/messages/count_tokens", &unknown).await;
    assert_eq!(
        status, 404,
        "counting for a model the gateway lacks: {error}"
    );
    assert_eq!(error["error"]["type"], "not_found_error", "{error}");
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn documents_and_tool_errors_reach_a_chat_model_and_blocks_it_cannot_read_are_refused() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("read it"));
    let proxy = plain_proxy(&up).await;
    let body = json!({
        "model": "claude-group",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "is_error": true, "content": "no network"},
                {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": "the sky is green"}},
            ]},
        ],
    });
    let (status, answer) = post_messages(&proxy, "/v1/messages", &body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = up.last_body("a").unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["content"], "Error: no network", "{sent}");
    assert!(
        sent.to_string().contains("Notes\\n\\nthe sky is green"),
        "{sent}"
    );
    let calls = up.recorded().len();

    let refused = [
        json!({"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": "x"}]}),
        json!({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}),
        json!({"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}),
    ];
    for block in refused {
        let body = json!({
            "model": "claude-group",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [block]}],
        });
        let (status, error) = post_messages(&proxy, "/v1/messages", &body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
    assert_eq!(
        up.recorded().len(),
        calls,
        "no refused request reached the model"
    );
}

#[tokio::test]
async fn a_tool_results_images_follow_its_tool_message_as_a_user_message() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("a cat"));
    let proxy = plain_proxy(&up).await;
    let png = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
    let body = json!({
        "model": "claude-group",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "what is on the screen?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "captured"}, png]},
            ]},
        ],
    });
    let (status, answer) = post_messages(&proxy, "/v1/messages", &body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = up.last_body("a").unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let tool = messages.iter().position(|m| m["role"] == "tool").unwrap();
    assert_eq!(messages[tool]["content"], "captured", "{sent}");
    let after = &messages[tool + 1];
    assert_eq!(after["role"], "user", "{sent}");
    assert_eq!(
        after["content"][0]["image_url"]["url"], "data:image/png;base64,iVBORw0KGgo=",
        "{sent}"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_an_error_event() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("one two three four")
            .chunked(4, Duration::ZERO)
            .error_after(2, "upstream broke"),
    );
    let proxy = plain_proxy(&up).await;
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/messages"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"model": "claude-group", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let events = events(&body);
    assert_eq!(events[0].0, "message_start", "{body}");
    assert_eq!(events[1].0, "ping", "{body}");
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{body}");
    assert_eq!(data["type"], "error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream broke"),
        "{body}"
    );
}
