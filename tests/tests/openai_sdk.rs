//! The official `openai` Python package against conclave: if the SDK can
//! talk to it, so can the applications built on it. Skipped (with a printed
//! reason) where python3 or `pip install openai` is not available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, conclave_bin};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::OnceCell;

const MASTER_KEY: &str = "sk-e2e-sdk-master";

const SCRIPT: &str = r#"
import json, sys
import openai

base_url, mode, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=sys.argv[4], max_retries=0, timeout=10)
messages = [{"role": "user", "content": "hello from the sdk"}]
if mode == "plain":
    r = client.chat.completions.create(model=model, messages=messages, temperature=0.5)
    out = {
        "content": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "total_tokens": r.usage.total_tokens,
        "system_fingerprint": r.system_fingerprint,
    }
elif mode == "stream":
    parts, chunks, usage = [], 0, None
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.total_tokens
    out = {"content": "".join(parts), "chunks": chunks, "total_tokens": usage}
else:
    try:
        client.chat.completions.create(model=model, messages=messages)
        out = {"raised": None}
    except openai.APIStatusError as e:
        out = {"raised": type(e).__name__, "status": e.status_code, "code": e.code, "type": e.type}
print(json.dumps(out))
"#;

async fn run(program: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| format!("{} {args:?} took longer than {limit:?}", program.display()))?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {args:?} failed ({}): {}{}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A Python with `openai` installed, in a venv under the cargo target dir
/// (created once, reused by later runs).
async fn python_with_openai() -> Result<PathBuf, String> {
    static PYTHON: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    PYTHON
        .get_or_init(|| async {
            let profile_dir = conclave_bin()
                .parent()
                .map(Path::to_path_buf)
                .ok_or("no target directory")?;
            let venv = profile_dir.join("..").join("py-venv");
            let python = venv.join("bin").join("python");
            let import = ["-c", "import openai"];
            if python.exists() && run(&python, &import, Duration::from_secs(30)).await.is_ok() {
                return Ok(python);
            }
            run(
                Path::new("python3"),
                &["--version"],
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| format!("python3 is not available: {e}"))?;
            let venv_arg = venv.display().to_string();
            run(
                Path::new("python3"),
                &["-m", "venv", &venv_arg],
                Duration::from_secs(120),
            )
            .await
            .map_err(|e| format!("cannot create a venv: {e}"))?;
            run(
                &python,
                &[
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--timeout",
                    "15",
                    "--retries",
                    "1",
                    "openai",
                ],
                Duration::from_secs(180),
            )
            .await
            .map_err(|e| format!("pip install openai failed: {e}"))?;
            run(&python, &import, Duration::from_secs(30))
                .await
                .map_err(|e| format!("openai does not import after install: {e}"))?;
            Ok(python)
        })
        .await
        .clone()
}

/// Runs the SDK script in `mode` against `proxy` and returns its JSON output.
async fn sdk(proxy: &Proxy, mode: &str, model: &str) -> Option<Value> {
    let python = match python_with_openai().await {
        Ok(p) => p,
        Err(reason) => {
            println!("skipped: {reason}");
            return None;
        }
    };
    let script = proxy
        .dir
        .write("sdk_check.py", SCRIPT)
        .display()
        .to_string();
    let base_url = proxy.url("/v1");
    let out = run(
        &python,
        &[&script, &base_url, mode, model, MASTER_KEY],
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the SDK script failed: {e}\nconclave logs:\n{}",
            proxy.logs()
        )
    });
    Some(serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}")))
}

async fn proxy_for(up: &FakeUpstream) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  master_key: {MASTER_KEY}\n",
        conclave_e2e::deployment("sdk-model", "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await
}

#[tokio::test]
async fn openai_sdk_chat_completion_gets_the_answer() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::ok("answer for the sdk"));
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "plain", "sdk-model").await else {
        return;
    };
    assert_eq!(out["content"], "answer for the sdk", "{out}");
    assert_eq!(out["finish_reason"], "stop", "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
    assert_eq!(out["system_fingerprint"], "fp_fake", "{out}");
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["model"], "gpt-up");
    assert_eq!(sent["temperature"], 0.5);
}

#[tokio::test]
async fn openai_sdk_stream_gets_every_chunk_and_usage() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("streamed to the python sdk").chunked(4, Duration::ZERO),
    );
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "stream", "sdk-model").await else {
        return;
    };
    assert_eq!(out["content"], "streamed to the python sdk", "{out}");
    // Four content chunks, the finish chunk and the usage chunk.
    assert_eq!(out["chunks"], 6, "{out}");
    assert_eq!(out["total_tokens"], 12, "{out}");
}

#[tokio::test]
async fn openai_sdk_reads_conclave_errors_as_api_errors() {
    let up = FakeUpstream::start().await;
    let proxy = proxy_for(&up).await;
    let Some(out) = sdk(&proxy, "error", "no-such-model").await else {
        return;
    };
    assert_eq!(out["raised"], "NotFoundError", "{out}");
    assert_eq!(out["status"], 404, "{out}");
    assert_eq!(out["code"], "model_not_found", "{out}");
    assert_eq!(out["type"], "invalid_request_error", "{out}");
    assert_eq!(up.recorded().len(), 0);
}
