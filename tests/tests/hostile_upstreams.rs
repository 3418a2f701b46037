//! Hostile and broken upstreams, behind the real binary: stalled bodies,
//! oversized answers, endless events, odd SSE framing, error events inside
//! streams and absurd `retry-after` headers. Each ends in bounded time with
//! an OpenAI-shaped answer, and the gateway goes on serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, chat_body, deployment, error_object, sse_content, sse_payloads,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);

/// The most the gateway may have resident at any time during a case here.
/// A debug build starts at about 40 MiB and these cases peak at 40-45 MiB.
/// The bound catches an upstream answer read past `max_response_size_mb`,
/// an endless SSE event buffered without its cap, or a stalled body whose
/// buffers pile up: each would grow by tens of MiB within the case's time.
const PEAK_RSS_BOUND: u64 = 96 << 20;

/// The gateway's peak RSS stayed under [`PEAK_RSS_BOUND`].
fn assert_peak_rss(proxy: &Proxy) {
    proxy.assert_peak_rss_below(PEAK_RSS_BOUND);
}

/// One deployment per `(group, fake deployment, extra litellm_params)`,
/// plus a healthy group `ok`, and extra top-level YAML.
async fn proxy(up: &FakeUpstream, entries: &[(&str, &str, &[&str])], sections: &str) -> Proxy {
    let mut yaml = String::from("model_list:\n");
    for (group, dep, extra) in entries {
        yaml.push_str(&deployment(
            group,
            "openai/gpt-up",
            &up.api_base(dep),
            extra,
        ));
    }
    yaml.push_str(&deployment("ok", "openai/gpt-up", &up.api_base("ok"), &[]));
    yaml.push_str(sections);
    Proxy::start(&yaml).await
}

/// Sends a chat request for `model`, streamed or not; returns status,
/// headers, the raw body and how long the whole answer took.
async fn send(proxy: &Proxy, model: &str, stream: bool) -> (u16, HeaderMap, String, Duration) {
    let started = Instant::now();
    let mut body = chat_body(model, "hi");
    body["stream"] = json!(stream);
    let answer = async {
        let r = proxy.post("/v1/chat/completions", &body).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap_or_default())
    };
    let (status, headers, text) = tokio::time::timeout(LIMIT, answer)
        .await
        .expect("answered in full within the limit");
    (status, headers, text, started.elapsed())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The healthy group still answers.
async fn assert_serving(proxy: &Proxy) {
    let (status, _, text, _) = send(proxy, "ok", false).await;
    assert_eq!(status, 200, "{text}");
}

/// Every line of an SSE body is a `data:` line or blank.
fn assert_valid_sse(text: &str) {
    for line in text.lines() {
        assert!(
            line.is_empty() || line.starts_with("data: "),
            "not an SSE data line: {line:?} in {text:?}"
        );
    }
}

const NO_RETRIES: &str = "router_settings:\n  num_retries: 0\n";

#[tokio::test]
async fn a_500_whose_body_never_arrives_ends_at_the_timeout() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::stalled_body(500));
    let proxy = proxy(&up, &[("g", "a", &["timeout: 1"])], NO_RETRIES).await;
    let (status, _, text, took) = send(&proxy, "g", false).await;
    assert_eq!(status, 504, "{text}");
    assert_eq!(error_object(&json(&text))["type"], "timeout_error");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_streamed_500_whose_body_never_arrives_ends_at_the_stream_timeout() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::stalled_body(500));
    let proxy = proxy(&up, &[("g", "a", &["stream_timeout: 1"])], NO_RETRIES).await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 504, "{text}");
    let e = error_object(&json(&text)).clone();
    assert_eq!(e["type"], "timeout_error", "{text}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
            .await,
        "the stalled upstream response was not closed"
    );
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_response_larger_than_max_response_size_mb_is_502_naming_it() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::large_body(3 * 1024 * 1024));
    let proxy = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  max_response_size_mb: 1\n",
    )
    .await;
    let (status, _, text, took) = send(&proxy, "g", false).await;
    assert_eq!(status, 502, "{text}");
    let e = error_object(&json(&text)).clone();
    assert_eq!(e["type"], "upstream_error", "{text}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("max_response_size_mb"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn an_endless_stream_event_is_cut_at_the_size_limit() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::endless_event());
    let proxy = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  max_response_size_mb: 1\n",
    )
    .await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 502, "{text}");
    let e = error_object(&json(&text)).clone();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("larger than the limit"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
            .await,
        "the endless upstream stream was not closed"
    );
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

/// Answers being read share `max_response_bodies_mb`: one upstream holding
/// an unfinished event of 3.5 MiB leaves no room for a second, which is a
/// 503 `gateway_busy` naming the setting rather than more memory.
#[tokio::test]
async fn answers_read_at_once_share_max_response_bodies_mb() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::stalled_event(3 * 1024 * 1024 + 512 * 1024));
    let proxy = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\n  stream_timeout: 10\n\
         general_settings:\n  max_response_size_mb: 4\n  max_response_bodies_mb: 4\n",
    )
    .await;
    let mut body = chat_body("g", "hold");
    body["stream"] = json!(true);
    let holder = {
        let request = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .json(&body);
        tokio::spawn(async move { request.send().await })
    };
    assert!(up.wait_until(LIMIT, |u| u.calls("a") == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, headers, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 503, "{text}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let e = error_object(&json(&text)).clone();
    assert_eq!(e["code"], "gateway_busy", "{text}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("max_response_bodies_mb"),
        "{text}"
    );
    holder.abort();
    assert_serving(&proxy).await;
}

/// The Responses API's last event carries the whole answer, so its
/// translated stream keeps it: one growing past `max_response_size_mb`
/// ends with the API's own error events, and the upstream is let go. The
/// Anthropic Messages translation ends the same way.
#[tokio::test]
async fn a_translated_stream_past_max_response_size_mb_ends_with_the_apis_error() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok(&"word ".repeat(4_000)).chunked(400, Duration::from_millis(2)),
    );
    let proxy = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  max_response_size_mb: 0.01\n",
    )
    .await;
    for (path, body, last_type) in [
        (
            "/v1/responses",
            json!({"model": "g", "input": "hi", "stream": true}),
            "response.failed",
        ),
        (
            "/v1/messages",
            json!({"model": "g", "max_tokens": 50, "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]}),
            "error",
        ),
    ] {
        let answer = async {
            let r = proxy.post(path, &body).await;
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        };
        let (status, text) = tokio::time::timeout(LIMIT, answer).await.unwrap();
        assert_eq!(status, 200, "{text}");
        let payloads = sse_payloads(&text);
        let types: Vec<String> = payloads
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .map(|v| v["type"].as_str().unwrap_or("").to_owned())
            .collect();
        assert!(types.iter().any(|t| t == last_type), "{path}: {types:?}");
        assert!(
            !types
                .iter()
                .any(|t| t == "response.completed" || t == "message_stop"),
            "{path}: {types:?}"
        );
        assert!(text.contains("max_response_size_mb"), "{path}: {text}");
    }
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 2)
            .await,
        "the upstream streams were not let go"
    );
    assert_serving(&proxy).await;
}

/// A chat chunk with `content`, spread over several `data:` lines.
const MULTI_LINE_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\n\
     data: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"multi\"},\n\
     data: \"finish_reason\":null}]}\n\n";

#[tokio::test]
async fn multi_line_data_events_are_joined_and_text_events_end_the_stream() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::raw_sse(&[
            MULTI_LINE_CHUNK,
            "data: plain text,\ndata: on two lines\n\n",
            "data: [DONE]\n\n",
        ]),
    );
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    assert_valid_sse(&text);
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), 2, "{text}");
    assert!(!payloads[0].contains('\n'), "JSON is one line: {text}");
    assert_eq!(sse_content(&payloads), "multi");
    // A chat stream's events are JSON: the text event ends it with an error.
    let error: Value = serde_json::from_str(&payloads[1]).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{text}"
    );
    assert!(!text.contains("plain text"), "{text}");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

const RATE_LIMIT_EVENT: &str = "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\"}}\n\n";

const FIRST_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first \"},\"finish_reason\":null}]}\n\n";

#[tokio::test]
async fn a_rate_limit_error_event_before_the_first_chunk_is_a_429_rate_limit() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::raw_sse(&[RATE_LIMIT_EVENT]));
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 429, "{text}");
    let e = error_object(&json(&text)).clone();
    assert_eq!(e["type"], "rate_limit_error", "{text}");
    assert_eq!(e["code"], "rate_limit_exceeded", "{text}");
    assert!(
        e["message"].as_str().unwrap().contains("slow down"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_rate_limit_error_event_before_the_first_chunk_is_retried_as_a_rate_limit() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::raw_sse(&[RATE_LIMIT_EVENT]));
    up.set("b", Behavior::ok("from b"));
    // Rate limits are retried, other server errors are not: only a
    // rate-limit classification reaches `b` (once `a` cools down).
    let proxy = proxy(
        &up,
        &[("g", "a", &["order: 1"]), ("g", "b", &["order: 2"])],
        "router_settings:\n  num_retries: 0\n  retry_after: 0\n  allowed_fails: 0\n  retry_policy:\n    RateLimitErrorRetries: 1\n    InternalServerErrorRetries: 0\n",
    )
    .await;
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert_eq!(sse_content(&payloads), "from b", "{text}");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!((up.calls("a"), up.calls("b")), (1, 1));
    assert_peak_rss(&proxy);
}

const ROLE_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

/// A chunk that names only the role gives the client none of the answer:
/// an error right after it still falls back, invisibly.
#[tokio::test]
async fn an_error_event_after_a_role_only_chunk_still_falls_back() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::raw_sse(&[ROLE_CHUNK, RATE_LIMIT_EVENT]));
    up.set("b", Behavior::ok("from b"));
    let proxy = proxy(
        &up,
        &[("g", "a", &[]), ("h", "b", &[])],
        "router_settings:\n  num_retries: 0\n  fallbacks: [{g: [h]}]\n",
    )
    .await;
    let (status, headers, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert_eq!(sse_content(&payloads), "from b", "{text}");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(headers["x-conclave-model-group"], "h");
    assert_eq!((up.calls("a"), up.calls("b")), (1, 1));
}

#[tokio::test]
async fn a_rate_limit_error_event_mid_stream_is_one_rate_limit_error_event() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::raw_sse(&[FIRST_CHUNK, RATE_LIMIT_EVENT]));
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    assert_valid_sse(&text);
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), 2, "one chunk and one error event: {text}");
    assert_eq!(sse_content(&payloads[..1]), "first ");
    let last = json(&payloads[1]);
    let e = error_object(&last);
    assert_eq!(e["type"], "rate_limit_error", "{text}");
    assert_eq!(e["message"], "slow down", "{text}");
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_stream_event_nested_past_clients_parsers_ends_the_stream_with_an_error() {
    let up = FakeUpstream::start().await;
    let deep = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}},\"extra\":{}{}}}]}}\n\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    up.set("a", Behavior::raw_sse(&[FIRST_CHUNK, deep.as_str()]));
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert_eq!(payloads.len(), 2, "one chunk and one error event: {text}");
    let message = error_object(&json(&payloads[1]))["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("nested deeper than 128 levels"),
        "{message}"
    );
    assert_serving(&proxy).await;
}

#[tokio::test]
async fn absurd_retry_after_headers_neither_crash_nor_stall_the_gateway() {
    let up = FakeUpstream::start().await;
    let hints = [
        ("retry-after", "1e300"),
        ("retry-after", "inf"),
        ("retry-after", "NaN"),
        ("retry-after", "-5"),
        ("retry-after", "99999999999999999999999"),
        ("retry-after-ms", "1e300"),
        ("retry-after-ms", "-1"),
    ];
    let names: Vec<String> = (0..hints.len()).map(|i| format!("d{i}")).collect();
    let entries: Vec<(&str, &str, &[&str])> = names
        .iter()
        .map(|n| (n.as_str(), n.as_str(), &[][..]))
        .collect();
    for (name, (header, value)) in names.iter().zip(hints) {
        up.set(
            name,
            Behavior::status(429, "slow down").header(header, value),
        );
    }
    let proxy = proxy(
        &up,
        &entries,
        "router_settings:\n  num_retries: 0\n  allowed_fails: 0\n",
    )
    .await;
    for (name, (header, value)) in names.iter().zip(hints) {
        let what = format!("{header}: {value}");
        let (status, headers, text, took) = send(&proxy, name, false).await;
        assert_eq!(status, 429, "{what}: {text}");
        assert_eq!(error_object(&json(&text))["type"], "rate_limit_error");
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        let retry_after = |h: &HeaderMap| {
            h.get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap())
        };
        assert!(
            retry_after(&headers).is_none_or(|s| s <= 300),
            "{what}: {headers:?}"
        );
        // The deployment cools down (allowed_fails: 0), for at most 300 s.
        let (status, headers, text, _) = send(&proxy, name, false).await;
        assert_eq!(status, 503, "{what}: {text}");
        let wait = retry_after(&headers).expect("a cooling group says when to retry");
        assert!((1..=300).contains(&wait), "{what}: retry in {wait} s");
    }
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn an_upstream_trickling_keep_alives_without_data_ends_at_the_stream_timeout() {
    let up = FakeUpstream::start().await;
    let pings = vec![": ping\n\n"; 40];
    up.set(
        "a",
        Behavior::raw_sse(&pings).chunked(1, Duration::from_millis(200)),
    );
    let proxy = proxy(&up, &[("g", "a", &["stream_timeout: 1"])], NO_RETRIES).await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 504, "{text}");
    assert_eq!(error_object(&json(&text))["type"], "timeout_error");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
            .await,
        "the trickling upstream stream was not closed"
    );
    assert_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_stream_still_going_at_max_stream_duration_ends_with_one_timeout_event() {
    let up = FakeUpstream::start().await;
    // 60 chunks 200 ms apart: each well within the stream timeout, 12 s in all.
    let steady = Behavior {
        content: "word ".repeat(60),
        ..Behavior::default()
    };
    up.set("a", steady.chunked(60, Duration::from_millis(200)));
    let sections =
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  max_stream_duration: 2\n";
    let proxy = proxy(&up, &[("g", "a", &["stream_timeout: 1"])], sections).await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    assert_valid_sse(&text);
    let payloads = sse_payloads(&text);
    let (last, chunks) = payloads.split_last().expect("events");
    assert!(
        (5..=12).contains(&chunks.len()),
        "about 2 s of chunks: {text}"
    );
    assert!(sse_content(chunks).starts_with("word word "), "{text}");
    let e = error_object(&json(last)).clone();
    assert_eq!(e["type"], "timeout_error", "{text}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("general_settings.max_stream_duration")),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.cancelled() == 1)
            .await,
        "the upstream stream was not closed"
    );
    assert_serving(&proxy).await;
}

#[tokio::test]
async fn a_stream_not_started_by_max_stream_duration_is_one_504_and_not_retried() {
    let up = FakeUpstream::start().await;
    let late = Behavior {
        delay: Duration::from_secs(5),
        ..Behavior::default()
    };
    up.set("a", late);
    let sections =
        "router_settings:\n  num_retries: 2\ngeneral_settings:\n  max_stream_duration: 1\n";
    let proxy = proxy(&up, &[("g", "a", &[])], sections).await;
    let (status, _, text, took) = send(&proxy, "g", true).await;
    assert_eq!(status, 504, "{text}");
    let e = error_object(&json(&text)).clone();
    assert_eq!(e["type"], "timeout_error", "{text}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(up.calls("a"), 1, "the request's own limit is not retried");
    assert_serving(&proxy).await;
}

const HUGE_USAGE_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\
     \"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}],\
     \"usage\":{\"prompt_tokens\":18446744073709551615,\"completion_tokens\":18446744073709551615}}\n\n";

/// The requests to model group `m` counted in `/metrics` so far.
async fn requests_counted(proxy: &Proxy) -> u64 {
    let text = proxy
        .client
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("conclave_requests_total{") && l.contains("model_group=\"m\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn usage_figures_past_any_counter_neither_panic_nor_stop_the_books() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::raw_sse(&[HUGE_USAGE_CHUNK, "data: [DONE]\n\n"]),
    );
    let proxy = proxy(&up, &[("m", "a", &["tpm: 100000000000"])], NO_RETRIES).await;
    for _ in 0..3 {
        let (status, _, text, _) = send(&proxy, "m", true).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("[DONE]"), "{text}");
    }
    // The outcomes still reach every sink: the metrics count all three.
    let mut counted = 0;
    for _ in 0..100 {
        counted = requests_counted(&proxy).await;
        if counted == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 3);
    assert_serving(&proxy).await;
}

#[tokio::test]
async fn a_200_answer_that_is_not_a_json_object_is_a_502_and_never_cached() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\n  disable_cooldowns: true\nlitellm_settings:\n  cache: true\n",
    )
    .await;
    // Nested past what clients' parsers read (Python's json among them).
    let deep = format!(
        "{{\"id\":\"c\",\"choices\":[{{\"message\":{{\"content\":\"x\",\"extra\":{}{}}}}}]}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    for (content_type, body, why) in [
        ("text/html", &b"<html>hi</html>"[..], "not a JSON object"),
        (
            "application/json",
            &b"{\"id\":\"c\",\"choices\":["[..],
            "not a JSON object",
        ),
        (
            "text/event-stream",
            &b"data: {}\n\n"[..],
            "not a JSON object",
        ),
        ("application/json", &b"[1, 2, 3]"[..], "not a JSON object"),
        ("application/json", &b" 42"[..], "not a JSON object"),
        ("application/json", &b""[..], "empty"),
        (
            "application/json",
            &b"{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"}}]}"[..],
            "not UTF-8",
        ),
        (
            "application/json",
            deep.as_bytes(),
            "nested deeper than 128 levels",
        ),
    ] {
        up.set("a", Behavior::raw_body(content_type, body));
        let (status, _, text, _) = send(&proxy, "g", false).await;
        assert_eq!(status, 502, "{content_type} {why}: {text}");
        assert!(
            json(&text)["error"]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{text}"
        );
    }
    assert_serving(&proxy).await;
}

#[tokio::test]
async fn an_anthropic_token_count_a_client_cannot_read_is_a_502() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n{}",
        deployment("claude", "anthropic/claude-up", &up.api_base("a"), &[])
    );
    let proxy = Proxy::start(&yaml).await;
    let deep = format!(
        "{{\"input_tokens\":7,\"x\":{}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    for answer in [
        r#"{"input_tokens":-5}"#,
        r#"{"input_tokens":1e999}"#,
        r#"{"id":"c","choices":[]}"#,
        deep.as_str(),
    ] {
        up.set("a", Behavior::raw_body("application/json", answer));
        let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        let (status, refused) = proxy
            .call(Method::POST, "/v1/messages/count_tokens", Some(body), None)
            .await;
        assert_eq!(status, 502, "{answer}: {refused}");
        assert_eq!(refused["type"], "error", "Anthropic's shape: {refused}");
    }
    up.set(
        "a",
        Behavior::raw_body("application/json", r#"{"input_tokens":7}"#),
    );
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let (status, counted) = proxy
        .call(Method::POST, "/v1/messages/count_tokens", Some(body), None)
        .await;
    assert_eq!(
        (status, &counted["input_tokens"]),
        (200, &json!(7)),
        "{counted}"
    );
}

/// An answer without a usage it can be priced by is priced from an
/// estimate, as a stream is: leaving `usage` out (or writing junk there)
/// must not make an upstream's answers free, nor a made-up count cost
/// millions.
#[tokio::test]
async fn an_answer_without_a_readable_usage_is_priced_from_an_estimate() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(
        &up,
        &[(
            "g",
            "a",
            &[
                "input_cost_per_token: 0.001",
                "output_cost_per_token: 0.002",
            ],
        )],
        NO_RETRIES,
    )
    .await;
    let answer = |usage: &str| {
        format!(
            r#"{{"id":"c","object":"chat.completion","model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"a fairly long answer of some forty bytes"}},"finish_reason":"stop"}}]{usage}}}"#
        )
    };
    for usage in [
        "",
        r#","usage":null"#,
        r#","usage":{"prompt_tokens":-5,"completion_tokens":"x"}"#,
        r#","usage":{"prompt_tokens":0,"completion_tokens":0}"#,
        r#","usage":{"prompt_tokens":3,"completion_tokens":"lots"}"#,
        r#","usage":{"prompt_tokens":3,"completion_tokens":99999999999}"#,
    ] {
        up.set("a", Behavior::raw_body("application/json", answer(usage)));
        let (status, headers, text, _) = send(&proxy, "g", false).await;
        assert_eq!(status, 200, "{text}");
        let cost: f64 = headers["x-conclave-response-cost"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cost > 0.01 && cost < 1.0, "{usage:?}: priced at {cost}");
    }
}

#[tokio::test]
async fn a_200_json_object_that_is_no_answer_is_a_502_on_every_api_and_falls_back() {
    let up = FakeUpstream::start().await;
    up.set("ok", Behavior::ok("from the fallback"));
    let alone = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\n  disable_cooldowns: true\nlitellm_settings:\n  cache: true\n",
    )
    .await;
    let messages = json!({"model": "g", "max_tokens": 50,
                          "messages": [{"role": "user", "content": "hi"}]});
    let responses = json!({"model": "g", "input": "hi"});
    for body in [
        "{}",
        r#"{"id":"c","choices":"nope"}"#,
        r#"{"id":"c","choices":5}"#,
        r#"{"id":"c","choices":[]}"#,
        r#"{"id":"c","choices":[1,2]}"#,
    ] {
        up.set("a", Behavior::raw_body("application/json", body));
        let (status, headers, text, _) = send(&alone, "g", false).await;
        assert_eq!(status, 502, "{body}: {text}");
        assert!(text.contains("choices"), "{body}: {text}");
        assert!(
            !headers.contains_key("x-conclave-cache"),
            "{body}: {headers:?}"
        );
        for (path, request) in [("/v1/messages", &messages), ("/v1/responses", &responses)] {
            let (status, answer) = alone
                .call(Method::POST, path, Some(request.clone()), None)
                .await;
            assert_eq!(status, 502, "{path} {body}: {answer}");
        }
    }
    let falling_back = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 0\n  fallbacks: [{g: [ok]}]\n",
    )
    .await;
    let (status, answer) = falling_back
        .call(Method::POST, "/v1/messages", Some(messages), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["content"][0]["text"], "from the fallback");
}

#[tokio::test]
async fn an_upstream_echoing_its_key_in_a_json_answer_is_redacted() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("debug: upstream saw Bearer sk-test-key in the request"),
    );
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", false).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("sk-test-key"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

/// Chat chunks whose contents are `pieces`, then a finish and `[DONE]`.
fn content_events(pieces: &[&str]) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut events: Vec<String> = pieces
        .iter()
        .map(|p| chunk(json!({"content": p}), Value::Null))
        .collect();
    events.push(chunk(json!({}), json!("stop")));
    events.push("data: [DONE]\n\n".into());
    events
}

#[tokio::test]
async fn an_upstream_streaming_its_key_in_pieces_or_escaped_is_redacted() {
    let up = FakeUpstream::start().await;
    let events = content_events(&["your key: s", "k-t", "est", "-k", "ey, ok"]);
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    up.set("a", Behavior::raw_sse(&events));
    up.set(
        "b",
        Behavior::raw_body(
            "application/json",
            r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"key \u0073k-test-key"},"finish_reason":"stop"}]}"#,
        ),
    );
    let proxy = proxy(&up, &[("g", "a", &[]), ("h", "b", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 200, "{text}");
    let content: String = sse_payloads(&text)
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!content.contains("test-key"), "{content}");
    assert!(content.ends_with("[redacted], ok"), "{content}");
    // The Responses translation joins the pieces itself, into its final
    // events and the stored response.
    let responses = json!({"model": "g", "input": "hi", "stream": true});
    let r = proxy.post("/v1/responses", &responses).await;
    let text = r.text().await.unwrap();
    assert!(text.contains("response.completed"), "{text}");
    assert!(!text.contains("test-key"), "{text}");
    let (status, _, text, _) = send(&proxy, "h", false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        json(&text)["choices"][0]["message"]["content"],
        "key [redacted]"
    );
}

#[tokio::test]
async fn an_upstream_redirect_is_not_followed() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(307, "moved")
            .header("location", &format!("{}/elsewhere", up.api_base("b"))),
    );
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", false).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(up.calls("b"), 0, "the prompt went nowhere else");
}

#[tokio::test]
async fn an_upstream_echoing_its_key_in_an_errors_param_or_code_is_redacted() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::status(400, "bad key Bearer sk-test-key").param("Bearer sk-test-key"),
    );
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&proxy, "g", false).await;
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains("sk-test-key"), "{text}");
    assert_eq!(json(&text)["error"]["param"], "Bearer [redacted]", "{text}");
}

#[tokio::test]
async fn a_credential_set_in_extra_headers_is_redacted_like_the_key() {
    let up = FakeUpstream::start().await;
    let secret = "sk-from-an-extra-header-456";
    up.set(
        "a",
        Behavior::status(400, &format!("bad key: Bearer {secret}")),
    );
    up.set("b", Behavior::ok(&format!("you sent {secret}")));
    let header = format!("extra_headers: {{Authorization: \"Bearer {secret}\"}}");
    let proxy = proxy(
        &up,
        &[
            ("g", "a", &[header.as_str()]),
            ("h", "b", &[header.as_str()]),
        ],
        NO_RETRIES,
    )
    .await;
    let (status, _, text, _) = send(&proxy, "g", false).await;
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    let (status, _, text, _) = send(&proxy, "h", false).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!proxy.logs().contains(secret), "the key reached the log");
}

#[tokio::test]
async fn an_error_answered_with_a_200_is_retried_and_falls_back() {
    let up = FakeUpstream::start().await;
    let error = r#"{"error":{"message":"upstream overloaded","code":502}}"#;
    up.set("a", Behavior::raw_body("application/json", error));
    up.set("ok", Behavior::ok("from the fallback"));
    let falling_back = proxy(
        &up,
        &[("g", "a", &[])],
        "router_settings:\n  num_retries: 1\n  retry_after: 0\n  fallbacks: [{g: [ok]}]\n",
    )
    .await;
    let (status, _, text, _) = send(&falling_back, "g", false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        json(&text)["choices"][0]["message"]["content"],
        "from the fallback"
    );
    assert_eq!(
        up.calls("a"),
        2,
        "the error was retried once before the fallback"
    );
    let alone = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    let (status, _, text, _) = send(&alone, "g", false).await;
    assert_eq!(status, 502, "{text}");
    assert!(
        json(&text)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream overloaded"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_request_answered_with_json_says_so_or_gives_its_error() {
    let up = FakeUpstream::start().await;
    let proxy = proxy(&up, &[("g", "a", &[])], NO_RETRIES).await;
    up.set(
        "a",
        Behavior::raw_body(
            "application/json",
            r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
        ),
    );
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("slow down"), "{text}");
    up.set(
        "a",
        Behavior::raw_body(
            "application/json",
            r#"{"id":"c","object":"chat.completion","choices":[]}"#,
        ),
    );
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("not an event stream"), "{text}");
    up.set(
        "a",
        Behavior::raw_body("text/plain", "plain words, no events"),
    );
    let (status, _, text, _) = send(&proxy, "g", true).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("no data: line"), "{text}");
}
