//! JSON log lines in the shape of tracing-subscriber's flattened JSON format
//! (`timestamp`, `level`, the event's fields, `target`, and `span` / `spans`
//! inside spans), serialized into one byte buffer and written once. The
//! stock formatter writes through a `fmt::Write` adaptor that checks UTF-8
//! and copies each token separately, which made the per-request access line
//! one of the gateway's larger CPU costs.

use std::fmt;

use serde::Serializer as _;
use serde::ser::{SerializeMap, SerializeSeq};
use tracing::{Event, Subscriber};
use tracing_serde::AsSerde;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

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
    let timestamp = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let mut serializer = serde_json::Serializer::new(out);
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("timestamp", &format_args!("{timestamp}"))?;
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
}
