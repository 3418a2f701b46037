//! A hostile or broken strategy against the host's side of the sandbox:
//! the host's memory per run, its checks of what a strategy returns, the
//! once-only `respond`, and `validate` under the profile's limits. Every
//! case ends cleanly (a status, an OpenAI-shaped error naming the profile,
//! bounded time) and the gateway keeps serving.

use std::time::{Duration, Instant};

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, answer_content, answer_reasoning, body_text, chat_body,
    composite_config, error_object, failed_check, replace_atomically, sse_content, sse_payloads,
    strategy_component,
};
use serde_json::{Value, json};

/// Well within the time every case must end in.
const BOUNDED: Duration = Duration::from_secs(15);

/// The most the gateway may have resident at any time during a case here.
/// A debug build with the strategy engine and its instance pool peaks at
/// 70-90 MiB in these cases (the 9 MiB request case is the highest). The
/// bound catches the host keeping what a guest hands it without a limit:
/// 100,000 trace events of 1 MiB, or request after refused request, would
/// pass it within a second.
const PEAK_RSS_BOUND: u64 = 192 << 20;

/// The gateway's peak RSS stayed under [`PEAK_RSS_BOUND`].
fn assert_peak_rss(proxy: &Proxy) {
    proxy.assert_peak_rss_below(PEAK_RSS_BOUND);
}

/// A config with deployments `echo`, `first`, `second` and `tools` on the
/// fake, and a `hostile` profile (public model `hostile`) with `settings`
/// and `limits` (YAML flow maps).
fn config(up: &FakeUpstream, settings: &str, limits: &str) -> String {
    let mut yaml = composite_config(
        up,
        &["echo", "first", "second", "tools"],
        &[("hostile", "hostile")],
        "",
    );
    yaml.push_str(&format!(
        "general_settings:\n  admin_without_key_on_loopback: true\n  composite_llm:\n    \
         strategy_registry:\n      hostile: {}\n    profiles:\n      hostile:\n        \
         strategy: hostile\n        topology:\n          settings: {settings}\n        \
         limits: {limits}\n",
        strategy_component("hostile").display()
    ));
    yaml
}

async fn start(up: &FakeUpstream, settings: &str, limits: &str) -> Proxy {
    up.set("echo", Behavior::ok("echoed"));
    Proxy::start(&config(up, settings, limits)).await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Asserts a 500 with `code`, naming the profile and containing `needle`.
fn assert_refused(status: u16, body: &Value, code: &str, needle: &str) {
    assert_eq!(status, 500, "{body}");
    assert_eq!(error_object(body)["code"], code, "{body}");
    assert!(message(body).contains("\"hostile\""), "{body}");
    assert!(message(body).contains(needle), "{body}");
}

/// The gateway still answers a plain model and the composite one.
async fn still_serving(proxy: &Proxy) {
    let (status, _, body) = proxy.chat(&chat_body("echo", "still there?")).await;
    assert_eq!(status, 200, "{body}");
    let mut next = chat_body("hostile", "again");
    next["composite_settings"] = json!({"mode": "respond", "model": "echo"});
    let (status, _, body) = proxy.chat(&next).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "echoed");
}

async fn timed_chat(proxy: &Proxy, body: Value) -> (u16, Value) {
    let started = Instant::now();
    let (status, _, body) = proxy.chat(&body).await;
    assert!(started.elapsed() < BOUNDED, "took {:?}", started.elapsed());
    (status, body)
}

#[tokio::test]
async fn a_strategy_may_print_any_amount_and_a_crash_quotes_its_last_lines() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: chatty, size: 200000}", "{}").await;
    let (status, _, body) = proxy.chat(&chat_body("hostile", "talk")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "chatty done");

    let mut crash = chat_body("hostile", "talk, then crash");
    crash["composite_settings"] = json!({"mode": "chatty-crash", "size": 200000});
    let (status, headers, body) = proxy.chat(&crash).await;
    assert_refused(status, &body, "strategy_crashed", "line last");
    assert!(!message(&body).contains("line 00000000"), "{body}");
    // The same request would crash again: the SDKs are told not to retry.
    assert_eq!(headers["x-should-retry"], "false");
    still_serving(&proxy).await;
}

#[tokio::test]
async fn a_streamed_run_that_fails_before_any_output_answers_with_its_status() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: respond, model: echo}", "{}").await;
    let mut body = chat_body("hostile", "go");
    body["stream"] = json!(true);
    body["composite_settings"] = json!({"mode": "no-such-mode"});
    let (status, headers, body) = proxy.chat(&body).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_object(&body)["code"],
        "strategy_invalid_request",
        "{body}"
    );
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{headers:?}"
    );
    still_serving(&proxy).await;
}

#[tokio::test]
async fn a_megabyte_trace_flood_is_stopped_by_the_trace_byte_limit() {
    let up = FakeUpstream::start().await;
    // 100 000 trace events of 1 MiB each (the mode's defaults).
    let proxy = start(&up, "{mode: trace-flood}", "{}").await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_limit_exceeded", "max_trace_bytes");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_flood_of_small_trace_events_is_stopped_by_the_event_limit() {
    let up = FakeUpstream::start().await;
    let proxy = start(
        &up,
        "{mode: trace-flood, size: 8}",
        "{max_trace_events: 500}",
    )
    .await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_limit_exceeded", "max_trace_events");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_streamed_trace_flood_ends_the_stream_with_the_limit_error() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: trace-flood}", "{}").await;
    let mut body = chat_body("hostile", "go");
    body["stream"] = json!(true);
    let started = Instant::now();
    let response = proxy.post("/v1/chat/completions", &body).await;
    let text = body_text(response, BOUNDED).await;
    assert!(started.elapsed() < BOUNDED);
    let payloads = sse_payloads(&text);
    let error = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .find(|v| v.get("error").is_some())
        .unwrap_or_else(|| panic!("no error event in {} bytes", text.len()));
    assert_eq!(error["error"]["code"], "strategy_limit_exceeded", "{error}");
    assert!(message(&error).contains("\"hostile\""), "{error}");
    // Only what the limit let through reached the client.
    assert!(text.len() < 6 << 20, "{} bytes streamed", text.len());
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_request_over_the_call_limit_is_refused_before_the_upstream() {
    let up = FakeUpstream::start().await;
    // A 9 MiB request against the 8 MiB default.
    let proxy = start(&up, "{mode: huge-request, model: echo}", "{}").await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_limit_exceeded", "max_call_bytes");
    assert_eq!(up.calls("echo"), 0);
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_guest_ignoring_refusals_is_stopped_by_the_run_limit() {
    let up = FakeUpstream::start().await;
    let proxy = start(
        &up,
        "{mode: request-flood, model: echo, size: 100000}",
        "{max_call_bytes: 65536, max_run_bytes: 1048576, max_calls: 100000}",
    )
    .await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_limit_exceeded", "max_run_bytes");
    assert_eq!(up.calls("echo"), 0);
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_streamed_tool_call_index_of_a_trillion_takes_one_slot() {
    let up = FakeUpstream::start().await;
    up.set(
        "tools",
        Behavior::raw_sse(&[
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"tools-up\",\
             \"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":1000000000000,\
             \"id\":\"call_big\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},\
             \"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"tools-up\",\
             \"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        ]),
    );
    let proxy = start(&up, "{mode: respond, model: tools}", "{}").await;
    let mut body = chat_body("hostile", "go");
    body["stream"] = json!(true);
    let started = Instant::now();
    let response = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let text = body_text(response, BOUNDED).await;
    assert!(started.elapsed() < BOUNDED);
    assert!(text.contains("call_big"), "{text}");
    let finish: Vec<Value> = sse_payloads(&text)
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter(|v| v["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finish.len(), 1, "{text}");
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    assert!(!text.contains("\"error\""), "{text}");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn tool_calls_that_are_not_an_openai_array_are_a_500_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: bad-tool-calls}", "{}").await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(
        status,
        &body,
        "strategy_invalid_response",
        "tool-calls-json",
    );
    // Streamed, the client gets the same error rather than a made-up answer.
    let mut streamed = chat_body("hostile", "go");
    streamed["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &streamed).await;
    let text = body_text(response, BOUNDED).await;
    assert!(text.contains("strategy_invalid_response"), "{text}");
    assert!(!text.contains("\"finish_reason\":\"tool_calls\""), "{text}");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_tool_calls_finish_without_calls_is_a_500_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: tool-calls-without-calls}", "{}").await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_invalid_response", "finish-reason");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn an_answer_over_the_answer_limit_is_a_500_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = start(
        &up,
        "{mode: huge-answer, size: 200000}",
        "{max_answer_bytes: 100000}",
    )
    .await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_refused(status, &body, "strategy_invalid_response", "content");
    assert!(message(&body).contains("max_answer_bytes"), "{body}");
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn a_second_respond_is_refused_and_the_first_answer_stands() {
    let up = FakeUpstream::start().await;
    up.set("first", Behavior::ok("the first answer"));
    up.set("second", Behavior::ok("the second answer"));
    let proxy = start(
        &up,
        "{mode: respond-twice, model: first, second: second}",
        "{}",
    )
    .await;
    let (status, body) = timed_chat(&proxy, chat_body("hostile", "go")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "the first answer");
    assert!(
        answer_reasoning(&body).contains("invalid request: respond was already called"),
        "{body}"
    );
    assert_eq!(up.calls("second"), 0);

    let mut streamed = chat_body("hostile", "go");
    streamed["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &streamed).await;
    assert_eq!(response.status(), 200);
    let text = body_text(response, BOUNDED).await;
    assert_eq!(
        sse_content(&sse_payloads(&text)),
        "the first answer",
        "{text}"
    );
    assert_eq!(up.calls("second"), 0);
    still_serving(&proxy).await;
    assert_peak_rss(&proxy);
}

#[tokio::test]
async fn check_fails_fast_when_validate_spins_or_hogs_memory() {
    let up = FakeUpstream::start().await;
    for (mode, limits, expected) in [
        ("validate-spin", "{cpu_ms: 300}", "CPU limit of 300 ms"),
        ("validate-hog", "{memory_mb: 16}", "memory limit of 16 MiB"),
    ] {
        let started = Instant::now();
        let stderr = failed_check(&config(&up, &format!("{{mode: {mode}}}"), limits)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode}: {:?}",
            started.elapsed()
        );
        assert!(stderr.contains("\"hostile\""), "{mode}: {stderr}");
        assert!(stderr.contains(expected), "{mode}: {stderr}");
    }
}

#[tokio::test]
async fn a_reload_whose_validate_spins_is_refused_within_seconds() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{mode: respond, model: echo}", "{}").await;
    still_serving(&proxy).await;
    replace_atomically(
        &proxy.config_path(),
        config(&up, "{mode: validate-spin}", "{cpu_ms: 300}").as_bytes(),
    );
    let started = Instant::now();
    let r = proxy.post("/admin/reload", &json!({})).await;
    assert_eq!(r.status(), 422);
    assert!(started.elapsed() < Duration::from_secs(10));
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_object(&body)["code"], "reload_failed", "{body}");
    assert!(message(&body).contains("\"hostile\""), "{body}");
    assert!(message(&body).contains("CPU limit of 300 ms"), "{body}");
    // The old version keeps serving.
    let (status, _, body) = proxy.chat(&chat_body("hostile", "x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "echoed");
    assert_peak_rss(&proxy);
}
