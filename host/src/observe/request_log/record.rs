//! What a request log says about one outcome, written straight from the
//! outcome: a borrowed struct written once, with the request and response
//! bodies embedded as the JSON text they are (checked once, never parsed
//! into a tree; a request body the request path already read as JSON is not
//! checked again). A body that is not JSON is embedded as a string, and one
//! past the size cap is cut and marked truncated.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::ops::{Attempt, Outcome, RequestId};

/// Largest request or response body written into one log (a stream's
/// chunks count together).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A body as it goes into a JSON log.
pub enum Json<'a> {
    /// Valid JSON on one line: as received, or with its line breaks turned
    /// into spaces.
    Raw(Cow<'a, str>),
    /// Not JSON, or cut: a string.
    Text(Cow<'a, str>),
}

impl<'a> Json<'a> {
    /// `bytes` within what is left of `budget` (taken from it); the flag
    /// says it was cut. `known_json` says the bytes were already read as
    /// JSON, so only their encoding is checked.
    pub fn of(bytes: &'a [u8], budget: &mut usize, known_json: bool) -> (Self, bool) {
        if bytes.len() > *budget {
            let cut = bytes.get(..*budget).unwrap_or_default();
            *budget = 0;
            return (Json::Text(String::from_utf8_lossy(cut)), true);
        }
        *budget -= bytes.len();
        let text = if known_json {
            std::str::from_utf8(bytes).ok()
        } else {
            serde_json::from_slice::<&RawValue>(bytes)
                .ok()
                .map(RawValue::get)
        };
        let json = match text {
            // Outside strings a line break can only be whitespace: a space
            // keeps a JSON-lines record on one line.
            Some(text) if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() => {
                Json::Raw(Cow::Owned(text.replace(['\n', '\r'], " ")))
            }
            Some(text) => Json::Raw(Cow::Borrowed(text)),
            None => Json::Text(String::from_utf8_lossy(bytes)),
        };
        (json, false)
    }

    /// Appends the body as a JSON value.
    fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Json::Raw(text) => out.extend_from_slice(text.as_bytes()),
            Json::Text(text) => serde_json::to_writer(out, text.as_ref())?,
        }
        Ok(())
    }
}

/// The response: the answer, or the stream's kept chunks.
pub enum Response<'a> {
    One(Json<'a>),
    Chunks(Vec<Json<'a>>),
}

impl Response<'_> {
    /// Appends the response as a JSON value (the chunks as an array).
    fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Response::One(json) => json.write_to(out),
            Response::Chunks(chunks) => write_array(out, chunks, Json::write_to),
        }
    }
}

/// Appends `items` as a JSON array, each written by `write`.
fn write_array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    write: impl Fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out)?;
    }
    out.push(b']');
    Ok(())
}

/// Token counts.
#[derive(Serialize)]
pub struct UsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One upstream call.
#[derive(Serialize)]
pub struct AttemptOut<'a> {
    pub deployment: &'a str,
    pub group: &'a str,
    /// The upstream's HTTP status; `null` when it never answered.
    pub status: Option<u16>,
    pub error_class: Option<&'a str>,
    pub duration_ms: f64,
    pub error: Option<&'a str>,
}

impl AttemptOut<'_> {
    /// Appends the attempt as serde would write it.
    fn write_to(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut o = Fields::open(out);
        o.text("deployment", self.deployment);
        o.text("group", self.group);
        o.value("status", &self.status)?;
        o.opt_text("error_class", self.error_class);
        o.value("duration_ms", &self.duration_ms)?;
        o.opt_text("error", self.error);
        o.out.push(b'}');
        Ok(())
    }
}

/// An object being written: its fields, comma-separated after its `{`.
struct Fields<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Fields<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `"key":`, after a comma unless it is the first. Keys are this
    /// module's identifiers: nothing in them needs escaping.
    fn key(&mut self, key: &str) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> serde_json::Result<()> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value)
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        put_str(self.out, value);
    }

    fn opt_text(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.text(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }
}

/// Appends `s` as a JSON string: copied when nothing in it needs escaping
/// (the usual case), escaped by serde_json otherwise.
fn put_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let mut escaped = serde_json::Serializer::new(&mut *out);
        // Writing to a Vec cannot fail.
        let _ = serde::Serializer::serialize_str(&mut escaped, s);
    }
}

impl<'a> From<&'a Attempt> for AttemptOut<'a> {
    fn from(a: &'a Attempt) -> Self {
        Self {
            deployment: &a.deployment,
            group: &a.group,
            status: a.status,
            error_class: a.error_class,
            duration_ms: ms(a.duration),
            error: a.error.as_deref(),
        }
    }
}

/// One request (or sub-call) as a JSON log record. The fields up to
/// `composite_error` are the summary the text format lists as `key: value`;
/// [`Record::write_json`] writes the fields up to `attempts_omitted` as
/// serde would (the derive is the reference its test compares with), then
/// the bodies after them.
#[derive(Serialize)]
pub struct Record<'a> {
    pub request_id: &'a str,
    pub parent_request_id: Option<&'a str>,
    pub time: String,
    pub route: &'a str,
    pub caller: &'a str,
    pub model: &'a str,
    pub model_group: Option<&'a str>,
    pub deployment: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub stream: bool,
    pub status: u16,
    pub error: Option<&'a str>,
    /// Upstream calls made, counting retries and fallbacks.
    pub attempt_count: u32,
    pub fallback: Option<&'a str>,
    pub cache: &'static str,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub overhead_ms: Option<f64>,
    pub time_to_first_token_ms: Option<f64>,
    pub usage: Option<UsageOut>,
    pub composite_error: Option<&'a str>,
    /// Each upstream call, in order.
    pub attempts: Vec<AttemptOut<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts_omitted: u32,
    /// The request body, credentials redacted.
    #[serde(skip)]
    pub request: Option<Json<'a>>,
    #[serde(skip)]
    pub request_truncated: bool,
    /// A request's sub-calls (records like this one, as JSON); absent for a
    /// sub-call.
    #[serde(skip)]
    pub sub_calls: Option<&'a [Box<str>]>,
    /// A request's response; absent for a sub-call.
    #[serde(skip)]
    pub response: Option<Response<'a>>,
    #[serde(skip)]
    pub response_truncated: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The redacted request body of `o`, if it was kept.
pub fn request_body(o: &Outcome) -> Option<&[u8]> {
    super::redacted_request_body(o).map(|b| &b[..])
}

impl<'a> Record<'a> {
    /// The record of `o`, with `request` the body [`request_body`] gave
    /// (borrowed from the caller so the record can borrow it in turn).
    pub fn new(o: &'a Outcome, request: Option<&'a [u8]>) -> Self {
        let usage = o.usage();
        let (attempts, omitted) = match &o.logged {
            Some(l) => (l.attempts.as_slice(), l.attempts_omitted),
            None => (&[][..], 0),
        };
        let mut budget = MAX_BODY_BYTES;
        let known_json = o.logged.as_ref().is_some_and(|l| l.request_body_is_json);
        let (request, request_truncated) =
            match request.map(|b| Json::of(b, &mut budget, known_json)) {
                Some((json, cut)) => (Some(json), cut),
                None => (None, false),
            };
        Self {
            request_id: o.request_id.as_str(),
            parent_request_id: o.parent_request_id.as_ref().map(RequestId::as_str),
            time: humantime::format_rfc3339_millis(o.started_at.max(UNIX_EPOCH)).to_string(),
            route: &o.route,
            caller: o.caller.label(),
            model: &o.model,
            model_group: o.model_group.as_deref(),
            deployment: o.deployment.as_deref(),
            profile: o.profile.as_deref(),
            stream: o.stream,
            status: o.status,
            error: o.error.as_deref(),
            attempt_count: o.attempts,
            fallback: o.fallback.as_deref(),
            cache: o.cache.label(),
            duration_ms: ms(o.latency),
            upstream_ms: o.upstream_time.map(ms),
            overhead_ms: o.overhead.map(ms),
            time_to_first_token_ms: o.time_to_first_token.map(ms),
            usage: usage.map(|u| UsageOut {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            }),
            composite_error: o.composite.as_ref().and_then(|c| c.error.as_deref()),
            attempts: attempts.iter().map(AttemptOut::from).collect(),
            attempts_omitted: omitted,
            request,
            request_truncated,
            sub_calls: None,
            response: None,
            response_truncated: false,
        }
    }

    /// Adds what only a client request's record holds: its sub-calls and
    /// its response.
    pub fn with_response(mut self, o: &'a Outcome, subs: &'a [Box<str>]) -> Self {
        let mut budget = MAX_BODY_BYTES;
        let mut truncated = false;
        let mut parts = Vec::with_capacity(o.body.len());
        for body in &o.body {
            if budget == 0 {
                truncated = true;
                break;
            }
            let (json, cut) = Json::of(body, &mut budget, o.body_is_json);
            truncated |= cut;
            parts.push(json);
        }
        self.response = Some(match (o.stream, parts.len()) {
            (false, 1) => match parts.pop() {
                Some(one) => Response::One(one),
                None => Response::Chunks(Vec::new()),
            },
            _ => Response::Chunks(parts),
        });
        self.response_truncated = truncated;
        self.sub_calls = Some(subs);
        self
    }

    /// Appends the record as one JSON object: the summary and the attempts,
    /// then the bodies as the JSON text they are.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.write_summary(out)?;
        out.extend_from_slice(b",\"request\":");
        match &self.request {
            Some(request) => request.write_to(out)?,
            None => out.extend_from_slice(b"null"),
        }
        if self.request_truncated {
            out.extend_from_slice(b",\"request_truncated\":true");
        }
        if let Some(subs) = self.sub_calls {
            out.extend_from_slice(b",\"sub_calls\":");
            write_array(out, subs, |sub, out| {
                out.extend_from_slice(sub.as_bytes());
                Ok(())
            })?;
        }
        if let Some(response) = &self.response {
            out.extend_from_slice(b",\"response\":");
            response.write_to(out)?;
        }
        if self.response_truncated {
            out.extend_from_slice(b",\"response_truncated\":true");
        }
        out.push(b'}');
        Ok(())
    }

    /// Appends `{` and the fields serde would write (the same text: a test
    /// compares them), without the closing brace. Written by hand because
    /// serde escapes every key of every record again, byte by byte; here
    /// the keys are literals and a value with nothing to escape is copied.
    fn write_summary(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut o = Fields::open(out);
        o.text("request_id", self.request_id);
        o.opt_text("parent_request_id", self.parent_request_id);
        o.text("time", &self.time);
        o.text("route", self.route);
        o.text("caller", self.caller);
        o.text("model", self.model);
        o.opt_text("model_group", self.model_group);
        o.opt_text("deployment", self.deployment);
        o.opt_text("profile", self.profile);
        o.value("stream", &self.stream)?;
        o.value("status", &self.status)?;
        o.opt_text("error", self.error);
        o.value("attempt_count", &self.attempt_count)?;
        o.opt_text("fallback", self.fallback);
        o.text("cache", self.cache);
        o.value("duration_ms", &self.duration_ms)?;
        o.value("upstream_ms", &self.upstream_ms)?;
        o.value("overhead_ms", &self.overhead_ms)?;
        o.value("time_to_first_token_ms", &self.time_to_first_token_ms)?;
        match &self.usage {
            Some(u) => {
                o.key("usage");
                let mut usage = Fields::open(o.out);
                usage.value("prompt_tokens", &u.prompt_tokens)?;
                usage.value("completion_tokens", &u.completion_tokens)?;
                usage.out.push(b'}');
            }
            None => o.value("usage", &None::<()>)?,
        }
        o.opt_text("composite_error", self.composite_error);
        o.key("attempts");
        write_array(o.out, &self.attempts, AttemptOut::write_to)?;
        if !is_zero(&self.attempts_omitted) {
            o.value("attempts_omitted", &self.attempts_omitted)?;
        }
        Ok(())
    }

    /// The summary as `key: value` lines, unset fields left out (the text
    /// format's `== request ==` section).
    pub fn push_summary(&self, out: &mut String) {
        // A value a client chose (a model name, an error it provoked) is
        // written with its control characters escaped: a line break in it
        // cannot start a line of its own, nor an escape reach a terminal.
        let mut line = |key: &str, value: &dyn std::fmt::Display| {
            let _ = write!(out, "{key}: ");
            for c in value.to_string().chars() {
                match c.is_control() {
                    true => out.extend(c.escape_default()),
                    false => out.push(c),
                }
            }
            out.push('\n');
        };
        line("request_id", &self.request_id);
        if let Some(v) = self.parent_request_id {
            line("parent_request_id", &v);
        }
        line("time", &self.time);
        line("route", &self.route);
        line("caller", &self.caller);
        line("model", &self.model);
        for (key, value) in [
            ("model_group", self.model_group),
            ("deployment", self.deployment),
            ("profile", self.profile),
        ] {
            if let Some(v) = value {
                line(key, &v);
            }
        }
        line("stream", &self.stream);
        line("status", &self.status);
        if let Some(v) = self.error {
            line("error", &v);
        }
        line("attempts", &self.attempt_count);
        if let Some(v) = self.fallback {
            line("fallback", &v);
        }
        line("cache", &self.cache);
        line("duration_ms", &self.duration_ms);
        for (key, value) in [
            ("upstream_ms", self.upstream_ms),
            ("overhead_ms", self.overhead_ms),
            ("time_to_first_token_ms", self.time_to_first_token_ms),
        ] {
            if let Some(v) = value {
                line(key, &v);
            }
        }
        if let Some(u) = &self.usage {
            line(
                "usage",
                &format_args!(
                    "{{\"completion_tokens\":{},\"prompt_tokens\":{}}}",
                    u.completion_tokens, u.prompt_tokens
                ),
            );
        }
        if let Some(v) = self.composite_error {
            line("composite_error", &v);
        }
    }

    /// The attempts as one line each (the text format's `== attempts ==`).
    pub fn push_attempts(&self, out: &mut String) {
        for (i, a) in self.attempts.iter().enumerate() {
            let _ = write!(out, "{}. {} (group {}): ", i + 1, a.deployment, a.group);
            match (a.status, a.error_class) {
                (Some(status), Some(class)) => {
                    let _ = write!(out, "{status} {class}");
                }
                (Some(status), None) => {
                    let _ = write!(out, "{status}");
                }
                (None, Some(class)) => out.push_str(class),
                (None, None) => out.push('-'),
            }
            let _ = write!(out, " in {} ms", a.duration_ms);
            if let Some(error) = a.error {
                let _ = write!(out, ": {}", error.replace(['\n', '\r'], " "));
            }
            out.push('\n');
        }
        if self.attempts_omitted > 0 {
            let _ = writeln!(out, "... {} more not kept", self.attempts_omitted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(json: &Json) -> String {
        let mut out = Vec::new();
        json.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn bodies_are_embedded_as_raw_json_on_one_line_or_as_strings() {
        let mut budget = MAX_BODY_BYTES;
        for known_json in [false, true] {
            let (json, cut) = Json::of(br#"{"a": [1, 2.50]}"#, &mut budget, known_json);
            assert!(!cut);
            assert_eq!(written(&json), r#"{"a": [1, 2.50]}"#);
            let (json, _) = Json::of(b"{\n  \"a\": \"x\\ny\"\r\n}\n", &mut budget, known_json);
            let text = written(&json);
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).ok(),
                Some(serde_json::json!({"a": "x\ny"}))
            );
        }
        let (json, _) = Json::of(b"not json", &mut budget, false);
        assert_eq!(written(&json), "\"not json\"");
    }

    #[test]
    fn a_body_read_as_json_that_is_not_utf8_is_written_as_a_string() {
        let mut budget = MAX_BODY_BYTES;
        let (json, _) = Json::of(b"{\"a\":\"\xff\"}", &mut budget, true);
        let text: String = serde_json::from_str(&written(&json)).unwrap();
        assert_eq!(text, "{\"a\":\"\u{fffd}\"}");
    }

    fn record<'a>(text: &'a str, set: bool, attempts_omitted: u32) -> Record<'a> {
        let some = |s: &'a str| set.then_some(s);
        let attempt = AttemptOut {
            deployment: text,
            group: "g",
            status: set.then_some(502),
            error_class: some("upstream"),
            duration_ms: 1.25,
            error: some(text),
        };
        Record {
            request_id: "req-1",
            parent_request_id: some(text),
            time: "2026-12-01T00:00:00.000Z".into(),
            route: "/v1/chat/completions",
            caller: text,
            model: text,
            model_group: some("group"),
            deployment: some("dep"),
            profile: some("council"),
            stream: set,
            status: 200,
            error: some(text),
            attempt_count: 2,
            fallback: some("other"),
            cache: "miss",
            duration_ms: 12.5,
            upstream_ms: set.then_some(10.0),
            overhead_ms: set.then_some(0.125),
            time_to_first_token_ms: set.then_some(3.0),
            usage: set.then_some(UsageOut {
                prompt_tokens: 7,
                completion_tokens: 9,
            }),
            composite_error: some(text),
            attempts: if set { vec![attempt] } else { Vec::new() },
            attempts_omitted,
            request: None,
            request_truncated: false,
            sub_calls: None,
            response: None,
            response_truncated: false,
        }
    }

    #[test]
    fn the_summary_is_written_as_serde_writes_it() {
        let texts = ["plain", "quote \" back\\slash\nline\u{1}", "ünïcode ✓"];
        for text in texts {
            for set in [true, false] {
                for omitted in [0, 3] {
                    let r = record(text, set, omitted);
                    let mut ours = Vec::new();
                    r.write_summary(&mut ours).unwrap();
                    ours.push(b'}');
                    let serde = serde_json::to_vec(&r).unwrap();
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        String::from_utf8(serde).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn a_body_past_the_budget_is_cut_and_marked() {
        let mut budget = 4;
        let (json, cut) = Json::of(br#"{"abcdef":1}"#, &mut budget, true);
        assert!(cut);
        assert_eq!(budget, 0);
        assert_eq!(written(&json), r#""{\"ab""#);
    }
}
