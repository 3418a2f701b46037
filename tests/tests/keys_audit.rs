//! The audit log: every change through the management and admin APIs
//! leaves a row naming who made it, with which key, what it did to which
//! object and the object before and after, never a key's value or a
//! credential; `GET /audit` reads the rows back (admins only), on SQLite
//! and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_mgmt_support;

use conclave_e2e::services::postgres_database;
use conclave_e2e::{FakeUpstream, Proxy};
use keys_mgmt_support::{MASTER, config, generate, get, key_of, post, sha256, start};
use serde_json::{Value, json};

/// POST with the master key and a `LiteLLM-Changed-By` header.
async fn post_for(proxy: &Proxy, person: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(proxy.url(path))
        .bearer_auth(MASTER)
        .header("LiteLLM-Changed-By", person)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The rows `GET /audit?<query>` shows, and the total it reports.
async fn audit(proxy: &Proxy, query: &str) -> (Vec<Value>, u64) {
    let (status, page) = get(proxy, &format!("/audit?page_size=100&{query}")).await;
    assert_eq!(status, 200, "{page}");
    let rows = page["audit_logs"].as_array().unwrap().clone();
    (rows, page["total"].as_u64().unwrap())
}

fn actions(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["action"].as_str().unwrap()).collect()
}

/// Team and key changes, each recorded with its before and after; a change
/// that fails leaves nothing; filters, paging and one row by id.
async fn changes_are_recorded(proxy: &Proxy) {
    let (status, team) = post_for(
        proxy,
        "alice@example.com",
        "/team/new",
        json!({"team_id": "audit-team", "max_budget": 10}),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let (status, updated) = post(
        proxy,
        "/team/update",
        json!({"team_id": "audit-team", "max_budget": 20}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let key = key_of(
        &generate(
            proxy,
            json!({"key_alias": "audited", "team_id": "audit-team",
                   "metadata": {"api_key": "sk-upstream-secret-1234"}}),
        )
        .await,
    );
    for (path, body) in [
        ("/key/update", json!({"key": key, "max_budget": 3})),
        ("/key/block", json!({"key": key})),
    ] {
        let (status, answer) = post(proxy, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, rotated) = post(proxy, "/key/regenerate", json!({"key": key})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = key_of(&rotated);
    let (status, deleted) = post(proxy, "/key/delete", json!({"keys": [new_key]})).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = post(
        proxy,
        "/team/update",
        json!({"team_id": "no-such-team", "max_budget": 1}),
    )
    .await;
    assert_eq!(status, 404);

    let (rows, total) = audit(proxy, "").await;
    assert_eq!(total, 7, "{rows:#?}");
    assert_eq!(
        actions(&rows),
        [
            "deleted", "rotated", "blocked", "updated", "created", "updated", "created"
        ]
    );
    let everything = serde_json::to_string(&rows).unwrap();
    for secret in [&key[3..], &new_key[3..], "sk-upstream-secret-1234"] {
        assert!(!everything.contains(secret), "{secret} in {everything}");
    }

    let team_created = &rows[6];
    assert_eq!(team_created["changed_by"], "alice@example.com");
    assert_eq!(team_created["changed_by_api_key"], sha256(MASTER));
    assert_eq!(team_created["table_name"], "LiteLLM_TeamTable");
    assert_eq!(team_created["object_id"], "audit-team");
    assert_eq!(team_created["before_value"], Value::Null);
    assert_eq!(team_created["updated_values"]["max_budget"], 10.0);
    let team_updated = &rows[5];
    assert_eq!(team_updated["changed_by"], "master_key");
    assert_eq!(team_updated["before_value"]["max_budget"], 10.0);
    assert_eq!(team_updated["updated_values"]["max_budget"], 20.0);

    let old_hash = sha256(&key);
    let key_created = &rows[4];
    assert_eq!(key_created["table_name"], "LiteLLM_VerificationToken");
    assert_eq!(key_created["object_id"], old_hash);
    assert_eq!(key_created["updated_values"]["key_alias"], "audited");
    assert_eq!(
        key_created["updated_values"]["metadata"]["api_key"],
        "[redacted]"
    );
    let key_updated = &rows[3];
    assert_eq!(key_updated["before_value"]["max_budget"], Value::Null);
    assert_eq!(key_updated["updated_values"]["max_budget"], 3.0);
    assert_eq!(rows[2]["before_value"]["blocked"], false);
    assert_eq!(rows[2]["updated_values"]["blocked"], true);
    // A rotation links the old hash to the new one.
    assert_eq!(rows[1]["object_id"], old_hash);
    assert_eq!(rows[1]["before_value"]["token"], old_hash);
    assert_eq!(rows[1]["updated_values"]["token"], sha256(&new_key));
    assert_eq!(rows[1]["updated_values"]["key_alias"], "audited");
    assert_eq!(rows[0]["object_id"], sha256(&new_key));
    assert_eq!(rows[0]["before_value"]["key_alias"], "audited");
    assert_eq!(rows[0]["updated_values"], Value::Null);

    let (teams, total) = audit(proxy, "table_name=LiteLLM_TeamTable").await;
    assert_eq!((total, actions(&teams)), (2, vec!["updated", "created"]));
    let (of_key, total) = audit(proxy, &format!("object_id={old_hash}")).await;
    assert_eq!(total, 4, "{of_key:#?}");
    let (by_alice, total) = audit(proxy, "changed_by=alice@example.com").await;
    assert_eq!(
        (total, by_alice[0]["object_id"].as_str()),
        (1, Some("audit-team"))
    );
    let (oldest, _) = audit(proxy, "sort_order=asc&page_size=1").await;
    assert_eq!(oldest[0]["id"], team_created["id"]);
    let (status, page) = get(proxy, "/audit?page=2&page_size=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_pages"], 3);
    assert_eq!(page["audit_logs"][0]["id"], rows[3]["id"]);
    let (status, one) = get(
        proxy,
        &format!("/audit/{}", rows[5]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!((status, &one), (200, &rows[5]));
}

/// Only admins read the log; a bad query is a 400 naming its parameter.
async fn reading_needs_an_admin(proxy: &Proxy) {
    let member = key_of(&generate(proxy, json!({"key_alias": "not-admin"})).await);
    let (status, body) = proxy
        .call(reqwest::Method::GET, "/audit", None, Some(&member))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(proxy, "/audit/no-such-row").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(proxy, "/audit?sort_order=sideways").await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("sort_order"))
    );
    let (status, body) = get(proxy, "/audit?start_date=yesterday").await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("start_date"))
    );
}

/// A proxy admin's own key is recorded under its user.
async fn an_admin_users_change_names_the_user(proxy: &Proxy) {
    let (status, admin) = post(
        proxy,
        "/user/new",
        json!({"user_id": "root-admin", "user_role": "proxy_admin"}),
    )
    .await;
    assert_eq!(status, 200, "{admin}");
    let admin_key = key_of(&generate(proxy, json!({"user_id": "root-admin"})).await);
    let (status, body) = proxy
        .call(
            reqwest::Method::POST,
            "/user/new",
            Some(json!({"user_id": "made-by-admin"})),
            Some(&admin_key),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The user and the first key made for it.
    let (rows, total) = audit(proxy, "changed_by=root-admin").await;
    assert_eq!(total, 2, "{rows:#?}");
    let user = rows
        .iter()
        .find(|r| r["table_name"] == "LiteLLM_UserTable")
        .unwrap();
    assert_eq!(user["object_id"], "made-by-admin");
    assert_eq!(user["action"], "created");
    assert_eq!(user["changed_by_api_key"], sha256(&admin_key));
    let first_key = rows
        .iter()
        .find(|r| r["table_name"] == "LiteLLM_VerificationToken")
        .unwrap();
    assert_eq!(first_key["object_id"], body["token"]);
    assert_eq!(first_key["updated_values"]["user_id"], "made-by-admin");
}

/// Only an admin may attribute a change to someone else: a key managing
/// its own key is recorded as itself whatever header it sends.
async fn only_admins_name_who_a_change_is_for(proxy: &Proxy) {
    let (status, body) = post(
        proxy,
        "/user/new",
        json!({"user_id": "plain-user", "user_role": "internal_user", "auto_create_key": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let own = key_of(&generate(proxy, json!({"user_id": "plain-user"})).await);
    let r = reqwest::Client::new()
        .post(proxy.url("/key/update"))
        .bearer_auth(&own)
        .header("LiteLLM-Changed-By", "master_key")
        .json(&json!({"key": own, "rpm_limit": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (rows, _) = audit(proxy, &format!("object_id={}", sha256(&own))).await;
    assert_eq!(rows[0]["action"], "updated");
    assert_eq!(rows[0]["changed_by"], "plain-user");
}

/// Concurrent changes to one key each record their own before and after.
async fn concurrent_changes_record_their_own_values(proxy: &Proxy) {
    let key = key_of(&generate(proxy, json!({"key_alias": "busy"})).await);
    let asked: Vec<u64> = (1..=20).collect();
    let updates = asked.iter().map(|rpm| {
        let key = key.clone();
        async move { post(proxy, "/key/update", json!({"key": key, "rpm_limit": rpm})).await }
    });
    for (status, body) in futures_util::future::join_all(updates).await {
        assert_eq!(status, 200, "{body}");
    }
    let (rows, total) = audit(proxy, &format!("object_id={}&action=updated", sha256(&key))).await;
    assert_eq!(total, 20, "{rows:#?}");
    let mut after: Vec<u64> = rows
        .iter()
        .map(|r| r["updated_values"]["rpm_limit"].as_u64().unwrap())
        .collect();
    after.sort_unstable();
    assert_eq!(after, asked);
    // Newest first: each change starts where the one before it ended.
    for pair in rows.windows(2) {
        assert_eq!(pair[1]["updated_values"], pair[0]["before_value"]);
    }
}

/// A value too large for a row is replaced by a note; the change is still
/// recorded and the page stays small.
async fn a_huge_value_is_noted_not_kept(proxy: &Proxy) {
    let key = key_of(&generate(proxy, json!({"key_alias": "heavy"})).await);
    // Within the 16 KiB a key's metadata may take, past a row field's 4 KiB;
    // with a long model list the record passes what a row keeps.
    let padding = "x".repeat(15_000);
    let models: Vec<String> = (0..100)
        .map(|i| format!("{i}-{}", "m".repeat(400)))
        .collect();
    let (status, body) = post(
        proxy,
        "/key/update",
        json!({"key": key, "metadata": {"notes": padding}, "models": models, "max_budget": 7}),
    )
    .await;
    assert_eq!(status, 200, "{}", &body.to_string()[..200]);
    let (status, page) = get(proxy, &format!("/audit?object_id={}", sha256(&key))).await;
    assert_eq!(status, 200);
    assert!(
        page.to_string().len() < 200_000,
        "{} bytes",
        page.to_string().len()
    );
    let row = &page["audit_logs"][0];
    assert_eq!(row["action"], "updated");
    // The large field gives way to a note; the budget beside it stays readable.
    let after = &row["updated_values"];
    assert!(
        after["metadata"]["omitted"]
            .as_str()
            .unwrap()
            .contains("bytes"),
        "{row}"
    );
    assert_eq!(after["max_budget"], 7.0, "{row}");
    // Unblocking a key that is not blocked changes nothing and leaves no row.
    let (status, body) = post(proxy, "/key/unblock", json!({"key": key})).await;
    assert_eq!(status, 200, "{body}");
    let (_, total) = audit(
        proxy,
        &format!("object_id={}&action=unblocked", sha256(&key)),
    )
    .await;
    assert_eq!(total, 0);
}

async fn audit_suite(proxy: &Proxy) {
    changes_are_recorded(proxy).await;
    reading_needs_an_admin(proxy).await;
    an_admin_users_change_names_the_user(proxy).await;
    only_admins_name_who_a_change_is_for(proxy).await;
    concurrent_changes_record_their_own_values(proxy).await;
    a_huge_value_is_noted_not_kept(proxy).await;
}

#[tokio::test]
async fn management_changes_are_audited_in_sqlite() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    audit_suite(&proxy).await;
}

#[tokio::test]
async fn management_changes_are_audited_in_postgres() {
    let Some(url) = postgres_database("management_changes_are_audited_in_postgres").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[&format!("database_url: {url}")])).await;
    audit_suite(&proxy).await;
}

#[tokio::test]
async fn models_and_reloads_are_audited_without_their_credentials() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let (status, made) = post(
        &proxy,
        "/model/new",
        json!({"model_name": "late", "litellm_params": {
            "model": "openai/late", "api_base": up.api_base("late"), "api_key": "sk-provider-secret-987"}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["model_id"].as_str().unwrap().to_owned();
    let (status, body) = post(&proxy, "/model/delete", json!({"id": id})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&proxy, "/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let (rows, total) = audit(&proxy, "").await;
    assert_eq!(total, 3, "{rows:#?}");
    assert_eq!(actions(&rows), ["reloaded", "deleted", "created"]);
    assert_eq!(rows[2]["table_name"], "LiteLLM_ProxyModelTable");
    assert_eq!(rows[2]["object_id"], id);
    assert_eq!(rows[2]["updated_values"]["model_name"], "late");
    assert_eq!(rows[1]["object_id"], id);
    assert_eq!(
        rows[1]["before_value"]["model_name"], "late",
        "what a delete removed is kept: {:#}",
        rows[1]
    );
    assert_eq!(rows[0]["table_name"], "config");
    let everything = serde_json::to_string(&rows).unwrap();
    assert!(
        !everything.contains("sk-provider-secret-987"),
        "{everything}"
    );
}

#[tokio::test]
async fn store_audit_logs_false_writes_no_rows() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "{}litellm_settings:\n  store_audit_logs: false\n",
        config(&up, &[])
    );
    let proxy = start(&yaml).await;
    let (status, body) = post(&proxy, "/team/new", json!({"team_id": "quiet"})).await;
    assert_eq!(status, 200, "{body}");
    generate(&proxy, json!({"team_id": "quiet"})).await;
    let (rows, total) = audit(&proxy, "").await;
    assert_eq!((total, rows.len()), (0, 0));
}
