//! `anthropic/` deployments speak Anthropic's Messages API natively, through
//! the real binary against a fake Anthropic upstream in this file: chat
//! completions are translated to `/v1/messages` calls (`x-api-key`,
//! `anthropic-version`, system, tools and tool results, images) and back,
//! streamed and not, with cache-read tokens as
//! `prompt_tokens_details.cached_tokens`; a 529 overloaded answer is retried;
//! Messages clients (the official `anthropic` SDK) are passed through with
//! `cache_control` and `thinking` untouched and get the cache usage back,
//! and LiteLLM's request settings they send stay with the gateway.
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
use conclave_e2e::{SseReader, sse_content};
use reqwest::Method;
use serde_json::{Value, json};

const UPSTREAM_KEY: &str = "sk-ant-upstream-key";
const MASTER: &str = "sk-native-master";

/// One request the fake received.
#[derive(Clone)]
struct Call {
    path: String,
    headers: HeaderMap,
    raw: Bytes,
    body: Value,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    /// How many calls to answer 529 overloaded before answering.
    overloaded: AtomicUsize,
}

/// A fake Anthropic API: `/{name}/v1/messages` answers a message (text, a
/// thinking block when thinking is on, a tool_use when tools are given)
/// with cache usage, as JSON or as Messages events.
struct FakeAnthropic {
    server: Served,
    shared: Arc<Shared>,
}

impl FakeAnthropic {
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
        format!("http://{}/{name}", self.server.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

const USAGE: &str = r#"{"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 7}"#;

async fn answer(
    State(shared): State<Arc<Shared>>,
    Path((_name, rest)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.calls.lock().unwrap().push(Call {
        path: format!("/v1/{rest}"),
        headers,
        raw: raw.clone(),
        body: body.clone(),
    });
    if shared
        .overloaded
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            axum::http::StatusCode::from_u16(529).unwrap(),
            [("content-type", "application/json"), ("retry-after", "0")],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
            .into_response();
    }
    if rest == "messages/count_tokens" {
        return axum::Json(json!({"input_tokens": 4242})).into_response();
    }
    let usage: Value = serde_json::from_str(USAGE).unwrap();
    let tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let thinking = body["thinking"]["type"] == "enabled";
    if body["messages"][0]["content"] == SHAPELESS {
        return shapeless(body["stream"] == true);
    }
    let json_tool = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["name"] == "json_tool_call");
    if json_tool {
        return json_tool_answer(&body);
    }
    if body["stream"] == true {
        return stream(&body, usage, tools, thinking);
    }
    let mut content = Vec::new();
    if thinking {
        content
            .push(json!({"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"}));
    }
    content.push(json!({"type": "text", "text": "Hello from claude"}));
    if tools {
        content.push(json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}));
    }
    axum::Json(json!({
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": if tools { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": usage,
    }))
    .into_response()
}

/// What the fake answers through `json_tool_call` (a structured answer).
const JSON_TOOL_INPUT: &str = r#"{"reasoning": "six sevens", "answer": 42}"#;

/// An answer through the `json_tool_call` tool, after a line of prose the
/// translation must drop, as JSON or as Messages events.
fn json_tool_answer(body: &Value) -> Response {
    let input: Value = serde_json::from_str(JSON_TOOL_INPUT).unwrap();
    let usage = json!({"input_tokens": 10, "output_tokens": 7});
    if body["stream"] != true {
        return axum::Json(json!({
            "id": "msg_json", "type": "message", "role": "assistant", "model": body["model"],
            "content": [
                {"type": "text", "text": "Here you are."},
                {"type": "tool_use", "id": "toolu_j", "name": "json_tool_call", "input": input},
            ],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let (head, tail) = JSON_TOOL_INPUT.split_at(15);
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_json", "type": "message", "role": "assistant", "model": body["model"], "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Here you are."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_j", "name": "json_tool_call", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": head}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": tail}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ];
    let text: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

/// The prompt that has the fake open its stream with a ping, as Anthropic
/// may (a ping can come anywhere in a stream).
const PING_FIRST: &str = "ping first";

/// The prompt that has the fake answer with JSON that is no message: `{}`,
/// or a stream with an array for an event after its first words.
const SHAPELESS: &str = "shapeless";

fn shapeless(streamed: bool) -> Response {
    if !streamed {
        return axum::Json(json!({})).into_response();
    }
    let text = [
        r#"{"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        "[1,2]",
        r#"{"type":"message_stop"}"#,
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .collect::<String>();
    ([("content-type", "text/event-stream")], text).into_response()
}

fn stream(body: &Value, usage: Value, tools: bool, thinking: bool) -> Response {
    let start = json!({"type": "message_start", "message": {"id": "msg_fake_stream", "type": "message", "role": "assistant", "model": body["model"], "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 1}}});
    let ping = json!({"type": "ping"});
    let mut events: Vec<Value> = if body["messages"][0]["content"] == PING_FIRST {
        vec![ping, start]
    } else {
        vec![start, ping]
    };
    let mut index = 0;
    if thinking {
        events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}));
        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": "Let me think."}}));
        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig-1"}}));
        events.push(json!({"type": "content_block_stop", "index": index}));
        index += 1;
    }
    events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
    for piece in ["Hello", " from", " claude"] {
        events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": index}));
    if tools {
        index += 1;
        events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}}));
        for piece in ["{\"city\":", " \"Paris\"}"] {
            events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": if tools { "tool_use" } else { "end_turn" }, "stop_sequence": null}, "usage": {"output_tokens": usage["output_tokens"]}}));
    events.push(json!({"type": "message_stop"}));
    let text: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

fn config(fake: &FakeAnthropic, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-up\n      \
         api_base: {}\n      api_key: {UPSTREAM_KEY}\n{extra}\
         general_settings:\n  master_key: {MASTER}\n",
        fake.api_base("a")
    )
}

async fn chat(proxy: &Proxy, body: Value) -> reqwest::Response {
    proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn assert_native_headers(call: &Call) {
    assert_eq!(call.path, "/v1/messages");
    assert_eq!(call.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(call.headers["anthropic-version"], "2023-06-01");
    assert!(call.headers.get("authorization").is_none());
}

#[tokio::test]
async fn chat_completions_become_native_messages_calls_with_cached_usage() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let r = chat(
        &proxy,
        json!({
            "model": "claude",
            "max_tokens": 100,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Describe", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]}
            ],
            "temperature": 0.3,
            "seed": 7
        }),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from claude"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 130);
    assert_eq!(body["usage"]["completion_tokens"], 7);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 20);

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_native_headers(call);
    let sent = &call.body;
    assert_eq!(sent["model"], "claude-up");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    assert_eq!(
        sent["messages"][0]["content"][0],
        json!({"type": "text", "text": "Describe", "cache_control": {"type": "ephemeral"}})
    );
    assert_eq!(
        sent["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
    );
    assert!(sent.get("seed").is_none(), "{sent}");
    assert!(sent.get("stream").is_none(), "{sent}");
}

#[tokio::test]
async fn streamed_chat_is_translated_from_messages_events() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let streamed = |include_usage: bool| {
        chat(
            &proxy,
            json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}],
                   "stream_options": {"include_usage": include_usage}}),
        )
    };
    let chunks_of = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        let mut reader = SseReader::new(r);
        let mut payloads = Vec::new();
        while let Some(p) = reader.next(Duration::from_secs(10)).await {
            payloads.push(p);
        }
        assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
        payloads[..payloads.len() - 1].to_vec()
    };
    let chunks: Vec<String> = chunks_of(streamed(true).await).await;
    assert_eq!(sse_content(&chunks), "Hello from claude");
    let parsed: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let (finish, last) = (&parsed[parsed.len() - 2], &parsed[parsed.len() - 1]);
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    // The usage comes in a chunk of its own, as OpenAI sends it.
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(last["usage"]["completion_tokens"], 7);
    // Not asked for, it is not sent.
    let chunks: Vec<String> = chunks_of(streamed(false).await).await;
    assert!(
        chunks.iter().all(|c| !c.contains("\"usage\"")),
        "{chunks:?}"
    );
    let calls = fake.calls();
    assert_native_headers(&calls[0]);
    assert_eq!(calls[0].body["stream"], true);
    assert_eq!(calls[0].body["max_tokens"], 4096);
}

#[tokio::test]
async fn tool_calls_and_results_round_trip_through_tool_use_blocks() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let first: Value = chat(
        &proxy,
        json!({"model": "claude", "tools": tools, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let message = &first["choices"][0]["message"];
    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    assert_eq!(call["id"], "toolu_1");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));

    let second = chat(
        &proxy,
        json!({"model": "claude", "tools": tools, "messages": [
            {"role": "user", "content": "weather?"},
            message,
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"}
        ]}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let sent = &fake.calls()[1].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        sent["messages"][1]["content"][1],
        json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}]})
    );

    // Streamed: the tool call arrives as indexed argument deltas.
    let r = chat(
        &proxy,
        json!({"model": "claude", "stream": true, "tools": tools, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await;
    let mut reader = SseReader::new(r);
    let mut arguments = String::new();
    let mut finish = Value::Null;
    while let Some(p) = reader.next(Duration::from_secs(10)).await {
        if p == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&p).unwrap();
        let choice = &chunk["choices"][0];
        if let Some(a) = choice["delta"]["tool_calls"][0]["function"]["arguments"].as_str() {
            arguments.push_str(a);
        }
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish, "tool_calls");
}

#[tokio::test]
async fn signed_thinking_is_given_back_with_the_tool_result_turn() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let thinking = json!({"type": "enabled", "budget_tokens": 1024});
    let first: Value = chat(
        &proxy,
        json!({"model": "claude", "tools": tools, "thinking": thinking, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let message = &first["choices"][0]["message"];
    let signed = json!({"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"});
    assert_eq!(message["thinking_blocks"], json!([signed]));
    assert_eq!(message["reasoning_content"], "Let me think.");

    // The message given back as the answer had it: Anthropic needs the
    // signed thinking first in the turn that holds the tool call.
    let second = chat(
        &proxy,
        json!({"model": "claude", "tools": tools, "thinking": thinking, "messages": [
            {"role": "user", "content": "weather?"},
            message,
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"}
        ]}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let turn = &fake.calls()[1].body["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(turn["content"][0], signed);
    assert_eq!(turn["content"][1]["type"], "text");
    assert_eq!(turn["content"][2]["type"], "tool_use");

    // Streamed: the block comes whole, signed, when it ends.
    let r = chat(
        &proxy,
        json!({"model": "claude", "stream": true, "tools": tools, "thinking": thinking, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await;
    let mut reader = SseReader::new(r);
    let mut blocks = Vec::new();
    let mut reasoning = String::new();
    while let Some(p) = reader.next(Duration::from_secs(10)).await {
        if p == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&p).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        blocks.extend(
            delta["thinking_blocks"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
    }
    assert_eq!(blocks, vec![signed]);
    assert_eq!(reasoning, "Let me think.");
}

#[tokio::test]
async fn a_responses_client_gives_signed_thinking_back_through_previous_response_id() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let tools =
        json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let respond = |body: Value| {
        proxy
            .client
            .post(proxy.url("/v1/responses"))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
    };
    let first: Value = respond(
        json!({"model": "claude", "input": "weather?", "tools": tools,
        "reasoning": {"effort": "low"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let reasoning = &first["output"][0];
    assert_eq!(reasoning["type"], "reasoning", "{first}");
    assert!(reasoning["encrypted_content"].is_string(), "{first}");
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap();
    let second = respond(
        json!({"model": "claude", "tools": tools, "reasoning": {"effort": "low"},
        "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18 C"}]}),
    )
    .await
    .unwrap();
    assert_eq!(second.status(), 200);
    let turn = &fake.calls()[1].body["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(
        turn["content"][0],
        json!({"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"})
    );
    assert_eq!(turn["content"][2]["type"], "tool_use");

    // Streamed, the reasoning item carries it as it is done.
    let r = respond(
        json!({"model": "claude", "input": "weather?", "tools": tools, "stream": true,
        "reasoning": {"effort": "low"}}),
    )
    .await
    .unwrap();
    let mut reader = SseReader::new(r);
    let mut carried = None;
    while let Some(p) = reader.next(Duration::from_secs(10)).await {
        let event: Value = serde_json::from_str(&p).unwrap();
        if event["type"] == "response.output_item.done" && event["item"]["type"] == "reasoning" {
            carried = event["item"]["encrypted_content"]
                .as_str()
                .map(str::to_owned);
        }
        if event["type"] == "response.completed" {
            break;
        }
    }
    assert_eq!(carried.as_deref(), reasoning["encrypted_content"].as_str());
}

#[tokio::test]
async fn a_thinking_block_without_its_signature_is_refused_naming_it() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let r = chat(
        &proxy,
        json!({"model": "claude", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "thinking_blocks": [{"type": "thinking", "thinking": "hmm"}]},
            {"role": "user", "content": "again"}
        ]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["param"],
        "messages[1].thinking_blocks[0].signature"
    );
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn an_overloaded_529_is_retried() {
    let fake = FakeAnthropic::start().await;
    fake.shared.overloaded.store(1, Ordering::SeqCst);
    let proxy = Proxy::start(&config(
        &fake,
        "router_settings:\n  num_retries: 2\n  retry_after: 0\n",
    ))
    .await;
    let r = chat(
        &proxy,
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", proxy.logs());
    assert_eq!(r.headers()["x-conclave-attempts"], "2");
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn count_tokens_is_asked_of_the_anthropic_upstream() {
    let fake = FakeAnthropic::start().await;
    // A wildcard group too: counted upstream under the name it rewrites to.
    let wildcard = format!(
        "  - model_name: \"ant/*\"\n    litellm_params:\n      model: anthropic/*\n      \
         api_base: {}\n      api_key: {UPSTREAM_KEY}\n",
        fake.api_base("a")
    );
    let proxy = Proxy::start(&config(&fake, &wildcard)).await;
    for (model, upstream) in [("claude", "claude-up"), ("ant/claude-x", "claude-x")] {
        let r = proxy
            .client
            .post(proxy.url("/v1/messages/count_tokens"))
            .header("x-api-key", MASTER)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "system": "Be brief.", "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", proxy.logs());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["input_tokens"], 4242, "{model}");
        let calls = fake.calls();
        let last = calls.last().unwrap();
        assert_eq!(last.path, "/v1/messages/count_tokens");
        assert_eq!(last.headers["x-api-key"], UPSTREAM_KEY);
        assert_eq!(last.body["model"], upstream);
        assert_eq!(last.body["system"], "Be brief.");
    }
    assert_eq!(fake.calls().len(), 2);
}

const SDK_SCRIPT: &str = r#"
import json, sys
import anthropic

base_url, mode, key = sys.argv[1:4]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)
system = [{"type": "text", "text": "A long cached preamble.", "cache_control": {"type": "ephemeral"}}]
messages = [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}]
thinking = {"type": "enabled", "budget_tokens": 2048}
if mode == "create":
    r = client.messages.create(model="claude", max_tokens=4096, system=system, messages=messages, thinking=thinking)
    out = {"blocks": [b.type for b in r.content], "text": [b.text for b in r.content if b.type == "text"][0],
           "thinking": [b.thinking for b in r.content if b.type == "thinking"][0],
           "signature": [b.signature for b in r.content if b.type == "thinking"][0],
           "cache_read": r.usage.cache_read_input_tokens, "cache_creation": r.usage.cache_creation_input_tokens,
           "input_tokens": r.usage.input_tokens}
else:
    types = []
    with client.messages.stream(model="claude", max_tokens=4096, system=system, messages=messages, thinking=thinking) as stream:
        for event in stream:
            types.append(event.type)
        final = stream.get_final_message()
    out = {"types": types, "text": [b.text for b in final.content if b.type == "text"][0],
           "thinking": [b.thinking for b in final.content if b.type == "thinking"][0],
           "cache_read": final.usage.cache_read_input_tokens}
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_anthropic_sdk_is_passed_through_with_cache_control_and_thinking_intact() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let base = proxy.url("");
    let Some(out) =
        sdk_support::run_script(&proxy, "native.py", SDK_SCRIPT, &[&base, "create", MASTER]).await
    else {
        return;
    };
    assert_eq!(out["blocks"], json!(["thinking", "text"]));
    assert_eq!(out["text"], "Hello from claude");
    assert_eq!(out["thinking"], "Let me think.");
    assert_eq!(out["signature"], "sig-1");
    assert_eq!(out["cache_read"], 100);
    assert_eq!(out["cache_creation"], 20);
    assert_eq!(out["input_tokens"], 10);

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_native_headers(&calls[0]);
    let sent = &calls[0].body;
    assert_eq!(sent["model"], "claude-up");
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "A long cached preamble.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        sent["messages"][0]["content"][0]["cache_control"],
        json!({"type": "ephemeral", "ttl": "5m"})
    );
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    // Nothing of the gateway's own leaks into the upstream request.
    let raw = String::from_utf8_lossy(&calls[0].raw);
    assert!(!raw.contains("conclave"), "{raw}");
    assert!(!raw.contains("reasoning_effort"), "{raw}");
}

/// The official openai SDK asking an `anthropic/` deployment for structured
/// output: `chat.completions.parse`, a streamed `response_format` and the
/// Responses API's `text.format`.
const STRUCTURED_SCRIPT: &str = r#"
import json, sys
import openai
from pydantic import BaseModel

class Sum(BaseModel):
    reasoning: str
    answer: int

base_url, key = sys.argv[1:3]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20)
messages = [{"role": "user", "content": "What is six times seven?"}]
parsed = client.chat.completions.parse(model="claude", messages=messages, response_format=Sum)
choice = parsed.choices[0]
schema = {"type": "json_schema", "json_schema": {"name": "sum", "schema": Sum.model_json_schema()}}
pieces, finish = [], None
for chunk in client.chat.completions.create(model="claude", messages=messages, response_format=schema, stream=True):
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        finish = c.finish_reason or finish
fmt = {"format": {"type": "json_schema", "name": "sum", "schema": Sum.model_json_schema()}}
response = client.responses.create(model="claude", input="What is six times seven?", text=fmt)
print(json.dumps({
    "parsed": choice.message.parsed.model_dump(), "finish": choice.finish_reason,
    "tool_calls": choice.message.tool_calls,
    "streamed": json.loads("".join(pieces)), "streamed_finish": finish,
    "responses": json.loads(response.output_text),
}))
"#;

#[tokio::test]
async fn a_response_format_schema_is_answered_through_a_forced_tool_on_anthropic() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let base = proxy.url("");
    let Some(out) =
        sdk_support::run_script(&proxy, "structured.py", STRUCTURED_SCRIPT, &[&base, MASTER]).await
    else {
        return;
    };
    let expected: Value = serde_json::from_str(JSON_TOOL_INPUT).unwrap();
    assert_eq!(out["parsed"], expected, "{out}");
    assert_eq!(out["finish"], "stop", "{out}");
    assert_eq!(out["tool_calls"], Value::Null, "{out}");
    assert_eq!(out["streamed"], expected, "{out}");
    assert_eq!(out["streamed_finish"], "stop", "{out}");
    assert_eq!(out["responses"], expected, "{out}");

    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let tools = call.body["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1, "{}", call.body);
        assert_eq!(tools[0]["name"], "json_tool_call");
        assert_eq!(
            tools[0]["input_schema"]["required"],
            json!(["reasoning", "answer"])
        );
        assert_eq!(
            call.body["tool_choice"],
            json!({"type": "tool", "name": "json_tool_call"})
        );
        assert!(call.body.get("response_format").is_none(), "{}", call.body);
    }
}

#[tokio::test]
async fn a_client_cannot_set_the_fields_a_native_body_is_carried_in() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let injected = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "INJECTED"}]});
    let messages = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            "/v1/chat/completions",
            "conclave_native_messages",
            json!({"model": "claude", "messages": messages, "conclave_native_messages": injected}),
        ),
        (
            "/v1/chat/completions",
            "conclave_native_headers",
            json!({"model": "claude", "messages": messages, "conclave_native_headers": {"anthropic-beta": "x"}}),
        ),
        (
            "/v1/chat/completions",
            "conclave_native_responses",
            json!({"model": "claude", "messages": messages, "conclave_native_responses": {"input": "INJECTED"}}),
        ),
        (
            "/v1/messages",
            "conclave_native_headers",
            json!({"model": "claude", "max_tokens": 10, "messages": messages, "conclave_native_headers": {"anthropic-beta": "x"}}),
        ),
        (
            "/v1/responses",
            "conclave_native_messages",
            json!({"model": "claude", "input": "hi", "conclave_native_messages": injected}),
        ),
    ];
    for (path, field, body) in cases {
        let (status, answer) = proxy
            .call(Method::POST, path, Some(body), Some(MASTER))
            .await;
        assert_eq!(status, 400, "{path} {field}: {answer}");
        assert!(answer.to_string().contains(field), "{path}: {answer}");
    }
    assert!(fake.calls().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn a_response_format_schema_that_is_not_an_object_is_refused_for_anthropic() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let format =
        json!({"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}});
    let r = chat(
        &proxy,
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "response_format": format}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["param"], "response_format.json_schema.schema.type",
        "{body}"
    );
    assert!(fake.calls().is_empty());
}

/// LiteLLM's request settings a Messages client may send beside Anthropic's
/// own fields; each names something the gateway does, none is Anthropic's.
fn gateway_settings() -> Value {
    json!({
        "tags": ["team-a"],
        "num_retries": 1,
        "timeout": 30,
        "request_timeout": 30,
        "caching": false,
        "cache": {"no-cache": true},
        "fallbacks": [],
        "disable_fallbacks": true,
        "litellm_metadata": {"trace": "t-1"},
    })
}

/// The calls a Messages client passes through: JSON, streamed, and a
/// token count.
const PASS_THROUGH: [(&str, Option<bool>); 3] = [
    ("/v1/messages", Some(false)),
    ("/v1/messages", Some(true)),
    ("/v1/messages/count_tokens", None),
];

/// A Messages body for `claude`, streamed or not (`None`: a token count's).
fn messages_body(stream: Option<bool>) -> Value {
    let mut body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    if let Some(stream) = stream {
        body["max_tokens"] = json!(64);
        body["stream"] = json!(stream);
    }
    body
}

#[tokio::test]
async fn a_messages_request_passed_through_keeps_the_gateway_settings_to_itself() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    for (path, stream) in PASS_THROUGH {
        let mut body = messages_body(stream);
        let fields = body.as_object_mut().unwrap();
        fields.insert("metadata".into(), json!({"user_id": "u-1"}));
        fields.extend(gateway_settings().as_object().unwrap().clone());
        let r = proxy
            .client
            .post(proxy.url(path))
            .header("x-api-key", MASTER)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}, stream {stream:?}: {text}");
    }
    let calls = fake.calls();
    assert_eq!(calls.len(), PASS_THROUGH.len());
    for call in &calls {
        assert_eq!(call.headers["x-api-key"], UPSTREAM_KEY);
        let sent = call.body.as_object().unwrap();
        for field in gateway_settings().as_object().unwrap().keys() {
            assert!(
                !sent.contains_key(field),
                "{field} reached {}: {}",
                call.path,
                call.body
            );
        }
        // Anthropic's own `metadata` is the client's to send.
        assert_eq!(
            call.body["metadata"],
            json!({"user_id": "u-1"}),
            "{}",
            call.path
        );
    }
}

/// The deployment's Messages defaults and its `extra_body` reach Anthropic
/// whichever API the client speaks, and never over a client's own value.
#[tokio::test]
async fn a_deployments_defaults_and_extra_body_reach_anthropic_from_either_api() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(
        &fake,
        "      temperature: 0.3\n      extra_body: {top_k: 3, service_tier: auto}\n",
    ))
    .await;
    for stream in [false, true] {
        let r = proxy
            .client
            .post(proxy.url("/v1/messages"))
            .header("x-api-key", MASTER)
            .json(&messages_body(Some(stream)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let mut own = messages_body(Some(false));
    own["temperature"] = json!(0.9);
    own["top_k"] = json!(7);
    let r = proxy
        .client
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", MASTER)
        .json(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = chat(
        &proxy,
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let calls = fake.calls();
    assert_eq!(calls.len(), 4);
    for call in [&calls[0], &calls[1], &calls[3]] {
        assert_eq!(call.body["temperature"], 0.3, "{}", call.body);
        assert_eq!(call.body["top_k"], 3, "{}", call.body);
        assert_eq!(call.body["service_tier"], "auto", "{}", call.body);
    }
    assert_eq!(calls[2].body["temperature"], 0.9, "the client's own value");
    assert_eq!(calls[2].body["top_k"], 7, "the client's own value");
}

#[tokio::test]
async fn the_anthropic_sdk_streams_native_events_with_thinking() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let base = proxy.url("");
    let Some(out) = sdk_support::run_script(
        &proxy,
        "native_stream.py",
        SDK_SCRIPT,
        &[&base, "stream", MASTER],
    )
    .await
    else {
        return;
    };
    assert_eq!(out["text"], "Hello from claude");
    assert_eq!(out["thinking"], "Let me think.");
    assert_eq!(out["cache_read"], 100);
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    assert!(types.contains(&"thinking"), "{types:?}");
    assert_eq!(fake.calls()[0].body["stream"], true);
    assert_eq!(fake.calls()[0].body["thinking"]["budget_tokens"], 2048);
}

#[tokio::test]
async fn a_clients_beta_header_reaches_anthropic_with_its_request() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let headers = [
        ("anthropic-version", "2023-01-01"),
        ("anthropic-beta", "context-1m-2025-08-07"),
        ("anthropic-beta", "token-efficient-tools-2025-02-19"),
    ];
    pass_through_then_chat(&proxy, &headers).await;
    let calls = fake.calls();
    let (passed, chat_call) = calls.split_at(PASS_THROUGH.len());
    for call in passed {
        // The version is the deployment's, whatever the client's SDK says.
        assert_eq!(
            call.headers["anthropic-version"], "2023-06-01",
            "{}",
            call.path
        );
        assert_eq!(
            call.headers["anthropic-beta"],
            "context-1m-2025-08-07,token-efficient-tools-2025-02-19",
            "{}",
            call.path
        );
    }
    // A chat client sends no Anthropic headers, and no beta is sent.
    assert_native_headers(&chat_call[0]);
    assert!(chat_call[0].headers.get("anthropic-beta").is_none());
}

#[tokio::test]
async fn a_clients_beta_features_join_the_ones_the_deployment_sets() {
    let fake = FakeAnthropic::start().await;
    let extra = "      extra_headers:\n        anthropic-beta: context-1m-2025-08-07\n";
    let proxy = Proxy::start(&config(&fake, extra)).await;
    let betas = (
        "anthropic-beta",
        "claude-code-20250219, context-1m-2025-08-07",
    );
    pass_through_then_chat(&proxy, &[betas]).await;
    let calls = fake.calls();
    let (passed, chat_call) = calls.split_at(PASS_THROUGH.len());
    for call in passed {
        assert_eq!(
            call.headers["anthropic-beta"], "context-1m-2025-08-07,claude-code-20250219",
            "{}",
            call.path
        );
    }
    assert_eq!(
        chat_call[0].headers["anthropic-beta"],
        "context-1m-2025-08-07"
    );
}

/// Sends each [`PASS_THROUGH`] request with the client's `headers`, then a
/// chat request; each must be answered 200.
async fn pass_through_then_chat(proxy: &Proxy, headers: &[(&str, &str)]) {
    for (path, stream) in PASS_THROUGH {
        let mut request = proxy
            .client
            .post(proxy.url(path))
            .header("x-api-key", MASTER);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.json(&messages_body(stream)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    let r = chat(proxy, messages_body(None)).await;
    assert_eq!(r.status(), 200);
}

/// A streamed `/v1/messages` request with the master key, answered 200:
/// its text and its events, parsed.
async fn messages_stream(proxy: &Proxy, body: Value) -> (String, Vec<Value>) {
    let r = proxy
        .client
        .post(proxy.url("/v1/messages"))
        .header("x-api-key", MASTER)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = conclave_e2e::sse_payloads(&text)
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    (text, events)
}

#[tokio::test]
async fn a_native_stream_that_opens_with_a_ping_keeps_its_content() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    let (text, events) = messages_stream(
        &proxy,
        json!({"model": "claude", "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": PING_FIRST}]}),
    )
    .await;
    assert_eq!(events[0]["type"], "message_start", "{text}");
    assert_eq!(events[0]["message"]["id"], "msg_fake_stream");
    let said: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "Hello from claude", "{text}");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
}

#[tokio::test]
async fn a_wrong_method_on_a_messages_route_answers_in_anthropics_shape() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "")).await;
    for path in [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/anthropic/v1/messages",
    ] {
        let r = proxy
            .client
            .get(proxy.url(path))
            .header("x-api-key", MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert!(r.headers().contains_key("allow"), "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("GET"),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn native_answers_that_are_no_message_fail_instead_of_passing_empty() {
    let fake = FakeAnthropic::start().await;
    let proxy = Proxy::start(&config(&fake, "router_settings:\n  num_retries: 0\n")).await;
    let request = |stream: bool| {
        json!({"model": "claude", "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": SHAPELESS}]})
    };
    let (status, answer) = proxy
        .call(
            Method::POST,
            "/v1/messages",
            Some(request(false)),
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["type"], "error", "{answer}");
    let (text, events) = messages_stream(&proxy, request(true)).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.last(), Some(&"error"), "{text}");
    assert!(!types.contains(&"message_stop"), "{text}");
}
