//! Spend through the real binary: each answer's cost from its deployment's
//! per-token prices (or the built-in table), reported in
//! `x-conclave-response-cost`, charged to the key and written to the spend
//! log; streams charged from a usage chunk the gateway asks for and keeps
//! from clients that did not ask for it, or from an estimate of what was
//! sent when the client leaves before that chunk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use reqwest::Method;
use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, SseReader, deployment};
use keys_support::{
    CALL_COST, MASTER, chat_as, chat_body_as, close, config, header, key_spend, new_key, spend_rows,
};
use serde_json::{Value, json};

fn cost(headers: &reqwest::header::HeaderMap) -> f64 {
    header(headers, "x-conclave-response-cost").parse().unwrap()
}

/// The SSE payloads of a streamed chat request made with `key`.
async fn stream_as(proxy: &Proxy, key: &str, body: Value) -> Vec<Value> {
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut reader = SseReader::new(r);
    let mut payloads = Vec::new();
    while let Some(data) = reader.next(Duration::from_secs(10)).await {
        if data == "[DONE]" {
            break;
        }
        payloads.push(serde_json::from_str(&data).unwrap());
    }
    payloads
}

fn stream_body(include_usage: Option<bool>) -> Value {
    let mut body = json!({"model": "gpt-a", "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
    if let Some(asked) = include_usage {
        body["stream_options"] = json!({"include_usage": asked});
    }
    body
}

#[tokio::test]
async fn a_json_answer_reports_its_cost_and_the_spend_log_records_it() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    assert!(close(cost(&headers), CALL_COST), "{headers:?}");
    let id = header(&headers, "x-conclave-request-id").to_owned();
    let rows = spend_rows(&proxy, &id, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(close(rows[0]["spend"].as_f64().unwrap(), CALL_COST));
    assert_eq!(rows[0]["prompt_tokens"], 5);
    assert_eq!(rows[0]["completion_tokens"], 7);
    assert_eq!(rows[0]["model_group"], "gpt-a");
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
}

/// LiteLLM's spend logs are looked up by the answer's own id
/// (`response.id`); conclave's rows carry it beside the gateway's request
/// id, and `?request_id=` finds a row by either, streamed or not.
#[tokio::test]
async fn spend_rows_are_found_by_the_answers_own_id_streamed_and_not() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    let answer_id = body["id"].as_str().unwrap().to_owned();
    let gateway_id = header(&headers, "x-conclave-request-id").to_owned();
    assert_ne!(answer_id, gateway_id);
    let payloads = stream_as(&proxy, &key, stream_body(None)).await;
    assert_eq!(payloads[0]["id"], answer_id.as_str());

    let rows = spend_rows(&proxy, &answer_id, 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["response_id"] == answer_id.as_str()),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["request_id"] == gateway_id.as_str()),
        "{rows:?}"
    );
    assert!(spend_rows(&proxy, "chatcmpl-unknown", 0).await.is_empty());
}

/// On the translated routes the client is given the route's own id
/// (`msg_...`, `resp_...`), not the chat upstream's, and finds its spend by it.
#[tokio::test]
async fn spend_rows_of_a_translated_answer_are_found_by_the_id_the_client_was_given() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let messages = json!({"model": "gpt-a", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let responses = json!({"model": "gpt-a", "input": "hi", "store": false});
    for (path, body, prefix) in [
        ("/v1/messages", messages, "msg_"),
        ("/v1/responses", responses, "resp_"),
    ] {
        let (status, answer) = proxy.call(Method::POST, path, Some(body), Some(&key)).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let id = answer["id"].as_str().unwrap();
        assert!(id.starts_with(prefix), "{answer}");
        let rows = spend_rows(&proxy, id, 1).await;
        assert_eq!(rows.len(), 1, "{path}: {rows:?}");
        assert_eq!(rows[0]["response_id"], id);
    }
    // Streamed: the id the first event gives the message or response.
    let messages = json!({"model": "gpt-a", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let responses = json!({"model": "gpt-a", "input": "hi", "store": false, "stream": true});
    for (path, body) in [("/v1/messages", messages), ("/v1/responses", responses)] {
        let r = proxy
            .client
            .post(proxy.url(path))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let mut reader = SseReader::new(r);
        let first: Value =
            serde_json::from_str(&reader.next(Duration::from_secs(10)).await.unwrap()).unwrap();
        while reader.next(Duration::from_secs(10)).await.is_some() {}
        let id = first["message"]["id"]
            .as_str()
            .or_else(|| first["response"]["id"].as_str())
            .unwrap_or_else(|| panic!("{path}: {first}"))
            .to_owned();
        let rows = spend_rows(&proxy, &id, 1).await;
        assert_eq!(rows.len(), 1, "{path}: {rows:?}");
        assert_eq!(rows[0]["response_id"], id.as_str());
    }
}

#[tokio::test]
async fn a_stream_is_charged_from_a_usage_chunk_the_client_never_sees() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let payloads = stream_as(&proxy, &key, stream_body(None)).await;
    assert!(!payloads.is_empty());
    assert!(
        payloads
            .iter()
            .all(|p| p.get("usage").is_none_or(Value::is_null)),
        "{payloads:?}"
    );
    let sent = up.last_body("gpt-a").unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
}

#[tokio::test]
async fn a_stream_the_client_leaves_before_its_usage_is_charged_what_it_was_sent() {
    let up = FakeUpstream::start().await;
    // 200 chunks of about 20 characters (5 tokens) each, 4 s in all.
    let text = "lorem ipsum dolor s ".repeat(200);
    up.set(
        "gpt-a",
        Behavior::ok(&text).chunked(200, Duration::from_millis(20)),
    );
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&stream_body(None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(r.headers(), "x-conclave-request-id").to_owned();
    let mut reader = SseReader::new(r);
    for _ in 0..150 {
        reader.next(Duration::from_secs(5)).await.unwrap();
    }
    drop(reader);
    let rows = spend_rows(&proxy, &id, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let completion = rows[0]["completion_tokens"].as_u64().unwrap();
    // About 150 chunks of 5 tokens were sent; the full answer is 1000.
    assert!((500..1000).contains(&completion), "{rows:?}");
    assert!(rows[0]["prompt_tokens"].as_u64().unwrap() > 0, "{rows:?}");
    assert!(rows[0]["spend"].as_f64().unwrap() > CALL_COST, "{rows:?}");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_charged_its_prompt() {
    let up = FakeUpstream::start().await;
    up.set(
        "gpt-a",
        Behavior::ok("late").delayed(Duration::from_secs(3)),
    );
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let prompt = "a question worth reading ".repeat(40);
    let left = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-request-id", "left-early")
        .timeout(Duration::from_millis(500))
        .json(&json!({"model": "gpt-a", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await;
    assert!(left.is_err(), "the client gave up first: {left:?}");
    let rows = spend_rows(&proxy, "left-early", 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status_code"], 499, "{rows:?}");
    assert_eq!(rows[0]["completion_tokens"], 0, "{rows:?}");
    // About a thousand bytes of prompt: some 250 tokens.
    let prompt_tokens = rows[0]["prompt_tokens"].as_u64().unwrap();
    assert!((200..400).contains(&prompt_tokens), "{rows:?}");
    assert!(rows[0]["spend"].as_f64().unwrap() > 0.0, "{rows:?}");
}

#[tokio::test]
async fn a_client_that_asks_for_usage_gets_its_usage_chunk_and_is_charged_once() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let payloads = stream_as(&proxy, &key, stream_body(Some(true))).await;
    let last = payloads.last().unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 7, "{payloads:?}");
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
}

#[tokio::test]
async fn spend_is_the_sum_of_per_call_costs_streamed_and_not() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({})).await;
    let mut reported = 0.0;
    for _ in 0..2 {
        let (status, headers, _) = chat_as(&proxy, &key, "gpt-a").await;
        assert_eq!(status, 200);
        reported += cost(&headers);
        stream_as(&proxy, &key, stream_body(None)).await;
        stream_as(&proxy, &key, stream_body(Some(false))).await;
    }
    assert!(close(reported, 2.0 * CALL_COST));
    assert_eq!(up.calls("gpt-a"), 6);
    let spend = key_spend(&proxy, &key, 6.0 * CALL_COST).await;
    assert!(close(spend, 6.0 * CALL_COST), "{spend}");
}

#[tokio::test]
async fn prices_come_from_the_table_else_zero_with_one_warning_naming_the_model() {
    let up = FakeUpstream::start().await;
    let listed = deployment("listed", "openai/gpt-4o-mini", &up.api_base("listed"), &[]);
    let unknown = deployment(
        "unknown",
        "openai/house-model-7",
        &up.api_base("unknown"),
        &[],
    );
    let in_params = deployment(
        "in-params",
        "openai/house-model-8",
        &up.api_base("in-params"),
        &["input_cost_per_token: 0.01", "output_cost_per_token: 0.02"],
    );
    let proxy = Proxy::start(&config(&up, &[], &format!("{listed}{unknown}{in_params}"))).await;
    let (status, headers, _) = chat_as(&proxy, MASTER, "listed").await;
    assert_eq!(status, 200);
    assert!(
        close(cost(&headers), 5.0 * 0.15e-6 + 7.0 * 0.6e-6),
        "{headers:?}"
    );
    let (_, headers, _) = chat_as(&proxy, MASTER, "in-params").await;
    assert!(
        close(cost(&headers), 5.0 * 0.01 + 7.0 * 0.02),
        "{headers:?}"
    );
    for _ in 0..3 {
        let (status, headers, _) = chat_as(&proxy, MASTER, "unknown").await;
        assert_eq!(status, 200);
        assert_eq!(cost(&headers), 0.0);
    }
    let warnings = proxy
        .logs()
        .lines()
        .filter(|l| l.contains("no price known") && l.contains("openai/house-model-7"))
        .count();
    assert_eq!(warnings, 1, "{}", proxy.logs());
    assert!(!proxy.logs().contains("input_cost_per_token: unknown key"));
}

#[tokio::test]
async fn a_refused_request_costs_nothing_and_leaves_no_spend_row() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a", "gpt-b"], "")).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    let (status, headers, _) = chat_body_as(
        &proxy,
        &key,
        &json!({"model": "gpt-b", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 403);
    let id = header(&headers, "x-conclave-request-id").to_owned();
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
    // The writer has flushed the later request: a row for the refused one
    // would be there by now.
    assert!(spend_rows(&proxy, &id, 0).await.is_empty());
}

/// `conclave_key_store_statements_total` from `/metrics`.
async fn store_statements(proxy: &Proxy) -> f64 {
    let text = proxy.metrics(Some(MASTER)).await;
    text.lines()
        .find_map(|l| l.strip_prefix("conclave_key_store_statements_total "))
        .unwrap_or_else(|| panic!("no statement counter in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn spend_is_written_in_batches_not_a_statement_per_request() {
    const REQUESTS: usize = 200;
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &["gpt-a"], "")).await;
    let key = new_key(&proxy, json!({"rpm_limit": 100000})).await;
    let before = store_statements(&proxy).await;
    for wave in 0..REQUESTS / 20 {
        let calls = (0..20).map(|_| chat_as(&proxy, &key, "gpt-a"));
        for (status, _, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, 200, "wave {wave}: {body}");
        }
    }
    // The spend reaches the store within the writer's interval (a second):
    // one key read, then at least one batch (BEGIN, the spend-log insert,
    // the key's total, its per-model and daily aggregates, COMMIT).
    const KEY_READ_AND_ONE_BATCH: f64 = 7.0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut ran = 0.0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = store_statements(&proxy).await - before;
        if now >= KEY_READ_AND_ONE_BATCH && now == ran {
            break;
        }
        ran = now;
    }
    assert!(
        ran >= KEY_READ_AND_ONE_BATCH,
        "the spend of {REQUESTS} requests was not written: {ran} statements"
    );
    assert!(
        ran < (REQUESTS / 4) as f64,
        "{ran} store statements for {REQUESTS} requests"
    );
}
