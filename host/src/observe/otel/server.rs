//! The server span of a request, built from its outcome on the outcome
//! dispatcher thread: the span's ids were taken when the request arrived,
//! its times and status are the outcome's.

use std::borrow::Cow;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, SpanKind, Status};

use super::RequestTrace;
use super::span::{Lineage, SpanRecord};
use super::tracer;
use crate::ops::Outcome;

/// Sends the server span of the request whose trace is `trace` and whose
/// outcome is `o`.
pub fn record_request(trace: &RequestTrace, o: &Outcome) {
    let Some(tracer) = tracer() else { return };
    let mut attributes = vec![
        KeyValue::new("http.request.method", trace.method.clone()),
        KeyValue::new("http.route", o.route.to_string()),
        KeyValue::new("http.response.status_code", i64::from(o.status)),
        KeyValue::new("conclave.request_id", o.request_id.as_str().to_owned()),
        KeyValue::new("conclave.caller", o.caller.label().to_owned()),
        KeyValue::new("conclave.stream", o.stream),
        KeyValue::new("conclave.attempts", i64::from(o.attempts)),
        KeyValue::new("conclave.cache", o.cache.label()),
    ];
    let mut optional = |key: &'static str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            attributes.push(KeyValue::new(key, v.to_owned()));
        }
    };
    optional("gen_ai.request.model", Some(&o.model));
    optional("conclave.model_group", o.model_group.as_deref());
    optional("conclave.deployment", o.deployment.as_deref());
    optional("conclave.fallback", o.fallback.as_deref());
    optional("conclave.profile", o.profile.as_deref());
    if let Some(p) = o.caller.principal() {
        optional("conclave.key_alias", p.key.key_alias.as_deref());
        optional("conclave.team_id", p.key.team_id.as_deref());
        optional("conclave.user_id", p.key.user_id.as_deref());
    }
    let failed = o.status >= 400;
    if failed {
        attributes.push(KeyValue::new(
            "error.type",
            o.error.clone().unwrap_or_else(|| o.status.to_string()),
        ));
    }
    // A server span is an error only when the server failed (5xx).
    let status = if o.status >= 500 {
        Status::Error {
            description: Cow::Owned(o.error.clone().unwrap_or_default()),
        }
    } else {
        Status::Unset
    };
    let route = if o.route.is_empty() {
        "request"
    } else {
        &o.route
    };
    tracer.send(SpanRecord {
        lineage: Lineage {
            trace_id: trace.trace_id,
            parent: trace.remote_parent.unwrap_or(SpanId::INVALID),
            parent_remote: trace.remote_parent.is_some(),
            trace_state: trace.trace_state.clone(),
        },
        span_id: trace.span_id,
        kind: SpanKind::Server,
        name: Cow::Owned([trace.method.as_str(), " ", route].concat()),
        start: o.started_at,
        end: o.started_at + o.latency,
        attributes,
        status,
        answer: None,
        input: None,
        capture: false,
    });
}
