//! The built-in `best-of-n` strategy through the real binary: candidates,
//! a judge that sees them shuffled, and the pick.

use conclave_e2e::{
    Behavior, FAKE_CALL_ID, FakeUpstream, Proxy, answer_content, answer_reasoning, bodies,
    chat_body, composite_config, error_object, messages_text,
};
use serde_json::{Value, json};

const CANDIDATES: [&str; 4] = ["cand-1", "cand-2", "cand-3", "cand-4"];
const TEXTS: [&str; 4] = ["TEXT-ONE", "TEXT-TWO", "TEXT-THREE", "TEXT-FOUR"];

fn profile(topology: &str, settings: &str) -> String {
    format!(
        "      bon_test:\n        strategy: best-of-n\n        topology:\n          judge: {{model: judge}}\n          {topology}\n          settings: {settings}\n"
    )
}

fn candidates(n: usize) -> String {
    let nodes: Vec<String> = CANDIDATES[..n]
        .iter()
        .map(|c| format!("{{model: {c}}}"))
        .collect();
    format!("candidates: [{}]", nodes.join(", "))
}

async fn start(up: &FakeUpstream, profile: &str) -> Proxy {
    let mut names = CANDIDATES.to_vec();
    names.extend(["judge", "gen"]);
    Proxy::start(&composite_config(
        up,
        &names,
        &[("bon", "bon_test")],
        profile,
    ))
    .await
}

/// The candidate texts in the order the judge's prompt shows them.
fn shown_order(judge_body: &Value) -> Vec<&'static str> {
    let text = messages_text(judge_body);
    let mut found: Vec<(usize, &'static str)> = TEXTS
        .iter()
        .filter_map(|t| text.find(t).map(|at| (at, *t)))
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, t)| t).collect()
}

#[tokio::test]
async fn the_judge_sees_the_candidates_shuffled_and_its_pick_is_the_answer() {
    let up = FakeUpstream::start().await;
    for (c, t) in CANDIDATES.iter().zip(TEXTS) {
        up.set(c, Behavior::ok(t));
    }
    up.set(
        "judge",
        Behavior::ok("Candidate 2 is the most precise and cites its source.\n\nCHOICE: 2"),
    );
    let proxy = start(&up, &profile(&candidates(4), "{}")).await;
    let (status, headers, body) = proxy.chat(&chat_body("bon", "explain tides")).await;
    assert_eq!(status, 200, "{body}");
    let judge = up.last_body("judge").unwrap();
    let shown = shown_order(&judge);
    assert_eq!(shown.len(), 4, "every candidate is shown: {judge}");
    assert_ne!(shown, TEXTS, "the judge saw the generation order");
    // The judge's "2" is the second candidate it was shown.
    assert_eq!(answer_content(&body), shown[1]);
    let picked = TEXTS.iter().position(|t| *t == shown[1]).unwrap();
    assert_eq!(
        headers["x-conclave-final-model"],
        format!("cand-{}-up", picked + 1)
    );
    let judge_text = messages_text(&judge);
    assert!(judge_text.contains("explain tides"), "{judge_text}");
    assert!(judge_text.contains("### Candidate 1\n"), "{judge_text}");
    assert!(!judge_text.contains("cand-"), "{judge_text}");
    let trace = answer_reasoning(&body);
    assert!(
        trace.contains(&format!("picked candidate {} (shown as 2)", picked + 1)),
        "{trace}"
    );
    assert!(
        trace.contains("reason: Candidate 2 is the most precise and cites its source."),
        "{trace}"
    );
    // The trace's shown order matches what the judge got.
    let order: Vec<String> = shown
        .iter()
        .map(|t| (TEXTS.iter().position(|x| x == t).unwrap() + 1).to_string())
        .collect();
    assert!(
        trace.contains(&format!("shown in the order {}", order.join(", "))),
        "{trace}"
    );
    for c in CANDIDATES {
        assert_eq!(up.calls(c), 1);
    }
}

#[tokio::test]
async fn two_candidates_are_never_shown_in_generation_order() {
    let up = FakeUpstream::start().await;
    up.set("cand-1", Behavior::ok("TEXT-ONE"));
    up.set("cand-2", Behavior::ok("TEXT-TWO"));
    up.set("judge", Behavior::ok("CHOICE: 1"));
    let proxy = start(&up, &profile(&candidates(2), "{}")).await;
    for prompt in ["a", "b", "c", "d", "e"] {
        let (status, _, body) = proxy.chat(&chat_body("bon", prompt)).await;
        assert_eq!(status, 200, "{body}");
        let shown = shown_order(&up.last_body("judge").unwrap());
        assert_eq!(shown, ["TEXT-TWO", "TEXT-ONE"], "prompt {prompt}");
        assert_eq!(answer_content(&body), "TEXT-TWO");
    }
}

#[tokio::test]
async fn a_generator_is_sampled_n_times_at_the_settings_or_the_requests_temperature() {
    let up = FakeUpstream::start().await;
    up.set("gen", Behavior::ok("generated"));
    up.set("judge", Behavior::ok("**Choice:** 3"));
    let proxy = start(
        &up,
        &profile("generator: {model: gen}", "{n: 3, temperature: 1.1}"),
    )
    .await;
    let (status, _, body) = proxy.chat(&chat_body("bon", "q")).await;
    assert_eq!(status, 200, "{body}");
    let sent = bodies(&up, "gen");
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|b| b["temperature"] == 1.1), "{sent:?}");
    // The judge is not sampled.
    assert!(up.last_body("judge").unwrap().get("temperature").is_none());
    assert!(answer_reasoning(&body).contains("(shown as 3)"), "{body}");

    // A request's temperature overrides the profile's, like any setting.
    up.clear();
    let mut request = chat_body("bon", "q");
    request["temperature"] = json!(0.3);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let sent = bodies(&up, "gen");
    assert!(sent.iter().all(|b| b["temperature"] == 0.3), "{sent:?}");
}

#[tokio::test]
async fn an_unreadable_or_failed_judgement_falls_back_to_the_first_candidate() {
    let up = FakeUpstream::start().await;
    for (c, t) in CANDIDATES.iter().zip(TEXTS) {
        up.set(c, Behavior::ok(t));
    }
    up.set("cand-1", Behavior::status(500, "cand-1 is down"));
    up.set(
        "judge",
        Behavior::ok("They are all excellent in their own way."),
    );
    let proxy = start(&up, &profile(&candidates(4), "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("bon", "q")).await;
    assert_eq!(status, 200, "{body}");
    // cand-1 failed: the first successful candidate is cand-2.
    assert_eq!(answer_content(&body), "TEXT-TWO");
    let trace = answer_reasoning(&body);
    assert!(trace.contains("candidate 1 (cand-1) failed"), "{trace}");
    assert!(
        trace.contains("the judge's choice could not be read"),
        "{trace}"
    );
    // The failed candidate is not shown to the judge.
    let shown = shown_order(&up.last_body("judge").unwrap());
    assert_eq!(shown.len(), 3);
    assert!(!shown.contains(&"TEXT-ONE"));

    up.set("judge", Behavior::status(500, "judge is down"));
    let (status, _, body) = proxy.chat(&chat_body("bon", "q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "TEXT-TWO");
    assert!(
        answer_reasoning(&body).contains("the judge failed"),
        "{body}"
    );
}

#[tokio::test]
async fn fewer_candidates_than_min_candidates_is_a_502() {
    let up = FakeUpstream::start().await;
    up.set("cand-1", Behavior::ok("TEXT-ONE"));
    for c in &CANDIDATES[1..] {
        up.set(c, Behavior::status(500, &format!("{c} is down")));
    }
    let proxy = start(&up, &profile(&candidates(4), "{min_candidates: 2}")).await;
    let (status, _, body) = proxy.chat(&chat_body("bon", "q")).await;
    assert_eq!(status, 502, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap();
    assert!(
        message.contains("only 1 of 4 candidates answered; min_candidates is 2"),
        "{message}"
    );
    assert_eq!(up.calls("judge"), 0);
}

#[tokio::test]
async fn only_the_picked_candidate_gets_the_tools_and_its_tool_call_reaches_the_client() {
    let up = FakeUpstream::start().await;
    for (c, t) in CANDIDATES[..3].iter().zip(TEXTS) {
        up.push(c, Behavior::ok(t));
        up.set(c, Behavior::tool_call("lookup", r#"{"q":"tides"}"#));
    }
    up.set("judge", Behavior::ok("CHOICE: 1"));
    let proxy = start(&up, &profile(&candidates(3), "{}")).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let mut request = chat_body("bon", "explain tides");
    request["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "lookup", "arguments": "{\"q\":\"tides\"}"})
    );
    let judge = up.last_body("judge").unwrap();
    assert!(judge.get("tools").is_none());
    let first_shown = shown_order(&judge)[0];
    let picked = CANDIDATES[TEXTS.iter().position(|t| *t == first_shown).unwrap()];
    for c in &CANDIDATES[..3] {
        let sent = bodies(&up, c);
        assert!(sent[0].get("tools").is_none(), "{c}: {}", sent[0]);
        if *c == picked {
            assert_eq!(sent.len(), 2, "the picked candidate answers once more");
            assert_eq!(sent[1]["tools"], tools);
            assert!(messages_text(&sent[1]).contains(first_shown));
        } else {
            assert_eq!(sent.len(), 1, "{c}");
        }
    }

    // A follow-up turn with the tool's result.
    up.clear();
    for c in &CANDIDATES[..3] {
        up.push(c, Behavior::ok("draft"));
        up.set(c, Behavior::ok("The moon pulls the sea."));
    }
    let mut follow_up = chat_body("bon", "explain tides");
    follow_up["messages"] = json!([
        {"role": "user", "content": "explain tides"},
        {"role": "assistant", "content": null, "tool_calls": body["choices"][0]["message"]["tool_calls"].clone()},
        {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "MOON-GRAVITY"},
    ]);
    follow_up["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&follow_up).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "The moon pulls the sea.");
    let judge = up.last_body("judge").unwrap();
    assert!(messages_text(&judge).contains("MOON-GRAVITY"));
    assert!(!judge.to_string().contains("\"role\":\"tool\""));
    for c in &CANDIDATES[..3] {
        let first = &bodies(&up, c)[0];
        assert!(first.get("tools").is_none(), "{first}");
        assert!(!first.to_string().contains("\"role\":\"tool\""), "{first}");
    }
    let finals: Vec<Value> = CANDIDATES[..3]
        .iter()
        .filter_map(|c| bodies(&up, c).into_iter().nth(1))
        .collect();
    assert_eq!(
        finals.len(),
        1,
        "exactly one candidate answers with the tools"
    );
    assert_eq!(finals[0]["tools"], tools);
    conclave_e2e::assert_ends_with_tool_result(&finals[0]);
}

#[tokio::test]
async fn a_profile_with_both_candidates_and_a_generator_is_a_config_error() {
    let up = FakeUpstream::start().await;
    let yaml = composite_config(
        &up,
        &["cand-1", "judge", "gen"],
        &[("bon", "bon_test")],
        &profile(
            "candidates: [{model: cand-1}]\n          generator: {model: gen}",
            "{}",
        ),
    );
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains("profiles.bon_test.topology")
            && stderr.contains("give either candidates or a generator"),
        "{stderr}"
    );
}
