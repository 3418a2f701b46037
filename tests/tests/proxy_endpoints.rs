//! The OpenAI-compatible endpoints, end to end: what the client gets back and
//! what the upstream receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, body_text, chat_body, deployment, sse_content, sse_payloads,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// A proxy with one group `m` served by fake deployment `a`.
async fn one_group(up: &FakeUpstream, extra: &[&str]) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}",
        deployment("m", "openai/gpt-up", &up.api_base("a"), extra)
    ))
    .await
}

async fn sse_of(response: reqwest::Response) -> Vec<String> {
    sse_payloads(&body_text(response, LIMIT).await)
}

fn json_of(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {payload}"))
}

#[tokio::test]
async fn chat_completion_returns_the_upstream_answer_as_json() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("the answer"));
    let proxy = one_group(&up, &[]).await;
    let r = proxy
        .post("/v1/chat/completions", &chat_body("m", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-conclave-model-id"], "m.0");
    assert_eq!(r.headers()["x-conclave-attempts"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "the answer");
    assert_eq!(body["usage"]["total_tokens"], 12);
    let rec = &up.recorded()[0];
    assert_eq!(rec.path, "/v1/chat/completions");
    assert_eq!(
        rec.body["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
    assert!(rec.body.get("stream").is_none(), "{}", rec.body);
}

/// Numbers a JSON tree would round (beyond f64, trailing zeros), unusual
/// escapes and the client's field order reach the upstream exactly as sent.
#[tokio::test]
async fn client_fields_reach_the_upstream_verbatim() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("ok"));
    let proxy = one_group(&up, &[]).await;
    let fields = r#""messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00"}],"seed":123456789012345678901234567890,"temperature":0.50,"logit_bias":{"50256":-100}"#;
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"model":"m",{fields}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = String::from_utf8(up.recorded()[0].raw_body.to_vec()).unwrap();
    assert_eq!(sent, format!(r#"{{"model":"gpt-up",{fields}}}"#));
}

#[tokio::test]
async fn chat_stream_forwards_every_chunk_and_ends_with_done() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("one two three four").chunked(4, Duration::ZERO),
    );
    let proxy = one_group(&up, &[]).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-conclave-model-group"], "m");
    let payloads = sse_of(r).await;
    // Four content chunks, the finish chunk, then [DONE].
    assert_eq!(payloads.len(), 6, "{payloads:#?}");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert_eq!(sse_content(&payloads), "one two three four");
    assert_eq!(json_of(&payloads[4])["choices"][0]["finish_reason"], "stop");
    for p in &payloads[..5] {
        assert_eq!(json_of(p)["object"], "chat.completion.chunk");
    }
    assert_eq!(up.last_body("a").unwrap()["stream"], true);
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_a_usage_chunk() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("counted words"));
    let proxy = one_group(&up, &[]).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let payloads = sse_of(proxy.post("/v1/chat/completions", &body).await).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let usage_chunk = json_of(&payloads[payloads.len() - 2]);
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert_eq!(usage_chunk["usage"]["total_tokens"], 12);
    assert_eq!(
        up.last_body("a").unwrap()["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[]).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let payloads = sse_of(proxy.post("/v1/chat/completions", &body).await).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert!(
        payloads
            .iter()
            .filter(|p| *p != "[DONE]")
            .all(|p| json_of(p).get("usage").is_none()),
        "{payloads:#?}"
    );
}

#[tokio::test]
async fn completions_endpoint_answers_with_text() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("completed text"));
    let proxy = one_group(&up, &[]).await;
    let r = proxy
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": "say", "max_tokens": 5}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "completed text");
    let rec = &up.recorded()[0];
    assert_eq!(rec.path, "/v1/completions");
    assert_eq!(rec.body["prompt"], "say");
    assert_eq!(rec.body["max_tokens"], 5);
    assert_eq!(rec.body["model"], "gpt-up");
}

#[tokio::test]
async fn completions_stream_forwards_text_chunks() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("alpha beta gamma"));
    let proxy = one_group(&up, &[]).await;
    let r = proxy
        .post(
            "/completions",
            &json!({"model": "m", "prompt": "say", "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let payloads = sse_of(r).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let text: String = payloads[..payloads.len() - 1]
        .iter()
        .filter_map(|p| json_of(p)["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "alpha beta gamma");
    assert_eq!(up.recorded()[0].path, "/v1/completions");
}

#[tokio::test]
async fn embeddings_endpoint_returns_vectors() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[]).await;
    let r = proxy
        .post(
            "/v1/embeddings",
            &json!({"model": "m", "input": ["a", "b"], "encoding_format": "float"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));
    assert_eq!(body["model"], "gpt-up");
    let rec = &up.recorded()[0];
    assert_eq!(rec.path, "/v1/embeddings");
    assert_eq!(rec.body["input"], json!(["a", "b"]));
    assert_eq!(rec.body["encoding_format"], "float");
}

#[tokio::test]
async fn models_endpoints_list_every_group_but_not_wildcards() {
    let up = FakeUpstream::start().await;
    let base = up.api_base("a");
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}{}{}",
        deployment("zeta", "openai/z", &base, &[]),
        deployment("alpha", "openai/a1", &base, &[]),
        deployment("alpha", "openai/a2", &base, &[]),
        deployment("openai/*", "openai/*", &base, &[]),
    ))
    .await;
    for path in ["/v1/models", "/models"] {
        let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["object"], "list");
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["alpha", "zeta"], "{path}: {body}");
        assert_eq!(body["data"][0]["object"], "model");
    }
}

#[tokio::test]
async fn a_hidden_alias_routes_but_is_not_listed() {
    let up = FakeUpstream::start().await;
    let base = up.api_base("a");
    let proxy = Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  model_group_alias:\n    shown: alpha\n    secret: {{model: alpha, hidden: true}}\n    quiet: {{model: alpha, hidden: 'yes'}}\n",
        deployment("alpha", "openai/a1", &base, &[]),
    ))
    .await;
    let body: Value = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "shown"], "{body}");
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat_body("secret", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn litellms_master_key_variable_locks_the_gateway() {
    let up = FakeUpstream::start().await;
    let models = format!(
        "model_list:\n{}",
        deployment("m", "openai/one", &up.api_base("a"), &[])
    );
    let from_process =
        Proxy::start_with(&models, &[("LITELLM_MASTER_KEY", "sk-lite-env")], &[]).await;
    let from_config = Proxy::start(&format!(
        "{models}environment_variables:\n  LITELLM_MASTER_KEY: sk-lite-config\n"
    ))
    .await;
    for (proxy, key) in [
        (&from_process, "sk-lite-env"),
        (&from_config, "sk-lite-config"),
    ] {
        let ask = |key: Option<&str>| {
            let mut request = proxy
                .client
                .post(proxy.url("/v1/chat/completions"))
                .json(&chat_body("m", "hi"));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(ask(None).await, 401, "{key}");
        assert_eq!(ask(Some(key)).await, 200, "{key}");
    }
}

#[tokio::test]
async fn a_failed_attempts_time_is_not_counted_as_gateway_overhead() {
    let up = FakeUpstream::start().await;
    up.set(
        "slow-fail",
        Behavior::status(500, "down").delayed(Duration::from_millis(400)),
    );
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}",
        deployment("broken", "openai/x", &up.api_base("slow-fail"), &[]),
        deployment("backup", "openai/y", &up.api_base("ok"), &[]),
    ))
    .await;
    let mut body = chat_body("broken", "hi");
    body["num_retries"] = json!(0);
    body["fallbacks"] = json!(["backup"]);
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let overhead: f64 = r.headers()["x-conclave-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The failed attempt alone took 400 ms; the gateway's own share is a
    // small part of that even on a loaded machine.
    assert!(overhead < 200.0, "overhead {overhead} ms");
}

#[tokio::test]
async fn with_enforce_user_param_a_request_must_name_its_end_user() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  enforce_user_param: true\n",
        deployment("m", "openai/one", &up.api_base("a"), &[]),
    ))
    .await;
    let send = |body: Value| {
        let request = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let refused = send(chat_body("m", "hi")).await;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["param"], "user", "{error}");
    let mut named = chat_body("m", "hi");
    named["user"] = json!("end-user-1");
    assert_eq!(send(named).await.status(), 200);
    // OpenAI's newer name for it counts too.
    let mut identified = chat_body("m", "hi");
    identified["safety_identifier"] = json!("end-user-2");
    assert_eq!(send(identified).await.status(), 200);
    assert_eq!(
        up.recorded().len(),
        2,
        "the refused request reached no upstream"
    );
}

#[tokio::test]
async fn litellms_pass_through_entry_sends_each_name_to_the_provider_its_prefix_names() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n  - model_name: \"*\"\n    litellm_params: {{model: \"*\", api_base: \"{}\", api_key: sk-any}}\n",
        up.api_base("star"),
    ))
    .await;
    for model in ["gpt-4o", "anthropic/claude-x", "groq/llama-3", "claude-y"] {
        let _ = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .json(&chat_body(model, "hi"))
            .send()
            .await
            .unwrap();
    }
    let mut seen: Vec<(String, String)> = up
        .recorded()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.body["model"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    // The fake does not speak Anthropic's format, so that call is retried.
    seen.dedup();
    assert_eq!(
        seen,
        [
            ("/v1/chat/completions".to_owned(), "gpt-4o".to_owned()),
            ("/v1/messages".to_owned(), "claude-x".to_owned()),
            ("/v1/chat/completions".to_owned(), "llama-3".to_owned()),
            ("/v1/messages".to_owned(), "claude-y".to_owned()),
        ],
        "each name goes to its own provider, without its prefix; a bare \
         claude-* name to Anthropic, as LiteLLM reads it"
    );
}

/// LiteLLM's `extra_body`: its fields reach the upstream with every
/// request, unless the client sent its own value.
#[tokio::test]
async fn a_deployments_extra_body_fields_join_each_request() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: hosted_vllm/q\n      \
         api_base: {}\n      extra_body: {{chat_template_kwargs: {{enable_thinking: false}}, top_k: 20}}\n",
        up.api_base("a")
    ))
    .await;
    assert!(!proxy.logs().contains("extra_body"), "{}", proxy.logs());
    let mut body = chat_body("m", "hi");
    body["top_k"] = json!(5);
    let (status, _, answer) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = up.last_body("a").unwrap();
    assert_eq!(
        sent["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(sent["top_k"], 5, "the client's own value wins");
    assert!(sent.get("extra_body").is_none(), "{sent}");
}

#[tokio::test]
async fn chat_completions_without_v1_prefix_works() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("no prefix needed"));
    let proxy = one_group(&up, &[]).await;
    let r = proxy.post("/chat/completions", &chat_body("m", "hi")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "no prefix needed");
    assert_eq!(up.recorded()[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn unknown_request_fields_reach_the_upstream_unchanged() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[]).await;
    let extra = json!({
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "seed": 1234,
        "logprobs": true,
        "top_logprobs": 2,
        "x_invented_field": {"nested": [1, "two", null, {"deep": 3.5}]},
    });
    let mut body = chat_body("m", "hi");
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, _, answer) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = up.last_body("a").unwrap();
    for (k, v) in extra.as_object().unwrap() {
        assert_eq!(&sent[k], v, "field {k} changed on the way: {sent}");
    }
}

#[tokio::test]
async fn unknown_upstream_response_fields_reach_the_client() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["x_fake_extra"], json!({"kept": true}));
    assert_eq!(body["system_fingerprint"], "fp_fake");
    assert_eq!(body["id"], "chatcmpl-fake");
}

#[tokio::test]
async fn target_model_replaces_the_upstream_model_name() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &["target_model: vendor-model-2025"]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last_body("a").unwrap()["model"], "vendor-model-2025");
}

#[tokio::test]
async fn supports_reasoning_adds_thinking_only_when_the_request_has_none() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &["supports_reasoning: true"]).await;

    let (status, _, _) = proxy.chat(&chat_body("m", "plain")).await;
    assert_eq!(status, 200);
    assert_eq!(
        up.last_body("a").unwrap()["thinking"],
        json!({"type": "enabled"})
    );

    let mut own = chat_body("m", "own thinking");
    own["thinking"] = json!({"type": "disabled"});
    let (status, _, _) = proxy.chat(&own).await;
    assert_eq!(status, 200);
    assert_eq!(
        up.last_body("a").unwrap()["thinking"],
        json!({"type": "disabled"})
    );

    let mut effort = chat_body("m", "effort");
    effort["reasoning_effort"] = json!("low");
    let (status, _, _) = proxy.chat(&effort).await;
    assert_eq!(status, 200);
    let sent = up.last_body("a").unwrap();
    assert!(sent.get("thinking").is_none(), "{sent}");
    assert_eq!(sent["reasoning_effort"], "low");
}

#[tokio::test]
async fn without_supports_reasoning_no_thinking_is_added() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &[]).await;
    let (status, _, _) = proxy.chat(&chat_body("m", "plain")).await;
    assert_eq!(status, 200);
    let sent = up.last_body("a").unwrap();
    assert!(sent.get("thinking").is_none(), "{sent}");
}

#[tokio::test]
async fn litellm_params_defaults_apply_only_when_the_client_sent_none() {
    let up = FakeUpstream::start().await;
    let proxy = one_group(&up, &["temperature: 0.25", "max_tokens: 64"]).await;

    let (status, _, _) = proxy.chat(&chat_body("m", "defaults")).await;
    assert_eq!(status, 200);
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(sent["max_tokens"], 64);

    let mut own = chat_body("m", "mine");
    own["temperature"] = json!(0.9);
    let (status, _, _) = proxy.chat(&own).await;
    assert_eq!(status, 200);
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["temperature"], 0.9);
    assert_eq!(sent["max_tokens"], 64);
}

#[tokio::test]
async fn wildcards_route_unknown_names_with_the_requested_upstream_model() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}{}",
        deployment("exact", "openai/exact-up", &up.api_base("exact"), &[]),
        deployment("openai/*", "openai/*", &up.api_base("prefixed"), &[]),
        deployment("*", "openai/*", &up.api_base("any"), &[]),
    ))
    .await;

    let (status, headers, body) = proxy.chat(&chat_body("openai/gpt-4o-mini", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-conclave-model-group"], "openai/*");
    assert_eq!(up.last_body("prefixed").unwrap()["model"], "gpt-4o-mini");

    let (status, headers, body) = proxy.chat(&chat_body("some-vendor-model", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-conclave-model-group"], "*");
    assert_eq!(up.last_body("any").unwrap()["model"], "some-vendor-model");

    let (status, _, body) = proxy.chat(&chat_body("exact", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last_body("exact").unwrap()["model"], "exact-up");

    assert_eq!(
        (up.calls("exact"), up.calls("prefixed"), up.calls("any")),
        (1, 1, 1)
    );
    // Retrieving a name a wildcard serves finds it, though no listing has it.
    for name in ["openai/gpt-4o-mini", "some-vendor-model"] {
        let r = proxy
            .client
            .get(proxy.url(&format!("/v1/models/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let model: Value = r.json().await.unwrap();
        assert_eq!(model["id"], name);
    }
}

/// Group `m` with two deployments and group `n` with one, all on `up`.
async fn two_groups(up: &FakeUpstream) -> Proxy {
    let base = up.api_base("a");
    Proxy::start(&format!(
        "model_list:\n{}{}{}",
        deployment("m", "openai/one", &base, &[]),
        deployment("m", "openai/two", &base, &[]),
        deployment("n", "openai/three", &base, &[]),
    ))
    .await
}

/// `GET path`: the status and the JSON body.
async fn get_json(proxy: &Proxy, path: &str) -> (u16, Value) {
    let r = proxy.client.get(proxy.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn health_endpoints_answer() {
    let up = FakeUpstream::start().await;
    let proxy = two_groups(&up).await;
    let get = |path: &'static str| get_json(&proxy, path);
    let (status, health) = get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["healthy_count"], 3, "{health}");
    assert_eq!(health["unhealthy_count"], 0, "{health}");
    assert_eq!(
        health["healthy_endpoints"].as_array().unwrap().len(),
        3,
        "{health}"
    );
    assert_eq!(health["unhealthy_endpoints"], json!([]), "{health}");

    let (status, live) = get("/health/liveliness").await;
    assert_eq!(status, 200);
    assert_eq!(live, json!("I'm alive!"));

    let (status, ready) = get("/health/readiness").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"], 2, "{ready}");
    assert_eq!(
        ready["db"],
        Value::Null,
        "no key store without a master key"
    );
    assert_eq!(
        up.recorded().len(),
        0,
        "health checks must not call upstreams"
    );
}

#[tokio::test]
async fn health_with_a_model_reports_only_that_group() {
    let up = FakeUpstream::start().await;
    let proxy = two_groups(&up).await;
    let get = |path: &'static str| get_json(&proxy, path);
    let (status, health) = get("/health?model=n").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["healthy_count"], 1, "{health}");
    assert_eq!(
        health["healthy_endpoints"],
        json!([{"model": "n", "model_id": health["deployments"][0]["model_id"]}]),
        "{health}"
    );
    let (status, health) = get("/health?model=m").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["healthy_count"], 2, "{health}");

    let (status, error) = get("/health?model=nope").await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["error"]["code"], "model_not_found", "{error}");
    assert_eq!(error["error"]["param"], "model", "{error}");

    // An alias, listed by /v1/models, reports on the group it names.
    let aliased = Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  model_group_alias: {{fast: n}}\n",
        deployment("n", "openai/three", &up.api_base("a"), &[]),
    ))
    .await;
    let (status, health) = get_json(&aliased, "/health?model=fast").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["deployments"][0]["model_group"], "n", "{health}");
}

#[tokio::test]
async fn chat_stream_chunks_arrive_before_the_upstream_finishes() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("w1 w2 w3 w4").chunked(4, Duration::from_millis(150)),
    );
    let proxy = one_group(&up, &[]).await;
    let mut body = chat_body("m", "hi");
    body["stream"] = json!(true);
    let mut events = conclave_e2e::SseReader::new(proxy.post("/v1/chat/completions", &body).await);
    let first = events.next(LIMIT).await.unwrap();
    assert_eq!(json_of(&first)["choices"][0]["delta"]["content"], "w1 ");
    assert_eq!(
        up.completed(),
        0,
        "the first chunk waited for the whole stream"
    );
    let mut rest = vec![first];
    for _ in 0..10 {
        match events.next(LIMIT).await {
            Some(p) => rest.push(p),
            None => break,
        }
    }
    assert_eq!(rest.last().unwrap(), "[DONE]");
    assert_eq!(sse_content(&rest), "w1 w2 w3 w4");
    assert_eq!(up.completed(), 1);
}
