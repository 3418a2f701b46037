//! Support for conclave's end-to-end tests: a fake OpenAI-compatible upstream
//! on 127.0.0.1 and a harness that runs the real `conclave` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod fake;
pub mod proxy;
pub mod services;
pub mod tls;

pub use fake::{Behavior, FAKE_CALL_ID, FakeUpstream, Recorded, Served};
pub use proxy::{Launch, Proxy, conclave_bin, replace_atomically, run_conclave};

/// A JSON chat request body for `model` with one user message.
pub fn chat_body(model: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Reads an SSE body into its `data:` payloads (including `[DONE]`).
pub fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The concatenated `delta.content` of chat chunks.
pub fn sse_content(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// `model_list` entries for `(name, extra keys)` pairs, each a deployment on
/// the fake named after its group (upstream model `<name>-up`).
pub fn deployments(up: &FakeUpstream, entries: &[(&str, &[&str])]) -> String {
    entries
        .iter()
        .map(|(name, extra)| {
            deployment(
                name,
                &format!("openai/{name}-up"),
                &up.api_base(name),
                extra,
            )
        })
        .collect()
}

/// A config of one deployment `m` on `up`, the master key `master` and
/// more `general_settings` lines (indented by two spaces).
pub fn keyed_config(up: &FakeUpstream, master: &str, general: &str) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(up, &[("m", &[][..])]));
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {master}\n{general}"
    ));
    yaml
}

/// One `model_list` entry (YAML, indented for a top-level `model_list:`)
/// for an OpenAI-compatible deployment at `api_base`, with extra
/// `litellm_params` lines such as `"timeout: 0.5"`.
pub fn deployment(model_name: &str, model: &str, api_base: &str, extra: &[&str]) -> String {
    let mut out = format!(
        "  - model_name: {model_name:?}\n    litellm_params:\n      model: {model:?}\n      api_base: {api_base}\n      api_key: sk-test-key\n"
    );
    for line in extra {
        out.push_str("      ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Reads a whole response body as text, failing after `limit`.
pub async fn body_text(response: reqwest::Response, limit: std::time::Duration) -> String {
    tokio::time::timeout(limit, response.text())
        .await
        .expect("response body within the time limit")
        .expect("response body")
}

/// Checks that `body` is OpenAI's error shape with exactly the four keys,
/// and returns its `error` object.
pub fn error_object(body: &serde_json::Value) -> &serde_json::Value {
    let error = &body["error"];
    let obj = error
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error body: {body}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    error
}

/// Reads a streaming response event by event.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next `data:` payload, or `None` at the end of the body; fails
    /// after `limit`.
    pub async fn next(&mut self, limit: std::time::Duration) -> Option<String> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(p) = sse_payloads(&event).pop() {
                    return Some(p);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("next SSE event within the time limit")?;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
    }
}

/// A strategy component built from strategies/ for the tests (e.g. `probe`).
pub fn strategy_component(name: &str) -> std::path::PathBuf {
    let target = conclave_bin()
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory")
        .to_path_buf();
    let path = target.join(format!("wasm-strategies/wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.exists(),
        "{} was not built (host/build.rs builds it)",
        path.display()
    );
    path
}

/// A config for composite-strategy tests: one fake deployment per name in
/// `deployments` (model group `<name>`, upstream model `<name>-up`), the
/// public composite models `(model_name, profile)`, and `profiles`: YAML for
/// `general_settings.composite_llm.profiles`, indented by six spaces (none
/// when empty). The router does not retry, so call counts are exact.
pub fn composite_config(
    up: &FakeUpstream,
    deployments: &[&str],
    public: &[(&str, &str)],
    profiles: &str,
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
    for (model_name, profile) in public {
        yaml.push_str(&format!(
            "  - model_name: {model_name}\n    litellm_params:\n      model: composite/profile/{profile}\n"
        ));
    }
    yaml.push_str("router_settings:\n  num_retries: 0\n  retry_after: 0\n");
    if !profiles.is_empty() {
        yaml.push_str("general_settings:\n  composite_llm:\n    profiles:\n");
        yaml.push_str(profiles);
    }
    yaml
}

/// The text of every message a model received, one string (for checking
/// what a stage saw, without the request's other fields).
pub fn messages_text(body: &serde_json::Value) -> String {
    body["messages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Asserts that a recorded request body ends with the tool result for the
/// fake upstream's tool call: the turn a strategy must pass on unchanged.
pub fn assert_ends_with_tool_result(body: &serde_json::Value) {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .unwrap_or_else(|| panic!("no messages in {body}"));
    assert_eq!(last["role"], "tool", "{body}");
    assert_eq!(last["tool_call_id"], FAKE_CALL_ID, "{body}");
}

/// Runs `conclave check` on `yaml`, asserts that it fails and returns what
/// it printed on stderr.
pub async fn failed_check(yaml: &str) -> String {
    let dir = proxy::TempDir::new();
    let path = dir.write("bad.yaml", yaml);
    let out = run_conclave(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "check passed: {stderr}");
    stderr
}

/// Runs `conclave check` on `yaml`, asserts that it passes and returns what
/// it printed (stdout, then stderr).
pub async fn passed_check(yaml: &str) -> String {
    let dir = proxy::TempDir::new();
    let path = dir.write("good.yaml", yaml);
    let out = run_conclave(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check failed: {printed}");
    printed
}

/// Every request body deployment `name` received, oldest first.
pub fn bodies(up: &FakeUpstream, name: &str) -> Vec<serde_json::Value> {
    up.recorded()
        .into_iter()
        .filter(|r| r.deployment == name)
        .map(|r| r.body)
        .collect()
}

/// `choices[0].message.content` of a chat answer ("" when absent).
pub fn answer_content(body: &serde_json::Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

/// `choices[0].message.reasoning_content` of a chat answer ("" when absent).
pub fn answer_reasoning(body: &serde_json::Value) -> &str {
    body["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap_or_default()
}
