//! JSON log lines in the shape of tracing-subscriber's flattened JSON format
//! (`timestamp`, `level`, the event's fields, `target`, and `span` / `spans`
//! inside spans), serialized into one byte buffer and written once. The
//! stock formatter writes through a `fmt::Write` adaptor that checks UTF-8
//! and copies each token separately, which made the per-request access line
//! one of the gateway's larger CPU costs.

use std::fmt;
use std::time::Duration;

use serde::Serializer as _;
use serde::ser::{SerializeMap, SerializeSeq};
use tracing::{Event, Subscriber};
use tracing_serde::AsSerde;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::millis::Millis;

/// The event formatter of `--log-format json`.
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Vec::with_capacity(512);
        write_line(&mut line, ctx, event).map_err(|_| fmt::Error)?;
        line.push(b'\n');
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

fn write_line<S>(
    out: &mut Vec<u8>,
    ctx: &FmtContext<'_, S, JsonFields>,
    event: &Event<'_>,
) -> Result<(), serde_json::Error>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    let mut serializer = serde_json::Serializer::new(out);
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("timestamp", Timestamp::now().as_str())?;
    map.serialize_entry("level", &meta.level().as_serde())?;
    let mut visitor = tracing_serde::SerdeMapVisitor::new(map);
    event.record(&mut visitor);
    let mut map = visitor.take_serializer()?;
    map.serialize_entry("target", meta.target())?;
    let current = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current());
    if let Some(span) = &current {
        map.serialize_entry("span", &SpanFields(span))?;
        let spans: Vec<_> = span.scope().from_root().collect();
        map.serialize_entry("spans", &SpanList(&spans))?;
    }
    SerializeMap::end(map)
}

/// One info line written without going through `tracing`, in the shape
/// [`JsonLines`] gives an event: for lines written for every request (the
/// access log), where handing each field to `tracing` one by one costs
/// more than writing it. Fields are added in order; unset ones are left
/// out, as `tracing` leaves out a `None`.
pub struct InfoLine {
    out: Vec<u8>,
}

impl InfoLine {
    /// A line with its timestamp, level and `message`.
    pub fn new(message: &str) -> Self {
        let mut line = Self {
            out: Vec::with_capacity(512),
        };
        line.out.extend_from_slice(b"{\"timestamp\":\"");
        line.out
            .extend_from_slice(Timestamp::now().as_str().as_bytes());
        line.out.extend_from_slice(b"\",\"level\":\"INFO\"");
        line.text("message", message)
    }

    /// Starts the field `key` (a name that needs no escaping).
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Adds a string field.
    pub fn text(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        crate::json_text::push_str(&mut self.out, value);
        self
    }

    /// Adds a string field when it is set.
    pub fn maybe_text(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.text(key, value),
            None => self,
        }
    }

    /// Adds a whole number.
    pub fn number(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        crate::json_text::push_u64(&mut self.out, value);
        self
    }

    /// Adds a boolean.
    pub fn flag(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Adds a duration in milliseconds, to the microsecond, when it is set.
    /// It reads as the `f64` of the same value would (see
    /// [`Millis::shortest`]).
    pub fn millis(mut self, key: &str, value: Option<Duration>) -> Self {
        if let Some(value) = value {
            self.key(key);
            self.out
                .extend_from_slice(Millis::shortest(value).as_bytes());
        }
        self
    }

    /// Ends the line with its `target` and writes it as every log line is
    /// written (batched on a thread that batches).
    pub fn write(self, target: &str) {
        let line = self.finish(target);
        let _ = std::io::Write::write_all(&mut super::batched::Stderr, &line);
    }

    /// The whole line, ending with its `target` and a newline.
    fn finish(self, target: &str) -> Vec<u8> {
        let mut line = self.text("target", target);
        line.out.extend_from_slice(b"}\n");
        line.out
    }
}

/// A line's time as every line gives it, in either log format (RFC 3339,
/// UTC, to the microsecond: `2026-12-04T20:38:08.123456Z`), on the stack.
/// The date and time to the second are formatted once a second on each
/// thread; each line adds only its microseconds.
pub(super) struct Timestamp([u8; 27]);

impl Timestamp {
    /// The time now.
    pub(super) fn now() -> Self {
        Self::at(std::time::SystemTime::now())
    }

    fn at(time: std::time::SystemTime) -> Self {
        /// The second last formatted on this thread, and its text up to the
        /// decimal point (`2026-12-04T20:38:08`).
        struct Second {
            unix: u64,
            text: [u8; 19],
        }
        thread_local! {
            static SECOND: std::cell::RefCell<Option<Second>> = const { std::cell::RefCell::new(None) };
        }
        let since_epoch = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let unix = since_epoch.as_secs();
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        SECOND.with_borrow_mut(|second| {
            let second = match second {
                Some(cached) if cached.unix == unix => cached,
                _ => {
                    let whole = std::time::UNIX_EPOCH + Duration::from_secs(unix);
                    let text = humantime::format_rfc3339_seconds(whole).to_string();
                    let mut prefix = [b'0'; 19];
                    if let Some(date_time) = text.as_bytes().get(..19) {
                        prefix.copy_from_slice(date_time);
                    }
                    second.insert(Second { unix, text: prefix })
                }
            };
            out[..19].copy_from_slice(&second.text);
        });
        let mut micros = since_epoch.subsec_micros();
        for digit in out[20..26].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        Self(out)
    }

    /// The text: ASCII digits and separators, so reading it never fails.
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A span as `{"name": ..., <its fields>}`.
struct SpanFields<'a, 'b, S: for<'l> LookupSpan<'l>>(&'b SpanRef<'a, S>);

impl<S: for<'l> LookupSpan<'l>> serde::Serialize for SpanFields<'_, '_, S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut map = serializer.serialize_map(None)?;
        let extensions = self.0.extensions();
        // The span's fields as `JsonFields` recorded them: a JSON object.
        if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
            && let Ok(serde_json::Value::Object(fields)) =
                serde_json::from_str::<serde_json::Value>(fields)
        {
            for (key, value) in &fields {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("name", self.0.metadata().name())?;
        SerializeMap::end(map)
    }
}

/// The spans an event is in, root first.
struct SpanList<'a, 'b, S: for<'l> LookupSpan<'l>>(&'b [SpanRef<'a, S>]);

impl<S: for<'l> LookupSpan<'l>> serde::Serialize for SpanList<'_, '_, S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for span in self.0 {
            seq.serialize_element(&SpanFields(span))?;
        }
        SerializeSeq::end(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::captured::Lines;

    #[test]
    fn lines_have_the_flattened_json_shape_with_spans() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(lines.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "t::access", request_id = "req-1", status = 200u16, ok = true, ms = 1.5, "request \"quoted\"");
            let span = tracing::info_span!("request", request_id = "req-2");
            let _entered = span.enter();
            tracing::warn!(attempt = 2u32, "retrying");
        });
        let text = lines.text();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        let first = &parsed[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "request \"quoted\"");
        assert_eq!(first["request_id"], "req-1");
        assert_eq!(first["status"], 200);
        assert_eq!(first["ok"], true);
        assert_eq!(first["ms"], 1.5);
        assert_eq!(first["target"], "t::access");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(first.get("span").is_none());
        let second = &parsed[1];
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["attempt"], 2);
        assert_eq!(second["span"]["name"], "request");
        assert_eq!(second["span"]["request_id"], "req-2");
        assert_eq!(second["spans"][0]["name"], "request");
    }

    #[test]
    fn an_info_line_has_the_shape_of_a_logged_event() {
        let line = InfoLine::new("request \"quoted\"")
            .text("request_id", "req-1")
            .maybe_text("model_group", None)
            .number("status", 200)
            .flag("ok", true)
            .millis("ms", Some(Duration::from_micros(1500)))
            .millis("ttft_ms", None)
            .finish("t::access");
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let order: Vec<usize> = [
            "timestamp",
            "level",
            "message",
            "request_id",
            "status",
            "ok",
            "ms",
            "target",
        ]
        .iter()
        .map(|key| text.find(&format!("\"{key}\":")).unwrap())
        .collect();
        assert!(order.is_sorted(), "fields out of order: {text}");
        let mut parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let timestamp = parsed.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(timestamp.as_str().unwrap().ends_with('Z'));
        let expected = serde_json::json!({
            "level": "INFO", "message": "request \"quoted\"", "request_id": "req-1",
            "status": 200, "ok": true, "ms": 1.5, "target": "t::access",
        });
        assert_eq!(parsed, expected);
    }

    #[test]
    fn line_times_read_as_the_other_lines_do() {
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_796_416_683);
        for offset_us in [0u64, 1, 999_999, 1_000_000, 1_234_567, 86_400_000_001] {
            let time = start + Duration::from_micros(offset_us);
            let expected = humantime::format_rfc3339_micros(time).to_string();
            assert_eq!(Timestamp::at(time).as_str(), expected);
        }
    }

    #[test]
    fn text_with_quotes_backslashes_and_control_characters_is_escaped() {
        let line = InfoLine::new("m")
            .text("plain", "req-1 é/ü")
            .text("odd", "a\"b\\c\nd\u{1}")
            .finish("t");
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["plain"], "req-1 é/ü");
        assert_eq!(parsed["odd"], "a\"b\\c\nd\u{1}");
    }
}
