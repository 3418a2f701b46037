//! Composite profiles and the response cache: a council's final answer is
//! one entry with its trace, and with `composite_subcalls` the members'
//! answers are reused even when the final answer is not stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use conclave_e2e::{
    Behavior, FakeUpstream, Proxy, answer_content, answer_reasoning, chat_body, composite_config,
    sse_content, sse_payloads,
};
use serde_json::{Value, json};

const MEMBERS: [&str; 3] = ["member-kilo", "member-lima", "member-mike"];
const CHAIR: &str = "chair-oscar";

const PROFILE: &str = "      council_test:\n        strategy: council\n        topology:\n          \
    chairman: {model: chair-oscar}\n          \
    council: [{model: member-kilo}, {model: member-lima}, {model: member-mike}]\n          \
    settings: {}\n";

async fn start(up: &FakeUpstream, cache_params: &str) -> Proxy {
    for (i, m) in MEMBERS.iter().enumerate() {
        up.set(m, Behavior::ok(&format!("member answer {i}")));
    }
    up.set(CHAIR, Behavior::ok("the council's answer"));
    let mut names = MEMBERS.to_vec();
    names.push(CHAIR);
    let mut yaml = composite_config(up, &names, &[("council", "council_test")], PROFILE);
    yaml.push_str(&format!(
        "litellm_settings:\n  cache: true\n  cache_params: {cache_params}\n"
    ));
    Proxy::start(&yaml).await
}

fn member_calls(up: &FakeUpstream) -> Vec<usize> {
    MEMBERS.iter().map(|m| up.calls(m)).collect()
}

#[tokio::test]
async fn a_council_asked_twice_calls_its_members_once_and_the_hit_shows_the_trace() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let body = chat_body("council", "what is 6x7?");
    let (status, headers, first) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["x-conclave-cache"], "stored");
    // Members answer, then review each other: the calls of one run.
    let one_run = member_calls(&up);
    assert!(one_run.iter().all(|n| *n >= 1), "{one_run:?}");
    let trace = answer_reasoning(&first).to_owned();
    assert!(!trace.is_empty(), "{first}");

    let (status, headers, second) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(headers["x-conclave-cache"], "hit");
    assert_eq!(member_calls(&up), one_run, "no member was asked again");
    assert_eq!(up.calls(CHAIR), 1);
    assert_eq!(answer_content(&second), "the council's answer");
    let replayed = answer_reasoning(&second);
    assert!(replayed.starts_with("[cached answer"), "{replayed}");
    assert!(
        replayed.ends_with(&trace),
        "the original trace follows the note"
    );
    assert_eq!(second["usage"], first["usage"], "usage as stored");

    // Streamed, the same entry replays the trace as reasoning deltas.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = proxy.post("/v1/chat/completions", &streamed).await;
    assert_eq!(r.headers()["x-conclave-cache"], "hit");
    let text = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .unwrap()
        .unwrap();
    let payloads = sse_payloads(&text);
    assert_eq!(sse_content(&payloads), "the council's answer");
    let reasoning: String = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(reasoning.starts_with("[cached answer"), "{reasoning}");
    assert_eq!(member_calls(&up), one_run);
}

#[tokio::test]
async fn with_composite_subcalls_members_are_reused_when_the_answer_is_not_stored() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{composite_subcalls: true}").await;
    let mut body = chat_body("council", "what is 7x8?");
    body["cache"] = json!({"no-store": true});
    let (status, headers, first) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["x-conclave-cache"], "miss");
    let one_run = member_calls(&up);
    let (status, headers, second) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        headers["x-conclave-cache"], "miss",
        "the final answer was not stored"
    );
    assert_eq!(
        member_calls(&up),
        one_run,
        "members answered from the cache: {:?}",
        conclave_e2e::bodies(&up, MEMBERS[0])
    );
    assert_eq!(answer_content(&second), "the council's answer");
}

/// A sampling strategy's draws ask the same question: within one run
/// only the first may come from the cache, or every sample would be the
/// same stored answer and the vote a fiction.
#[tokio::test]
async fn samples_of_one_run_are_not_copies_of_one_cached_answer() {
    let up = FakeUpstream::start().await;
    up.set(MEMBERS[0], Behavior::ok("ANSWER 7"));
    let profile = "      sc_test:\n        strategy: self-consistency\n        topology:\n          \
        model: member-kilo\n          settings: {samples: 3}\n";
    let mut yaml = composite_config(&up, &MEMBERS[..1], &[("vote", "sc_test")], profile);
    yaml.push_str("litellm_settings:\n  cache: true\n  cache_params: {composite_subcalls: true}\n");
    let proxy = Proxy::start(&yaml).await;
    let mut body = chat_body("vote", "what is 3+4?");
    body["cache"] = json!({"no-store": true});
    let (status, _, first) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(up.calls(MEMBERS[0]), 3, "three draws, none from the cache");
    let (status, _, second) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        up.calls(MEMBERS[0]),
        5,
        "the next run reads its first draw from the cache, and only that one"
    );
}

#[tokio::test]
async fn without_composite_subcalls_members_are_asked_again() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, "{}").await;
    let mut body = chat_body("council", "what is 8x9?");
    body["cache"] = json!({"no-store": true});
    proxy.chat(&body).await;
    let one_run = member_calls(&up);
    proxy.chat(&body).await;
    let twice: Vec<usize> = one_run.iter().map(|n| n * 2).collect();
    assert_eq!(member_calls(&up), twice);
}

#[tokio::test]
async fn a_cached_run_naming_models_a_key_may_not_call_is_not_its_answer() {
    const MASTER: &str = "sk-cache-composite-master";
    let up = FakeUpstream::start().await;
    for (i, m) in MEMBERS.iter().enumerate() {
        up.set(m, Behavior::ok(&format!("member answer {i}")));
    }
    up.set(CHAIR, Behavior::ok("the council's answer"));
    up.set("extra-zulu", Behavior::ok("an answer the key may not have"));
    let mut names = MEMBERS.to_vec();
    names.extend([CHAIR, "extra-zulu"]);
    let mut yaml = composite_config(&up, &names, &[("council", "council_test")], PROFILE).replace(
        "general_settings:\n",
        &format!("general_settings:\n  master_key: {MASTER}\n"),
    );
    yaml.push_str("litellm_settings:\n  cache: true\n  cache_params: {scope: global}\n");
    let proxy = Proxy::start(&yaml).await;
    let body = json!({"model": "council", "messages": [{"role": "user", "content": "6x7?"}],
                      "composite_settings": {"council_models": ["member-kilo", "extra-zulu"]}});
    let ask = |key: String| {
        let (proxy, body) = (&proxy, body.clone());
        async move {
            let r = proxy
                .client
                .post(proxy.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let cache = r
                .headers()
                .get("x-conclave-cache")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), cache)
        }
    };
    let (status, cache) = ask(MASTER.to_owned()).await;
    assert_eq!((status, cache.as_deref()), (200, Some("stored")));
    let limited = proxy
        .generate_key(MASTER, json!({"models": ["council"]}))
        .await;
    let (status, cache) = ask(limited["key"].as_str().unwrap().to_owned()).await;
    assert_ne!(cache.as_deref(), Some("hit"));
    assert_ne!(status, 200, "the run refuses extra-zulu for this key");
    // The master key still hits its entry.
    let (_, cache) = ask(MASTER.to_owned()).await;
    assert_eq!(cache.as_deref(), Some("hit"));
}
