//! The access log line and the per-request log files, through the real
//! binary: what they hold, their names, their bounds, and that no key ever
//! reaches them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_e2e::proxy::{Launch, Proxy};
use conclave_e2e::{Behavior, FakeUpstream, SseReader, chat_body, deployments};
use serde_json::{Value, json};

const KEY: &str = "sk-request-logs-master";
/// The upstream key [`deployment`] configures.
const UPSTREAM_KEY: &str = "sk-test-key";

fn config(up: &FakeUpstream, general: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(
        up,
        &[
            ("plain", &[][..]),
            ("broken", &["max_retries: 0"][..]),
            ("p1", &[][..]),
            ("p2", &[][..]),
            ("agg", &[][..]),
            ("flaky", &["max_retries: 1"][..]),
            ("fb-a", &["max_retries: 0"][..]),
            ("fb-b", &[][..]),
        ],
    ));
    yaml.push_str(
        "  - model_name: moa-test\n    litellm_params:\n      model: composite/profile/moa_test\n",
    );
    yaml.push_str("router_settings:\n  num_retries: 0\n  retry_after: 0\n  allowed_fails: 1000\n");
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {KEY}\n{general}  composite_llm:\n    profiles:\n      \
         moa_test:\n        strategy: moa\n        topology:\n          aggregator: {{model: agg}}\n          \
         proposers: [{{model: p1}}, {{model: p2}}]\n          settings: {{}}\n"
    ));
    yaml
}

async fn chat(proxy: &Proxy, id: &str, body: Value) -> reqwest::Response {
    proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The files in `dir`, sorted by name.
/// The log files of `dir`; a file being written has a hidden name until it
/// is whole.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

/// Waits (bounded) until `done` holds for the files of `dir`.
async fn wait_files(dir: &Path, done: impl Fn(&[PathBuf]) -> bool) -> Vec<PathBuf> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = files(dir);
        if done(&found) || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The one log file of request `id`, read.
fn log_of(found: &[PathBuf], id: &str) -> (String, String) {
    let matching: Vec<&PathBuf> = found
        .iter()
        .filter(|p| name_of(p).contains(&format!("-{id}_")))
        .collect();
    assert_eq!(matching.len(), 1, "{id}: {found:?}");
    let name = name_of(matching[0]);
    (name, std::fs::read_to_string(matching[0]).unwrap())
}

fn assert_no_secrets(text: &str) {
    for secret in [KEY, UPSTREAM_KEY] {
        assert!(!text.contains(secret), "a key reached a log:\n{text}");
    }
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "a header reached a log:\n{text}"
    );
}

#[tokio::test]
async fn text_request_logs_hold_each_request_and_its_sub_calls() {
    let up = FakeUpstream::start().await;
    up.set("broken", Behavior::status(500, "always broken"));
    up.set(
        "plain",
        Behavior::ok("alpha beta gamma delta epsilon zeta").chunked(6, Duration::ZERO),
    );
    let proxy = Proxy::start(&config(&up, "  request_log_dir: logs\n")).await;
    let dir = proxy.dir.path().join("logs");

    assert_eq!(
        chat(&proxy, "rl-plain", chat_body("plain", "hi"))
            .await
            .status(),
        200
    );
    let mut body = chat_body("plain", "stream please");
    body["stream"] = json!(true);
    let mut sse = SseReader::new(chat(&proxy, "rl-stream", body).await);
    while sse.next(Duration::from_secs(10)).await.is_some() {}
    assert_eq!(
        chat(&proxy, "rl-fail", chat_body("broken", "hi"))
            .await
            .status(),
        502
    );
    assert_eq!(
        chat(&proxy, "rl-moa", chat_body("moa-test", "hi"))
            .await
            .status(),
        200
    );

    let found = wait_files(&dir, |f| f.len() >= 4).await;
    assert_eq!(found.len(), 4, "one file per client request: {found:?}");

    let (name, plain) = log_of(&found, "rl-plain");
    let stamp = &name[..15];
    assert!(
        stamp[..8].chars().all(|c| c.is_ascii_digit())
            && &stamp[8..9] == "_"
            && stamp[9..].chars().all(|c| c.is_ascii_digit()),
        "{name}"
    );
    assert!(name.ends_with("-rl-plain_plain.log"), "{name}");
    for expected in [
        "request_id: rl-plain",
        "status: 200",
        "attempts: 1",
        "deployment: plain.0",
        "caller: master",
        "\"prompt_tokens\":5",
        "== response ==",
        "alpha beta gamma delta epsilon zeta",
    ] {
        assert!(plain.contains(expected), "{expected:?} missing:\n{plain}");
    }
    assert!(plain.contains("duration_ms: "), "{plain}");

    // Every chunk of the stream is kept, not only the last ones.
    let (_, stream) = log_of(&found, "rl-stream");
    assert!(stream.contains("stream: true"), "{stream}");
    for word in ["alpha", "gamma", "epsilon", "zeta"] {
        assert!(stream.contains(word), "{word} missing:\n{stream}");
    }

    let (_, failed) = log_of(&found, "rl-fail");
    assert!(failed.contains("status: 502"), "{failed}");
    assert!(failed.contains("error: upstream_error"), "{failed}");

    let (_, moa) = log_of(&found, "rl-moa");
    assert!(moa.contains("profile: moa_test"), "{moa}");
    assert!(moa.contains("== sub-calls (3) =="), "{moa}");
    assert_eq!(
        moa.matches("\"parent_request_id\":\"rl-moa\"").count(),
        3,
        "{moa}"
    );
    // Each sub-call line carries the body the strategy sent and its attempt.
    for model in ["p1", "p2", "agg"] {
        assert!(
            moa.contains(&format!(
                "\"request\":{{\"model\":\"{model}\",\"stream\":false,"
            )),
            "{model}:\n{moa}"
        );
        assert!(
            moa.contains(&format!(
                "\"attempts\":[{{\"deployment\":\"{model}.0\",\"group\":\"{model}\",\"status\":200,"
            )),
            "{model}:\n{moa}"
        );
    }

    for file in &found {
        assert_no_secrets(&std::fs::read_to_string(file).unwrap());
    }
    // Log lines reach the test through a pipe: give the last one a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while access_lines(&proxy.logs()).len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_access_log(&proxy.logs());
}

fn access_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "conclave::access" && v["level"] == "INFO")
        .collect()
}

/// The access log: one structured info line per request, with its fields.
fn assert_access_log(logs: &str) {
    let lines = access_lines(logs);
    assert_eq!(lines.len(), 4, "{logs}");
    let plain = lines
        .iter()
        .find(|l| l["request_id"] == "rl-plain")
        .unwrap_or_else(|| panic!("no access line for rl-plain: {logs}"));
    assert_eq!(plain["route"], "/v1/chat/completions");
    assert_eq!(plain["method"], "POST");
    assert_eq!(plain["model"], "plain");
    assert_eq!(plain["status"], 200);
    assert_eq!(plain["attempts"], 1);
    assert_eq!(plain["caller"], "master");
    assert_eq!(plain["cache"], "none");
    assert!(plain["duration_ms"].as_f64().is_some(), "{plain}");
    assert!(plain["overhead_ms"].as_f64().is_some(), "{plain}");
    let failed = lines.iter().find(|l| l["request_id"] == "rl-fail").unwrap();
    assert_eq!(failed["status"], 502);
    assert_eq!(failed["error"], "upstream_error");
    assert_no_secrets(logs);
}

#[tokio::test]
async fn jsonl_request_logs_rotate_within_their_bounds_and_follow_the_env() {
    let up = FakeUpstream::start().await;
    let logs = conclave_e2e::proxy::TempDir::new();
    let dir = logs.path().join("from-env");
    // ~8 KiB in all: the active file rotates at half of it.
    let proxy = Proxy::launch(
        &config(
            &up,
            "  request_log_format: jsonl\n  request_log_max_files: 2\n  request_log_max_mb: 0.008\n",
        ),
        Launch {
            env: vec![(
                "CONCLAVE_REQUEST_LOG_DIR".into(),
                dir.display().to_string(),
            )],
            ..Launch::default()
        },
    )
    .await;
    for i in 0..12 {
        let id = format!("rl-j{i:02}");
        assert_eq!(
            chat(&proxy, &id, chat_body("plain", "hi")).await.status(),
            200
        );
    }
    let last_written = |f: &[PathBuf]| {
        f.iter().any(|p| {
            name_of(p) == "requests.jsonl"
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("rl-j11"))
        })
    };
    let found = wait_files(&dir, last_written).await;
    assert!(last_written(&found), "{found:?}");
    assert!(found.len() <= 2, "max_files is 2: {found:?}");
    let total: u64 = found
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 8 * 1024 + 4096, "{total} bytes kept");
    let mut lines = Vec::new();
    for file in &found {
        let text = std::fs::read_to_string(file).unwrap();
        assert_no_secrets(&text);
        for line in text.lines() {
            lines.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    // The oldest requests were deleted first.
    assert!(
        !lines.iter().any(|l| l["request_id"] == "rl-j00"),
        "{lines:?}"
    );
    let last = lines.iter().find(|l| l["request_id"] == "rl-j11").unwrap();
    assert_eq!(last["status"], 200);
    assert_eq!(last["model"], "plain");
    assert_eq!(last["usage"]["completion_tokens"], 7);
    assert_eq!(
        last["response"]["choices"][0]["message"]["content"],
        "fake answer"
    );
}

#[tokio::test]
async fn text_request_logs_keep_at_most_max_files_oldest_deleted_first() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &up,
        "  request_log_dir: logs\n  request_log_max_files: 3\n",
    ))
    .await;
    let dir = proxy.dir.path().join("logs");
    for i in 0..5 {
        let id = format!("rl-t{i}");
        assert_eq!(
            chat(&proxy, &id, chat_body("plain", "hi")).await.status(),
            200
        );
        // Files are ordered by time: keep each request in its own instant.
        wait_files(&dir, |f| {
            f.iter().any(|p| name_of(p).contains(&format!("-{id}_")))
        })
        .await;
    }
    let found = files(&dir);
    let names: Vec<String> = found.iter().map(|p| name_of(p)).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for id in ["rl-t2", "rl-t3", "rl-t4"] {
        assert!(
            names.iter().any(|n| n.contains(&format!("-{id}_"))),
            "{id}: {names:?}"
        );
    }
}

/// A chat body that also carries a client's own `api_key`, as LiteLLM allows.
fn body_with_key(model: &str, prompt: &str) -> Value {
    let mut body = chat_body(model, prompt);
    body["api_key"] = json!(CLIENT_KEY);
    body
}

/// A key a client put in its request body.
const CLIENT_KEY: &str = "sk-client-body-secret";

#[tokio::test]
async fn text_request_logs_hold_the_request_body_and_each_attempt() {
    let up = FakeUpstream::start().await;
    up.push("flaky", Behavior::status(500, "first try fails"));
    up.set("fb-a", Behavior::status(503, "group a is down"));
    let proxy = Proxy::start(&config(&up, "  request_log_dir: logs\n")).await;
    let dir = proxy.dir.path().join("logs");

    let sent = chat(&proxy, "rl-body", body_with_key("plain", "hello body")).await;
    assert_eq!(sent.status(), 200);
    let sent = chat(&proxy, "rl-retry", chat_body("flaky", "hi")).await;
    assert_eq!(sent.status(), 200);
    let mut body = chat_body("fb-a", "hi");
    body["fallbacks"] = json!(["fb-b"]);
    let sent = chat(&proxy, "rl-fallback", body).await;
    assert_eq!(sent.status(), 200);
    // A translated dialect logs what its client sent, not the chat request.
    let sent = proxy
        .client
        .post(proxy.url("/v1/responses"))
        .bearer_auth(KEY)
        .header("x-request-id", "rl-responses")
        .json(&json!({"model": "plain", "input": "hello responses", "store": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    let found = wait_files(&dir, |f| f.len() >= 4).await;
    let (_, responses) = log_of(&found, "rl-responses");
    let body = section(&responses, "== request body ==");
    assert!(
        body.len() == 1 && body[0].contains(r#""input":"hello responses""#),
        "{responses}"
    );
    let (_, logged) = log_of(&found, "rl-body");
    assert!(logged.contains("== request body ==\n{"), "{logged}");
    assert!(logged.contains("hello body"), "{logged}");
    assert!(logged.contains(r#""api_key":"[redacted]""#), "{logged}");
    // The client's key was not sent on to the provider either.
    assert!(
        up.recorded()
            .iter()
            .all(|r| !r.body.to_string().contains(CLIENT_KEY)),
        "an upstream received the client's api_key"
    );
    assert!(
        logged.contains("== attempts ==\n1. plain.0 (group plain): 200 in "),
        "{logged}"
    );

    let (_, retried) = log_of(&found, "rl-retry");
    assert!(retried.contains("attempts: 2\n"), "{retried}");
    let attempts = section(&retried, "== attempts ==");
    assert_eq!(attempts.len(), 2, "{retried}");
    assert!(
        attempts[0].starts_with("1. flaky.0 (group flaky): 500 internal_server in ")
            && attempts[0].contains("first try fails"),
        "{retried}"
    );
    assert!(
        attempts[1].starts_with("2. flaky.0 (group flaky): 200 in "),
        "{retried}"
    );

    let (_, fell_back) = log_of(&found, "rl-fallback");
    assert!(fell_back.contains("fallback: fb-b"), "{fell_back}");
    let attempts = section(&fell_back, "== attempts ==");
    assert_eq!(attempts.len(), 2, "{fell_back}");
    assert!(
        attempts[0].starts_with("1. fb-a.0 (group fb-a): 503 internal_server in ")
            && attempts[0].contains("group a is down"),
        "{fell_back}"
    );
    assert!(
        attempts[1].starts_with("2. fb-b.0 (group fb-b): 200 in "),
        "{fell_back}"
    );

    for file in &found {
        let text = std::fs::read_to_string(file).unwrap();
        assert_no_secrets(&text);
        assert!(
            !text.contains(CLIENT_KEY),
            "a client's key reached a log:\n{text}"
        );
    }
}

/// The lines of a text log's section, up to the next blank line.
fn section<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    text.split(&format!("{header}\n"))
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn jsonl_request_logs_carry_the_request_body_and_the_attempts() {
    let up = FakeUpstream::start().await;
    up.push("flaky", Behavior::status(500, "first try fails"));
    up.set("fb-a", Behavior::status(503, "group a is down"));
    let proxy = Proxy::start(&config(
        &up,
        "  request_log_dir: logs\n  request_log_format: jsonl\n",
    ))
    .await;
    let dir = proxy.dir.path().join("logs");

    let sent = chat(&proxy, "rl-jbody", body_with_key("plain", "hello body")).await;
    assert_eq!(sent.status(), 200);
    let sent = chat(&proxy, "rl-jretry", chat_body("flaky", "hi")).await;
    assert_eq!(sent.status(), 200);
    let mut body = chat_body("fb-a", "hi");
    body["fallbacks"] = json!(["fb-b"]);
    let sent = chat(&proxy, "rl-jfallback", body).await;
    assert_eq!(sent.status(), 200);
    let sent = chat(&proxy, "rl-jmoa", chat_body("moa-test", "hi")).await;
    assert_eq!(sent.status(), 200);

    let active = dir.join("requests.jsonl");
    let written =
        |_: &[PathBuf]| std::fs::read_to_string(&active).is_ok_and(|t| t.lines().count() >= 4);
    wait_files(&dir, written).await;
    let text = std::fs::read_to_string(&active).unwrap();
    assert_no_secrets(&text);
    assert!(
        !text.contains(CLIENT_KEY),
        "a client's key reached a log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}: {text}"))
    };

    let with_body = line("rl-jbody");
    assert_eq!(with_body["request"]["model"], "plain");
    assert_eq!(with_body["request"]["api_key"], "[redacted]");
    assert_eq!(with_body["request"]["messages"][0]["content"], "hello body");
    assert_eq!(with_body["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(with_body["attempts"][0]["status"], 200);

    let retried = line("rl-jretry");
    assert_eq!(retried["attempt_count"], 2);
    let attempts = retried["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{retried}");
    assert_eq!(attempts[0]["deployment"], "flaky.0");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["error_class"], "internal_server");
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("first try fails"),
        "{retried}"
    );
    assert!(attempts[0]["duration_ms"].as_f64().is_some(), "{retried}");
    assert_eq!(attempts[1]["status"], 200);
    assert_eq!(attempts[1]["error"], Value::Null);

    let fell_back = line("rl-jfallback");
    let groups: Vec<&str> = fell_back["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["fb-a", "fb-b"], "{fell_back}");
    assert_eq!(fell_back["attempts"][0]["status"], 503);

    let moa = line("rl-jmoa");
    let subs = moa["sub_calls"].as_array().unwrap();
    assert_eq!(subs.len(), 3, "{moa}");
    for sub in subs {
        let model = sub["model"].as_str().unwrap();
        assert_eq!(sub["request"]["model"], model, "{sub}");
        assert!(sub["request"]["messages"].is_array(), "{sub}");
        assert_eq!(
            sub["attempts"][0]["deployment"],
            format!("{model}.0"),
            "{sub}"
        );
        assert_eq!(sub["attempts"][0]["status"], 200, "{sub}");
    }
    // The client's request itself called no upstream: its sub-calls did.
    assert_eq!(moa["attempts"], json!([]), "{moa}");
    // Its answer is logged as a plain request's is.
    assert_eq!(moa["response"]["object"], "chat.completion", "{moa}");
}

/// A client that leaves while the router retries: its access line counts
/// the upstream calls made, not one.
#[tokio::test]
async fn a_request_left_during_retries_is_logged_with_the_calls_it_made() {
    let up = FakeUpstream::start().await;
    up.set(
        "plain",
        Behavior::status(500, "down").delayed(Duration::from_millis(200)),
    );
    let proxy = Proxy::start(&config(&up, "")).await;
    let mut body = chat_body("plain", "hi");
    body["num_retries"] = json!(8);
    let left =
        tokio::time::timeout(Duration::from_millis(900), chat(&proxy, "rl-left", body)).await;
    assert!(left.is_err(), "the request was still retrying");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = proxy.logs();
        if let Some(line) = access_lines(&logs)
            .into_iter()
            .find(|l| l["request_id"] == "rl-left")
        {
            break line;
        }
        assert!(tokio::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["status"], 499, "{line}");
    let attempts = line["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{line}");
    assert!(attempts as usize <= up.calls("plain"), "{line}");
    assert_eq!(line["model_group"], "plain", "{line}");
}
