//! OpenAI's Responses API (`POST /v1/responses`) through the real binary,
//! translated to chat completions: the official `openai` client against a
//! plain model group and a composite profile, and the wire format itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FAKE_CALL_ID, FakeUpstream, Proxy, deployment};
use serde_json::{Value, json};

const MASTER_KEY: &str = "sk-e2e-responses";

const SCRIPT: &str = r#"
import json, sys
import openai

base_url, mode, model, key = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
tools = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
if mode == "plain":
    r = client.responses.create(model=model, input="hello from the sdk", instructions="Be brief.", temperature=0.5)
    out = {"id": r.id, "object": r.object, "status": r.status, "text": r.output_text,
           "output_types": [i.type for i in r.output], "total_tokens": r.usage.total_tokens}
elif mode == "tools":
    conversation = [{"role": "user", "content": "weather in Paris?"}]
    first = client.responses.create(model=model, input=conversation, tools=tools)
    call = [i for i in first.output if i.type == "function_call"][0]
    conversation += [i.model_dump(exclude_none=True) for i in first.output]
    conversation.append({"type": "function_call_output", "call_id": call.call_id, "output": "18 C"})
    second = client.responses.create(model=model, input=conversation, tools=tools)
    out = {"name": call.name, "arguments": json.loads(call.arguments), "call_id": call.call_id,
           "text": second.output_text}
elif mode == "stream":
    types, seqs, deltas = [], [], []
    with client.responses.stream(model=model, input="stream please") as stream:
        for event in stream:
            types.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    out = {"types": types, "seqs": seqs, "deltas": "".join(deltas), "text": final.output_text,
           "status": final.status, "total_tokens": final.usage.total_tokens}
elif mode == "stream_tools":
    types, args = [], []
    for event in client.responses.create(model=model, input="weather?", tools=tools, stream=True):
        types.append(event.type)
        if event.type == "response.function_call_arguments.delta":
            args.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    call = [i for i in final.output if i.type == "function_call"][0]
    out = {"types": types, "args": "".join(args), "name": call.name, "arguments": call.arguments}
else:
    try:
        client.responses.create(model=model, input="hi")
        out = {"raised": None}
    except openai.APIStatusError as e:
        out = {"raised": type(e).__name__, "status": e.status_code, "code": e.code}
print(json.dumps(out))
"#;

async fn sdk(proxy: &Proxy, mode: &str, model: &str, key: &str) -> Option<Value> {
    let base = proxy.url("/v1");
    sdk_support::run_script(
        proxy,
        "responses_check.py",
        SCRIPT,
        &[&base, mode, model, key],
    )
    .await
}

async fn plain_proxy(up: &FakeUpstream) -> Proxy {
    sdk_support::plain_proxy(up, "sdk-model", MASTER_KEY).await
}

/// `types`: the output items expected (a composite answer adds its reasoning).
fn check_plain(out: &Value, types: Value) {
    assert_eq!(out["object"], "response", "{out}");
    assert!(out["id"].as_str().unwrap().starts_with("resp_"), "{out}");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["text"], "answer for responses", "{out}");
    assert_eq!(out["output_types"], types, "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
}

fn check_tools(out: &Value, second_body: &Value) {
    assert_eq!(out["name"], "get_weather", "{out}");
    assert_eq!(out["arguments"], json!({"city": "Paris"}), "{out}");
    assert_eq!(out["call_id"], FAKE_CALL_ID, "{out}");
    assert_eq!(out["text"], "It is 18 C.", "{out}");
    let messages = second_body["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], FAKE_CALL_ID);
    assert_eq!(tool["content"], "18 C");
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(
        assistant["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
}

fn check_stream(out: &Value) {
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        types[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ],
        "{out}"
    );
    // A composite answer's reasoning item may come first; the message follows.
    let part = types
        .iter()
        .position(|t| *t == "response.content_part.added")
        .unwrap();
    assert_eq!(types[part - 1], "response.output_item.added", "{out}");
    assert_eq!(
        types[types.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ],
        "{out}"
    );
    let seqs: Vec<u64> = out["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{out}");
    assert_eq!(out["deltas"], "streamed to the responses api", "{out}");
    assert_eq!(out["text"], "streamed to the responses api", "{out}");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
}

#[tokio::test]
async fn the_openai_client_creates_a_response_from_a_model_group() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for responses"));
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "plain", "sdk-model", MASTER_KEY).await else {
        return;
    };
    check_plain(&out, json!(["message"]));
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["model"], "gpt-up");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "hello from the sdk"})
    );
}

#[tokio::test]
async fn the_openai_client_creates_a_response_under_the_openai_v1_path() {
    // Azure OpenAI's v1 API and LiteLLM serve the Responses API at
    // `/openai/v1/responses`; a client pointed there works unchanged.
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for responses"));
    let proxy = plain_proxy(&up).await;
    let base = proxy.url("/openai/v1");
    let Some(out) = sdk_support::run_script(
        &proxy,
        "responses_check.py",
        SCRIPT,
        &[&base, "plain", "sdk-model", MASTER_KEY],
    )
    .await
    else {
        return;
    };
    check_plain(&out, json!(["message"]));
    assert_eq!(up.last_body("a").unwrap()["model"], "gpt-up");
}

#[tokio::test]
async fn the_openai_client_round_trips_a_function_call_through_a_model_group() {
    let up = FakeUpstream::start().await;
    up.push(
        "a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    up.push("a", Behavior::ok("It is 18 C."));
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "tools", "sdk-model", MASTER_KEY).await else {
        return;
    };
    check_tools(&out, &up.last_body("a").unwrap());
}

#[tokio::test]
async fn the_openai_client_reads_every_stream_event_from_a_model_group() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("streamed to the responses api").chunked(3, Duration::ZERO),
    );
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "stream", "sdk-model", MASTER_KEY).await else {
        return;
    };
    check_stream(&out);
    assert_eq!(
        up.last_body("a").unwrap()["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn the_openai_client_streams_a_function_call() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "stream_tools", "sdk-model", MASTER_KEY).await else {
        return;
    };
    assert_eq!(out["args"], r#"{"city":"Paris"}"#, "{out}");
    assert_eq!(out["arguments"], r#"{"city":"Paris"}"#, "{out}");
    assert_eq!(out["name"], "get_weather", "{out}");
    let types = out["types"].as_array().unwrap();
    assert!(
        types.contains(&json!("response.function_call_arguments.done")),
        "{out}"
    );
}

#[tokio::test]
async fn the_openai_client_gets_responses_from_a_composite_profile() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("answer for responses"));
    let proxy = sdk_support::one_tier_composite(&up).await;
    let Some(out) = sdk(&proxy, "plain", "composite", "anything").await else {
        return;
    };
    check_plain(&out, json!(["reasoning", "message"]));

    up.clear();
    up.push(
        "tier-a",
        Behavior::tool_call("get_weather", r#"{"city":"Paris"}"#),
    );
    up.push("tier-a", Behavior::ok("It is 18 C."));
    let out = sdk(&proxy, "tools", "composite", "anything").await.unwrap();
    check_tools(&out, &up.last_body("tier-a").unwrap());

    up.clear();
    up.set(
        "tier-a",
        Behavior::ok("streamed to the responses api").chunked(3, Duration::ZERO),
    );
    let out = sdk(&proxy, "stream", "composite", "anything")
        .await
        .unwrap();
    check_stream(&out);
}

#[tokio::test]
async fn the_openai_client_reads_an_unknown_model_as_not_found() {
    let up = FakeUpstream::start().await;
    let proxy = plain_proxy(&up).await;
    let Some(out) = sdk(&proxy, "error", "no-such-model", MASTER_KEY).await else {
        return;
    };
    assert_eq!(out["raised"], "NotFoundError", "{out}");
    assert_eq!(out["status"], 404, "{out}");
    assert_eq!(out["code"], "model_not_found", "{out}");
}

async fn post(proxy: &Proxy, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(proxy.url(path))
        .bearer_auth(MASTER_KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn an_unknown_previous_response_id_is_not_found_and_store_stays_at_the_gateway() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("stored here"));
    let proxy = plain_proxy(&up).await;
    let (status, body) = post(
        &proxy,
        "/v1/responses",
        &json!({"model": "sdk-model", "input": "again", "previous_response_id": "resp_1"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["param"], "previous_response_id");
    assert_eq!(body["error"]["code"], "previous_response_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resp_1")
    );
    assert_eq!(up.recorded().len(), 0);
    let (status, body) = post(
        &proxy,
        "/responses",
        &json!({"model": "sdk-model", "input": "hi", "store": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(up.last_body("a").unwrap().get("store").is_none());
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_response_failed_and_error() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("one two three four")
            .chunked(4, Duration::ZERO)
            .error_after(2, "upstream broke"),
    );
    let proxy = plain_proxy(&up).await;
    let (status, body) = post(
        &proxy,
        "/v1/responses",
        &json!({"model": "sdk-model", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<(String, Value)> = body
        .split("\n\n")
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
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["response.failed", "error"],
        "{body}"
    );
    let failed = &events[events.len() - 2].1;
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(
        failed["response"]["error"]["code"], "server_error",
        "one of the codes OpenAI documents for a failed response"
    );
    let error = &events[events.len() - 1].1;
    assert!(
        error["code"].as_str().is_some_and(|c| c != "server_error"),
        "the gateway's own code: {error}"
    );
    assert_eq!(
        failed["response"]["store"], false,
        "a failed answer is not kept"
    );
    assert!(
        failed["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream broke"),
        "{body}"
    );
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{body}");
        assert_eq!(data["type"], name.as_str());
    }
}

#[tokio::test]
async fn the_endpoint_is_off_when_the_config_says_so() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  master_key: {MASTER_KEY}\n  enable_responses_endpoint: false\n",
        deployment("sdk-model", "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await;
    let (status, body) = post(
        &proxy,
        "/v1/responses",
        &json!({"model": "sdk-model", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(up.recorded().len(), 0);
    let r = reqwest::Client::new()
        .get(proxy.url("/v1/responses/resp_1"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("unknown_url"));
}
