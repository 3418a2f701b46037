//! Text completions (`/v1/completions`) and the response cache: a streamed
//! answer stored and replayed as `text_completion` chunks (read by the
//! official `openai` SDK too), one entry serving streamed and plain requests
//! alike, a cut stream never stored, and chat and text entries kept apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, deployments, sse_payloads};
use serde_json::{Value, json};

const GROUP: &str = "gpt-text-cache";

/// Long enough that the replay cuts it into several pieces.
fn answer() -> String {
    "once upon a time a text completion was streamed and then replayed from the cache "
        .repeat(8)
        .trim_end()
        .to_owned()
}

async fn start(up: &FakeUpstream) -> Proxy {
    up.set(GROUP, Behavior::ok(&answer()).chunked(5, Duration::ZERO));
    Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n",
        deployments(up, &[(GROUP, &[])])
    ))
    .await
}

fn text_body(prompt: &str) -> Value {
    json!({"model": GROUP, "prompt": prompt, "max_tokens": 200})
}

fn stream_body(prompt: &str, include_usage: bool) -> Value {
    let mut body = text_body(prompt);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Sends a streaming request to `path`; the cache header and the SSE payloads.
async fn stream_at(proxy: &Proxy, path: &str, body: &Value) -> (String, Vec<String>) {
    let r = proxy.post(path, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let cache = r.headers()["x-conclave-cache"].to_str().unwrap().to_owned();
    let text = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .unwrap()
        .unwrap();
    (cache, sse_payloads(&text))
}

async fn stream(proxy: &Proxy, body: &Value) -> (String, Vec<String>) {
    stream_at(proxy, "/v1/completions", body).await
}

/// Sends a plain request to `path`; the cache header and the JSON body.
async fn plain_at(proxy: &Proxy, path: &str, body: &Value) -> (String, Value) {
    let r = proxy.post(path, body).await;
    assert_eq!(r.status(), 200);
    let cache = r.headers()["x-conclave-cache"].to_str().unwrap().to_owned();
    (cache, r.json().await.unwrap())
}

/// Every payload but `[DONE]`, parsed.
fn events(payloads: &[String]) -> Vec<Value> {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}")))
        .collect()
}

/// The concatenated `choices[0].text` of text chunks.
fn text(payloads: &[String]) -> String {
    events(payloads)
        .iter()
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

fn usage(payloads: &[String]) -> Option<Value> {
    events(payloads)
        .into_iter()
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
}

/// Lets the server store an entry written when a stream ends.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_streamed_text_completion_is_stored_and_replayed_as_text_chunks() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let body = stream_body("tell me a story", false);
    let (cache, first) = stream(&proxy, &body).await;
    assert_eq!(cache, "miss");
    assert_eq!(text(&first), answer());
    settle().await;

    let (cache, replay) = stream(&proxy, &body).await;
    assert_eq!(cache, "hit");
    assert_eq!(up.calls(GROUP), 1);
    assert_eq!(replay.last().map(String::as_str), Some("[DONE]"));
    let chunks = events(&replay);
    assert!(chunks.len() >= 3, "the text comes in pieces: {replay:?}");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "text_completion", "{chunk}");
        assert_eq!(chunk["id"], "cmpl-fake", "{chunk}");
        assert!(chunk["choices"][0].get("delta").is_none(), "{chunk}");
    }
    assert_eq!(text(&replay), answer());
    let (last, earlier) = chunks.split_last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        earlier
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()),
        "{replay:?}"
    );
    assert!(usage(&replay).is_none(), "usage was not asked for");
}

#[tokio::test]
async fn include_usage_is_honoured_on_replay() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    // Stored without the client asking for usage: the gateway asked for it.
    stream(&proxy, &stream_body("count me", false)).await;
    settle().await;
    let (cache, replay) = stream(&proxy, &stream_body("count me", true)).await;
    assert_eq!(cache, "hit");
    assert_eq!(replay.last().map(String::as_str), Some("[DONE]"));
    let chunks = events(&replay);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert_eq!(usage_chunk["object"], "text_completion");
    assert_eq!(usage_chunk["usage"]["total_tokens"], 12);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    let (cache, replay) = stream(&proxy, &stream_body("count me", false)).await;
    assert_eq!(cache, "hit");
    assert!(usage(&replay).is_none(), "{replay:?}");
    assert_eq!(up.calls(GROUP), 1);
}

#[tokio::test]
async fn a_streamed_text_answer_serves_a_plain_request_and_the_other_way_round() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    stream(&proxy, &stream_body("streamed first", true)).await;
    settle().await;
    let (cache, body) = plain_at(&proxy, "/v1/completions", &text_body("streamed first")).await;
    assert_eq!(cache, "hit");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["id"], "cmpl-fake");
    assert_eq!(body["choices"][0]["text"], answer());
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["logprobs"].is_null());
    assert_eq!(body["usage"]["total_tokens"], 12);
    assert_eq!(up.calls(GROUP), 1);

    let (cache, _) = plain_at(&proxy, "/v1/completions", &text_body("plain first")).await;
    assert_eq!(cache, "stored");
    let (cache, payloads) = stream(&proxy, &stream_body("plain first", true)).await;
    assert_eq!(cache, "hit");
    assert_eq!(text(&payloads), answer());
    assert_eq!(usage(&payloads).unwrap()["total_tokens"], 12);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn a_cut_or_failed_text_stream_is_not_stored() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let body = stream_body("cut me", false);
    up.push(
        GROUP,
        Behavior::ok(&answer())
            .chunked(5, Duration::ZERO)
            .drop_after(2),
    );
    let r = proxy.post("/v1/completions", &body).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), r.text()).await;
    settle().await;
    up.push(
        GROUP,
        Behavior::ok(&answer())
            .chunked(5, Duration::ZERO)
            .error_after(2, "broke"),
    );
    let (cache, _) = stream(&proxy, &body).await;
    assert_eq!(cache, "miss", "the cut stream was not stored");
    settle().await;
    let (cache, payloads) = stream(&proxy, &body).await;
    assert_eq!(cache, "miss", "nor the failed one");
    assert_eq!(text(&payloads), answer());
    assert_eq!(up.calls(GROUP), 3);
    settle().await;
    let (cache, _) = stream(&proxy, &body).await;
    assert_eq!(cache, "hit", "the clean one was");
    assert_eq!(up.calls(GROUP), 3);
}

#[tokio::test]
async fn chat_and_text_entries_never_answer_each_other() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    // One body for both endpoints: only the endpoint tells them apart.
    let mut body = text_body("same words");
    body["messages"] = json!([{"role": "user", "content": "same words"}]);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);

    let (cache, _) = stream(&proxy, &streamed).await;
    assert_eq!(cache, "miss");
    settle().await;
    let (cache, payloads) = stream_at(&proxy, "/v1/chat/completions", &streamed).await;
    assert_eq!(cache, "miss", "a text entry does not answer chat");
    assert_eq!(events(&payloads)[0]["object"], "chat.completion.chunk");
    assert_eq!(up.calls(GROUP), 2);
    settle().await;

    let (cache, chat) = plain_at(&proxy, "/v1/chat/completions", &body).await;
    assert_eq!(cache, "hit");
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["content"], answer());
    let (cache, text_answer) = plain_at(&proxy, "/v1/completions", &body).await;
    assert_eq!(cache, "hit");
    assert_eq!(text_answer["object"], "text_completion");
    assert_eq!(text_answer["choices"][0]["text"], answer());
    assert_eq!(up.calls(GROUP), 2);

    // A chat entry stored first does not answer a text request either.
    let mut body = text_body("chat first");
    body["messages"] = json!([{"role": "user", "content": "chat first"}]);
    let (cache, _) = plain_at(&proxy, "/v1/chat/completions", &body).await;
    assert_eq!(cache, "stored");
    body["stream"] = json!(true);
    let (cache, payloads) = stream(&proxy, &body).await;
    assert_eq!(cache, "miss", "a chat entry does not answer a text stream");
    assert_eq!(events(&payloads)[0]["object"], "text_completion");
    assert_eq!(up.calls(GROUP), 4);
}

const SDK_SCRIPT: &str = r#"
import json, sys, time
import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10)
runs = []
for _ in range(2):
    raw = client.completions.with_raw_response.create(
        model=model, prompt="the sdk asks twice", max_tokens=200, stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in raw.parse():
        if chunk.choices:
            parts.append(chunk.choices[0].text)
            if chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        if chunk.usage:
            usage = chunk.usage.total_tokens
    runs.append({"cache": raw.headers.get("x-conclave-cache"), "text": "".join(parts),
                 "finish": finish, "total_tokens": usage})
    time.sleep(0.1)
print(json.dumps(runs))
"#;

#[tokio::test]
async fn the_openai_sdk_reads_a_replayed_text_stream() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let base_url = proxy.url("/v1");
    let Some(runs) = sdk_support::run_script(
        &proxy,
        "cache_text_stream.py",
        SDK_SCRIPT,
        &[&base_url, GROUP],
    )
    .await
    else {
        return;
    };
    assert_eq!(runs[0]["cache"], "miss", "{runs}");
    assert_eq!(runs[1]["cache"], "hit", "{runs}");
    for run in runs.as_array().unwrap() {
        assert_eq!(run["text"], answer().as_str(), "{runs}");
        assert_eq!(run["finish"], "stop", "{runs}");
        assert_eq!(run["total_tokens"], 12, "{runs}");
    }
    assert_eq!(up.calls(GROUP), 1);
}
