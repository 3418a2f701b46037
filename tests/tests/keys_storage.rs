//! The key store across restarts and backends: keys, users, teams and spend
//! survive a restart (SQLite file and PostgreSQL), queued spend is written
//! at graceful shutdown, spent budgets reset when their period passes, old
//! spend-log rows are deleted by retention, and migrations apply once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_mgmt_support;

use std::time::{Duration, SystemTime};

use conclave::keys::{SpendRow, Store};
use conclave_e2e::proxy::TempDir;
use conclave_e2e::services::{missing_postgres_database, postgres_database};
use conclave_e2e::{Behavior, FakeUpstream};
use keys_mgmt_support::{
    PRICE_IN, PRICE_OUT, chat_as, core_suite, eventually, generate, get, key_of, post,
    priced_config, spend_of, start, terminate,
};
use serde_json::{Value, json};

/// What one fake answer (5 prompt, 7 completion tokens) costs on `paid`.
const CALL_COST: f64 = 5.0 * PRICE_IN + 7.0 * PRICE_OUT;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("keys.db").display())
}

/// A spend row for `token_hash` started `age` ago.
fn row(request_id: &str, token_hash: &str, age: Duration, spend: f64) -> SpendRow {
    SpendRow {
        request_id: request_id.into(),
        parent_request_id: None,
        response_id: None,
        token_hash: Some(token_hash.into()),
        user_id: None,
        team_id: None,
        model: "echo".into(),
        model_group: Some("echo".into()),
        budget_model: None,
        deployment: None,
        profile: None,
        prompt_tokens: 5,
        completion_tokens: 7,
        spend,
        composite_cost: 0.0,
        status: 200,
        cache_hit: false,
        started_at: SystemTime::now() - age,
        latency_ms: 3,
        tags: Vec::new(),
        end_user: None,
    }
}

/// Keys, users, teams and the spend of real requests survive a restart;
/// requests made just before SIGTERM are written by the shutdown flush.
async fn restart_keeps_keys_and_spend(database_url: &str) {
    let up = FakeUpstream::start().await;
    let yaml = priced_config(&up, &[&format!("database_url: {database_url}")]);
    let proxy = start(&yaml).await;
    post(&proxy, "/team/new", json!({"team_id": "keep-team"})).await;
    let key = key_of(
        &generate(
            &proxy,
            json!({"key_alias": "keeper", "user_id": "keep-user", "team_id": "keep-team", "max_budget": 5}),
        )
        .await,
    );
    for _ in 0..3 {
        let (status, body) = chat_as(&proxy, &key, "paid").await;
        assert_eq!(status, 200, "{body}");
    }
    // SIGTERM at once: the rows are still queued, the shutdown flush writes them.
    terminate(proxy).await;

    let proxy = start(&yaml).await;
    let (status, own) = proxy
        .call(reqwest::Method::GET, "/key/info", None, Some(&key))
        .await;
    assert_eq!(status, 200, "the key still works after a restart: {own}");
    assert_eq!(own["info"]["key_alias"], "keeper");
    let spend = spend_of(&proxy, &key).await;
    assert!(close(spend, 3.0 * CALL_COST), "key spend {spend}");
    let (_, user) = get(&proxy, "/user/info?user_id=keep-user").await;
    assert!(
        close(
            user["user_info"]["spend"].as_f64().unwrap(),
            3.0 * CALL_COST
        ),
        "{user}"
    );
    let (_, team) = get(&proxy, "/team/info?team_id=keep-team").await;
    assert!(
        close(
            team["team_info"]["spend"].as_f64().unwrap(),
            3.0 * CALL_COST
        ),
        "{team}"
    );
    let (_, logs) = get(&proxy, &format!("/spend/logs?api_key={key}")).await;
    assert_eq!(logs.as_array().unwrap().len(), 3, "{logs}");
    assert!(close(logs[0]["spend"].as_f64().unwrap(), CALL_COST));
    let (_, report) = get(&proxy, "/global/spend/report").await;
    let paid = report[0]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_group"] == "paid")
        .unwrap_or_else(|| panic!("no paid row: {report}"))
        .clone();
    assert_eq!(paid["api_requests"], 3);
    assert!(close(paid["spend"].as_f64().unwrap(), 3.0 * CALL_COST));
    let (status, _) = chat_as(&proxy, &key, "paid").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn restart_keeps_keys_and_spend_in_the_sqlite_file() {
    let dir = TempDir::new();
    restart_keeps_keys_and_spend(&sqlite_url(&dir)).await;
    assert!(dir.path().join("keys.db").exists());
}

#[tokio::test]
async fn restart_keeps_keys_and_spend_in_postgres() {
    let Some(url) = postgres_database("restart_keeps_keys_and_spend_in_postgres").await else {
        return;
    };
    restart_keeps_keys_and_spend(&url).await;
}

/// LiteLLM's spend rankings over real requests: two keys of two users and
/// teams, one spending twice what the other does.
async fn spend_rankings_order_keys_users_teams_and_models_by_spend(database_url: &str) {
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(
        &up,
        &[&format!("database_url: {database_url}")],
    ))
    .await;
    let (status, ready) = proxy
        .call(reqwest::Method::GET, "/health/readiness", None, None)
        .await;
    assert_eq!(
        (status, &ready["db"]),
        (200, &json!("connected")),
        "{ready}"
    );
    for (team, member) in [("big-team", "big-user"), ("small-team", "small-user")] {
        let body =
            json!({"team_id": team, "members_with_roles": [{"user_id": member, "role": "user"}]});
        post(&proxy, "/team/new", body).await;
    }
    let big = key_of(
        &generate(
            &proxy,
            json!({"key_alias": "big", "user_id": "big-user", "team_id": "big-team"}),
        )
        .await,
    );
    let small = key_of(
        &generate(
            &proxy,
            json!({"key_alias": "small", "user_id": "small-user", "team_id": "small-team"}),
        )
        .await,
    );
    for key in [&big, &big, &small] {
        let (status, body) = chat_as(&proxy, key, "paid").await;
        assert_eq!(status, 200, "{body}");
    }
    let written = eventually(Duration::from_secs(10), || async {
        let (_, top) = get(&proxy, "/global/spend/keys").await;
        top.as_array().is_some_and(|rows| rows.len() == 2)
    })
    .await;
    let (status, top) = get(&proxy, "/global/spend/keys").await;
    assert!(written && status == 200, "{top}");
    assert_eq!(top[0]["key_alias"], "big", "{top}");
    assert_eq!(top[0]["api_key"], keys_mgmt_support::sha256(&big));
    assert!(close(
        top[0]["total_spend"].as_f64().unwrap(),
        2.0 * CALL_COST
    ));
    assert_eq!(top[1]["key_alias"], "small");
    let (_, one) = get(&proxy, "/global/spend/keys?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");

    let (_, models) = get(&proxy, "/global/spend/models").await;
    assert_eq!(models[0]["model"], "paid", "{models}");
    assert!(close(
        models[0]["total_spend"].as_f64().unwrap(),
        3.0 * CALL_COST
    ));
    let (_, teams) = get(&proxy, "/global/spend/teams").await;
    assert_eq!(teams["teams"], json!(["big-team", "small-team"]), "{teams}");
    let per_team = &teams["total_spend_per_team"];
    assert!(close(
        per_team[0]["total_spend"].as_f64().unwrap(),
        2.0 * CALL_COST
    ));
    let today = &teams["daily_spend"][0];
    assert!(
        close(today["small-team"].as_f64().unwrap(), CALL_COST),
        "{teams}"
    );
    let (_, total) = get(&proxy, "/global/spend").await;
    assert!(
        close(total["spend"].as_f64().unwrap(), 3.0 * CALL_COST),
        "{total}"
    );

    let (_, keys) = get(&proxy, "/spend/keys").await;
    let aliases: Vec<&Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["key_alias"])
        .collect();
    assert_eq!(aliases, [&json!("big"), &json!("small")], "{keys}");
    let (_, listed) = get(&proxy, "/key/list?sort_by=spend&return_full_object=true").await;
    assert_eq!(listed["keys"][0]["key_alias"], "big", "{listed}");
    let (_, one_key) = get(
        &proxy,
        &format!("/key/list?key_hash={}", keys_mgmt_support::sha256(&small)),
    )
    .await;
    assert_eq!(one_key["total_count"], 1, "{one_key}");
    let (_, lowest) = get(
        &proxy,
        "/key/list?sort_by=spend&sort_order=asc&return_full_object=true",
    )
    .await;
    assert_eq!(lowest["keys"][0]["key_alias"], "small", "{lowest}");
    let (status, _) = get(&proxy, "/key/list?sort_by=name").await;
    assert_eq!(status, 400);
    let (_, users) = get(&proxy, "/spend/users").await;
    assert_eq!(users[0]["user_id"], "big-user", "{users}");
    assert_eq!(users[0]["teams"], json!(["big-team"]), "{users}");
    let (_, one_user) = get(&proxy, "/spend/users?user_id=small-user").await;
    assert_eq!(one_user.as_array().unwrap().len(), 1, "{one_user}");
    assert!(close(one_user[0]["spend"].as_f64().unwrap(), CALL_COST));

    let (status, refused) = proxy
        .call(
            reqwest::Method::GET,
            "/global/spend/keys",
            None,
            Some(&small),
        )
        .await;
    assert_eq!(
        status, 403,
        "a key may not see every key's spend: {refused}"
    );
    let (status, refused) = get(&proxy, "/global/spend/models?limit=0").await;
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test]
async fn spend_rankings_order_by_spend_in_sqlite() {
    let dir = TempDir::new();
    spend_rankings_order_keys_users_teams_and_models_by_spend(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn spend_rankings_order_by_spend_in_postgres() {
    let Some(url) = postgres_database("spend_rankings_order_by_spend_in_postgres").await else {
        return;
    };
    spend_rankings_order_keys_users_teams_and_models_by_spend(&url).await;
}

/// Request tags, from LiteLLM's three places (the `x-litellm-tags` header,
/// `tags` and `metadata.tags`) and the key's own, land on the spend-log
/// rows and add up per tag in `/spend/tags`; none of them, nor the rest of
/// `metadata`, reaches the upstream.
async fn request_tags_are_spend_tags_and_never_forwarded(database_url: &str) {
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(
        &up,
        &[&format!("database_url: {database_url}")],
    ))
    .await;
    let key = key_of(&generate(&proxy, json!({"tags": ["key-tag"]})).await);
    let tagged = |header: Option<&str>, extra: Value| {
        let mut body = conclave_e2e::chat_body("paid", "hello");
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        let mut request = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body);
        if let Some(h) = header {
            request = request.header("x-litellm-tags", h);
        }
        request.send()
    };
    let answers = [
        tagged(
            Some(" job:7 , app "),
            json!({"tags": ["app"], "metadata": {"tags": ["env:prod"], "trace": "t-1"}}),
        )
        .await
        .unwrap(),
        tagged(
            None,
            json!({"metadata": {"tags": ["app"]}, "user": "customer-7"}),
        )
        .await
        .unwrap(),
    ];
    for answer in answers {
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }
    let forwarded = up.last_body("paid").unwrap();
    assert_eq!(
        forwarded["user"], "customer-7",
        "`user` is OpenAI's own field"
    );
    for field in ["metadata", "tags"] {
        assert!(
            forwarded.get(field).is_none(),
            "{field} reached the upstream: {forwarded}"
        );
    }
    let written = eventually(Duration::from_secs(10), || async {
        let (_, tags) = get(&proxy, "/spend/tags").await;
        tags.as_array().is_some_and(|rows| rows.len() == 4)
    })
    .await;
    let (status, tags) = get(&proxy, "/spend/tags").await;
    assert!(written && status == 200, "{tags}");
    let per_tag: Vec<(&str, u64)> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["individual_request_tag"].as_str().unwrap(),
                t["log_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_tag,
        [("app", 2), ("key-tag", 2), ("env:prod", 1), ("job:7", 1)],
        "{tags}"
    );
    assert!(close(
        tags[0]["total_spend"].as_f64().unwrap(),
        2.0 * CALL_COST
    ));
    let (_, logs) = get(&proxy, "/spend/logs").await;
    let first = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["request_tags"].as_array().unwrap().len() == 4)
        .unwrap_or_else(|| panic!("no row with all four tags: {logs}"));
    assert_eq!(
        first["request_tags"],
        json!(["key-tag", "job:7", "app", "env:prod"])
    );
    assert_eq!(first["end_user"], "", "{first}");
    let customer = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["request_tags"] == json!(["key-tag", "app"]))
        .unwrap_or_else(|| panic!("no row of the second request: {logs}"));
    assert_eq!(customer["end_user"], "customer-7", "{customer}");
    let (status, global) = get(
        &proxy,
        "/global/spend/tags?start_date=2000-01-01&end_date=2100-01-01&tags=app,job:7",
    )
    .await;
    assert_eq!(status, 200, "{global}");
    let named: Vec<(&str, u64)> = global["spend_per_tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["log_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(named, [("app", 2), ("job:7", 1)], "{global}");
    let (status, refused) = get(&proxy, "/global/spend/tags?start_date=2000-01-01").await;
    assert_eq!(status, 400, "LiteLLM requires both dates: {refused}");
    assert_eq!(refused["error"]["param"], "end_date", "{refused}");
    let (status, refused) = get(
        &proxy,
        "/spend/tags?start_date=2000-01-02&end_date=2000-01-01",
    )
    .await;
    assert_eq!(status, 400, "a window ending before it starts: {refused}");
    let (_, none) = get(
        &proxy,
        "/spend/tags?start_date=2000-01-01&end_date=2000-01-02",
    )
    .await;
    assert_eq!(none, json!([]));
    // A request that reached a model and failed leaves a row too, tagged.
    up.set("paid", conclave_e2e::Behavior::status(500, "boom"));
    let failed = tagged(None, json!({"tags": ["failed-call"], "num_retries": 0}))
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let logged = eventually(Duration::from_secs(10), || async {
        let (_, logs) = get(&proxy, "/spend/logs").await;
        logs.as_array().unwrap().iter().any(|row| {
            row["request_tags"] == json!(["key-tag", "failed-call"])
                && row["status"] == "failure"
                && row["model_group"] == "paid"
        })
    })
    .await;
    assert!(logged, "{:?}", get(&proxy, "/spend/logs").await);
    let refused = tagged(None, json!({"user": 5})).await.unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["param"], "user", "{error}");
    let refused = tagged(None, json!({"tags": "app"})).await.unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["param"], "tags", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`tags` must be a list of strings"),
        "{error}"
    );
}

#[tokio::test]
async fn request_tags_are_spend_tags_in_sqlite() {
    let dir = TempDir::new();
    request_tags_are_spend_tags_and_never_forwarded(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn request_tags_are_spend_tags_in_postgres() {
    let Some(url) = postgres_database("request_tags_are_spend_tags_in_postgres").await else {
        return;
    };
    request_tags_are_spend_tags_and_never_forwarded(&url).await;
}

#[tokio::test]
async fn the_core_management_scenario_passes_on_postgres() {
    let Some(url) = postgres_database("the_core_management_scenario_passes_on_postgres").await
    else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(&up, &[&format!("database_url: {url}")])).await;
    let key = core_suite(&proxy).await;
    assert!(proxy.logs().contains("Postgres"), "the store is PostgreSQL");
    assert!(
        !proxy.dir.path().join("conclave.db").exists(),
        "no SQLite file beside the config"
    );
    let (status, info) = proxy
        .call(reqwest::Method::GET, "/key/info", None, Some(&key))
        .await;
    assert_eq!(status, 200, "{info}");
}

/// The key store at `url` holds `key`.
async fn assert_stored(url: &str, key: &str) {
    let store = Store::connect(url).await.unwrap();
    assert!(
        store
            .key(&keys_mgmt_support::sha256(key))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_postgres_database_that_does_not_exist_is_created() {
    let Some(url) =
        missing_postgres_database("a_postgres_database_that_does_not_exist_is_created").await
    else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(&up, &[&format!("database_url: {url}")])).await;
    let key = key_of(&generate(&proxy, json!({"key_alias": "fresh"})).await);
    assert!(
        proxy.logs().contains("created the database"),
        "{}",
        proxy.logs()
    );
    assert_stored(&url, &key).await;
}

#[tokio::test]
async fn database_url_from_the_environment_selects_postgres() {
    let Some(url) = postgres_database("database_url_from_the_environment_selects_postgres").await
    else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy =
        conclave_e2e::Proxy::start_with(&priced_config(&up, &[]), &[("DATABASE_URL", &url)], &[])
            .await;
    let key = key_of(&generate(&proxy, json!({"key_alias": "env"})).await);
    assert!(
        proxy.logs().contains("Postgres"),
        "DATABASE_URL names the store"
    );
    assert_stored(&url, &key).await;
}

#[tokio::test]
async fn spent_budgets_reset_when_their_period_passes() {
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(&up, &[])).await;
    let made = generate(&proxy, json!({"max_budget": 100, "budget_duration": "10s"})).await;
    let key = key_of(&made);
    let first_reset = made["budget_reset_at"].as_str().unwrap().to_owned();
    // A call counts in the period it ended in: when a boundary comes
    // between the call and the write of its spend, that period is over
    // and the call is made again in the new one.
    let mut counted = false;
    for _ in 0..3 {
        let (status, _) = chat_as(&proxy, &key, "paid").await;
        assert_eq!(status, 200);
        counted = eventually(Duration::from_secs(3), || async {
            spend_of(&proxy, &key).await > 0.0
        })
        .await;
        if counted {
            break;
        }
    }
    assert!(counted, "spend reaches the store");
    assert!(
        eventually(Duration::from_secs(20), || async {
            spend_of(&proxy, &key).await == 0.0
        })
        .await,
        "spend resets once budget_reset_at passes"
    );
    let (_, info) = get(&proxy, &format!("/key/info?key={key}")).await;
    let next = info["info"]["budget_reset_at"].as_str().unwrap();
    assert!(
        next > first_reset.as_str(),
        "the reset time moves on: {first_reset} -> {next}"
    );
}

#[tokio::test]
async fn retention_deletes_spend_rows_older_than_the_period() {
    let dir = TempDir::new();
    let url = sqlite_url(&dir);
    let store = Store::connect(&format!("{url}?mode=rwc")).await.unwrap();
    let day = Duration::from_secs(86_400);
    let feed = keys_mgmt_support::sha256("sk-feed");
    let mut rows = Vec::new();
    for i in 0..25 {
        rows.push(row(&format!("old-{i}"), &feed, 3 * day, 0.5));
    }
    rows.push(row("fresh", &feed, Duration::ZERO, 0.5));
    store.write_spend(&rows, true).await.unwrap();
    let all = conclave::keys::store::SpendFilter {
        token_hash: Some(feed.clone()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.spend_logs(&all).await.unwrap().len(), 26);
    drop(store);

    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(
        &up,
        &[
            &format!("database_url: {url}"),
            "maximum_spend_logs_retention_period: 1d",
        ],
    ))
    .await;
    let deleted = eventually(Duration::from_secs(10), || async {
        let (_, logs) = get(&proxy, &format!("/spend/logs?api_key={feed}")).await;
        logs.as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    let (_, logs) = get(&proxy, &format!("/spend/logs?api_key={feed}")).await;
    assert!(deleted, "old rows remain: {logs}");
    assert_eq!(logs[0]["request_id"], "fresh");
    let (_, report) = get(&proxy, "/global/spend/report?start_date=2000-01-01").await;
    let total: f64 = report
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["total_spend"].as_f64().unwrap())
        .sum();
    assert!(
        close(total, 13.0),
        "daily aggregates outlive the rows: {report}"
    );
}

/// Rows whose `request_id` filter matches `id` (request, parent or answer id).
async fn rows_matching(store: &Store, id: &str) -> Vec<SpendRow> {
    store
        .spend_logs(&conclave::keys::store::SpendFilter {
            request_id: Some(id.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A row of `age` that answered with `answer`.
fn answered(request_id: &str, answer: &str, age: Duration) -> SpendRow {
    SpendRow {
        response_id: Some(answer.into()),
        ..row(request_id, "answers", age, 0.5)
    }
}

/// Spend rows are found by their answer's id whether or not the answer-id
/// index has taken them in yet, a repeated answer id (a cache hit) finds
/// every row that carried it, and retention forgets deleted rows' answers.
async fn answer_ids_find_rows_before_and_after_indexing(database_url: &str) {
    let store = Store::connect(database_url).await.unwrap();
    let day = Duration::from_secs(86_400);
    let old = answered("answer-old", "chatcmpl-old", 3 * day);
    let first = answered("answer-1", "chatcmpl-first", Duration::ZERO);
    store.write_spend(&[old, first], true).await.unwrap();
    assert_eq!(rows_matching(&store, "chatcmpl-first").await.len(), 1);

    store.index_answer_ids().await.unwrap();
    let replayed = answered("answer-2", "chatcmpl-first", Duration::ZERO);
    let later = answered("answer-3", "chatcmpl-later", Duration::ZERO);
    store.write_spend(&[replayed, later], true).await.unwrap();
    let mut ids: Vec<String> = rows_matching(&store, "chatcmpl-first")
        .await
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["answer-1", "answer-2"]);
    assert_eq!(rows_matching(&store, "chatcmpl-later").await.len(), 1);
    assert_eq!(rows_matching(&store, "chatcmpl-old").await.len(), 1);
    assert!(rows_matching(&store, "chatcmpl-none").await.is_empty());

    let cutoff = SystemTime::now() - day;
    assert_eq!(store.delete_spend_before(cutoff, 100).await.unwrap(), 1);
    assert!(rows_matching(&store, "chatcmpl-old").await.is_empty());
    store.index_answer_ids().await.unwrap();
    assert_eq!(rows_matching(&store, "chatcmpl-first").await.len(), 2);
    assert_eq!(rows_matching(&store, "chatcmpl-later").await.len(), 1);
}

#[tokio::test]
async fn answer_ids_find_rows_before_and_after_indexing_in_sqlite() {
    let dir = TempDir::new();
    let url = format!("{}?mode=rwc", sqlite_url(&dir));
    answer_ids_find_rows_before_and_after_indexing(&url).await;
    // Retention took the deleted row's answer id with it: what is left is
    // one entry per remaining row.
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM spend_log_answers")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(entries, 3);
}

#[tokio::test]
async fn answer_ids_find_rows_in_postgres() {
    let Some(url) = postgres_database("answer_ids_find_rows_in_postgres").await else {
        return;
    };
    answer_ids_find_rows_before_and_after_indexing(&url).await;
}

#[tokio::test]
async fn migrations_apply_once_and_a_reopened_store_keeps_its_rows() {
    let dir = TempDir::new();
    let url = format!("{}?mode=rwc", sqlite_url(&dir));
    let store = Store::connect(&url).await.unwrap();
    store
        .write_spend(&[row("r1", "abc", Duration::ZERO, 1.25)], true)
        .await
        .unwrap();
    drop(store);
    let store = Store::connect(&url).await.unwrap();
    let rows = store
        .spend_logs(&conclave::keys::store::SpendFilter {
            request_id: Some("r1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(close(rows[0].spend, 1.25));
}

#[tokio::test]
async fn an_unusable_database_url_stops_start_up_with_the_reason() {
    let up = FakeUpstream::start().await;
    let yaml = priced_config(&up, &["database_url: mysql://nowhere/db"]);
    let out = conclave_e2e::run_conclave(
        &[
            "serve",
            "--port",
            "0",
            "--config",
            &TempDir::new().write("c.yaml", &yaml).display().to_string(),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database_url must start with sqlite:// or postgres://"),
        "{err}"
    );
    assert!(
        !err.contains("nowhere/db") || err.contains("database_url"),
        "{err}"
    );
}

/// PostgreSQL keeps no NUL in text: an answer id holding one is stored
/// with it replaced, and spend goes on being written after it; a NUL in
/// admin input is the caller's error, not the store's.
#[tokio::test]
async fn a_nul_from_outside_neither_stops_spend_nor_passes_for_a_store_failure() {
    let Some(url) = postgres_database("a_nul_from_outside_neither_stops_spend").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy = start(&priced_config(&up, &[&format!("database_url: {url}")])).await;
    let key = key_of(&generate(&proxy, json!({})).await);
    up.set(
        "paid",
        Behavior::raw_body(
            "application/json",
            r#"{"id":"chatcmpl-\u0000bad","object":"chat.completion","model":"paid-up",
                "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        ),
    );
    assert_eq!(chat_as(&proxy, &key, "paid").await.0, 200);
    up.set("paid", Behavior::ok("fine"));
    assert_eq!(chat_as(&proxy, &key, "paid").await.0, 200);
    let both = eventually(Duration::from_secs(10), || async {
        close(spend_of(&proxy, &key).await, 2.0 * CALL_COST)
    })
    .await;
    assert!(
        both,
        "spend {} after two calls",
        spend_of(&proxy, &key).await
    );
    let (status, body) = post(&proxy, "/team/new", json!({"team_alias": "t\u{0}x"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("NUL"),
        "{body}"
    );
    let (status, body) = get(&proxy, "/user/list?user_email=a%00b").await;
    assert_eq!(status, 400, "{body}");
}
