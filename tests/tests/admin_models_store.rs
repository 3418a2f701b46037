//! Runtime models kept in the key store (`general_settings.store_model_in_db`)
//! through the real binary: a registration survives restarts on the same
//! SQLite file and a deletion does too; a stored registration the config
//! no longer allows is skipped with a warning naming it; without a master
//! key the setting is a warning (at start-up and from `conclave check`), and
//! beside `--persist-admin-changes` the store wins. Two instances on one PostgreSQL and one Redis see each other's
//! registrations and deletions within a second (skipped with the reason
//! when PostgreSQL or Redis is not reachable, failed under `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::proxy::TempDir;
use conclave_e2e::services;
use conclave_e2e::{Behavior, FakeUpstream, Launch, Proxy, chat_body, deployment, error_object};
use serde_json::{Value, json};

const MASTER: &str = "sk-store-master";
const SECRET: &str = "sk-stored-runtime-secret-7171";

/// `echo` on the fake, the master key (unless `None`), `database_url`, and
/// `store_model_in_db: true`, plus more `general_settings` lines.
fn config(up: &FakeUpstream, master: Option<&str>, database_url: &str, extra: &[&str]) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployment(
        "echo",
        "openai/echo-up",
        &up.api_base("echo"),
        &[],
    ));
    yaml.push_str("router_settings:\n  num_retries: 0\n");
    yaml.push_str("general_settings:\n  store_model_in_db: true\n");
    yaml.push_str(&format!("  database_url: {database_url}\n"));
    match master {
        Some(key) => yaml.push_str(&format!("  master_key: {key}\n")),
        None => yaml.push_str("  admin_without_key_on_loopback: true\n"),
    }
    for line in extra {
        yaml.push_str(&format!("  {line}\n"));
    }
    yaml
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("models.db").display())
}

async fn start(yaml: &str, launch: Launch) -> Proxy {
    Proxy::launch(yaml, launch).await
}

async fn register(proxy: &Proxy, key: Option<&str>, body: Value) -> (u16, Value) {
    proxy
        .call(reqwest::Method::POST, "/admin/models", Some(body), key)
        .await
}

async fn delete(proxy: &Proxy, key: Option<&str>, model: &str) -> (u16, Value) {
    let path = format!("/admin/models/{model}");
    proxy.call(reqwest::Method::DELETE, &path, None, key).await
}

async fn chat(proxy: &Proxy, key: Option<&str>, model: &str) -> (u16, Value) {
    proxy
        .call(
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(chat_body(model, "x")),
            key,
        )
        .await
}

/// The model names `GET /admin/models` lists.
async fn listed(proxy: &Proxy, key: Option<&str>) -> Vec<String> {
    let (status, body) = proxy
        .call(reqwest::Method::GET, "/admin/models", None, key)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(SECRET), "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_stored_registration_survives_restarts_and_so_does_its_deletion() {
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    let state = TempDir::new();
    let yaml = config(&up, Some(MASTER), &sqlite_url(&state), &[]);
    let key = Some(MASTER);

    let first = start(&yaml, Launch::default()).await;
    let (status, body) = register(
        &first,
        key,
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": SECRET,
               "fallbacks": ["echo"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = chat(&first, key, "rt").await;
    assert_eq!(status, 200, "{body}");
    assert!(!first.logs().contains(SECRET), "{}", first.logs());
    first.stop().await;

    // The model serves from the first request after a restart.
    let second = start(&yaml, Launch::default()).await;
    let (status, body) = chat(&second, key, "rt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from rt");
    let sent = up
        .recorded()
        .into_iter()
        .rev()
        .find(|r| r.deployment == "rt")
        .unwrap();
    assert_eq!(sent.headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(listed(&second, key).await, vec!["rt".to_owned()]);
    let logs = second.logs();
    assert!(
        logs.contains("runtime models loaded from the key store"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET), "{logs}");
    let (status, body) = delete(&second, key, "rt").await;
    assert_eq!(status, 200, "{body}");
    second.stop().await;

    let third = start(&yaml, Launch::default()).await;
    let (status, body) = chat(&third, key, "rt").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_object(&body)["code"], "model_not_found");
    assert!(listed(&third, key).await.is_empty());
    let (status, _) = chat(&third, key, "echo").await;
    assert_eq!(status, 200);
}

/// Deployments `/model/new` adds to one group are stored one row each:
/// after a restart the group has them all, and `/model/delete` of one id
/// removes only that row.
#[tokio::test]
async fn deployments_added_to_one_group_are_stored_and_deleted_one_by_one() {
    let up = FakeUpstream::start().await;
    for name in ["a", "b", "echo"] {
        up.set(name, Behavior::ok(&format!("from {name}")));
    }
    let state = TempDir::new();
    let yaml = config(&up, Some(MASTER), &sqlite_url(&state), &[]);
    let answers = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();

    let first = start(&yaml, Launch::default()).await;
    for (upstream, id) in [("a", "dep-a"), ("b", "dep-b")] {
        let body = json!({"model_name": "echo", "model_info": {"id": id},
            "litellm_params": {"model": "openai/echo-up", "api_base": up.api_base(upstream)}});
        let (status, made) = master_post(&first, "/model/new", body).await;
        assert_eq!(status, 200, "{made}");
    }
    first.stop().await;

    let second = start(&yaml, Launch::default()).await;
    assert_eq!(
        second.distinct_answers("echo", Some(MASTER), 60).await,
        answers(&["from a", "from b", "from echo"])
    );
    let (status, deleted) = master_post(&second, "/model/delete", json!({"id": "dep-a"})).await;
    assert_eq!(status, 200, "{deleted}");
    second.stop().await;

    let third = start(&yaml, Launch::default()).await;
    assert_eq!(
        third.distinct_answers("echo", Some(MASTER), 60).await,
        answers(&["from b", "from echo"])
    );
}

async fn master_post(proxy: &Proxy, path: &str, body: Value) -> (u16, Value) {
    proxy
        .call(reqwest::Method::POST, path, Some(body), Some(MASTER))
        .await
}

#[tokio::test]
async fn a_stored_registration_the_config_no_longer_allows_is_skipped_with_a_warning() {
    let up = FakeUpstream::start().await;
    up.set("kept", Behavior::ok("from kept"));
    up.set("env", Behavior::ok("from env"));
    let state = TempDir::new();
    let url = sqlite_url(&state);
    let key = Some(MASTER);
    let with_env = Launch {
        env: vec![("RT_UPSTREAM_KEY".into(), "sk-from-env".into())],
        ..Launch::default()
    };
    let allowing = config(
        &up,
        Some(MASTER),
        &url,
        &["admin_env_allowlist: [RT_UPSTREAM_KEY]"],
    );
    let first = start(&allowing, with_env.clone()).await;
    for (name, api_key) in [
        ("kept", SECRET),
        ("env-model", "os.environ/RT_UPSTREAM_KEY"),
    ] {
        let base = up.api_base(if name == "kept" { "kept" } else { "env" });
        let (status, body) = register(
            &first,
            key,
            json!({"model_name": name, "api_base": base, "api_key": api_key}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(chat(&first, key, "env-model").await.0, 200);
    first.stop().await;

    // The allowlist is gone: that registration no longer makes a deployment.
    let strict = config(&up, Some(MASTER), &url, &[]);
    let second = start(&strict, with_env).await;
    let (status, body) = chat(&second, key, "kept").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = chat(&second, key, "env-model").await;
    assert_eq!(status, 404, "{body}");
    let logs = second.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("from the store is skipped"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(warning.contains("env-model"), "{warning}");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(!logs.contains("sk-from-env") && !logs.contains(SECRET));
    assert_eq!(listed(&second, key).await, vec!["kept".to_owned()]);
}

#[tokio::test]
async fn without_a_master_key_store_model_in_db_is_a_warning_and_nothing_is_stored() {
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    let state = TempDir::new();
    let yaml = config(&up, None, &sqlite_url(&state), &[]);
    let proxy = start(&yaml, Launch::default()).await;
    let logs = proxy.logs();
    assert!(
        logs.contains("store_model_in_db is set but there is no master key"),
        "{logs}"
    );
    let (status, body) = register(
        &proxy,
        None,
        json!({"model_name": "rt", "api_base": up.api_base("rt")}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(chat(&proxy, None, "rt").await.0, 200);
    assert!(!state.path().join("models.db").exists());
}

#[tokio::test]
async fn check_warns_when_store_model_in_db_has_no_master_key() {
    let up = FakeUpstream::start().await;
    let dir = TempDir::new();
    let url = sqlite_url(&dir);
    for (master, warned) in [(None, true), (Some(MASTER), false)] {
        let path = dir.write("config.yaml", &config(&up, master, &url, &[]));
        let path = path.display().to_string();
        let out = conclave_e2e::run_conclave(&["check", "--config", &path], &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert_eq!(
            stdout.contains("store_model_in_db is set but there is no master key"),
            warned,
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn the_store_wins_over_the_persistence_file() {
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    let state = TempDir::new();
    let file = state.path().join("admin-models.json");
    std::fs::write(
        &file,
        json!({"models": [{"model_name": "from-file", "api_base": up.api_base("rt")}]}).to_string(),
    )
    .unwrap();
    let launch = Launch {
        args: vec!["--persist-admin-changes".into(), file.display().to_string()],
        ..Launch::default()
    };
    let yaml = config(&up, Some(MASTER), &sqlite_url(&state), &[]);
    let key = Some(MASTER);
    let first = start(&yaml, launch.clone()).await;
    assert!(
        first
            .logs()
            .contains("store_model_in_db wins over --persist-admin-changes"),
        "{}",
        first.logs()
    );
    assert_eq!(
        chat(&first, key, "from-file").await.0,
        404,
        "the file is not read"
    );
    let before = std::fs::read_to_string(&file).unwrap();
    let (status, body) = register(
        &first,
        key,
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": SECRET}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "the file is not written"
    );
    first.stop().await;
    let second = start(&yaml, launch).await;
    assert_eq!(chat(&second, key, "rt").await.0, 200);
    assert_eq!(listed(&second, key).await, vec!["rt".to_owned()]);
}

/// Polls `chat` on `proxy` for `model` until it answers `want` (at most 3 s);
/// how long it took.
async fn until_status(proxy: &Proxy, model: &str, want: u16) -> Duration {
    let since = Instant::now();
    loop {
        let (status, body) = chat(proxy, Some(MASTER), model).await;
        if status == want {
            return since.elapsed();
        }
        assert!(matches!(status, 200 | 404), "unexpected {status}: {body}");
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "{model} still answered {status} (waiting for {want}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_on_postgres_and_redis_see_each_others_changes_within_a_second() {
    let test = "runtime_models_across_two_instances";
    let Some(database_url) = services::postgres_database(test).await else {
        return;
    };
    let Some(redis) = services::redis(test).await else {
        return;
    };
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    let yaml = config(&up, Some(MASTER), &database_url, &[]).replace(
        "router_settings:\n  num_retries: 0\n",
        &format!(
            "router_settings:\n  num_retries: 0\n  redis_url: {}\n  redis_namespace: {}\n",
            redis.url, redis.prefix
        ),
    );
    let a = start(&yaml, Launch::default()).await;
    let b = start(&yaml, Launch::default()).await;
    for p in [&a, &b] {
        assert!(
            p.logs().contains("shared state through redis"),
            "{}",
            p.logs()
        );
    }
    assert_eq!(chat(&b, Some(MASTER), "rt").await.0, 404);

    let (status, body) = register(
        &a,
        Some(MASTER),
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": SECRET}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let took = until_status(&b, "rt", 200).await;
    assert!(took < Duration::from_secs(1), "registration took {took:?}");
    assert_eq!(listed(&b, Some(MASTER)).await, vec!["rt".to_owned()]);

    let (status, body) = delete(&a, Some(MASTER), "rt").await;
    assert_eq!(status, 200, "{body}");
    let took = until_status(&b, "rt", 404).await;
    assert!(took < Duration::from_secs(1), "deletion took {took:?}");
    assert!(listed(&b, Some(MASTER)).await.is_empty());
    assert!(!b.logs().contains(SECRET));

    // The other way round, and a third instance started later reads the store.
    let (status, body) = register(
        &b,
        Some(MASTER),
        json!({"model_name": "rt2", "api_base": up.api_base("rt")}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let took = until_status(&a, "rt2", 200).await;
    assert!(took < Duration::from_secs(1), "registration took {took:?}");
    let c = start(&yaml, Launch::default()).await;
    assert_eq!(chat(&c, Some(MASTER), "rt2").await.0, 200);
}

/// `/model/new` with an id another instance stored a moment before (and
/// has not announced: no Redis here) is refused by the store, not written
/// over the other's registration.
#[tokio::test]
async fn two_instances_cannot_both_add_a_deployment_under_one_id() {
    let up = FakeUpstream::start().await;
    let dir = TempDir::new();
    let yaml = config(&up, Some(MASTER), &sqlite_url(&dir), &[]);
    let first = start(&yaml, Launch::default()).await;
    let second = start(&yaml, Launch::default()).await;
    let body = |model: &str| {
        json!({"model_name": "xid",
               "litellm_params": {"model": model, "api_base": up.api_base("echo")},
               "model_info": {"id": "same-id"}})
    };
    let (status, made) = master_post(&first, "/model/new", body("openai/first")).await;
    assert_eq!(status, 200, "{made}");
    let (status, refused) = master_post(&second, "/model/new", body("openai/second")).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(error_object(&refused)["param"], "model_info.id");
    drop((first, second));
    let again = start(&yaml, Launch::default()).await;
    let (_, info) = again
        .call(reqwest::Method::GET, "/model/info", None, Some(MASTER))
        .await;
    let models: Vec<&Value> = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["model_info"]["id"] == "same-id")
        .collect();
    assert_eq!(models.len(), 1, "{info}");
    assert_eq!(models[0]["litellm_params"]["model"], "openai/first");
}
