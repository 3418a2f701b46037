//! The JSON-lines log of composite runs (`composite_llm` observability): one
//! line per composite request with its status, usage and trace tree.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::OutcomeSink;
use crate::logging::Throttle;
use crate::ops::{Outcome, OutcomeKind};

/// What a composite run adds to its request's outcome.
#[derive(Debug)]
pub struct CompositeRun {
    /// The profile's observability log, when its config names one. Carried by
    /// the run so that a run is logged where the config version that ran it said.
    pub log_path: Option<PathBuf>,
    /// The stage and call tree.
    pub trace: Value,
    /// Why the run failed, in words.
    pub error: Option<String>,
}

/// Writes one JSON line per composite request to its profile's log.
pub struct CompositeLog {
    /// A log that cannot be written fails every run: said once a minute.
    write_warnings: Throttle,
}

impl Default for CompositeLog {
    fn default() -> Self {
        Self {
            write_warnings: Throttle::new(std::time::Duration::from_secs(60)),
        }
    }
}

impl OutcomeSink for CompositeLog {
    fn name(&self) -> &'static str {
        "composite-log"
    }

    fn record(&self, outcome: &Outcome) {
        if outcome.kind != OutcomeKind::Request {
            return;
        }
        let Some(run) = &outcome.composite else {
            return;
        };
        let Some(path) = &run.log_path else { return };
        let usage = outcome.usage().unwrap_or_default();
        let timestamp = outcome
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = json!({
            "timestamp": timestamp,
            "request_id": outcome.request_id.as_str(),
            "status": if run.error.is_none() && outcome.status < 400 { "success" } else { "error" },
            "model": outcome.model,
            "profile": outcome.profile.as_deref(),
            "duration_ms": outcome.latency.as_secs_f64() * 1000.0,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "error": run.error,
            "trace": run.trace,
        });
        let mut text = line.to_string();
        text.push('\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written
            && self.write_warnings.allow()
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the composite trace log (said at most once a minute)");
        }
    }
}
