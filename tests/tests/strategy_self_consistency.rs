//! The built-in `self-consistency` strategy through the real binary:
//! samples, answer extraction, the vote and its tie-break.

use conclave_e2e::{
    Behavior, FAKE_CALL_ID, FakeUpstream, Proxy, answer_content, answer_reasoning, bodies,
    chat_body, composite_config, error_object, messages_text,
};
use serde_json::json;

const SAMPLERS: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

/// A profile over `models` (a YAML list) or a root node, with settings.
fn profile(topology: &str, settings: &str) -> String {
    format!(
        "      sc_test:\n        strategy: self-consistency\n        topology:\n          {topology}\n          settings: {settings}\n"
    )
}

fn models(n: usize) -> String {
    let nodes: Vec<String> = SAMPLERS[..n]
        .iter()
        .map(|s| format!("{{model: {s}}}"))
        .collect();
    format!("models: [{}]", nodes.join(", "))
}

async fn start(up: &FakeUpstream, profile: &str) -> Proxy {
    let mut names = SAMPLERS.to_vec();
    names.push("solo");
    Proxy::start(&composite_config(up, &names, &[("sc", "sc_test")], profile)).await
}

#[tokio::test]
async fn the_majority_answer_wins_and_the_first_sample_that_gave_it_is_returned() {
    let up = FakeUpstream::start().await;
    up.set("s1", Behavior::ok("Six times seven... ANSWER: 41"));
    up.set("s2", Behavior::ok("Step by step we get ANSWER: 42"));
    up.set(
        "s3",
        Behavior::ok("ANSWER: 40 at first, but on reflection ANSWER: 42."),
    );
    up.set("s4", Behavior::ok("I am not sure."));
    up.set("s5", Behavior::ok("ANSWER: 41"));
    up.push("s5", Behavior::status(500, "s5 is down"));
    let proxy = start(
        &up,
        &profile(&models(5), r#"{answer_pattern: 'ANSWER:\s*(\S+)'}"#),
    )
    .await;
    let (status, headers, body) = proxy.chat(&chat_body("sc", "what is 6x7?")).await;
    assert_eq!(status, 200, "{body}");
    // 42 has two votes (s2, and s3's last match with its period stripped);
    // 41 has one (s5 failed); s4 matches nothing and does not vote.
    assert_eq!(answer_content(&body), "Step by step we get ANSWER: 42");
    assert_eq!(headers["x-conclave-final-model"], "s2-up");
    let trace = answer_reasoning(&body);
    assert!(trace.contains("| 42 | 2 | 2, 3 |"), "{trace}");
    assert!(trace.contains("| 41 | 1 | 1 |"), "{trace}");
    assert!(trace.contains("no answer found in sample(s) 4"), "{trace}");
    assert!(
        trace.contains("sample 5 (s5) failed and is left out"),
        "{trace}"
    );
    assert!(trace.contains("answering with sample 2"), "{trace}");
    for s in SAMPLERS {
        assert_eq!(up.calls(s), 1, "{s}");
    }
}

#[tokio::test]
async fn a_tie_goes_to_the_answer_given_first_after_normalization() {
    let up = FakeUpstream::start().await;
    // Last non-empty lines: "Red", "**blue**", "BLUE.", "red!" -> red 2, blue 2.
    up.set("s1", Behavior::ok("Thinking it over.\nRed"));
    up.set("s2", Behavior::ok("**blue**"));
    up.set("s3", Behavior::ok("Surely\n  BLUE.  \n\n"));
    up.set("s4", Behavior::ok("red!"));
    let proxy = start(&up, &profile(&models(4), "{}")).await;
    let (status, _, body) = proxy.chat(&chat_body("sc", "pick a colour")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "Thinking it over.\nRed");
    let trace = answer_reasoning(&body);
    assert!(trace.contains("| red | 2 | 1, 4 |"), "{trace}");
    assert!(trace.contains("| blue | 2 | 2, 3 |"), "{trace}");
    assert!(
        trace.contains("a tie, won by the answer given first"),
        "{trace}"
    );

    // The same votes in the other order: blue is now first and wins.
    up.set("s1", Behavior::ok("**blue**"));
    up.set("s2", Behavior::ok("Thinking it over.\nRed"));
    let (_, _, body) = proxy.chat(&chat_body("sc", "pick a colour")).await;
    assert_eq!(answer_content(&body), "**blue**");
}

#[tokio::test]
async fn one_node_is_sampled_n_times_at_the_settings_temperature() {
    let up = FakeUpstream::start().await;
    up.set("solo", Behavior::ok("the answer is\n7"));
    let proxy = start(
        &up,
        &profile("model: solo", "{samples: 3, temperature: 0.9}"),
    )
    .await;
    let mut request = chat_body("sc", "q");
    request["max_tokens"] = json!(50);
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let sent = bodies(&up, "solo");
    assert_eq!(sent.len(), 3);
    for b in &sent {
        assert_eq!(b["temperature"], 0.9, "{b}");
        assert_eq!(b["max_tokens"], 50, "{b}");
        assert!(b.get("samples").is_none(), "a setting was forwarded: {b}");
    }
    assert!(answer_reasoning(&body).contains("| 7 | 3 | 1, 2, 3 |"));
}

#[tokio::test]
async fn without_a_temperature_setting_the_clients_is_kept_and_else_the_default() {
    let up = FakeUpstream::start().await;
    up.set("solo", Behavior::ok("7"));
    let proxy = start(&up, &profile("model: solo", "{samples: 2}")).await;
    let mut request = chat_body("sc", "q");
    request["temperature"] = json!(0.2);
    assert_eq!(proxy.chat(&request).await.0, 200);
    let sent = bodies(&up, "solo");
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| b["temperature"] == 0.2), "{sent:?}");
    up.clear();
    assert_eq!(proxy.chat(&chat_body("sc", "q")).await.0, 200);
    let sent = bodies(&up, "solo");
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| b["temperature"] == 0.7), "{sent:?}");
}

#[tokio::test]
async fn too_few_successful_samples_is_a_502_naming_min_samples() {
    let up = FakeUpstream::start().await;
    up.set("s1", Behavior::ok("4"));
    up.set("s2", Behavior::status(500, "s2 is down"));
    up.set("s3", Behavior::status(503, "s3 is down"));
    let proxy = start(&up, &profile(&models(3), "{min_samples: 2}")).await;
    let (status, _, body) = proxy.chat(&chat_body("sc", "q")).await;
    assert_eq!(status, 502, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap();
    assert!(
        message.contains("only 1 of 3 samples answered; min_samples is 2"),
        "{message}"
    );
    assert!(message.contains("s3 is down"), "{message}");
}

#[tokio::test]
async fn samples_get_no_tools_and_the_final_answer_may_call_one() {
    let up = FakeUpstream::start().await;
    for _ in 0..3 {
        up.push("solo", Behavior::ok("Check the weather tool.\nSUNNY"));
    }
    up.set(
        "solo",
        Behavior::tool_call("get_weather", r#"{"city":"Rome"}"#),
    );
    let proxy = start(&up, &profile("model: solo", "{samples: 3}")).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
    let mut request = chat_body("sc", "weather in Rome?");
    request["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["tool_calls"][0]["id"], FAKE_CALL_ID);
    assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Rome\"}"
    );
    let sent = bodies(&up, "solo");
    assert_eq!(sent.len(), 4, "three samples, then the final answer");
    for sample in &sent[..3] {
        assert!(sample.get("tools").is_none(), "{sample}");
    }
    assert_eq!(sent[3]["tools"], tools);
    assert!(messages_text(&sent[3]).contains("Check the weather tool.\nSUNNY"));

    // The tool's result comes back in a follow-up turn.
    for _ in 0..3 {
        up.push("solo", Behavior::ok("It is warm.\nWARM"));
    }
    up.set("solo", Behavior::ok("Rome is warm today."));
    let mut follow_up = chat_body("sc", "weather in Rome?");
    follow_up["messages"] = json!([
        {"role": "user", "content": "weather in Rome?"},
        {"role": "assistant", "content": null, "tool_calls": message["tool_calls"].clone()},
        {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "29C-CLEAR"},
    ]);
    follow_up["tools"] = tools.clone();
    let (status, _, body) = proxy.chat(&follow_up).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer_content(&body), "Rome is warm today.");
    let sent = bodies(&up, "solo");
    assert_eq!(sent.len(), 8);
    for sample in &sent[4..7] {
        assert!(
            !sample.to_string().contains("\"role\":\"tool\""),
            "{sample}"
        );
        assert!(messages_text(sample).contains("29C-CLEAR"), "{sample}");
    }
    conclave_e2e::assert_ends_with_tool_result(&sent[7]);
}

#[tokio::test]
async fn an_invalid_answer_pattern_is_a_config_error_with_its_path() {
    let up = FakeUpstream::start().await;
    let yaml = composite_config(
        &up,
        &SAMPLERS,
        &[("sc", "sc_test")],
        &profile(&models(2), "{answer_pattern: 'ANSWER: ('}"),
    );
    let stderr = conclave_e2e::failed_check(&yaml).await;
    assert!(
        stderr.contains("profiles.sc_test.topology")
            && stderr.contains("settings.answer_pattern: invalid regex"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_sample_count_past_the_ceiling_is_a_400_naming_it_not_a_crash() {
    let up = FakeUpstream::start().await;
    up.set("solo", Behavior::ok("7"));
    let proxy = start(&up, &profile("model: solo", "{samples: 2}")).await;
    for samples in [0_u64, 1025, 1_000_000_000] {
        let mut request = chat_body("sc", "q");
        request["samples"] = json!(samples);
        let (status, _, body) = proxy.chat(&request).await;
        assert_eq!(status, 400, "{samples}: {body}");
        let message = error_object(&body)["message"].as_str().unwrap().to_owned();
        assert!(message.contains("settings.samples"), "{samples}: {message}");
    }
    assert_eq!(up.calls("solo"), 0);
}

#[tokio::test]
async fn model_new_refuses_a_deployment_under_a_composite_models_name() {
    let up = FakeUpstream::start().await;
    let mut names = SAMPLERS.to_vec();
    names.push("solo");
    let mut yaml = composite_config(
        &up,
        &names,
        &[("sc", "sc_test")],
        &profile("model: solo", "{samples: 2}"),
    );
    yaml.push_str("  admin_without_key_on_loopback: true\n");
    let proxy = Proxy::start(&yaml).await;
    let body = json!({"model_name": "sc",
                      "litellm_params": {"model": "openai/x", "api_base": up.api_base("solo")}});
    let (status, refused) = proxy
        .call(reqwest::Method::POST, "/model/new", Some(body), None)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        error_object(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("composite"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_top_level_setting_reaches_the_strategy_through_messages_and_responses() {
    let up = FakeUpstream::start().await;
    up.set("solo", Behavior::ok("7"));
    let proxy = start(&up, &profile("model: solo", "{samples: 2}")).await;
    let requests = [
        (
            "/v1/messages",
            json!({"model": "sc", "max_tokens": 20, "samples": 3,
                   "messages": [{"role": "user", "content": "q"}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "sc", "input": "q", "samples": 3, "store": false}),
        ),
    ];
    for (path, body) in requests {
        up.clear();
        let (status, answer) = proxy
            .call(reqwest::Method::POST, path, Some(body), None)
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
        let sent = bodies(&up, "solo");
        assert_eq!(
            sent.len(),
            3,
            "{path}: the client's samples, not the profile's"
        );
        assert!(sent.iter().all(|b| b.get("samples").is_none()), "{sent:?}");
    }
}
