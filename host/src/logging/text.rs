//! Plain-text log lines without colours, in the layout of tracing-subscriber's
//! default format (`timestamp LEVEL span{fields}: target: message key=value`,
//! strings quoted), built in one `String` with a field visitor that writes
//! each field directly. The stock formatter passes every field name and `=`
//! through an ANSI styling wrapper even with colours off; for the access
//! line, one per request, that was a tenth of a plain request's CPU. On a
//! terminal the stock, coloured formatter is kept.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format pretty` when stderr is not a terminal.
pub struct TextLines;

impl<S> FormatEvent<S, DefaultFields> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, DefaultFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records of the `log` crate carry their own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = String::with_capacity(384);
        line.push_str(super::json::Timestamp::now().as_str());
        write!(line, " {} ", level_name(meta.level()))?;
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = current {
            for span in span.scope().from_root() {
                line.push_str(span.name());
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<DefaultFields>>()
                    && !fields.is_empty()
                {
                    line.push('{');
                    line.push_str(fields);
                    line.push('}');
                }
                line.push(':');
            }
            line.push(' ');
        }
        line.push_str(meta.target());
        line.push_str(": ");
        let mut fields = Fields {
            line: &mut line,
            first: true,
        };
        event.record(&mut fields);
        line.push('\n');
        writer.write_str(&line)
    }
}

/// The level as the default format writes it, right-aligned in five columns.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes an event's fields as the default format does: the message as
/// text, the others as `name=value` with `Debug` values (strings quoted),
/// separated by spaces.
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Fields<'_> {
    /// Starts the field `field`; `false` for fields the line leaves out.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        // `log` records' metadata, already in the line's head.
        if name.starts_with("log.") {
            return false;
        }
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            if field.name() == "message" {
                self.line.push_str(value);
            } else {
                push_quoted(self.line, value);
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            let _ = write!(self.line, "{value:?}");
        }
    }
}

/// `value` in quotes, as `Debug` writes it. Ids, routes and model names need
/// no escapes, and for them the per-character escape checks of `Debug` are
/// most of an access line's cost; anything else still goes through `Debug`.
fn push_quoted(line: &mut String, value: &str) {
    let plain = value
        .bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\');
    if plain {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        let _ = write!(line, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::captured::Lines;

    /// The same events, as a subscriber with `format` writes them.
    fn emit(custom: bool) -> String {
        let lines = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .with_writer(lines.clone());
        let events = || {
            tracing::info!(target: "t::access", request_id = "req-1", path = "a \"q\" \\ b", status = 200u16, delta = -4i64, ok = true, ms = 1.5, whole = 2.0, missing = None::<&str>, accented = "café\t~", quote = "it's", "request");
            let span = tracing::info_span!("request", request_id = "req-2", n = 3u8);
            let _outer = span.enter();
            let inner = tracing::debug_span!("attempt");
            let _inner = inner.enter();
            tracing::warn!(error = %"upstream said \"no\"", r#type = "x", "retrying {}", 2);
        };
        if custom {
            tracing::subscriber::with_default(builder.event_format(TextLines).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        lines.text()
    }

    /// A line without its timestamp (the first word).
    fn untimed(line: &str) -> &str {
        line.split_once(' ').map_or(line, |(_, rest)| rest)
    }

    #[test]
    fn lines_match_the_default_format_without_colours() {
        let stock = emit(false);
        let ours = emit(true);
        let stock: Vec<&str> = stock.lines().map(untimed).collect();
        let ours_lines: Vec<&str> = ours.lines().collect();
        assert_eq!(stock.len(), 2, "{stock:?}");
        assert_eq!(
            ours_lines.iter().map(|l| untimed(l)).collect::<Vec<_>>(),
            stock
        );
        let stamp = ours_lines[0].split(' ').next().unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
        assert!(
            stamp.len() == "2026-01-01T00:00:00.000000Z".len(),
            "{stamp}"
        );
    }
}
