//! Runs the real `conclave` binary on an ephemeral port with a config written
//! to a fresh temporary directory, and collects its log output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `conclave` binary built alongside these tests (target/<profile>/conclave).
pub fn conclave_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join(format!("conclave{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist; `cargo test --workspace` builds it (or run `cargo build -p conclave`)",
        bin.display()
    );
    bin
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conclave-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `name` inside the directory.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `conclave check` on `yaml` (written to a fresh directory): whether it
/// passed, and what it printed (stdout, then stderr).
pub async fn check_config(yaml: &str) -> (bool, String) {
    let dir = TempDir::new();
    let path = dir.write("config.yaml", yaml).display().to_string();
    let out = run_conclave(&["check", "--config", &path], &[]).await;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs `conclave <args>` to completion with extra environment variables.
pub async fn run_conclave(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(conclave_bin());
    cmd.args(args).env_remove("RUST_LOG").kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("conclave did not finish within 60 s")
        .expect("conclave runs")
}

/// How [`Proxy::launch`] starts conclave beyond its config.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra `serve` arguments, e.g. `--watch`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Files written beside the config before the start (name, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Started as LiteLLM is: no `serve` command, and no `RUST_LOG`, so
    /// the command line and environment alone choose what is logged.
    pub without_serve_command: bool,
    /// Started without `--config` (the arguments say what to serve).
    pub without_config: bool,
}

impl Launch {
    /// A launch with these extra arguments and environment variables.
    pub fn with(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Self::default()
        }
    }
}

/// Replaces `path` with `contents` the way careful tools do: a temporary
/// file in the same directory, then a rename.
pub fn replace_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-replace");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A running `conclave serve`; killed on drop.
pub struct Proxy {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    logs: Arc<Mutex<String>>,
    pub dir: TempDir,
    pub client: reqwest::Client,
}

impl Proxy {
    /// Starts conclave on `yaml` and waits until it listens.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, &[], &[]).await
    }

    /// Starts conclave with extra environment variables and extra files
    /// (e.g. `.env`) beside the config.
    pub async fn start_with(yaml: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> Self {
        Self::launch(
            yaml,
            Launch {
                files: files
                    .iter()
                    .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
                    .collect(),
                ..Launch::with(&[], env)
            },
        )
        .await
    }

    /// Starts conclave with extra `serve` arguments, environment variables
    /// and files (binary or not) beside the config. Unless the environment
    /// says otherwise, the compile cache is a fresh directory of the proxy's.
    pub async fn launch(yaml: &str, launch: Launch) -> Self {
        let dir = TempDir::new();
        let config = dir.write("config.yaml", yaml);
        for (name, content) in &launch.files {
            let p = dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, content).unwrap();
        }
        let mut cmd = Command::new(conclave_bin());
        cmd.args(["--log-format", "json"]);
        if launch.without_serve_command {
            cmd.env_remove("RUST_LOG");
        } else {
            cmd.arg("serve").env("RUST_LOG", "info,conclave=debug");
        }
        cmd.args(["--host", "127.0.0.1", "--port", "0"]);
        if !launch.without_config {
            cmd.arg("--config").arg(&config);
        }
        cmd.args(&launch.args)
            .env("CONCLAVE_CACHE_DIR", dir.path().join(".compile-cache"))
            .env_remove("CONCLAVE_NO_COMPILE_CACHE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn conclave");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(tx) = addr_tx.take_if(|_| line.contains("conclave listening")) {
                    let addr = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["address"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let status = child.try_wait().ok().flatten();
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "conclave did not start (exit: {status:?}); logs:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        Self {
            child,
            base: format!("http://{addr}"),
            logs,
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// `GET path` (no key), answered 200 with JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything conclave logged so far (JSON lines).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Makes a virtual key with `/key/generate` as `master`; the answer
    /// (`key`, `key_name`, ...), after asserting it succeeded.
    pub async fn generate_key(&self, master: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .client
            .post(self.url("/key/generate"))
            .bearer_auth(master)
            .json(&body)
            .send()
            .await
            .expect("request to conclave");
        assert_eq!(r.status(), 200, "/key/generate {body}");
        r.json().await.expect("a JSON answer")
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request to conclave")
    }

    /// POSTs `body` to `path` as JSON text written by the caller (key order,
    /// odd escapes and malformed JSON arrive exactly as written).
    pub async fn post_text(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request to conclave")
    }

    /// Sends `method path` with an optional JSON body and bearer key,
    /// waiting at most 60 s; the status and the body as JSON (a JSON string
    /// when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = self.client.request(method, self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = tokio::time::timeout(Duration::from_secs(60), r.send())
            .await
            .expect("answer within 60 s")
            .expect("request to conclave");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// The Prometheus exposition from `/metrics` (with `key`, when the
    /// route needs one); asserts it answered 200.
    pub async fn metrics(&self, key: Option<&str>) -> String {
        let mut r = self.client.get(self.url("/metrics"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.expect("request to conclave");
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap()
    }

    /// POSTs a chat completion and returns status, headers and parsed body.
    pub async fn chat(
        &self,
        body: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let r = self.post("/v1/chat/completions", body).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, headers, json)
    }

    /// The distinct answers (message contents) `n` chat requests to `model`
    /// get, sorted: which deployments of a group serve it. Every request
    /// must succeed.
    pub async fn distinct_answers(
        &self,
        model: &str,
        key: Option<&str>,
        n: usize,
    ) -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..n {
            let body = crate::chat_body(model, "x");
            let (status, answer) = self
                .call(
                    reqwest::Method::POST,
                    "/v1/chat/completions",
                    Some(body),
                    key,
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            let content = &answer["choices"][0]["message"]["content"];
            seen.insert(content.as_str().unwrap_or_default().to_owned());
        }
        seen
    }

    /// Sends SIGTERM-like kill and waits.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The most memory the process has had resident since it started
    /// (`VmHWM` of /proc/<pid>/status), in bytes: what an attack cost it at
    /// its worst, even after the memory was freed.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The memory resident now (`VmRSS` of /proc/<pid>/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// Fails the test when the process's peak RSS reached `bound` bytes.
    pub fn assert_peak_rss_below(&self, bound: u64) {
        let peak = self.peak_rss_bytes();
        assert!(
            peak < bound,
            "peak RSS {} MiB (now {} MiB), bound {} MiB",
            peak >> 20,
            self.rss_bytes() >> 20,
            bound >> 20
        );
    }

    /// A `kB` field of /proc/<pid>/status, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let pid = self.pid().expect("conclave is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("/proc/<pid>/status of the running conclave");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
        kib * 1024
    }

    /// Sends a signal (e.g. `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("conclave is running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// The config file conclave was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Waits for the process to exit on its own.
    pub async fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}
