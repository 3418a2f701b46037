//! The access log: one structured `tracing` line per client request, written
//! by the outcome dispatcher so formatting and writing it never delays an
//! answer. Its fields follow the log format chosen with `--log-format`
//! (`pretty` key=value text or `json` objects with typed fields).

use std::time::Duration;

use super::OutcomeSink;
use crate::ops::{Outcome, OutcomeKind};

/// The `tracing` target of access lines, so `RUST_LOG` can select or mute
/// them (`RUST_LOG=info,conclave::access=off`).
pub const ACCESS_TARGET: &str = "conclave::access";

/// Emits one info line per request and one debug line per composite sub-call.
pub struct AccessLog;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl OutcomeSink for AccessLog {
    fn name(&self) -> &'static str {
        "access-log"
    }

    fn record(&self, o: &Outcome) {
        // Unset fields are left out of the line rather than printed empty.
        let group = o.model_group.as_deref();
        let deployment = o.deployment.as_deref();
        let fallback = o.fallback.as_deref();
        let error = o.error.as_deref();
        match o.kind {
            OutcomeKind::Request => tracing::info!(
                target: ACCESS_TARGET,
                request_id = o.request_id.as_str(),
                method = "POST",
                route = &*o.route,
                model = o.model.as_str(),
                model_group = group,
                deployment,
                profile = o.profile.as_deref(),
                stream = o.stream,
                status = o.status,
                error,
                duration_ms = ms(o.latency),
                overhead_ms = o.overhead.map(ms),
                ttft_ms = o.time_to_first_token.map(ms),
                attempts = o.attempts,
                fallback,
                cache = o.cache.label(),
                caller = o.caller.label(),
                "request"
            ),
            OutcomeKind::SubCall => tracing::debug!(
                target: ACCESS_TARGET,
                request_id = o.request_id.as_str(),
                parent_request_id = o.parent_request_id.as_ref().map(|p| p.as_str()),
                model = o.model.as_str(),
                model_group = group,
                deployment,
                profile = o.profile.as_deref(),
                status = o.status,
                error,
                duration_ms = ms(o.latency),
                attempts = o.attempts,
                fallback,
                "sub-call"
            ),
        }
    }
}
