//! The built-in `council` strategy through the real binary: members answer,
//! reviewers rank anonymized answers, the chairman writes the answer.

use conclave_e2e::{
    Behavior, FAKE_CALL_ID, FakeUpstream, Proxy, SseReader, answer_reasoning, bodies, chat_body,
    composite_config, deployment, error_object, messages_text,
};
use serde_json::{Value, json};

const MEMBERS: [&str; 3] = ["member-kilo", "member-lima", "member-mike"];
const REVIEWERS: [&str; 3] = ["rev-one", "rev-two", "rev-three"];

fn all_deployments() -> Vec<&'static str> {
    let mut names = MEMBERS.to_vec();
    names.extend(REVIEWERS);
    names.push("chair-oscar");
    names
}

/// A `council` profile over the three members with the chairman, extra
/// topology lines (e.g. reviewers) and settings.
fn profile(extra_topology: &str, settings: &str) -> String {
    format!(
        "      council_test:\n        strategy: council\n        topology:\n          \
         chairman: {{model: chair-oscar}}\n          \
         council: [{{model: member-kilo}}, {{model: member-lima}}, {{model: member-mike}}]\n\
         {extra_topology}          settings: {settings}\n"
    )
}

const WITH_REVIEWERS: &str =
    "          reviewers: [{model: rev-one}, {model: rev-two}, {model: rev-three}]\n";

async fn start(up: &FakeUpstream, profile: &str) -> Proxy {
    Proxy::start(&composite_config(
        up,
        &all_deployments(),
        &[("council", "council_test")],
        profile,
    ))
    .await
}

fn ranking(order: &[&str]) -> String {
    let lines: Vec<String> = order
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}. Response {l}", i + 1))
        .collect();
    format!(
        "All three are reasonable.\n\nFINAL RANKING:\n{}",
        lines.join("\n")
    )
}

#[tokio::test]
async fn the_chairman_sees_every_successful_answer_and_no_failed_one() {
    let up = FakeUpstream::start().await;
    up.set("member-kilo", Behavior::ok("KILO-ANSWER"));
    up.set("member-lima", Behavior::status(500, "LIMA-BROKE"));
    up.set("member-mike", Behavior::ok("MIKE-ANSWER"));
    for r in REVIEWERS {
        up.set(r, Behavior::ok(&ranking(&["B", "A"])));
    }
    up.set("chair-oscar", Behavior::ok("the council's answer"));
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let (status, headers, body) = proxy.chat(&chat_body("council", "what is 6x7?")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "the council's answer"
    );
    assert_eq!(headers["x-conclave-final-model"], "chair-oscar-up");
    // One call per member, one per reviewer, one for the chairman.
    assert_eq!(up.calls("member-lima"), 1);
    for r in REVIEWERS {
        assert_eq!(up.calls(r), 1, "{r}");
    }
    let chair = messages_text(&up.last_body("chair-oscar").unwrap());
    assert!(
        chair.contains("KILO-ANSWER") && chair.contains("MIKE-ANSWER"),
        "{chair}"
    );
    assert!(
        !chair.contains("LIMA"),
        "a failed answer reached the chairman: {chair}"
    );
    assert!(chair.contains("what is 6x7?"), "{chair}");
    // The reviewers saw exactly the two answers, as Response A and B.
    let review = messages_text(&up.last_body("rev-one").unwrap());
    assert!(
        review.contains("Response A") && review.contains("Response B"),
        "{review}"
    );
    assert!(!review.contains("Response C"), "{review}");
    assert!(!review.contains("LIMA"), "{review}");
    let trace = answer_reasoning(&body);
    assert!(trace.contains("member-lima failed"), "{trace}");
    // Two usable rankings agree: B first with mean rank 1.
    assert!(
        trace.contains("| 1 | Response B | member-mike | 1.00 |"),
        "{trace}"
    );
    assert!(chair.contains("1. Response B (mean rank 1.00)"), "{chair}");
}

#[tokio::test]
async fn reviewers_see_anonymous_labels_and_never_a_model_or_deployment_name() {
    let up = FakeUpstream::start().await;
    // Without `reviewers`, the members that answered review: their first
    // call answers, their second reviews.
    for (m, answer) in MEMBERS
        .iter()
        .zip(["FIRST-TEXT", "SECOND-TEXT", "THIRD-TEXT"])
    {
        up.push(m, Behavior::ok(answer));
        up.set(m, Behavior::ok(&ranking(&["C", "A", "B"])));
    }
    up.set("chair-oscar", Behavior::ok("done"));
    let proxy = start(&up, &profile("", "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "compare them")).await;
    assert_eq!(status, 200, "{body}");
    for m in MEMBERS {
        let calls = bodies(&up, m);
        assert_eq!(calls.len(), 2, "{m} should answer once and review once");
        let review = calls[1].clone();
        let text = messages_text(&review).to_lowercase();
        for name in MEMBERS.iter().chain(["chair-oscar"].iter()) {
            let bare = name.split('-').nth(1).unwrap();
            assert!(
                !text.contains(bare),
                "{m}'s review prompt names {name}: {text}"
            );
        }
        assert!(!text.contains("-up"), "{text}");
        // Labels follow the council's order.
        let a = text.find("first-text").unwrap();
        let b = text.find("second-text").unwrap();
        let c = text.find("third-text").unwrap();
        assert!(a < b && b < c, "{text}");
        assert!(text.contains("### response a\nfirst-text"), "{text}");
        assert!(text.contains("### response c\nthird-text"), "{text}");
        assert!(text.contains("final ranking:"), "{text}");
        assert!(review.get("tools").is_none());
    }
    // The chairman is not told who wrote what either.
    let chair = messages_text(&up.last_body("chair-oscar").unwrap()).to_lowercase();
    assert!(!chair.contains("kilo") && !chair.contains("lima") && !chair.contains("mike"));
    // The trace, meant for the operator, maps labels to members.
    let trace = answer_reasoning(&body);
    assert!(
        trace.contains(
            "Response A = member-kilo, Response B = member-lima, Response C = member-mike"
        ),
        "{trace}"
    );
    assert!(
        trace.contains("| 1 | Response C | member-mike | 1.00 |"),
        "{trace}"
    );
}

#[tokio::test]
async fn malformed_rankings_count_less_or_not_at_all_and_never_fail_the_request() {
    let up = FakeUpstream::start().await;
    for m in MEMBERS {
        up.set(m, Behavior::ok(&format!("answer of {m}")));
    }
    up.set("rev-one", Behavior::ok(&ranking(&["B", "A", "C"])));
    up.set(
        "rev-two",
        Behavior::ok("I liked the second one best, then the first."),
    );
    // Lowercase, one known label, an unknown one and a repeat: partial
    // (1 of 3, weight 1/3), halved for its defects.
    up.set(
        "rev-three",
        Behavior::ok("final ranking:\n1. response c\n2. Response Z\n3. response c\n"),
    );
    up.set("chair-oscar", Behavior::ok("synthesis"));
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "rank these")).await;
    assert_eq!(status, 200, "{body}");
    let trace = answer_reasoning(&body);
    assert!(
        trace.contains("reviewer 2 (rev-two) gave no FINAL RANKING; its ranking is ignored"),
        "{trace}"
    );
    assert!(
        trace.contains("reviewer 3 (rev-three) ranked C (weight 0.17, 2 unknown or repeated"),
        "{trace}"
    );
    assert!(
        trace.contains("aggregate of 2 usable ranking(s)"),
        "{trace}"
    );
    // Weighted means: B (1*1 + 1/6*2.5)/(7/6), A (1*2 + 1/6*2.5)/(7/6), C (1*3 + 1/6*1)/(7/6).
    assert!(
        trace.contains("| 1 | Response B | member-lima | 1.21 |"),
        "{trace}"
    );
    assert!(
        trace.contains("| 2 | Response A | member-kilo | 2.07 |"),
        "{trace}"
    );
    assert!(
        trace.contains("| 3 | Response C | member-mike | 2.71 |"),
        "{trace}"
    );
    let chair = messages_text(&up.last_body("chair-oscar").unwrap());
    assert!(
        chair.contains(
            "1. Response B (mean rank 1.21)\n2. Response A (mean rank 2.07)\n3. Response C (mean rank 2.71)"
        ),
        "{chair}"
    );
    // Every review, usable or not, is passed on.
    assert!(chair.contains("I liked the second one best"), "{chair}");
}

#[tokio::test]
async fn a_ranking_with_markdown_commentary_and_one_missing_label_counts_fully() {
    let up = FakeUpstream::start().await;
    for m in MEMBERS {
        up.set(m, Behavior::ok(&format!("answer of {m}")));
    }
    up.set(
        "rev-one",
        Behavior::ok(
            "Reasoning first.\n\n**Final Ranking:**\n\n1. **Response C**: concise, unlike Response A\n2) response a\n\nHope this helps!",
        ),
    );
    up.set(
        "rev-two",
        Behavior::ok("FINAL RANKING: Response C > Response A > Response B"),
    );
    up.set("rev-three", Behavior::status(500, "reviewer down"));
    up.set("chair-oscar", Behavior::ok("synthesis"));
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "rank these")).await;
    assert_eq!(status, 200, "{body}");
    let trace = answer_reasoning(&body);
    assert!(
        trace.contains("reviewer 1 (rev-one) ranked C > A (weight 1.00)"),
        "{trace}"
    );
    assert!(
        trace.contains("reviewer 2 (rev-two) ranked C > A > B (weight 1.00)"),
        "{trace}"
    );
    assert!(trace.contains("reviewer 3 (rev-three) failed"), "{trace}");
    assert!(
        trace.contains("| 1 | Response C | member-mike | 1.00 |"),
        "{trace}"
    );
    assert!(
        trace.contains("| 3 | Response B | member-lima | 3.00 |"),
        "{trace}"
    );
}

#[tokio::test]
async fn every_member_failing_is_a_502_that_says_how_many_answered() {
    let up = FakeUpstream::start().await;
    for m in MEMBERS {
        up.set(m, Behavior::status(500, &format!("{m} is down")));
    }
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "anyone?")).await;
    assert_eq!(status, 502, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap();
    assert!(
        message.contains("only 0 of 3 council members answered; min_answers is 1"),
        "{message}"
    );
    assert!(message.contains("member-lima is down"), "{message}");
    assert_eq!(up.calls("chair-oscar"), 0);
    assert_eq!(up.calls("rev-one"), 0);
}

#[tokio::test]
async fn fewer_answers_than_min_answers_fail_and_one_failure_above_it_is_survived() {
    let up = FakeUpstream::start().await;
    up.set("member-kilo", Behavior::ok("KILO-ANSWER"));
    up.set("member-lima", Behavior::status(500, "down"));
    up.set("member-mike", Behavior::status(500, "down"));
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{min_answers: 2}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "q")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("only 1 of 3 council members answered; min_answers is 2"),
        "{body}"
    );
    up.set("member-mike", Behavior::ok("MIKE-ANSWER"));
    let (status, _, body) = proxy.chat(&chat_body("council", "q")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn min_answers_past_the_council_is_a_400_before_any_member_is_called() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let mut request = chat_body("council", "q");
    request["min_answers"] = json!(4);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 400, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("min_answers: 4 is more than the 3 council member(s)"),
        "{message}"
    );
    for m in MEMBERS {
        assert_eq!(up.calls(m), 0, "{m}");
    }
}

#[tokio::test]
async fn max_council_size_keeps_only_the_first_members() {
    let up = FakeUpstream::start().await;
    for r in REVIEWERS {
        up.set(r, Behavior::ok(&ranking(&["A", "B"])));
    }
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{max_council_size: 2}")).await;
    let (status, _, body) = proxy.chat(&chat_body("council", "q")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            up.calls("member-kilo"),
            up.calls("member-lima"),
            up.calls("member-mike")
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn only_the_chairman_gets_the_tools_and_its_tool_call_reaches_the_client() {
    let up = FakeUpstream::start().await;
    for r in REVIEWERS {
        up.set(r, Behavior::ok(&ranking(&["A", "B", "C"])));
    }
    up.set(
        "chair-oscar",
        Behavior::tool_call("get_weather", r#"{"city":"Oslo"}"#),
    );
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut request = chat_body("council", "weather in Oslo?");
    request["tools"] = tools.clone();
    request["tool_choice"] = json!("auto");
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": FAKE_CALL_ID, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}])
    );
    for name in MEMBERS.iter().chain(REVIEWERS.iter()) {
        let sent = up.last_body(name).unwrap();
        assert!(
            sent.get("tools").is_none() && sent.get("tool_choice").is_none(),
            "{name} got the tools: {sent}"
        );
    }
    let chair = up.last_body("chair-oscar").unwrap();
    assert_eq!(chair["tools"], tools);

    // The client runs the tool and sends its result back.
    up.set("chair-oscar", Behavior::ok("It is sunny in Oslo."));
    let mut follow_up = chat_body("council", "weather in Oslo?");
    follow_up["messages"] = json!([
        {"role": "user", "content": "weather in Oslo?"},
        choice["message"].clone(),
        {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "SUNNY-17C"},
    ]);
    follow_up["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&follow_up).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It is sunny in Oslo."
    );
    let chair = up.last_body("chair-oscar").unwrap();
    conclave_e2e::assert_ends_with_tool_result(&chair);
    assert_eq!(chair["tools"], tools);
    // Members get the tool turn as plain text, with no tool roles.
    let member = up.last_body("member-kilo").unwrap();
    let roles: Vec<&str> = member["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{member}");
    let text = messages_text(&member);
    assert!(
        text.contains("SUNNY-17C") && text.contains("get_weather"),
        "{text}"
    );
}

#[tokio::test]
async fn a_streamed_council_answer_carries_the_trace_then_the_chairman_tokens() {
    let up = FakeUpstream::start().await;
    for r in REVIEWERS {
        up.set(r, Behavior::ok(&ranking(&["A", "B", "C"])));
    }
    up.set("chair-oscar", Behavior::ok("streamed final answer"));
    let proxy = start(&up, &profile(WITH_REVIEWERS, "{}")).await;
    let mut request = chat_body("council", "q");
    request["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-conclave-final-model").is_none());
    let mut reader = SseReader::new(response);
    let (mut trace, mut content) = (String::new(), String::new());
    for _ in 0..200 {
        let Some(payload) = reader.next(std::time::Duration::from_secs(10)).await else {
            break;
        };
        if payload == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&payload).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        trace.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
        content.push_str(delta["content"].as_str().unwrap_or_default());
    }
    assert_eq!(content, "streamed final answer");
    assert!(trace.contains("[stage 2: rankings]"), "{trace}");
    assert!(trace.contains("chair-oscar writes the answer"), "{trace}");
}

/// A chairman's stream event that cannot be read (a number past any float)
/// ends the client's stream with an error, never a chunk lost in silence.
#[tokio::test]
async fn a_streamed_chairman_event_that_cannot_be_read_ends_the_stream_with_an_error() {
    let up = FakeUpstream::start().await;
    let chunk = |content: &str, extra: &str| {
        format!(
            "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]{extra}}}\n\n"
        )
    };
    let pieces = [
        chunk("hi ", ""),
        chunk("Z", ",\"x\":1e999"),
        chunk("end", ""),
        "data: [DONE]\n\n".to_owned(),
    ];
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    up.set("chair-oscar", Behavior::raw_sse(&pieces));
    let proxy = start(&up, &profile("", "{}")).await;
    let mut request = chat_body("council", "q");
    request["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let payloads = conclave_e2e::sse_payloads(&text);
    assert!(!payloads.iter().any(|p| p == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    assert!(
        !text.contains("\"end\""),
        "nothing after the unreadable event: {text}"
    );
}

/// A profile takes a strategy option sent at the top level (as the seed's
/// clients send `council_models` in `extra_body`) as a setting, and no
/// upstream receives it.
#[tokio::test]
async fn a_profile_reads_top_level_strategy_options_and_never_forwards_them() {
    let up = FakeUpstream::start().await;
    up.set("member-kilo", Behavior::ok(&ranking(&["A", "B"])));
    up.set("member-lima", Behavior::ok(&ranking(&["B", "A"])));
    up.set("chair-oscar", Behavior::ok("profile answer"));
    let proxy = start(&up, &profile("", "{}")).await;
    let mut request = chat_body("council", "q");
    request["council_models"] = json!(["member-kilo", "member-lima"]);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        up.calls("member-mike"),
        0,
        "the request's council replaced the profile's"
    );
    for r in up.recorded() {
        assert!(
            r.body.get("council_models").is_none(),
            "forwarded to {}: {}",
            r.deployment,
            r.body
        );
    }
}

#[tokio::test]
async fn the_direct_form_takes_the_council_from_council_models() {
    let up = FakeUpstream::start().await;
    up.set("member-kilo", Behavior::ok(&ranking(&["A", "B"])));
    up.set("member-lima", Behavior::ok(&ranking(&["B", "A"])));
    up.set("chair-oscar", Behavior::ok("direct council answer"));
    let mut yaml = composite_config(&up, &all_deployments(), &[], "");
    yaml = yaml.replacen(
        "model_list:\n",
        &format!(
            "model_list:\n{}  - model_name: council-direct\n    litellm_params:\n      model: composite/council/openai/chair-direct\n",
            deployment("openai/chair-direct", "openai/chair-oscar-up", &up.api_base("chair-oscar"), &[])
        ),
        1,
    );
    let proxy = Proxy::start(&yaml).await;
    let mut request = chat_body("council-direct", "q");
    request["council_models"] = json!(["member-kilo", "member-lima"]);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "direct council answer"
    );
    // Each member answered and reviewed; the third was never asked.
    assert_eq!(
        (
            up.calls("member-kilo"),
            up.calls("member-lima"),
            up.calls("member-mike"),
            up.calls("chair-oscar")
        ),
        (2, 2, 0, 1)
    );
    assert!(
        up.last_body("chair-oscar")
            .unwrap()
            .get("council_models")
            .is_none()
    );
    // A member named by mistake is left out; the others still answer.
    request["council_models"] = json!(["member-kilo", "no-such-member", "member-lima"]);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (up.calls("member-kilo"), up.calls("member-lima")),
        (4, 4),
        "both real members answered and reviewed again"
    );
    let trace = body["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap_or_default();
    assert!(trace.contains("no-such-member"), "{body}");
    // When no member named is one the run may call, the request is at fault:
    // a 400 naming the model, not a 502 that clients would retry.
    request["council_models"] = json!(["no-such-member", "nor-this-one"]);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("no-such-member"),
        "{body}"
    );
    // Without council_models the request is refused with the reason.
    let (status, _, body) = proxy.chat(&chat_body("council-direct", "q")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("council_models"),
        "{body}"
    );
}

#[tokio::test]
async fn a_council_without_members_is_a_config_error_with_its_path() {
    let up = FakeUpstream::start().await;
    let yaml = composite_config(
        &up,
        &all_deployments(),
        &[("council", "council_test")],
        "      council_test:\n        strategy: council\n        topology:\n          chairman: {model: chair-oscar}\n",
    );
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains("general_settings.composite_llm.profiles.council_test.topology")
            && stderr.contains("council: at least one council member"),
        "{stderr}"
    );
}

const COUNCIL_MASTER: &str = "sk-council-master";

/// A council profile with `settings` beside a public `secret-deploy`
/// model, behind [`COUNCIL_MASTER`], and a key that may call the council only.
async fn with_a_council_only_key(up: &FakeUpstream, settings: &str) -> (Proxy, String) {
    up.set("secret-deploy", Behavior::ok("SECRET MODEL ANSWER"));
    let mut names = all_deployments();
    names.push("secret-deploy");
    let yaml = composite_config(
        up,
        &names,
        &[("council", "council_test")],
        &profile("", settings),
    )
    .replacen(
        "general_settings:\n",
        &format!("general_settings:\n  master_key: {COUNCIL_MASTER}\n"),
        1,
    );
    let proxy = Proxy::start(&yaml).await;
    let made = proxy
        .generate_key(COUNCIL_MASTER, json!({"models": ["council"]}))
        .await;
    let key = made["key"].as_str().unwrap_or_default().to_owned();
    (proxy, key)
}

#[tokio::test]
async fn a_request_naming_a_model_its_key_may_not_call_is_refused_before_any_call() {
    let up = FakeUpstream::start().await;
    let (proxy, key) =
        with_a_council_only_key(&up, "{council_models: [member-kilo, member-lima]}").await;
    let key = key.as_str();
    // In composite_settings, and as a top-level field overriding a setting.
    let mut in_settings = chat_body("council", "q");
    in_settings["composite_settings"] = json!({"council_models": ["member-kilo", "secret-deploy"]});
    let mut top_level = chat_body("council", "q");
    top_level["council_models"] = json!(["secret-deploy"]);
    for request in [in_settings, top_level] {
        let r = proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{request}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["error"]["code"], "key_model_access_denied", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"secret-deploy\""), "{message}");
    }
    assert_eq!(up.recorded().len(), 0, "no member was called");
}

#[tokio::test]
async fn a_request_cannot_name_members_its_caller_may_not_call() {
    let up = FakeUpstream::start().await;
    let (proxy, key) = with_a_council_only_key(&up, "{}").await;
    let key = key.as_str();
    let master = COUNCIL_MASTER;
    let ask = |settings: Value, key: &str| {
        let mut request = chat_body("council", "q");
        request["composite_settings"] = settings;
        let (proxy, key) = (&proxy, key.to_owned());
        async move {
            let r = proxy
                .client
                .post(proxy.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&request)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A public model outside the key's list, and a name no client may call.
    for member in ["secret-deploy", "openai/secret-deploy-up"] {
        let settings = json!({"council_models": [member], "chairman_model": member});
        let (status, text) = ask(settings, key).await;
        assert_ne!(status, 200, "{member}: {text}");
        assert!(!text.contains("SECRET"), "{member}: {text}");
        assert!(text.contains("not one of this profile's models"), "{text}");
    }
    assert_eq!(up.calls("secret-deploy"), 0);
    // The master key may name any public model.
    let settings = json!({"council_models": ["secret-deploy"], "chairman_model": "secret-deploy"});
    let (status, text) = ask(settings, master).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("SECRET MODEL ANSWER"), "{text}");
}
