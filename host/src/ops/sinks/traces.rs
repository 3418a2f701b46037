//! The trace sink: turns each traced request's outcome into its
//! OpenTelemetry server span ([`crate::observe::otel`]), on the dispatcher
//! thread.

use super::OutcomeSink;
use crate::ops::Outcome;

/// Sends the server span of every traced request.
pub struct Traces;

impl OutcomeSink for Traces {
    fn name(&self) -> &'static str {
        "traces"
    }

    fn record(&self, outcome: &Outcome) {
        if let Some(trace) = &outcome.trace {
            crate::observe::otel::record_request(trace, outcome);
        }
    }
}
