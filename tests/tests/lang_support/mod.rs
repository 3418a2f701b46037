//! Shared helpers for `strategy_languages` and `strategy_scaffold`: running
//! `conclave strategy new|build`, skipping when a language's tools are
//! missing, and serving a built component against the fake upstream.
//!
//! Tool installs (the componentize-py venv) and compiled components live
//! under the workspace target directory (`target/strategy-tools`,
//! `target/strategy-cache`), so reruns are fast and `cargo clean` clears them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use conclave_e2e::{FakeUpstream, Proxy, conclave_bin, deployment};

/// How long one `conclave strategy build` may take (a cold Rust build
/// downloads and compiles wit-bindgen; a cold JS build installs ~150 npm packages).
pub const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// The workspace target directory (`target/`).
pub fn target_dir() -> PathBuf {
    conclave_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Environment for every conclave command here: tools and the compile cache
/// under target/, shared by `strategy build` (which fills the compile cache)
/// and `serve` (which then loads from it instead of compiling).
pub fn cache_env() -> Vec<(&'static str, String)> {
    let target = target_dir();
    vec![
        (
            "CONCLAVE_TOOLS_DIR",
            target.join("strategy-tools").display().to_string(),
        ),
        (
            "CONCLAVE_CACHE_DIR",
            target.join("strategy-cache").display().to_string(),
        ),
    ]
}

/// Why the tests of `lang` cannot run here, if they cannot.
pub fn missing_tools(lang: &str) -> Option<String> {
    let runs = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match lang {
        "python" if !runs("python3") => Some("python3 is not installed".into()),
        "js" if !runs("node") => Some("node is not installed".into()),
        "js" if !runs("npm") => Some("npm is not installed".into()),
        _ => None,
    }
}

/// Prints why a test is skipped.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// Runs `conclave <args>` with the cache environment plus `env`, within `limit`.
pub async fn conclave(
    args: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(conclave_bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in cache_env() {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(output) => output.expect("conclave runs"),
        Err(_) => panic!(
            "`conclave {}` did not finish within {limit:?}",
            args.join(" ")
        ),
    }
}

/// `conclave strategy new <name> --lang <lang> --dir <dir>`.
pub async fn strategy_new(name: &str, lang: &str, dir: &Path) {
    let dir_arg = dir.display().to_string();
    let out = conclave(
        &["strategy", "new", name, "--lang", lang, "--dir", &dir_arg],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(
        out.status.success(),
        "strategy new failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `conclave strategy build <dir>`: the component's path, or `None` (with the
/// reason printed) when the language's tools could not be installed. Any
/// other failure fails the test.
pub async fn strategy_build(test: &str, dir: &Path, env: &[(&str, String)]) -> Option<PathBuf> {
    let started = Instant::now();
    let dir_arg = dir.display().to_string();
    let mut out = conclave(&["strategy", "build", &dir_arg], env, BUILD_LIMIT).await;
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("is not a valid WebAssembly component")
    {
        // componentize-js 0.23 has once (in about a dozen builds) written a
        // module with a corrupt code section; a second build was fine. One
        // retry keeps that flake out of the tests; a second failure fails.
        eprintln!(
            "{test}: the built component was corrupt; building once more:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out = conclave(
            &["strategy", "build", "--force", &dir_arg],
            env,
            BUILD_LIMIT,
        )
        .await;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if let Some(line) = stderr.lines().find(|l| l.contains("tool setup failed")) {
            skip(test, line.trim());
            return None;
        }
        panic!("`conclave strategy build {dir_arg}` failed:\n{stderr}");
    }
    eprintln!(
        "{test}: `conclave strategy build` took {:.1} s:\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    // stdout is the component's path, alone.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.trim());
    assert!(
        path.is_file(),
        "not a built component: {stdout:?}\n{stderr}"
    );
    assert!(path.extension().is_some_and(|e| e == "wasm"), "{stdout:?}");
    Some(path)
}

/// Writes `files` (relative path, content) under `dir`, leaving files whose
/// content is unchanged untouched so a built component stays up to date.
pub fn sync_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, content) in files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == *content) {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}

/// Every file under `dir` (relative paths), for copying a fresh project.
pub fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// A config with one fake deployment per name in `deployments` (group
/// `<name>`), the strategy `strategy` registered as `wasm`, and a profile of
/// the same name served as public model `strategy` with `topology` (YAML
/// flow mapping). The router does not retry, so call counts are exact.
pub fn config(
    up: &FakeUpstream,
    deployments: &[&str],
    strategy: &str,
    wasm: &Path,
    topology: &str,
) -> String {
    let mut yaml = String::from("model_list:\n");
    for name in deployments {
        yaml.push_str(&deployment(
            name,
            &format!("openai/{name}-up"),
            &up.api_base(name),
            &[],
        ));
    }
    yaml.push_str(&format!(
        "  - model_name: {strategy}\n    litellm_params:\n      model: composite/profile/{strategy}\n\
         router_settings:\n  num_retries: 0\n  retry_after: 0\n\
         general_settings:\n  composite_llm:\n    strategy_registry:\n      {strategy}: {wasm:?}\n\
         \x20   profiles:\n      {strategy}:\n        strategy: {strategy}\n        topology: {topology}\n",
        wasm = wasm.display().to_string(),
    ));
    yaml
}

/// Starts conclave on `yaml` with the cache environment (so a component
/// checked by `strategy build` loads from the compile cache).
pub async fn serve(yaml: &str) -> Proxy {
    let env = cache_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Proxy::start_with(yaml, &env, &[]).await
}
