//! The in-memory response cache through the real binary: exact matches with
//! exact upstream call counts, the per-request controls, the headers, the
//! management routes and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployments, error_object};
use serde_json::{Value, json};

const GROUP: &str = "gpt-cache";
const MASTER_KEY: &str = "sk-cache-master";

fn config(up: &FakeUpstream, cache_params: &str, master_key: bool) -> String {
    let mut yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n  cache_params: {cache_params}\n",
        deployments(up, &[(GROUP, &[])])
    );
    if master_key {
        yaml.push_str(&format!("general_settings:\n  master_key: {MASTER_KEY}\n"));
    }
    yaml
}

async fn start(up: &FakeUpstream, cache_params: &str) -> Proxy {
    up.set(GROUP, Behavior::ok("the cached answer"));
    Proxy::start(&config(up, cache_params, false)).await
}

fn cache_header(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("x-conclave-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
}

/// Sends a raw JSON text (to control key order and whitespace).
async fn send_text(proxy: &Proxy, text: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

#[tokio::test]
async fn the_same_request_twice_calls_the_upstream_once_and_the_hit_carries_usage() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{type: local}").await;
    let body = chat_body(GROUP, "what is the capital of France?");
    let (status, first_headers, first) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cache_header(&first_headers), "stored");
    let (status, headers, second) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls(GROUP), 1);
    assert_eq!(second, first, "a hit is the stored answer");
    assert_eq!(second["usage"]["total_tokens"], 12, "usage as stored");
    let key = headers["x-conclave-cache-key"].to_str().unwrap();
    assert_eq!(key.len(), 64);
    assert_eq!(key, first_headers["x-conclave-cache-key"].to_str().unwrap());
}

#[tokio::test]
async fn an_answer_without_a_finish_reason_is_not_stored() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{type: local}").await;
    let unfinished = json!({"id": "c", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "half"},
                     "finish_reason": null}]});
    up.set(
        GROUP,
        Behavior::raw_body("application/json", unfinished.to_string()),
    );
    let body = chat_body(GROUP, "a question cut short");
    for _ in 0..2 {
        let (status, headers, answer) = proxy.chat(&body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(cache_header(&headers), "miss");
    }
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn key_order_and_whitespace_still_hit() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let a = format!(
        r#"{{"model":"{GROUP}","messages":[{{"role":"user","content":"hi"}}],"temperature":0.5}}"#
    );
    let b = format!(
        "{{\n  \"temperature\" : 0.5,\n  \"messages\" : [ {{ \"content\" : \"hi\", \"role\" : \"user\" }} ],\n  \"model\" : \"{GROUP}\"\n}}"
    );
    let (_, h1, _) = send_text(&proxy, &a).await;
    let (status, h2, body) = send_text(&proxy, &b).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_header(&h1), "stored");
    assert_eq!(cache_header(&h2), "hit");
    assert_eq!(up.calls(GROUP), 1);
}

#[tokio::test]
async fn a_changed_temperature_misses() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let mut body = chat_body(GROUP, "hi");
    body["temperature"] = json!(0.1);
    proxy.chat(&body).await;
    body["temperature"] = json!(0.9);
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "stored");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn an_answer_from_a_clients_own_fallback_is_not_served_to_requests_without_it() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::status(500, "down"));
    up.set("gpt-other", Behavior::ok("the other model's answer"));
    let yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n",
        deployments(&up, &[(GROUP, &[]), ("gpt-other", &[])])
    );
    let proxy = Proxy::start(&yaml).await;
    let mut with_fallback = chat_body(GROUP, "hi");
    with_fallback["fallbacks"] = json!(["gpt-other"]);
    let (status, headers, body) = proxy.chat(&with_fallback).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_header(&headers), "stored");
    // The same question without the fallback is asked of its own model.
    let (status, headers, body) = proxy.chat(&chat_body(GROUP, "hi")).await;
    assert_eq!(status, 502, "{body}");
    assert_ne!(cache_header(&headers), "hit");
    // With it, the stored answer is read again.
    let (_, headers, _) = proxy.chat(&with_fallback).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls("gpt-other"), 1);
}

#[tokio::test]
async fn an_answer_from_a_configured_fallback_is_not_stored_under_the_model_asked_for() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::status(500, "down"));
    up.set("gpt-other", Behavior::ok("the other model's answer"));
    let yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n  fallbacks: [{{{GROUP}: [gpt-other]}}]\nlitellm_settings:\n  cache: true\n",
        deployments(&up, &[(GROUP, &[]), ("gpt-other", &[])])
    );
    let proxy = Proxy::start(&yaml).await;
    let (status, headers, body) = proxy.chat(&chat_body(GROUP, "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_header(&headers), "miss");
    // A request that refuses fallbacks gets its own model's answer: none.
    let mut own_only = chat_body(GROUP, "hi");
    own_only["disable_fallbacks"] = json!(true);
    let (status, headers, body) = proxy.chat(&own_only).await;
    assert_eq!(status, 502, "{body}");
    assert_ne!(cache_header(&headers), "hit");
}

#[tokio::test]
async fn metadata_changes_still_hit_and_cache_controls_are_not_forwarded() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let mut body = chat_body(GROUP, "hi");
    body["user"] = json!("alice");
    body["metadata"] = json!({"trace": "one", "cache": {"ttl": 60}});
    let (_, h1, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&h1), "stored");
    // `metadata` is the gateway's, as in LiteLLM: none of it is forwarded.
    let forwarded = up.last_body(GROUP).unwrap();
    assert!(forwarded.get("metadata").is_none(), "{forwarded}");
    assert_eq!(forwarded["user"], "alice");
    body["metadata"] = json!({"trace": "two"});
    body["cache"] = json!({"s-maxage": 600});
    let (_, h2, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&h2), "hit");
    assert_eq!(up.calls(GROUP), 1);
    // Another end user's question is their own, as in LiteLLM.
    body["user"] = json!("bob");
    let (_, h3, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&h3), "stored");
    assert_eq!(up.calls(GROUP), 2);
    // A miss with top-level controls: they stay out of the upstream body.
    body["messages"][0]["content"] = json!("another question");
    proxy.chat(&body).await;
    let forwarded = up.last_body(GROUP).unwrap();
    assert!(forwarded.get("cache").is_none(), "{forwarded}");
}

#[tokio::test]
async fn an_end_user_named_by_a_header_or_metadata_gets_their_own_entry() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let body = chat_body(GROUP, "the same question");
    let as_customer = |customer: &'static str| {
        proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .header("x-litellm-customer-id", customer)
            .json(&body)
            .send()
    };
    let first = as_customer("alice").await.unwrap();
    assert_eq!(cache_header(first.headers()), "stored");
    let again = as_customer("alice").await.unwrap();
    assert_eq!(cache_header(again.headers()), "hit");
    let other = as_customer("bob").await.unwrap();
    assert_eq!(cache_header(other.headers()), "stored");
    let mut in_metadata = body.clone();
    in_metadata["metadata"] = json!({"user_id": "carol"});
    let (_, headers, _) = proxy.chat(&in_metadata).await;
    assert_eq!(cache_header(&headers), "stored");
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(
        cache_header(&headers),
        "stored",
        "no end user is one of its own"
    );
    assert_eq!(up.calls(GROUP), 4);
}

#[tokio::test]
async fn a_hit_on_a_wildcard_is_counted_under_the_wildcards_pattern() {
    let up = FakeUpstream::start().await;
    up.set("wild", Behavior::ok("wild answer"));
    let yaml = format!(
        "model_list:\n  - model_name: \"wild/*\"\n    litellm_params:\n      model: \"openai/*\"\n      \
         api_base: {}\n      api_key: sk-up\nlitellm_settings:\n  cache: true\n",
        up.api_base("wild")
    );
    let proxy = Proxy::start(&yaml).await;
    let body = chat_body("wild/made-up-name", "hi");
    let (_, stored, _) = proxy.chat(&body).await;
    let (_, hit, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&hit), "hit");
    for headers in [&stored, &hit] {
        assert_eq!(headers["x-conclave-model-group"], "wild/*");
    }
    // Outcomes reach the metrics off the response path: wait for both.
    let both = r#"conclave_requests_total{route="/v1/chat/completions",model_group="wild/*",status_class="2xx"} 2"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut metrics = proxy.metrics(None).await;
    while !metrics.contains(both) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = proxy.metrics(None).await;
    }
    assert!(metrics.contains(both), "{metrics}");
    assert!(!metrics.contains("made-up-name"), "{metrics}");
}

#[tokio::test]
async fn no_cache_skips_the_read_and_still_stores() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let body = chat_body(GROUP, "hi");
    proxy.chat(&body).await;
    let mut fresh = body.clone();
    fresh["cache"] = json!({"no-cache": true});
    let (_, headers, _) = proxy.chat(&fresh).await;
    assert_eq!(cache_header(&headers), "stored");
    assert_eq!(up.calls(GROUP), 2);
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn no_store_reads_but_never_writes() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let mut body = chat_body(GROUP, "hi");
    body["cache"] = json!({"no-store": true});
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "miss");
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "miss");
    assert_eq!(up.calls(GROUP), 2);
    // Stored by a normal request, then read by a no-store one.
    body.as_object_mut().unwrap().remove("cache");
    proxy.chat(&body).await;
    body["cache"] = json!({"no-store": true});
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls(GROUP), 3);
    // Both: the cache stays out entirely.
    body["cache"] = json!({"no-store": true, "no-cache": true});
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "bypass");
    assert_eq!(up.calls(GROUP), 4);
}

#[tokio::test]
async fn a_request_ttl_expires_its_entry() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{ttl: 600}").await;
    let mut body = chat_body(GROUP, "short-lived");
    body["cache"] = json!({"ttl": 1});
    proxy.chat(&body).await;
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "hit");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "stored", "expired after its ttl");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn s_maxage_accepts_only_younger_answers() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let body = chat_body(GROUP, "how old?");
    proxy.chat(&body).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut young = body.clone();
    young["cache"] = json!({"s-maxage": 1});
    let (_, headers, _) = proxy.chat(&young).await;
    assert_ne!(cache_header(&headers), "hit", "the entry is older than 1 s");
    assert_eq!(up.calls(GROUP), 2);
    let mut lenient = body.clone();
    lenient["cache"] = json!({"s-maxage": 600});
    let (_, headers, _) = proxy.chat(&lenient).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn default_off_caches_only_requests_that_opt_in() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: default_off}").await;
    let body = chat_body(GROUP, "opt in?");
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "bypass");
    proxy.chat(&body).await;
    assert_eq!(up.calls(GROUP), 2, "not cached without use-cache");
    let mut opted = body.clone();
    opted["cache"] = json!({"use-cache": true});
    let (_, headers, _) = proxy.chat(&opted).await;
    assert_eq!(cache_header(&headers), "stored");
    let (_, headers, _) = proxy.chat(&opted).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(up.calls(GROUP), 3);
}

#[tokio::test]
async fn malformed_cache_controls_are_a_400_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let mut body = chat_body(GROUP, "hi");
    body["cache"] = json!({"ttl": "soon"});
    let (status, _, err) = proxy.chat(&body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(error_object(&err)["param"], "cache");
    assert_eq!(up.calls(GROUP), 0);
}

#[tokio::test]
async fn errors_are_never_cached() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    up.set(GROUP, Behavior::status(400, "bad request upstream"));
    let body = chat_body(GROUP, "fails");
    let (status, _, _) = proxy.chat(&body).await;
    assert_eq!(status, 400);
    up.set(GROUP, Behavior::ok("now it works"));
    let (status, headers, answer) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(cache_header(&headers), "stored");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn an_answer_above_max_entry_kb_is_not_stored() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{max_entry_kb: 4}").await;
    up.set(GROUP, Behavior::ok(&"long ".repeat(2000)));
    let body = chat_body(GROUP, "a long answer please");
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "miss");
    proxy.chat(&body).await;
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn management_routes_need_the_master_key_and_flush_and_delete_entries() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("managed"));
    let proxy = Proxy::start(&config(&up, "{namespace: mgmt}", true)).await;
    let auth = format!("Bearer {MASTER_KEY}");
    let chat = |body: Value| {
        proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .header("authorization", &auth)
            .json(&body)
            .send()
    };
    let r = chat(chat_body(GROUP, "one")).await.unwrap();
    let key = r.headers()["x-conclave-cache-key"]
        .to_str()
        .unwrap()
        .to_owned();
    chat(chat_body(GROUP, "two")).await.unwrap();

    let anonymous = proxy
        .client
        .get(proxy.url("/cache/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let ping: Value = proxy
        .client
        .get(proxy.url("/cache/ping"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping["status"], "healthy", "{ping}");
    assert_eq!(ping["cache_type"], "local");
    assert_eq!(ping["entries"], 2, "{ping}");

    let deleted = proxy
        .client
        .delete(proxy.url(&format!("/cache/{key}")))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let r = chat(chat_body(GROUP, "one")).await.unwrap();
    assert_eq!(
        cache_header(r.headers()),
        "stored",
        "deleted, so asked again"
    );
    let r = chat(chat_body(GROUP, "two")).await.unwrap();
    assert_eq!(cache_header(r.headers()), "hit");
    assert_eq!(up.calls(GROUP), 3);

    let flushed = proxy
        .client
        .post(proxy.url("/cache/flushall"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(flushed.status(), 200);
    let r = chat(chat_body(GROUP, "two")).await.unwrap();
    assert_eq!(cache_header(r.headers()), "stored", "flushed");
    assert_eq!(up.calls(GROUP), 4);

    let missing = proxy
        .client
        .delete(proxy.url(&format!("/cache/{}", "0".repeat(64))))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn hits_and_stores_are_counted_in_the_metrics() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("counted"));
    let yaml = config(&up, "{}", false).replace(
        "litellm_settings:\n",
        "litellm_settings:\n  success_callback: [prometheus]\n",
    );
    let proxy = Proxy::start(&yaml).await;
    let body = chat_body(GROUP, "count me");
    proxy.chat(&body).await;
    proxy.chat(&body).await;
    proxy.chat(&body).await;
    let mut text = String::new();
    for _ in 0..50 {
        text = proxy.metrics(None).await;
        if text.contains(r#"conclave_cache_total{kind="request",status="hit"} 2"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(r#"conclave_cache_total{kind="request",status="hit"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"conclave_cache_total{kind="request",status="stored"} 1"#));
}

#[tokio::test]
async fn an_unknown_cache_type_is_a_config_error_naming_the_key() {
    let out = conclave_e2e::failed_check(
        "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: dsik\n",
    )
    .await;
    assert!(out.contains("litellm_settings.cache_params.type"), "{out}");
    assert!(out.contains("unknown cache type \"dsik\""), "{out}");
}

#[tokio::test]
async fn litellm_cache_stores_this_gateway_lacks_load_and_say_where_answers_go() {
    for (kind, served) in [
        ("disk", "in memory, exact matches only"),
        ("s3", "in memory, exact matches only"),
        ("redis-semantic", "in memory, exact matches only"),
    ] {
        let out = conclave_e2e::passed_check(&format!(
            "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: {kind}\n"
        ))
        .await;
        assert!(
            out.contains(&format!("cache_params.type: {kind} is a LiteLLM store")),
            "{out}"
        );
        assert!(out.contains(served), "{out}");
    }
}

#[tokio::test]
async fn conclave_check_prints_the_cache_settings_without_the_redis_password() {
    let dir = std::env::temp_dir().join(format!("conclave-cache-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cache.yaml");
    std::fs::write(
        &path,
        "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: redis\n    \
         host: cache.internal\n    port: 6380\n    password: hunter2-secret\n    ttl: 120\n    \
         scope: team\n    mode: default_off\n",
    )
    .unwrap();
    let out = conclave_e2e::run_conclave(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("cache: redis"), "{stdout}");
    assert!(stdout.contains("redis://cache.internal:6380"), "{stdout}");
    assert!(stdout.contains("mode=default_off"), "{stdout}");
    assert!(stdout.contains("scope=team"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[tokio::test]
async fn entries_survive_a_reload_unless_the_cache_settings_change() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("kept across reloads"));
    let yaml = |ttl: u32| {
        config(&up, &format!("{{ttl: {ttl}}}"), false)
            + "general_settings:\n  admin_without_key_on_loopback: true\n"
    };
    let proxy = Proxy::start(&yaml(600)).await;
    let body = chat_body(GROUP, "reload me");
    proxy.chat(&body).await;
    let reload = |text: String| {
        conclave_e2e::replace_atomically(&proxy.config_path(), text.as_bytes());
        proxy.client.post(proxy.url("/admin/reload")).send()
    };
    // Another deployment, the same cache settings: the entry stays.
    let more = yaml(600).replace(
        "router_settings:",
        &format!("{}router_settings:", deployments(&up, &[("another", &[])])),
    );
    assert_eq!(reload(more).await.unwrap().status(), 200);
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "hit");
    // Changed cache settings: a new cache.
    assert_eq!(reload(yaml(300)).await.unwrap().status(), 200);
    let (_, headers, _) = proxy.chat(&body).await;
    assert_eq!(cache_header(&headers), "stored");
    assert_eq!(up.calls(GROUP), 2);
}
