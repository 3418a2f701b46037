//! Chat requests to a `text-completion-openai/` deployment, which serves
//! only OpenAI's completions endpoint, through the real binary: the
//! official `openai` client's chat calls (plain and streamed) reach the
//! upstream's `/completions` as a prompt and come back as chat answers; a
//! part a prompt has no place for is refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, deployment};
use serde_json::json;

const KEY: &str = "sk-text-completion-master";

const SCRIPT: &str = r#"
import json, sys
import openai

base_url, key = sys.argv[1:3]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
plain = client.chat.completions.create(
    model="instruct", messages=[{"role": "user", "content": "Say hi"}], max_tokens=5)
pieces, roles = [], []
for chunk in client.chat.completions.create(
        model="instruct", messages=[{"role": "user", "content": "Say hi"}], stream=True):
    for choice in chunk.choices:
        pieces.append(choice.delta.content or "")
        roles.append(choice.delta.role)
print(json.dumps({"object": plain.object, "content": plain.choices[0].message.content,
                  "role": plain.choices[0].message.role, "finish": plain.choices[0].finish_reason,
                  "total_tokens": plain.usage.total_tokens, "streamed": "".join(pieces),
                  "first_role": roles[0]}))
"#;

async fn start(up: &FakeUpstream) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\ngeneral_settings:\n  master_key: {KEY}\n",
        deployment(
            "instruct",
            "text-completion-openai/gpt-3.5-turbo-instruct",
            &up.api_base("tc"),
            &[]
        )
    ))
    .await
}

#[tokio::test]
async fn the_openai_client_chats_with_a_completions_only_deployment() {
    let up = FakeUpstream::start().await;
    up.set(
        "tc",
        Behavior::ok("Hi there friend").chunked(3, Duration::ZERO),
    );
    let proxy = start(&up).await;
    let base = proxy.url("/v1");
    let Some(out) = sdk_support::run_script(&proxy, "text_chat.py", SCRIPT, &[&base, KEY]).await
    else {
        return;
    };
    assert_eq!(
        out,
        json!({"object": "chat.completion", "content": "Hi there friend", "role": "assistant",
               "finish": "stop", "total_tokens": 12, "streamed": "Hi there friend",
               "first_role": "assistant"})
    );
    let calls = up.recorded();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(call.path, "/v1/completions");
        assert_eq!(call.body["prompt"], "Say hi");
        assert_eq!(call.body["model"], "gpt-3.5-turbo-instruct");
        assert!(call.body.get("messages").is_none(), "{}", call.body);
    }
    assert_eq!(calls[0].body["max_tokens"], 5);
}

#[tokio::test]
async fn several_messages_are_one_prompt_each_and_an_image_is_refused_by_name() {
    let up = FakeUpstream::start().await;
    up.set("tc", Behavior::ok("fine"));
    let proxy = start(&up).await;
    let (status, body) = proxy
        .call(
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "instruct", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]})),
            Some(KEY),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        up.last_body("tc").unwrap()["prompt"],
        json!(["Be brief.", "Say hi"])
    );

    let (status, body) = proxy
        .call(
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(
                json!({"model": "instruct", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            ),
            Some(KEY),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages[0].content[1]", "{body}");
    assert_eq!(up.calls("tc"), 1);
}
