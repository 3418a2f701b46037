//! Streams and the response cache: a hit replayed as valid SSE (read by the
//! official `openai` SDK too), a cut stream never stored, and one entry
//! serving streamed and plain requests alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, chat_body, deployments, sse_content, sse_payloads,
};
use serde_json::{Value, json};

const GROUP: &str = "gpt-stream-cache";
const ANSWER: &str = "streams are replayed from the cache in pieces";

async fn start(up: &FakeUpstream) -> Proxy {
    up.set(GROUP, Behavior::ok(ANSWER).chunked(4, Duration::ZERO));
    Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n",
        deployments(up, &[(GROUP, &[])])
    ))
    .await
}

fn stream_body(prompt: &str, include_usage: bool) -> Value {
    let mut body = chat_body(GROUP, prompt);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Sends a streaming request; the cache header and the SSE payloads.
async fn stream(proxy: &Proxy, body: &Value) -> (String, Vec<String>) {
    let r = proxy.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let cache = r.headers()["x-conclave-cache"].to_str().unwrap().to_owned();
    let text = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .unwrap()
        .unwrap();
    (cache, sse_payloads(&text))
}

fn finish_reason(payloads: &[String]) -> Option<String> {
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .find_map(|v| v["choices"][0]["finish_reason"].as_str().map(str::to_owned))
}

fn usage(payloads: &[String]) -> Option<Value> {
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
}

#[tokio::test]
async fn a_stream_hit_is_replayed_as_valid_sse_with_finish_reason_and_usage() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let body = stream_body("stream me", true);
    let (first_cache, first) = stream(&proxy, &body).await;
    assert_eq!(
        first_cache, "miss",
        "a stream's headers leave before it is stored"
    );
    assert_eq!(sse_content(&first), ANSWER);
    // The entry is written when the stream ends; give the server a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (cache, replay) = stream(&proxy, &body).await;
    assert_eq!(cache, "hit");
    assert_eq!(up.calls(GROUP), 1);
    assert_eq!(sse_content(&replay), ANSWER);
    assert_eq!(replay.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(finish_reason(&replay).as_deref(), Some("stop"));
    assert_eq!(usage(&replay).unwrap()["total_tokens"], 12);
    for p in replay.iter().filter(|p| p.as_str() != "[DONE]") {
        let v: Value = serde_json::from_str(p).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{p}");
    }
    // Without include_usage, no usage chunk.
    let (cache, replay) = stream(&proxy, &stream_body("stream me", false)).await;
    assert_eq!(cache, "hit");
    assert!(usage(&replay).is_none(), "{replay:?}");
}

#[tokio::test]
async fn a_cut_stream_is_not_stored() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    up.set(
        GROUP,
        Behavior::ok(ANSWER)
            .chunked(4, Duration::ZERO)
            .drop_after(2),
    );
    let body = stream_body("cut me", false);
    let r = proxy.post("/v1/chat/completions", &body).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), r.text()).await;
    up.set(
        GROUP,
        Behavior::ok(ANSWER)
            .chunked(4, Duration::ZERO)
            .error_after(2, "broke"),
    );
    let r = proxy.post("/v1/chat/completions", &body).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), r.text()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    up.set(GROUP, Behavior::ok(ANSWER).chunked(4, Duration::ZERO));
    let (cache, payloads) = stream(&proxy, &body).await;
    assert_eq!(cache, "miss", "neither broken stream was stored");
    assert_eq!(sse_content(&payloads), ANSWER);
    assert_eq!(up.calls(GROUP), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (cache, _) = stream(&proxy, &body).await;
    assert_eq!(cache, "hit", "the clean one was");
    assert_eq!(up.calls(GROUP), 3);
}

#[tokio::test]
async fn a_streamed_answer_serves_a_plain_request_and_the_other_way_round() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    stream(&proxy, &stream_body("streamed first", true)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, headers, body) = proxy.chat(&chat_body(GROUP, "streamed first")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-conclave-cache"], "hit");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 12);
    assert_eq!(up.calls(GROUP), 1);

    let (_, headers, _) = proxy.chat(&chat_body(GROUP, "plain first")).await;
    assert_eq!(headers["x-conclave-cache"], "stored");
    let (cache, payloads) = stream(&proxy, &stream_body("plain first", true)).await;
    assert_eq!(cache, "hit");
    assert_eq!(sse_content(&payloads), ANSWER);
    assert_eq!(usage(&payloads).unwrap()["total_tokens"], 12);
    assert_eq!(up.calls(GROUP), 2);
}

const SDK_SCRIPT: &str = r#"
import json, sys
import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10)
messages = [{"role": "user", "content": "the sdk asks twice"}]
runs = []
for _ in range(2):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    parts, finish, usage = [], None, None
    for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage:
            usage = chunk.usage.total_tokens
    runs.append({"cache": raw.headers.get("x-conclave-cache"), "content": "".join(parts),
                 "finish": finish, "total_tokens": usage})
    import time; time.sleep(0.1)
print(json.dumps(runs))
"#;

#[tokio::test]
async fn the_openai_sdk_reads_a_replayed_stream() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let base_url = proxy.url("/v1");
    let Some(runs) =
        sdk_support::run_script(&proxy, "cache_stream.py", SDK_SCRIPT, &[&base_url, GROUP]).await
    else {
        return;
    };
    assert_eq!(runs[0]["cache"], "miss", "{runs}");
    assert_eq!(runs[1]["cache"], "hit", "{runs}");
    for run in runs.as_array().unwrap() {
        assert_eq!(run["content"], ANSWER, "{runs}");
        assert_eq!(run["finish"], "stop", "{runs}");
        assert_eq!(run["total_tokens"], 12, "{runs}");
    }
    assert_eq!(up.calls(GROUP), 1);
}

/// A Messages client's streamed and plain requests for the same question
/// share one entry too, as chat requests do.
#[tokio::test]
async fn a_messages_answer_serves_the_same_question_streamed() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let body = json!({
        "model": GROUP,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "ask once, read twice"}],
    });
    let plain = proxy.post("/v1/messages", &body).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["x-conclave-cache"], "stored");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = proxy.post("/v1/messages", &streamed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-cache"], "hit");
    let text = r.text().await.unwrap();
    assert!(text.contains("message_stop"), "{text}");
    assert_eq!(up.calls(GROUP), 1);
    // Controls in `metadata.cache` are read on this route too.
    let mut unstored = body.clone();
    unstored["messages"][0]["content"] = json!("ask once, keep nothing");
    unstored["metadata"] = json!({"cache": {"no-store": true}});
    let r = proxy.post("/v1/messages", &unstored).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-cache"], "miss");
    assert_eq!(up.calls(GROUP), 2);
}
