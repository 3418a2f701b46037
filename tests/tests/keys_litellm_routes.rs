//! LiteLLM's smaller management routes, as its scripts and admin tools
//! call them: a key's spend given back (`/key/{key}/reset_spend`), every
//! key's and team's (`/global/spend/reset`), several keys' info at once
//! (`/v2/key/info`), a quoted cost (`/spend/calculate`), the roles a user
//! may have (`/user/available_roles`) and the deployments in pages
//! (`/v2/model/info`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use conclave_e2e::{FakeUpstream, Proxy};
use keys_support::{
    CALL_COST, INPUT_PRICE, MASTER, chat_as, close, code, config, key_spend, manage, new_key,
};
use reqwest::Method;
use serde_json::{Value, json};

async fn gateway(up: &FakeUpstream) -> Proxy {
    Proxy::start(&config(up, &["gpt-a", "gpt-b", "gpt-c"], "")).await
}

/// Posts `body` to `path` with `key`: the status and the JSON answer.
async fn post_as(proxy: &Proxy, key: &str, path: &str, body: Value) -> (u16, Value) {
    proxy.call(Method::POST, path, Some(body), Some(key)).await
}

#[tokio::test]
async fn reset_spend_gives_a_key_its_budget_and_its_model_budgets_back() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(
        &proxy,
        json!({"max_budget": CALL_COST * 1.5, "model_max_budget": {"gpt-a": CALL_COST / 2.0}}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "model_budget_exceeded"),
        "{body}"
    );
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));

    let path = format!("/key/{key}/reset_spend");
    let (status, answer) = post_as(&proxy, MASTER, &path, json!({"reset_to": 0})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["spend"], 0.0);
    assert!(close(answer["previous_spend"].as_f64().unwrap(), CALL_COST));
    assert!(close(
        answer["max_budget"].as_f64().unwrap(),
        CALL_COST * 1.5
    ));
    assert_eq!(answer["key_hash"].as_str().unwrap().len(), 64);

    let (status, _, body) = chat_as(&proxy, &key, "gpt-a").await;
    assert_eq!(status, 200, "the model's budget starts again: {body}");
    assert_eq!(up.calls("gpt-a"), 2);
}

#[tokio::test]
async fn reset_spend_refuses_values_that_are_not_a_lower_spend_and_callers_who_are_not_admins() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({"max_budget": 1.0})).await;
    assert_eq!(chat_as(&proxy, &key, "gpt-a").await.0, 200);
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
    let path = format!("/key/{key}/reset_spend");
    for (body, why) in [
        (
            json!({"reset_to": CALL_COST * 2.0}),
            "above the key's spend",
        ),
        (json!({"reset_to": -1}), "0 or more"),
        (json!({"reset_to": "0"}), "number"),
        (json!({"reset_to": true}), "number"),
    ] {
        let (status, answer) = post_as(&proxy, MASTER, &path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["param"], "reset_to", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
    let (status, answer) = post_as(&proxy, MASTER, &path, json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reset_to")
    );

    let (status, answer) = post_as(&proxy, &key, &path, json!({"reset_to": 0})).await;
    assert_eq!(status, 403, "a key may not lift its own budget: {answer}");
    let (status, answer) = post_as(
        &proxy,
        MASTER,
        "/key/sk-no-such-key/reset_spend",
        json!({"reset_to": 0}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(close(key_spend(&proxy, &key, CALL_COST).await, CALL_COST));
}

#[tokio::test]
async fn a_global_spend_reset_zeroes_every_key_and_team_and_admits_a_spent_key_at_once() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let team = manage(&proxy, "/team/new", json!({"team_alias": "t"})).await;
    let team_id = team["team_id"].as_str().unwrap();
    let spent = new_key(
        &proxy,
        json!({"max_budget": CALL_COST / 2.0, "team_id": team_id}),
    )
    .await;
    assert_eq!(chat_as(&proxy, &spent, "gpt-a").await.0, 200);
    let (status, _, body) = chat_as(&proxy, &spent, "gpt-a").await;
    assert_eq!(
        (status, code(&body)),
        (400, "key_budget_exceeded"),
        "{body}"
    );
    assert!(close(key_spend(&proxy, &spent, CALL_COST).await, CALL_COST));

    let (status, answer) = post_as(&proxy, &spent, "/global/spend/reset", json!({})).await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = post_as(&proxy, MASTER, "/global/spend/reset", json!({})).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("success")),
        "{answer}"
    );

    assert_eq!(key_spend(&proxy, &spent, 0.0).await, 0.0);
    let (status, team) = proxy
        .call(
            Method::GET,
            &format!("/team/info?team_id={team_id}"),
            None,
            Some(MASTER),
        )
        .await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(team["team_info"]["spend"], 0.0, "{team}");
    let (status, _, body) = chat_as(&proxy, &spent, "gpt-a").await;
    assert_eq!(status, 200, "the spent key is admitted again: {body}");
}

#[tokio::test]
async fn v2_key_info_answers_for_several_keys_and_only_those_the_caller_may_read() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let busy = new_key(&proxy, json!({"key_alias": "busy"})).await;
    let idle = new_key(&proxy, json!({"key_alias": "idle"})).await;
    assert_eq!(chat_as(&proxy, &busy, "gpt-a").await.0, 200);
    assert!(close(key_spend(&proxy, &busy, CALL_COST).await, CALL_COST));

    let (status, answer) = post_as(
        &proxy,
        MASTER,
        "/v2/key/info",
        json!({"keys": [idle, "sk-no-such-key"], "key_aliases": ["busy"]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let aliases: Vec<&str> = answer["info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key_alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, ["busy", "idle"], "most spent first: {answer}");
    assert_eq!(answer["key"], json!([idle, "sk-no-such-key"]));

    let (status, answer) =
        post_as(&proxy, &idle, "/v2/key/info", json!({"keys": [busy, idle]})).await;
    assert_eq!(status, 200, "{answer}");
    let info = answer["info"].as_array().unwrap();
    assert_eq!(info.len(), 1, "another user's key is left out: {answer}");
    assert_eq!(info[0]["key_alias"], "idle");

    let (status, answer) = post_as(&proxy, MASTER, "/v2/key/info", json!({})).await;
    assert_eq!((status, &answer["error"]["param"]), (400, &json!("keys")));
}

#[tokio::test]
async fn spend_calculate_prices_a_prompt_and_an_answer_as_the_gateway_charges_them() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({})).await;
    let answer = json!({"completion_response": {
        "id": "c", "object": "chat.completion", "model": "gpt-a",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}});
    let (status, quoted) = post_as(&proxy, &key, "/spend/calculate", answer).await;
    assert_eq!(status, 200, "{quoted}");
    assert!(
        close(quoted["cost"].as_f64().unwrap(), CALL_COST),
        "{quoted}"
    );

    let prompt = json!({"model": "gpt-b",
                        "messages": [{"role": "user", "content": "a question of some length"}]});
    let (status, quoted) = post_as(&proxy, &key, "/spend/calculate", prompt).await;
    assert_eq!(status, 200, "{quoted}");
    let cost = quoted["cost"].as_f64().unwrap();
    let tokens = cost / INPUT_PRICE;
    assert!(
        tokens >= 5.0 && (tokens - tokens.round()).abs() < 1e-6,
        "a whole number of prompt tokens: {quoted}"
    );

    for (body, param) in [
        (
            json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (json!({"model": "gpt-a"}), "messages"),
        (json!({}), "model"),
        (
            json!({"completion_response": {"usage": {}}}),
            "completion_response.model",
        ),
    ] {
        let (status, error) = post_as(&proxy, &key, "/spend/calculate", body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
}

#[tokio::test]
async fn available_roles_lists_the_roles_a_person_may_have() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let key = new_key(&proxy, json!({})).await;
    let (status, roles) = proxy
        .call(Method::GET, "/user/available_roles", None, Some(&key))
        .await;
    assert_eq!(status, 200, "{roles}");
    let mut names: Vec<&String> = roles.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "internal_user",
            "internal_user_viewer",
            "proxy_admin",
            "proxy_admin_viewer"
        ]
    );
    for role in roles.as_object().unwrap().values() {
        assert!(role["description"].is_string() && role["ui_label"].is_string());
    }
    let (status, _) = proxy
        .call(Method::GET, "/user/available_roles", None, None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn v2_model_info_pages_the_deployments_and_filters_them() {
    let up = FakeUpstream::start().await;
    let proxy = gateway(&up).await;
    let page = |query: &str| {
        let path = format!("/v2/model/info?{query}");
        let proxy = &proxy;
        async move { proxy.call(Method::GET, &path, None, Some(MASTER)).await }
    };
    let (status, first) = page("size=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        (
            &first["total_count"],
            &first["total_pages"],
            &first["current_page"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );
    assert!(first["data"][0]["litellm_params"].get("api_key").is_none());
    let (_, second) = page("size=2&page=2").await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    let (_, found) = page("search=PT-B").await;
    assert_eq!(found["data"][0]["model_name"], "gpt-b", "{found}");
    assert_eq!(found["total_count"], 1);
    for by_name in ["model=gpt-c", "model_name=gpt-c"] {
        let (_, one) = page(by_name).await;
        assert_eq!(one["total_count"], 1, "{by_name}: {one}");
    }
    for bad in ["size=0", "size=1001", "page=0", "page=x"] {
        let (status, error) = page(bad).await;
        assert_eq!(status, 400, "{bad}: {error}");
    }
}
