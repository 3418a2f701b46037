//! Strategies in other languages: the `critic` example of
//! strategies/examples/ in Python (componentize-py), JavaScript
//! (componentize-js) and Rust (the SDK), built with `conclave strategy build`
//! and run by the real binary through the HTTP API, with the fake upstream as
//! the draft and reviewer models.
//!
//! The Python and JavaScript examples are copied to target/strategy-examples/<name> and built there
//! (npm packages and the output stay under target/, and an unchanged example
//! is not rebuilt). A test is skipped, with the reason printed, when
//! python3 or node/npm is missing or the language's packages cannot be
//! installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lang_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_e2e::{
    Behavior, FakeUpstream, bodies, body_text, chat_body, error_object, messages_text, sse_content,
    sse_payloads,
};
use lang_support::{config, missing_tools, repo_root, serve, skip, strategy_build, sync_files};
use serde_json::{Value, json};

const DRAFT: &str = "DRAFT: blue light scatters more";
const IMPROVED: &str = "IMPROVED: sunlight scatters off air molecules, blue the most";

/// Copies the example's `files` to target/strategy-examples/<name>.
fn stage_example(name: &str, files: &[&str]) -> PathBuf {
    let src = repo_root().join("strategies/examples").join(name);
    let dest = lang_support::target_dir()
        .join("strategy-examples")
        .join(name);
    let contents: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let content = std::fs::read(src.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", src.join(f).display()));
            ((*f).to_owned(), content)
        })
        .collect();
    sync_files(&dest, &contents);
    dest
}

/// Builds the example, or `None` when the test is skipped.
async fn build_example(test: &str, lang: &str, name: &str, files: &[&str]) -> Option<PathBuf> {
    if let Some(reason) = missing_tools(lang) {
        skip(test, &reason);
        return None;
    }
    let dir = stage_example(name, files);
    let wasm = strategy_build(test, &dir, &[]).await?;
    assert_eq!(
        wasm,
        dir.canonicalize().unwrap().join(format!("{name}.wasm"))
    );
    Some(wasm)
}

/// Runs the critic component at `wasm` through the HTTP API.
async fn critic_drafts_reviews_and_answers(wasm: &Path) {
    let up = FakeUpstream::start().await;
    up.set("draft", Behavior::ok(DRAFT));
    up.set("reviewer", Behavior::ok(IMPROVED));
    let proxy = serve(&config(
        &up,
        &["draft", "reviewer"],
        "critic",
        wasm,
        "{draft: {model: draft}, reviewer: {model: reviewer, params: {temperature: 0.2}}}",
    ))
    .await;

    // One answer: the reviewer's, with the stages as reasoning.
    let (status, headers, body) = proxy
        .chat(&chat_body("critic", "Why is the sky blue?"))
        .await;
    assert_eq!(status, 200, "{body}\n{}", proxy.logs());
    assert_eq!(headers["x-conclave-strategy"], "critic");
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], IMPROVED, "{body}");
    let reasoning = message["reasoning_content"].as_str().unwrap_or_default();
    assert!(
        reasoning.contains("[draft]") && reasoning.contains("[review]"),
        "{reasoning}"
    );
    let drafts = bodies(&up, "draft");
    assert_eq!(drafts.len(), 1);
    assert!(messages_text(&drafts[0]).contains("Why is the sky blue?"));
    let reviews = bodies(&up, "reviewer");
    assert_eq!(reviews.len(), 1);
    let seen = messages_text(&reviews[0]);
    assert!(
        seen.contains(DRAFT),
        "the reviewer did not get the draft: {seen}"
    );
    assert!(seen.contains("Why is the sky blue?"), "{seen}");
    // The node's own params reach its calls.
    assert_eq!(reviews[0]["temperature"], json!(0.2), "{}", reviews[0]);

    // Streamed: the trace first as reasoning, then the reviewer's tokens.
    let mut request = chat_body("critic", "Stream it");
    request["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    let text = body_text(response, Duration::from_secs(60)).await;
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    assert_eq!(sse_content(&payloads), IMPROVED, "{text}");
    let first_content = payloads
        .iter()
        .position(|p| p.contains("\"content\""))
        .unwrap();
    let first_review = payloads
        .iter()
        .position(|p| p.contains("reasoning_content") && p.contains("[review]"))
        .unwrap_or_else(|| panic!("no review stage in the stream: {text}"));
    assert!(first_review < first_content, "{text}");

    // Request settings reach the strategy.
    let mut request = chat_body("critic", "Be strict");
    request["composite_settings"] = json!({"reviewer_instructions": "REVIEW-RULES-42"});
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 200, "{body}");
    let seen = messages_text(&bodies(&up, "reviewer").pop().unwrap());
    assert!(seen.contains("REVIEW-RULES-42"), "{seen}");

    // A failed draft fails the request with the upstream's error.
    up.set("draft", Behavior::status(503, "the draft model is down"));
    let calls = up.calls("reviewer");
    let (status, _, body) = proxy.chat(&chat_body("critic", "Again?")).await;
    assert_eq!(status, 502, "{body}");
    let error = error_object(&body);
    assert_eq!(error["code"], "strategy_upstream_failed", "{body}");
    assert!(
        error["message"].as_str().unwrap().contains("draft"),
        "{body}"
    );
    assert_eq!(
        up.calls("reviewer"),
        calls,
        "the reviewer ran without a draft"
    );

    // A strategy error for a bad request setting is the client's error.
    let mut request = chat_body("critic", "Bad settings");
    request["composite_settings"] = json!({"reviewer_instructions": 7});
    let (status, _, body) = proxy.chat(&request).await;
    assert_eq!(status, 400, "{body}");
    let message: &Value = &error_object(&body)["message"];
    assert!(
        message.as_str().unwrap().contains("reviewer_instructions"),
        "{body}"
    );
}

#[tokio::test]
async fn the_python_critic_builds_and_runs() {
    let test = "the_python_critic_builds_and_runs";
    let Some(wasm) = build_example(test, "python", "python-critic", &["app.py"]).await else {
        return;
    };
    critic_drafts_reviews_and_answers(&wasm).await;
}

#[tokio::test]
async fn the_js_critic_builds_and_runs() {
    let test = "the_js_critic_builds_and_runs";
    let Some(wasm) = build_example(
        test,
        "js",
        "js-critic",
        &["critic.js", "package.json", "build.mjs"],
    )
    .await
    else {
        return;
    };
    critic_drafts_reviews_and_answers(&wasm).await;
}

#[tokio::test]
async fn the_rust_critic_builds_and_runs() {
    // Built in place (it uses the in-repo SDK by path); its cargo target is
    // shared with the scaffold tests.
    let test = "the_rust_critic_builds_and_runs";
    let dir = repo_root().join("strategies/examples/rust-critic");
    let env = [(
        "CARGO_TARGET_DIR",
        lang_support::target_dir()
            .join("scaffold-target")
            .display()
            .to_string(),
    )];
    let wasm = strategy_build(test, &dir, &env)
        .await
        .expect("Rust builds need no extra tools");
    assert_eq!(wasm, dir.canonicalize().unwrap().join("rust-critic.wasm"));
    critic_drafts_reviews_and_answers(&wasm).await;
}
