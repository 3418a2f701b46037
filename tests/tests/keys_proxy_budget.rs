//! The whole gateway's budget (`litellm_settings.max_budget`,
//! `budget_duration`), through the real binary: every caller's calls count
//! toward it, the master key's included; once it is spent every model
//! request is refused with `budget_exceeded` before any upstream call; its
//! spend is kept on the reserved user `litellm-proxy-budget`, survives a
//! restart (SQLite file and PostgreSQL), and is counted in memory when
//! there is no key store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::Duration;

use conclave_e2e::proxy::TempDir;
use conclave_e2e::services::postgres_database;
use conclave_e2e::{FakeUpstream, Proxy};
use keys_support::{CALL_COST, MASTER, chat_as, close, code, config, new_key};
use serde_json::{Value, json};

/// A keyed gateway on `gpt-a` whose budget is `max_budget` an hour, with
/// extra `general_settings` lines.
fn budgeted(up: &FakeUpstream, max_budget: f64, general: &str) -> String {
    format!(
        "{}{general}litellm_settings:\n  max_budget: {max_budget}\n  budget_duration: 1h\n",
        config(up, &["gpt-a"], "")
    )
}

/// The reserved user's record once `ready` holds for it (the spend writer
/// batches; the record follows the config every few seconds); the last
/// one read otherwise.
async fn proxy_user(proxy: &Proxy, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let (status, info) = proxy
            .call(
                reqwest::Method::GET,
                "/user/info?user_id=litellm-proxy-budget",
                None,
                Some(MASTER),
            )
            .await;
        assert_eq!(status, 200, "{info}");
        last = info["user_info"].clone();
        if ready(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Whether the record's spend is `spend`.
fn spent(user: &Value, spend: f64) -> bool {
    user["spend"].as_f64().is_some_and(|s| close(s, spend))
}

fn assert_refused_by_the_gateways_budget(status: u16, body: &Value, max_budget: f64) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    assert_eq!(code(body), "proxy_budget_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("litellm_settings.max_budget"), "{message}");
    assert!(
        message.contains(&format!("max_budget ${max_budget:.6}")),
        "{message}"
    );
    assert!(message.contains("resets at"), "{message}");
}

#[tokio::test]
async fn every_callers_calls_count_and_a_spent_budget_refuses_them_all() {
    let up = FakeUpstream::start().await;
    let max_budget = CALL_COST * 1.5;
    let proxy = Proxy::start(&budgeted(&up, max_budget, "")).await;
    let first = new_key(&proxy, json!({})).await;
    let second = new_key(&proxy, json!({})).await;
    assert_eq!(chat_as(&proxy, &first, "gpt-a").await.0, 200);
    // The master key's call counts too, and spends the rest.
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    for key in [second.as_str(), first.as_str(), MASTER] {
        let (status, _, body) = chat_as(&proxy, key, "gpt-a").await;
        assert_refused_by_the_gateways_budget(status, &body, max_budget);
    }
    assert_eq!(up.calls("gpt-a"), 2);
    let user = proxy_user(&proxy, |u| spent(u, 2.0 * CALL_COST)).await;
    assert!(spent(&user, 2.0 * CALL_COST), "{user}");
    assert!(
        close(user["max_budget"].as_f64().unwrap(), max_budget),
        "{user}"
    );
    assert_eq!(user["budget_duration"], "1h", "{user}");
    let (_, global) = proxy
        .call(reqwest::Method::GET, "/global/spend", None, Some(MASTER))
        .await;
    assert!(
        close(global["max_budget"].as_f64().unwrap(), max_budget),
        "{global}"
    );
}

#[tokio::test]
async fn a_streamed_answer_counts_toward_the_gateways_budget() {
    let up = FakeUpstream::start().await;
    let max_budget = CALL_COST / 2.0;
    let proxy = Proxy::start(&budgeted(&up, max_budget, "")).await;
    let streamed = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({
            "model": "gpt-a",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let (status, _, body) = chat_as(&proxy, MASTER, "gpt-a").await;
    assert_refused_by_the_gateways_budget(status, &body, max_budget);
    assert_eq!(up.calls("gpt-a"), 1);
}

/// Spends the budget, stops the gateway, starts it again on the same
/// store: the spend is still there and the first request is refused.
async fn spent_budget_survives_a_restart(database_url: &str) {
    let up = FakeUpstream::start().await;
    let max_budget = CALL_COST * 1.5;
    let yaml = budgeted(
        &up,
        max_budget,
        &format!("  database_url: {database_url}\n"),
    );
    let proxy = Proxy::start(&yaml).await;
    for _ in 0..2 {
        assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    }
    let user = proxy_user(&proxy, |u| spent(u, 2.0 * CALL_COST)).await;
    assert!(spent(&user, 2.0 * CALL_COST), "{user}");
    proxy.stop().await;

    let proxy = Proxy::start(&yaml).await;
    let (status, _, body) = chat_as(&proxy, MASTER, "gpt-a").await;
    assert_refused_by_the_gateways_budget(status, &body, max_budget);
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_spent_budget_survives_a_restart_in_the_sqlite_file() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    spent_budget_survives_a_restart(&url).await;
}

#[tokio::test]
async fn a_spent_budget_survives_a_restart_in_postgres() {
    let Some(url) = postgres_database("proxy_budget_survives_a_restart").await else {
        return;
    };
    spent_budget_survives_a_restart(&url).await;
}

#[tokio::test]
async fn a_raised_budget_admits_requests_again_after_a_reload() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&budgeted(&up, CALL_COST / 2.0, "")).await;
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 400);
    let raised = budgeted(&up, CALL_COST * 10.0, "");
    conclave_e2e::proxy::replace_atomically(&proxy.config_path(), raised.as_bytes());
    let (status, body) = proxy
        .call(reqwest::Method::POST, "/admin/reload", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    // The reserved user follows the config within a few seconds.
    let raised = |u: &Value| {
        u["max_budget"]
            .as_f64()
            .is_some_and(|m| close(m, CALL_COST * 10.0))
    };
    let user = proxy_user(&proxy, raised).await;
    assert!(raised(&user), "{user}");
}

#[tokio::test]
async fn the_reserved_users_spend_may_be_set_but_its_budget_is_the_configs() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&budgeted(&up, CALL_COST / 2.0, "")).await;
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 400);
    let update = |body: Value| {
        proxy.call(
            reqwest::Method::POST,
            "/user/update",
            Some(body),
            Some(MASTER),
        )
    };
    let (status, body) =
        update(json!({"user_id": "litellm-proxy-budget", "max_budget": 100})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "max_budget", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("litellm_settings.max_budget"),
        "{body}"
    );
    let (status, body) = proxy
        .call(
            reqwest::Method::POST,
            "/user/delete",
            Some(json!({"user_ids": ["litellm-proxy-budget"]})),
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Its spend set back to zero gives the gateway its budget back at once.
    let (status, body) = update(json!({"user_id": "litellm-proxy-budget", "spend": 0})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chat_as(&proxy, MASTER, "gpt-a").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_spent_budget_answers_with_the_configured_status() {
    let up = FakeUpstream::start().await;
    let yaml = budgeted(&up, CALL_COST * 10.0, "") + "  budget_exceeded_status_code: 422\n";
    let proxy = Proxy::start(&yaml).await;
    // A key's budget and the gateway's: both answer with the status set.
    let key = new_key(&proxy, json!({"max_budget": CALL_COST / 2.0})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(code(&body), "key_budget_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    let (passed, text) = conclave_e2e::proxy::check_config(
        &(budgeted(&up, 1.0, "") + "  budget_exceeded_status_code: 200\n"),
    )
    .await;
    assert!(!passed, "{text}");
    assert!(
        text.contains("litellm_settings.budget_exceeded_status_code"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_key_store_the_budget_is_counted_in_memory() {
    let up = FakeUpstream::start().await;
    let max_budget = CALL_COST / 2.0;
    let yaml = format!(
        "model_list:\n{}litellm_settings:\n  max_budget: {max_budget}\n  budget_duration: 30d\n",
        keys_support::priced(&up, "gpt-a")
    );
    let proxy = Proxy::start(&yaml).await;
    assert_eq!(chat_as(&proxy, "", "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, "", "gpt-a").await;
    assert_refused_by_the_gateways_budget(status, &body, max_budget);
    assert_eq!(up.calls("gpt-a"), 1);
    assert!(
        proxy.logs().contains("counted in this process's memory"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn a_budget_duration_that_is_not_one_is_refused_at_start_naming_it() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n{}litellm_settings:\n  max_budget: 1\n  budget_duration: fortnightly\n",
        keys_support::priced(&up, "gpt-a")
    );
    let (passed, text) = conclave_e2e::proxy::check_config(&yaml).await;
    assert!(!passed, "{text}");
    assert!(text.contains("litellm_settings.budget_duration"), "{text}");
    assert!(text.contains("fortnightly"), "{text}");
}
