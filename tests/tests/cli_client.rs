//! The client commands against a running proxy: `chat` and `compare`.

use conclave_e2e::{Proxy, run_conclave};

const DEMO: &str = include_str!("../../config/demo.yaml");

/// Public names of the demo's composite models (entries whose model is `composite/...`).
fn demo_composites() -> Vec<String> {
    let mut names = Vec::new();
    let mut last_name = None;
    for line in DEMO.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- model_name:") {
            last_name = Some(name.trim().to_owned());
        } else if line.starts_with("model: composite/") {
            names.extend(last_name.take());
        }
    }
    names
}

#[tokio::test]
async fn chat_streams_each_demo_composite_with_its_trace() {
    let proxy = Proxy::start(DEMO).await;
    let composites = demo_composites();
    assert!(!composites.is_empty());
    for model in composites {
        let out = run_conclave(
            &[
                "chat",
                "--base-url",
                &proxy.base,
                "--model",
                &model,
                "what is six times seven?",
            ],
            &[],
        )
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{model}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The trace is dimmed (ANSI faint) and ends before the answer.
        let dim = stdout
            .find("\x1b[2m")
            .unwrap_or_else(|| panic!("{model}: no trace shown:\n{stdout}"));
        let reset = stdout.rfind("\x1b[0m").unwrap();
        assert!(dim < reset, "{model}: {stdout}");
        assert!(
            stdout[dim..reset].contains('['),
            "{model}: trace without stages: {stdout}"
        );
        assert!(
            !stdout[reset..].trim().is_empty(),
            "{model}: no answer after the trace:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn chat_without_reasoning_prints_only_the_answer() {
    let proxy = Proxy::start(DEMO).await;
    let out = run_conclave(
        &[
            "chat",
            "--base-url",
            &proxy.base,
            "--model",
            "demo-moa",
            "--no-reasoning",
            "hello",
        ],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !stdout.contains("\x1b[2m") && !stdout.contains("[proposals]"),
        "{stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");
}

#[tokio::test]
async fn compare_prints_one_row_per_model_and_fails_when_one_does() {
    let proxy = Proxy::start(DEMO).await;
    let out = run_conclave(
        &[
            "compare",
            "--base-url",
            &proxy.base,
            "--models",
            "demo-fast,demo-moa,no-such-model",
            "hello there",
        ],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[0].contains("model") && rows[0].contains("seconds") && rows[0].contains("tokens"),
        "{stdout}"
    );
    let row = |name: &str| {
        *rows
            .iter()
            .find(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
    };
    assert!(
        row("demo-fast").contains(" 200 ") && row("demo-fast").contains("You said: hello there"),
        "{stdout}"
    );
    assert!(
        row("demo-moa").contains(" 200 ") && row("demo-moa").contains("42"),
        "{stdout}"
    );
    assert!(row("no-such-model").contains(" 404 "), "{stdout}");
}

/// `serve` listens where LiteLLM's `HOST` and `PORT` say when neither the
/// flags nor `CONCLAVE_HOST`/`CONCLAVE_PORT` do, and refuses a `PORT` that
/// is not a port; an unusable value from a `CONCLAVE_*` variable is an
/// error naming the variable.
#[tokio::test]
async fn serve_reads_host_and_port_from_the_environment() {
    use tokio::io::AsyncBufReadExt;
    let dir = conclave_e2e::proxy::TempDir::new();
    let config = dir.write(
        "c.yaml",
        "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\n",
    );
    let config = config.to_str().unwrap();
    let out = run_conclave(&["serve", "--config", config], &[("PORT", "not-a-port")]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT=\"not-a-port\""), "{stderr}");
    let out = run_conclave(
        &["serve", "--config", config],
        &[("CONCLAVE_PORT", "not-a-port")],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONCLAVE_PORT"), "{stderr}");
    for (variable, value) in [
        ("CONCLAVE_NUM_WORKERS", "0"),
        ("CONCLAVE_LOG_FORMAT", "xml"),
        ("CONCLAVE_HOST", "no such host.invalid"),
    ] {
        let out = run_conclave(&["serve", "--config", config], &[(variable, value)]).await;
        assert!(!out.status.success(), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }

    let mut child = tokio::process::Command::new(conclave_e2e::proxy::conclave_bin())
        .args(["--log-format", "json", "serve", "--config", config])
        // A name, as LiteLLM's users write it, resolves to a loopback address.
        .env("HOST", "localhost")
        .env("PORT", "0")
        .env_remove("CONCLAVE_HOST")
        .env_remove("CONCLAVE_PORT")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("conclave listening") {
                return Some(line);
            }
        }
        None
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        listening.contains("127.0.0.1:") || listening.contains("[::1]:"),
        "{listening}"
    );
    child.kill().await.unwrap();
}
