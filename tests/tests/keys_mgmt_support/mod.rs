//! What the management and storage tests share: a gateway with a master key
//! and a key store (SQLite beside the config unless a URL is given), one
//! call helper for the management API, and the core management scenario
//! that runs against both store backends.
// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use conclave_e2e::{FakeUpstream, Launch, Proxy, deployments};
use serde_json::{Value, json};

pub const MASTER: &str = "sk-keys-master-0000";

/// A config with `echo` and `other` on the fake, the master key and extra
/// `general_settings` lines (e.g. `database_url: ...`).
pub fn config(up: &FakeUpstream, general: &[&str]) -> String {
    let mut yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\ngeneral_settings:\n  master_key: {MASTER}\n",
        deployments(up, &[("echo", &[]), ("other", &[])])
    );
    for line in general {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// Starts a gateway on `yaml` with `DATABASE_URL` empty (so the config decides).
pub async fn start(yaml: &str) -> Proxy {
    Proxy::launch(
        yaml,
        Launch {
            env: vec![("DATABASE_URL".into(), String::new())],
            ..Launch::default()
        },
    )
    .await
}

/// POST with the master key.
pub async fn post(proxy: &Proxy, path: &str, body: Value) -> (u16, Value) {
    proxy
        .call(reqwest::Method::POST, path, Some(body), Some(MASTER))
        .await
}

/// GET with the master key.
pub async fn get(proxy: &Proxy, path: &str) -> (u16, Value) {
    proxy
        .call(reqwest::Method::GET, path, None, Some(MASTER))
        .await
}

/// `/key/generate` with the master key; the new key's JSON (asserted 200).
pub async fn generate(proxy: &Proxy, body: Value) -> Value {
    let (status, key) = post(proxy, "/key/generate", body).await;
    assert_eq!(status, 200, "{key}");
    key
}

/// The full key of a `/key/generate` answer.
pub fn key_of(generated: &Value) -> String {
    generated["key"].as_str().unwrap().to_owned()
}

/// The lowercase hex SHA-256 of `text`.
pub fn sha256(text: &str) -> String {
    conclave::digest::sha256_hex(text.as_bytes())
}

/// The management scenario every backend must pass: generate, read, update,
/// block, regenerate, list and delete keys; users and teams with members;
/// an empty spend log. Returns the surviving key's value.
pub async fn core_suite(proxy: &Proxy) -> String {
    let team = post(
        proxy,
        "/team/new",
        json!({"team_id": "core-team", "team_alias": "Core", "max_budget": 50.0}),
    )
    .await;
    assert_eq!(team.0, 200, "{}", team.1);
    let user = post(
        proxy,
        "/user/new",
        json!({"user_id": "core-user", "user_email": "c@example.com", "auto_create_key": false}),
    )
    .await;
    assert_eq!(user.0, 200, "{}", user.1);
    assert!(user.1.get("key").is_none(), "{}", user.1);

    let made = generate(
        proxy,
        json!({
            "key_alias": "core-key", "user_id": "core-user", "team_id": "core-team",
            "models": ["echo"], "max_budget": 10.0, "budget_duration": "30d",
            "rpm_limit": 7, "tpm_limit": 700, "max_parallel_requests": 2,
            "model_rpm_limit": {"echo": 3}, "model_tpm_limit": {"echo": 300},
            "model_max_budget": {"echo": 1.5},
            "metadata": {"owner": "core"}, "tags": ["core"], "duration": "1h",
            "aliases": {"gpt-4": "echo"}
        }),
    )
    .await;
    let key = key_of(&made);
    assert!(key.starts_with("sk-") && key.len() == 46, "{key}");
    assert_eq!(made["token"], sha256(&key));
    assert_eq!(made["key_name"], format!("sk-...{}", &key[key.len() - 4..]));
    assert!(made["expires"].as_str().is_some());
    assert!(made["budget_reset_at"].as_str().is_some());
    assert_eq!(made["model_max_budget"]["echo"], 1.5);

    let (status, info) = get(proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["info"]["key_alias"], "core-key");
    assert_eq!(info["info"]["team_id"], "core-team");
    assert_eq!(info["info"]["rpm_limit"], 7);
    assert_eq!(info["info"]["aliases"]["gpt-4"], "echo");
    assert_eq!(info["info"]["metadata"]["owner"], "core");
    assert!(
        !info["info"].to_string().contains(&key[3..]),
        "key/info must not show the key"
    );

    let (status, updated) = post(
        proxy,
        "/key/update",
        json!({"key": key, "rpm_limit": 9, "max_budget": null, "tags": ["x"]}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["rpm_limit"], 9);
    assert!(updated["max_budget"].is_null());
    assert_eq!(updated["tpm_limit"], 700, "fields not named stay");

    let (status, blocked) = post(proxy, "/key/block", json!({"key": key})).await;
    assert_eq!((status, &blocked["blocked"]), (200, &json!(true)));
    let (status, _) = proxy
        .call(reqwest::Method::GET, "/key/info", None, Some(&key))
        .await;
    assert_eq!(status, 401, "a blocked key is refused");
    let (status, unblocked) = post(proxy, "/key/unblock", json!({"key": key})).await;
    assert_eq!((status, &unblocked["blocked"]), (200, &json!(false)));
    let (status, own) = proxy
        .call(reqwest::Method::GET, "/key/info", None, Some(&key))
        .await;
    assert_eq!(status, 200, "{own}");

    let (status, rotated) = post(proxy, "/key/regenerate", json!({"key": key})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = key_of(&rotated);
    assert_ne!(new_key, key);
    assert_eq!(
        rotated["key_alias"], "core-key",
        "settings survive regeneration"
    );
    let (status, _) = proxy
        .call(reqwest::Method::GET, "/key/info", None, Some(&key))
        .await;
    assert_eq!(status, 401, "the old value stops working");

    let spare =
        key_of(&generate(proxy, json!({"key_alias": "spare", "team_id": "core-team"})).await);
    let (status, listed) = get(proxy, "/key/list?team_id=core-team").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total_count"], 2);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .contains(&json!(sha256(&spare)))
    );

    let (status, deleted) = post(proxy, "/key/delete", json!({"key_aliases": ["spare"]})).await;
    assert_eq!((status, deleted), (200, json!({"deleted_keys": ["spare"]})));
    let (status, _) = get(proxy, &format!("/key/info?key={spare}")).await;
    assert_eq!(status, 404);

    let (status, added) = post(
        proxy,
        "/team/member_add",
        json!({"team_id": "core-team", "member": {"user_id": "core-user", "role": "user"}}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["members"], json!(["core-user"]));
    let (status, uinfo) = get(proxy, "/user/info?user_id=core-user").await;
    assert_eq!(status, 200, "{uinfo}");
    assert_eq!(uinfo["user_info"]["teams"], json!(["core-team"]));
    assert_eq!(uinfo["keys"].as_array().unwrap().len(), 1);
    let (status, logs) = get(proxy, "/spend/logs?user_id=nobody").await;
    assert_eq!((status, logs), (200, json!([])));
    new_key
}

/// USD per prompt and per completion token of the priced `paid` deployment.
pub const PRICE_IN: f64 = 0.001;
pub const PRICE_OUT: f64 = 0.002;

/// [`config`] plus a deployment `paid` on the fake with per-token prices.
pub fn priced_config(up: &FakeUpstream, general: &[&str]) -> String {
    let paid = format!(
        "{}    model_info:\n      input_cost_per_token: {PRICE_IN}\n      output_cost_per_token: {PRICE_OUT}\n",
        conclave_e2e::deployment("paid", "openai/paid-up", &up.api_base("paid"), &[])
    );
    config(up, general).replacen("model_list:\n", &format!("model_list:\n{paid}"), 1)
}

/// A chat completion with `key`: status and body.
pub async fn chat_as(proxy: &Proxy, key: &str, model: &str) -> (u16, Value) {
    let response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&conclave_e2e::chat_body(model, "hello"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `check` every 50 ms until it holds or `limit` passes; whether it held.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The key's spend as `/key/info` shows it.
pub async fn spend_of(proxy: &Proxy, key: &str) -> f64 {
    let (status, info) = get(proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(status, 200, "{info}");
    info["info"]["spend"].as_f64().unwrap()
}

/// Sends SIGTERM and waits (at most 15 s) until the process has exited.
pub async fn terminate(proxy: Proxy) {
    let pid = proxy.pid().expect("running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let exited = eventually(std::time::Duration::from_secs(15), || {
        let pid = pid.clone();
        async move {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|s| {
                    s.lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'))
                })
                .unwrap_or(true)
        }
    })
    .await;
    assert!(exited, "conclave did not stop within 15 s of SIGTERM");
    proxy.stop().await;
}
