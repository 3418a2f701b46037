//! The official Python clients (`openai`, `anthropic`) in a venv under the
//! cargo target dir, created once and shared with `openai_sdk.rs`'s venv.
//! Tests that need them skip (printing why) where python3 or pip is missing.
// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_e2e::{FakeUpstream, Proxy, composite_config, conclave_bin, deployment};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::OnceCell;

/// Runs `program` with `args`, failing past `limit` or on a non-zero exit.
pub async fn run(program: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
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

/// A Python with `openai` and `anthropic` installed.
pub async fn python_with_sdks() -> Result<PathBuf, String> {
    static PYTHON: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    PYTHON
        .get_or_init(|| venv_with("py-venv", "openai, anthropic", &["openai", "anthropic"]))
        .await
        .clone()
}

/// A venv named `name` under the cargo target dir in which `import` works,
/// created and filled with `packages` from PyPI when it does not yet.
pub async fn venv_with(name: &str, import: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let profile_dir = conclave_bin()
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no target directory")?;
    let venv = profile_dir.join("..").join(name);
    let python = venv.join("bin").join("python");
    let import = format!("import {import}");
    let import = ["-c", import.as_str()];
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
    if !python.exists() {
        let venv_arg = venv.display().to_string();
        run(
            Path::new("python3"),
            &["-m", "venv", &venv_arg],
            Duration::from_secs(120),
        )
        .await
        .map_err(|e| format!("cannot create a venv: {e}"))?;
    }
    let mut pip = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--timeout",
        "15",
        "--retries",
        "1",
    ];
    pip.extend_from_slice(packages);
    run(&python, &pip, Duration::from_secs(240))
        .await
        .map_err(|e| format!("pip install {} failed: {e}", packages.join(" ")))?;
    run(&python, &import, Duration::from_secs(30))
        .await
        .map_err(|e| format!("{} do not import after install: {e}", packages.join(", ")))?;
    Ok(python)
}

/// Runs `script` (written into the proxy's directory) with `args` and
/// returns its JSON output, or `None` (printed) when the clients are missing.
pub async fn run_script(proxy: &Proxy, name: &str, script: &str, args: &[&str]) -> Option<Value> {
    let python = match python_with_sdks().await {
        Ok(p) => p,
        Err(reason) => {
            println!("skipped: {reason}");
            return None;
        }
    };
    let path = proxy.dir.write(name, script).display().to_string();
    let mut all = vec![path.as_str()];
    all.extend_from_slice(args);
    let out = run(&python, &all, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the client script failed: {e}\nconclave logs:\n{}",
                proxy.logs()
            )
        });
    Some(serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}")))
}

/// A gateway with one plain model group `group` on the fake (upstream model
/// `gpt-up`), behind `master_key`.
pub async fn plain_proxy(up: &FakeUpstream, group: &str, master_key: &str) -> Proxy {
    Proxy::start(&format!(
        "model_list:\n{}general_settings:\n  master_key: {master_key}\n",
        deployment(group, "openai/gpt-up", &up.api_base("a"), &[])
    ))
    .await
}

/// A gateway whose public model `composite` is a one-tier cascade over `tier-a`.
pub async fn one_tier_composite(up: &FakeUpstream) -> Proxy {
    Proxy::start(&composite_config(
        up,
        &["tier-a"],
        &[("composite", "one_tier")],
        "      one_tier:\n        strategy: cascade\n        topology:\n          tiers: [{model: tier-a}]\n          settings: {}\n",
    ))
    .await
}
