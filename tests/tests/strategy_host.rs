//! The WASM strategy host: composite profiles through the real binary, with
//! the fake upstream behind every model call.

use std::time::{Duration, Instant};

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, SseReader, chat_body, deployment, error_object,
    strategy_component,
};
use serde_json::{Value, json};

/// A config with plain deployments `names` on the fake, a `moa` profile over
/// them (aggregator `agg`, proposers p1..p3) and a `probe` profile.
fn config(up: &FakeUpstream, profile_extra: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in ["p1", "p2", "p3", "agg", "echo"] {
        yaml.push_str(&deployment(
            name,
            &format!("openai/{name}-up"),
            &up.api_base(name),
            &[],
        ));
    }
    yaml.push_str(
        "  - model_name: moa-test\n    litellm_params:\n      model: composite/profile/moa_test\n  \
         - model_name: probe\n    litellm_params:\n      model: composite/profile/probe\n",
    );
    yaml.push_str("router_settings:\n  num_retries: 1\n  retry_after: 0\ngeneral_settings:\n  composite_llm:\n");
    yaml.push_str(&format!(
        "    strategy_registry:\n      probe: {}\n",
        strategy_component("probe").display()
    ));
    yaml.push_str(
        "    profiles:\n      moa_test:\n        strategy: moa\n        topology:\n          aggregator: {model: agg}\n          \
         proposers: [{model: p1}, {model: p2}, {model: p3}]\n          settings: {}\n",
    );
    if profile_extra.is_empty() {
        yaml.push_str(&probe_profile("isolation", "{}"));
    } else {
        yaml.push_str(profile_extra);
    }
    yaml
}

fn probe_profile(mode: &str, limits: &str) -> String {
    format!(
        "      probe:\n        strategy: probe\n        topology:\n          settings: {{mode: {mode}, model: echo}}\n        limits: {limits}\n"
    )
}

async fn chat(proxy: &Proxy, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    proxy.chat(&body).await
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_by_the_cpu_limit_and_the_next_request_works() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        &probe_profile("spin", "{cpu_ms: 200, timeout_s: 30}"),
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = chat(&proxy, chat_body("probe", "go")).await;
    assert_eq!(status, 500, "{body}");
    error_object(&body);
    assert!(message(&body).contains("\"probe\""), "{body}");
    assert!(message(&body).contains("CPU limit"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut next = chat_body("probe", "again");
    next["composite_settings"] = json!({"mode": "isolation", "model": "echo"});
    let (status, _, body) = chat(&proxy, next).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_guest_growing_memory_without_bound_is_stopped_at_the_cap() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &probe_profile("hog", "{memory_mb: 16}"))).await;
    let (status, _, body) = chat(&proxy, chat_body("probe", "go")).await;
    assert_eq!(status, 500, "{body}");
    assert!(message(&body).contains("memory limit of 16 MiB"), "{body}");
}

#[tokio::test]
async fn a_panicking_guest_is_a_clean_500_naming_the_profile() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, &probe_profile("crash", "{}"))).await;
    let (status, _, body) = chat(&proxy, chat_body("probe", "go")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(error_object(&body)["code"], "strategy_crashed");
    assert!(message(&body).contains("\"probe\""), "{body}");
    // The process survives and keeps serving plain models.
    let (status, _, _) = chat(&proxy, chat_body("echo", "still there?")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_guest_can_open_no_file_read_no_env_and_open_no_socket() {
    let up = FakeUpstream::start().await;
    let port = up.addr.port();
    let profile = format!(
        "      probe:\n        strategy: probe\n        topology:\n          settings: {{mode: sandbox, port: {port}}}\n"
    );
    let proxy = Proxy::start_with(
        &config(&up, &profile),
        &[("CONCLAVE_PROBE_SECRET", "hunter2")],
        &[],
    )
    .await;
    let (status, _, body) = chat(&proxy, chat_body("probe", "go")).await;
    assert_eq!(status, 200, "{body}");
    let report: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(report["file"], false, "{report}");
    assert_eq!(report["dir"], false, "{report}");
    assert_eq!(report["env"], json!([]), "{report}");
    assert_eq!(report["socket"], false, "{report}");
    // The port was really open: the fake upstream listens on it.
    assert!(std::net::TcpStream::connect(up.addr).is_ok());
}

#[tokio::test]
async fn fifty_concurrent_composite_requests_each_see_only_their_own_data() {
    let up = FakeUpstream::start().await;
    up.set(
        "echo",
        Behavior::ok("echoed").delayed(Duration::from_millis(20)),
    );
    let proxy = Proxy::start(&config(&up, &probe_profile("isolation", "{}"))).await;
    let requests = (0..50).map(|i| {
        let proxy = &proxy;
        async move {
            (
                i,
                chat(proxy, chat_body("probe", &format!("request-{i}"))).await,
            )
        }
    });
    for (i, (status, _, body)) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
        let report: Value =
            serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap())
                .unwrap();
        let mine = format!("request-{i}");
        assert_eq!(report["mine"], mine.as_str());
        assert_eq!(report["before"], Value::Null, "state leaked in: {report}");
        assert_eq!(
            report["after"],
            mine.as_str(),
            "state changed under it: {report}"
        );
    }
    assert_eq!(up.calls("echo"), 50);
}

#[tokio::test]
async fn complete_all_runs_the_proposers_concurrently() {
    let up = FakeUpstream::start().await;
    for p in ["p1", "p2", "p3"] {
        up.set(
            p,
            Behavior::ok(&format!("{p} says hi")).delayed(Duration::from_millis(400)),
        );
    }
    up.set("agg", Behavior::ok("final"));
    let proxy = Proxy::start(&config(&up, "")).await;
    let started = Instant::now();
    let (status, headers, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "final");
    assert_eq!(headers["x-conclave-strategy"], "moa_test");
    // One proposer's delay, not three.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1000),
        "proposers ran one after another: {elapsed:?}"
    );
    let starts: Vec<Instant> = up
        .recorded()
        .iter()
        .filter(|r| r.deployment.starts_with('p'))
        .map(|r| r.at)
        .collect();
    let spread = starts
        .iter()
        .max()
        .unwrap()
        .duration_since(*starts.iter().min().unwrap());
    assert!(spread < Duration::from_millis(200), "{spread:?}");
}

#[tokio::test]
async fn the_aggregator_sees_every_successful_proposal_and_no_failed_one() {
    let up = FakeUpstream::start().await;
    up.set("p1", Behavior::ok("ALPHA-ANSWER"));
    up.set("p2", Behavior::status(400, "BETA-BROKE"));
    up.set("p3", Behavior::ok("GAMMA-ANSWER"));
    up.set("agg", Behavior::ok("combined"));
    let proxy = Proxy::start(&config(&up, "")).await;
    let (status, _, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    assert_eq!(status, 200, "{body}");
    let sent = up.last_body("agg").unwrap().to_string();
    assert!(
        sent.contains("ALPHA-ANSWER") && sent.contains("GAMMA-ANSWER"),
        "{sent}"
    );
    assert!(
        !sent.contains("BETA"),
        "a failed proposal reached the aggregator: {sent}"
    );
    assert!(sent.contains("question"));
    let reasoning = body["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap();
    assert!(reasoning.contains("p2 failed"), "{reasoning}");
    // Usage sums all four calls (the fake reports 12 tokens each).
    assert_eq!(body["usage"]["total_tokens"], 36);
}

#[tokio::test]
async fn a_failing_proposer_is_retried_by_the_router_like_any_request() {
    let up = FakeUpstream::start().await;
    up.push("p1", Behavior::status(500, "blip"));
    up.set("p1", Behavior::ok("p1 after retry"));
    let proxy = Proxy::start(&config(&up, "")).await;
    let (status, _, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("p1"), 2);
    assert!(
        up.last_body("agg")
            .unwrap()
            .to_string()
            .contains("p1 after retry")
    );
    assert_eq!(body["usage"]["total_tokens"], 48);
}

#[tokio::test]
async fn the_first_content_chunk_streams_before_the_aggregator_has_finished() {
    let up = FakeUpstream::start().await;
    up.set(
        "agg",
        Behavior::ok("one two three four five six").chunked(6, Duration::from_millis(150)),
    );
    let proxy = Proxy::start(&config(&up, "")).await;
    let mut body = chat_body("moa-test", "question");
    body["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let mut saw_reasoning = false;
    let mut first_content: Option<Instant> = None;
    let mut content = String::new();
    while let Some(payload) = reader.next(Duration::from_secs(10)).await {
        if payload == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&payload).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        let delta = &chunk["choices"][0]["delta"];
        if delta["reasoning_content"].is_string() {
            assert!(first_content.is_none(), "trace after the answer began");
            saw_reasoning = true;
        }
        if let Some(c) = delta["content"].as_str().filter(|c| !c.is_empty()) {
            first_content.get_or_insert_with(Instant::now);
            content.push_str(c);
        }
    }
    let ended = Instant::now();
    assert!(saw_reasoning);
    assert_eq!(content, "one two three four five six");
    let lead = ended.duration_since(first_content.unwrap());
    assert!(
        lead >= Duration::from_millis(500),
        "content was buffered: first chunk only {lead:?} before the end"
    );
}

#[tokio::test]
async fn stage_summaries_can_be_turned_off_by_the_request() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "")).await;
    let mut body = chat_body("moa-test", "question");
    body["include_stage_summaries_in_reasoning"] = json!(false);
    let (status, _, body) = chat(&proxy, body).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{body}"
    );
    // The setting is not forwarded to the models.
    assert!(
        !up.last_body("agg")
            .unwrap()
            .to_string()
            .contains("include_stage_summaries")
    );
}

#[tokio::test]
async fn the_deadline_answers_504_naming_the_profile() {
    let up = FakeUpstream::start().await;
    for p in ["p1", "p2", "p3"] {
        up.set(p, Behavior::ok("slow").delayed(Duration::from_secs(3)));
    }
    let extra = "        limits: {timeout_s: 0.3}\n";
    let proxy = Proxy::start(&config(&up, "").replace(
        "          settings: {}\n",
        &format!("          settings: {{}}\n{extra}"),
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    assert_eq!(status, 504, "{body}");
    assert!(message(&body).contains("moa_test"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A request's own `timeout` (LiteLLM's setting) bounds a composite run as
/// it bounds a plain call: the run ends at it, well before the profile's
/// own deadline, and names the profile.
#[tokio::test]
async fn a_request_timeout_shortens_a_composite_runs_deadline() {
    let up = FakeUpstream::start().await;
    for p in ["p1", "p2", "p3"] {
        up.set(p, Behavior::ok("slow").delayed(Duration::from_secs(3)));
    }
    let proxy = Proxy::start(&config(&up, "")).await;
    let mut body = chat_body("moa-test", "question");
    body["timeout"] = json!(0.3);
    let started = Instant::now();
    let (status, _, answer) = chat(&proxy, body).await;
    assert_eq!(status, 504, "{answer}");
    assert!(message(&answer).contains("moa_test"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let forwarded = up.last_body("p1").unwrap();
    assert!(forwarded.get("timeout").is_none(), "{forwarded}");
}

#[tokio::test]
async fn max_calls_refuses_model_calls_beyond_the_limit() {
    let up = FakeUpstream::start().await;
    let extra = "        limits: {max_calls: 2}\n";
    let proxy = Proxy::start(&config(&up, "").replace(
        "          settings: {}\n",
        &format!("          settings: {{}}\n{extra}"),
    ))
    .await;
    let (status, _, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    // A sandbox limit among the causes: 500, the causes listed.
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "strategy_limit_exceeded", "{body}");
    assert!(message(&body).contains("proposers answered"), "{body}");
    assert!(
        message(&body).contains("p1: limit exceeded: the profile allows 2 model calls"),
        "{body}"
    );
    assert_eq!(
        up.calls("p1") + up.calls("p2") + up.calls("p3") + up.calls("agg"),
        0
    );
}

#[tokio::test]
async fn observability_appends_one_json_line_with_the_trace_tree() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, "").replace(
        "    profiles:\n",
        "    observability: {enabled: true, log_file: trace.jsonl}\n    profiles:\n",
    );
    let proxy = Proxy::start(&yaml).await;
    let (status, _, _) = chat(&proxy, chat_body("moa-test", "question")).await;
    assert_eq!(status, 200);
    // The log is an outcome sink, written off the response path.
    let path = proxy.dir.path().join("trace.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&path).is_ok_and(|l| l.ends_with('\n'))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    let entry: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(entry["status"], "success");
    assert_eq!(entry["model"], "moa-test");
    let nodes = entry["trace"].as_array().unwrap();
    assert_eq!(nodes[0]["step"], "strategy");
    assert_eq!(
        nodes.iter().filter(|n| n["step"] == "llm_call").count(),
        4,
        "{log}"
    );
    let aggregation = nodes.iter().find(|n| n["step"] == "aggregation").unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n["step"] == "llm_call" && n["parent_id"] == aggregation["id"])
    );
}

#[tokio::test]
async fn a_topology_the_strategy_rejects_is_a_config_error_with_its_path() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, "").replace("          aggregator: {model: agg}\n", "");
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains("general_settings.composite_llm.profiles.moa_test.topology")
            && stderr.contains("aggregator"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_config_written_the_seed_projects_way_passes_check() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/composite-litellm.yaml"
    );
    let out = conclave_e2e::run_conclave(
        &["check", "--config", path],
        &[("CEREBRAS_API_KEY", "sk-test")],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for name in ["moa_light", "moa_hard", "council_basic"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    // The Python class paths map to the built-in strategies, council included.
    assert!(
        stdout.contains("council_basic: council (builtin:council"),
        "{stdout}"
    );
    assert!(!stdout.contains("not in this build"), "{stdout}");
    assert!(stdout.contains("Python import path"), "{stdout}");
}

#[tokio::test]
async fn the_direct_form_takes_its_settings_from_the_request() {
    let up = FakeUpstream::start().await;
    up.set("p1", Behavior::ok("FROM-P1"));
    up.set("p2", Behavior::ok("FROM-P2"));
    up.set("agg", Behavior::ok("direct answer"));
    let mut yaml = config(&up, "");
    yaml = yaml.replacen(
        "model_list:\n",
        &format!(
            "model_list:\n{}  - model_name: moa-direct\n    litellm_params:\n      model: composite/moa/openai/agg-direct\n",
            deployment("openai/agg-direct", "openai/agg-up", &up.api_base("agg"), &[])
        ),
        1,
    );
    let proxy = Proxy::start(&yaml).await;
    let mut body = chat_body("moa-direct", "question");
    body["proposers"] = json!(["p1", "p2"]);
    let (status, _, body) = chat(&proxy, body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "direct answer");
    assert_eq!((up.calls("p1"), up.calls("p2"), up.calls("p3")), (1, 1, 0));
    let sent = up.last_body("agg").unwrap();
    assert!(sent.to_string().contains("FROM-P1") && sent.to_string().contains("FROM-P2"));
    assert!(
        sent.get("proposers").is_none(),
        "a strategy setting was forwarded: {sent}"
    );
}

/// The seed's direct form, `composite/council/cerebras/llama-3.3-70b` with
/// its own `api_key`: the model is served with the entry's own key and
/// address though no public name serves it, and a request may name it.
#[tokio::test]
async fn the_direct_forms_model_is_called_with_the_entrys_own_settings() {
    let up = FakeUpstream::start().await;
    up.set("p1", Behavior::ok("FROM-P1"));
    up.set("p2", Behavior::ok("FROM-P2"));
    up.set("agg", Behavior::ok("direct answer"));
    let yaml = config(&up, "").replacen(
        "model_list:\n",
        &format!(
            "model_list:\n  - model_name: moa-direct\n    litellm_params:\n      model: composite/moa/openai/agg-only-here\n      api_base: {}\n      api_key: sk-direct-entry-key\n      custom_llm_provider: composite\n",
            up.api_base("agg")
        ),
        1,
    );
    let proxy = Proxy::start(&yaml).await;
    for named in [None, Some("openai/agg-only-here")] {
        let mut body = chat_body("moa-direct", "question");
        body["proposers"] = json!(["p1", "p2"]);
        // Named as a proposer too: the entry's own model, which its caller may have called.
        if let Some(model) = named {
            body["proposers"] = json!(["p1", model]);
        }
        let (status, _, body) = chat(&proxy, body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "direct answer");
    }
    let sent = up
        .recorded()
        .into_iter()
        .rev()
        .find(|r| r.deployment == "agg")
        .unwrap();
    assert_eq!(sent.body["model"], "agg-only-here");
    assert_eq!(
        sent.headers["authorization"].to_str().unwrap(),
        "Bearer sk-direct-entry-key"
    );
    // The entry's model is not a public one.
    let (status, _, _) = chat(&proxy, chat_body("openai/agg-only-here", "hi")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn max_fanout_refuses_a_wider_complete_all() {
    let up = FakeUpstream::start().await;
    let extra = "        limits: {max_fanout: 2}\n";
    let proxy = Proxy::start(&config(&up, "").replace(
        "          settings: {}\n",
        &format!("          settings: {{}}\n{extra}"),
    ))
    .await;
    let (status, _, body) = chat(&proxy, chat_body("moa-test", "question")).await;
    assert_eq!(status, 500, "{body}");
    assert!(message(&body).contains("max fan-out of 2"), "{body}");
    assert_eq!(
        up.calls("p1") + up.calls("p2") + up.calls("p3") + up.calls("agg"),
        0
    );
}

#[tokio::test]
async fn an_unknown_provider_bundle_is_a_config_error_with_its_path() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, "").replace("{model: p2}", "{model: openai/x, provider: nowhere}");
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains(
            "general_settings.composite_llm.profiles.moa_test.topology.proposers[1].provider"
        ) && stderr.contains("nowhere"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_request_a_strategy_would_misread_is_refused_before_any_model_call() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, "")).await;
    let image = json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]);
    for (body, expected) in [
        (json!({"model": "moa-test", "messages": []}), "at least one"),
        (
            json!({"model": "moa-test", "messages": [1, 2]}),
            "messages[0]",
        ),
        (
            json!({"model": "moa-test", "messages": [{"role": "user", "content": image}]}),
            "text only",
        ),
        (chat_body_with_n("moa-test", 3), "n must be 1"),
    ] {
        let (status, _, answer) = chat(&proxy, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(message(&answer).contains(expected), "{body}: {answer}");
    }
    let (status, _, answer) = chat(&proxy, stream_body_with_n("moa-test", 2)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(up.recorded().len(), 0, "no model was called");
}

fn chat_body_with_n(model: &str, n: u64) -> Value {
    let mut body = chat_body(model, "hi");
    body["n"] = json!(n);
    body
}

fn stream_body_with_n(model: &str, n: u64) -> Value {
    let mut body = chat_body_with_n(model, n);
    body["stream"] = json!(true);
    body
}
