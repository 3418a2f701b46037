//! Failures as the client sees them: status, OpenAI-shaped error body, and
//! what happens upstream when the client goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, SseReader, body_text, chat_body, deployment, error_object,
    sse_payloads,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// A proxy with one group `m` served by fake deployment `a`, plus extra
/// top-level YAML (e.g. `router_settings`).
async fn one_group(up: &FakeUpstream, extra: &[&str], sections: &str) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}{sections}",
        deployment("m", "openai/gpt-up", &up.api_base("a"), extra)
    ))
    .await
}

const NO_RETRIES: &str = "router_settings:\n  num_retries: 0\n";

async fn post_raw(proxy: &Proxy, path: &str, body: &'static str) -> (u16, Value) {
    let r = proxy.post_text(path, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let (status, body) = post_raw(&proxy, "/v1/chat/completions", "{\"model\": \"m\", ").await;
    assert_eq!(status, 400, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(
        e["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn missing_messages_is_400_naming_the_param() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let (status, _, body) = proxy.chat(&json!({"model": "m"})).await;
    assert_eq!(status, 400, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "messages");
    assert!(
        e["message"].as_str().unwrap().contains("messages"),
        "{body}"
    );
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let (status, _, body) = proxy.chat(&chat_body("no-such-model", "hi")).await;
    assert_eq!(status, 404, "{body}");
    let e = error_object(&body);
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "model");
    assert!(
        e["message"].as_str().unwrap().contains("no-such-model"),
        "{body}"
    );
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn unknown_url_is_404_in_openai_shape() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let r = proxy.post("/v1/no/such/route", &json!({})).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_object(&body)["code"], "unknown_url");
}

/// A path meant for the Messages API that no route serves answers in
/// Anthropic's shape, which an Anthropic client reads; one behind a doubled
/// `/v1` says where the API is.
#[tokio::test]
async fn an_unknown_messages_path_is_404_in_anthropic_shape() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    for (path, hinted) in [
        ("/v1/messages/batches", false),
        ("/anthropic/v1/files/x", false),
        ("/v1/v1/messages", true),
    ] {
        let r = proxy.post(path, &json!({})).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(body["error"]["type"], "not_found_error", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(message.contains("without /v1"), hinted, "{path}: {message}");
    }
}

const MASTER: &str = "general_settings:\n  master_key: sk-master-e2e\n";

#[tokio::test]
async fn master_key_missing_is_401() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], MASTER).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 401, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "authentication_error");
    assert_eq!(e["code"], "invalid_api_key");
    let r = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn master_key_wrong_is_401() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], MASTER).await;
    for (header, value) in [
        ("authorization", "Bearer sk-master-e2f"),
        ("authorization", "Bearer sk-master-e2e-and-more"),
        ("x-api-key", "sk-wrong"),
    ] {
        let r = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .header(header, value)
            .json(&chat_body("m", "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{header}: {value}");
        let body: Value = r.json().await.unwrap();
        let e = error_object(&body);
        assert_eq!(e["code"], "invalid_api_key");
        assert!(
            !body.to_string().contains("sk-master-e2e\""),
            "the real key leaked: {body}"
        );
    }
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn master_key_accepted_as_bearer_and_as_x_api_key() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], MASTER).await;
    for (header, value) in [
        ("authorization", "Bearer sk-master-e2e"),
        ("x-api-key", "sk-master-e2e"),
    ] {
        let r = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .header(header, value)
            .json(&chat_body("m", "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "fake answer");
    }
    assert_eq!(up.calls("a"), 2);
    // The client's key is not the upstream's: conclave sends its own.
    for rec in up.recorded() {
        assert_eq!(rec.headers["authorization"], "Bearer sk-test-key");
        assert!(rec.headers.get("x-api-key").is_none());
    }
}

#[tokio::test]
async fn liveliness_and_readiness_need_no_master_key() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], MASTER).await;
    for path in ["/health/liveliness", "/health/readiness"] {
        let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = proxy.client.get(proxy.url("/health")).send().await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "/health reveals deployments and needs the key"
    );
}

#[tokio::test]
async fn upstream_429_stays_429_with_retry_after() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(429, "slow down, fake limit").header("retry-after", "7"),
    );
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let (status, headers, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["retry-after-ms"], "7000");
    let e = error_object(&body);
    assert_eq!(e["type"], "rate_limit_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("slow down, fake limit"),
        "{body}"
    );
    assert_eq!(up.calls("a"), 1);
}

/// A wait shorter than a second keeps its precision for the clients that
/// read `retry-after-ms` (OpenAI's and Anthropic's SDKs prefer it).
#[tokio::test]
async fn a_sub_second_upstream_wait_reaches_the_client_in_milliseconds() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(429, "slow down").header("retry-after-ms", "300"),
    );
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let (status, headers, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after-ms"], "300");
    assert_eq!(headers["retry-after"], "1", "whole seconds, rounded up");
}

#[tokio::test]
async fn upstream_500_becomes_502() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "fake server exploded"));
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 502, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "upstream_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("fake server exploded"),
        "{body}"
    );
    assert_eq!(up.calls("a"), 1);
}

#[tokio::test]
async fn upstream_slower_than_timeout_is_504() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("late").delayed(Duration::from_secs(5)));
    let proxy = one_group(&up, &["timeout: 0.3"], NO_RETRIES).await;
    let started = Instant::now();
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "timeout_error");
    assert_eq!(e["code"], "upstream_timeout");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
}

#[tokio::test]
async fn stream_whose_first_chunk_is_late_is_504_before_it_starts() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("late").delayed(Duration::from_secs(5)));
    let proxy = one_group(&up, &["stream_timeout: 0.3"], NO_RETRIES).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let (status, _, body) = proxy.chat(&body).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_object(&body)["code"], "upstream_timeout");
}

#[tokio::test]
async fn body_over_max_request_size_is_413() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "general_settings:\n  max_request_size_mb: 0.01\n").await;
    let big = "x".repeat(20_000);
    let (status, _, body) = proxy.chat(&chat_body("m", &big)).await;
    assert_eq!(status, 413, "{body}");
    let e = error_object(&body);
    assert_eq!(e["code"], "request_too_large");
    assert_eq!(e["type"], "invalid_request_error");
    // A body under the limit still goes through.
    let (status, _, body) = proxy.chat(&chat_body("m", "small")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("a"), 1);
}

#[tokio::test]
async fn chunked_body_over_max_request_size_is_413() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "general_settings:\n  max_request_size_mb: 0.01\n").await;
    let big = serde_json::to_vec(&chat_body("m", &"y".repeat(20_000))).unwrap();
    // Sent as a stream of pieces, so there is no content-length to refuse early.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers().get("content-length").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_object(&body)["code"], "request_too_large");
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn a_compressed_request_body_is_415_naming_the_encoding() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    for (path, encoding) in [
        ("/v1/chat/completions", "gzip"),
        ("/v1/messages", "br"),
        ("/v1/responses", "GZIP, deflate"),
    ] {
        let r = proxy
            .client
            .post(proxy.url(path))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(vec![0x1f, 0x8b, 0x08, 0x00])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{path}");
        let body: Value = r.json().await.unwrap();
        let text = body.to_string();
        assert!(
            text.contains("Content-Encoding") && text.contains(encoding),
            "{body}"
        );
    }
    // `identity` is no encoding at all.
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("content-encoding", "identity")
        .json(&chat_body("m", "plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.calls("a"), 1);
    // A second header is read too.
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("content-encoding", "identity")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn stream_broken_upstream_ends_with_an_error_event_and_no_done() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("one two three four five")
            .chunked(5, Duration::ZERO)
            .drop_after(2),
    );
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let payloads = sse_payloads(&body_text(r, LIMIT).await);
    assert_eq!(payloads.len(), 3, "{payloads:#?}");
    assert_eq!(conclave_e2e::sse_content(&payloads[..2]), "one two ");
    assert!(!payloads.iter().any(|p| p == "[DONE]"), "{payloads:#?}");
    let last: Value = serde_json::from_str(&payloads[2]).unwrap();
    let e = error_object(&last);
    assert_eq!(e["type"], "upstream_error", "{last}");
    assert_eq!(up.calls("a"), 1);
}

/// Its tail is letters that no timestamp, port or hex request id in the
/// logs can contain, so finding it there means the key leaked.
const SECRET: &str = "sk-upstream-secret-qzvy";

#[tokio::test]
async fn upstream_api_key_never_appears_in_error_bodies_or_logs() {
    let up = FakeUpstream::start().await;
    let echo = format!("Incorrect API key provided: {SECRET}. Check your key.");
    up.set("auth", Behavior::status(401, &echo));
    up.set(
        "boom",
        Behavior::status(500, &format!("crashed while using {SECRET}")),
    );
    up.set(
        "bad",
        Behavior::status(400, &format!("key {SECRET} cannot do this")),
    );
    up.set("broken", Behavior::ok("a b c d").drop_after(1));
    let entry = |name: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/up\n      api_base: {}\n      api_key: {SECRET}\n",
            up.api_base(name)
        )
    };
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}{}{}{NO_RETRIES}",
        entry("auth"),
        entry("boom"),
        entry("bad"),
        entry("broken"),
    ))
    .await;
    for (name, expected) in [("auth", 401), ("boom", 502), ("bad", 400)] {
        let (status, _, body) = proxy.chat(&chat_body(name, "hi")).await;
        assert_eq!(status, expected, "{name}: {body}");
        let e = error_object(&body);
        let message = e["message"].as_str().unwrap();
        assert!(!message.contains(SECRET), "{name} leaked the key: {body}");
        assert!(message.contains("[redacted]"), "{name}: {body}");
    }
    let mut body = chat_body("broken", "hi");
    body["stream"] = json!(true);
    let text = body_text(proxy.post("/v1/chat/completions", &body).await, LIMIT).await;
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // Every upstream really received the key.
    assert_eq!(up.recorded().len(), 4);
    for rec in up.recorded() {
        assert_eq!(rec.headers["authorization"], format!("Bearer {SECRET}"));
    }
    let logs = proxy.logs();
    assert!(
        logs.contains("[redacted]"),
        "the failures were not logged:\n{logs}"
    );
    assert!(!logs.contains(SECRET), "the key is in the logs:\n{logs}");
    assert!(
        !logs.contains("qzvy"),
        "part of the key is in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn client_leaving_mid_stream_cancels_the_upstream_stream() {
    let up = FakeUpstream::start().await;
    let words: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    up.set(
        "a",
        Behavior::ok(&words.concat()).chunked(40, Duration::from_millis(50)),
    );
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let mut events = SseReader::new(r);
    let first = events.next(LIMIT).await.unwrap();
    assert!(first.contains("w0"), "{first}");
    drop(events);
    let cancelled = up
        .wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
        .await;
    assert!(
        cancelled,
        "upstream not cancelled: cancelled={} completed={}",
        up.cancelled(),
        up.completed()
    );
    assert_eq!(up.completed(), 0);
}

#[tokio::test]
async fn client_abandoning_a_slow_request_cancels_the_upstream_request() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::hanging());
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let result = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat_body("m", "hi"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.calls("a") == 1)
            .await,
        "the request never reached the upstream"
    );
    let cancelled = up
        .wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
        .await;
    assert!(
        cancelled,
        "upstream request still running after the client left: cancelled={} completed={}",
        up.cancelled(),
        up.completed()
    );
}

#[tokio::test]
async fn wrong_method_is_405_in_openai_shape() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let r = proxy
        .client
        .get(proxy.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let text = body_text(r, LIMIT).await;
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let e = error_object(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "method_not_allowed");
}

#[tokio::test]
async fn streamed_embeddings_are_400_naming_stream() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], "").await;
    let r = proxy
        .post(
            "/v1/embeddings",
            &json!({"model": "m", "input": "x", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_object(&body)["param"], "stream");
    assert_eq!(up.recorded().len(), 0);
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port that was free a moment ago, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{NO_RETRIES}",
        deployment(
            "m",
            "openai/up",
            &format!("http://127.0.0.1:{port}/v1"),
            &[]
        )
    ))
    .await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 502, "{body}");
    let e = error_object(&body);
    assert_eq!(e["type"], "upstream_error");
    assert_eq!(e["code"], "upstream_unavailable");
}

#[tokio::test]
async fn stream_stalling_midway_ends_with_a_timeout_error_event() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("first then nothing").chunked(3, Duration::from_secs(5)),
    );
    let proxy = one_group(&up, &["stream_timeout: 0.3"], NO_RETRIES).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let payloads = sse_payloads(&body_text(r, LIMIT).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(payloads.len(), 2, "{payloads:#?}");
    assert_eq!(conclave_e2e::sse_content(&payloads[..1]), "first ");
    let last: Value = serde_json::from_str(&payloads[1]).unwrap();
    let e = error_object(&last);
    assert_eq!(e["type"], "timeout_error", "{last}");
    assert_eq!(e["code"], "upstream_timeout", "{last}");
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
            .await,
        "the stalled upstream stream was not closed"
    );
}

#[tokio::test]
async fn upstream_api_key_echoed_in_a_mid_stream_error_event_is_redacted() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("one two three").error_after(1, &format!("quota exceeded for key {SECRET}")),
    );
    let proxy = Proxy::start(&format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/up\n      api_base: {}\n      api_key: {SECRET}\n{NO_RETRIES}",
        up.api_base("a")
    ))
    .await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = body_text(r, LIMIT).await;
    let payloads = sse_payloads(&text);
    assert_eq!(conclave_e2e::sse_content(&payloads[..1]), "one ");
    assert!(!payloads.iter().any(|p| p == "[DONE]"), "{text}");
    let upstream_error: Value = serde_json::from_str(&payloads[1]).unwrap();
    assert_eq!(
        upstream_error["error"]["message"], "quota exceeded for key [redacted]",
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    assert!(!proxy.logs().contains(SECRET), "{}", proxy.logs());
}

#[tokio::test]
async fn an_upstream_errors_param_and_code_reach_the_client() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(400, "Invalid value for 'temperature'").param("temperature"),
    );
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 400, "{body}");
    let e = error_object(&body);
    assert_eq!(e["param"], "temperature", "{body}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Invalid value for 'temperature'"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_model_behind_a_wildcard_does_not_cool_the_models_it_serves() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{NO_RETRIES}",
        deployment("*", "openai/*", &up.api_base("any"), &[])
    ))
    .await;
    up.set(
        "any",
        Behavior::status(404, "The model `typo` does not exist"),
    );
    let (status, _, body) = proxy.chat(&chat_body("typo", "hi")).await;
    assert_eq!(status, 404, "{body}");
    up.set("any", Behavior::ok("served"));
    let (status, _, body) = proxy.chat(&chat_body("real-model", "hi")).await;
    assert_eq!(status, 200, "the wildcard stays in rotation: {body}");
    assert_eq!(up.calls("any"), 2);
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_gets_a_json_error() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[], NO_RETRIES).await;
    for path in [
        "/v1/responses/%FF",
        "/v1/responses/%FF/input_items",
        "/ui/api/requests/%FF",
    ] {
        let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(
            error_object(&body)["message"]
                .as_str()
                .unwrap()
                .contains("UTF-8"),
            "{path}: {body}"
        );
    }
}
