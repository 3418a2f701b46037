//! Several instances, one set of limits: two (or three) real conclave
//! processes sharing one fresh PostgreSQL database and one Redis (under a
//! namespace of the test's own). A key's rpm limit holds across both under
//! concurrent load, a budget spent through one is refused by the other, a
//! key blocked or deleted on one is refused by the other within a second,
//! a deployment one cools is skipped by the others (one started later
//! included), and with a Redis that does not answer every instance still
//! serves, counting on its own (the documented fail-open policy).
//!
//! Each test skips with its reason when PostgreSQL or Redis is not
//! reachable, and fails instead under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::{Duration, Instant};

use conclave_e2e::services::{self, RedisTarget};
use conclave_e2e::{Behavior, FakeUpstream, Proxy};
use futures_util::future::join_all;
use keys_support::{MASTER, chat_as, code, header, manage, new_key, priced};
use serde_json::{Value, json};

/// The fresh database and the Redis namespace of one test.
struct Shared {
    database_url: String,
    redis: RedisTarget,
}

async fn shared(test: &str) -> Option<Shared> {
    let database_url = services::postgres_database(test).await?;
    let redis = services::redis(test).await?;
    Some(Shared {
        database_url,
        redis,
    })
}

/// A gateway config with `model_list` entries, the master key, the shared
/// database and the shared Redis (`redis_url`), plus `router` lines.
fn config(
    model_list: &str,
    database_url: &str,
    redis_url: &str,
    namespace: &str,
    router: &str,
) -> String {
    format!(
        "model_list:\n{model_list}router_settings:\n  num_retries: 0\n  retry_after: 0\n  \
         redis_url: {redis_url}\n  redis_namespace: {namespace}\n  redis_timeout_ms: 2000\n{router}\
         general_settings:\n  master_key: {MASTER}\n  database_url: {database_url}\n"
    )
}

/// Two instances on the same config; both say they share state.
async fn two(yaml: &str) -> (Proxy, Proxy) {
    let a = Proxy::start(yaml).await;
    let b = Proxy::start(yaml).await;
    for p in [&a, &b] {
        assert!(
            p.logs().contains("shared state through redis"),
            "{}",
            p.logs()
        );
    }
    (a, b)
}

#[tokio::test]
async fn a_keys_rpm_limit_holds_across_two_instances_under_concurrent_load() {
    let Some(s) = shared("a_keys_rpm_limit_holds_across_two_instances").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "",
    );
    let (a, b) = two(&yaml).await;
    let key = new_key(&a, json!({"rpm_limit": 10})).await;
    // 40 requests at once, half through each instance.
    let answers =
        join_all((0..40).map(|i| chat_as(if i % 2 == 0 { &a } else { &b }, &key, "gpt-a"))).await;
    let mut ok = 0;
    for (status, headers, body) in &answers {
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(code(body), "rpm_limit_exceeded", "{body}");
                assert_eq!(header(headers, "x-ratelimit-limit-requests"), "10");
                assert_eq!(header(headers, "x-ratelimit-remaining-requests"), "0");
                assert!(!header(headers, "retry-after").is_empty());
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 10, "successes across both instances");
    assert_eq!(up.calls("gpt-a"), 10, "upstream calls");
}

/// A key given a new value on one instance keeps its minute's count on the
/// other: the shared window moves to the new value's name.
#[tokio::test]
async fn a_regenerated_key_keeps_its_shared_rate_window() {
    let Some(s) = shared("a_regenerated_key_keeps_its_shared_rate_window").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "",
    );
    let (a, b) = two(&yaml).await;
    let key = new_key(&a, json!({"rpm_limit": 2})).await;
    assert_eq!(chat_as(&a, &key, "gpt-a").await.0, 200);
    assert_eq!(chat_as(&b, &key, "gpt-a").await.0, 200);
    let renewed = manage(&a, "/key/regenerate", json!({"key": key})).await;
    let renewed = renewed["key"].as_str().unwrap().to_owned();
    let (status, _, body) = chat_as(&b, &renewed, "gpt-a").await;
    assert_eq!(
        status, 429,
        "both of the minute's requests are used: {body}"
    );
    assert_eq!(code(&body), "rpm_limit_exceeded");
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn a_budget_spent_through_one_instance_is_refused_by_the_other() {
    let Some(s) = shared("a_budget_spent_through_one_instance").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "",
    );
    let (a, b) = two(&yaml).await;
    // One call (0.019 USD) spends more than the whole budget.
    let key = new_key(&a, json!({"max_budget": 0.01, "budget_duration": "1d"})).await;
    let (status, headers, body) = chat_as(&a, &key, "gpt-a").await;
    assert_eq!(status, 200, "{body}");
    assert!(!header(&headers, "x-conclave-response-cost").is_empty());
    let (status, _, body) = chat_as(&b, &key, "gpt-a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "key_budget_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_budget $0.010000"), "{message}");
    assert!(message.contains("resets at"), "{message}");
    // And through the instance that spent it.
    let (status, _, body) = chat_as(&a, &key, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "key_budget_exceeded"),
        "{body}"
    );
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn spend_set_to_zero_on_one_instance_gives_the_budget_back_on_both() {
    let Some(s) = shared("spend_set_to_zero_on_one_instance").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "",
    );
    let (a, b) = two(&yaml).await;
    let key = new_key(&a, json!({"max_budget": 0.01, "budget_duration": "1d"})).await;
    assert_eq!(chat_as(&a, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&b, &key, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "key_budget_exceeded"),
        "{body}"
    );
    manage(&b, "/key/update", json!({"key": key, "spend": 0})).await;
    for proxy in [&a, &b] {
        let (status, _, body) = chat_as(proxy, &key, "gpt-a").await;
        assert_eq!(status, 200, "{body}");
        // Each answer spends the budget again.
        manage(proxy, "/key/update", json!({"key": key, "spend": 0})).await;
    }
    assert_eq!(up.calls("gpt-a"), 3);
}

#[tokio::test]
async fn a_key_blocked_or_deleted_on_one_instance_is_refused_by_the_other_within_a_second() {
    let Some(s) = shared("a_key_blocked_or_deleted_on_one_instance").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "",
    );
    let (a, b) = two(&yaml).await;
    let blocked = new_key(&a, json!({"key_alias": "to-block"})).await;
    let deleted = new_key(&a, json!({"key_alias": "to-delete"})).await;
    // b reads both keys and caches them (for a minute, unless told).
    for key in [&blocked, &deleted] {
        assert_eq!(chat_as(&b, key, "gpt-a").await.0, 200);
    }
    manage(&a, "/key/block", json!({"key": blocked})).await;
    let blocked_at = Instant::now();
    manage(&a, "/key/delete", json!({"keys": [deleted]})).await;
    let deleted_at = Instant::now();
    let mut refused = [None, None];
    // Served by b while the change was on its way (a few milliseconds).
    let mut served_meanwhile = 0;
    while refused.iter().any(Option::is_none) && blocked_at.elapsed() < Duration::from_secs(3) {
        for (i, (key, expected, since)) in [
            (&blocked, "key_blocked", blocked_at),
            (&deleted, "invalid_api_key", deleted_at),
        ]
        .into_iter()
        .enumerate()
        {
            if refused[i].is_some() {
                continue;
            }
            let (status, _, body) = chat_as(&b, key, "gpt-a").await;
            match status {
                401 => {
                    assert_eq!(code(&body), expected, "{body}");
                    refused[i] = Some(since.elapsed());
                }
                200 => served_meanwhile += 1,
                other => panic!("unexpected {other}: {body}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (what, took) in ["blocked", "deleted"].iter().zip(refused) {
        let took = took.unwrap_or_else(|| panic!("the {what} key was still served by b"));
        assert!(
            took < Duration::from_secs(1),
            "the {what} key took {took:?}"
        );
    }
    // Refused for good, on both instances.
    for proxy in [&a, &b] {
        assert_eq!(chat_as(proxy, &blocked, "gpt-a").await.0, 401);
        assert_eq!(chat_as(proxy, &deleted, "gpt-a").await.0, 401);
    }
    assert_eq!(up.calls("gpt-a"), 2 + served_meanwhile);
}

/// Deployment `dep` of group `g` on the fake, with its order and id.
fn ordered(up: &FakeUpstream, dep: &str, order: u32) -> String {
    format!(
        "  - model_name: g\n    litellm_params:\n      model: openai/{dep}-model\n      api_base: {}\n      \
         api_key: sk-test\n      order: {order}\n    model_info:\n      id: {dep}\n",
        up.api_base(dep)
    )
}

/// The deployments `proxy`'s `/health` says are cooling down.
async fn cooling(proxy: &Proxy) -> Vec<String> {
    let health: Value = proxy
        .client
        .get(proxy.url("/health"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["unhealthy_deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["recovers_in_s"].is_number())
        .filter_map(|d| d["model_id"].as_str().map(str::to_owned))
        .collect()
}

/// Asks `proxy` for group `g` `n` times with the master key; every answer
/// must come from `warm` at the first attempt.
async fn all_from_warm(proxy: &Proxy, n: usize) {
    for _ in 0..n {
        let (status, headers, body) = chat_as(proxy, MASTER, "g").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-conclave-model-id"), "warm");
        assert_eq!(header(&headers, "x-conclave-attempts"), "1");
    }
}

#[tokio::test]
async fn a_deployment_cooled_by_one_instance_is_skipped_by_the_others() {
    let Some(s) = shared("a_deployment_cooled_by_one_instance").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    up.set("cold", Behavior::status(500, "cold is down"));
    let model_list = format!("{}{}", ordered(&up, "cold", 1), ordered(&up, "warm", 2));
    let yaml = config(
        &model_list,
        &s.database_url,
        &s.redis.url,
        &s.redis.prefix,
        "  allowed_fails: 0\n  cooldown_time: 30\n",
    )
    .replace("num_retries: 0", "num_retries: 1");
    let (a, b) = two(&yaml).await;
    // a tries cold first (order 1): it fails, cools, and warm answers.
    let (status, headers, body) = chat_as(&a, MASTER, "g").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-model-id"), "warm");
    assert_eq!(up.calls("cold"), 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    while cooling(&b).await != ["cold"] {
        assert!(
            Instant::now() < deadline,
            "b never heard of the cooldown: {}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all_from_warm(&b, 5).await;
    // An instance started now reads the cooldown in force.
    let c = Proxy::start(&yaml).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while cooling(&c).await != ["cold"] {
        assert!(
            Instant::now() < deadline,
            "c never read the cooldown: {}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all_from_warm(&c, 3).await;
    assert_eq!(up.calls("cold"), 1, "no instance called cold again");
    assert_eq!(up.calls("warm"), 9);
}

#[tokio::test]
async fn without_an_answering_redis_every_instance_serves_and_counts_on_its_own() {
    let Some(database_url) = services::postgres_database("without_an_answering_redis").await else {
        return;
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let up = FakeUpstream::start().await;
    let yaml = config(
        &priced(&up, "gpt-a"),
        &database_url,
        &format!("redis://127.0.0.1:{port}"),
        "unreachable",
        "",
    );
    let (a, b) = two(&yaml).await;
    let key = new_key(&a, json!({"rpm_limit": 2})).await;
    // Fail open: each instance counts the key's requests on its own.
    for proxy in [&a, &b] {
        for expected in [200, 200, 429] {
            let started = Instant::now();
            let (status, _, body) = chat_as(proxy, &key, "gpt-a").await;
            assert_eq!(status, expected, "{body}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "a request waited {:?} on the missing Redis",
                started.elapsed()
            );
        }
    }
    assert_eq!(up.calls("gpt-a"), 4);
    for proxy in [&a, &b] {
        assert!(
            proxy.logs().contains("limits are counted in this instance"),
            "{}",
            proxy.logs()
        );
        // And the metrics say so, for an alert.
        let metrics = proxy.metrics(Some(MASTER)).await;
        let failures = metrics
            .lines()
            .find_map(|l| l.strip_prefix("conclave_shared_state_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");
    }
}

#[tokio::test]
async fn check_warns_when_postgresql_is_shared_without_redis() {
    let dir = conclave_e2e::proxy::TempDir::new();
    let base = format!(
        "model_list: []\ngeneral_settings:\n  master_key: {MASTER}\n  database_url: postgres://u:secret@127.0.0.1:5432/keys\n"
    );
    // The environment must not name a Redis either.
    let no_redis = [("REDIS_URL", ""), ("REDIS_HOST", "")];
    let alone = dir.write("alone.yaml", &base).display().to_string();
    let out = conclave_e2e::run_conclave(&["check", "--config", &alone], &no_redis).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("database_url is PostgreSQL but no Redis is configured"),
        "{stdout}"
    );
    assert!(stdout.contains("shared state: none"), "{stdout}");
    let with_redis = format!(
        "{base}router_settings:\n  redis_host: 127.0.0.1\n  redis_port: 6379\n  redis_password: hunter2\n"
    );
    let shared = dir.write("shared.yaml", &with_redis).display().to_string();
    let out = conclave_e2e::run_conclave(&["check", "--config", &shared], &no_redis).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("no Redis is configured"), "{stdout}");
    assert!(
        stdout.contains("shared state: redis redis://127.0.0.1:6379  namespace=conclave-shared"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("secret"),
        "{stdout}"
    );
}
