//! Runtime models through the admin API of the real binary: registration,
//! replacement, fallbacks and deletion, `/v1/model/info`, registrations
//! surviving reloads and (persisted) restarts, and the admin API's key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{
    Behavior, FakeUpstream, Launch, Proxy, chat_body, deployment, error_object, replace_atomically,
};
use serde_json::{Value, json};

const MASTER: &str = "sk-admin-master";
const SECRET: &str = "sk-runtime-secret-4242";

/// `echo` and `backup` on the fake, optionally a master key.
fn config(up: &FakeUpstream, master_key: Option<&str>, extra: &[&str]) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in ["echo", "backup"].iter().chain(extra) {
        yaml.push_str(&deployment(
            name,
            &format!("openai/{name}-up"),
            &up.api_base(name),
            &[],
        ));
    }
    yaml.push_str("router_settings:\n  num_retries: 0\n");
    match master_key {
        Some(key) => yaml.push_str(&format!("general_settings:\n  master_key: {key}\n")),
        None => yaml.push_str("general_settings:\n  admin_without_key_on_loopback: true\n"),
    }
    yaml
}

async fn start(yaml: &str, args: &[String]) -> Proxy {
    Proxy::launch(
        yaml,
        Launch {
            args: args.to_vec(),
            ..Launch::default()
        },
    )
    .await
}

async fn register(proxy: &Proxy, body: Value) -> (u16, Value) {
    proxy
        .call(reqwest::Method::POST, "/admin/models", Some(body), None)
        .await
}

/// Posts `body` to `path` with the master key, as a LiteLLM admin script does.
async fn master_post(proxy: &Proxy, path: &str, body: Value) -> (u16, Value) {
    proxy
        .call(reqwest::Method::POST, path, Some(body), Some(MASTER))
        .await
}

async fn chat(proxy: &Proxy, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    proxy.chat(&chat_body(model, "x")).await
}

#[tokio::test]
async fn a_runtime_model_is_registered_replaced_and_deleted() {
    let up = FakeUpstream::start().await;
    up.set("rt1", Behavior::ok("from rt1"));
    up.set("rt2", Behavior::ok("from rt2"));
    let proxy = start(&config(&up, None, &[]), &[]).await;

    let (status, body) = register(
        &proxy,
        json!({"model_name": "rt", "api_base": up.api_base("rt1"), "api_key": SECRET,
               "target_model": "gpt-rt", "request_timeout": 30, "supports_reasoning": false}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["replaced"], false);
    assert!(!body.to_string().contains(SECRET), "{body}");

    let (status, headers, body) = chat(&proxy, "rt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from rt1");
    assert_eq!(headers["x-conclave-model-id"], "runtime:rt");
    let sent = up
        .recorded()
        .into_iter()
        .find(|r| r.deployment == "rt1")
        .unwrap();
    assert_eq!(sent.body["model"], "gpt-rt");
    assert_eq!(sent.headers["authorization"], format!("Bearer {SECRET}"));

    let models = proxy
        .client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert!(models.text().await.unwrap().contains("\"rt\""));
    let info = proxy
        .client
        .get(proxy.url("/v1/model/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let text = info.text().await.unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains("sk-test-key"),
        "{text}"
    );
    let info: Value = serde_json::from_str(&text).unwrap();
    let rt = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_name"] == "rt")
        .unwrap_or_else(|| panic!("{info}"));
    assert_eq!(rt["litellm_params"]["model"], "openai/gpt-rt");
    assert_eq!(rt["litellm_params"]["api_base"], up.api_base("rt1"));
    assert_eq!(rt["litellm_params"]["timeout"], 30.0);
    assert!(rt["litellm_params"].get("api_key").is_none());
    assert_eq!(rt["model_info"]["id"], "runtime:rt");
    assert_eq!(rt["model_info"]["db_model"], true);
    let echo = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_name"] == "echo")
        .unwrap();
    assert_eq!(echo["model_info"]["id"], "echo.0");
    assert_eq!(echo["model_info"]["db_model"], false);

    // Registering the same name replaces it.
    let (status, body) = register(
        &proxy,
        json!({"model_name": "rt", "api_base": up.api_base("rt2"), "api_key": SECRET}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced"], true);
    let (_, _, body) = chat(&proxy, "rt").await;
    assert_eq!(body["choices"][0]["message"]["content"], "from rt2");
    assert_eq!(up.last_body("rt2").unwrap()["model"], "rt");

    let (status, listed) = proxy
        .call(reqwest::Method::GET, "/admin/models", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["model_name"], "rt", "{listed}");
    assert!(!listed.to_string().contains(SECRET));

    let (status, body) = proxy
        .call(reqwest::Method::DELETE, "/admin/models/rt", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = chat(&proxy, "rt").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_object(&body)["code"], "model_not_found");
    let (status, body) = proxy
        .call(reqwest::Method::DELETE, "/admin/models/rt", None, None)
        .await;
    assert_eq!(status, 404, "{body}");
    error_object(&body);
    let (status, body) = proxy
        .call(reqwest::Method::DELETE, "/admin/models/echo", None, None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("config")
    );

    assert!(!proxy.logs().contains(SECRET), "the key reached the logs");
}

/// LiteLLM's `/model/new` and `/model/delete`, as a LiteLLM script sends
/// them, register and delete a runtime deployment, named by the id
/// `/model/new` made for it.
#[tokio::test]
async fn litellms_model_new_and_model_delete_manage_runtime_models() {
    let up = FakeUpstream::start().await;
    up.set("rt1", Behavior::ok("from rt1"));
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    let post = |path: &'static str, body: Value| master_post(&proxy, path, body);
    let (status, made) = post(
        "/model/new",
        json!({"model_name": "rt", "model_info": {},
               "litellm_params": {"model": "openai/gpt-rt", "api_base": up.api_base("rt1"),
                                  "api_key": SECRET, "timeout": 30}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["model_id"].as_str().unwrap();
    assert!(!id.is_empty() && !id.starts_with("runtime:"), "{made}");
    assert_eq!(made["model_info"]["id"], id, "{made}");
    assert_eq!(made["litellm_params"]["model"], "openai/gpt-rt", "{made}");
    assert_eq!(made["litellm_params"]["timeout"], 30.0, "{made}");
    assert!(!made.to_string().contains(SECRET), "{made}");
    let (status, body) = post("/v1/chat/completions", chat_body("rt", "x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from rt1");

    let (status, refused) = post(
        "/model/new",
        json!({"model_name": "rt2", "litellm_params": {"model": "openai/x", "rpm": 10}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "litellm_params.rpm", "{refused}");

    let (status, deleted) = post("/model/delete", json!({"id": made["model_id"]})).await;
    assert_eq!(status, 200, "{deleted}");
    assert!(
        deleted["message"].as_str().unwrap().contains(id),
        "{deleted}"
    );
    let (status, _) = post("/v1/chat/completions", chat_body("rt", "x")).await;
    assert_eq!(status, 404, "the model is gone");
    let (status, missing) = post("/model/delete", json!({"id": "runtime:rt"})).await;
    assert_eq!((status, &missing["error"]["param"]), (404, &json!("id")));
    // A model whose own name looks like an id is deleted by its name, not
    // mistaken for the model the id would name.
    for name in ["dup", "runtime:dup"] {
        let body = json!({"model_name": name, "litellm_params": {"model": "openai/dup", "api_base": up.api_base("rt1")}});
        assert_eq!(post("/model/new", body).await.0, 200);
    }
    let (status, _) = post("/model/delete", json!({"id": "runtime:dup"})).await;
    assert_eq!(status, 200);
    let (status, body) = post("/v1/chat/completions", chat_body("dup", "x")).await;
    assert_eq!(status, 200, "`dup` is still registered: {body}");
    let (status, refused) = post("/model/delete", json!({})).await;
    assert_eq!((status, &refused["error"]["param"]), (400, &json!("id")));
    let (status, _) = proxy
        .call(
            reqwest::Method::POST,
            "/model/new",
            Some(json!({"model_name": "m", "litellm_params": {"model": "openai/x"}})),
            None,
        )
        .await;
    assert_eq!(status, 401, "the master key is needed");
}

/// A second `/model/new` of a name adds a deployment to its group, as
/// LiteLLM's does: the config's deployment and both runtime ones share the
/// traffic, `/v1/model/info` lists each under its id (and shows one by
/// `?litellm_model_id=`), an id given in
/// `model_info` is kept (and a second use of it refused), a name that
/// serves several deployments is too vague for `/model/update`, and
/// `/model/delete` of one id leaves the others serving.
#[tokio::test]
async fn model_new_adds_deployments_to_a_group_and_model_delete_removes_one() {
    let up = FakeUpstream::start().await;
    for name in ["echo", "rt1", "rt2"] {
        up.set(name, Behavior::ok(&format!("from {name}")));
    }
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    let post = |path: &'static str, body: Value| master_post(&proxy, path, body);
    let deployment = |upstream: &str, info: Value| {
        json!({"model_name": "echo", "model_info": info,
               "litellm_params": {"model": "openai/echo-up", "api_base": up.api_base(upstream)}})
    };
    let (status, first) = post("/model/new", deployment("rt1", json!({}))).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = post("/model/new", deployment("rt2", json!({"id": "eu-west"}))).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["model_id"], "eu-west", "{second}");
    // An id in use, by a runtime deployment or one of the config's.
    for taken in ["eu-west", "echo.0"] {
        let (status, refused) = post("/model/new", deployment("rt1", json!({"id": taken}))).await;
        assert_eq!(
            (status, &refused["error"]["param"]),
            (409, &json!("model_info.id")),
            "{refused}"
        );
    }
    let by_admin = json!({"id": "echo.0", "model_name": "echo", "api_base": up.api_base("rt1")});
    let (status, refused) = post("/admin/models", by_admin).await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (409, &json!("id")),
        "{refused}"
    );

    let all: std::collections::BTreeSet<String> = ["from echo", "from rt1", "from rt2"]
        .map(String::from)
        .into();
    assert_eq!(
        proxy.distinct_answers("echo", Some(MASTER), 60).await,
        all,
        "the config's and both runtime deployments serve"
    );
    let (status, info) = proxy
        .call(reqwest::Method::GET, "/v1/model/info", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "{info}");
    let ids: Vec<&str> = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["model_name"] == "echo")
        .map(|m| m["model_info"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{info}");
    assert!(
        ids.contains(&"eu-west") && ids.contains(&first["model_id"].as_str().unwrap()),
        "{info}"
    );
    let get = |path: String| {
        let proxy = &proxy;
        async move {
            proxy
                .call(reqwest::Method::GET, &path, None, Some(MASTER))
                .await
        }
    };
    let (status, one) = get("/model/info?litellm_model_id=eu-west".into()).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(
        one["data"][0]["litellm_params"]["api_base"],
        up.api_base("rt2"),
        "{one}"
    );
    let (status, none) = get("/v1/model/info?litellm_model_id=nowhere".into()).await;
    assert_eq!(
        (status, &none["error"]["param"]),
        (404, &json!("litellm_model_id")),
        "{none}"
    );
    let (status, long) = get(format!("/model/info?litellm_model_id={}", "x".repeat(600))).await;
    assert_eq!(
        (status, &long["error"]["param"]),
        (400, &json!("litellm_model_id")),
        "{long}"
    );

    let (status, vague) = post(
        "/model/update",
        json!({"model_info": {"id": "echo"}, "litellm_params": {"timeout": 5}}),
    )
    .await;
    assert_eq!(status, 409, "two runtime deployments serve echo: {vague}");
    let (status, updated) = post(
        "/model/update",
        json!({"model_info": {"id": "eu-west"}, "litellm_params": {"timeout": 5}}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["litellm_params"]["api_base"],
        up.api_base("rt2"),
        "{updated}"
    );

    let (status, deleted) = post("/model/delete", json!({"id": "eu-west"})).await;
    assert_eq!(status, 200, "{deleted}");
    let left: std::collections::BTreeSet<String> =
        ["from echo", "from rt1"].map(String::from).into();
    assert_eq!(
        proxy.distinct_answers("echo", Some(MASTER), 40).await,
        left,
        "the other deployments still serve"
    );
    let (status, refused) = post("/model/new", deployment("rt2", json!({"id": "runtime:x"}))).await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &json!("model_info.id")),
        "{refused}"
    );
}

/// LiteLLM's `/model/update` changes the fields it gives of the runtime
/// model its `model_info.id` names, keeps the others (the key too), and
/// renames it with a new `model_name`.
/// A config deployment's id stays its own while a runtime registration
/// replaces its group: it comes back when that registration is deleted.
#[tokio::test]
async fn a_config_deployments_id_is_refused_while_its_group_is_replaced() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    let (status, body) = master_post(
        &proxy,
        "/admin/models",
        json!({"model_name": "echo", "api_base": up.api_base("rt1")}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, refused) = master_post(
        &proxy,
        "/model/new",
        json!({"model_name": "other", "model_info": {"id": "echo.0"},
               "litellm_params": {"model": "openai/x", "api_base": up.api_base("rt2")}}),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (409, &json!("model_info.id")),
        "{refused}"
    );
}

#[tokio::test]
async fn litellms_model_update_changes_what_it_gives_and_keeps_the_rest() {
    let up = FakeUpstream::start().await;
    up.set("rt1", Behavior::ok("from rt1"));
    up.set("rt2", Behavior::ok("from rt2"));
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    let post = |path: &'static str, body: Value| master_post(&proxy, path, body);
    let made = json!({"model_name": "rt", "litellm_params": {
        "model": "openai/gpt-rt", "api_base": up.api_base("rt1"), "api_key": SECRET, "timeout": 30}});
    let (status, made) = post("/model/new", made).await;
    assert_eq!(status, 200, "{made}");

    let (status, updated) = post(
        "/model/update",
        json!({"model_info": {"id": "runtime:rt"}, "litellm_params": {"api_base": up.api_base("rt2")}}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["litellm_params"]["model"], "openai/gpt-rt",
        "{updated}"
    );
    assert_eq!(updated["litellm_params"]["timeout"], 30.0, "{updated}");
    assert!(!updated.to_string().contains(SECRET), "{updated}");
    let (status, body) = post("/v1/chat/completions", chat_body("rt", "x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from rt2");
    let (status, listed) = proxy
        .call(reqwest::Method::GET, "/admin/models", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.to_string().contains(SECRET), "{listed}");

    let (status, renamed) = post(
        "/model/update",
        json!({"model_info": {"id": "rt"}, "model_name": "rt-new"}),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        renamed["model_id"], made["model_id"],
        "a deployment keeps its id: {renamed}"
    );
    assert_eq!(
        post("/v1/chat/completions", chat_body("rt", "x")).await.0,
        404
    );
    let (status, body) = post("/v1/chat/completions", chat_body("rt-new", "x")).await;
    assert_eq!(
        (status, &body["choices"][0]["message"]["content"]),
        (200, &json!("from rt2")),
        "{body}"
    );

    // Without an id, the model name names the one runtime deployment.
    let (status, by_name) = post(
        "/model/update",
        json!({"model_name": "rt-new", "litellm_params": {"timeout": 7}}),
    )
    .await;
    assert_eq!(status, 200, "{by_name}");
    assert_eq!(by_name["litellm_params"]["timeout"], 7.0, "{by_name}");

    let (status, refused) = post(
        "/model/update",
        json!({"model_info": {"id": "runtime:rt-new"}, "litellm_params": {"rpm": 10}}),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &json!("litellm_params.rpm")),
        "{refused}"
    );
    let (status, refused) = post(
        "/model/update",
        json!({"litellm_params": {"api_base": up.api_base("rt1")}}),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &json!("model_info.id")),
        "{refused}"
    );
    let (status, missing) = post(
        "/model/update",
        json!({"model_info": {"id": "runtime:nope"}}),
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    let (status, config_model) = post(
        "/model/update",
        json!({"model_info": {"id": "echo"}, "model_name": "e"}),
    )
    .await;
    assert_eq!(
        status, 404,
        "a config model changes in the config file: {config_model}"
    );
}

#[tokio::test]
async fn litellms_patch_route_updates_the_runtime_model_its_path_names() {
    let up = FakeUpstream::start().await;
    up.set("rt1", Behavior::ok("from rt1"));
    up.set("rt2", Behavior::ok("from rt2"));
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    let made = json!({"model_name": "rt", "litellm_params": {
        "model": "openai/gpt-rt", "api_base": up.api_base("rt1"), "api_key": SECRET}});
    let (status, made) = master_post(&proxy, "/model/new", made).await;
    assert_eq!(status, 200, "{made}");
    let id = made["model_id"].as_str().unwrap().to_owned();
    let patch = |id: &str, body: Value| {
        let path = format!("/model/{id}/update");
        let proxy = &proxy;
        async move {
            proxy
                .call(reqwest::Method::PATCH, &path, Some(body), Some(MASTER))
                .await
        }
    };

    let (status, updated) = patch(
        &id,
        json!({"litellm_params": {"api_base": up.api_base("rt2")}}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["model_id"], json!(id), "{updated}");
    let (status, body) = master_post(&proxy, "/v1/chat/completions", chat_body("rt", "x")).await;
    assert_eq!(
        (status, &body["choices"][0]["message"]["content"]),
        (200, &json!("from rt2")),
        "{body}"
    );

    let (status, audit) = proxy
        .call(
            reqwest::Method::GET,
            &format!("/audit?object_id={id}&action=updated"),
            None,
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["total"], 1, "the patch leaves its audit row: {audit}");

    let (status, refused) = patch(&id, json!({"model_info": {"id": "other"}})).await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &json!("model_info.id")),
        "{refused}"
    );
    let (status, missing) = patch("nope", json!({"model_name": "x"})).await;
    assert_eq!(
        (status, &missing["error"]["param"]),
        (404, &json!("model_id")),
        "{missing}"
    );
    let (status, unauthorised) = proxy
        .call(
            reqwest::Method::PATCH,
            &format!("/model/{id}/update"),
            Some(json!({"model_name": "x"})),
            None,
        )
        .await;
    assert_eq!(status, 401, "{unauthorised}");
}

#[tokio::test]
async fn a_registration_can_replace_a_config_model_and_set_its_fallbacks() {
    let up = FakeUpstream::start().await;
    up.set("broken", Behavior::status(500, "down"));
    up.set("backup", Behavior::ok("from backup"));
    let proxy = start(&config(&up, None, &[]), &[]).await;

    // `echo` comes from the config; the registration replaces it with a
    // failing deployment whose fallback is `backup` (a string).
    let (status, body) = register(
        &proxy,
        json!({"model_name": "echo", "api_base": up.api_base("broken"), "api_key": "k", "fallbacks": "backup"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, headers, body) = chat(&proxy, "echo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from backup");
    assert_eq!(headers["x-conclave-fallback"], "backup");
    assert_eq!(up.calls("echo"), 0);

    // An empty list clears them.
    let (status, body) = register(
        &proxy,
        json!({"model_name": "echo", "api_base": up.api_base("broken"), "api_key": "k", "fallbacks": []}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = chat(&proxy, "echo").await;
    assert_eq!(status, 502, "{body}");

    // Deleting the registration brings the config's deployment back.
    let (status, _) = proxy
        .call(reqwest::Method::DELETE, "/admin/models/echo", None, None)
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = chat(&proxy, "echo").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.calls("echo"), 1);
}

#[tokio::test]
async fn bad_admin_bodies_get_400_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, None, &[]), &[]).await;
    for (body, param) in [
        (json!({}), Some("model_name")),
        (json!({"model_name": ""}), Some("model_name")),
        (
            json!({"model_name": "m", "request_timeout": "soon"}),
            Some("request_timeout"),
        ),
        (
            json!({"model_name": "m", "request_timeout": 0}),
            Some("request_timeout"),
        ),
        (
            json!({"model_name": "m", "supports_reasoning": "yes"}),
            Some("supports_reasoning"),
        ),
        (
            json!({"model_name": "m", "fallbacks": {"a": 1}}),
            Some("fallbacks"),
        ),
        (
            json!({"model_name": "m", "api_base": "localhost:1"}),
            Some("api_base"),
        ),
        (json!({"model_name": "m", "api_key": 12}), Some("api_key")),
        (
            json!({"model_name": "m", "model": "exec/anything"}),
            Some("model"),
        ),
        (json!({"model_name": "m", "model": "nope"}), Some("model")),
        (
            json!({"model_name": "m", "litellm_params": {}}),
            Some("litellm_params"),
        ),
        (json!(["m"]), None),
    ] {
        let (status, answer) = register(&proxy, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let error = error_object(&answer);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"].as_str(), param, "{body} -> {answer}");
        if let Some(p) = param {
            assert!(error["message"].as_str().unwrap().contains(p), "{answer}");
        }
    }
    let r = proxy
        .client
        .post(proxy.url("/admin/models"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    error_object(&r.json().await.unwrap());
    // Nothing was registered.
    let (_, listed) = proxy
        .call(reqwest::Method::GET, "/admin/models", None, None)
        .await;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test]
async fn registrations_survive_a_config_reload() {
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    up.set("fresh", Behavior::ok("from fresh"));
    let proxy = start(&config(&up, None, &[]), &["--watch".into()]).await;
    let (status, body) = register(
        &proxy,
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": "k"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    replace_atomically(
        &proxy.config_path(),
        config(&up, None, &["fresh"]).as_bytes(),
    );
    let (status, body) = proxy
        .call(reqwest::Method::POST, "/admin/reload", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    for (model, answer) in [("rt", "from rt"), ("fresh", "from fresh")] {
        let (status, _, body) = chat(&proxy, model).await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], answer);
    }
}

#[tokio::test]
async fn persisted_registrations_survive_a_restart() {
    let up = FakeUpstream::start().await;
    up.set("rt", Behavior::ok("from rt"));
    let state = TempDir::new();
    let file = state.path().join("admin-models.json");
    let args = vec![
        "--persist-admin-changes".to_owned(),
        file.display().to_string(),
    ];
    let yaml = config(&up, None, &[]);

    let first = start(&yaml, &args).await;
    let (status, body) = register(
        &first,
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": SECRET, "fallbacks": ["backup"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["models"][0]["model_name"], "rt", "{saved}");
    assert_eq!(saved["models"][0]["api_key"], SECRET);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds keys");
    }
    let leftovers: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    first.stop().await;

    let second = start(&yaml, &args).await;
    let (status, _, body) = chat(&second, "rt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from rt");
    let (status, _) = second
        .call(reqwest::Method::DELETE, "/admin/models/rt", None, None)
        .await;
    assert_eq!(status, 200);
    second.stop().await;

    let third = start(&yaml, &args).await;
    let (status, _, _) = chat(&third, "rt").await;
    assert_eq!(status, 404);
    // Without the flag, registrations last until the process ends.
    let plain = start(&yaml, &[]).await;
    register(
        &plain,
        json!({"model_name": "rt", "api_base": up.api_base("rt"), "api_key": "k"}),
    )
    .await;
    plain.stop().await;
    let plain = start(&yaml, &[]).await;
    let (status, _, _) = chat(&plain, "rt").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_persistence_file_in_a_missing_folder_is_refused_at_start() {
    let up = FakeUpstream::start().await;
    let state = TempDir::new();
    let config = state.write("c.yaml", &config(&up, None, &[]));
    let file = state
        .path()
        .join("no-such-folder")
        .join("admin-models.json");
    let out = conclave_e2e::proxy::run_conclave(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--port",
            "0",
            "--persist-admin-changes",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-folder") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_admin_api_needs_the_master_key_when_there_is_one() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, Some(MASTER), &[]), &[]).await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/admin/status", None),
        (reqwest::Method::POST, "/admin/reload", None),
        (reqwest::Method::GET, "/admin/models", None),
        (
            reqwest::Method::POST,
            "/admin/models",
            Some(json!({"model_name": "m"})),
        ),
        (reqwest::Method::DELETE, "/admin/models/m", None),
    ] {
        for key in [None, Some("sk-wrong")] {
            let (status, answer) = proxy.call(method.clone(), path, body.clone(), key).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}: {answer}");
            assert_eq!(error_object(&answer)["type"], "authentication_error");
        }
    }
    let (status, s) = proxy
        .call(reqwest::Method::GET, "/admin/status", None, Some(MASTER))
        .await;
    assert_eq!(status, 200, "{s}");
    let (status, body) = proxy
        .call(
            reqwest::Method::POST,
            "/admin/models",
            Some(json!({"model_name": "m", "api_base": up.api_base("m"), "api_key": "k"})),
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // x-api-key works as for the other routes.
    let r = proxy
        .client
        .get(proxy.url("/admin/status"))
        .header("x-api-key", MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // /v1/model/info is a normal route: the same key.
    let (status, _) = proxy
        .call(reqwest::Method::GET, "/v1/model/info", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = proxy
        .call(reqwest::Method::GET, "/v1/model/info", None, Some(MASTER))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_a_master_key_the_admin_api_is_closed_unless_loopback_access_is_opted_in() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, None, &[]).replace("  admin_without_key_on_loopback: true\n", "");
    let proxy = start(&yaml, &[]).await;
    for (method, path) in [
        (reqwest::Method::GET, "/admin/status"),
        (reqwest::Method::POST, "/admin/reload"),
        (reqwest::Method::GET, "/admin/models"),
    ] {
        let (status, body) = proxy.call(method, path, Some(json!({})), None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "admin_disabled");
    }
}

#[tokio::test]
async fn without_a_master_key_the_admin_api_answers_on_loopback_only() {
    let up = FakeUpstream::start().await;
    // The harness listens on 127.0.0.1: admitted without a key. (A server
    // on a non-loopback address refuses with 403; see the unit tests of
    // http::admin, since these tests never listen beyond loopback.)
    let proxy = start(&config(&up, None, &[]), &[]).await;
    let (status, s) = proxy
        .call(reqwest::Method::GET, "/admin/status", None, None)
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["watching"], false);
    assert!(s["config"].as_str().unwrap().ends_with("config.yaml"));
}

/// Keyless admin access is for programs on the machine: a page of another
/// site (a cross-site form post needs no preflight) or a name rebound to
/// loopback is refused, and the model stays as it was.
#[tokio::test]
async fn keyless_admin_refuses_web_pages_of_other_sites_and_foreign_names() {
    let up = FakeUpstream::start().await;
    let proxy = start(&config(&up, None, &[]), &[]).await;
    let register = |headers: &'static [(&'static str, &'static str)]| {
        let proxy = &proxy;
        async move {
            let mut r = proxy
                .client
                .post(proxy.url("/admin/models"))
                .header("content-type", "text/plain")
                .body(r#"{"model_name": "echo", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}}"#);
            for (name, value) in headers {
                r = r.header(*name, *value);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("host", "rebound.example:4000")][..],
    ] {
        let (status, body) = register(headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "keyless_access_refused", "{body}");
    }
    let (status, _, _) = chat(&proxy, "echo").await;
    assert_eq!(status, 200);
    assert_eq!(up.calls("echo"), 1, "echo still goes to its own upstream");
}

/// A gateway whose environment holds provider keys an admin must not reach.
async fn start_with_secrets(yaml: &str) -> Proxy {
    Proxy::launch(
        yaml,
        Launch {
            env: vec![
                ("OPENAI_API_KEY".into(), "sk-gateway-openai-key".into()),
                (
                    "CONCLAVE_T_ALLOWED_KEY".into(),
                    "sk-allowed-by-config".into(),
                ),
            ],
            ..Launch::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_registration_cannot_read_the_gateways_environment_unless_the_config_allows_it() {
    let up = FakeUpstream::start().await;
    let proxy = start_with_secrets(&config(&up, None, &[])).await;
    let (status, body) = register(
        &proxy,
        json!({"model_name": "leak", "api_base": up.api_base("rt1"), "api_key": "os.environ/OPENAI_API_KEY"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("admin_env_allowlist"), "{message}");
    assert!(
        !body.to_string().contains("sk-gateway-openai-key"),
        "{body}"
    );
    assert_eq!(up.calls("rt1"), 0);

    let allowing = config(&up, None, &[]).replace(
        "general_settings:\n",
        "general_settings:\n  admin_env_allowlist: [CONCLAVE_T_ALLOWED_KEY]\n",
    );
    let proxy = start_with_secrets(&allowing).await;
    let (status, body) = register(
        &proxy,
        json!({"model_name": "ok", "api_base": up.api_base("rt1"), "api_key": "os.environ/CONCLAVE_T_ALLOWED_KEY"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, _) = chat(&proxy, "ok").await;
    assert_eq!(status, 200);
    let sent = up.recorded().pop().unwrap();
    assert_eq!(sent.headers["authorization"], "Bearer sk-allowed-by-config");
}

#[tokio::test]
async fn a_keyless_registration_with_its_own_api_base_gets_no_provider_key() {
    let up = FakeUpstream::start().await;
    let proxy = start_with_secrets(&config(&up, None, &[])).await;
    let (status, body) = register(
        &proxy,
        json!({"model_name": "keyless", "model": "openai/x", "api_base": up.api_base("rt1")}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = chat(&proxy, "keyless").await;
    assert_eq!(status, 200, "{body}");
    let sent = up.recorded().pop().unwrap();
    assert!(
        sent.headers.get("authorization").is_none(),
        "the gateway's OPENAI_API_KEY went to an admin-chosen host: {:?}",
        sent.headers.get("authorization")
    );
}

/// `/v1/model/info` gives each deployment the price it is charged at, as
/// LiteLLM fills it in: from the price table, or from its litellm_params.
#[tokio::test]
async fn model_info_lists_the_price_each_deployment_is_charged_at() {
    let up = FakeUpstream::start().await;
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployment(
        "listed",
        "openai/gpt-4o-mini",
        &up.api_base("a"),
        &[],
    ));
    yaml.push_str(&deployment(
        "own",
        "openai/private-model",
        &up.api_base("b"),
        &["input_cost_per_token: 0.25", "output_cost_per_token: 0.5"],
    ));
    let proxy = start(&yaml, &[]).await;
    let (status, info) = proxy
        .call(reqwest::Method::GET, "/v1/model/info", None, None)
        .await;
    assert_eq!(status, 200, "{info}");
    let price = |name: &str| {
        let entry = info["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["model_name"] == name)
            .unwrap_or_else(|| panic!("{name}: {info}"));
        (
            entry["model_info"]["input_cost_per_token"].as_f64(),
            entry["model_info"]["output_cost_per_token"].as_f64(),
        )
    };
    assert!(price("listed").0.is_some_and(|p| p > 0.0), "{info}");
    assert_eq!(price("own"), (Some(0.25), Some(0.5)), "{info}");
}
