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
            OutcomeKind::Request if crate::logging::writes_json() => {
                if tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
                    json_line(o);
                }
            }
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

/// The request's line written straight out when the log speaks JSON: the
/// same fields in the same order as the `tracing` event above, for about
/// half its cost (the line is written for every request).
fn json_line(o: &Outcome) {
    crate::logging::InfoLine::new("request")
        .text("request_id", o.request_id.as_str())
        .text("method", "POST")
        .text("route", &o.route)
        .text("model", &o.model)
        .maybe_text("model_group", o.model_group.as_deref())
        .maybe_text("deployment", o.deployment.as_deref())
        .maybe_text("profile", o.profile.as_deref())
        .flag("stream", o.stream)
        .number("status", u64::from(o.status))
        .maybe_text("error", o.error.as_deref())
        .millis("duration_ms", Some(o.latency))
        .millis("overhead_ms", o.overhead)
        .millis("ttft_ms", o.time_to_first_token)
        .number("attempts", u64::from(o.attempts))
        .maybe_text("fallback", o.fallback.as_deref())
        .text("cache", o.cache.label())
        .text("caller", o.caller.label())
        .write(ACCESS_TARGET);
}
