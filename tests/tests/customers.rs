//! End users (LiteLLM's customers) through the real binary: the spend of
//! every request naming one (`user`, or the customer headers) is recorded
//! on it, a blocked one is refused, and the budget it is linked to (its own,
//! a shared one from `/budget/new`, or the config's default) is enforced
//! for it alone. The management routes answer in LiteLLM's shapes, with
//! clear errors. Each case counts the upstream calls exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::Duration;

use conclave_e2e::services::postgres_database;
use conclave_e2e::{FakeUpstream, Proxy};
use keys_support::{CALL_COST, MASTER, chat_body_as, code, config, manage, new_key};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

async fn gateway(up: &FakeUpstream, extra: &str) -> Proxy {
    let mut yaml = config(up, &["gpt-a"], "");
    yaml.push_str(extra);
    Proxy::start(&yaml).await
}

/// A chat request for `gpt-a` by the master key naming end user `user`.
async fn chat_for(proxy: &Proxy, user: &str) -> (u16, Value) {
    let body =
        json!({"model": "gpt-a", "user": user, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, answer) = chat_body_as(proxy, MASTER, &body).await;
    (status, answer)
}

/// A chat request with `headers` and `body`'s `user`.
async fn chat_with_headers(proxy: &Proxy, headers: HeaderMap, user: &str) -> (u16, Value) {
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .headers(headers)
        .json(&json!({"model": "gpt-a", "user": user, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A management call with the master key that is expected to fail.
async fn refused(proxy: &Proxy, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = proxy
        .client
        .request(method, proxy.url(path))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// `GET /customer/info` for `id`: its status and body.
async fn info(proxy: &Proxy, path: &str, id: &str) -> (u16, Value) {
    let r = proxy
        .client
        .get(proxy.url(path))
        .query(&[("end_user_id", id)])
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The end user's record once `ready` holds for it (the spend writer
/// batches); the last one read otherwise.
async fn info_when(proxy: &Proxy, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = info(proxy, "/customer/info", id).await;
        if (status == 200 && ready(&body)) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Requests naming an end user make its record, its spend adds up, and a
/// budget set on it refuses the request that would go over, for it alone.
async fn spend_and_budget_of_an_end_user(extra: &str) {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, extra).await;
    assert_eq!(chat_for(&proxy, "ada").await.0, 200);
    assert_eq!(chat_for(&proxy, "ada").await.0, 200);
    let ada = info_when(&proxy, "ada", |b| {
        close(b["spend"].as_f64(), 2.0 * CALL_COST)
    })
    .await;
    assert!(close(ada["spend"].as_f64(), 2.0 * CALL_COST), "{ada}");
    assert_eq!(ada["blocked"], false);
    assert_eq!(ada["litellm_budget_table"], Value::Null);

    let made = manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "bob", "max_budget": CALL_COST * 1.5, "budget_duration": "1d"}),
    )
    .await;
    assert_eq!(made["user_id"], "bob");
    let max = made["litellm_budget_table"]["max_budget"].as_f64();
    assert!(close(max, CALL_COST * 1.5), "{made}");
    assert!(made["budget_reset_at"].is_string(), "{made}");
    assert_eq!(chat_for(&proxy, "bob").await.0, 200);
    assert_eq!(chat_for(&proxy, "bob").await.0, 200);
    let (status, body) = chat_for(&proxy, "bob").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "budget_exceeded");
    assert_eq!(code(&body), "end_user_budget_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("end user bob"),
        "{body}"
    );
    // Another end user of the same key is not held back.
    assert_eq!(chat_for(&proxy, "ada").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 5);

    // Spend set back to zero gives the budget back.
    manage(
        &proxy,
        "/customer/update",
        json!({"user_id": "bob", "spend": 0}),
    )
    .await;
    assert_eq!(chat_for(&proxy, "bob").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 6);
}

#[tokio::test]
async fn an_end_users_spend_is_recorded_and_its_budget_enforced_on_sqlite() {
    spend_and_budget_of_an_end_user("").await;
}

#[tokio::test]
async fn an_end_users_spend_is_recorded_and_its_budget_enforced_on_postgres() {
    let test = "an_end_users_spend_is_recorded_and_its_budget_enforced_on_postgres";
    let Some(url) = postgres_database(test).await else {
        return;
    };
    spend_and_budget_of_an_end_user(&format!("  database_url: {url}\n")).await;
}

/// A budget written without a `soft_budget` and then one with it, on one
/// PostgreSQL connection: the statement the first write left cached must
/// take the second's value.
#[tokio::test]
async fn a_soft_budget_is_written_after_a_budget_without_one_on_postgres() {
    let test = "a_soft_budget_is_written_after_a_budget_without_one_on_postgres";
    let Some(url) = postgres_database(test).await else {
        return;
    };
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        &format!("  database_url: {url}\n  database_connection_pool_limit: 1\n"),
    )
    .await;
    manage(&proxy, "/budget/new", json!({"budget_id": "plain"})).await;
    let made = manage(
        &proxy,
        "/budget/new",
        json!({"budget_id": "soft", "soft_budget": 1.5}),
    )
    .await;
    assert_eq!(made["soft_budget"], 1.5, "{made}");
    let updated = manage(
        &proxy,
        "/budget/update",
        json!({"budget_id": "plain", "soft_budget": 2}),
    )
    .await;
    assert_eq!(updated["soft_budget"], 2.0, "{updated}");
    manage(
        &proxy,
        "/budget/update",
        json!({"budget_id": "soft", "soft_budget": null}),
    )
    .await;
    let customer = manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "c", "soft_budget": 3.0}),
    )
    .await;
    assert_eq!(
        customer["litellm_budget_table"]["soft_budget"], 3.0,
        "{customer}"
    );
}

#[tokio::test]
async fn a_blocked_end_user_is_refused_from_its_first_request_until_unblocked() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    let blocked = manage(&proxy, "/customer/block", json!({"user_ids": ["eve"]})).await;
    assert_eq!(blocked["blocked_users"][0]["blocked"], true, "{blocked}");
    let (status, body) = chat_for(&proxy, "eve").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "end_user_blocked");
    assert!(body["error"]["message"].as_str().unwrap().contains("eve"));
    // A virtual key's request naming eve is refused too.
    let key = new_key(&proxy, json!({})).await;
    let body =
        json!({"model": "gpt-a", "user": "eve", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat_body_as(&proxy, &key, &body).await.0, 403);
    assert_eq!(up.calls("gpt-a"), 0);

    manage(&proxy, "/customer/unblock", json!({"user_ids": ["eve"]})).await;
    assert_eq!(chat_for(&proxy, "eve").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn the_customer_headers_name_the_end_user_ahead_of_the_body() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/customer/block",
        json!({"user_ids": ["carol", "dan"]}),
    )
    .await;
    for (header, user) in [
        ("x-litellm-customer-id", "carol"),
        ("x-litellm-end-user-id", "dan"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header, user.parse().unwrap());
        let (status, body) = chat_with_headers(&proxy, headers, "someone-else").await;
        assert_eq!(status, 403, "{header}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(user));
    }
    // An empty header names nobody: the next one does.
    let mut headers = HeaderMap::new();
    headers.insert("x-litellm-customer-id", "".parse().unwrap());
    headers.insert("x-litellm-end-user-id", "dan".parse().unwrap());
    assert_eq!(
        chat_with_headers(&proxy, headers, "someone-else").await.0,
        403
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-litellm-customer-id", "x".repeat(300).parse().unwrap());
    let (status, body) = chat_with_headers(&proxy, headers, "someone-else").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "x-litellm-customer-id");
    assert_eq!(up.calls("gpt-a"), 0);
}

#[tokio::test]
async fn headers_the_config_names_name_the_end_user_after_litellms_own() {
    let up = FakeUpstream::start().await;
    let extra = "  user_header_name: X-OpenWebUI-User-Email\n  user_header_mappings:\n    \
                 - {header_name: X-OpenWebUI-User-Id, litellm_user_role: customer}\n";
    let proxy = gateway(&up, extra).await;
    manage(
        &proxy,
        "/customer/block",
        json!({"user_ids": ["ow-id", "ow@mail"]}),
    )
    .await;
    for (header, user) in [
        ("X-OpenWebUI-User-Id", "ow-id"),
        ("X-OpenWebUI-User-Email", "ow@mail"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header, user.parse().unwrap());
        let (status, body) = chat_with_headers(&proxy, headers, "someone-else").await;
        assert_eq!(status, 403, "{header}: {body}");
    }
    // LiteLLM's own header comes first.
    let mut headers = HeaderMap::new();
    headers.insert("X-OpenWebUI-User-Id", "ow-id".parse().unwrap());
    headers.insert("x-litellm-customer-id", "free".parse().unwrap());
    assert_eq!(chat_with_headers(&proxy, headers, "x").await.0, 200);
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn metadata_and_safety_identifier_name_the_end_user_when_user_does_not() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/customer/block",
        json!({"user_ids": ["m1", "m2", "m3"]}),
    )
    .await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    for body in [
        json!({"model": "gpt-a", "messages": hi, "litellm_metadata": {"user": "m1"}}),
        json!({"model": "gpt-a", "messages": hi, "metadata": {"user_id": "m2"}}),
        json!({"model": "gpt-a", "messages": hi, "safety_identifier": "m3"}),
    ] {
        let (status, _, answer) = chat_body_as(&proxy, MASTER, &body).await;
        assert_eq!((status, code(&answer)), (403, "end_user_blocked"), "{body}");
    }
    // `user` comes first.
    let body = json!({"model": "gpt-a", "messages": hi, "user": "free",
                      "metadata": {"user_id": "m2"}});
    assert_eq!(chat_body_as(&proxy, MASTER, &body).await.0, 200);
    assert_eq!(up.calls("gpt-a"), 1);
    // The Responses and Messages APIs name the end user the same way.
    for (path, body) in [
        (
            "/v1/responses",
            json!({"model": "gpt-a", "input": "hi", "safety_identifier": "m3"}),
        ),
        (
            "/v1/messages",
            json!({"model": "gpt-a", "max_tokens": 5, "messages": hi,
                   "metadata": {"user_id": "m2"}}),
        ),
    ] {
        let (status, answer) = proxy
            .call(reqwest::Method::POST, path, Some(body), Some(MASTER))
            .await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(
            answer.to_string().contains("is blocked"),
            "{path}: {answer}"
        );
    }
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn end_users_sharing_a_budget_are_each_held_to_it() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    let tier = manage(
        &proxy,
        "/budget/new",
        json!({"budget_id": "tier", "max_budget": CALL_COST / 2.0, "rpm_limit": 100}),
    )
    .await;
    assert_eq!(tier["budget_id"], "tier");
    for user in ["u1", "u2"] {
        manage(
            &proxy,
            "/customer/new",
            json!({"user_id": user, "budget_id": "tier"}),
        )
        .await;
    }
    for user in ["u1", "u2"] {
        assert_eq!(chat_for(&proxy, user).await.0, 200, "{user}'s first");
        let (status, body) = chat_for(&proxy, user).await;
        assert_eq!((status, code(&body)), (400, "end_user_budget_exceeded"));
    }
    // Raised for the budget: every end user linked to it may go on.
    manage(
        &proxy,
        "/budget/update",
        json!({"budget_id": "tier", "max_budget": 1.0}),
    )
    .await;
    for user in ["u1", "u2"] {
        assert_eq!(
            chat_for(&proxy, user).await.0,
            200,
            "{user} after the raise"
        );
    }
    assert_eq!(up.calls("gpt-a"), 4);
    let listed = manage(&proxy, "/budget/info", json!({"budgets": ["tier"]})).await;
    assert_eq!(listed[0]["max_budget"], 1.0, "{listed}");
}

#[tokio::test]
async fn a_budgets_rate_limit_counts_each_end_user_per_minute() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/budget/new",
        json!({"budget_id": "slow", "rpm_limit": 1}),
    )
    .await;
    manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "r1", "budget_id": "slow"}),
    )
    .await;
    assert_eq!(chat_for(&proxy, "r1").await.0, 200);
    let (status, body) = chat_for(&proxy, "r1").await;
    assert_eq!((status, code(&body)), (429, "rpm_limit_exceeded"), "{body}");
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn end_users_without_a_budget_get_the_configured_default() {
    let up = FakeUpstream::start().await;
    let extra = format!(
        "litellm_settings:\n  max_end_user_budget_id: starter\n  max_end_user_budget: {}\n",
        CALL_COST * 10.0
    );
    let proxy = gateway(&up, &extra).await;
    manage(
        &proxy,
        "/budget/new",
        json!({"budget_id": "starter", "max_budget": CALL_COST / 2.0, "budget_duration": "30d"}),
    )
    .await;
    assert_eq!(chat_for(&proxy, "newbie").await.0, 200);
    let (status, body) = chat_for(&proxy, "newbie").await;
    assert_eq!(
        (status, code(&body)),
        (400, "end_user_budget_exceeded"),
        "{body}"
    );
    // Linked to the default budget in the store, with its period.
    let newbie = info_when(&proxy, "newbie", |b| b["budget_id"] == "starter").await;
    assert_eq!(newbie["budget_id"], "starter", "{newbie}");
    assert!(newbie["budget_reset_at"].is_string(), "{newbie}");
    assert_eq!(up.calls("gpt-a"), 1);
}

#[tokio::test]
async fn max_end_user_budget_caps_every_end_user_without_a_budget() {
    let up = FakeUpstream::start().await;
    let extra = format!(
        "litellm_settings:\n  max_end_user_budget: {}\n",
        CALL_COST / 2.0
    );
    let proxy = gateway(&up, &extra).await;
    for user in ["x1", "x2"] {
        assert_eq!(chat_for(&proxy, user).await.0, 200);
        assert_eq!(chat_for(&proxy, user).await.0, 400);
    }
    // A request naming no end user is not held back by it.
    let body = json!({"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat_body_as(&proxy, MASTER, &body).await.0, 200);
    assert_eq!(up.calls("gpt-a"), 3);
}

#[tokio::test]
async fn the_customer_routes_refuse_what_they_cannot_do_with_clear_errors() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "kim", "alias": "Kim"}),
    )
    .await;
    let post = reqwest::Method::POST;
    let cases = [
        ("/customer/new", json!({"user_id": "kim"}), 400, "user_id"),
        ("/customer/new", json!({}), 400, "user_id"),
        (
            "/customer/new",
            json!({"user_id": "k2", "budget_id": "none"}),
            404,
            "budget",
        ),
        (
            "/customer/new",
            json!({"user_id": "k3", "budget_id": "b", "max_budget": 1}),
            400,
            "budget_id",
        ),
        (
            "/customer/new",
            json!({"user_id": "k4", "max_budget": -1}),
            400,
            "max_budget",
        ),
        (
            "/customer/new",
            json!({"user_id": "k5", "allowed_model_region": "eu"}),
            400,
            "allowed_model_region",
        ),
        (
            "/customer/update",
            json!({"user_id": "nobody"}),
            404,
            "customer",
        ),
        (
            "/customer/update",
            json!({"user_id": "kim", "blocked": true, "alias": "K", "spend": -1}),
            400,
            "spend",
        ),
        (
            "/customer/delete",
            json!({"user_ids": ["kim", "nobody"]}),
            404,
            "customer",
        ),
        ("/customer/delete", json!({"user_ids": []}), 400, "user_ids"),
        (
            "/budget/update",
            json!({"budget_id": "nope", "max_budget": 1}),
            404,
            "budget",
        ),
        ("/budget/info", json!({"budgets": []}), 400, "budgets"),
        ("/budget/delete", json!({}), 400, "id"),
    ];
    for (path, body, status, param) in cases {
        let (got, answer) = refused(&proxy, post.clone(), path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{path} {body}: {answer}");
    }
    // The failed update changed nothing and the failed delete deleted
    // nothing; the older path reads the same record.
    let (status, kim) = info(&proxy, "/end_user/info", "kim").await;
    assert_eq!((status, kim["alias"].as_str()), (200, Some("Kim")), "{kim}");
    assert_eq!(kim["blocked"], false, "{kim}");
    let (status, _) = info(&proxy, "/customer/info", "nobody").await;
    assert_eq!(status, 404);
    // Only an administrator may manage end users.
    let key = new_key(&proxy, json!({})).await;
    let r = proxy
        .client
        .get(proxy.url("/customer/list"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let deleted = manage(&proxy, "/customer/delete", json!({"user_ids": ["kim"]})).await;
    assert_eq!(deleted["deleted_customers"], 1);
    assert_eq!(info(&proxy, "/customer/info", "kim").await.0, 404);
}

#[tokio::test]
async fn a_proxy_admin_viewer_reads_every_record_and_changes_none() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(&proxy, "/customer/new", json!({"user_id": "ann"})).await;
    manage(&proxy, "/budget/new", json!({"budget_id": "silver"})).await;
    let made = manage(
        &proxy,
        "/user/new",
        json!({"user_id": "vera", "user_role": "proxy_admin_viewer"}),
    )
    .await;
    let viewer = made["key"].as_str().unwrap().to_owned();
    let other = new_key(&proxy, json!({"user_id": "someone"})).await;
    let get = |path: &'static str| {
        let (proxy, viewer) = (&proxy, viewer.clone());
        async move {
            let r = proxy
                .client
                .get(proxy.url(path))
                .bearer_auth(&viewer)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for path in [
        "/customer/list",
        "/customer/info?end_user_id=ann",
        "/budget/list",
        "/budget/settings?budget_id=silver",
        "/user/list",
        "/team/list",
        "/key/list",
        "/spend/logs",
        "/global/spend/report",
        "/audit",
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = get("/key/list").await;
    let other_hash = conclave::keys::token::hash(&other);
    assert!(body.contains(&other_hash), "{status} {body}");
    for (path, body) in [
        ("/customer/new", json!({"user_id": "nope"})),
        ("/budget/new", json!({"budget_id": "nope"})),
        ("/customer/block", json!({"user_ids": ["ann"]})),
        ("/key/generate", json!({})),
        ("/user/new", json!({"user_id": "nope"})),
    ] {
        let r = proxy
            .client
            .post(proxy.url(path))
            .bearer_auth(&viewer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let (status, ann) = info(&proxy, "/customer/info", "ann").await;
    assert_eq!((status, ann["blocked"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn changes_to_end_users_and_budgets_leave_audit_rows() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/budget/new",
        json!({"budget_id": "gold", "max_budget": 9}),
    )
    .await;
    manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "lee", "budget_id": "gold"}),
    )
    .await;
    manage(&proxy, "/customer/block", json!({"user_ids": ["lee"]})).await;
    manage(&proxy, "/budget/info", json!({"budgets": ["gold"]})).await;
    let r = proxy
        .client
        .get(proxy.url("/audit"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let audit: Value = r.json().await.unwrap();
    let rows = audit["audit_logs"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["table_name"].as_str().unwrap_or_default().to_owned(),
                r["object_id"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("LiteLLM_BudgetTable", "gold", "created"),
        ("LiteLLM_EndUserTable", "lee", "created"),
        ("LiteLLM_EndUserTable", "lee", "blocked"),
    ] {
        let found = seen
            .iter()
            .any(|(t, o, a)| (t.as_str(), o.as_str(), a.as_str()) == expected);
        assert!(found, "{expected:?} in {audit}");
    }
    // Reading a budget changes nothing and leaves no row.
    assert_eq!(seen.len(), 3, "{audit}");
}
