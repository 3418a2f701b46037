//! `GET /metrics` through the real binary: after a known sequence of
//! requests every counter and histogram count has its exact value, the text
//! parses as Prometheus exposition, and the route keeps the master key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::proxy::Proxy;
use conclave_e2e::{Behavior, FakeUpstream, SseReader, chat_body, deployment, deployments};
use prometheus_parse::{LineInfo, Scrape, Value};
use serde_json::json;

const KEY: &str = "sk-metrics-master";

fn config(up: &FakeUpstream, public: bool) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(
        up,
        &[
            ("plain", &[][..]),
            ("flaky", &["max_retries: 1"][..]),
            ("primary", &["max_retries: 0"][..]),
            ("backup", &[][..]),
            ("broken", &["max_retries: 0"][..]),
            ("p1", &[][..]),
            ("p2", &[][..]),
            ("agg", &[][..]),
        ],
    ));
    yaml.push_str(
        "  - model_name: moa-test\n    litellm_params:\n      model: composite/profile/moa_test\n",
    );
    yaml.push_str(
        "router_settings:\n  num_retries: 0\n  retry_after: 0\n  allowed_fails: 1000\n  \
         fallbacks: [{primary: [backup]}]\n",
    );
    yaml.push_str("litellm_settings:\n  success_callback: [prometheus]\n");
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {KEY}\n  public_metrics: {public}\n  composite_llm:\n    profiles:\n      \
         moa_test:\n        strategy: moa\n        topology:\n          aggregator: {{model: agg}}\n          \
         proposers: [{{model: p1}}, {{model: p2}}]\n          settings: {{}}\n"
    ));
    yaml
}

async fn chat(proxy: &Proxy, body: serde_json::Value) -> reqwest::Response {
    proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn scrape_text(proxy: &Proxy) -> String {
    let r = proxy
        .client
        .get(proxy.url("/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    r.text().await.unwrap()
}

/// Checks the text line by line as the exposition grammar wants it: every
/// line is a HELP, TYPE or sample line, the text ends with `# EOF`, and
/// each sample belongs to the family its TYPE line announced.
fn assert_valid_exposition(text: &str) {
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator");
    let mut family = String::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                ..
            } => {
                family = metric_alias.unwrap_or(metric_name);
            }
            LineInfo::Doc { .. } => {}
            LineInfo::Sample { metric_name, .. } => assert!(
                metric_name.starts_with(&family),
                "sample {metric_name} outside its family {family}"
            ),
            LineInfo::Empty | LineInfo::Ignored => panic!("not exposition: {line:?}"),
        }
    }
    if let Some(status) = promtool_check(text) {
        assert!(status.0, "promtool check metrics failed:\n{}", status.1);
    }
}

/// `promtool check metrics`, when it is installed; `None` (with the reason
/// printed) when it is not.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        // prometheus-parse (a dev-dependency) always runs; promtool only
        // adds a second opinion where Prometheus is installed.
        println!("promtool is not installed; the exposition is checked with prometheus-parse only");
        return None;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint findings are advice; only a parse error fails.
    Some((!report.contains("error while linting"), report))
}

/// Samples by metric name, each with its labels.
struct Parsed(Scrape);

impl Parsed {
    fn new(text: &str) -> Self {
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap())
    }

    /// Sum of the plain values of `metric` whose labels include `want`.
    fn value(&self, metric: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(metric, want)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric} is not a single value: {other:?}"),
            })
            .sum()
    }

    /// Sum of the observation counts of histogram `metric` (its `+Inf`
    /// bucket) whose labels include `want`.
    fn count(&self, metric: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(metric, want)
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{metric} is not a histogram: {other:?}"),
            })
            .sum()
    }

    fn matching<'a>(
        &'a self,
        metric: &'a str,
        want: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == metric && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }
}

/// Polls `/metrics` until `settled` holds (outcomes arrive asynchronously).
async fn scrape_until(proxy: &Proxy, settled: impl Fn(&Parsed) -> bool) -> (String, Parsed) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape_text(proxy).await;
        let parsed = Parsed::new(&text);
        if settled(&parsed) || tokio::time::Instant::now() > deadline {
            return (text, parsed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn a_known_sequence_gives_exact_counts() {
    let up = FakeUpstream::start().await;
    up.push("flaky", Behavior::status(500, "first try fails"));
    up.set("primary", Behavior::status(500, "primary is down"));
    up.set("broken", Behavior::status(500, "always broken"));
    let proxy = Proxy::start(&config(&up, false)).await;

    for _ in 0..2 {
        assert_eq!(chat(&proxy, chat_body("plain", "hi")).await.status(), 200);
    }
    let mut body = chat_body("plain", "stream please");
    body["stream"] = json!(true);
    let mut sse = SseReader::new(chat(&proxy, body).await);
    while sse.next(Duration::from_secs(10)).await.is_some() {}
    let retried = chat(&proxy, chat_body("flaky", "hi")).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.headers()["x-conclave-attempts"], "2");
    let fell_back = chat(&proxy, chat_body("primary", "hi")).await;
    assert_eq!(fell_back.status(), 200);
    assert_eq!(fell_back.headers()["x-conclave-fallback"], "backup");
    assert_eq!(
        chat(&proxy, chat_body("moa-test", "hi")).await.status(),
        200
    );
    assert_eq!(chat(&proxy, chat_body("broken", "hi")).await.status(), 502);

    let (text, m) = scrape_until(&proxy, |m| {
        m.value("conclave_requests_total", &[]) >= 7.0
            && m.count("gen_ai_client_operation_duration_seconds", &[]) >= 9.0
    })
    .await;
    assert_valid_exposition(&text);
    let requests = |group: &str, class: &str| {
        m.value(
            "conclave_requests_total",
            &[
                ("route", CHAT),
                ("model_group", group),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(m.value("conclave_requests_total", &[]), 7.0, "{text}");
    assert_eq!(requests("plain", "2xx"), 3.0, "{text}");
    assert_eq!(requests("flaky", "2xx"), 1.0, "{text}");
    assert_eq!(requests("backup", "2xx"), 1.0, "{text}");
    assert_eq!(requests("moa-test", "2xx"), 1.0, "{text}");
    assert_eq!(requests("broken", "5xx"), 1.0, "{text}");

    // Model calls: 5 plain client requests (one streamed), the failure, and
    // the composite's 3 sub-calls; the composite request itself is not one.
    let chat_calls = [("gen_ai_operation_name", "chat")];
    assert_eq!(
        m.count("gen_ai_client_operation_duration_seconds", &chat_calls),
        9.0,
        "{text}"
    );
    assert_eq!(
        m.count(
            "gen_ai_client_operation_duration_seconds",
            &[
                ("gen_ai_request_model", "broken"),
                ("error_type", "upstream_error")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.count(
            "gen_ai_client_operation_duration_seconds",
            &[("gen_ai_provider_name", "openai"), ("error_type", "")]
        ),
        8.0,
        "{text}"
    );
    assert_eq!(
        m.count("gen_ai_server_time_to_first_token_seconds", &[]),
        1.0,
        "{text}"
    );
    let tokens = |kind: &str| m.count("gen_ai_client_token_usage", &[("gen_ai_token_type", kind)]);
    let (input, output) = (tokens("input"), tokens("output"));
    assert_eq!(input, output, "{text}");
    assert_eq!(input, USAGE_REPORTING_CALLS, "{text}");

    assert_eq!(
        m.count("conclave_overhead_seconds", &[("route", CHAT)]),
        5.0,
        "{text}"
    );
    assert_eq!(m.value("conclave_retries_total", &[]), 2.0, "{text}");
    assert_eq!(
        m.value("conclave_retries_total", &[("model_group", "flaky")]),
        1.0,
        "{text}"
    );
    // The primary failed and its fallback answered: the call was for primary.
    assert_eq!(
        m.value("conclave_retries_total", &[("model_group", "primary")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value(
            "conclave_fallbacks_total",
            &[("model_group", "primary"), ("fallback_group", "backup")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.value(
            "conclave_strategy_runs_total",
            &[("profile", "moa_test"), ("outcome", "success")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.count("conclave_strategy_sub_calls", &[("profile", "moa_test")]),
        1.0
    );
    assert!(
        text.contains("conclave_strategy_sub_calls_sum{profile=\"moa_test\"} 3.0"),
        "{text}"
    );
    // Failed upstream calls by deployment, those a retry or a fallback
    // rescued too: flaky's first try, the primary, and broken.
    let failed_calls = |group: &str| {
        m.value(
            "conclave_deployment_failed_calls_total",
            &[("model_group", group)],
        )
    };
    assert_eq!(
        (
            failed_calls("flaky"),
            failed_calls("primary"),
            failed_calls("broken")
        ),
        (1.0, 1.0, 1.0),
        "{text}"
    );
    assert_eq!(failed_calls("plain"), 0.0, "{text}");
    assert_eq!(m.value("conclave_in_flight_requests", &[]), 0.0, "{text}");
    assert_eq!(m.value("conclave_config_reloads_total", &[]), 0.0, "{text}");
    assert_eq!(
        m.value("conclave_deployment_state", &[("state", "healthy")]),
        8.0,
        "{text}"
    );
    assert_eq!(m.value("conclave_build_info", &[]), 1.0, "{text}");
    assert!(
        !text.contains(KEY),
        "the master key leaked into the metrics"
    );

    // /health keeps its shape and adds each deployment's latency average.
    let health: serde_json::Value = proxy
        .client
        .get(proxy.url("/health"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["healthy_count"], 8, "{health}");
    let deployments = health["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 8, "{health}");
    let plain = deployments
        .iter()
        .find(|d| d["model_id"] == "plain.0")
        .unwrap();
    assert_eq!(plain["model_group"], "plain");
    assert_eq!(plain["healthy"], true);
    assert!(plain["latency_avg_ms"].as_f64().is_some(), "{health}");
    let broken = deployments
        .iter()
        .find(|d| d["model_id"] == "broken.0")
        .unwrap();
    assert!(
        broken["latency_avg_ms"].is_null(),
        "no success, no average: {health}"
    );

    // Nothing counted twice: a later scrape has the same totals.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = Parsed::new(&scrape_text(&proxy).await);
    assert_eq!(again.value("conclave_requests_total", &[]), 7.0);
    assert_eq!(
        again.count("gen_ai_client_operation_duration_seconds", &[]),
        9.0
    );
}

/// Model calls whose answer reported usage: 2 plain, the stream (the
/// gateway asks its upstream for the usage chunk it prices the stream by),
/// flaky, the fallback and the 3 sub-calls.
const USAGE_REPORTING_CALLS: f64 = 8.0;

#[tokio::test]
async fn a_model_name_an_upstream_reports_cannot_forge_samples() {
    let up = FakeUpstream::start().await;
    let mut yaml = String::from("model_list:\n");
    // The fake answers with the model it was sent: quotes, a backslash and
    // line breaks that would end the label value and write a sample.
    let forged = "openai/ev\"il\\\"} 1\nconclave_fake_total 42\n# x";
    yaml.push_str(&deployment("quoted", forged, &up.api_base("quoted"), &[]));
    yaml.push_str(&format!(
        "litellm_settings:\n  success_callback: [prometheus]\ngeneral_settings:\n  master_key: {KEY}\n"
    ));
    let proxy = Proxy::start(&yaml).await;
    let answer = chat(
        &proxy,
        serde_json::json!({"model": "quoted", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let (text, _) = scrape_until(&proxy, |m| {
        m.count("gen_ai_client_operation_duration_seconds", &[]) >= 1.0
    })
    .await;
    assert!(
        !text.lines().any(|l| l.starts_with("conclave_fake_total")),
        "{text}"
    );
    assert!(
        text.contains(r#"ev\"il\\\"} 1\nconclave_fake_total 42\n# x"#),
        "{text}"
    );
    assert_valid_exposition(&text);
}

#[tokio::test]
async fn a_call_the_client_left_is_named_by_its_status_in_error_type() {
    let up = FakeUpstream::start().await;
    up.set(
        "plain",
        Behavior::ok("late").delayed(Duration::from_secs(2)),
    );
    let proxy = Proxy::start(&config(&up, false)).await;
    let left = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .timeout(Duration::from_millis(300))
        .json(
            &serde_json::json!({"model": "plain", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await;
    assert!(left.is_err(), "the client gave up first");
    let with_status = [("gen_ai_request_model", "plain"), ("error_type", "499")];
    let (text, m) = scrape_until(&proxy, |m| {
        m.count("gen_ai_client_operation_duration_seconds", &with_status) >= 1.0
    })
    .await;
    assert_eq!(
        m.count("gen_ai_client_operation_duration_seconds", &with_status),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn requests_refused_for_their_key_are_counted_and_logged() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, false)).await;
    for key in ["sk-wrong", ""] {
        let r = proxy
            .client
            .post(proxy.url(CHAT))
            .bearer_auth(key)
            .header("x-request-id", format!("refused-{}", key.len()))
            .json(&serde_json::json!({"model": "plain", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let labels = [("route", CHAT), ("status_class", "4xx")];
    let (text, m) = scrape_until(&proxy, |m| {
        m.value("conclave_requests_total", &labels) >= 2.0
    })
    .await;
    assert_eq!(m.value("conclave_requests_total", &labels), 2.0, "{text}");
    // No model was called.
    assert_eq!(
        m.count("gen_ai_client_operation_duration_seconds", &[]),
        0.0,
        "{text}"
    );
    let logs = proxy.logs();
    assert!(
        logs.lines().any(|l| l.contains("\"refused-8\"")
            && l.contains("\"status\":401")
            && l.contains("\"caller\":\"unknown\"")),
        "{logs}"
    );
}

#[tokio::test]
async fn metrics_need_the_master_key_unless_public() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up, false)).await;
    let anonymous = proxy
        .client
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // LiteLLM's scrape path, with its slash, is the same route.
    let (status, _) = proxy
        .call(reqwest::Method::GET, "/metrics/", None, None)
        .await;
    assert_eq!(status, 401);
    let wrong = proxy
        .client
        .get(proxy.url("/metrics"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // A valid virtual key is no admin's: 403. An admin user's key reads.
    let status_with = |body: serde_json::Value| {
        let proxy = &proxy;
        async move {
            let made = proxy.generate_key(KEY, body).await;
            let r = proxy
                .client
                .get(proxy.url("/metrics"))
                .bearer_auth(made["key"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(status_with(serde_json::json!({})).await, 403);
    let admin = proxy
        .client
        .post(proxy.url("/user/new"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"user_id": "ops", "user_role": "proxy_admin", "auto_create_key": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert_eq!(
        status_with(serde_json::json!({"user_id": "ops"})).await,
        200
    );
    drop(proxy);

    let proxy = Proxy::start(&config(&up, true)).await;
    let open = proxy
        .client
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let text = open.text().await.unwrap();
    assert_valid_exposition(&text);
    let (status, slashed) = proxy
        .call(reqwest::Method::GET, "/metrics/", None, None)
        .await;
    assert_eq!(status, 200, "{slashed}");
    let m = Parsed::new(&text);
    for name in ["conclave_build_info", "conclave_in_flight_requests"] {
        assert!(
            m.0.samples.iter().any(|s| s.metric == name),
            "{name}: {text}"
        );
    }
}

/// LiteLLM's own switch: `require_auth_for_metrics_endpoint: false` opens
/// the metrics when `public_metrics` is unset.
#[tokio::test]
async fn litellms_metrics_auth_switch_is_read() {
    let up = FakeUpstream::start().await;
    let scrape = |yaml: String| async move {
        let proxy = Proxy::start(&yaml).await;
        proxy
            .call(reqwest::Method::GET, "/metrics", None, None)
            .await
            .0
    };
    let unset = config(&up, false).replace("  public_metrics: false\n", "");
    let open = unset.replace(
        "success_callback: [prometheus]\n",
        "success_callback: [prometheus]\n  require_auth_for_metrics_endpoint: false\n",
    );
    assert_ne!(open, unset);
    assert_eq!(scrape(open).await, 200);
    let closed = unset.replace(
        "success_callback: [prometheus]\n",
        "success_callback: [prometheus]\n  require_auth_for_metrics_endpoint: true\n",
    );
    assert_eq!(scrape(closed).await, 401);
}

#[tokio::test]
async fn unknown_callbacks_are_named_in_one_warning() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, true).replace(
        "success_callback: [prometheus]",
        "success_callback: [prometheus, langfuse]\n  failure_callback: [langfuse, datadog]",
    );
    let proxy = Proxy::start(&yaml).await;
    let logs = proxy.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("callbacks conclave does not have"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("langfuse, datadog"), "{logs}");
    assert!(
        warnings[0].contains("ignored: langfuse, datadog ("),
        "{logs}"
    );
}
