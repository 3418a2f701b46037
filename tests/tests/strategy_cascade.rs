//! The built-in `cascade` strategy through the real binary: tiers cheapest
//! first, a verifier or a rule deciding when to stop.

use conclave_e2e::{
    Behavior, FAKE_CALL_ID, FakeUpstream, Proxy, SseReader, answer_content, answer_reasoning,
    bodies, chat_body, composite_config, error_object, messages_text,
};
use serde_json::{Value, json};

const TIERS: &str = "tiers: [{model: tier-a}, {model: tier-b}, {model: tier-c}]";

fn profile(topology: &str, settings: &str) -> String {
    format!(
        "      cascade_test:\n        strategy: cascade\n        topology:\n          {topology}\n          settings: {settings}\n"
    )
}

fn with_verifier() -> String {
    format!("{TIERS}\n          verifier: {{model: checker}}")
}

async fn start(up: &FakeUpstream, profile: &str) -> Proxy {
    Proxy::start(&composite_config(
        up,
        &["tier-a", "tier-b", "tier-c", "checker"],
        &[("cascade", "cascade_test")],
        profile,
    ))
    .await
}

fn calls(up: &FakeUpstream) -> (usize, usize, usize, usize) {
    (
        up.calls("tier-a"),
        up.calls("tier-b"),
        up.calls("tier-c"),
        up.calls("checker"),
    )
}

#[tokio::test]
async fn the_cascade_escalates_until_the_verifier_approves_and_stops_there() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("A-GUESS"));
    up.set("tier-b", Behavior::ok("B-ANSWER"));
    up.set("tier-c", Behavior::ok("C-ANSWER"));
    up.push("checker", Behavior::ok("VERDICT: NO\nIt is only a guess."));
    up.push(
        "checker",
        Behavior::ok("**Verdict:** yes. Correct and complete."),
    );
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let (status, headers, body) = proxy.chat(&chat_body("cascade", "capital of Peru?")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "B-ANSWER");
    assert_eq!(calls(&up), (1, 1, 0, 2));
    assert_eq!(headers["x-conclave-final-model"], "tier-b");
    let checks = bodies(&up, "checker");
    let first = messages_text(&checks[0]);
    assert!(
        first.contains("A-GUESS") && first.contains("capital of Peru?"),
        "{first}"
    );
    assert!(messages_text(&checks[1]).contains("B-ANSWER"));
    let trace = answer_reasoning(&body);
    assert!(
        trace.contains("[tier 1] verifier checker rejected it"),
        "{trace}"
    );
    assert!(
        trace.contains("[tier 1] not accepted; escalating"),
        "{trace}"
    );
    assert!(
        trace.contains("[tier 2] accepted the answer of tier-b (verifier checker approved"),
        "{trace}"
    );
}

#[tokio::test]
async fn the_last_tier_is_accepted_without_asking_the_verifier() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("A"));
    up.set("tier-b", Behavior::ok("B"));
    up.set("tier-c", Behavior::ok("C-FINAL"));
    // Unreadable verdicts count as NO.
    up.set("checker", Behavior::ok("Hmm, hard to say."));
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let (status, headers, body) = proxy.chat(&chat_body("cascade", "q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "C-FINAL");
    assert_eq!(calls(&up), (1, 1, 1, 2));
    assert_eq!(headers["x-conclave-final-model"], "tier-c");
    let trace = answer_reasoning(&body);
    assert!(trace.contains("verdict could not be read"), "{trace}");
    assert!(
        trace.contains("[tier 3] tier-c is the last tier"),
        "{trace}"
    );
}

#[tokio::test]
async fn a_rule_accepts_without_a_verifier_when_pattern_and_length_both_hold() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("FINAL: ok"));
    up.set("tier-b", Behavior::ok("maybe, it depends on many things"));
    up.set(
        "tier-c",
        Behavior::ok("FINAL: Lima is the capital of Peru."),
    );
    let proxy = start(
        &up,
        &profile(TIERS, "{accept_pattern: '^FINAL:', min_length: 20}"),
    )
    .await;
    let (status, headers, body) = proxy.chat(&chat_body("cascade", "q")).await;
    assert_eq!(status, 200, "{body}");
    // tier-a matches the pattern but is too short; tier-b is long enough but
    // does not match; tier-c is the last tier anyway.
    assert_eq!(calls(&up), (1, 1, 1, 0));
    assert_eq!(headers["x-conclave-final-model"], "tier-c");

    up.clear();
    up.set("tier-b", Behavior::ok("FINAL: Lima, on the Pacific coast."));
    let (status, headers, body) = proxy.chat(&chat_body("cascade", "q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "FINAL: Lima, on the Pacific coast.");
    assert_eq!(calls(&up), (1, 1, 0, 0));
    assert_eq!(headers["x-conclave-final-model"], "tier-b");
    assert!(
        answer_reasoning(&body)
            .contains("rule: accept_pattern matched, 34 characters >= min_length 20"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failing_tier_or_verifier_escalates_instead_of_failing_the_request() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::status(500, "tier-a is down"));
    up.set("tier-b", Behavior::ok("B-ANSWER"));
    up.set("tier-c", Behavior::ok("C-ANSWER"));
    up.set("checker", Behavior::status(500, "checker is down"));
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("cascade", "q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "C-ANSWER");
    // tier-a fails (no verification), tier-b's check fails, tier-c is last.
    assert_eq!(calls(&up), (1, 1, 1, 1));
    let trace = answer_reasoning(&body);
    assert!(trace.contains("tier-a failed"), "{trace}");
    assert!(trace.contains("verifier checker failed"), "{trace}");
}

#[tokio::test]
async fn every_tier_failing_is_a_502_listing_each_failure() {
    let up = FakeUpstream::start().await;
    for t in ["tier-a", "tier-b", "tier-c"] {
        up.set(t, Behavior::status(500, &format!("{t} is down")));
    }
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("cascade", "q")).await;
    assert_eq!(status, 502, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap();
    assert!(message.contains("every tier failed"), "{message}");
    for t in ["tier-a", "tier-b", "tier-c"] {
        assert!(message.contains(&format!("{t} is down")), "{message}");
    }
    assert_eq!(up.calls("checker"), 0);
}

#[tokio::test]
async fn only_the_accepted_tier_gets_the_tools_and_its_tool_call_reaches_the_client() {
    let up = FakeUpstream::start().await;
    up.push("tier-a", Behavior::ok("Use the lookup tool."));
    up.set("tier-a", Behavior::tool_call("lookup", r#"{"q":"peru"}"#));
    up.set("checker", Behavior::ok("VERDICT: YES"));
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let mut request = chat_body("cascade", "capital of Peru?");
    request["tools"] = tools.clone();
    request["parallel_tool_calls"] = json!(false);
    let (status, headers, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"],
        json!([{"id": FAKE_CALL_ID, "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":\"peru\"}"}}])
    );
    assert_eq!(headers["x-conclave-final-model"], "tier-a");
    // Asked without tools, checked, then asked once more with them.
    assert_eq!(calls(&up), (2, 0, 0, 1));
    let sent = bodies(&up, "tier-a");
    assert!(sent[0].get("tools").is_none() && sent[0].get("parallel_tool_calls").is_none());
    assert!(up.last_body("checker").unwrap().get("tools").is_none());
    assert_eq!(sent[1]["tools"], tools);
    assert_eq!(sent[1]["parallel_tool_calls"], false);
    assert!(messages_text(&sent[1]).contains("Use the lookup tool."));

    // The follow-up turn carries the tool's result.
    up.clear();
    up.push("tier-a", Behavior::ok("Lima."));
    up.set("tier-a", Behavior::ok("The capital of Peru is Lima."));
    let mut follow_up = chat_body("cascade", "capital of Peru?");
    follow_up["messages"] = json!([
        {"role": "user", "content": "capital of Peru?"},
        {"role": "assistant", "content": null, "tool_calls": body["choices"][0]["message"]["tool_calls"].clone()},
        {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "LIMA-RESULT"},
    ]);
    follow_up["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&follow_up).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "The capital of Peru is Lima.");
    let sent = bodies(&up, "tier-a");
    assert!(
        !sent[0].to_string().contains("\"role\":\"tool\""),
        "{}",
        sent[0]
    );
    assert!(messages_text(&sent[0]).contains("LIMA-RESULT"));
    conclave_e2e::assert_ends_with_tool_result(&sent[1]);
}

#[tokio::test]
async fn a_streamed_last_tier_streams_its_tool_call_and_names_the_tier_in_the_trace() {
    let up = FakeUpstream::start().await;
    up.set("tier-a", Behavior::ok("A"));
    up.set("tier-b", Behavior::ok("B"));
    up.set("tier-c", Behavior::tool_call("lookup", r#"{"q":"lima"}"#));
    up.set("checker", Behavior::ok("NO"));
    let proxy = start(&up, &profile(&with_verifier(), "{}")).await;
    let mut request = chat_body("cascade", "q");
    request["stream"] = json!(true);
    request["tools"] = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let response = proxy.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let (mut trace, mut arguments, mut finish) = (String::new(), String::new(), String::new());
    for _ in 0..200 {
        let Some(payload) = reader.next(std::time::Duration::from_secs(10)).await else {
            break;
        };
        if payload == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&payload).unwrap();
        let choice = &chunk["choices"][0];
        trace.push_str(
            choice["delta"]["reasoning_content"]
                .as_str()
                .unwrap_or_default(),
        );
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for c in calls {
                arguments.push_str(c["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_owned();
        }
    }
    assert_eq!(arguments, "{\"q\":\"lima\"}");
    assert_eq!(finish, "tool_calls");
    assert!(
        trace.contains("[tier 3] tier-c is the last tier"),
        "{trace}"
    );
    assert_eq!(up.last_body("tier-c").unwrap()["tools"], request["tools"]);
    assert!(up.last_body("tier-a").unwrap().get("tools").is_none());
}

#[tokio::test]
async fn a_cascade_with_no_verifier_and_no_rule_is_a_config_error() {
    let up = FakeUpstream::start().await;
    let yaml = composite_config(
        &up,
        &["tier-a", "tier-b", "tier-c"],
        &[("cascade", "cascade_test")],
        &profile(TIERS, "{}"),
    );
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains("profiles.cascade_test.topology")
            && stderr.contains("a cascade needs a verifier node or an acceptance rule"),
        "{stderr}"
    );
}
