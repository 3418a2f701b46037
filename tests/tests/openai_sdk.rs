//! The official `openai` Python package against conclave: if the SDK can
//! talk to it, so can the applications built on it. Skipped (with a printed
//! reason) where python3 or `pip install openai` is not available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use serde_json::Value;

const MASTER_KEY: &str = "sk-e2e-sdk-master";

const SCRIPT: &str = r#"
import json, sys
import openai

base_url, mode, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=sys.argv[4], max_retries=0, timeout=10)
messages = [{"role": "user", "content": "hello from the sdk"}]
if mode == "plain":
    r = client.chat.completions.create(model=model, messages=messages, temperature=0.5)
    out = {
        "content": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "total_tokens": r.usage.total_tokens,
        "system_fingerprint": r.system_fingerprint,
        "request_id": r._request_id,
    }
elif mode == "stream":
    parts, chunks, usage = [], 0, None
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.total_tokens
    out = {"content": "".join(parts), "chunks": chunks, "total_tokens": usage}
elif mode in ("retried", "tried-once"):
    sent = []
    http = openai.DefaultHttpxClient(event_hooks={"request": [lambda request: sent.append(1)]})
    retrying = openai.OpenAI(
        base_url=base_url, api_key=sys.argv[4], max_retries=2, timeout=10, http_client=http
    )
    extra = {"num_retries": 0} if mode == "tried-once" else {}
    try:
        retrying.chat.completions.create(model=model, messages=messages, extra_body=extra)
        out = {"raised": None, "sent": len(sent)}
    except openai.APIStatusError as e:
        out = {"raised": type(e).__name__, "status": e.status_code, "sent": len(sent)}
elif mode == "retrieve":
    try:
        m = client.models.retrieve(model)
        out = {"id": m.id, "object": m.object}
    except openai.APIStatusError as e:
        out = {"raised": type(e).__name__, "status": e.status_code}
else:
    try:
        client.chat.completions.create(model=model, messages=messages)
        out = {"raised": None}
    except openai.APIStatusError as e:
        out = {
            "raised": type(e).__name__, "status": e.status_code, "code": e.code,
            "type": e.type, "param": e.param,
        }
print(json.dumps(out))
"#;

/// Runs the SDK script in `mode` against `proxy` and returns its JSON output.
async fn sdk(proxy: &Proxy, mode: &str, model: &str) -> Option<Value> {
    let base_url = proxy.url("/v1");
    sdk_support::run_script(
        proxy,
        "sdk_check.py",
        SCRIPT,
        &[&base_url, mode, model, MASTER_KEY],
    )
    .await
}

async fn proxy_for(up: &FakeUpstream) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  master_key: {MASTER_KEY}\n",
        conclave_e2e::deployment("sdk-model", "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await
}

#[tokio::test]
async fn openai_sdk_chat_completion_gets_the_answer() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for the sdk"));
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "plain", "sdk-model").await else {
        return;
    };
    assert_eq!(out["content"], "answer for the sdk", "{out}");
    assert_eq!(out["finish_reason"], "stop", "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
    assert_eq!(out["system_fingerprint"], "fp_fake", "{out}");
    assert!(
        out["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req-")),
        "the SDK reads the gateway's request id: {out}"
    );
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["model"], "gpt-up");
    assert_eq!(sent["temperature"], 0.5);
}

#[tokio::test]
async fn the_sdk_does_not_retry_what_the_gateway_retried_already() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "down"));
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "retried", "sdk-model").await else {
        return;
    };
    assert_eq!(out["status"], 502, "{out}");
    assert_eq!(
        out["sent"], 1,
        "the SDK retried the gateway's retries: {out}"
    );
    assert_eq!(
        up.calls("a"),
        3,
        "the gateway's own retries (num_retries 2)"
    );
}

#[tokio::test]
async fn the_sdk_retries_a_request_the_gateway_tried_once() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "down"));
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "tried-once", "sdk-model").await else {
        return;
    };
    assert_eq!(out["raised"], "InternalServerError", "{out}");
    assert_eq!(out["sent"], 3, "max_retries 2: {out}");
}

#[tokio::test]
async fn openai_sdk_stream_gets_every_chunk_and_usage() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("streamed to the python sdk").chunked(4, Duration::ZERO),
    );
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "stream", "sdk-model").await else {
        return;
    };
    assert_eq!(out["content"], "streamed to the python sdk", "{out}");
    // Four content chunks, the finish chunk and the usage chunk.
    assert_eq!(out["chunks"], 6, "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
}

#[tokio::test]
async fn openai_sdk_reads_conclave_errors_as_api_errors() {
    let up = FakeUpstream::start().await;
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "error", "no-such-model").await else {
        return;
    };
    assert_eq!(out["raised"], "NotFoundError", "{out}");
    assert_eq!(out["status"], 404, "{out}");
    assert_eq!(out["code"], "model_not_found", "{out}");
    assert_eq!(out["type"], "invalid_request_error", "{out}");
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn openai_sdk_reads_the_param_an_upstream_error_names() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(400, "Invalid value for 'temperature'").param("temperature"),
    );
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "error", "sdk-model").await else {
        return;
    };
    assert_eq!(out["raised"], "BadRequestError", "{out}");
    assert_eq!(out["param"], "temperature", "{out}");
}

#[tokio::test]
async fn openai_sdk_retrieves_a_model_and_is_told_of_an_unknown_one() {
    let up = FakeUpstream::start().await;
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "retrieve", "sdk-model").await else {
        return;
    };
    assert_eq!(out["id"], "sdk-model", "{out}");
    assert_eq!(out["object"], "model", "{out}");
    let Some(out) = sdk(&proxy, "retrieve", "no-such-model").await else {
        return;
    };
    assert_eq!(out["raised"], "NotFoundError", "{out}");
}

/// The `AzureOpenAI` client, which names the model in the path
/// (`/openai/deployments/{model}/...`), pointed at the gateway.
const AZURE_SCRIPT: &str = r#"
import json, sys
import openai

endpoint, key = sys.argv[1], sys.argv[2]
client = openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version="2024-10-21", max_retries=0, timeout=10)
chat = client.chat.completions.create(model="sdk-model", messages=[{"role": "user", "content": "hi"}])
embedded = client.embeddings.create(model="sdk-model", input="hi")
print(json.dumps({"content": chat.choices[0].message.content, "vectors": len(embedded.data)}))
"#;

#[tokio::test]
async fn the_azure_client_reaches_a_model_named_in_the_deployment_path() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for azure"));
    let proxy = proxy_for(&up).await;
    let endpoint = proxy.url("");
    let Some(out) =
        sdk_support::run_script(&proxy, "azure.py", AZURE_SCRIPT, &[&endpoint, MASTER_KEY]).await
    else {
        return;
    };
    assert_eq!(out["content"], "answer for azure", "{out}");
    assert_eq!(out["vectors"], 1, "{out}");
    // The path names the model, whether the body names another or none.
    for (path, body) in [
        (
            "/engines/sdk-model/chat/completions",
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/openai/deployments/sdk-model/chat/completions",
            serde_json::json!({"model": "elsewhere", "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let (status, answer) = proxy
            .call(reqwest::Method::POST, path, Some(body), Some(MASTER_KEY))
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "answer for azure"
        );
    }
    let (status, answer) = proxy
        .call(
            reqwest::Method::POST,
            "/openai/deployments/no-such-model/chat/completions",
            Some(serde_json::json!({"messages": []})),
            Some(MASTER_KEY),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
}
