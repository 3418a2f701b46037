//! Tenancy of the response cache: with `scope: team` a team's cached answer
//! is never returned to another team, while keys of one team share entries;
//! a hit costs nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use keys_support::{chat_as, config, header, manage, new_key};
use serde_json::json;

const GROUP: &str = "gpt-tenants";

async fn start(up: &FakeUpstream, scope: &str) -> Proxy {
    up.set(GROUP, Behavior::ok("an answer for one tenant"));
    let mut yaml = config(up, &[GROUP], "");
    yaml.push_str(&format!(
        "litellm_settings:\n  cache: true\n  cache_params:\n    scope: {scope}\n"
    ));
    Proxy::start(&yaml).await
}

async fn team_key(proxy: &Proxy, alias: &str) -> (String, String) {
    let team = manage(proxy, "/team/new", json!({"team_alias": alias})).await;
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    let key = new_key(proxy, json!({"team_id": team_id})).await;
    (team_id, key)
}

#[tokio::test]
async fn with_scope_team_one_teams_answer_is_never_returned_to_another() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "team").await;
    let (team_a, a1) = team_key(&proxy, "alpha").await;
    let a2 = new_key(&proxy, json!({"team_id": team_a})).await;
    let (_, b1) = team_key(&proxy, "beta").await;

    let (status, headers, _) = chat_as(&proxy, &a1, GROUP).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-conclave-cache"), "stored");
    let key_a = header(&headers, "x-conclave-cache-key").to_owned();

    let (_, headers, _) = chat_as(&proxy, &a2, GROUP).await;
    assert_eq!(header(&headers, "x-conclave-cache"), "hit", "same team");
    assert_eq!(header(&headers, "x-conclave-cache-key"), key_a);
    assert_eq!(up.calls(GROUP), 1);

    let (status, headers, _) = chat_as(&proxy, &b1, GROUP).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "x-conclave-cache"),
        "stored",
        "team b asks itself"
    );
    assert_ne!(header(&headers, "x-conclave-cache-key"), key_a);
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn with_scope_key_even_keys_of_one_team_keep_their_own_entries() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "key").await;
    let (team, k1) = team_key(&proxy, "gamma").await;
    let k2 = new_key(&proxy, json!({"team_id": team})).await;
    chat_as(&proxy, &k1, GROUP).await;
    let (_, headers, _) = chat_as(&proxy, &k2, GROUP).await;
    assert_eq!(header(&headers, "x-conclave-cache"), "stored");
    let (_, headers, _) = chat_as(&proxy, &k2, GROUP).await;
    assert_eq!(header(&headers, "x-conclave-cache"), "hit");
    assert_eq!(up.calls(GROUP), 2);
}

#[tokio::test]
async fn a_cache_hit_costs_nothing() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "global").await;
    let (_, key) = team_key(&proxy, "delta").await;
    let (_, headers, _) = chat_as(&proxy, &key, GROUP).await;
    let paid: f64 = header(&headers, "x-conclave-response-cost")
        .parse()
        .unwrap_or(f64::NAN);
    assert!(paid > 0.0, "the miss is priced: {headers:?}");
    let (_, headers, _) = chat_as(&proxy, &key, GROUP).await;
    assert_eq!(header(&headers, "x-conclave-cache"), "hit");
    assert_eq!(
        header(&headers, "x-conclave-response-cost"),
        "",
        "a hit is not priced"
    );
    // Another miss after the hit: the spend is two misses, settled.
    let mut other = json!({"model": GROUP, "messages": [{"role": "user", "content": "another"}]});
    other["temperature"] = json!(0.5);
    let (_, headers, _) = keys_support::chat_body_as(&proxy, &key, &other).await;
    assert_eq!(header(&headers, "x-conclave-cache"), "stored");
    let spent = keys_support::key_spend(&proxy, &key, 2.0 * paid).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let settled = keys_support::key_spend(&proxy, &key, 2.0 * paid).await;
    assert!(
        (spent - 2.0 * paid).abs() < 1e-9 && (settled - spent).abs() < 1e-9,
        "only the misses were charged: {spent}, then {settled}, for {paid} each"
    );
}
