//! Log output via tracing: human-readable or JSON lines, filtered by `RUST_LOG`.

mod batched;
#[cfg(test)]
mod captured;
mod json;
mod text;
mod throttle;

pub use batched::{batch_this_thread, flush_this_thread};
pub use json::InfoLine;
pub use throttle::Throttle;

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The format [`init`] installed, when it installed one.
static INSTALLED: OnceLock<LogFormat> = OnceLock::new();

/// Whether the installed subscriber writes JSON lines, which code writing
/// a line itself ([`InfoLine`]) must then match.
pub fn writes_json() -> bool {
    INSTALLED.get() == Some(&LogFormat::Json)
}

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter`
/// (an `EnvFilter` directive such as `info`).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(batched::Stderr);
    let installed = match format {
        // Both pretty variants escape control characters in values.
        LogFormat::Pretty if ansi => builder.fmt_fields(text::TextFields).try_init(),
        LogFormat::Pretty => builder
            .fmt_fields(text::TextFields)
            .event_format(text::TextLines)
            .try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .try_init(),
    };
    if installed.is_ok() {
        let _ = INSTALLED.set(format);
    }
}
