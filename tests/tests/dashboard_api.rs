//! The dashboard's server side over HTTP, against the real binary on the
//! offline demo config: the pages and their security headers, the key its
//! data takes, the live table and its filters, a request's attempts and a
//! composite's trace, the overview's counts and the models' live state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::Proxy;
use serde_json::{Value, json};

const DEMO: &str = include_str!("../../config/demo.yaml");
const MASTER_KEY: &str = "sk-demo-dashboard";

async fn demo() -> Proxy {
    Proxy::start_with(DEMO, &[("CONCLAVE_MASTER_KEY", MASTER_KEY)], &[]).await
}

async fn get(proxy: &Proxy, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = proxy.client.get(proxy.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ask(proxy: &Proxy, key: &str, model: &str) -> (u16, String) {
    let response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "What is six times seven?"}]}))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-conclave-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (response.status().as_u16(), id)
}

/// The request page of `id`, once its outcome has reached the dashboard.
async fn request_page(proxy: &Proxy, id: &str, key: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = get(proxy, &format!("/ui/api/requests/{id}"), Some(key)).await;
        if status == 200 {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "request {id} never reached the dashboard: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_pages_are_embedded_and_sent_with_a_strict_content_security_policy() {
    let proxy = demo().await;
    let page = proxy.client.get(proxy.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    // Every script and style the page names is served, with its type.
    let assets: Vec<&str> = html
        .split("/ui/assets/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    for asset in assets {
        let r = proxy
            .client
            .get(proxy.url(&format!("/ui/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = if asset.ends_with(".js") {
            "javascript"
        } else {
            "css"
        };
        assert!(kind.contains(expected), "{asset}: {kind}");
    }
    // The page needs no key (its data does); unknown files are 404s in the API's shape.
    assert_eq!(
        proxy
            .client
            .get(proxy.url("/ui"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = get(&proxy, "/ui/assets/no-such-file.js", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_url");
    let (status, _) = get(&proxy, "/ui/assets/..%2Fapp.js", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_data_takes_a_key_and_a_virtual_key_sees_only_its_own_requests() {
    let proxy = demo().await;
    let (status, session) = get(&proxy, "/ui/api/session", None).await;
    assert_eq!((status, &session["login_required"]), (200, &json!(true)));
    let (status, body) = get(&proxy, "/ui/api/session", Some("sk-wrong")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(&proxy, "/ui/api/requests", None).await;
    assert_eq!(status, 401, "{body}");
    let (_, session) = get(&proxy, "/ui/api/session", Some(MASTER_KEY)).await;
    assert_eq!(session["role"], "admin");
    assert_eq!(session["features"]["keys"], true);

    let made = proxy
        .generate_key(MASTER_KEY, json!({"key_alias": "dash-reader"}))
        .await;
    let key = made["key"].as_str().unwrap();
    let (_, session) = get(&proxy, "/ui/api/session", Some(key)).await;
    assert_eq!(
        (&session["role"], &session["key_alias"]),
        (&json!("key"), &json!("dash-reader"))
    );

    let (_, theirs) = ask(&proxy, MASTER_KEY, "demo-fast").await;
    let (_, mine) = ask(&proxy, key, "demo-fast").await;
    request_page(&proxy, &theirs, MASTER_KEY).await;
    request_page(&proxy, &mine, key).await;
    let (_, listed) = get(&proxy, "/ui/api/requests", Some(key)).await;
    let ids: Vec<&str> = listed["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    let (status, body) = get(&proxy, &format!("/ui/api/requests/{theirs}"), Some(key)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("request_not_found"))
    );
    let (_, all) = get(&proxy, "/ui/api/requests", Some(MASTER_KEY)).await;
    assert_eq!(all["requests"].as_array().unwrap().len(), 2);
    let row = &all["requests"][0];
    assert_eq!(
        (&row["id"], &row["caller"], &row["key_alias"]),
        (&json!(mine), &made["key_name"], &json!("dash-reader"))
    );
    // The key's overview counts its own request only.
    let (_, overview) = get(&proxy, "/ui/api/overview", Some(key)).await;
    assert_eq!(overview["totals"]["requests"], 1, "{overview}");
}

#[tokio::test]
async fn a_reused_request_id_never_shows_another_keys_sub_calls() {
    let proxy = demo().await;
    let mut keys = Vec::new();
    for alias in ["alice-key", "bob-key"] {
        let made = proxy
            .generate_key(MASTER_KEY, json!({"key_alias": alias}))
            .await;
        keys.push(made["key"].as_str().unwrap().to_owned());
    }
    for (key, model) in keys.iter().zip(["demo-council", "demo-moa"]) {
        let r = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-request-id", "shared-id-1")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "q"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Each run's record first, so the second is the newest.
        request_page(&proxy, "shared-id-1", key).await;
    }
    for (key, alias) in keys.iter().zip(["alice-key", "bob-key"]) {
        let page = request_page(&proxy, "shared-id-1", key).await;
        let calls = page["calls"].as_array().unwrap();
        assert!(!calls.is_empty(), "{page}");
        for call in calls {
            assert_eq!(call["key_alias"], alias, "{call}");
        }
    }
}

#[tokio::test]
async fn filters_narrow_the_live_table_and_meaningless_values_are_refused() {
    let proxy = demo().await;
    let (_, fast) = ask(&proxy, MASTER_KEY, "demo-fast").await;
    let (status, missing) = ask(&proxy, MASTER_KEY, "no-such-model").await;
    assert_eq!(status, 404);
    request_page(&proxy, &fast, MASTER_KEY).await;
    request_page(&proxy, &missing, MASTER_KEY).await;
    let ids = |body: &Value| -> Vec<String> {
        body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, errors) = get(&proxy, "/ui/api/requests?status=error", Some(MASTER_KEY)).await;
    assert_eq!(ids(&errors), std::slice::from_ref(&missing));
    let (_, by_model) = get(&proxy, "/ui/api/requests?model=demo-fast", Some(MASTER_KEY)).await;
    assert_eq!(ids(&by_model), std::slice::from_ref(&fast));
    let (_, exact) = get(
        &proxy,
        "/ui/api/requests?status=404&key=master",
        Some(MASTER_KEY),
    )
    .await;
    assert_eq!(ids(&exact), [missing]);
    let (_, future) = get(
        &proxy,
        "/ui/api/requests?since=99999999999",
        Some(MASTER_KEY),
    )
    .await;
    assert!(ids(&future).is_empty());
    for (query, param) in [
        ("status=sometimes", "status"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("since=yesterday", "since"),
        // Past any time (and past what a duration holds): refused, not a crash.
        ("since=1e19", "since"),
        ("since=1e300", "since"),
    ] {
        let (status, body) = get(
            &proxy,
            &format!("/ui/api/requests?{query}"),
            Some(MASTER_KEY),
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
    }
    let (status, body) = get(&proxy, "/ui/api/overview?window=2h", Some(MASTER_KEY)).await;
    assert_eq!((status, &body["error"]["param"]), (400, &json!("window")));
}

#[tokio::test]
async fn a_council_request_keeps_its_trace_with_timings_and_its_member_calls() {
    let proxy = demo().await;
    let (status, id) = ask(&proxy, MASTER_KEY, "demo-council").await;
    assert_eq!(status, 200);
    let page = request_page(&proxy, &id, MASTER_KEY).await;
    assert_eq!(page["request"]["composite"], true);
    assert_eq!(page["request"]["profile"], "council_demo");
    let trace = page["trace"]
        .as_array()
        .expect("a composite request has a trace");
    assert_eq!(trace[0]["step"], "strategy");
    let calls: Vec<&Value> = trace.iter().filter(|n| n["step"] == "llm_call").collect();
    let models: Vec<&str> = calls.iter().map(|n| n["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        [
            "demo-proposer-a",
            "demo-proposer-b",
            "demo-reviewer-a",
            "demo-reviewer-b",
            "demo-chairman"
        ]
    );
    // The two council members were asked at once: their spans overlap.
    let span = |n: &Value| {
        let start = n["start_ms"].as_f64().unwrap();
        (start, start + n["duration_ms"].as_f64().unwrap())
    };
    let (a, b) = (span(calls[0]), span(calls[1]));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "stage 1's calls did not overlap: {a:?} {b:?}"
    );
    // The chairman starts after the reviews end.
    assert!(span(calls[4]).0 >= span(calls[3]).1 - 1.0);
    // The ranking table survives whole in its stage event.
    assert!(
        trace.iter().any(|n| n["preview"]
            .as_str()
            .is_some_and(|p| p.contains("| place | response | member | mean rank |"))),
        "{trace:?}"
    );
    // Every member call is in the request's sub-calls too, with its status.
    let sub_calls = page["calls"].as_array().unwrap();
    assert_eq!(sub_calls.len(), 5, "{sub_calls:?}");
    assert!(
        sub_calls
            .iter()
            .all(|c| c["status"] == 200 && c["parent_id"] == json!(id))
    );
    // Sub-calls are not rows of their own in the live table.
    let (_, listed) = get(&proxy, "/ui/api/requests", Some(MASTER_KEY)).await;
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_rescued_by_a_fallback_lists_every_attempt() {
    let proxy = demo().await;
    let (status, id) = ask(&proxy, MASTER_KEY, "demo-flaky").await;
    assert_eq!(status, 200);
    let page = request_page(&proxy, &id, MASTER_KEY).await;
    let attempts = page["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    let first = &attempts[0];
    assert_eq!(
        (&first["model_group"], &first["status"]),
        (&json!("demo-flaky"), &json!(503))
    );
    let last = attempts.last().unwrap();
    assert_eq!(
        (&last["model_group"], &last["status"]),
        (&json!("demo-fast"), &json!(200))
    );
    assert_eq!(page["request"]["fallback"], "demo-fast");
    assert_eq!(page["request"]["attempts"], json!(attempts.len()));
    // Request bodies are kept only while request logs are on.
    assert_eq!(page["request_body"], Value::Null);
}

#[tokio::test]
async fn the_overview_counts_requests_errors_and_tokens_in_its_window() {
    let proxy = demo().await;
    for _ in 0..3 {
        ask(&proxy, MASTER_KEY, "demo-fast").await;
    }
    let (_, last) = ask(&proxy, MASTER_KEY, "no-such-model").await;
    request_page(&proxy, &last, MASTER_KEY).await;
    let (status, hour) = get(&proxy, "/ui/api/overview?window=1h", Some(MASTER_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(hour["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(hour["bucket_seconds"], 60);
    let totals = &hour["totals"];
    assert_eq!(
        (&totals["requests"], &totals["errors"]),
        (&json!(4), &json!(1)),
        "{totals}"
    );
    assert_eq!(totals["error_rate"], 0.25);
    assert!(totals["prompt_tokens"].as_u64().unwrap() > 0, "{totals}");
    assert!(totals["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(totals["rps"].as_f64().unwrap() > 0.0);
    let counted: u64 = hour["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 4);
    let (_, day) = get(&proxy, "/ui/api/overview?window=1d", Some(MASTER_KEY)).await;
    assert_eq!(
        (
            day["buckets"].as_array().unwrap().len(),
            &day["totals"]["requests"]
        ),
        (96, &json!(4))
    );
}

/// The models page as `key` reads it once demo-flaky has failed past its
/// allowed_fails (3) and cooled down, with the demo-flaky group.
async fn after_flaky_failures(proxy: &Proxy, key: &str) -> (Value, Value) {
    for _ in 0..4 {
        ask(proxy, MASTER_KEY, "demo-flaky").await;
    }
    let (status, models) = get(proxy, "/ui/api/models", Some(key)).await;
    assert_eq!(status, 200, "{models}");
    let flaky = models["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "demo-flaky")
        .cloned()
        .expect("the demo-flaky group");
    (models, flaky)
}

#[tokio::test]
async fn the_models_page_shows_a_cooling_deployment_and_the_profiles() {
    let proxy = demo().await;
    let (models, flaky) = after_flaky_failures(&proxy, MASTER_KEY).await;
    let deployment = &flaky["deployments"][0];
    assert_eq!(deployment["state"], "cooling", "{deployment}");
    assert!(deployment["cooling_until"].as_f64().unwrap() > 0.0);
    assert!(
        deployment["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("flaky"),
        "{deployment}"
    );
    let fast = models["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "demo-fast")
        .unwrap();
    assert_eq!(fast["deployments"][0]["state"], "healthy");
    let council = models["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "council_demo")
        .expect("the council profile");
    assert_eq!(
        (&council["model_name"], &council["strategy"]),
        (&json!("demo-council"), &json!("council"))
    );
    assert_eq!(council["hash"].as_str().unwrap().len(), 64);
    assert_eq!(models["can_reload"], true);
}

#[tokio::test]
async fn a_key_that_is_no_admins_sees_that_an_upstream_failed_but_not_its_text() {
    let proxy = demo().await;
    let made = proxy
        .generate_key(MASTER_KEY, json!({"key_alias": "plain-reader"}))
        .await;
    let key = made["key"].as_str().unwrap();
    let (_, flaky) = after_flaky_failures(&proxy, key).await;
    let error = &flaky["deployments"][0]["last_error"];
    assert!(error["at"].as_f64().is_some(), "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains("flaky") && message.contains("hidden"),
        "{message}"
    );
    let (status, health) = get(&proxy, "/health?model=demo-flaky", Some(key)).await;
    assert_eq!(status, 200, "{health}");
    let message = health["deployments"][0]["last_error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("hidden"), "{message}");
    let (_, health) = get(&proxy, "/health?model=demo-flaky", Some(MASTER_KEY)).await;
    let message = health["deployments"][0]["last_error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("flaky"), "{message}");
}

#[tokio::test]
async fn ui_false_turns_the_dashboard_off() {
    let yaml = format!("{DEMO}\n  ui: false\n");
    let proxy = Proxy::start(&yaml).await;
    for path in ["/ui/", "/ui/api/session", "/ui/api/requests"] {
        let (status, body) = get(&proxy, path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // The model routes are untouched.
    let (status, _) = ask(&proxy, "anything", "demo-fast").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_from_before_a_restart_come_back_from_the_spend_logs() {
    let dir = conclave_e2e::proxy::TempDir::new();
    let database = format!("sqlite://{}", dir.path().join("keys.db").display());
    let yaml = format!("{DEMO}\n  database_url: {database}\n");
    let proxy = Proxy::start_with(&yaml, &[("CONCLAVE_MASTER_KEY", MASTER_KEY)], &[]).await;
    let (_, first) = ask(&proxy, MASTER_KEY, "demo-fast").await;
    let (_, council) = ask(&proxy, MASTER_KEY, "demo-council").await;
    request_page(&proxy, &council, MASTER_KEY).await;
    // A graceful stop writes the queued spend rows.
    proxy.signal("TERM");
    let mut proxy = proxy;
    proxy
        .wait(Duration::from_secs(10))
        .await
        .expect("conclave stopped");

    let proxy = Proxy::start_with(&yaml, &[("CONCLAVE_MASTER_KEY", MASTER_KEY)], &[]).await;
    let (_, fresh) = ask(&proxy, MASTER_KEY, "demo-fast").await;
    request_page(&proxy, &fresh, MASTER_KEY).await;
    let (_, listed) = get(&proxy, "/ui/api/requests", Some(MASTER_KEY)).await;
    let rows: Vec<(&str, &str)> = listed["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    // Newest first; the composite's sub-calls are not rows of their own.
    assert_eq!(
        rows,
        [
            (fresh.as_str(), "memory"),
            (council.as_str(), "spend_log"),
            (first.as_str(), "spend_log")
        ]
    );
    let (_, only_composite) = get(
        &proxy,
        "/ui/api/requests?model=demo-council",
        Some(MASTER_KEY),
    )
    .await;
    assert_eq!(only_composite["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn with_request_logs_on_a_request_page_shows_the_body_without_credentials() {
    let dir = conclave_e2e::proxy::TempDir::new();
    let yaml = format!(
        "{DEMO}\n  request_log_dir: {}\n",
        dir.path().join("logs").display()
    );
    let proxy = Proxy::start_with(&yaml, &[("CONCLAVE_MASTER_KEY", MASTER_KEY)], &[]).await;
    let response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({
            "model": "demo-fast",
            "api_key": "sk-client-secret-123",
            "messages": [{"role": "user", "content": "a logged question"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-conclave-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let page = request_page(&proxy, &id, MASTER_KEY).await;
    let body = page["request_body"].as_str().expect("the body is kept");
    assert!(body.contains("a logged question"), "{body}");
    assert!(!body.contains("sk-client-secret-123"), "{body}");
    assert_eq!(page["request_body_truncated"], false);
    let (_, session) = get(&proxy, "/ui/api/session", Some(MASTER_KEY)).await;
    assert_eq!(session["features"]["request_logs"], true);
}

#[tokio::test]
async fn a_key_that_is_no_admins_sees_only_its_models_and_nothing_of_the_config() {
    let proxy = demo().await;
    let made = proxy
        .generate_key(
            MASTER_KEY,
            json!({"key_alias": "fast-only", "models": ["demo-fast"]}),
        )
        .await;
    let key = made["key"].as_str().unwrap();
    let (status, mine) = get(&proxy, "/ui/api/models", Some(key)).await;
    assert_eq!(status, 200, "{mine}");
    let names: Vec<&str> = mine["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo-fast"]);
    for field in ["config", "reloads", "last_reload_error", "last_reload"] {
        assert!(mine[field].is_null(), "{field}: {mine}");
    }
    assert_eq!(
        mine["profiles"],
        json!([]),
        "no profile it may not call: {mine}"
    );
    let (_, all) = get(&proxy, "/ui/api/models", Some(MASTER_KEY)).await;
    assert!(all["groups"].as_array().unwrap().len() > 1, "{all}");
    assert!(!all["profiles"].as_array().unwrap().is_empty(), "{all}");
    assert!(all["config"].is_string(), "{all}");
}
