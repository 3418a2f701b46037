//! Router health across config versions, through the real binary: a cooled
//! deployment stays cooled after a reload (SIGHUP, `POST /admin/reload`) or
//! a runtime model change that leaves it as it was, while a deployment whose
//! `api_base` changed comes back healthy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, replace_atomically};
use routing_support::{ask, config, deployment, model_id};
use serde_json::{Value, json};

/// Group `g` with `a` (order 1, served at `a_at` on the fake) and `b`
/// (order 2), plus `extra` groups; cooldowns last a minute, no retries
/// beyond the one that moves to `b`.
fn version(up: &FakeUpstream, a_at: &str, extra: &[&str]) -> String {
    let a =
        deployment(up, "g", "a", &[("order", "1")]).replace(&up.api_base("a"), &up.api_base(a_at));
    let mut deployments = vec![a, deployment(up, "g", "b", &[("order", "2")])];
    deployments.extend(extra.iter().map(|name| deployment(up, name, name, &[])));
    format!(
        "{}general_settings:\n  admin_without_key_on_loopback: true\n",
        config(&deployments, "num_retries: 1\ncooldown_time: 60")
    )
}

/// The ids `/health` lists as cooling down.
async fn cooling(proxy: &Proxy) -> Vec<String> {
    let health = proxy.get_json("/health").await;
    health["unhealthy_deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn reloads_ok(proxy: &Proxy) -> u64 {
    proxy.get_json("/admin/status").await["reloads"]["ok"]
        .as_u64()
        .unwrap()
}

/// Sends SIGHUP and waits (at most 30 s) for the reload it starts to succeed.
async fn sighup_reload(proxy: &Proxy) {
    let before = reloads_ok(proxy).await;
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads_ok(proxy).await == before {
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_reload(proxy: &Proxy) {
    let r = proxy.post("/admin/reload", &json!({})).await;
    assert_eq!(r.status(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["result"], "ok", "{outcome}");
}

/// A 429 in a group of two cools `a` at once; the request moves to `b`.
async fn cool_a(up: &FakeUpstream, proxy: &Proxy) {
    up.push("a", Behavior::status(429, "slow down"));
    let (status, headers, body) = ask(proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(cooling(proxy).await, ["a"]);
}

#[tokio::test]
async fn a_cooled_deployment_stays_cooled_across_reloads_that_leave_it_unchanged() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&version(&up, "a", &[])).await;
    cool_a(&up, &proxy).await;

    replace_atomically(&proxy.config_path(), version(&up, "a", &["x"]).as_bytes());
    sighup_reload(&proxy).await;
    let (status, _, body) = ask(&proxy, "x").await;
    assert_eq!(status, 200, "the reload added x: {body}");
    for _ in 0..3 {
        let (status, headers, body) = ask(&proxy, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "b", "a is still cooling after SIGHUP");
    }

    replace_atomically(
        &proxy.config_path(),
        version(&up, "a", &["x", "y"]).as_bytes(),
    );
    admin_reload(&proxy).await;
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        model_id(&headers),
        "b",
        "a is still cooling after /admin/reload"
    );
    assert_eq!(up.calls("a"), 1);
    assert_eq!(cooling(&proxy).await, ["a"]);
}

#[tokio::test]
async fn a_cooled_deployment_stays_cooled_when_a_runtime_model_is_added() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&version(&up, "a", &[])).await;
    cool_a(&up, &proxy).await;

    let r = proxy
        .post(
            "/admin/models",
            &json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": "sk-rt"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (status, _, body) = ask(&proxy, "rt").await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(up.calls("a"), 1);
}

#[tokio::test]
async fn a_deployment_whose_api_base_changed_starts_healthy() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&version(&up, "a", &[])).await;
    cool_a(&up, &proxy).await;

    replace_atomically(&proxy.config_path(), version(&up, "a2", &[]).as_bytes());
    admin_reload(&proxy).await;
    assert!(cooling(&proxy).await.is_empty());
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        model_id(&headers),
        "a",
        "same id, new api_base: healthy again"
    );
    assert_eq!(up.calls("a2"), 1);
    assert_eq!(up.calls("a"), 1);
}
