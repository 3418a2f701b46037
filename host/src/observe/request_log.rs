//! Per-request log files (`general_settings.request_log_dir`): what a
//! request asked for, where it went, how it ended and what it answered, for
//! reading one request after the fact without a log pipeline.
//!
//! `text` writes one file per request, `YYYYMMDD_HHMMSS-<request id>_<model>.log`;
//! `jsonl` appends one JSON line per request to `requests.jsonl`, rotated to
//! `requests-YYYYMMDD_HHMMSS.jsonl` past [`JSONL_ROTATE_BYTES`]. Either way the
//! directory is bounded by `request_log_max_files` and `request_log_max_mb`,
//! the oldest files deleted first. A composite request's sub-calls are
//! written into its own file (or line).
//!
//! Outcomes carry no request headers and no credentials, so no key or
//! `Authorization` header can reach a log; error messages are codes.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::ops::{Outcome, OutcomeKind, RequestId};

/// Files kept when `request_log_max_files` is unset.
pub const DEFAULT_MAX_FILES: u32 = 10_000;
/// MiB kept when `request_log_max_mb` is unset.
pub const DEFAULT_MAX_MB: f64 = 512.0;
/// Size past which `requests.jsonl` is rotated (or the whole budget, when smaller).
pub const JSONL_ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// Longest model name kept in a file name.
const MAX_NAME_PART: usize = 64;
/// Composite requests whose sub-calls are held until the request ends.
const MAX_OPEN_PARENTS: usize = 10_000;
/// Sub-calls kept per composite request.
const MAX_SUB_CALLS: usize = 256;
/// Largest response body written into one log.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The active JSON-lines file.
const JSONL_ACTIVE: &str = "requests.jsonl";

/// How request logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
}

/// Request log settings, resolved at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub format: Format,
    pub max_files: u32,
    pub max_bytes: u64,
}

impl Settings {
    /// Reads `general_settings` (and `CONCLAVE_REQUEST_LOG_DIR` when the
    /// config names no directory); a relative directory is relative to the
    /// config file. `None` when request logs are off.
    pub fn resolve(
        general: &crate::config::GeneralSettings,
        config_dir: &Path,
        env_dir: Option<String>,
    ) -> Option<Self> {
        let dir = general
            .request_log_dir
            .clone()
            .or(env_dir)
            .filter(|d| !d.trim().is_empty())?;
        let format = match general.request_log_format.as_deref() {
            None | Some("text") => Format::Text,
            Some("jsonl") => Format::Jsonl,
            Some(other) => {
                tracing::warn!(
                    format = other,
                    "general_settings.request_log_format must be text or jsonl; using text"
                );
                Format::Text
            }
        };
        let mb = general
            .request_log_max_mb
            .filter(|mb| mb.is_finite() && *mb > 0.0)
            .unwrap_or(DEFAULT_MAX_MB);
        Some(Self {
            dir: config_dir.join(dir),
            format,
            max_files: general
                .request_log_max_files
                .unwrap_or(DEFAULT_MAX_FILES)
                .max(1),
            max_bytes: (mb * 1024.0 * 1024.0) as u64,
        })
    }
}

/// Writes request logs and keeps the directory within its bounds. Used from
/// the outcome dispatcher thread only.
pub struct Writer {
    settings: Settings,
    /// Files written, oldest first, with their sizes.
    files: VecDeque<(PathBuf, u64)>,
    total: u64,
    /// Sub-calls of composite requests still running, by parent id.
    open: HashMap<RequestId, Vec<Value>>,
}

impl Writer {
    /// A writer over `settings.dir`, created if missing, counting the log
    /// files already there against the bounds.
    pub fn open(settings: Settings) -> std::io::Result<Self> {
        fs::create_dir_all(&settings.dir)?;
        let mut files: Vec<(PathBuf, u64, SystemTime)> = fs::read_dir(&settings.dir)?
            .filter_map(Result::ok)
            .filter(|e| is_log_name(&e.file_name().to_string_lossy()))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                meta.is_file().then(|| (e.path(), meta.len(), modified))
            })
            .collect();
        files.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        // The active JSON-lines file is always the newest.
        files.sort_by_key(|f| f.0.file_name().is_some_and(|n| n == JSONL_ACTIVE));
        let total = files.iter().map(|f| f.1).sum();
        Ok(Self {
            settings,
            files: files.into_iter().map(|(p, n, _)| (p, n)).collect(),
            total,
            open: HashMap::new(),
        })
    }

    /// Takes one outcome: holds a sub-call for its parent, writes a request.
    pub fn record(&mut self, o: &Outcome) {
        match o.kind {
            OutcomeKind::SubCall => self.hold_sub_call(o),
            OutcomeKind::Request => {
                let subs = self.open.remove(&o.request_id).unwrap_or_default();
                let written = match self.settings.format {
                    Format::Text => self.write_text(o, &subs),
                    Format::Jsonl => self.write_jsonl(o, subs),
                };
                if let Err(e) = written {
                    tracing::warn!(
                        dir = %self.settings.dir.display(),
                        error = %e,
                        "cannot write the request log"
                    );
                }
                self.make_room(0, 0);
            }
        }
    }

    fn hold_sub_call(&mut self, o: &Outcome) {
        let Some(parent) = &o.parent_request_id else {
            return;
        };
        if self.open.len() >= MAX_OPEN_PARENTS && !self.open.contains_key(parent) {
            self.open.clear();
        }
        let subs = self.open.entry(parent.clone()).or_default();
        if subs.len() < MAX_SUB_CALLS {
            subs.push(summary(o));
        }
    }

    fn write_text(&mut self, o: &Outcome, subs: &[Value]) -> std::io::Result<()> {
        let path = self.settings.dir.join(file_name(o));
        let text = render_text(o, subs);
        // Room first: the directory never holds more than its bounds.
        self.make_room(1, text.len() as u64);
        fs::write(&path, text.as_bytes())?;
        self.add_file(path, text.len() as u64);
        Ok(())
    }

    fn write_jsonl(&mut self, o: &Outcome, subs: Vec<Value>) -> std::io::Result<()> {
        let mut record = summary(o);
        record["sub_calls"] = Value::Array(subs);
        record["response"] = response_json(o);
        let mut line = record.to_string();
        line.push('\n');
        let active = self.settings.dir.join(JSONL_ACTIVE);
        let rotate_at = JSONL_ROTATE_BYTES.min(self.settings.max_bytes / 2).max(1);
        let current = self
            .files
            .back()
            .filter(|f| f.0 == active)
            .map_or(0, |f| f.1);
        if current > 0 && current + line.len() as u64 > rotate_at {
            self.rotate(&active)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active)?
            .write_all(line.as_bytes())?;
        self.add_file(active, line.len() as u64);
        Ok(())
    }

    /// Renames the active JSON-lines file after the time it was closed.
    fn rotate(&mut self, active: &Path) -> std::io::Result<()> {
        let stamp = stamp(SystemTime::now());
        let mut target = self.settings.dir.join(format!("requests-{stamp}.jsonl"));
        let mut n = 1;
        while target.exists() {
            target = self
                .settings
                .dir
                .join(format!("requests-{stamp}-{n}.jsonl"));
            n += 1;
        }
        fs::rename(active, &target)?;
        if let Some(last) = self.files.back_mut()
            && last.0 == active
        {
            last.0 = target;
        }
        Ok(())
    }

    /// Counts `bytes` more written to `path` (a new file, or the active
    /// JSON-lines file growing).
    fn add_file(&mut self, path: PathBuf, bytes: u64) {
        self.total += bytes;
        match self.files.back_mut() {
            Some(last) if last.0 == path => last.1 += bytes,
            _ => self.files.push_back((path, bytes)),
        }
    }

    /// Deletes the oldest files until both bounds hold with `files` more
    /// files of `bytes` more bytes (the newest file is always kept).
    fn make_room(&mut self, files: usize, bytes: u64) {
        let keep = 1usize.saturating_sub(files);
        while self.files.len() > keep
            && (self.files.len() + files > self.settings.max_files as usize
                || self.total + bytes > self.settings.max_bytes)
        {
            let Some((path, size)) = self.files.pop_front() else {
                break;
            };
            self.total = self.total.saturating_sub(size);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old request log");
            }
        }
    }
}

/// Whether a file in the directory is one of ours (and so counted and deleted).
fn is_log_name(name: &str) -> bool {
    let stamped = name.len() > 16
        && name.as_bytes()[..8].iter().all(u8::is_ascii_digit)
        && name.as_bytes()[8] == b'_';
    (stamped && name.ends_with(".log"))
        || (name.starts_with("requests") && name.ends_with(".jsonl"))
}

/// `YYYYMMDD_HHMMSS` in UTC.
fn stamp(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t.max(UNIX_EPOCH)).to_string();
    // 2026-11-30T01:17:00Z -> 20261130_011700
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}_{time}")
}

/// Keeps letters, digits, `.`, `-` and `_`; anything else (a `/` of a
/// provider prefix, spaces, ...) becomes `_`. Never empty, never `..`.
pub fn sanitize(part: &str) -> String {
    let mut out: String = part
        .chars()
        .take(MAX_NAME_PART)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = "_".to_owned();
    }
    out
}

fn file_name(o: &Outcome) -> String {
    format!(
        "{}-{}_{}.log",
        stamp(o.started_at),
        sanitize(o.request_id.as_str()),
        sanitize(&o.model)
    )
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// What a log says about one outcome besides the response body.
fn summary(o: &Outcome) -> Value {
    let usage = o.usage();
    json!({
        "request_id": o.request_id.as_str(),
        "parent_request_id": o.parent_request_id.as_ref().map(RequestId::as_str),
        "time": humantime::format_rfc3339_millis(o.started_at.max(UNIX_EPOCH)).to_string(),
        "route": &*o.route,
        "caller": o.caller.label(),
        "model": o.model,
        "model_group": o.model_group,
        "deployment": o.deployment,
        "profile": o.profile.as_deref(),
        "stream": o.stream,
        "status": o.status,
        "error": o.error,
        "attempts": o.attempts,
        "fallback": o.fallback,
        "cache": o.cache.label(),
        "duration_ms": ms(o.latency),
        "upstream_ms": o.upstream_time.map(ms),
        "overhead_ms": o.overhead.map(ms),
        "time_to_first_token_ms": o.time_to_first_token.map(ms),
        "usage": usage.map(|u| json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
        })),
        "composite_error": o.composite.as_ref().and_then(|c| c.error.clone()),
    })
}

/// The response as JSON: the answer, or the stream's kept chunks.
fn response_json(o: &Outcome) -> Value {
    let parsed: Vec<Value> = o
        .body
        .iter()
        .map(|b| {
            serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
        })
        .collect();
    match (o.stream, parsed.len()) {
        (false, 1) => parsed.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Array(parsed),
    }
}

fn render_text(o: &Outcome, subs: &[Value]) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("== request ==\n");
    push_fields(&mut out, &summary(o));
    if let Some(run) = &o.composite {
        out.push_str("\n== composite trace ==\n");
        out.push_str(&serde_json::to_string_pretty(&run.trace).unwrap_or_default());
        out.push('\n');
    }
    if !subs.is_empty() {
        out.push_str(&format!("\n== sub-calls ({}) ==\n", subs.len()));
        for sub in subs {
            out.push_str(&sub.to_string());
            out.push('\n');
        }
    }
    out.push_str(if o.stream {
        "\n== response (stream chunks kept) ==\n"
    } else {
        "\n== response ==\n"
    });
    let mut written = 0;
    for body in &o.body {
        if written >= MAX_BODY_BYTES {
            out.push_str("[truncated]\n");
            break;
        }
        let text = String::from_utf8_lossy(body);
        out.push_str(&text);
        out.push('\n');
        written += body.len();
    }
    out
}

/// `key: value` lines for the set fields of `record`.
fn push_fields(out: &mut String, record: &Value) {
    let Some(map) = record.as_object() else {
        return;
    };
    for (key, value) in map {
        match value {
            Value::Null => {}
            Value::String(s) => out.push_str(&format!("{key}: {s}\n")),
            other => out.push_str(&format!("{key}: {other}\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_and_stamped() {
        assert_eq!(sanitize("openai/gpt-4o mini"), "openai_gpt-4o_mini");
        assert_eq!(sanitize("../../etc"), ".._.._etc");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize(""), "_");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_200 + 3_723);
        assert_eq!(stamp(t), "20240301_010203");
        assert!(is_log_name("20240301_010203-req-1_m.log"));
        assert!(is_log_name("requests-20240301_010203.jsonl"));
        assert!(!is_log_name("notes.log"));
    }
}
