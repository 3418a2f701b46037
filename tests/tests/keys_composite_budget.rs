//! Composite requests made with a virtual key: the profile is the model the
//! key must be allowed to use (its sub-calls go through it on the caller's
//! behalf), every sub-call is priced and charged to the caller as it ends,
//! the answer's cost is the sum of its calls, and a run whose caller's
//! budget runs out stops there: its next call gets `limit-exceeded`
//! instead of spending more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod keys_support;

use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, SseReader};
use keys_support::{
    CALL_COST, MASTER, chat_as, chat_body_as, close, code, composite, header, key_spend, manage,
    new_key, spend_rows,
};
use serde_json::json;

const MEMBERS: [&str; 3] = ["member-kilo", "member-lima", "member-mike"];
const CHAIR: &str = "chair-oscar";

/// A council of three members and a chairman, public as `council`: each
/// member answers, then reviews the others' answers, then the chairman
/// answers: seven calls per run.
async fn council(up: &FakeUpstream) -> Proxy {
    council_with(up, "").await
}

/// [`council`] with `extra` top-level config appended.
async fn council_with(up: &FakeUpstream, extra: &str) -> Proxy {
    Proxy::start(&(council_config(up, &["council"]) + extra)).await
}

/// The council's config, its profile public under each of `names`.
fn council_config(up: &FakeUpstream, names: &[&str]) -> String {
    for m in MEMBERS {
        up.set(m, Behavior::ok(&format!("{m} says 42")));
    }
    up.set(CHAIR, Behavior::ok("the council says 42"));
    let mut deployments = MEMBERS.to_vec();
    deployments.push(CHAIR);
    let profile = "      council_test:\n        strategy: council\n        topology:\n          \
         chairman: {model: chair-oscar}\n          \
         council: [{model: member-kilo}, {model: member-lima}, {model: member-mike}]\n";
    let public: Vec<(&str, &str)> = names.iter().map(|n| (*n, "council_test")).collect();
    composite(up, &deployments, &public, profile)
}

/// A streamed request to the council as `key`, under `request_id`.
async fn stream_council(proxy: &Proxy, key: &str, request_id: &str) -> SseReader {
    let r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", request_id)
        .json(&json!({"model": "council", "stream": true,
                      "messages": [{"role": "user", "content": "6x7?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

fn member_calls(up: &FakeUpstream) -> usize {
    MEMBERS.iter().map(|m| up.calls(m)).sum()
}

#[tokio::test]
async fn a_composite_answer_costs_the_sum_of_its_calls_with_a_row_for_each() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let key = new_key(&proxy, json!({})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "council").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (6, 1));
    let reported: f64 = header(&headers, "x-conclave-response-cost")
        .parse()
        .unwrap();
    assert!(close(reported, 7.0 * CALL_COST), "{reported}");
    // Scripts written for LiteLLM read the same cost under its name.
    assert_eq!(
        header(&headers, "x-litellm-response-cost"),
        header(&headers, "x-conclave-response-cost")
    );
    let id = header(&headers, "x-conclave-request-id").to_owned();
    let rows = spend_rows(&proxy, &id, 8).await;
    assert_eq!(rows.len(), 8, "{rows:?}");
    let sub_calls: Vec<_> = rows
        .iter()
        .filter(|r| r["parent_request_id"] == id.as_str())
        .collect();
    assert_eq!(sub_calls.len(), 7, "{rows:?}");
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!(close(logged, 7.0 * CALL_COST), "{logged}");
    assert!(close(
        key_spend(&proxy, &key, 7.0 * CALL_COST).await,
        7.0 * CALL_COST
    ));
}

#[tokio::test]
async fn a_streamed_composite_charges_every_call_to_the_key() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let key = new_key(&proxy, json!({})).await;
    let mut reader = stream_council(&proxy, &key, "council-streamed").await;
    while let Some(data) = reader.next(std::time::Duration::from_secs(20)).await {
        if data == "[DONE]" {
            break;
        }
    }
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (6, 1));
    let spend = key_spend(&proxy, &key, 7.0 * CALL_COST).await;
    assert!(close(spend, 7.0 * CALL_COST), "{spend}");
}

#[tokio::test]
async fn a_run_stops_at_its_callers_budget_instead_of_calling_the_chairman() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    // The three members' answers spend the budget: their reviews and the
    // chairman's answer would pass it.
    let key = new_key(&proxy, json!({"max_budget": 2.5 * CALL_COST})).await;
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_ne!(status, 200, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("budget exceeded"), "{body}");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
    // The next request is refused before any model is called.
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "key_budget_exceeded");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
    assert!(close(
        key_spend(&proxy, &key, 3.0 * CALL_COST).await,
        3.0 * CALL_COST
    ));
}

#[tokio::test]
async fn a_run_stops_at_the_gateways_budget_whoever_calls() {
    let up = FakeUpstream::start().await;
    let budget = 2.5 * CALL_COST;
    let proxy = council_with(&up, &format!("litellm_settings:\n  max_budget: {budget}\n")).await;
    let (status, _, body) = chat_as(&proxy, MASTER, "council").await;
    assert_ne!(status, 200, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("litellm_settings.max_budget"), "{body}");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
    let (status, _, body) = chat_as(&proxy, MASTER, "council").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "proxy_budget_exceeded");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
}

#[tokio::test]
async fn a_run_stops_at_its_callers_rpm_like_any_request() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    // The request and the members' three answers fit; the reviews and the
    // chairman's call do not.
    let key = new_key(&proxy, json!({"rpm_limit": 4})).await;
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("rpm_limit 4"),
        "{body}"
    );
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
}

#[tokio::test]
async fn a_run_stopped_by_its_callers_rpm_answers_429_with_retry_after() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let key = new_key(&proxy, json!({"rpm_limit": 4})).await;
    let (status, headers, body) = chat_as(&proxy, &key, "council").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "rpm_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("council_test"), "{message}");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "4");
}

#[tokio::test]
async fn a_run_stopped_by_its_callers_budget_answers_with_the_budget_error() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let key = new_key(&proxy, json!({"max_budget": 2.5 * CALL_COST})).await;
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "key_budget_exceeded");
    assert_eq!(body["error"]["type"], "budget_exceeded");
}

#[tokio::test]
async fn a_run_stops_at_its_end_users_budget_and_charges_the_end_user_every_call() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    manage(
        &proxy,
        "/customer/new",
        json!({"user_id": "frugal", "max_budget": 2.5 * CALL_COST}),
    )
    .await;
    let body = json!({"model": "council", "user": "frugal",
                      "messages": [{"role": "user", "content": "6x7?"}]});
    let (status, _, answer) = chat_body_as(&proxy, MASTER, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(code(&answer), "end_user_budget_exceeded");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
    // Refused before any model is called from now on.
    let (status, _, answer) = chat_body_as(&proxy, MASTER, &body).await;
    assert_eq!((status, code(&answer)), (400, "end_user_budget_exceeded"));
    assert_eq!(member_calls(&up), 3);
}

#[tokio::test]
async fn a_key_needs_the_profile_not_its_members_in_its_models() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let allowed = new_key(&proxy, json!({"models": ["council"]})).await;
    let (status, _, body) = chat_as(&proxy, &allowed, "council").await;
    assert_eq!(status, 200, "{body}");
    // Its sub-calls' models are reached only through the profile.
    let (status, _, body) = chat_as(&proxy, &allowed, "member-kilo").await;
    assert_eq!(status, 403, "{body}");
    let other = new_key(&proxy, json!({"models": ["member-kilo"]})).await;
    let (status, _, body) = chat_as(&proxy, &other, "council").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "key_model_access_denied");
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (6, 1));
}

#[tokio::test]
async fn members_the_run_left_or_that_failed_leave_their_rows() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    up.set(
        MEMBERS[0],
        Behavior::ok("late").delayed(Duration::from_secs(5)),
    );
    up.set(MEMBERS[1], Behavior::status(500, "down"));
    let key = new_key(&proxy, json!({})).await;
    let left = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-request-id", "council-left")
        .timeout(Duration::from_millis(800))
        .json(&json!({"model": "council", "messages": [{"role": "user", "content": "6x7?"}]}))
        .send()
        .await;
    assert!(left.is_err(), "the client gave up first: {left:?}");
    // The parent, the member that answered, the one that failed, and the
    // one still running when the client left.
    let rows = spend_rows(&proxy, "council-left", 4).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let sub_calls: Vec<_> = rows
        .iter()
        .filter(|r| r["parent_request_id"] == "council-left")
        .collect();
    let status_of = |code: i64| {
        sub_calls
            .iter()
            .filter(|r| r["status_code"] == code)
            .count()
    };
    assert_eq!(status_of(499), 1, "{rows:?}");
    assert!(
        sub_calls
            .iter()
            .any(|r| r["status_code"].as_i64().is_some_and(|s| s >= 500)),
        "{rows:?}"
    );
    let abandoned = sub_calls.iter().find(|r| r["status_code"] == 499).unwrap();
    assert!(
        abandoned["prompt_tokens"].as_u64().unwrap() > 0,
        "{abandoned}"
    );
    assert!(abandoned["spend"].as_f64().unwrap() > 0.0, "{abandoned}");
}

#[tokio::test]
async fn a_streamed_final_answer_the_client_leaves_is_charged_what_it_sent() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    up.set(
        CHAIR,
        Behavior::ok(&"the council says forty two ".repeat(60))
            .chunked(120, Duration::from_millis(25)),
    );
    let key = new_key(&proxy, json!({})).await;
    let mut reader = stream_council(&proxy, &key, "council-stream-left").await;
    let mut content = 0;
    while content < 30 {
        let data = reader.next(Duration::from_secs(20)).await.unwrap();
        if data.contains("\"content\"") {
            content += 1;
        }
    }
    drop(reader);
    // The parent, six member calls, and the chairman's cut stream.
    let rows = spend_rows(&proxy, "council-stream-left", 8).await;
    assert_eq!(rows.len(), 8, "{rows:?}");
    let chair = rows
        .iter()
        .find(|r| r["parent_request_id"] == "council-stream-left" && r["status_code"] == 499)
        .unwrap_or_else(|| panic!("no cut final stage: {rows:?}"));
    assert!(chair["completion_tokens"].as_u64().unwrap() > 0, "{chair}");
    assert!(chair["spend"].as_f64().unwrap() > 0.0, "{chair}");
}

/// A key's per-model budget on a composite model's name holds: its runs'
/// sub-calls count toward it, while they run and in the key's stored
/// per-model spend.
#[tokio::test]
async fn a_per_model_budget_on_a_composite_name_stops_its_runs() {
    let up = FakeUpstream::start().await;
    let proxy = council(&up).await;
    let budget = 2.5 * CALL_COST;
    let key = new_key(
        &proxy,
        json!({"model_max_budget": {"council": {"budget_limit": budget}}}),
    )
    .await;
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("budget"),
        "{body}"
    );
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (3, 0));
    let (status, _, body) = chat_as(&proxy, &key, "council").await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(
        (member_calls(&up), up.calls(CHAIR)),
        (3, 0),
        "refused before any call"
    );
    let info = keys_support::key_info_once(&proxy, &key, |i| {
        i["model_spend"]["council"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    })
    .await;
    assert!(
        close(
            info["model_spend"]["council"].as_f64().unwrap(),
            3.0 * CALL_COST
        ),
        "{info}"
    );
}

/// A composite named as another's member is refused before the run spends
/// anything, for any caller.
#[tokio::test]
async fn a_composite_named_as_a_member_is_refused_before_any_call() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&council_config(&up, &["council", "other-council"])).await;
    // Another composite, or the composite itself.
    for (field, value) in [
        ("chairman_model", json!("other-council")),
        ("council_models", json!([MEMBERS[0], "council"])),
    ] {
        let mut body = json!({"model": "council",
                              "messages": [{"role": "user", "content": "6x7?"}]});
        body[field] = value;
        let (status, _, answer) = chat_body_as(&proxy, MASTER, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(code(&answer), "composite_member", "{answer}");
    }
    assert_eq!((member_calls(&up), up.calls(CHAIR)), (0, 0));
}
