//! `exec/<name>`: a command-line program as a model. The conversation is
//! serialized into one prompt with role delimiters (see [`prompt`]) and
//! passed as an argument or on stdin; the program's stdout is the answer. No
//! shell is involved (arguments are passed as they are), the program runs in
//! an empty temporary directory with a cleared environment (see [`process`]),
//! and its output is bounded: more than `max_output_bytes` is an error, never
//! a silently cut answer.
//!
//! litellm_params: `command` (required), `args` (templates with `{prompt}` and
//! `{model}`, filled in one pass; default `["-p", "{prompt}", "--model",
//! "{model}"]`), `prompt_via` (`arg`, the default, or `stdin`),
//! `max_output_bytes` (default 1 MiB), `io_log_path` (JSON lines of prompts
//! and outputs), `env` (variables the program gets besides the inherited
//! few), and `timeout`.

mod process;
mod prompt;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout};

use self::process::{Launch, Running, StderrTail};
pub use self::prompt::serialize_conversation;
use self::prompt::{MAX_ARG_BYTES, fill, oversized_arg};
use super::{PayloadStream, UpstreamCall, UpstreamError, UpstreamReply};
use crate::config::{Env, LitellmParams};
use crate::openai::response::{self, Head};
use crate::openai::{Endpoint, unix_now};

const DEFAULT_ARGS: &[&str] = &["-p", "{prompt}", "--model", "{model}"];
const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

/// How the prompt reaches the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptVia {
    /// As the `{prompt}` argument (limited to 128 KiB by Linux).
    Arg,
    /// Written to stdin, which is then closed; `{prompt}` is not allowed.
    Stdin,
}

/// A deployment served by running a program.
pub struct ExecTarget {
    name: String,
    command: String,
    args: Vec<String>,
    prompt_via: PromptVia,
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

fn prompt_via(value: Option<&serde_yaml::Value>) -> Result<PromptVia, String> {
    match value {
        None | Some(serde_yaml::Value::Null) => Ok(PromptVia::Arg),
        Some(v) => match v.as_str() {
            Some("arg") => Ok(PromptVia::Arg),
            Some("stdin") => Ok(PromptVia::Stdin),
            _ => Err("prompt_via must be `arg` or `stdin`".into()),
        },
    }
}

/// The argument templates; with the prompt on stdin the default drops its
/// `{prompt}` and a given template may not use it.
fn arg_templates(value: Option<&serde_yaml::Value>, via: PromptVia) -> Result<Vec<String>, String> {
    let args = match value {
        None | Some(serde_yaml::Value::Null) => DEFAULT_ARGS
            .iter()
            .filter(|a| via == PromptVia::Arg || **a != "{prompt}")
            .map(|s| (*s).to_owned())
            .collect(),
        Some(v) => string_list(v, "args")?,
    };
    if via == PromptVia::Stdin && args.iter().any(|a| a.contains("{prompt}")) {
        return Err("args may not use {prompt} with `prompt_via: stdin`".into());
    }
    Ok(args)
}

fn env_map(value: Option<&serde_yaml::Value>) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    if let Some(map) = value {
        let map = map
            .as_mapping()
            .ok_or("env must be a mapping of names to values")?;
        for (k, v) in map {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                return Err("env must map names to string values".into());
            };
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(format!(
                    "env: {k:?} is not a valid variable (a name without `=`, no NUL characters)"
                ));
            }
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(vars)
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
        let prompt_via = prompt_via(extra.get("prompt_via"))?;
        let args = arg_templates(extra.get("args"), prompt_via)?;
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
        Ok(Self {
            name: name.to_owned(),
            command,
            args,
            prompt_via,
            max_output_bytes,
            io_log,
            env: env_map(extra.get("env"))?,
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
            return Err(bad_request(
                "exec deployments serve chat completions only".into(),
            ));
        }
        let model = call.model_override.unwrap_or(&self.name).to_owned();
        let prompt = serialize_conversation(call.body);
        let args: Vec<String> = self.args.iter().map(|a| fill(a, &prompt, &model)).collect();
        if let Some(len) = oversized_arg(&args) {
            return Err(self.arg_too_long(len));
        }
        if args.iter().any(|a| a.contains('\0')) {
            return Err(bad_request(
                "the prompt holds a NUL character, which cannot be passed as an argument; \
                 `prompt_via: stdin` passes it"
                    .into(),
            ));
        }
        let workdir = WorkDir::new().map_err(|e| {
            UpstreamError::Connect(format!("cannot create a working directory: {e}"))
        })?;
        let running = process::spawn(Launch {
            command: &self.command,
            args: &args,
            env: &self.env,
            workdir: &workdir.0,
            stdin: (self.prompt_via == PromptVia::Stdin).then(|| prompt.clone()),
        })?;
        let started = Instant::now();
        if call.stream {
            let ctx = StreamCtx {
                id: response::completion_id(Some("exec")),
                model,
                prompt,
                command: self.command.clone(),
                log: self.io_log.clone(),
                limit: self.max_output_bytes,
                too_long: self.too_long(),
                idle: call.timeouts.stream,
                started,
            };
            return Ok(UpstreamReply::Stream(stream_output(running, workdir, ctx)));
        }
        let wait = call.timeouts.request;
        let result = tokio::time::timeout(wait, self.collect(running))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(wait)));
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

    /// Reads all of stdout (bounded; stderr is drained meanwhile by its own
    /// task), then the exit status.
    async fn collect(&self, running: Running) -> Result<String, UpstreamError> {
        let Running { mut child, stderr } = running;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| UpstreamError::Protocol("no stdout".into()))?;
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
            return Err(process::failed(&self.command, status, stderr).await);
        }
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    fn too_long(&self) -> UpstreamError {
        UpstreamError::Protocol(format!(
            "{:?} wrote more than max_output_bytes ({}); the output was discarded rather than cut",
            self.command, self.max_output_bytes
        ))
    }

    /// An argument over Linux's per-argument limit, refused before spawning.
    /// Its code is OpenAI's for a prompt too long for the model, so the
    /// router's `context_window_fallbacks` apply.
    fn arg_too_long(&self, len: usize) -> UpstreamError {
        let message = format!(
            "an argument for {:?} would be {len} bytes, over Linux's limit of {} KiB per \
             argument (MAX_ARG_STRLEN); the prompt is too long to pass as an argument: set \
             `prompt_via: stdin` on deployment {:?} if the program reads its prompt from stdin",
            self.command,
            MAX_ARG_BYTES / 1024,
            self.name
        );
        UpstreamError::Status {
            status: 400,
            message,
            code: Some("context_length_exceeded".into()),
            param: None,
            retry_after: None,
        }
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

fn bad_request(message: String) -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        message,
        code: None,
        param: None,
        retry_after: None,
    }
}

/// What a streamed answer needs besides the program.
struct StreamCtx {
    id: String,
    model: String,
    prompt: String,
    command: String,
    log: Option<PathBuf>,
    limit: usize,
    too_long: UpstreamError,
    /// To the first output, between outputs, and from the end of stdout to
    /// the program's exit.
    idle: Duration,
    started: Instant,
}

impl StreamCtx {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        response::to_bytes(&response::chunk(
            Head::now(&self.id, &self.model),
            delta,
            finish,
        ))
    }
}

/// A streamed program's state between chunks. Dropping it (the client went
/// away) kills the program.
struct StreamState {
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<StderrTail>,
    pending: Vec<u8>,
    total: usize,
    text: String,
    done: bool,
    _workdir: WorkDir,
}

/// Streams stdout as chat chunks as it arrives.
fn stream_output(mut running: Running, workdir: WorkDir, ctx: StreamCtx) -> PayloadStream {
    let state = StreamState {
        stdout: running.child.stdout.take(),
        child: running.child,
        stderr: Some(running.stderr),
        pending: Vec::new(),
        total: 0,
        text: String::new(),
        done: false,
        _workdir: workdir,
    };
    let ctx = Arc::new(ctx);
    Box::pin(stream::unfold(state, move |mut st| {
        let ctx = ctx.clone();
        async move {
            if st.done {
                return None;
            }
            let item = next_chunk(&mut st, &ctx).await;
            Some((item, st))
        }
    }))
}

/// The next chunk of a streamed answer; sets `done` on the last one.
async fn next_chunk(st: &mut StreamState, ctx: &StreamCtx) -> Result<Bytes, UpstreamError> {
    let Some(stdout) = st.stdout.as_mut() else {
        st.done = true;
        return Err(UpstreamError::Protocol("no stdout".into()));
    };
    let mut buf = [0u8; 8192];
    let n = match tokio::time::timeout(ctx.idle, read_some(stdout, &mut buf)).await {
        Err(_) => {
            st.done = true;
            return Err(UpstreamError::Timeout(ctx.idle));
        }
        Ok(Err(e)) => {
            st.done = true;
            return Err(UpstreamError::StreamBroken(e.to_string()));
        }
        Ok(Ok(n)) => n,
    };
    if n == 0 {
        st.done = true;
        return finish(st, ctx).await;
    }
    st.total += n;
    if st.total > ctx.limit {
        st.done = true;
        let _ = st.child.start_kill();
        return Err(ctx.too_long.clone());
    }
    st.pending.extend_from_slice(&buf[..n]);
    let text = take_utf8(&mut st.pending);
    st.text.push_str(&text);
    Ok(ctx.chunk(json!({"content": text}), None))
}

/// The end of a stream once stdout closed: the program's exit (awaited for
/// at most the idle timeout, so a program that closes stdout and keeps
/// running cannot hold the stream open), then the io log.
async fn finish(st: &mut StreamState, ctx: &StreamCtx) -> Result<Bytes, UpstreamError> {
    let outcome = match tokio::time::timeout(ctx.idle, st.child.wait()).await {
        Err(_) => {
            let _ = st.child.start_kill();
            Err(UpstreamError::Timeout(ctx.idle))
        }
        Ok(Ok(s)) if s.success() => Ok(ctx.chunk(json!({}), Some("stop"))),
        Ok(Ok(s)) => {
            let stderr = st.stderr.take().unwrap_or_else(StderrTail::empty);
            Err(process::failed(&ctx.command, s, stderr).await)
        }
        Ok(Err(e)) => Err(UpstreamError::StreamBroken(e.to_string())),
    };
    if let Some(path) = &ctx.log {
        let result = outcome.as_ref().map(|_| st.text.as_str());
        write_log(path, &ctx.model, &ctx.prompt, result, ctx.started).await;
    }
    outcome
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
    crate::fsutil::append_json_line(path, &line, "exec io log").await;
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
    fn split_utf8_sequences_wait_for_their_rest() {
        let mut pending = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut pending), "");
        pending.extend_from_slice(&"é".as_bytes()[1..]);
        assert_eq!(take_utf8(&mut pending), "é");
        assert!(pending.is_empty());
    }

    #[test]
    fn stdin_mode_drops_prompt_from_the_default_args_and_refuses_it_in_given_ones() {
        assert_eq!(
            arg_templates(None, PromptVia::Stdin).unwrap(),
            ["-p", "--model", "{model}"]
        );
        let given = serde_yaml::from_str("[\"{prompt}\"]").unwrap();
        assert!(arg_templates(Some(&given), PromptVia::Stdin).is_err());
        assert!(arg_templates(Some(&given), PromptVia::Arg).is_ok());
        let bad = serde_yaml::Value::String("pipe".into());
        assert!(prompt_via(Some(&bad)).is_err());
    }

    #[test]
    fn env_names_and_values_are_checked_at_load() {
        let env = |yaml: &str| env_map(Some(&serde_yaml::from_str(yaml).unwrap()));
        assert_eq!(env("{A: b}").unwrap()["A"], "b");
        assert!(env("{\"A=B\": c}").is_err());
        assert!(env("{\"\": c}").is_err());
        assert!(env("{A: 1}").is_err());
    }
}
