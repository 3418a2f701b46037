//! Virtual keys on the request path, through the real binary: 401 for an
//! unknown, expired or blocked key; 403 for a model the key, its user or
//! its team may not use; 429 with `Retry-After` and `x-ratelimit-*` headers
//! for rpm, tpm, per-model and parallel limits; a spent budget refused with
//! its limit and reset time. Each case counts the upstream calls exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use keys_support::{
    CALL_COST, INPUT_PRICE, MASTER, OUTPUT_PRICE, chat_as, chat_body_as, code, config, header,
    key_info_once, manage, new_key,
};
use serde_json::json;

async fn gateway(up: &FakeUpstream) -> Proxy {
    Proxy::start(&config(up, &["gpt-a", "gpt-b"], "")).await
}

#[tokio::test]
async fn an_unknown_key_is_refused_with_401_before_any_model_is_called() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let (status, _, body) = chat_as(&proxy, "sk-no-such-key-0000", "gpt-a").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), "invalid_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(up.calls("gpt-a"), 0);
    // The master key still works and reaches the model.
    let (status, _, _) = chat_as(&proxy, MASTER, "gpt-a").await;
    assert_eq!(status, 200);
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn every_answer_gives_its_slot_back_whether_refused_looked_up_or_served() {
    let up = FakeUpstream::start().await;
    let mut yaml = config(&up, &["gpt-a"], "");
    yaml.push_str("  global_max_parallel_requests: 1\n");
    let proxy = Proxy::start(&yaml).await;
    let key = new_key(&proxy, json!({})).await;
    // One slot: a request that kept it would leave the next one a 503.
    for round in 0..3 {
        let (status, _, body) = chat_as(&proxy, "", "gpt-a").await;
        assert_eq!(status, 401, "round {round}, no key: {body}");
        let (status, _, body) = chat_as(&proxy, "sk-no-such-key-0000", "gpt-a").await;
        assert_eq!(status, 401, "round {round}, an unknown key: {body}");
        let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
        assert_eq!(status, 200, "round {round}, a virtual key: {body}");
        let (status, _, body) = chat_as(&proxy, MASTER, "gpt-a").await;
        assert_eq!(status, 200, "round {round}, the master key: {body}");
    }
    assert_eq!(up.calls("gpt-a"), 6);
}

#[tokio::test]
async fn an_expired_key_is_refused_naming_its_expiry() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"duration": "1s"})).await;
    let (status, _, _) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), "key_expired");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired at"),
        "{body}"
    );
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn a_blocked_key_is_refused_until_it_is_unblocked() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    manage(&proxy, "/key/block", json!({"key": key})).await;
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), "key_blocked");
    manage(&proxy, "/key/unblock", json!({"key": key})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_model_outside_the_keys_list_is_refused_with_403() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    let (status, _, body) = chat_as(&proxy, &key, "gpt-b").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "key_model_access_denied");
    assert!(body["error"]["message"].as_str().unwrap().contains("gpt-b"));
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (1, 0));
}

#[tokio::test]
async fn a_fallback_outside_the_keys_list_is_refused_with_403() {
    let up = FakeUpstream::start().await;
    up.set("gpt-a", Behavior::status(500, "down"));
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    let body = json!({
        "model": "gpt-a",
        "messages": [{"role": "user", "content": "hi"}],
        "fallbacks": ["gpt-b"],
    });
    let (status, _, answer) = chat_body_as(&proxy, &key, &body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(code(&answer), "key_model_access_denied");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-b") && message.contains("fallbacks"),
        "{message}"
    );
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (0, 0));
}

#[tokio::test]
async fn configured_fallbacks_respect_the_keys_list_when_litellms_switch_is_on() {
    let up = FakeUpstream::start().await;
    up.set("gpt-a", Behavior::status(500, "down"));
    let yaml = |enforce: bool| {
        config(&up, &["gpt-a", "gpt-b", "gpt-c"], "")
            .replace(
                "router_settings:\n",
                "router_settings:\n  fallbacks: [{gpt-a: [gpt-b, gpt-c]}]\n",
            )
            .replace(
                "general_settings:\n",
                &format!("general_settings:\n  enforce_fallback_model_access: {enforce}\n"),
            )
    };
    // Off (LiteLLM's default): the configured fallback answers any key.
    let proxy = Proxy::start(&yaml(false)).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a", "gpt-c"]})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gpt-b");
    drop(proxy);
    // On: gpt-b is skipped for this key, gpt-c (on its list) answers.
    let proxy = Proxy::start(&yaml(true)).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a", "gpt-c"]})).await;
    let calls_b = up.calls("gpt-b");
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gpt-c");
    assert_eq!(up.calls("gpt-b"), calls_b, "never called for this key");
    // With no fallback it may use, the primary's own error.
    let only_a = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    let (status, _, body) = chat_as(&proxy, &only_a, "gpt-a").await;
    assert!(status >= 500, "{status} {body}");
    assert_eq!(up.calls("gpt-b"), calls_b);
    // The master key is not limited by a list.
    let (status, headers, _) = chat_as(&proxy, MASTER, "gpt-a").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-conclave-fallback"), "gpt-b");
}

#[tokio::test]
async fn a_key_limited_to_some_models_sees_only_theirs_in_health_and_info() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    for (path, caller, sees_b) in [
        ("/health", key.as_str(), false),
        ("/info", key.as_str(), false),
        ("/health", MASTER, true),
        ("/info", MASTER, true),
    ] {
        let r = proxy
            .client
            .get(proxy.url(path))
            .bearer_auth(caller)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("gpt-a"), "{path}: {text}");
        assert_eq!(text.contains("gpt-b"), sees_b, "{path}: {text}");
    }
}

#[tokio::test]
async fn a_named_fallbacks_own_model_limits_admit_the_call_too() {
    let up = FakeUpstream::start().await;
    up.set("gpt-a", Behavior::status(500, "down"));
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"model_rpm_limit": {"gpt-b": 1}})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    let body = json!({
        "model": "gpt-a",
        "messages": [{"role": "user", "content": "hi"}],
        "fallbacks": ["gpt-b"],
    });
    let (status, _, answer) = chat_body_as(&proxy, &key, &body).await;
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model gpt-b"),
        "{answer}"
    );
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (0, 1));
}

#[tokio::test]
async fn a_teams_model_list_binds_its_keys_too() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    manage(
        &proxy,
        "/team/new",
        json!({"team_id": "core", "models": ["gpt-b"]}),
    )
    .await;
    let key = new_key(&proxy, json!({"team_id": "core"})).await;
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "team_model_access_denied");
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (0, 1));
}

#[tokio::test]
async fn a_keys_alias_sends_its_name_to_the_model_it_maps_to() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"aliases": {"house-model": "gpt-b"}})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "house-model").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-model-group"), "gpt-b");
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (0, 1));
}

#[tokio::test]
async fn the_request_past_rpm_gets_429_with_retry_after_and_rate_headers() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"rpm_limit": 2})).await;
    for left in ["1", "0"] {
        let (status, headers, _) = chat_as(&proxy, &key, "gpt-a").await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), left);
        assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "2");
    }
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "rpm_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "2");
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn tokens_past_tpm_refuse_the_next_request() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    // One fake answer uses 12 tokens.
    let key = new_key(&proxy, json!({"tpm_limit": 10})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "tpm_limit_exceeded");
    assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), "0");
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), "10");
    assert!(!header(&headers, "retry-after").is_empty());
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn a_per_model_rpm_limits_only_that_model() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"model_rpm_limit": {"gpt-a": 1}})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model gpt-a"),
        "{body}"
    );
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (1, 1));
}

#[tokio::test]
async fn a_teams_rpm_counts_the_requests_of_all_its_keys() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    manage(
        &proxy,
        "/team/new",
        json!({"team_id": "small", "rpm_limit": 1}),
    )
    .await;
    let first = new_key(&proxy, json!({"team_id": "small"})).await;
    let second = new_key(&proxy, json!({"team_id": "small"})).await;
    assert_eq!(chat_as(&proxy, &first, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &second, "gpt-a").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team small"),
        "{body}"
    );
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn requests_past_max_parallel_are_refused_while_the_first_runs() {
    let up = FakeUpstream::start().await;
    up.set(
        "gpt-a",
        Behavior::ok("slow").delayed(Duration::from_millis(600)),
    );
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"max_parallel_requests": 1})).await;
    let (first, second) = tokio::join!(chat_as(&proxy, &key, "gpt-a"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        chat_as(&proxy, &key, "gpt-a").await
    });
    assert_eq!(first.0, 200, "{}", first.2);
    assert_eq!(second.0, 429, "{}", second.2);
    assert_eq!(code(&second.2), "max_parallel_requests_exceeded");
    assert!(!header(&second.1, "retry-after").is_empty());
    assert_eq!(up.calls("gpt-a"), 1);
    // The slot came back when the first answer ended.
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
}

#[tokio::test]
async fn a_spent_budget_refuses_the_next_request_naming_limit_and_reset() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let budget = CALL_COST * 1.5;
    let key = new_key(
        &proxy,
        json!({"max_budget": budget, "budget_duration": "1h"}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded");
    assert_eq!(code(&body), "key_budget_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("max_budget ${budget:.6}")),
        "{message}"
    );
    assert!(message.contains("resets at"), "{message}");
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_spent_budget_admits_requests_again_once_its_period_has_passed() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    // A `2s` period ends on the next even second (periods end on clock
    // boundaries): start just after one, so both calls fall in one period.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_period = u64::try_from(since_epoch.as_millis() % 2000).unwrap();
    tokio::time::sleep(Duration::from_millis(2000 - into_period + 50)).await;
    let key = new_key(
        &proxy,
        json!({"max_budget": CALL_COST / 2.0, "budget_duration": "2s"}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, headers, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    let wait: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_per_model_budget_refuses_only_that_model() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(
        &proxy,
        json!({"model_max_budget": {"gpt-a": CALL_COST / 2.0}}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "model_budget_exceeded");
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (1, 1));
}

/// Runs `sql` on the server of `database_url`, connected to its `postgres`
/// database.
async fn admin_sql(database_url: &str, sql: &str) {
    let (server, _) = database_url.rsplit_once('/').unwrap();
    let out = tokio::process::Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_store_outage_answers_uncached_keys_503_in_bounded_time_and_cached_ones_still_work() {
    let test = "a_store_outage_answers_uncached_keys_503_in_bounded_time";
    let Some(url) = conclave_e2e::services::postgres_database(test).await else {
        return;
    };
    let database = url.rsplit_once('/').unwrap().1.to_owned();
    let up = FakeUpstream::start().await;
    let proxy =
        Proxy::start_with(&config(&up, &["gpt-a"], ""), &[("DATABASE_URL", &url)], &[]).await;
    let cached = new_key(&proxy, json!({})).await;
    assert_eq!(chat_as(&proxy, &cached, "gpt-a").await.0, 200);
    admin_sql(
        &url,
        &format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ),
    )
    .await;
    let started = std::time::Instant::now();
    let (status, headers, body) = chat_as(&proxy, "sk-not-cached-anywhere-1234", "gpt-a").await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(code(&body), "key_store_unavailable");
    assert!(!header(&headers, "retry-after").is_empty());
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // A key the cache holds is served without the store.
    assert_eq!(chat_as(&proxy, &cached, "gpt-a").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 2);
    admin_sql(
        &url,
        &format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"),
    )
    .await;
}

#[tokio::test]
async fn spend_set_back_to_zero_gives_a_spent_key_or_team_its_budget_back() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"max_budget": CALL_COST / 2.0})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "key_budget_exceeded"),
        "{body}"
    );
    let updated = manage(&proxy, "/key/update", json!({"key": key, "spend": 0})).await;
    assert_eq!(updated["spend"], 0.0, "{updated}");
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);

    manage(
        &proxy,
        "/team/new",
        json!({"team_id": "thrifty", "max_budget": CALL_COST / 2.0}),
    )
    .await;
    let member = new_key(&proxy, json!({"team_id": "thrifty"})).await;
    assert_eq!(chat_as(&proxy, &member, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &member, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "team_budget_exceeded"),
        "{body}"
    );
    let updated = manage(
        &proxy,
        "/team/update",
        json!({"team_id": "thrifty", "spend": 0}),
    )
    .await;
    assert_eq!(updated["data"]["spend"], 0.0, "LiteLLM's shape: {updated}");
    assert_eq!(updated["team_id"], "thrifty", "{updated}");
    assert_eq!(chat_as(&proxy, &member, "gpt-a").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 4);
}

#[tokio::test]
async fn a_negative_spend_is_refused_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({})).await;
    let r = proxy
        .client
        .post(proxy.url("/key/update"))
        .bearer_auth(MASTER)
        .json(&json!({"key": key, "spend": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "spend", "{body}");
}

#[tokio::test]
async fn a_per_model_budget_in_litellms_newer_form_is_enforced() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let budget = json!({"gpt-a": {"budget_limit": CALL_COST / 2.0, "time_period": "1d"}});
    let key = new_key(&proxy, json!({"model_max_budget": budget})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (1, 1));
}

#[tokio::test]
async fn a_key_lists_only_the_models_it_may_use() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    let listed = |path: &'static str, who: String, field: &'static str| {
        let proxy = &proxy;
        async move {
            let body: serde_json::Value = proxy
                .client
                .get(proxy.url(path))
                .bearer_auth(who)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut names: Vec<String> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m[field].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(listed("/v1/models", key.clone(), "id").await, ["gpt-a"]);
    assert_eq!(
        listed("/model/info", key.clone(), "model_name").await,
        ["gpt-a"]
    );
    assert_eq!(
        listed("/model_group/info", key, "model_group").await,
        ["gpt-a"]
    );
    assert_eq!(
        listed("/v1/models", MASTER.to_owned(), "id").await,
        ["gpt-a", "gpt-b"]
    );
    // LiteLLM's `?model_group=` narrows the group listing to one group.
    assert_eq!(
        listed(
            "/model_group/info?model_group=gpt-b",
            MASTER.to_owned(),
            "model_group"
        )
        .await,
        ["gpt-b"]
    );
}

#[tokio::test]
async fn a_blocked_team_refuses_its_keys_until_it_is_unblocked() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    manage(&proxy, "/team/new", json!({"team_id": "paused"})).await;
    let key = new_key(&proxy, json!({"team_id": "paused"})).await;
    let blocked = manage(&proxy, "/team/block", json!({"team_id": "paused"})).await;
    assert_eq!(blocked["blocked"], true, "{blocked}");
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 401, "{body}");
    manage(&proxy, "/team/unblock", json!({"team_id": "paused"})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn a_router_alias_counts_as_the_model_it_names_for_access_and_limits() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, &["gpt-a", "gpt-b"], "").replace(
        "router_settings:\n",
        "router_settings:\n  model_group_alias: {alias-a: gpt-a}\n",
    );
    let proxy = Proxy::start(&yaml).await;
    // Access given to the model is access through its alias, and the other way round.
    let to_model = new_key(&proxy, json!({"models": ["gpt-a"]})).await;
    assert_eq!(chat_as(&proxy, &to_model, "alias-a").await.0, 200);
    let to_alias = new_key(&proxy, json!({"models": ["alias-a"]})).await;
    assert_eq!(chat_as(&proxy, &to_alias, "alias-a").await.0, 200);
    assert_eq!(chat_as(&proxy, &to_alias, "gpt-b").await.0, 403);
    // A per-model budget on the model is spent through the alias too.
    let budgeted = new_key(
        &proxy,
        json!({"model_max_budget": {"gpt-a": CALL_COST / 2.0}}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &budgeted, "alias-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &budgeted, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "model_budget_exceeded");
    let (status, _, body) = chat_as(&proxy, &budgeted, "alias-a").await;
    assert_eq!(status, 400, "{body}");
}

/// The key's stored `model_spend`, once `model` holds the spend of the
/// three calls each test makes (or after 10 s).
async fn stored_model_spend(proxy: &Proxy, key: &str, model: &str) -> serde_json::Value {
    let info = key_info_once(proxy, key, |info| {
        info["model_spend"][model]
            .as_f64()
            .is_some_and(|s| s > CALL_COST * 2.5)
    })
    .await;
    info["model_spend"].clone()
}

#[tokio::test]
async fn per_model_spend_is_kept_under_the_model_an_alias_names() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, &["gpt-a", "gpt-b"], "").replace(
        "router_settings:\n",
        "router_settings:\n  model_group_alias: {alias-a: gpt-a}\n",
    );
    let proxy = Proxy::start(&yaml).await;
    let key = new_key(
        &proxy,
        json!({"aliases": {"mine": "gpt-a"}, "model_max_budget": {"gpt-a": CALL_COST * 10.0}}),
    )
    .await;
    for asked in ["mine", "alias-a", "gpt-a"] {
        assert_eq!(chat_as(&proxy, &key, asked).await.0, 200, "{asked}");
    }
    // The store's record, which a restart or another instance starts from.
    let spend = stored_model_spend(&proxy, &key, "gpt-a").await;
    let keys: Vec<&String> = spend.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["gpt-a"], "{spend}");
}

#[tokio::test]
async fn a_key_regenerated_right_after_spending_keeps_its_spend() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"max_budget": CALL_COST * 1.5})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    // At once: the call's spend row may still be waiting for the writer.
    let renewed = manage(&proxy, "/key/regenerate", json!({"key": key})).await;
    let renewed = renewed["key"].as_str().unwrap().to_owned();
    assert_eq!(
        chat_as(&proxy, &renewed, "gpt-a").await.0,
        200,
        "under budget"
    );
    let (status, _, body) = chat_as(&proxy, &renewed, "gpt-a").await;
    assert_eq!(status, 400, "the first call's spend still counts: {body}");
    assert_eq!(code(&body), "key_budget_exceeded");
}

/// A new value is no way around a rate limit: it is counted on from what
/// the old one used of the minute, its own limit and its per-model ones.
#[tokio::test]
async fn a_regenerated_key_keeps_what_it_used_of_its_rate_window() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(
        &proxy,
        json!({"rpm_limit": 3, "model_rpm_limit": {"gpt-b": 1}}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert_eq!(chat_as(&proxy, &key, "gpt-b").await.0, 200);
    let renewed = manage(&proxy, "/key/regenerate", json!({"key": key})).await;
    let renewed = renewed["key"].as_str().unwrap().to_owned();
    let (status, _, body) = chat_as(&proxy, &renewed, "gpt-b").await;
    assert_eq!(
        status, 429,
        "gpt-b's one request of the minute is used: {body}"
    );
    assert_eq!(chat_as(&proxy, &renewed, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &renewed, "gpt-a").await;
    assert_eq!(
        status, 429,
        "three of the minute's requests are used: {body}"
    );
    assert_eq!(code(&body), "rpm_limit_exceeded");
    assert_eq!((up.calls("gpt-a"), up.calls("gpt-b")), (2, 1));
}

#[tokio::test]
async fn a_user_deleted_and_made_again_starts_with_nothing_spent() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let make = || async {
        manage(
            &proxy,
            "/user/new",
            json!({"user_id": "again", "max_budget": CALL_COST / 2.0}),
        )
        .await;
        new_key(&proxy, json!({"user_id": "again"})).await
    };
    let first = make().await;
    assert_eq!(chat_as(&proxy, &first, "gpt-a").await.0, 200);
    assert_eq!(
        chat_as(&proxy, &first, "gpt-a").await.0,
        400,
        "the budget is spent"
    );
    manage(&proxy, "/user/delete", json!({"user_ids": ["again"]})).await;
    let second = make().await;
    let (status, _, body) = chat_as(&proxy, &second, "gpt-a").await;
    assert_eq!(status, 200, "a new user with the old id: {body}");
}

#[tokio::test]
async fn a_users_budget_holds_when_its_keys_take_turns() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "turns", "max_budget": CALL_COST * 2.5}),
    )
    .await;
    let first = new_key(&proxy, json!({"user_id": "turns"})).await;
    let second = new_key(&proxy, json!({"user_id": "turns"})).await;
    assert_eq!(chat_as(&proxy, &first, "gpt-a").await.0, 200);
    // The second key is first read once the first one's spend is stored:
    // it holds a newer copy of the user's record than the first key does.
    keys_support::key_spend(&proxy, &first, CALL_COST).await;
    let mut served = 1;
    for key in [&second, &first].repeat(4) {
        let (status, _, body) = chat_as(&proxy, key, "gpt-a").await;
        match status {
            200 => served += 1,
            400 => assert_eq!(code(&body), "user_budget_exceeded", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(served, 3, "calls at 0, 1 and 2 calls' cost of a 2.5 budget");
}

/// As in LiteLLM, a team's key is held to its team's budget, not to its
/// user's personal one, whose spend it still counts toward: the user's own
/// key is then refused.
#[tokio::test]
async fn a_team_key_is_held_to_its_teams_budget_not_its_users() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "member", "max_budget": CALL_COST / 2.0}),
    )
    .await;
    manage(
        &proxy,
        "/team/new",
        json!({"team_id": "roomy", "max_budget": 100.0}),
    )
    .await;
    let team_key = new_key(&proxy, json!({"user_id": "member", "team_id": "roomy"})).await;
    for _ in 0..3 {
        let (status, _, body) = chat_as(&proxy, &team_key, "gpt-a").await;
        assert_eq!(status, 200, "{body}");
    }
    keys_support::key_spend(&proxy, &team_key, CALL_COST * 3.0).await;
    let own_key = new_key(&proxy, json!({"user_id": "member"})).await;
    let (status, _, body) = chat_as(&proxy, &own_key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "user_budget_exceeded");
}

/// Names a wildcard serves are the client's to vary: a key's per-model
/// spend keeps one entry for the wildcard's group, not one per name, unless
/// a limit names the model; a limit named by the pattern is refused.
#[tokio::test]
async fn per_model_spend_of_wildcard_names_is_kept_under_the_group() {
    let up = FakeUpstream::start().await;
    let wildcard = format!(
        "  - model_name: \"wild/*\"\n    litellm_params:\n      model: openai/*\n      api_base: {}\n      api_key: sk-up\n    model_info:\n      input_cost_per_token: {INPUT_PRICE}\n      output_cost_per_token: {OUTPUT_PRICE}\n",
        up.api_base("wild")
    );
    let proxy = Proxy::start(&config(&up, &["gpt-a"], &wildcard)).await;
    let refused: serde_json::Value = proxy
        .client
        .post(proxy.url("/key/generate"))
        .bearer_auth(MASTER)
        .json(&json!({"model_rpm_limit": {"wild/*": 2}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused["error"]["param"], "model_rpm_limit.wild/*",
        "{refused}"
    );
    let key = new_key(
        &proxy,
        json!({"model_max_budget": {"wild/m0": CALL_COST * 100.0}}),
    )
    .await;
    for i in 0..4 {
        let (status, _, body) = chat_as(&proxy, &key, &format!("wild/m{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let spend = stored_model_spend(&proxy, &key, "wild/*").await;
    let names: Vec<&String> = spend.as_object().unwrap().keys().collect();
    assert_eq!(names, ["wild/*", "wild/m0"], "{spend}");
}
