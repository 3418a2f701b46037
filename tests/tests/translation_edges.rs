//! What a chat upstream may answer that the Messages and Responses
//! translations must carry over, through the real binary: refusals, tool
//! calls finished with `stop`, tool names streamed in pieces, streams with
//! more than one choice, and stream events they cannot read (half a
//! surrogate pair, a number past any float).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::{Behavior, FakeUpstream, Proxy, deployment, sse_payloads};
use serde_json::{Value, json};

async fn gateway(up: &FakeUpstream) -> Proxy {
    let yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n",
        deployment("g", "openai/gpt-up", &up.api_base("a"), &[])
    );
    Proxy::start(&yaml).await
}

fn messages(stream: bool) -> Value {
    json!({"model": "g", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

fn responses(stream: bool) -> Value {
    json!({"model": "g", "input": "hi", "stream": stream})
}

/// Posts `body` to `path`; the status and the body's text.
async fn post(proxy: &Proxy, path: &str, body: &Value) -> (u16, String) {
    let r = proxy.post(path, body).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The SSE events of a stream's text, parsed.
fn events(text: &str) -> Vec<Value> {
    sse_payloads(text)
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

/// One SSE piece carrying a chat chunk with `choice`.
fn chunk(choice: Value) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-up", "choices": [choice]})
    )
}

fn sse(chunks: &[String]) -> Behavior {
    let mut pieces: Vec<&str> = chunks.iter().map(String::as_str).collect();
    pieces.push("data: [DONE]\n\n");
    Behavior::raw_sse(&pieces)
}

const REFUSAL: &str = "I can't help with that.";

#[tokio::test]
async fn a_refusal_reaches_messages_and_responses_clients() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": null, "refusal": REFUSAL}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}});
    up.set(
        "a",
        Behavior::raw_body("application/json", answer.to_string()),
    );
    let (status, text) = post(&proxy, "/v1/messages", &messages(false)).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["content"][0]["text"], REFUSAL, "{message}");
    assert_eq!(message["stop_reason"], "refusal");
    let (status, text) = post(&proxy, "/v1/responses", &responses(false)).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    let part = &response["output"][0]["content"][0];
    assert_eq!(part["type"], "refusal", "{response}");
    assert_eq!(part["refusal"], REFUSAL);

    let (first, rest) = REFUSAL.split_at(6);
    up.set(
        "a",
        sse(&[
            chunk(json!({"index": 0, "delta": {"role": "assistant", "refusal": first}})),
            chunk(json!({"index": 0, "delta": {"refusal": rest}})),
            chunk(json!({"index": 0, "delta": {}, "finish_reason": "stop"})),
        ]),
    );
    let (status, text) = post(&proxy, "/v1/messages", &messages(true)).await;
    assert_eq!(status, 200, "{text}");
    let streamed = events(&text);
    let said: String = streamed
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, REFUSAL, "{text}");
    let stop = streamed
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(stop["delta"]["stop_reason"], "refusal");
    let (status, text) = post(&proxy, "/v1/responses", &responses(true)).await;
    assert_eq!(status, 200, "{text}");
    let streamed = events(&text);
    let deltas: String = streamed
        .iter()
        .filter(|e| e["type"] == "response.refusal.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(deltas, REFUSAL, "{text}");
    let done = streamed.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{text}");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["refusal"],
        REFUSAL
    );
}

#[tokio::test]
async fn a_tool_call_finished_with_stop_still_stops_for_the_tool() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let call = json!({"id": "call_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-up",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": null, "tool_calls": [call]}}]});
    up.set(
        "a",
        Behavior::raw_body("application/json", answer.to_string()),
    );
    let (status, text) = post(&proxy, "/v1/messages", &messages(false)).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["content"][0]["type"], "tool_use", "{message}");
    assert_eq!(message["stop_reason"], "tool_use");

    // The name in two pieces, as some servers stream it.
    up.set(
        "a",
        sse(&[
            chunk(json!({"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_", "arguments": ""}}]}})),
            chunk(json!({"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}})),
            chunk(json!({"index": 0, "delta": {}, "finish_reason": "stop"})),
        ]),
    );
    let (status, text) = post(&proxy, "/v1/messages", &messages(true)).await;
    assert_eq!(status, 200, "{text}");
    let streamed = events(&text);
    let block = streamed
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .unwrap();
    assert_eq!(block["content_block"]["name"], "get_weather", "{text}");
    let stop = streamed
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(stop["delta"]["stop_reason"], "tool_use", "{text}");
}

#[tokio::test]
async fn a_stream_of_two_choices_is_translated_from_the_first() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    up.set(
        "a",
        sse(&[
            chunk(json!({"index": 0, "delta": {"content": "first "}})),
            chunk(json!({"index": 1, "delta": {"content": "second "}})),
            chunk(json!({"index": 0, "delta": {"content": "again"}, "finish_reason": "stop"})),
            chunk(json!({"index": 1, "delta": {"content": "other"}, "finish_reason": "stop"})),
        ]),
    );
    let (status, text) = post(&proxy, "/v1/messages", &messages(true)).await;
    assert_eq!(status, 200, "{text}");
    let said: String = events(&text)
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "first again");
}

#[tokio::test]
async fn a_stream_event_a_translation_cannot_read_ends_it_with_an_error_not_silence() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    // Half a surrogate pair (a server cutting a string between the two),
    // and a number past any float, which the event check skips unread.
    let unreadable = [
        vec![
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\\ud83d\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ude00B\"}}]}\n\n",
        ],
        vec![
            "data: {\"id\":\"c\",\"x\":1e999,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Z\"}}]}\n\n",
        ],
    ];
    for pieces in unreadable {
        let mut stream = vec![chunk(json!({"index": 0, "delta": {"content": "Hello "}}))];
        stream.extend(pieces.iter().map(|p| (*p).to_owned()));
        stream.push(chunk(
            json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
        ));
        up.set("a", sse(&stream));
        let (status, text) = post(&proxy, "/v1/messages", &messages(true)).await;
        assert_eq!(status, 200, "{text}");
        let types: Vec<Value> = events(&text).iter().map(|e| e["type"].clone()).collect();
        assert_eq!(types.last(), Some(&json!("error")), "{text}");
        assert!(!types.contains(&json!("message_stop")), "{text}");
        let (status, text) = post(&proxy, "/v1/responses", &responses(true)).await;
        assert_eq!(status, 200, "{text}");
        let types: Vec<Value> = events(&text).iter().map(|e| e["type"].clone()).collect();
        assert!(types.contains(&json!("response.failed")), "{text}");
        assert!(!types.contains(&json!("response.completed")), "{text}");
    }
}

#[tokio::test]
async fn a_stream_that_ends_without_any_answer_is_a_502_on_every_api() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    for pieces in [
        &["data: {}\n\n", "data: [DONE]\n\n"][..],
        &["data: [DONE]\n\n"][..],
    ] {
        up.set("a", Behavior::raw_sse(pieces));
        let mut chat = conclave_e2e::chat_body("g", "hi");
        chat["stream"] = json!(true);
        for (path, body) in [
            ("/v1/chat/completions", chat),
            ("/v1/messages", messages(true)),
            ("/v1/responses", responses(true)),
        ] {
            let (status, text) = post(&proxy, path, &body).await;
            assert_eq!(status, 502, "{path} {pieces:?}: {text}");
        }
    }
}

/// Structured output follows the order of a schema's properties, and a
/// client reads tool arguments in the order the model wrote them: both
/// translations keep every object's keys in the order they came.
#[tokio::test]
async fn both_translations_keep_the_order_of_object_keys_both_ways() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    up.set("a", Behavior::tool_call("pick", r#"{"zeta":1,"alpha":2}"#));
    let schema = r#"{"type":"object","properties":{"reasoning":{"type":"string"},"answer":{"type":"string"}}}"#;
    let bodies = [
        (
            "/v1/messages",
            format!(
                r#"{{"model":"g","max_tokens":64,"messages":[{{"role":"user","content":"hi"}}],"tools":[{{"name":"pick","input_schema":{schema}}}]}}"#
            ),
        ),
        (
            "/v1/responses",
            format!(
                r#"{{"model":"g","input":"hi","tools":[{{"type":"function","name":"pick","parameters":{schema}}}]}}"#
            ),
        ),
    ];
    for (path, body) in bodies {
        let r = proxy.post_text(path, body).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        let sent = String::from_utf8(up.recorded().last().unwrap().raw_body.to_vec()).unwrap();
        let (reasoning, answer) = (
            sent.find("reasoning").unwrap(),
            sent.find("answer").unwrap(),
        );
        assert!(reasoning < answer, "{path}: the schema reordered: {sent}");
        let (zeta, alpha) = (text.find("zeta").unwrap(), text.find("alpha").unwrap());
        assert!(zeta < alpha, "{path}: the arguments reordered: {text}");
    }
}
