//! The virtual-key management API of the real binary, in LiteLLM's paths and
//! shapes: keys, users, teams and spend, who may call what, and the errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_mgmt_support;

use conclave_e2e::{FakeUpstream, Proxy, error_object};
use keys_mgmt_support::{
    MASTER, chat_as, config, core_suite, generate, get, key_of, post, sha256, start,
};
use reqwest::Method;
use serde_json::json;

async fn gateway() -> (FakeUpstream, Proxy) {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    (up, proxy)
}

/// The first key of a new `proxy_admin` user.
async fn admin_users_key(proxy: &Proxy) -> String {
    let (status, admin_user) = post(
        proxy,
        "/user/new",
        json!({"user_id": "root", "user_role": "proxy_admin"}),
    )
    .await;
    assert_eq!(status, 200, "{admin_user}");
    admin_user["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_core_management_scenario_passes_on_sqlite() {
    let (_up, proxy) = gateway().await;
    core_suite(&proxy).await;
    assert!(
        proxy.dir.path().join("conclave.db").exists(),
        "the store is a file beside the config"
    );
}

#[tokio::test]
async fn the_store_keeps_only_the_hash_of_a_key() {
    let (_up, proxy) = gateway().await;
    let made = generate(&proxy, json!({"key_alias": "secret-check"})).await;
    let key = key_of(&made);
    // Let SQLite write everything out, then look at every file of the store.
    let (status, _) = get(&proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(status, 200);
    let mut seen_hash = false;
    for entry in std::fs::read_dir(proxy.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("conclave.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&key[3..]),
                "{} holds the key itself",
                path.display()
            );
            seen_hash |= text.contains(&sha256(&key));
        }
    }
    assert!(seen_hash, "the hash is what the store keeps");
}

#[tokio::test]
async fn without_a_master_key_no_store_is_created_and_the_routes_say_why() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n{}",
        conclave_e2e::deployments(&up, &[("echo", &[])])
    );
    let proxy = start(&yaml).await;
    let (status, body) = proxy
        .call(Method::POST, "/key/generate", Some(json!({})), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_object(&body)["code"], "keys_disabled");
    assert!(!proxy.dir.path().join("conclave.db").exists());
}

#[tokio::test]
async fn management_needs_the_master_key_or_an_admin_users_key() {
    let (_up, proxy) = gateway().await;
    let (status, body) = proxy
        .call(Method::POST, "/key/generate", Some(json!({})), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = proxy
        .call(
            Method::POST,
            "/key/generate",
            Some(json!({})),
            Some("sk-wrong"),
        )
        .await;
    assert_eq!(status, 401);

    let plain = key_of(&generate(&proxy, json!({"user_id": "pat"})).await);
    let (status, body) = proxy
        .call(Method::POST, "/key/generate", Some(json!({})), Some(&plain))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_object(&body)["code"], "not_admin");
    let (status, _) = proxy
        .call(Method::GET, "/key/list", None, Some(&plain))
        .await;
    assert_eq!(status, 403);

    let admin_key = admin_users_key(&proxy).await;
    let (status, made) = proxy
        .call(
            Method::POST,
            "/key/generate",
            Some(json!({"key_alias": "by-admin"})),
            Some(&admin_key),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let (status, listed) = proxy
        .call(Method::GET, "/key/list", None, Some(&admin_key))
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["total_count"], 3);
}

#[tokio::test]
async fn an_admin_users_key_opens_the_admin_api_and_other_keys_do_not() {
    let (_up, proxy) = gateway().await;
    let admin_key = admin_users_key(&proxy).await;
    let plain = key_of(&generate(&proxy, json!({"user_id": "pat"})).await);
    let model = json!({"model_name": "added", "litellm_params": {"model": "openai/echo", "api_base": "http://127.0.0.1:9/v1"}});

    let (status, body) = proxy
        .call(
            Method::POST,
            "/model/new",
            Some(model.clone()),
            Some(&plain),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_object(&body)["code"], "not_admin");
    let (status, _) = proxy
        .call(
            Method::POST,
            "/model/new",
            Some(model.clone()),
            Some("sk-wrong"),
        )
        .await;
    assert_eq!(status, 401);

    let (status, body) = proxy
        .call(Method::POST, "/model/new", Some(model), Some(&admin_key))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "added");
    let (status, status_report) = proxy
        .call(Method::GET, "/admin/status", None, Some(&admin_key))
        .await;
    assert_eq!(status, 200, "{status_report}");

    let (status, blocked) = post(&proxy, "/key/block", json!({"key": admin_key})).await;
    assert_eq!(status, 200, "{blocked}");
    let (status, _) = proxy
        .call(Method::GET, "/admin/status", None, Some(&admin_key))
        .await;
    assert_eq!(status, 401, "a blocked admin key opens nothing");
}

#[tokio::test]
async fn key_health_is_healthy_for_a_working_key_and_401_for_a_blocked_one() {
    let (_up, proxy) = gateway().await;
    let key = key_of(&generate(&proxy, json!({"key_alias": "checked"})).await);
    let (status, body) = proxy
        .call(Method::POST, "/key/health", None, Some(&key))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"key": "healthy", "logging_callbacks": null}));
    post(&proxy, "/key/block", json!({"key": key})).await;
    let (status, body) = proxy
        .call(Method::POST, "/key/health", None, Some(&key))
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = proxy
        .call(Method::POST, "/key/health", None, Some("sk-nope"))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_key_reads_its_own_info_but_not_another_keys() {
    let (_up, proxy) = gateway().await;
    let mine = key_of(&generate(&proxy, json!({"key_alias": "mine"})).await);
    let theirs = key_of(&generate(&proxy, json!({"key_alias": "theirs"})).await);

    let (status, own) = proxy
        .call(
            Method::GET,
            &format!("/key/info?key={mine}"),
            None,
            Some(&mine),
        )
        .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["key"], mine.as_str());
    assert_eq!(own["info"]["key_alias"], "mine");
    let (status, implicit) = proxy
        .call(Method::GET, "/key/info", None, Some(&mine))
        .await;
    assert_eq!(
        (status, &implicit["info"]["key_alias"]),
        (200, &json!("mine"))
    );

    let (status, body) = proxy
        .call(
            Method::GET,
            &format!("/key/info?key={theirs}"),
            None,
            Some(&mine),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_object(&body)["code"], "not_own_key");
    let (status, _) = get(&proxy, "/key/info?key=sk-does-not-exist").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn validation_errors_are_400_and_name_the_field() {
    let (_up, proxy) = gateway().await;
    for (body, field) in [
        (json!({"max_budget": "ten"}), "max_budget"),
        (json!({"max_budget": -1}), "max_budget"),
        (json!({"budget_duration": "7x"}), "budget_duration"),
        (json!({"duration": "soon"}), "duration"),
        (json!({"rpm_limit": -5}), "rpm_limit"),
        (json!({"models": "echo"}), "models"),
        (json!({"metadata": [1]}), "metadata"),
        (json!({"tags": [""]}), "tags"),
        (json!({"tags": ["a\u{1}b"]}), "tags"),
        (json!({"tags": ["t".repeat(257)]}), "tags"),
        (json!({"tags": vec!["t"; 33]}), "tags"),
        (json!({"key": "not-an-sk-key"}), "key"),
        (
            json!({"model_max_budget": {"echo": "lots"}}),
            "model_max_budget.echo",
        ),
    ] {
        let (status, err) = post(&proxy, "/key/generate", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(error_object(&err)["type"], "invalid_request_error");
        assert_eq!(error_object(&err)["param"], field, "{body} -> {err}");
    }
    let (status, err) = post(&proxy, "/user/new", json!({"user_role": "superuser"})).await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("user_role"))
    );
    let (status, err) = post(&proxy, "/key/update", json!({"rpm_limit": 1})).await;
    assert_eq!((status, &error_object(&err)["param"]), (400, &json!("key")));
    let (status, err) = proxy
        .call(Method::POST, "/key/generate", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "an empty body makes a default key: {err}");
    let (status, err) = get(&proxy, "/spend/logs?start_date=yesterday").await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("start_date"))
    );
}

#[tokio::test]
async fn restrictions_conclave_does_not_enforce_are_refused_by_name_and_empty_ones_pass() {
    let (_up, proxy) = gateway().await;
    for (route, body, field) in [
        (
            "/key/generate",
            json!({"guardrails": ["pii-mask"]}),
            "guardrails",
        ),
        (
            "/key/generate",
            json!({"enforced_params": ["user"]}),
            "enforced_params",
        ),
        (
            "/user/new",
            json!({"permissions": {"get_spend_routes": false}}),
            "permissions",
        ),
        (
            "/team/new",
            json!({"team_member_budget": 5}),
            "team_member_budget",
        ),
        (
            "/team/new",
            json!({"team_member_key_duration": "1d"}),
            "team_member_key_duration",
        ),
    ] {
        let (status, err) = post(&proxy, route, body.clone()).await;
        assert_eq!(status, 400, "{route} {body} -> {err}");
        assert_eq!(
            error_object(&err)["param"],
            field,
            "{route} {body} -> {err}"
        );
        assert!(
            error_object(&err)["message"]
                .as_str()
                .unwrap()
                .contains("does not enforce"),
            "{err}"
        );
    }
    let (status, listed) = get(&proxy, "/key/list").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["keys"],
        json!([]),
        "a refused key was not made: {listed}"
    );

    let defaults = json!({"allowed_routes": [], "guardrails": null, "permissions": {},
                          "enforced_params": [], "soft_budget": 10.0});
    let (status, made) = post(&proxy, "/key/generate", defaults).await;
    assert_eq!(status, 200, "defaults restrict nothing: {made}");

    let (_, team) = post(&proxy, "/team/new", json!({"team_alias": "t"})).await;
    let (status, err) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": team["team_id"], "member": {"user_id": "ada"}, "max_budget_in_team": 2}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(error_object(&err)["param"], "max_budget_in_team");
    let (_, info) = get(
        &proxy,
        &format!("/team/info?team_id={}", team["team_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(info["team_info"]["members_with_roles"], json!([]), "{info}");
}

#[tokio::test]
async fn unknown_entities_are_404() {
    let (_up, proxy) = gateway().await;
    for (path, body) in [
        (
            "/key/update",
            json!({"key": "sk-nope-nope", "rpm_limit": 1}),
        ),
        ("/key/block", json!({"key": "sk-nope-nope"})),
        ("/key/regenerate", json!({"key": "sk-nope-nope"})),
        ("/key/delete", json!({"keys": ["sk-nope-nope"]})),
        ("/key/generate", json!({"team_id": "no-such-team"})),
        ("/user/update", json!({"user_id": "ghost", "max_budget": 1})),
        ("/user/delete", json!({"user_ids": ["ghost"]})),
        ("/team/update", json!({"team_id": "ghost", "max_budget": 1})),
        ("/team/delete", json!({"team_ids": ["ghost"]})),
        (
            "/team/member_add",
            json!({"team_id": "ghost", "member": {"user_id": "u"}}),
        ),
    ] {
        let (status, err) = post(&proxy, path, body.clone()).await;
        assert_eq!(status, 404, "{path} {body} -> {err}");
        assert_eq!(error_object(&err)["type"], "not_found_error");
    }
    for path in ["/user/info?user_id=ghost", "/team/info?team_id=ghost"] {
        assert_eq!(get(&proxy, path).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn key_generate_answers_every_litellm_field_and_accepts_a_chosen_key() {
    let (_up, proxy) = gateway().await;
    let made = generate(
        &proxy,
        json!({"key": "sk-my-own-key-1234", "key_alias": "chosen", "tags": ["a"]}),
    )
    .await;
    assert_eq!(made["key"], "sk-my-own-key-1234");
    assert_eq!(made["key_name"], "sk-...1234");
    assert_eq!(made["token"], sha256("sk-my-own-key-1234"));
    for field in [
        "key",
        "key_name",
        "token",
        "expires",
        "key_alias",
        "user_id",
        "team_id",
        "models",
        "aliases",
        "max_budget",
        "spend",
        "budget_duration",
        "budget_reset_at",
        "tpm_limit",
        "rpm_limit",
        "max_parallel_requests",
        "metadata",
        "tags",
        "blocked",
        "model_max_budget",
        "model_rpm_limit",
        "model_tpm_limit",
        "created_at",
    ] {
        assert!(made.get(field).is_some(), "missing {field}: {made}");
    }
    assert!(made["expires"].is_null(), "no duration, no expiry");
    let (status, _) = post(
        &proxy,
        "/key/generate",
        json!({"key": "sk-my-own-key-1234"}),
    )
    .await;
    assert_eq!(status, 400, "a key value exists once");
    let (status, err) = post(&proxy, "/key/generate", json!({"key": MASTER})).await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("key")),
        "the master key is no virtual key's value: {err}"
    );
    for unsendable in ["sk-\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", "sk-with space-1"] {
        let (status, err) = post(&proxy, "/key/generate", json!({"key": unsendable})).await;
        assert_eq!(
            (status, &error_object(&err)["param"]),
            (400, &json!("key")),
            "no header carries {unsendable:?}: {err}"
        );
    }
    let (status, err) = post(&proxy, "/key/generate", json!({"key_alias": "chosen"})).await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("key_alias")),
        "{err}"
    );
}

#[tokio::test]
async fn key_delete_takes_keys_or_aliases_and_the_deleted_key_stops_working() {
    let (_up, proxy) = gateway().await;
    let a = key_of(&generate(&proxy, json!({"key_alias": "del-a"})).await);
    let b = key_of(&generate(&proxy, json!({"key_alias": "del-b"})).await);
    let (status, _) = proxy.call(Method::GET, "/key/info", None, Some(&a)).await;
    assert_eq!(status, 200, "the key works (and is cached) before deletion");
    let (status, body) = post(&proxy, "/key/delete", json!({"keys": [a]})).await;
    assert_eq!((status, body), (200, json!({"deleted_keys": [a]})));
    let (status, _) = proxy.call(Method::GET, "/key/info", None, Some(&a)).await;
    assert_eq!(status, 401, "a deleted key is refused at once");
    let (status, body) = post(&proxy, "/key/delete", json!({"key_aliases": ["del-b"]})).await;
    assert_eq!((status, body), (200, json!({"deleted_keys": ["del-b"]})));
    let (status, _) = proxy.call(Method::GET, "/key/info", None, Some(&b)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn key_list_pages_and_returns_full_objects_on_request() {
    let (_up, proxy) = gateway().await;
    for i in 0..5 {
        generate(
            &proxy,
            json!({"key_alias": format!("page-{i}"), "user_id": "lister"}),
        )
        .await;
    }
    generate(&proxy, json!({"key_alias": "elsewhere"})).await;
    let (status, page) = get(&proxy, "/key/list?user_id=lister&size=2&page=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_count"], 5);
    assert_eq!(page["total_pages"], 3);
    assert_eq!(page["current_page"], 3);
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    assert!(page["keys"][0].is_string(), "hashes by default");
    let (_, full) = get(
        &proxy,
        "/key/list?key_alias=elsewhere&return_full_object=true",
    )
    .await;
    assert_eq!(full["keys"][0]["key_alias"], "elsewhere");
    // A page larger than LiteLLM's lists allow is refused, not cut to 100.
    for size in ["101", "2147483648"] {
        let (status, err) = get(&proxy, &format!("/key/list?size={size}")).await;
        assert_eq!(
            (status, &error_object(&err)["param"]),
            (400, &json!("size")),
            "{err}"
        );
    }
    let (status, err) = get(&proxy, "/key/list?page=0").await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("page"))
    );
}

#[tokio::test]
async fn key_regenerate_by_path_keeps_spend_settings_and_refuses_the_old_value() {
    let (_up, proxy) = gateway().await;
    let old = key_of(&generate(&proxy, json!({"key_alias": "rot", "rpm_limit": 4})).await);
    let (status, rotated) = post(&proxy, &format!("/key/{old}/regenerate"), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = key_of(&rotated);
    assert_eq!(rotated["token"], sha256(&new));
    assert_eq!(rotated["rpm_limit"], 4);
    let (status, _) = get(&proxy, &format!("/key/info?key={old}")).await;
    assert_eq!(status, 404);
    let (status, info) = get(&proxy, &format!("/key/info?key={new}")).await;
    assert_eq!((status, &info["info"]["key_alias"]), (200, &json!("rot")));
}

#[tokio::test]
async fn users_are_created_with_a_key_updated_listed_and_deleted_with_their_keys() {
    let (_up, proxy) = gateway().await;
    let (status, user) = post(
        &proxy,
        "/user/new",
        json!({
            "user_id": "ann", "user_email": "ann@example.com", "user_role": "internal_user",
            "max_budget": 20, "budget_duration": "1d", "models": ["echo"], "rpm_limit": 30
        }),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    let key = user["key"].as_str().unwrap().to_owned();
    assert_eq!(user["user_id"], "ann");
    assert_eq!(user["max_budget"], 20.0);
    let reset_at = user["budget_reset_at"].as_str().unwrap();
    assert!(
        reset_at.ends_with("T00:00:00.000Z"),
        "a daily budget renews at midnight UTC, as in LiteLLM: {reset_at}"
    );
    let (status, info) = proxy.call(Method::GET, "/key/info", None, Some(&key)).await;
    assert_eq!(
        (status, &info["info"]["user_id"]),
        (200, &json!("ann")),
        "{info}"
    );

    let (status, updated) = post(
        &proxy,
        "/user/update",
        json!({"user_id": "ann", "rpm_limit": 5, "user_email": null}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["rpm_limit"], 5);
    assert!(updated["user_email"].is_null());
    assert_eq!(updated["max_budget"], 20.0);

    post(
        &proxy,
        "/user/new",
        json!({"user_id": "ben", "auto_create_key": false}),
    )
    .await;
    let (status, listed) = get(&proxy, "/user/list?page_size=1&page=2").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["users"][0]["user_id"], "ben");

    let (status, own) = proxy
        .call(Method::GET, "/user/info", None, Some(&key))
        .await;
    assert_eq!(
        (status, &own["user_id"]),
        (200, &json!("ann")),
        "a key reads its own user"
    );
    let (status, _) = proxy
        .call(Method::GET, "/user/info?user_id=ben", None, Some(&key))
        .await;
    assert_eq!(status, 403);

    let (status, deleted) = post(&proxy, "/user/delete", json!({"user_ids": ["ann"]})).await;
    assert_eq!((status, deleted), (200, json!({"deleted_users": ["ann"]})));
    let (status, _) = proxy.call(Method::GET, "/key/info", None, Some(&key)).await;
    assert_eq!(status, 401, "a deleted user's keys go with it");
}

#[tokio::test]
async fn teams_hold_members_and_keys_and_take_them_along_when_deleted() {
    let (_up, proxy) = gateway().await;
    let (status, team) = post(
        &proxy,
        "/team/new",
        json!({
            "team_alias": "Research", "members_with_roles": [{"user_id": "ada", "role": "admin"}],
            "tpm_limit": 1000, "models": ["echo", "other"], "metadata": {"cost_center": 7}
        }),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    assert!(team_id.starts_with("team-"), "{team_id}");
    assert_eq!(team["members"], json!(["ada"]));
    assert_eq!(team["members_with_roles"][0]["role"], "admin");

    let (status, added) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": team_id, "member": [{"user_id": "bo"}, {"user_id": "cy"}]}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["updated_users"], json!(["bo", "cy"]));
    let (status, removed) = post(
        &proxy,
        "/team/member_delete",
        json!({"team_id": team_id, "user_id": "bo"}),
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["members"], json!(["ada", "cy"]));
    let (status, _) = post(
        &proxy,
        "/team/member_delete",
        json!({"team_id": team_id, "user_id": "bo"}),
    )
    .await;
    assert_eq!(status, 404, "no longer a member");

    let (status, updated) = post(
        &proxy,
        "/team/update",
        json!({"team_id": team_id, "team_alias": "R&D", "blocked": true}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            &updated["team_alias"],
            &updated["blocked"],
            &updated["tpm_limit"]
        ),
        (&json!("R&D"), &json!(true), &json!(1000))
    );

    let key = key_of(&generate(&proxy, json!({"team_id": team_id})).await);
    let (status, info) = get(&proxy, &format!("/team/info?team_id={team_id}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["team_info"]["team_alias"], "R&D");
    assert_eq!(info["keys"].as_array().unwrap().len(), 1);
    assert_eq!(info["team_memberships"].as_array().unwrap().len(), 2);
    let (status, own) = proxy
        .call(
            Method::GET,
            &format!("/team/info?team_id={team_id}"),
            None,
            Some(&key),
        )
        .await;
    assert_eq!(status, 200, "a team's key reads its team: {own}");

    let (status, list) = get(&proxy, "/team/list").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    let (status, deleted) = post(&proxy, "/team/delete", json!({"team_ids": [team_id]})).await;
    assert_eq!(
        (status, deleted),
        (200, json!({"deleted_teams": [team_id]}))
    );
    let (status, _) = proxy.call(Method::GET, "/key/info", None, Some(&key)).await;
    assert_eq!(status, 401, "a deleted team's keys go with it");
}

#[tokio::test]
async fn team_models_and_member_roles_change_through_litellms_routes() {
    let (_up, proxy) = gateway().await;
    let (_, team) = post(
        &proxy,
        "/team/new",
        json!({"models": ["echo"], "members_with_roles": [{"user_id": "ada", "role": "user"}]}),
    )
    .await;
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    let key = key_of(&generate(&proxy, json!({"team_id": team_id})).await);
    assert_eq!(chat_as(&proxy, &key, "other").await.0, 403);

    let (status, added) = post(
        &proxy,
        "/team/model/add",
        json!({"team_id": team_id, "models": ["other", "echo"]}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["models"], json!(["echo", "other"]), "{added}");
    assert_eq!(
        chat_as(&proxy, &key, "other").await.0,
        200,
        "the team may use it now"
    );

    let (status, removed) = post(
        &proxy,
        "/team/model/delete",
        json!({"team_id": team_id, "models": ["other"]}),
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["models"], json!(["echo"]), "{removed}");
    assert_eq!(chat_as(&proxy, &key, "other").await.0, 403, "and no longer");
    let (status, _) = post(
        &proxy,
        "/team/model/add",
        json!({"team_id": "no-such-team", "models": ["other"]}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, refused) = post(
        &proxy,
        "/team/model/add",
        json!({"team_id": team_id, "models": ["echo", " other"]}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "models[1]", "{refused}");

    let (status, member) = post(
        &proxy,
        "/team/member_update",
        json!({"team_id": team_id, "user_id": "ada", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(
        (&member["user_id"], &member["role"]),
        (&json!("ada"), &json!("admin"))
    );
    let (_, info) = get(&proxy, &format!("/team/info?team_id={team_id}")).await;
    assert_eq!(
        info["team_info"]["members_with_roles"][0]["role"], "admin",
        "{info}"
    );
    for (body, param) in [
        (
            json!({"team_id": team_id, "user_id": "ada", "max_budget_in_team": 5}),
            "max_budget_in_team",
        ),
        (
            json!({"team_id": team_id, "user_id": "ada", "role": "owner"}),
            "role",
        ),
        (
            json!({"team_id": team_id, "user_id": "nobody", "role": "user"}),
            "user_id",
        ),
    ] {
        let (status, refused) = post(&proxy, "/team/member_update", body).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["param"], param, "{refused}");
    }
}

#[tokio::test]
async fn an_expired_key_is_refused_by_the_management_api() {
    let (_up, proxy) = gateway().await;
    let key = key_of(&generate(&proxy, json!({"duration": "1s"})).await);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (status, body) = proxy.call(Method::GET, "/key/info", None, Some(&key)).await;
    assert_eq!(status, 401, "{body}");
    let (status, info) = get(&proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(status, 200, "the master key still sees it");
    assert!(info["info"]["expires"].is_string());
}

#[tokio::test]
async fn spend_routes_answer_empty_in_litellm_shapes() {
    let (_up, proxy) = gateway().await;
    let (status, logs) = get(&proxy, "/spend/logs").await;
    assert_eq!((status, logs), (200, json!([])));
    let (status, report) = get(
        &proxy,
        "/global/spend/report?start_date=2026-01-01&end_date=2026-01-31",
    )
    .await;
    assert_eq!((status, report), (200, json!([])));
    let (status, err) = get(
        &proxy,
        "/global/spend/report?start_date=2026-02-01&end_date=2026-01-01",
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let key = key_of(&generate(&proxy, json!({})).await);
    let (status, _) = proxy
        .call(Method::GET, "/spend/logs", None, Some(&key))
        .await;
    assert_eq!(status, 403, "spend logs are for admins");
}

#[tokio::test]
async fn user_and_team_lists_apply_litellms_filters() {
    let (_up, proxy) = gateway().await;
    for (id, role) in [
        ("ana", "internal_user"),
        ("ben", "proxy_admin"),
        ("cal", "internal_user"),
    ] {
        let (status, body) = post(
            &proxy,
            "/user/new",
            json!({"user_id": id, "user_role": role, "auto_create_key": false}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    for team in ["red", "blue"] {
        let (status, body) = post(&proxy, "/team/new", json!({"team_id": team})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": "red", "member": {"user_id": "cal", "role": "user"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let users = |body: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (_, body) = get(&proxy, "/user/list?user_ids=ana,cal").await;
    assert_eq!(users(&body), ["ana", "cal"]);
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = get(&proxy, "/user/list?role=proxy_admin").await;
    assert_eq!(users(&body), ["ben"]);
    let (_, body) = get(&proxy, "/user/list?team=red").await;
    assert_eq!(users(&body), ["cal"]);
    let (_, body) = get(&proxy, "/team/list?user_id=cal").await;
    let teams: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team_id"].as_str().unwrap())
        .collect();
    assert_eq!(teams, ["red"]);
}

#[tokio::test]
async fn key_regenerate_takes_a_chosen_value_and_the_fields_to_change() {
    let (_up, proxy) = gateway().await;
    let old = key_of(&generate(&proxy, json!({"rpm_limit": 4})).await);
    let chosen = "sk-chosen-by-the-admin-0001";
    let (status, rotated) = post(
        &proxy,
        "/key/regenerate",
        json!({"key": old, "new_key": chosen, "rpm_limit": 9, "key_alias": "fresh"}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(key_of(&rotated), chosen);
    assert_eq!(rotated["rpm_limit"], 9, "{rotated}");
    let (status, info) = get(&proxy, &format!("/key/info?key={chosen}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["info"]["key_alias"], "fresh");
    assert_eq!(info["info"]["rpm_limit"], 9);
    let (status, body) = post(
        &proxy,
        "/key/regenerate",
        json!({"key": chosen, "new_key": "not-a-key"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "new_key", "{body}");
}

#[tokio::test]
async fn every_key_a_concurrent_regenerate_answers_with_works() {
    let (_up, proxy) = gateway().await;
    let old = key_of(&generate(&proxy, json!({})).await);
    let rotations = (0..8).map(|_| post(&proxy, "/key/regenerate", json!({"key": old})));
    let answers = futures_util::future::join_all(rotations).await;
    let mut issued = Vec::new();
    for (status, body) in answers {
        match status {
            200 => issued.push(key_of(&body)),
            404 => assert_eq!(body["error"]["param"], "key", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(!issued.is_empty(), "one regenerate wins");
    for key in issued {
        let (status, body) = chat_as(&proxy, &key, "echo").await;
        assert_eq!(status, 200, "an issued key that does not work: {body}");
    }
}

#[tokio::test]
async fn key_delete_reports_only_the_keys_that_existed() {
    let (_up, proxy) = gateway().await;
    let real = key_of(&generate(&proxy, json!({})).await);
    let (status, body) = post(
        &proxy,
        "/key/delete",
        json!({"keys": [real, "sk-never-issued-by-this-gateway"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted_keys"], json!([real]));
    let (status, body) = post(&proxy, "/key/delete", json!({"keys": []})).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn limits_written_as_strings_are_read_as_numbers_and_other_text_is_refused() {
    let (_up, proxy) = gateway().await;
    let created = generate(&proxy, json!({"max_budget": "5", "rpm_limit": "12"})).await;
    assert_eq!(created["max_budget"], 5.0, "{created}");
    assert_eq!(created["rpm_limit"], 12, "{created}");
    let (status, body) = post(&proxy, "/key/generate", json!({"rpm_limit": "many"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "rpm_limit", "{body}");
    let (status, body) = post(&proxy, "/key/generate", json!({"rpm_limit": 2.5})).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn team_members_named_by_email_are_found_or_made_and_removed_by_email() {
    let (_up, proxy) = gateway().await;
    post(&proxy, "/team/new", json!({"team_id": "mail-team"})).await;
    let (status, known) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ann", "user_email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{known}");
    let (status, team) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": "mail-team", "member": [
            {"role": "user", "user_email": "ann@example.com"},
            {"role": "admin", "user_email": "new@example.com"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let added = team["updated_users"].as_array().unwrap();
    assert_eq!(
        added[0], "ann",
        "an existing user is found by email: {team}"
    );
    let made = added[1].as_str().unwrap().to_owned();
    let (status, user) = get(&proxy, &format!("/user/info?user_id={made}")).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["user_info"]["user_email"], "new@example.com");
    assert_eq!(user["user_info"]["teams"], json!(["mail-team"]), "{user}");

    let (status, team) = post(
        &proxy,
        "/team/member_delete",
        json!({"team_id": "mail-team", "user_email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let (_, ann) = get(&proxy, "/user/info?user_id=ann").await;
    assert_eq!(ann["user_info"]["teams"], json!([]), "{ann}");
    let (status, missing) = post(
        &proxy,
        "/team/member_delete",
        json!({"team_id": "mail-team", "user_email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    let (status, updated) = post(
        &proxy,
        "/user/update",
        json!({"user_email": "ann@example.com", "max_budget": 6}),
    )
    .await;
    assert_eq!(status, 200, "a user is updated by email too: {updated}");
    assert_eq!(updated["user_id"], "ann", "{updated}");
    assert_eq!(updated["max_budget"], 6.0, "{updated}");
    let (status, neither) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": "mail-team", "member": {"role": "user"}}),
    )
    .await;
    assert_eq!(status, 400, "{neither}");
    assert!(neither.to_string().contains("user_email"), "{neither}");
}

#[tokio::test]
async fn an_email_belongs_to_one_user_whatever_its_case() {
    let (_up, proxy) = gateway().await;
    let (status, _) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ann", "user_email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 200);
    post(&proxy, "/user/new", json!({"user_id": "bob"})).await;
    for (path, body) in [
        ("/user/new", json!({"user_email": "ANN@example.com"})),
        (
            "/user/new",
            json!({"user_id": "ann2", "user_email": "ann@example.com"}),
        ),
        (
            "/user/update",
            json!({"user_id": "bob", "user_email": "Ann@Example.com"}),
        ),
    ] {
        let (status, refused) = post(&proxy, path, body).await;
        assert_eq!(status, 400, "{path}: {refused}");
        assert_eq!(error_object(&refused)["param"], "user_email", "{refused}");
    }
    // Found whatever its case.
    let (status, updated) = post(
        &proxy,
        "/user/update",
        json!({"user_email": "ANN@EXAMPLE.COM", "max_budget": 3}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["user_id"], "ann", "{updated}");
    // A user keeps its own email.
    let (status, kept) = post(
        &proxy,
        "/user/update",
        json!({"user_id": "ann", "user_email": "ann@example.com", "max_budget": 4}),
    )
    .await;
    assert_eq!(status, 200, "{kept}");
}

#[tokio::test]
async fn a_refused_member_list_writes_nothing() {
    let (_up, proxy) = gateway().await;
    let (status, body) = post(
        &proxy,
        "/team/new",
        json!({"team_id": "partial", "members_with_roles": [{"user_id": "alice"}, {"user_id": ""}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&proxy, "/team/info?team_id=partial").await;
    assert_eq!(status, 404, "the refused team was not made");
    let (status, _) = get(&proxy, "/user/info?user_id=alice").await;
    assert_eq!(status, 404, "nor its first member");

    post(&proxy, "/team/new", json!({"team_id": "whole"})).await;
    let (status, body) = post(
        &proxy,
        "/team/member_add",
        json!({"team_id": "whole", "member": [{"user_id": "kim"}, {"user_id": "lee", "role": "owner"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("role"), "{body}");
    let (_, team) = get(&proxy, "/team/info?team_id=whole").await;
    assert_eq!(team["team_info"]["members_with_roles"], json!([]), "{team}");
    let add_kim = json!({"team_id": "whole", "member": {"user_id": "kim", "role": "user"}});
    let (status, _) = post(&proxy, "/team/member_add", add_kim.clone()).await;
    assert_eq!(status, 200);
    let (status, again) = post(&proxy, "/team/member_add", add_kim).await;
    assert_eq!(
        status, 400,
        "as in LiteLLM, a member is not added twice: {again}"
    );
    assert!(again.to_string().contains("already a member"), "{again}");
}

/// `bulk_member_add` adds each member on its own: one that cannot be added
/// is reported and the others still join; `all_users` adds every user.
#[tokio::test]
async fn bulk_member_add_reports_each_member_and_adds_the_good_ones() {
    let (_up, proxy) = gateway().await;
    post(&proxy, "/team/new", json!({"team_id": "bulk"})).await;
    post(
        &proxy,
        "/team/member_add",
        json!({"team_id": "bulk", "member": {"user_id": "kim"}}),
    )
    .await;
    let (status, body) = post(
        &proxy,
        "/team/bulk_member_add",
        json!({"team_id": "bulk", "members": [
            {"user_id": "kim"}, {"user_id": "lee", "role": "admin"},
            {"user_id": "max", "role": "owner"}, {"user_email": "ann@example.com"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_requested"], 4, "{body}");
    assert_eq!(body["successful_additions"], 2, "{body}");
    assert_eq!(body["failed_additions"], 2, "{body}");
    let ok: Vec<bool> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["success"].as_bool().unwrap())
        .collect();
    assert_eq!(ok, [false, true, false, true], "{body}");
    assert!(
        body["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("already a member")
    );
    assert!(
        body["results"][2]["error"]
            .as_str()
            .unwrap()
            .contains("role")
    );
    let members = body["updated_team"]["members_with_roles"]
        .as_array()
        .unwrap();
    assert_eq!(members.len(), 3, "kim, lee and ann's new user: {body}");
    for (user, role) in [("kim", "user"), ("lee", "admin")] {
        assert!(
            members.contains(&json!({"user_id": user, "role": role})),
            "{body}"
        );
    }

    post(&proxy, "/user/new", json!({"user_id": "zoe"})).await;
    post(&proxy, "/team/new", json!({"team_id": "everyone"})).await;
    let (status, body) = post(
        &proxy,
        "/team/bulk_member_add",
        json!({"team_id": "everyone", "all_users": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["updated_team"]["members_with_roles"]
            .to_string()
            .contains("zoe"),
        "{body}"
    );
    assert_eq!(body["failed_additions"], 0, "{body}");

    let (status, body) = post(&proxy, "/team/bulk_member_add", json!({"team_id": "bulk"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "members", "{body}");
    let (status, _) = post(
        &proxy,
        "/team/bulk_member_add",
        json!({"team_id": "nope", "members": [{"user_id": "a"}]}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn user_new_applies_team_alias_and_duration_to_the_users_first_key() {
    let (_up, proxy) = gateway().await;
    post(&proxy, "/team/new", json!({"team_id": "research"})).await;
    let (status, user) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "joe", "team_id": "research", "key_alias": "joe-key", "duration": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["teams"], json!(["research"]), "{user}");
    assert!(user["expires"].is_string(), "{user}");
    let key = user["key"].as_str().unwrap();
    let (_, info) = get(&proxy, &format!("/key/info?key={key}")).await;
    assert_eq!(info["info"]["team_id"], "research", "{info}");
    assert_eq!(info["info"]["key_alias"], "joe-key", "{info}");
    let (status, refused) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ghost", "team_id": "no-such-team"}),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
}

#[tokio::test]
async fn an_internal_user_manages_its_own_keys_and_only_those() {
    let (_up, proxy) = gateway().await;
    post(&proxy, "/team/new", json!({"team_id": "theirs"})).await;
    let (status, ivy) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ivy", "user_role": "internal_user"}),
    )
    .await;
    assert_eq!(status, 200, "{ivy}");
    post(
        &proxy,
        "/team/new",
        json!({"team_id": "ours", "members_with_roles": [{"user_id": "ivy"}]}),
    )
    .await;
    let ivy_key = ivy["key"].as_str().unwrap().to_owned();
    let other = key_of(&generate(&proxy, json!({"user_id": "someone-else"})).await);
    let as_ivy = |method: Method, path: &'static str, body: Option<serde_json::Value>| {
        let proxy = &proxy;
        let key = ivy_key.clone();
        async move { proxy.call(method, path, body, Some(&key)).await }
    };

    let (status, made) = as_ivy(
        Method::POST,
        "/key/generate",
        Some(json!({"key_alias": "ivy-2", "team_id": "ours"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(
        made["user_id"], "ivy",
        "the key is the caller's own: {made}"
    );
    let made_key = key_of(&made);
    let (status, listed) = as_ivy(Method::GET, "/key/list?return_full_object=true", None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["total_count"], 2, "only ivy's keys: {listed}");
    let (status, _) = proxy
        .call(
            Method::POST,
            "/key/update",
            Some(json!({"key": made_key, "max_budget": 3})),
            Some(&ivy_key),
        )
        .await;
    assert_eq!(status, 200);

    for (path, body) in [
        ("/key/generate", json!({"user_id": "someone-else"})),
        ("/key/generate", json!({"team_id": "theirs"})),
        ("/key/update", json!({"key": other, "max_budget": 1})),
        ("/key/delete", json!({"keys": [other]})),
        ("/key/regenerate", json!({"key": other})),
    ] {
        let (status, refused) = proxy
            .call(Method::POST, path, Some(body.clone()), Some(&ivy_key))
            .await;
        assert_eq!(status, 403, "{path} {body}: {refused}");
    }
    let (status, _) = as_ivy(Method::GET, "/key/list?user_id=someone-else", None).await;
    assert_eq!(status, 403);
    let (status, _) = as_ivy(Method::POST, "/key/block", Some(json!({"key": made_key}))).await;
    assert_eq!(status, 403, "blocking stays an administrator's");
    let (status, deleted) = proxy
        .call(
            Method::POST,
            "/key/delete",
            Some(json!({"keys": [made_key]})),
            Some(&ivy_key),
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
}

#[tokio::test]
async fn null_clears_lists_and_metadata_on_every_update_route() {
    let (_up, proxy) = gateway().await;
    let made = generate(
        &proxy,
        json!({"models": ["m"], "aliases": {"a": "m"}, "metadata": {"x": 1}, "tags": ["t"]}),
    )
    .await;
    let (status, updated) = post(
        &proxy,
        "/key/update",
        json!({"key": key_of(&made), "models": null, "aliases": null, "metadata": null, "tags": null}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    for (field, empty) in [
        ("models", json!([])),
        ("aliases", json!({})),
        ("metadata", json!({})),
        ("tags", json!([])),
    ] {
        assert_eq!(updated[field], empty, "{field}: {updated}");
    }
    post(
        &proxy,
        "/user/new",
        json!({"user_id": "nul", "models": ["m"], "metadata": {"x": 1}, "auto_create_key": false}),
    )
    .await;
    post(
        &proxy,
        "/team/new",
        json!({"team_id": "nul-team", "models": ["m"], "metadata": {"x": 1}}),
    )
    .await;
    for (path, id) in [
        ("/user/update", json!({"user_id": "nul"})),
        ("/team/update", json!({"team_id": "nul-team"})),
    ] {
        let mut body = id.clone();
        body["models"] = json!(null);
        body["metadata"] = json!(null);
        let (status, answer) = post(&proxy, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let text = answer.to_string();
        assert!(
            text.contains("\"models\":[]") && text.contains("\"metadata\":{}"),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn an_internal_user_may_tighten_its_key_but_not_loosen_it() {
    let (_up, proxy) = gateway().await;
    let (status, ida) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ida", "user_role": "internal_user"}),
    )
    .await;
    assert_eq!(status, 200, "{ida}");
    let ida_key = ida["key"].as_str().unwrap().to_owned();
    let limited = key_of(
        &generate(
            &proxy,
            json!({"user_id": "ida", "max_budget": 5, "rpm_limit": 10, "models": ["m"], "duration": "1h"}),
        )
        .await,
    );
    let (status, blocked) = post(&proxy, "/key/block", json!({"key": limited})).await;
    assert_eq!(status, 200, "{blocked}");
    let as_ida = |body: serde_json::Value| {
        let proxy = &proxy;
        let key = ida_key.clone();
        async move {
            proxy
                .call(Method::POST, "/key/update", Some(body), Some(&key))
                .await
        }
    };
    for (change, field) in [
        (json!({"blocked": false}), "blocked"),
        (json!({"max_budget": 50}), "max_budget"),
        (json!({"max_budget": null}), "max_budget"),
        (json!({"rpm_limit": 11}), "rpm_limit"),
        (json!({"spend": 0}), "spend"),
        (json!({"models": []}), "models"),
        (json!({"models": ["m", "other"]}), "models"),
        (json!({"duration": null}), "duration"),
        (json!({"duration": "30d"}), "duration"),
        (json!({"budget_duration": "1s"}), "budget_duration"),
    ] {
        let mut body = change.clone();
        body["key"] = json!(limited);
        let (status, refused) = as_ida(body).await;
        assert_eq!(status, 403, "{change}: {refused}");
        let error = error_object(&refused);
        assert_eq!(error["param"], field, "{change}: {refused}");
        assert_eq!(error["code"], "admin_only_field", "{change}: {refused}");
    }
    let regenerated = proxy
        .call(
            Method::POST,
            "/key/regenerate",
            Some(json!({"key": limited, "max_budget": 50})),
            Some(&ida_key),
        )
        .await;
    assert_eq!(regenerated.0, 403, "{}", regenerated.1);
    // Tightening, and the fields that limit nothing, are the user's.
    let (status, tightened) = as_ida(
        json!({"key": limited, "max_budget": 2, "rpm_limit": 3, "key_alias": "mine", "duration": "10m"}),
    )
    .await;
    assert_eq!(status, 200, "{tightened}");
    assert_eq!(tightened["max_budget"], 2.0, "{tightened}");
    // Deleting a key that does not exist says no more than for another's.
    for body in [
        json!({"key_aliases": ["no-such-alias"]}),
        json!({"keys": ["sk-no-such-key-at-all"]}),
    ] {
        let (status, refused) = proxy
            .call(
                Method::POST,
                "/key/delete",
                Some(body.clone()),
                Some(&ida_key),
            )
            .await;
        assert_eq!(status, 403, "{body}: {refused}");
        assert_eq!(error_object(&refused)["code"], "not_own_key", "{refused}");
    }
}

#[tokio::test]
async fn a_daily_budget_renews_at_midnight_in_the_configured_time_zone() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "{}litellm_settings:\n  timezone: Asia/Kolkata\n",
        config(&up, &[])
    );
    let proxy = start(&yaml).await;
    let made = generate(&proxy, json!({"max_budget": 5, "budget_duration": "1d"})).await;
    let reset_at = made["budget_reset_at"].as_str().unwrap();
    // Kolkata keeps UTC+5:30 all year, so its midnight is 18:30 UTC.
    assert!(reset_at.ends_with("T18:30:00.000Z"), "{reset_at}");
}

#[tokio::test]
async fn a_daily_budget_renews_at_the_configured_time_of_day() {
    let up = FakeUpstream::start().await;
    // Unquoted, as LiteLLM's documentation writes it.
    let yaml = format!(
        "{}litellm_settings:\n  timezone: Asia/Kolkata\n  budget_reset_time: 12:00\n",
        config(&up, &[])
    );
    let proxy = start(&yaml).await;
    let made = generate(&proxy, json!({"max_budget": 5, "budget_duration": "1d"})).await;
    let reset_at = made["budget_reset_at"].as_str().unwrap();
    // Noon in Kolkata (UTC+5:30) is 06:30 UTC.
    assert!(reset_at.ends_with("T06:30:00.000Z"), "{reset_at}");
    let hourly = generate(&proxy, json!({"max_budget": 5, "budget_duration": "1h"})).await;
    let reset_at = hourly["budget_reset_at"].as_str().unwrap();
    // Hours keep to the clock's half hours there, whatever the time of day.
    assert!(reset_at.ends_with(":30:00.000Z"), "{reset_at}");
}

#[tokio::test]
async fn litellms_words_for_budget_periods_are_accepted() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, &[])).await;
    let monthly = generate(
        &proxy,
        json!({"max_budget": 5, "budget_duration": "monthly"}),
    )
    .await;
    let reset_at = monthly["budget_reset_at"].as_str().unwrap();
    assert!(reset_at.ends_with("-01T00:00:00.000Z"), "{reset_at}");
    assert_eq!(monthly["budget_duration"], "monthly");
    let daily = generate(&proxy, json!({"max_budget": 5, "budget_duration": "Daily"})).await;
    let reset_at = daily["budget_reset_at"].as_str().unwrap();
    assert!(reset_at.ends_with("T00:00:00.000Z"), "{reset_at}");
}

/// LiteLLM's `default_key_generate_params` fill what a new key's body
/// leaves out; `upperbound_key_generate_params` fill the rest and refuse
/// more, on `/key/generate` and on the changes `/key/regenerate` brings.
#[tokio::test]
async fn the_configs_defaults_and_ceilings_shape_new_keys() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "{}litellm_settings:\n  default_key_generate_params:\n    max_budget: 5\n    models: [echo]\n  upperbound_key_generate_params:\n    max_budget: 50\n    rpm_limit: 100\n    duration: 30d\n",
        config(&up, &[])
    );
    let proxy = start(&yaml).await;
    let made = generate(&proxy, json!({"key_alias": "self-service"})).await;
    assert_eq!(made["max_budget"], 5.0, "{made}");
    assert_eq!(made["models"], json!(["echo"]));
    assert_eq!(made["rpm_limit"], 100);
    assert!(made["expires"].is_string(), "{made}");
    let own = generate(&proxy, json!({"max_budget": 20, "models": ["other"]})).await;
    assert_eq!(
        (own["max_budget"].as_f64(), &own["models"]),
        (Some(20.0), &json!(["other"]))
    );

    for (body, field) in [
        (json!({"max_budget": 51}), "max_budget"),
        (json!({"rpm_limit": "101"}), "rpm_limit"),
        (json!({"duration": "31d"}), "duration"),
    ] {
        let (status, answer) = post(&proxy, "/key/generate", body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["param"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upperbound_key_generate_params"),
            "{answer}"
        );
    }
    let (status, answer) = post(
        &proxy,
        "/key/regenerate",
        json!({"key": key_of(&made), "max_budget": 500}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("max_budget"))
    );
}

/// A team member's key reads its team, but of the team's keys only those
/// `/key/info` would show it: another member's key, its metadata and spend
/// stay hidden.
#[tokio::test]
async fn a_members_team_info_lists_only_the_keys_it_may_read() {
    let (_up, proxy) = gateway().await;
    for user in ["alice", "bob"] {
        let (status, made) = post(
            &proxy,
            "/user/new",
            json!({"user_id": user, "user_role": "internal_user"}),
        )
        .await;
        assert_eq!(status, 200, "{made}");
    }
    let (status, team) = post(
        &proxy,
        "/team/new",
        json!({"team_id": "shared", "members_with_roles": [
            {"user_id": "alice", "role": "user"}, {"user_id": "bob", "role": "user"}]}),
    )
    .await;
    assert_eq!(status, 200, "{team}");
    let alice = generate(&proxy, json!({"user_id": "alice", "team_id": "shared"})).await;
    let bob = generate(
        &proxy,
        json!({"user_id": "bob", "team_id": "shared", "metadata": {"note": "bob's own"}}),
    )
    .await;
    let (status, all) = get(&proxy, "/team/info?team_id=shared").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["keys"].as_array().unwrap().len(),
        2,
        "the master key reads all: {all}"
    );

    let (status, seen) = proxy
        .call(
            Method::GET,
            "/team/info?team_id=shared",
            None,
            Some(&key_of(&alice)),
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    let listed: Vec<&str> = seen["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["token"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sha256(&key_of(&alice))], "{seen}");
    assert!(!seen.to_string().contains("bob's own"), "{seen}");
    assert!(!seen.to_string().contains(&sha256(&key_of(&bob))), "{seen}");
}

/// An internal_user's key in one team, moved into another of the user's
/// teams, would leave behind the first team's budget, models and limits:
/// only an administrator moves it.
#[tokio::test]
async fn an_internal_user_may_not_move_its_key_to_another_team() {
    let (_up, proxy) = gateway().await;
    let (status, ida) = post(
        &proxy,
        "/user/new",
        json!({"user_id": "ida", "user_role": "internal_user"}),
    )
    .await;
    assert_eq!(status, 200, "{ida}");
    for team in ["first", "second"] {
        let (status, made) = post(
            &proxy,
            "/team/new",
            json!({"team_id": team, "max_budget": 1, "members_with_roles": [{"user_id": "ida", "role": "user"}]}),
        )
        .await;
        assert_eq!(status, 200, "{made}");
    }
    let key = key_of(&generate(&proxy, json!({"user_id": "ida", "team_id": "first"})).await);
    let (status, refused) = proxy
        .call(
            Method::POST,
            "/key/update",
            Some(json!({"key": key, "team_id": "second"})),
            Some(ida["key"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(error_object(&refused)["param"], "team_id", "{refused}");
    let (status, moved) = post(
        &proxy,
        "/key/update",
        json!({"key": key, "team_id": "second"}),
    )
    .await;
    assert_eq!(
        (status, &moved["team_id"]),
        (200, &json!("second")),
        "{moved}"
    );
}

/// What a client stores on a key is kept in every cached copy of it: its
/// metadata and lists are bounded, and a body over a bound is a 400 naming
/// the field, not a key that grows the gateway's memory.
#[tokio::test]
async fn oversized_metadata_and_lists_are_refused_naming_the_field() {
    let (_up, proxy) = gateway().await;
    let models: Vec<String> = (0..1001).map(|i| format!("m{i}")).collect();
    for (body, field) in [
        (
            json!({"metadata": {"blob": "x".repeat(20 * 1024)}}),
            "metadata",
        ),
        (json!({"models": models}), "models"),
        (json!({"tags": ["t".repeat(600)]}), "tags"),
    ] {
        let (status, refused) = post(&proxy, "/key/generate", body).await;
        assert_eq!(status, 400, "{field}: {refused}");
        assert_eq!(error_object(&refused)["param"], field, "{refused}");
    }
    let (status, made) = post(
        &proxy,
        "/key/generate",
        json!({"metadata": {"note": "x".repeat(1024)}}),
    )
    .await;
    assert_eq!(status, 200, "an ordinary note is kept: {made}");
}

#[tokio::test]
async fn key_type_sets_the_route_group_as_litellm_does() {
    let (_up, proxy) = gateway().await;
    let read_only = generate(&proxy, json!({"key_type": "read_only"})).await;
    assert_eq!(
        read_only["allowed_routes"],
        json!(["info_routes"]),
        "{read_only}"
    );
    let key = key_of(&read_only);
    let (status, err) = chat_as(&proxy, &key, "echo").await;
    assert_eq!(status, 403, "a read-only key spends nothing: {err}");
    let llm_api = generate(&proxy, json!({"key_type": "llm_api"})).await;
    assert_eq!(llm_api["allowed_routes"], json!(["llm_api_routes"]));
    let (status, err) = post(&proxy, "/key/generate", json!({"key_type": "bogus"})).await;
    assert_eq!(
        (status, &error_object(&err)["param"]),
        (400, &json!("key_type")),
        "{err}"
    );
}

#[tokio::test]
async fn the_gateways_budget_user_gets_no_key_and_one_request_adds_at_most_1000_members() {
    let (_up, proxy) = gateway().await;
    for (route, body) in [
        ("/key/generate", json!({"user_id": "litellm-proxy-budget"})),
        ("/user/new", json!({"user_id": "litellm-proxy-budget"})),
    ] {
        let (status, err) = post(&proxy, route, body).await;
        assert_eq!(status, 400, "{route}: {err}");
        assert_eq!(error_object(&err)["param"], "user_id", "{err}");
    }
    let members: Vec<_> = (0..1001)
        .map(|i| json!({"user_id": format!("u{i}"), "role": "user"}))
        .collect();
    let (status, err) = post(&proxy, "/team/new", json!({"members_with_roles": members})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("at most 1000"), "{err}");
    let (_, listed) = get(&proxy, "/team/list").await;
    assert_eq!(listed, json!([]), "a refused team was not made: {listed}");
}

#[tokio::test]
async fn a_refused_regenerate_leaves_the_key_as_it_was() {
    let (_up, proxy) = gateway().await;
    let made = generate(&proxy, json!({})).await;
    let key = key_of(&made);
    generate(&proxy, json!({"key_alias": "taken"})).await;
    for body in [
        json!({"key_alias": "taken"}),
        json!({"key_type": "bogus"}),
        json!({"user_id": "litellm-proxy-budget"}),
        json!({"auto_rotate": true}),
    ] {
        let (status, err) = post(&proxy, &format!("/key/{key}/regenerate"), body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        let (status, answer) = chat_as(&proxy, &key, "echo").await;
        assert_eq!(status, 200, "the key still works after {body}: {answer}");
    }
}
