//! Plain-text log lines in the layout of tracing-subscriber's default format
//! (`timestamp LEVEL span{fields}: target: message key=value`, strings
//! quoted), with control characters escaped in every value and message, so
//! an event is always one physical line and no escape sequence from an
//! upstream message reaches a terminal.
//!
//! [`TextFields`] formats the fields of both `--log-format pretty` variants
//! (the stock, coloured event formatter on a terminal, [`TextLines`]
//! elsewhere). [`TextLines`] builds the whole line in one `String`: the
//! stock formatter passes every field name and `=` through an ANSI styling
//! wrapper even with colours off; for the access line, one per request,
//! that was a tenth of a plain request's CPU.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format pretty` when stderr is not a terminal.
pub struct TextLines;

impl<S> FormatEvent<S, TextFields> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, TextFields>,
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
                // Formatted by `TextFields`, so already escaped.
                if let Some(fields) = extensions.get::<FormattedFields<TextFields>>()
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
        let mut fields = TextVisitor::new(&mut line, false);
        event.record(&mut fields);
        fields.finish()?;
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

/// The field formatter of `--log-format pretty`, on a terminal or not: the
/// stock `DefaultFields` writes `Display` values and messages raw, so a
/// newline or escape sequence in an upstream error forged log lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextFields;

impl<'a> MakeVisitor<Writer<'a>> for TextFields {
    type Visitor = TextVisitor<Writer<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        let ansi = target.has_ansi_escapes();
        TextVisitor::new(target, ansi)
    }
}

/// Styles the default format gives a field's name and `=` on a terminal.
const ITALIC: &str = "\x1b[3m";
/// See [`ITALIC`].
const DIMMED: &str = "\x1b[2m";
/// Ends a style.
const RESET: &str = "\x1b[0m";

/// Writes fields as the default format does (the message as text, the
/// others as `name=value` with `Debug` values, strings quoted, separated by
/// spaces) with control characters escaped ([`write_escaped`]); into a
/// `String` for [`TextLines`], into a `Writer` for [`TextFields`].
pub struct TextVisitor<W> {
    /// Where the fields go.
    out: W,
    /// Whether names get the default format's colours.
    ansi: bool,
    /// Whether no field was written yet (no separator needed).
    first: bool,
    /// The first write error; writes stop after it.
    result: fmt::Result,
}

impl<W: fmt::Write> TextVisitor<W> {
    /// A visitor writing to `out`, colouring names when `ansi`.
    fn new(out: W, ansi: bool) -> Self {
        Self {
            out,
            ansi,
            first: true,
            result: Ok(()),
        }
    }

    /// Writes `field` (separator, `name=` and what `value` writes), unless
    /// an earlier write failed or the line leaves the field out.
    fn record_with(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = match self.start(field) {
            Ok(true) => value(&mut self.out),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
    }

    /// Starts `field`; `false` for fields the line leaves out.
    fn start(&mut self, field: &Field) -> Result<bool, fmt::Error> {
        let name = field.name();
        // `log` records' metadata, already in the line's head.
        if name.starts_with("log.") {
            return Ok(false);
        }
        if !self.first {
            self.out.write_char(' ')?;
        }
        self.first = false;
        if name != "message" {
            styled(&mut self.out, self.ansi, ITALIC, shown_name(name))?;
            styled(&mut self.out, self.ansi, DIMMED, "=")?;
        }
        Ok(true)
    }
}

impl<W: fmt::Write> Visit for TextVisitor<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.record_with(field, |out| {
            if message {
                write_escaped(out, value)
            } else {
                push_quoted(out, value)
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_with(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_with(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_with(field, |out| write!(out, "{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let (ansi, name) = (self.ansi, shown_name(field.name()));
        self.record_with(field, |out| {
            write!(Escaping(&mut *out), "{value}")?;
            match value.source() {
                Some(source) => write_sources(out, ansi, name, source),
                None => Ok(()),
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_with(field, |out| write!(Escaping(out), "{value:?}"));
    }
}

impl<W: fmt::Write> VisitOutput<fmt::Result> for TextVisitor<W> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl<W: fmt::Write> VisitFmt for TextVisitor<W> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.out
    }
}

/// A field's name as written: raw identifiers (`r#type`) without `r#`.
fn shown_name(name: &str) -> &str {
    name.strip_prefix("r#").unwrap_or(name)
}

/// Writes `text`, in `style` when the line is coloured.
fn styled<W: fmt::Write + ?Sized>(out: &mut W, ansi: bool, style: &str, text: &str) -> fmt::Result {
    if ansi {
        out.write_str(style)?;
        out.write_str(text)?;
        out.write_str(RESET)
    } else {
        out.write_str(text)
    }
}

/// ` name.sources=[a, b]`: the errors under an error field's value, as the
/// default format lists them.
fn write_sources<W: fmt::Write + ?Sized>(
    out: &mut W,
    ansi: bool,
    name: &str,
    source: &(dyn std::error::Error + 'static),
) -> fmt::Result {
    out.write_char(' ')?;
    styled(out, ansi, ITALIC, name)?;
    styled(out, ansi, ITALIC, ".sources")?;
    styled(out, ansi, DIMMED, "=")?;
    out.write_char('[')?;
    let mut next = Some(source);
    let mut separator = "";
    while let Some(error) = next {
        out.write_str(separator)?;
        write!(Escaping(&mut *out), "{error}")?;
        separator = ", ";
        next = error.source();
    }
    out.write_char(']')
}

/// `value` in quotes, as `Debug` writes it. Ids, routes and model names need
/// no escapes, and for them the per-character escape checks of `Debug` are
/// most of an access line's cost; anything else still goes through `Debug`
/// (and [`Escaping`], for what `Debug` leaves).
fn push_quoted<W: fmt::Write + ?Sized>(out: &mut W, value: &str) -> fmt::Result {
    let plain = value
        .bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\');
    if plain {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        write!(Escaping(out), "{value:?}")
    }
}

/// A writer that escapes control characters in all that passes through it,
/// for values that format themselves (`Debug`, `Display`, errors).
struct Escaping<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(&mut *self.0, s)
    }
}

/// Writes `text` with [`is_escaped`] characters escaped as `Debug` escapes
/// them (`\n`, `\r`, `\t`, `\u{1b}`); text with none, nearly all of it, is
/// checked and written as it is.
fn write_escaped<W: fmt::Write + ?Sized>(out: &mut W, text: &str) -> fmt::Result {
    if !needs_escapes(text) {
        return out.write_str(text);
    }
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if is_escaped(c) {
            out.write_str(text.get(start..at).unwrap_or_default())?;
            write_escape(out, c)?;
            start = at + c.len_utf8();
        }
    }
    out.write_str(text.get(start..).unwrap_or_default())
}

/// Whether `text` holds a character to escape; printable ASCII is checked
/// a byte at a time.
fn needs_escapes(text: &str) -> bool {
    !text.bytes().all(|b| matches!(b, b' '..=b'~')) && text.chars().any(is_escaped)
}

/// Whether `c` could end a line or steer a terminal or text viewer: C0 and
/// C1 controls and DEL (newlines, ESC, CSI), the Unicode line and paragraph
/// separators, and the bidirectional overrides and isolates that reorder
/// how a line reads. Letters of any script are kept.
fn is_escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes the escape of one character.
fn write_escape<W: fmt::Write + ?Sized>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        _ => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::captured::Lines;

    /// Which formatters write the lines.
    #[derive(Clone, Copy)]
    enum Formatter {
        /// tracing-subscriber's own fields and event formatter.
        Stock,
        /// The stock event formatter with [`TextFields`], as on a terminal.
        Terminal,
        /// [`TextLines`] with [`TextFields`].
        Text,
    }

    /// What `events` logs, as `formatter` writes it, coloured when `ansi`.
    fn capture(formatter: Formatter, ansi: bool, events: impl FnOnce()) -> String {
        let lines = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_max_level(Level::DEBUG)
            .with_writer(lines.clone());
        match formatter {
            Formatter::Stock => tracing::subscriber::with_default(builder.finish(), events),
            Formatter::Terminal => {
                tracing::subscriber::with_default(builder.fmt_fields(TextFields).finish(), events)
            }
            Formatter::Text => tracing::subscriber::with_default(
                builder
                    .fmt_fields(TextFields)
                    .event_format(TextLines)
                    .finish(),
                events,
            ),
        }
        lines.text()
    }

    /// An error with a source, as upstream failures come.
    #[derive(Debug)]
    struct Failure(std::io::Error);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connect failed")
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Events with nothing to escape, of every field kind the gateway logs.
    fn ordinary_events() {
        tracing::info!(target: "t::access", request_id = "req-1", path = "a \"q\" \\ b", status = 200u16, delta = -4i64, ok = true, ms = 1.5, whole = 2.0, missing = None::<&str>, accented = "café\t~", quote = "it's", "request");
        let failure = Failure(std::io::Error::other("refused"));
        let cause: &(dyn std::error::Error + 'static) = &failure;
        tracing::error!(target: "t::upstream", error = cause, "failed");
        let span = tracing::info_span!("request", request_id = "req-2", n = 3u8);
        let _outer = span.enter();
        let inner = tracing::debug_span!("attempt");
        let _inner = inner.enter();
        tracing::warn!(error = %"upstream said \"no\"", r#type = "x", "retrying {}", 2);
    }

    /// An upstream message that, written raw, forges an access line and
    /// turns the terminal red.
    const FORGED: &str = "bad\n2026-12-05T00:00:00.000000Z  INFO conclave::access: request status=200\r\x1b[31mRED\u{85}";

    /// [`FORGED`] as a line shows it.
    const ESCAPED: &str = "bad\\n2026-12-05T00:00:00.000000Z  INFO conclave::access: request status=200\\r\\u{1b}[31mRED\\u{85}";

    /// [`FORGED`] in a span field, a message and fields of every kind.
    fn forged_events() {
        let span = tracing::info_span!("request", upstream = FORGED);
        let _entered = span.enter();
        tracing::warn!(target: "t::x", quoted = FORGED, shown = %FORGED, debugged = ?FORGED, "got {}", FORGED);
        tracing::warn!(target: "t::x", message = FORGED);
    }

    /// A line without its timestamp (the first word).
    fn untimed(line: &str) -> &str {
        line.split_once(' ').map_or(line, |(_, rest)| rest)
    }

    #[test]
    fn lines_match_the_default_format_without_colours() {
        let stock = capture(Formatter::Stock, false, ordinary_events);
        let ours = capture(Formatter::Text, false, ordinary_events);
        let stock: Vec<&str> = stock.lines().map(untimed).collect();
        let ours_lines: Vec<&str> = ours.lines().collect();
        assert_eq!(stock.len(), 3, "{stock:?}");
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

    #[test]
    fn terminal_lines_match_the_default_coloured_format() {
        let stock = capture(Formatter::Stock, true, ordinary_events);
        let ours = capture(Formatter::Terminal, true, ordinary_events);
        let stock: Vec<&str> = stock.lines().map(untimed).collect();
        let ours: Vec<&str> = ours.lines().map(untimed).collect();
        assert_eq!(stock.len(), 3, "{stock:?}");
        assert!(stock[0].contains('\x1b'), "{stock:?}");
        assert_eq!(ours, stock);
    }

    #[test]
    fn control_characters_in_values_and_messages_are_escaped_on_one_line() {
        let text = capture(Formatter::Text, false, forged_events);
        assert_eq!(text.matches('\n').count(), 2, "{text}");
        assert!(
            text.chars().all(|c| c == '\n' || !is_escaped(c)),
            "{text:?}"
        );
        let lines: Vec<&str> = text.lines().map(untimed).collect();
        let span = format!("request{{upstream=\"{ESCAPED}\"}}:");
        let expected = vec![
            format!(
                " WARN {span} t::x: got {ESCAPED} quoted=\"{ESCAPED}\" shown={ESCAPED} debugged=\"{ESCAPED}\""
            ),
            format!(" WARN {span} t::x: {ESCAPED}"),
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn control_characters_are_escaped_on_a_terminal_too() {
        let text = capture(Formatter::Terminal, true, forged_events);
        assert_eq!(text.matches('\n').count(), 2, "{text}");
        assert!(
            !text.contains(['\r', '\u{85}']) && !text.contains("\x1b[31mRED"),
            "{text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        for field in ["upstream", "quoted", "debugged"] {
            let shown = format!("{field}{RESET}{DIMMED}={RESET}\"{ESCAPED}\"");
            assert!(text.contains(&shown), "{field}: {text:?}");
        }
        assert!(lines[0].contains(&format!("got {ESCAPED}")), "{text:?}");
        assert!(lines[0].contains(&format!("={RESET}{ESCAPED}")), "{text:?}");
        assert!(lines[1].ends_with(ESCAPED), "{text:?}");
    }

    #[test]
    fn plain_text_and_letters_of_any_script_are_written_unchanged() {
        let text = "café ñandú 日本語 Ελληνικά 🎉 \"quoted\" back\\slash";
        let mut out = String::new();
        write_escaped(&mut out, text).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn controls_line_separators_and_bidi_overrides_are_escaped() {
        let mut out = String::new();
        write_escaped(
            &mut out,
            "a\nb\rc\td\x1b[0m\u{7}\u{7f}\u{85}\u{9b}\u{2028}\u{202e}é",
        )
        .unwrap();
        assert_eq!(
            out,
            "a\\nb\\rc\\td\\u{1b}[0m\\u{7}\\u{7f}\\u{85}\\u{9b}\\u{2028}\\u{202e}é"
        );
    }
}
