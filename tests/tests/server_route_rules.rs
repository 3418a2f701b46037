//! LiteLLM's route controls in `general_settings`: `allowed_routes` (the
//! only routes served, 403 for the rest, whoever asks), `public_routes`
//! (model routes served without a key) and `admin_only_routes` (refused
//! to virtual keys whose user is not a `proxy_admin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use conclave_e2e::proxy::check_config;
use conclave_e2e::{FakeUpstream, Proxy};
use keys_support::{MASTER, chat_as, code, config, manage, new_key};
use serde_json::{Value, json};

/// A keyed gateway serving group `m`, with `general` lines (indented) added
/// to its `general_settings`.
async fn gateway(up: &FakeUpstream, general: &str) -> Proxy {
    Proxy::start(&(config(up, &["m"], "") + general)).await
}

/// `GET path` with `key` (or none): the status and the body as JSON.
async fn get(proxy: &Proxy, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = proxy.client.get(proxy.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST path` with `body` and `key` (or none).
async fn post(proxy: &Proxy, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = proxy.client.post(proxy.url(path)).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn chat() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn routes_outside_allowed_routes_are_refused_for_everyone() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        "  allowed_routes: ['/chat/completions', 'LiteLLMRoutes.public_routes', '/key/*']\n",
    )
    .await;
    // Listed, with or without the /v1 prefix.
    let (status, body) = post(&proxy, "/v1/chat/completions", Some(MASTER), &chat()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&proxy, "/health/liveliness", None).await.0, 200);
    let key = new_key(&proxy, json!({})).await;
    let (status, _, body) = chat_as(&proxy, &key, "m").await;
    assert_eq!(status, 200, "{body}");

    // Not listed: 403 before any key is looked at, the master key's too.
    let embed = json!({"model": "m", "input": "hi"});
    let (status, body) = post(&proxy, "/v1/embeddings", Some(MASTER), &embed).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "route_not_allowed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/v1/embeddings") && message.contains("general_settings.allowed_routes"),
        "{body}"
    );
    assert_eq!(get(&proxy, "/v1/models", Some(MASTER)).await.0, 403);
    assert_eq!(get(&proxy, "/global/spend", Some(MASTER)).await.0, 403);
    assert_eq!(up.calls("m"), 2, "refused requests reach no upstream");

    // Anthropic's route answers in Anthropic's error shape.
    let message =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post(&proxy, "/v1/messages", Some(MASTER), &message).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
}

#[tokio::test]
async fn public_routes_serve_model_routes_without_a_key() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        "  public_routes: ['/v1/models', '/chat/completions']\n",
    )
    .await;
    let (status, body) = get(&proxy, "/v1/models", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["id"], "m", "{body}");
    let (status, body) = post(&proxy, "/v1/chat/completions", None, &chat()).await;
    assert_eq!(status, 200, "{body}");
    // A key that is presented is still judged.
    let (status, body) = post(&proxy, "/v1/chat/completions", Some("sk-wrong"), &chat()).await;
    assert_eq!(status, 401, "{body}");
    // Routes not listed keep their key check.
    let embed = json!({"model": "m", "input": "hi"});
    assert_eq!(post(&proxy, "/v1/embeddings", None, &embed).await.0, 401);
    assert_eq!(get(&proxy, "/key/list", None).await.0, 401);
}

/// LiteLLM's docs make its price calculator public beside its own group.
#[tokio::test]
async fn litellms_documented_public_routes_lift_the_key_from_the_price_calculator() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        "  public_routes: ['LiteLLMRoutes.public_routes', '/spend/calculate']\n",
    )
    .await;
    let quote = json!({"completion_response": {"model": "m",
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}});
    let (status, body) = post(&proxy, "/spend/calculate", None, &quote).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["cost"].as_f64().unwrap() > 0.0, "{body}");
    assert_eq!(get(&proxy, "/spend/logs", None).await.0, 401);
}

#[tokio::test]
async fn a_management_route_cannot_be_made_public() {
    let up = FakeUpstream::start().await;
    let yaml = config(&up, &["m"], "") + "  public_routes: ['/models', '/key/generate']\n";
    let (passed, text) = check_config(&yaml).await;
    assert!(!passed, "{text}");
    assert!(
        text.contains("general_settings.public_routes[1]") && text.contains("/key/generate"),
        "{text}"
    );
    let yaml = config(&up, &["m"], "") + "  allowed_routes: ['chat_routes']\n";
    let (passed, text) = check_config(&yaml).await;
    assert!(!passed, "{text}");
    assert!(
        text.contains("general_settings.allowed_routes[0]"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_only_routes_refuse_keys_of_users_who_are_not_admins() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        "  admin_only_routes: ['/chat/completions', '/key/info']\n",
    )
    .await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "boss", "user_role": "proxy_admin"}),
    )
    .await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "dev", "user_role": "internal_user"}),
    )
    .await;
    let admin = new_key(&proxy, json!({"user_id": "boss"})).await;
    let member = new_key(&proxy, json!({"user_id": "dev"})).await;

    let (status, _, body) = chat_as(&proxy, &member, "m").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "admin_only_route");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("general_settings.admin_only_routes"),
        "{body}"
    );
    assert_eq!(get(&proxy, "/key/info", Some(&member)).await.0, 403);
    assert_eq!(up.calls("m"), 0);

    for key in [admin.as_str(), MASTER] {
        let (status, _, body) = chat_as(&proxy, key, "m").await;
        assert_eq!(status, 200, "{body}");
    }
    // Routes not listed serve the member as before; no key is still 401.
    let (status, body) = get(&proxy, "/v1/models", Some(&member)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        post(&proxy, "/v1/chat/completions", None, &chat()).await.0,
        401
    );
}

#[tokio::test]
async fn a_route_both_public_and_admin_only_still_needs_an_admins_key() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(
        &up,
        "  public_routes: ['/chat/completions']\n  admin_only_routes: ['/chat/completions']\n",
    )
    .await;
    assert_eq!(
        post(&proxy, "/v1/chat/completions", None, &chat()).await.0,
        401
    );
    let (status, body) = post(&proxy, "/v1/chat/completions", Some(MASTER), &chat()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_key_calls_only_its_own_allowed_routes() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "dev", "user_role": "internal_user"}),
    )
    .await;
    let body = json!({"user_id": "dev", "allowed_routes": ["/chat/completions", "/key/info"]});
    let generated = manage(&proxy, "/key/generate", body).await;
    assert_eq!(
        generated["allowed_routes"],
        json!(["/chat/completions", "/key/info"])
    );
    let key = generated["key"].as_str().unwrap().to_owned();

    let (status, _, body) = chat_as(&proxy, &key, "m").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&proxy, "/key/info", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["info"]["allowed_routes"][1], "/key/info", "{body}");

    let (status, body) = get(&proxy, "/v1/models", Some(&key)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "key_route_not_allowed");
    let (status, body) = post(&proxy, "/key/generate", Some(&key), &json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "key_route_not_allowed");

    // Cleared, every route is the key's again.
    manage(
        &proxy,
        "/key/update",
        json!({"key": key, "allowed_routes": null}),
    )
    .await;
    let (status, body) = get(&proxy, "/v1/models", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_key_route_that_is_neither_a_path_nor_a_group_is_a_400_naming_it() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    let (status, body) = post(
        &proxy,
        "/key/generate",
        Some(MASTER),
        &json!({"allowed_routes": ["/chat/completions", "chat"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "allowed_routes", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_routes[1]"),
        "{body}"
    );
}

#[tokio::test]
async fn a_route_limited_key_cannot_mint_keys_or_widen_routes() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up, "").await;
    manage(
        &proxy,
        "/user/new",
        json!({"user_id": "ops", "user_role": "proxy_admin", "auto_create_key": false}),
    )
    .await;
    let limited = new_key(
        &proxy,
        json!({"user_id": "ops", "allowed_routes": ["/key/*", "/user/*", "/ui/api/*"]}),
    )
    .await;
    let other = new_key(
        &proxy,
        json!({"user_id": "ops", "allowed_routes": ["/key/info"]}),
    )
    .await;
    // An unlimited key of an ordinary user: moved to the administrator, or
    // its user made one, it would be an unlimited administrator's key.
    let free = new_key(&proxy, json!({"user_id": "bob"})).await;
    for (path, body) in [
        ("/key/generate", json!({})),
        ("/key/regenerate", json!({"key": other})),
        ("/key/update", json!({"key": other, "allowed_routes": null})),
        (
            "/user/new",
            json!({"user_id": "new-admin", "user_role": "proxy_admin"}),
        ),
        ("/key/update", json!({"key": free, "user_id": "ops"})),
        (
            "/user/update",
            json!({"user_id": "bob", "user_role": "proxy_admin"}),
        ),
    ] {
        let (status, answer) = post(&proxy, path, Some(&limited), &body).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(code(&answer), "route_limited_key", "{path}: {answer}");
    }
    // What does not mint a key or widen a list still works.
    let rename = json!({"key": other, "key_alias": "renamed"});
    let (status, answer) = post(&proxy, "/key/update", Some(&limited), &rename).await;
    assert_eq!(status, 200, "{answer}");
    // Outside its list, the dashboard's data and the metrics are refused too.
    assert_eq!(get(&proxy, "/ui/api/overview", Some(&limited)).await.0, 200);
    let (status, answer) = get(&proxy, "/metrics", Some(&limited)).await;
    assert_eq!(status, 403, "{answer}");
    // The probes need no key: a key's list does not close them.
    let (status, answer) = get(&proxy, "/health/readiness", Some(&limited)).await;
    assert_eq!(status, 200, "{answer}");
}
