//! `exec/<name>` deployments: a command-line program as a model, run without
//! a shell in an empty directory, with bounded output.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{Proxy, SseReader, chat_body, error_object};
use serde_json::{Value, json};

/// A fake coding-agent CLI: `agent -p <prompt> --model <model> --mode=ask`.
/// It prints the model, how many files its working directory holds, its
/// argument count, and the prompt; `FAIL` in the prompt makes it exit 3,
/// `SLOW` makes it sleep, `LOUD` makes it print a lot.
const FAKE_AGENT: &str = r#"#!/bin/sh
case "$2" in
  *FAIL*) echo "agent: quota exhausted" >&2; exit 3 ;;
  *SLOW*) sleep 5 ;;
  *LOUD*) i=0; while [ $i -lt 2000 ]; do echo "0123456789012345678901234567890123456789"; i=$((i+1)); done; exit 0 ;;
esac
echo "model=$4"
echo "files=$(ls -A | wc -l | tr -d ' ')"
echo "argc=$#"
printf '%s\n' "$2"
"#;

fn agent(dir: &TempDir) -> String {
    let path = dir.write("agent.sh", FAKE_AGENT);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn config(agent: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: composer\n    litellm_params:\n      model: exec/composer-1\n      command: {agent}\n      \
         args: [\"-p\", \"{{prompt}}\", \"--model\", \"{{model}}\", \"--mode=ask\"]\n      timeout: 2\n      \
         max_output_bytes: 4096\n      io_log_path: io.jsonl\n{extra}router_settings:\n  num_retries: 0\n"
    )
}

#[tokio::test]
async fn the_program_gets_the_conversation_and_its_stdout_is_the_answer() {
    let tools = TempDir::new();
    let proxy = Proxy::start(&config(&agent(&tools), "")).await;
    let body = json!({"model": "composer", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is $(echo INJECTED); `id`?"}
    ]});
    let (status, _, body) = proxy.chat(&body).await;
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("model=composer-1"), "{text}");
    assert!(
        text.contains("files=0"),
        "the working directory was not empty: {text}"
    );
    assert!(text.contains("argc=5"), "{text}");
    assert!(text.contains("=== SYSTEM ===\nbe brief"), "{text}");
    // No shell: the prompt reaches the program literally.
    assert!(text.contains("what is $(echo INJECTED); `id`?"), "{text}");
    assert!(!text.contains("\nINJECTED"), "{text}");
    let log = std::fs::read_to_string(proxy.dir.path().join("io.jsonl")).unwrap();
    let entry: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(entry["prompt"].as_str().unwrap().contains("be brief"));
    assert!(entry["output"].as_str().unwrap().contains("files=0"));
}

#[tokio::test]
async fn the_answer_streams_as_chat_chunks() {
    let tools = TempDir::new();
    let proxy = Proxy::start(&config(&agent(&tools), "")).await;
    let mut body = chat_body("composer", "stream please");
    body["stream"] = json!(true);
    let response = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let mut text = String::new();
    let mut done = false;
    while let Some(p) = reader.next(Duration::from_secs(10)).await {
        if p == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(&p).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        text.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default(),
        );
    }
    assert!(done);
    assert!(text.contains("stream please"), "{text}");
}

#[tokio::test]
async fn a_failing_program_is_a_502_quoting_its_stderr() {
    let tools = TempDir::new();
    let proxy = Proxy::start(&config(&agent(&tools), "")).await;
    let (status, _, body) = proxy.chat(&chat_body("composer", "please FAIL")).await;
    assert_eq!(status, 502, "{body}");
    let message = error_object(&body)["message"].as_str().unwrap();
    assert!(
        message.contains("quota exhausted") && message.contains("exit"),
        "{message}"
    );
}

#[tokio::test]
async fn a_slow_program_times_out_with_504() {
    let tools = TempDir::new();
    let proxy = Proxy::start(&config(&agent(&tools), "")).await;
    let started = std::time::Instant::now();
    let (status, _, body) = proxy.chat(&chat_body("composer", "be SLOW")).await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn output_over_max_output_bytes_is_an_error_not_a_cut_answer() {
    let tools = TempDir::new();
    let proxy = Proxy::start(&config(&agent(&tools), "")).await;
    let (status, _, body) = proxy.chat(&chat_body("composer", "be LOUD")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        error_object(&body)["message"]
            .as_str()
            .unwrap()
            .contains("max_output_bytes"),
        "{body}"
    );
}

#[tokio::test]
async fn an_exec_deployment_without_a_command_is_a_config_error() {
    let stderr = conclave_e2e::failed_check(
        "model_list:\n  - model_name: x\n    litellm_params:\n      model: exec/x\n",
    )
    .await;
    assert!(
        stderr.contains("model_list[0].litellm_params.model") && stderr.contains("command"),
        "{stderr}"
    );
}

#[tokio::test]
async fn composer_cli_profiles_run_the_cli_like_the_seed_did() {
    let tools = TempDir::new();
    let script = agent(&tools);
    // The direct form runs a program named `agent` found on PATH.
    std::fs::copy(&script, tools.path().join("agent")).unwrap();
    std::fs::set_permissions(
        tools.path().join("agent"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let yaml = format!(
        "model_list:\n  - model_name: composer\n    litellm_params:\n      model: composite/profile/composer_ask\n  \
         - model_name: composer-direct\n    litellm_params:\n      model: composite/composer-cli/composer-1\n\
         general_settings:\n  composite_llm:\n    profiles:\n      composer_ask:\n        strategy: composer-cli\n        \
         topology:\n          model: composer-2\n          settings: {{cli_command: {script}, timeout_seconds: 2, \
         max_output_bytes: 4096, io_log_path: composer.jsonl}}\n"
    );
    let proxy = Proxy::start_with(&yaml, &[("PATH", &path)], &[]).await;
    let (status, headers, body) = proxy
        .chat(&chat_body("composer", "explain this repo"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-conclave-strategy"], "composer_ask");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("model=composer-2")
            && text.contains("argc=5")
            && text.contains("explain this repo"),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(proxy.dir.path().join("composer.jsonl"))
            .unwrap()
            .contains("explain this repo")
    );

    let (status, _, body) = proxy.chat(&chat_body("composer-direct", "hello")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("model=composer-1"),
        "{body}"
    );
}
