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
//! Each log holds the request body (credentials redacted, see [`redact`])
//! and each upstream attempt besides the outcome's summary and the response.
//! Outcomes carry no request headers, so no `Authorization` header can reach
//! a log; attempt errors are the router's messages without credentials.

mod record;

pub use record::MAX_BODY_BYTES;
mod redact;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::logging::Throttle;
use crate::ops::{Outcome, OutcomeKind, RequestId};
use record::Record;

/// `body` with every credential field's value replaced, as request logs
/// write bodies (the audit log writes its values the same way).
pub(crate) fn without_credentials(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    redact::body(body)
}

/// The request body `o` kept, with every credential field redacted, as the
/// request log writes it (the dashboard shows bodies the same way). Redacted
/// once per outcome, whichever sink asks first.
pub fn redacted_request_body(o: &Outcome) -> Option<&bytes::Bytes> {
    let logged = o.logged.as_ref()?;
    let body = logged.request_body.as_ref()?;
    Some(
        logged
            .redacted_request_body
            .get_or_init(|| match redact::body(body) {
                std::borrow::Cow::Borrowed(_) => body.clone(),
                std::borrow::Cow::Owned(redacted) => bytes::Bytes::from(redacted),
            }),
    )
}

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
/// Bytes of sub-call records held for running composite requests; past
/// it, sub-calls are held without their request bodies.
const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;
/// Buffered JSON-lines bytes before a write to the file.
const JSONL_BUFFER_BYTES: usize = 256 * 1024;
/// The active JSON-lines file.
const JSONL_ACTIVE: &str = "requests.jsonl";
/// Shortest time between two warnings that the log cannot be written.
const WRITE_WARNING_EVERY: Duration = Duration::from_secs(60);

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
        // Any other value is refused when the config is loaded.
        let format = match general.request_log_format.as_deref() {
            Some("jsonl") => Format::Jsonl,
            _ => Format::Text,
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
    /// Sub-calls of composite requests still running, by parent id, as
    /// their JSON records.
    open: HashMap<RequestId, Vec<Box<str>>>,
    /// Bytes of the records in `open`.
    held: usize,
    /// `requests.jsonl`, open for appending between records (closed when
    /// rotated, dropped after a failed write and opened again). Records are
    /// buffered and reach the file at [`Writer::flush`], once per batch the
    /// dispatcher drains, instead of one write call each.
    active: Option<BufWriter<File>>,
    /// One JSON-lines record, reused.
    line: Vec<u8>,
    /// A directory that cannot be written fails every request: said once
    /// a minute.
    write_warnings: Throttle,
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
            held: 0,
            active: None,
            line: Vec::new(),
            write_warnings: Throttle::new(WRITE_WARNING_EVERY),
        })
    }

    /// Says (at most once a minute) that a record could not be written.
    fn cannot_write(&self, e: &std::io::Error) {
        if self.write_warnings.allow() {
            tracing::warn!(
                dir = %self.settings.dir.display(),
                error = %e,
                "cannot write the request log (said at most once a minute)"
            );
        }
    }

    /// Takes one outcome: holds a sub-call for its parent, writes a request.
    pub fn record(&mut self, o: &Outcome) {
        match o.kind {
            OutcomeKind::SubCall => self.hold_sub_call(o),
            OutcomeKind::Request => {
                let subs = self.open.remove(&o.request_id).unwrap_or_default();
                self.held = self.held.saturating_sub(subs.iter().map(|s| s.len()).sum());
                let written = match self.settings.format {
                    Format::Text => self.write_text(o, &subs),
                    Format::Jsonl => self.write_jsonl(o, &subs),
                };
                if let Err(e) = written {
                    self.cannot_write(&e);
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
            self.held = 0;
        }
        if self
            .open
            .get(parent)
            .is_some_and(|s| s.len() >= MAX_SUB_CALLS)
        {
            return;
        }
        let body = record::request_body(o);
        let mut record = Record::new(o, body);
        if self.held >= MAX_HELD_BYTES && record.request.is_some() {
            record.request = None;
            record.request_truncated = true;
        }
        let mut json = Vec::new();
        if record.write_json(&mut json).is_err() {
            return;
        }
        let Ok(json) = String::from_utf8(json).map(String::into_boxed_str) else {
            return;
        };
        self.held += json.len();
        self.open.entry(parent.clone()).or_default().push(json);
    }

    fn write_text(&mut self, o: &Outcome, subs: &[Box<str>]) -> std::io::Result<()> {
        let path = free_path(&self.settings.dir, &file_name(o));
        let text = render_text(o, subs);
        // Room first: the directory never holds more than its bounds.
        self.make_room(1, text.len() as u64);
        // Whole or not at all: a reader watching the directory never opens a
        // file that is still being written.
        crate::fsutil::write_atomic(&path, text.as_bytes(), false, false)?;
        self.add_file(path, text.len() as u64);
        Ok(())
    }

    fn write_jsonl(&mut self, o: &Outcome, subs: &[Box<str>]) -> std::io::Result<()> {
        let body = record::request_body(o);
        let record = Record::new(o, body).with_response(o, subs);
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let written = record
            .write_json(&mut line)
            .map_err(std::io::Error::other)
            .and_then(|()| {
                line.push(b'\n');
                self.append(&line)
            });
        // The buffer is kept for the next record, unless one was huge.
        if line.capacity() <= 4 * MAX_BODY_BYTES {
            self.line = line;
        }
        written
    }

    /// Appends one record to `requests.jsonl`, rotating it first when the
    /// record would take it past its size.
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let active = self.settings.dir.join(JSONL_ACTIVE);
        let rotate_at = JSONL_ROTATE_BYTES.min(self.settings.max_bytes / 2).max(1);
        let current = self
            .files
            .back()
            .filter(|f| f.0 == active)
            .map_or(0, |f| f.1);
        if current > 0 && current + line.len() as u64 > rotate_at {
            self.flush();
            self.active = None;
            self.rotate(&active)?;
        }
        let file = match &mut self.active {
            Some(file) => file,
            None => self.active.insert(BufWriter::with_capacity(
                JSONL_BUFFER_BYTES,
                OpenOptions::new().create(true).append(true).open(&active)?,
            )),
        };
        if let Err(e) = file.write_all(line) {
            // Opened again for the next record: the file may have gone.
            self.active = None;
            return Err(e);
        }
        self.add_file(active, line.len() as u64);
        Ok(())
    }

    /// Writes the buffered JSON-lines records out.
    pub fn flush(&mut self) {
        if let Some(file) = &mut self.active
            && let Err(e) = file.flush()
        {
            self.cannot_write(&e);
            // Opened again for the next record: the file may have gone.
            self.active = None;
        }
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

/// `name` in `dir`, or `name` with `-2`, `-3`, ... before `.log` when a
/// log of that name is there already: two requests with one id (a client's
/// `x-request-id`) in one second each keep their own file.
fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let stem = name.strip_suffix(".log").unwrap_or(name);
    (2u32..)
        .map(|n| dir.join(format!("{stem}-{n}.log")))
        .find(|path| !path.exists())
        .unwrap_or(first)
}

/// The text format: the summary, the request body, the attempts, the
/// composite trace, the sub-calls and the response, each in its section.
fn render_text(o: &Outcome, subs: &[Box<str>]) -> String {
    let body = record::request_body(o);
    // The text format writes the body itself: the record only for its fields.
    let summary = Record::new(o, None);
    let mut out = String::with_capacity(2048 + body.as_ref().map_or(0, |b| b.len()));
    out.push_str("== request ==\n");
    summary.push_summary(&mut out);
    if let Some(body) = &body {
        out.push_str("\n== request body ==\n");
        let mut budget = MAX_BODY_BYTES;
        push_body(&mut out, body, &mut budget);
    }
    if o.logged.is_some() {
        out.push_str("\n== attempts ==\n");
        summary.push_attempts(&mut out);
    }
    if let Some(run) = &o.composite {
        out.push_str("\n== composite trace ==\n");
        out.push_str(&serde_json::to_string_pretty(&run.trace).unwrap_or_default());
        out.push('\n');
    }
    if !subs.is_empty() {
        out.push_str(&format!("\n== sub-calls ({}) ==\n", subs.len()));
        for sub in subs {
            out.push_str(sub);
            out.push('\n');
        }
    }
    out.push_str(if o.stream {
        "\n== response (stream chunks kept) ==\n"
    } else {
        "\n== response ==\n"
    });
    let mut budget = MAX_BODY_BYTES;
    for body in &o.body {
        if !push_body(&mut out, body, &mut budget) {
            break;
        }
    }
    out
}

/// Writes `body` within `budget` (taken from it); past it, what fits and a
/// `[truncated]` line. `false` once the budget is spent. JSON is written as
/// it came; anything else (or a cut body) as one JSON string, so that a
/// client's text can neither pass for one of the log's own sections nor
/// send control characters to a terminal.
fn push_body(out: &mut String, body: &[u8], budget: &mut usize) -> bool {
    let cut = body.len() > *budget;
    let kept = body.get(..body.len().min(*budget)).unwrap_or_default();
    *budget -= kept.len();
    let text = String::from_utf8_lossy(kept);
    if !cut && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
        out.push_str(&text);
    } else {
        out.push_str(&serde_json::to_string(&*text).unwrap_or_default());
    }
    out.push('\n');
    if cut {
        out.push_str("[truncated]\n");
    }
    !cut
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::ops::{Attempt, CacheStatus, Caller, Logged};

    #[test]
    fn a_log_name_taken_already_gets_a_number() {
        let dir = std::env::temp_dir().join(format!("conclave-free-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = "20240301_010203-same-id_m.log";
        assert_eq!(free_path(&dir, name), dir.join(name));
        std::fs::write(dir.join(name), "first").unwrap();
        assert_eq!(
            free_path(&dir, name),
            dir.join("20240301_010203-same-id_m-2.log")
        );
        std::fs::write(dir.join("20240301_010203-same-id_m-2.log"), "second").unwrap();
        assert_eq!(
            free_path(&dir, name),
            dir.join("20240301_010203-same-id_m-3.log")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn outcome(id: &str, kind: OutcomeKind, parent: Option<&str>) -> Outcome {
        Outcome {
            kind,
            request_id: RequestId::from_client(Some(id)),
            parent_request_id: parent.map(|p| RequestId::from_client(Some(p))),
            caller: Caller::Master,
            route: Arc::from("/v1/chat/completions"),
            model: "m".into(),
            model_group: Some("m".into()),
            deployment: Some("m.1".into()),
            profile: None,
            stream: false,
            status: 200,
            error: None,
            usage: None,
            response_model: None,
            response_id: None,
            answer_read: false,
            cost: None,
            budget_model: None,
            started_at: SystemTime::now(),
            latency: Duration::from_millis(12),
            time_to_first_token: None,
            attempts: 2,
            upstream_time: Some(Duration::from_millis(10)),
            overhead: None,
            fallback: None,
            tags: None,
            end_user: None,
            cache: CacheStatus::None,
            body: vec![Bytes::from_static(
                b"{\n \"choices\": [], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 4}}",
            )],
            body_is_json: true,
            composite: None,
            trace: None,
            logged: Some(Box::new(Logged {
                request_body: Some(Bytes::from_static(
                    br#"{"model":"m","api_key":"sk-client-secret","messages":[]}"#,
                )),
                request_body_is_json: true,
                redacted_request_body: Default::default(),
                attempts: vec![
                    Attempt {
                        deployment: "m.0".into(),
                        group: "m".into(),
                        status: Some(500),
                        error_class: Some("internal_server"),
                        duration: Duration::from_millis(2),
                        error: Some("the upstream answered 500: down".into()),
                    },
                    Attempt {
                        deployment: "m.1".into(),
                        group: "m".into(),
                        status: Some(200),
                        error_class: None,
                        duration: Duration::from_millis(8),
                        error: None,
                    },
                ],
                attempts_omitted: 0,
            })),
        }
    }

    fn writer(dir: &Path, format: Format, max_bytes: u64) -> Writer {
        let _ = fs::remove_dir_all(dir);
        let settings = Settings {
            dir: dir.to_owned(),
            format,
            max_files: 100,
            max_bytes,
        };
        Writer::open(settings).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn lines(dir: &Path) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        names.sort();
        names
            .iter()
            .flat_map(|p| {
                fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| unreachable!("{e}: {l}")))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_jsonl_record_embeds_bodies_and_attempts_on_one_line() {
        let dir = std::env::temp_dir().join(format!("conclave-rl-jsonl-{}", std::process::id()));
        let mut w = writer(&dir, Format::Jsonl, 64 * 1024 * 1024);
        let mut sub = outcome("sub-1", OutcomeKind::SubCall, Some("req-1"));
        sub.body.clear();
        w.record(&sub);
        w.record(&outcome("req-1", OutcomeKind::Request, None));
        w.record(&outcome("req-2", OutcomeKind::Request, None));
        assert!(lines(&dir).is_empty(), "written before the batch ends");
        w.flush();
        let lines = lines(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0];
        assert_eq!(first["request_id"], "req-1");
        assert_eq!(first["attempt_count"], 2);
        assert_eq!(first["usage"]["completion_tokens"], 4);
        assert_eq!(first["request"]["api_key"], "[redacted]");
        assert_eq!(first["request"]["model"], "m");
        assert_eq!(first["response"]["usage"]["prompt_tokens"], 3);
        let attempts = first["attempts"].as_array().cloned().unwrap_or_default();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0]["status"], 500);
        assert_eq!(attempts[0]["error_class"], "internal_server");
        assert_eq!(attempts[0]["error"], "the upstream answered 500: down");
        assert_eq!(attempts[1]["deployment"], "m.1");
        assert_eq!(attempts[1]["duration_ms"], 8.0);
        let subs = first["sub_calls"].as_array().cloned().unwrap_or_default();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0]["parent_request_id"], "req-1");
        assert_eq!(subs[0]["request"]["api_key"], "[redacted]");
        assert_eq!(subs[0]["attempts"][0]["status"], 500);
        assert!(subs[0].get("response").is_none(), "{:?}", subs[0]);
        assert_eq!(lines[1]["sub_calls"], serde_json::json!([]));
        assert!(
            !lines
                .iter()
                .any(|l| l.to_string().contains("sk-client-secret"))
        );
    }

    #[test]
    fn jsonl_keeps_writing_across_rotations() {
        let dir = std::env::temp_dir().join(format!("conclave-rl-rotate-{}", std::process::id()));
        // Rotates at 1 KiB: about every other record.
        let mut w = writer(&dir, Format::Jsonl, 2048);
        for i in 0..6 {
            w.record(&outcome(&format!("req-{i}"), OutcomeKind::Request, None));
        }
        w.flush();
        let kept = lines(&dir);
        let files = fs::read_dir(&dir).map(Iterator::count).unwrap_or(0);
        let _ = fs::remove_dir_all(&dir);
        assert!(files >= 2, "{files} files");
        assert!(kept.iter().any(|l| l["request_id"] == "req-5"), "{kept:?}");
    }

    #[test]
    fn text_logs_show_the_request_body_and_each_attempt() {
        let mut o = outcome("req-t", OutcomeKind::Request, None);
        o.error = Some("upstream_error".into());
        let text = render_text(&o, &[]);
        assert!(text.contains("attempts: 2\n"), "{text}");
        assert!(
            text.contains("== request body ==\n{\"model\":\"m\",\"api_key\":\"[redacted]\""),
            "{text}"
        );
        assert!(text.contains("== attempts ==\n1. m.0 (group m): 500 internal_server in 2 ms: the upstream answered 500: down\n2. m.1 (group m): 200 in 8 ms\n"), "{text}");
        assert!(!text.contains("sk-client-secret"), "{text}");
    }

    #[test]
    fn a_body_that_is_not_json_cannot_pass_for_a_section() {
        let mut out = String::new();
        let mut budget = MAX_BODY_BYTES;
        let forged = b"hi\n== response ==\n{\"fake\":1}\n\x1b[31mred";
        assert!(push_body(&mut out, forged, &mut budget));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        let mut json = String::new();
        push_body(&mut json, b"{\n  \"model\": \"m\"\n}", &mut budget);
        assert_eq!(
            json, "{\n  \"model\": \"m\"\n}\n",
            "JSON is written as it came"
        );
        let mut cut = String::new();
        let mut small = 4;
        assert!(!push_body(&mut cut, b"abcdefgh", &mut small));
        assert_eq!(cut, "\"abcd\"\n[truncated]\n");
    }

    #[test]
    fn a_model_name_cannot_start_a_line_of_its_own() {
        let mut o = outcome("req-m", OutcomeKind::Request, None);
        o.model = "good\n\n== response ==\n\u{1b}[31m".into();
        let text = render_text(&o, &[]);
        assert!(
            text.contains("model: good\\n\\n== response ==\\n\\u{1b}[31m\n"),
            "{text}"
        );
        assert_eq!(text.matches("== response ==\n").count(), 1, "{text}");
    }

    #[test]
    fn names_are_sanitized_and_stamped() {
        assert_eq!(sanitize("openai/gpt-4o mini"), "openai_gpt-4o_mini");
        assert_eq!(sanitize("../../etc"), ".._.._etc");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize(""), "_");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_200 + 3_723);
        assert_eq!(stamp(t), "20240301_010203");
        assert!(is_log_name("20240301_010203-req-1_m.log"));
        assert!(is_log_name("20240301_010203-req-1_m-2.log"));
        assert!(is_log_name("requests-20240301_010203.jsonl"));
        assert!(!is_log_name("notes.log"));
    }
}
