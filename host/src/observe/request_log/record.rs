//! What a request log says about one outcome, written straight from the
//! outcome: a borrowed struct serialized once, with the request and response
//! bodies embedded as the raw JSON they are (checked, not re-parsed into a
//! tree). A body that is not JSON is embedded as a string, and one past the
//! size cap is cut and marked truncated.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::ops::{Attempt, Outcome, RequestId};

/// Largest request or response body written into one log (a stream's
/// chunks count together).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A body as it goes into a JSON log.
pub enum Json<'a> {
    /// Valid JSON on one line, as received.
    Raw(&'a RawValue),
    /// Valid JSON whose line breaks were turned into spaces.
    Owned(Box<RawValue>),
    /// Not JSON, or cut: a string.
    Text(Cow<'a, str>),
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Raw(raw) => raw.serialize(s),
            Json::Owned(raw) => raw.serialize(s),
            Json::Text(text) => s.serialize_str(text),
        }
    }
}

impl<'a> Json<'a> {
    /// `bytes` within what is left of `budget` (taken from it); the flag
    /// says it was cut.
    pub fn of(bytes: &'a [u8], budget: &mut usize) -> (Self, bool) {
        if bytes.len() > *budget {
            let cut = bytes.get(..*budget).unwrap_or_default();
            *budget = 0;
            return (Json::Text(String::from_utf8_lossy(cut)), true);
        }
        *budget -= bytes.len();
        let json = match serde_json::from_slice::<&RawValue>(bytes) {
            // Outside strings a line break can only be whitespace: a space
            // keeps a JSON-lines record on one line.
            Ok(raw) if memchr::memchr2(b'\n', b'\r', raw.get().as_bytes()).is_some() => {
                let flat = raw.get().replace(['\n', '\r'], " ");
                match RawValue::from_string(flat) {
                    Ok(owned) => Json::Owned(owned),
                    Err(_) => Json::Text(Cow::Owned(raw.get().to_owned())),
                }
            }
            Ok(raw) => Json::Raw(raw),
            Err(_) => Json::Text(String::from_utf8_lossy(bytes)),
        };
        (json, false)
    }
}

/// The response: the answer, or the stream's kept chunks.
pub enum Response<'a> {
    One(Json<'a>),
    Chunks(Vec<Json<'a>>),
}

impl Serialize for Response<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Response::One(json) => json.serialize(s),
            Response::Chunks(chunks) => chunks.serialize(s),
        }
    }
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
/// `composite_error` are the summary the text format lists as `key: value`.
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
    pub request: Option<Json<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub request_truncated: bool,
    /// A request's sub-calls (records like this one); absent for a sub-call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_calls: Option<&'a [Box<RawValue>]>,
    /// A request's response; absent for a sub-call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Response<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub response_truncated: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
        let (request, request_truncated) = match request.map(|b| Json::of(b, &mut budget)) {
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
    pub fn with_response(mut self, o: &'a Outcome, subs: &'a [Box<RawValue>]) -> Self {
        let mut budget = MAX_BODY_BYTES;
        let mut truncated = false;
        let mut parts = Vec::with_capacity(o.body.len());
        for body in &o.body {
            if budget == 0 {
                truncated = true;
                break;
            }
            let (json, cut) = Json::of(body, &mut budget);
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

    /// The summary as `key: value` lines, unset fields left out (the text
    /// format's `== request ==` section).
    pub fn push_summary(&self, out: &mut String) {
        let mut line = |key: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{key}: {value}");
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

    #[test]
    fn bodies_are_embedded_as_raw_json_on_one_line_or_as_strings() {
        let mut budget = MAX_BODY_BYTES;
        let (json, cut) = Json::of(br#"{"a": [1, 2.50]}"#, &mut budget);
        assert!(!cut);
        assert_eq!(
            serde_json::to_string(&json).unwrap_or_default(),
            r#"{"a": [1, 2.50]}"#
        );
        let (json, _) = Json::of(b"{\n  \"a\": \"x\\ny\"\r\n}\n", &mut budget);
        let text = serde_json::to_string(&json).unwrap_or_default();
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(serde_json::json!({"a": "x\ny"}))
        );
        let (json, _) = Json::of(b"not json", &mut budget);
        assert_eq!(
            serde_json::to_string(&json).unwrap_or_default(),
            "\"not json\""
        );
    }

    #[test]
    fn a_body_past_the_budget_is_cut_and_marked() {
        let mut budget = 4;
        let (json, cut) = Json::of(br#"{"abcdef":1}"#, &mut budget);
        assert!(cut);
        assert_eq!(budget, 0);
        assert_eq!(
            serde_json::to_string(&json).unwrap_or_default(),
            r#""{\"ab""#
        );
    }
}
