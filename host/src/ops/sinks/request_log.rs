//! The request log sink: hands outcomes to the per-request log writer of
//! [`crate::observe::request_log`] on the dispatcher thread.

use std::sync::Mutex;

use super::OutcomeSink;
use crate::observe::request_log::Writer;
use crate::ops::Outcome;

/// Writes one request log per client request (sub-calls go into it).
pub struct RequestLog(Mutex<Writer>);

impl RequestLog {
    /// A sink writing through `writer`.
    pub fn new(writer: Writer) -> Self {
        Self(Mutex::new(writer))
    }
}

impl OutcomeSink for RequestLog {
    fn name(&self) -> &'static str {
        "request-log"
    }

    fn record(&self, outcome: &Outcome) {
        if outcome.refused_before_auth() {
            return;
        }
        if let Ok(mut writer) = self.0.lock() {
            writer.record(outcome);
        }
    }

    fn flush(&self) {
        if let Ok(mut writer) = self.0.lock() {
            writer.flush();
        }
    }
}
