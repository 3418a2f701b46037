//! `exec/<name>`: a command-line program as a model. The conversation is
//! serialized into one prompt with role delimiters and passed as an argument;
//! the program's stdout is the answer. No shell is involved (arguments are
//! passed as they are), the program runs in an empty temporary directory, and
//! its output is bounded: more than `max_output_bytes` is an error, never a
//! silently cut answer.
//!
//! litellm_params: `command` (required), `args` (templates with `{prompt}` and
//! `{model}`; default `["-p", "{prompt}", "--model", "{model}"]`),
//! `max_output_bytes` (default 1 MiB), `io_log_path` (JSON lines of prompts
//! and outputs), `env` (extra environment variables), and `timeout`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};

use super::{PayloadStream, UpstreamCall, UpstreamError, UpstreamReply};
use crate::config::{Env, LitellmParams};
use crate::openai::response::{self, Head};
use crate::openai::{Endpoint, RawFields, unix_now};

const DEFAULT_ARGS: &[&str] = &["-p", "{prompt}", "--model", "{model}"];
const DEFAULT_MAX_OUTPUT: usize = 1 << 20;
/// How much of stderr is quoted when the program fails.
const STDERR_QUOTE: usize = 2000;

/// A deployment served by running a program.
pub struct ExecTarget {
    name: String,
    command: String,
    args: Vec<String>,
    max_output_bytes: usize,
    io_log: Option<PathBuf>,
    env: BTreeMap<String, String>,
}

fn string_list(value: &serde_yaml::Value, key: &str) -> Result<Vec<String>, String> {
    value
        .as_sequence()
        .ok_or_else(|| format!("{key} must be a list of strings"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{key} must be a list of strings"))
        })
        .collect()
}

impl ExecTarget {
    pub(super) fn from_params(
        name: &str,
        params: &LitellmParams,
        env: &Env,
    ) -> Result<Self, String> {
        let extra = &params.extra;
        let command = extra
            .get("command")
            .and_then(|v| v.as_str())
            .filter(|c| !c.trim().is_empty())
            .ok_or("exec deployments need `command` (the program to run)")?
            .to_owned();
        let args = match extra.get("args") {
            None | Some(serde_yaml::Value::Null) => {
                DEFAULT_ARGS.iter().map(|s| (*s).to_owned()).collect()
            }
            Some(v) => string_list(v, "args")?,
        };
        let max_output_bytes = match extra.get("max_output_bytes") {
            None | Some(serde_yaml::Value::Null) => DEFAULT_MAX_OUTPUT,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("max_output_bytes must be a positive integer")?,
        };
        let io_log = extra
            .get("io_log_path")
            .and_then(|v| v.as_str())
            .map(|p| env.resolve_path(p));
        let mut vars = BTreeMap::new();
        if let Some(map) = extra.get("env") {
            let map = map
                .as_mapping()
                .ok_or("env must be a mapping of names to values")?;
            for (k, v) in map {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    return Err("env must map names to string values".into());
                };
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
        Ok(Self {
            name: name.to_owned(),
            command,
            args,
            max_output_bytes,
            io_log,
            env: vars,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) async fn call(
        &self,
        call: UpstreamCall<'_>,
    ) -> Result<UpstreamReply, UpstreamError> {
        if call.endpoint != Endpoint::ChatCompletions {
            return Err(UpstreamError::Status {
                status: 400,
                message: "exec deployments serve chat completions only".into(),
                code: None,
                retry_after: None,
            });
        }
        let model = call.model_override.unwrap_or(&self.name).to_owned();
        let prompt = serialize_conversation(call.body);
        let workdir = WorkDir::new().map_err(|e| {
            UpstreamError::Connect(format!("cannot create a working directory: {e}"))
        })?;
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{prompt}", &prompt).replace("{model}", &model))
            .collect();
        let mut child = Command::new(&self.command)
            .args(&args)
            .envs(&self.env)
            .current_dir(&workdir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| UpstreamError::Connect(format!("cannot run {:?}: {e}", self.command)))?;
        let started = Instant::now();
        if call.stream {
            Ok(UpstreamReply::Stream(self.stream(
                child,
                workdir,
                model,
                prompt,
                call.timeouts.stream,
                started,
            )))
        } else {
            let wait = call.timeouts.request;
            let result = tokio::time::timeout(wait, self.collect(&mut child)).await;
            let result = match result {
                Err(_) => Err(UpstreamError::Timeout(wait)),
                Ok(r) => r,
            };
            self.log(
                &model,
                &prompt,
                result.as_ref().map(String::as_str),
                started,
            )
            .await;
            drop(workdir);
            let text = result?;
            let id = response::completion_id(Some("exec"));
            Ok(UpstreamReply::Json(response::to_bytes(
                &response::completion(
                    Head::now(&id, &model),
                    response::assistant_message(&text, None, None),
                    "stop",
                    response::usage(approx_tokens(&prompt), approx_tokens(&text)),
                ),
            )))
        }
    }

    /// Reads all of stdout (bounded), then the exit status.
    async fn collect(&self, child: &mut Child) -> Result<String, UpstreamError> {
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| UpstreamError::Protocol("no stdout".into()))?;
        let stderr = child.stderr.take();
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| UpstreamError::StreamBroken(e.to_string()))?;
            if n == 0 {
                break;
            }
            if out.len() + n > self.max_output_bytes {
                let _ = child.start_kill();
                return Err(self.too_long());
            }
            out.extend_from_slice(&buf[..n]);
        }
        let status = child
            .wait()
            .await
            .map_err(|e| UpstreamError::StreamBroken(e.to_string()))?;
        if !status.success() {
            return Err(failed(&self.command, status, stderr).await);
        }
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    fn too_long(&self) -> UpstreamError {
        UpstreamError::Protocol(format!(
            "{:?} wrote more than max_output_bytes ({}); the output was discarded rather than cut",
            self.command, self.max_output_bytes
        ))
    }

    /// Streams stdout as chat chunks as it arrives.
    fn stream(
        &self,
        mut child: Child,
        workdir: WorkDir,
        model: String,
        prompt: String,
        idle: Duration,
        started: Instant,
    ) -> PayloadStream {
        struct State {
            child: Child,
            stdout: Option<ChildStdout>,
            pending: Vec<u8>,
            total: usize,
            text: String,
            done: bool,
            _workdir: WorkDir,
        }
        let stdout = child.stdout.take();
        let state = State {
            child,
            stdout,
            pending: Vec::new(),
            total: 0,
            text: String::new(),
            done: false,
            _workdir: workdir,
        };
        let id = response::completion_id(Some("exec"));
        let limit = self.max_output_bytes;
        let command = self.command.clone();
        let log = self.io_log.clone();
        let too_long = self.too_long();
        let log_model = model.clone();
        let chunk = move |delta: Value, finish: Option<&str>| {
            response::to_bytes(&response::chunk(Head::now(&id, &model), delta, finish))
        };
        Box::pin(stream::unfold(state, move |mut st| {
            let chunk = chunk.clone();
            let command = command.clone();
            let log = log.clone();
            let prompt = prompt.clone();
            let too_long = too_long.clone();
            let log_model = log_model.clone();
            async move {
                if st.done {
                    return None;
                }
                let Some(stdout) = st.stdout.as_mut() else {
                    st.done = true;
                    return Some((Err(UpstreamError::Protocol("no stdout".into())), st));
                };
                let mut buf = [0u8; 8192];
                let read = tokio::time::timeout(idle, read_some(stdout, &mut buf)).await;
                let n = match read {
                    Err(_) => {
                        st.done = true;
                        return Some((Err(UpstreamError::Timeout(idle)), st));
                    }
                    Ok(Err(e)) => {
                        st.done = true;
                        return Some((Err(UpstreamError::StreamBroken(e.to_string())), st));
                    }
                    Ok(Ok(n)) => n,
                };
                if n == 0 {
                    st.done = true;
                    let status = st.child.wait().await;
                    let stderr = st.child.stderr.take();
                    let outcome = match status {
                        Ok(s) if s.success() => Ok(chunk(json!({}), Some("stop"))),
                        Ok(s) => Err(failed(&command, s, stderr).await),
                        Err(e) => Err(UpstreamError::StreamBroken(e.to_string())),
                    };
                    if let Some(path) = &log {
                        let result = outcome
                            .as_ref()
                            .map(|_| st.text.as_str())
                            .map_err(Clone::clone);
                        write_log(
                            path,
                            &log_model,
                            &prompt,
                            result.as_ref().map(|s| *s),
                            started,
                        )
                        .await;
                    }
                    return Some((outcome, st));
                }
                st.total += n;
                if st.total > limit {
                    st.done = true;
                    let _ = st.child.start_kill();
                    return Some((Err(too_long), st));
                }
                st.pending.extend_from_slice(&buf[..n]);
                let text = take_utf8(&mut st.pending);
                st.text.push_str(&text);
                Some((Ok(chunk(json!({"content": text}), None)), st))
            }
        }))
    }

    async fn log(
        &self,
        model: &str,
        prompt: &str,
        result: Result<&str, &UpstreamError>,
        started: Instant,
    ) {
        if let Some(path) = &self.io_log {
            write_log(path, model, prompt, result, started).await;
        }
    }
}

async fn read_some(
    stdout: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    stdout.read(buf).await
}

/// The longest valid UTF-8 prefix of `pending`, removed from it.
fn take_utf8(pending: &mut Vec<u8>) -> String {
    let valid = match std::str::from_utf8(pending) {
        Ok(_) => pending.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => pending.len(),
    };
    let rest = pending.split_off(valid);
    let text = String::from_utf8_lossy(pending).into_owned();
    *pending = rest;
    text
}

async fn failed(
    command: &str,
    status: std::process::ExitStatus,
    stderr: Option<tokio::process::ChildStderr>,
) -> UpstreamError {
    let mut text = Vec::new();
    if let Some(mut e) = stderr {
        let _ = (&mut e).take(64 * 1024).read_to_end(&mut text).await;
    }
    let text = String::from_utf8_lossy(&text);
    let tail: String = text
        .trim()
        .chars()
        .rev()
        .take(STDERR_QUOTE)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    UpstreamError::Status {
        status: 500,
        message: format!("{command:?} exited with {status}: {tail}"),
        code: None,
        retry_after: None,
    }
}

async fn write_log(
    path: &std::path::Path,
    model: &str,
    prompt: &str,
    result: Result<&str, &UpstreamError>,
    started: Instant,
) {
    let line = json!({
        "timestamp": unix_now(),
        "model": model,
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        "prompt": prompt,
        "output": result.as_ref().ok(),
        "error": result.as_ref().err().map(|e| e.to_string()),
    });
    crate::observe::append_json_line(path, &line, "exec io log").await;
}

/// The conversation as one prompt, each message under a role delimiter.
pub fn serialize_conversation(body: &RawFields) -> String {
    let Some(Value::Array(messages)) = body.value("messages") else {
        return String::new();
    };
    messages
        .iter()
        .map(|m| {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_uppercase();
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            format!("=== {role} ===\n{content}")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// A fresh empty directory, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conclave-exec-{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_is_serialized_with_role_delimiters() {
        let body: RawFields = serde_json::from_str(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(
            serialize_conversation(&body),
            "=== SYSTEM ===\nbe brief\n\n=== USER ===\nhi"
        );
    }

    #[test]
    fn split_utf8_sequences_wait_for_their_rest() {
        let mut pending = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut pending), "");
        pending.extend_from_slice(&"é".as_bytes()[1..]);
        assert_eq!(take_utf8(&mut pending), "é");
        assert!(pending.is_empty());
    }
}
