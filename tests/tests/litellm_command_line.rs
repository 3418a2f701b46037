//! A LiteLLM command line with `conclave` in its place: no `serve` command,
//! and LiteLLM's `--detailed_debug`, `--num_workers`, `NUM_WORKERS` and
//! `LITELLM_LOG`.

use conclave_e2e::proxy::TempDir;
use conclave_e2e::{FakeUpstream, Launch, Proxy, chat_body, run_conclave};

fn one_model(up: &FakeUpstream) -> String {
    format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-up\n      api_base: {}\n      api_key: sk-test\n",
        up.api_base("a")
    )
}

/// Starts conclave without `serve`, with `args` after the config and `env`.
async fn start_like_litellm(up: &FakeUpstream, args: &[&str], env: &[(&str, &str)]) -> Proxy {
    Proxy::launch(
        &one_model(up),
        Launch {
            without_serve_command: true,
            ..Launch::with(args, env)
        },
    )
    .await
}

/// Whether the proxy logged conclave's per-attempt debug line.
fn logged_debug_lines(proxy: &Proxy) -> bool {
    proxy
        .logs()
        .lines()
        .any(|line| line.contains("\"level\":\"DEBUG\"") && line.contains("upstream answered"))
}

#[tokio::test]
async fn a_litellm_command_line_serves_without_the_serve_command() {
    let up = FakeUpstream::start().await;
    up.set("a", conclave_e2e::Behavior::ok("served"));
    let proxy = start_like_litellm(&up, &["--num_workers", "1"], &[]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "served");
    assert!(
        !logged_debug_lines(&proxy),
        "debug lines without asking for them:\n{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn detailed_debug_logs_conclave_debug_lines() {
    let up = FakeUpstream::start().await;
    up.set("a", conclave_e2e::Behavior::ok("served"));
    let proxy = start_like_litellm(&up, &["--detailed_debug"], &[]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert!(logged_debug_lines(&proxy), "{}", proxy.logs());
}

#[tokio::test]
async fn litellm_log_debug_logs_conclave_debug_lines() {
    let up = FakeUpstream::start().await;
    up.set("a", conclave_e2e::Behavior::ok("served"));
    let proxy = start_like_litellm(&up, &[], &[("LITELLM_LOG", "DEBUG")]).await;
    let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert!(logged_debug_lines(&proxy), "{}", proxy.logs());
}

#[tokio::test]
async fn an_unknown_litellm_log_level_is_named_in_a_warning() {
    let up = FakeUpstream::start().await;
    let proxy = start_like_litellm(&up, &[], &[("LITELLM_LOG", "LOUD")]).await;
    let logs = proxy.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("LITELLM_LOG=\\\"LOUD\\\"")),
        "{logs}"
    );
}

#[tokio::test]
async fn a_worker_count_that_is_not_a_count_is_refused_naming_it() {
    let dir = TempDir::new();
    let config = dir.write("config.yaml", "model_list: []\n");
    let config = config.to_string_lossy();
    let out = run_conclave(&["--config", &config, "--num_workers", "0"], &[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--num_workers"), "{stderr}");

    let out = run_conclave(&["--config", &config], &[("NUM_WORKERS", "four")]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NUM_WORKERS=\"four\""), "{stderr}");
}

#[tokio::test]
async fn serve_options_before_a_command_are_refused() {
    let out = run_conclave(&["--port", "4000", "check"], &[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("check"), "{stderr}");
}

#[tokio::test]
async fn conclave_alone_without_a_config_lists_the_commands() {
    let dir = TempDir::new();
    let out = tokio::process::Command::new(conclave_e2e::conclave_bin())
        .current_dir(dir.path())
        .env_remove("CONCLAVE_CONFIG")
        .env_remove("LITELLM_CONFIG")
        .env_remove("CONFIG_FILE_PATH")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serve"), "{stderr}");
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[tokio::test]
async fn litellms_quick_start_serves_one_model_without_a_config() {
    let up = FakeUpstream::start().await;
    up.set("a", conclave_e2e::Behavior::ok("quick"));
    let api_base = up.api_base("a");
    let proxy = Proxy::launch(
        "",
        Launch {
            without_serve_command: true,
            without_config: true,
            ..Launch::with(
                &[
                    "--model",
                    "openai/gpt-up",
                    "--api_base",
                    &api_base,
                    "--alias",
                    "fast",
                ],
                &[],
            )
        },
    )
    .await;
    let (status, _, body) = proxy.chat(&chat_body("fast", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "quick");
    assert_eq!(up.last_body("a").unwrap()["model"], "gpt-up");

    let out = run_conclave(&["--model", "openai/x", "--config", "c.yaml"], &[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config"), "{stderr}");

    // A provider conclave does not speak: refused, not a gateway without models.
    let out = run_conclave(&["--model", "bedrock/claude", "--port", "0"], &[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--model bedrock/claude") && stderr.contains("not supported"),
        "{stderr}"
    );
}
