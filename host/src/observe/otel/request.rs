//! The trace of one sampled request: its server span's ids, the client's
//! `traceparent` it continues, and the span that model calls hang under
//! right now (the server span, or a composite run's current stage).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

use super::span::{Lineage, new_span_id, new_trace_id};
use super::tracer;

/// A sampled request's trace; `None` in the request context when export is
/// off or the sampler dropped the request.
#[derive(Debug)]
pub struct RequestTrace {
    pub(super) trace_id: TraceId,
    /// The server span's id.
    pub(super) span_id: SpanId,
    /// The client's span, when it sent a valid `traceparent`.
    pub(super) remote_parent: Option<SpanId>,
    pub(super) trace_state: TraceState,
    pub(super) method: String,
    /// The span new model calls hang under.
    calls_parent: AtomicU64,
}

impl RequestTrace {
    /// The trace of a request arriving with `headers`, continuing the
    /// client's W3C `traceparent` when it sent one; `None` when export is off
    /// or the sampler drops the request.
    pub fn start(headers: &HeaderMap, method: &http::Method) -> Option<Arc<Self>> {
        let tracer = tracer()?;
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let remote = cx.span().span_context().clone();
        let trace_id = if remote.is_valid() {
            remote.trace_id()
        } else {
            new_trace_id()
        };
        let sampled = tracer.sampler.should_sample(
            Some(&cx),
            trace_id,
            "request",
            &SpanKind::Server,
            &[],
            &[],
        );
        if sampled.decision != SamplingDecision::RecordAndSample {
            return None;
        }
        let span_id = new_span_id();
        Some(Arc::new(Self {
            trace_id,
            span_id,
            remote_parent: remote.is_valid().then(|| remote.span_id()),
            trace_state: remote.trace_state().clone(),
            method: method.as_str().to_owned(),
            calls_parent: AtomicU64::new(u64::from_be_bytes(span_id.to_bytes())),
        }))
    }

    /// The trace id, as W3C writes it (32 hex digits).
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// Where a span directly under `parent` hangs.
    pub(super) fn under(&self, parent: SpanId) -> Lineage {
        Lineage {
            trace_id: self.trace_id,
            parent,
            parent_remote: false,
            trace_state: self.trace_state.clone(),
        }
    }

    /// The span model calls made now hang under.
    pub(super) fn calls_parent(&self) -> SpanId {
        SpanId::from(self.calls_parent.load(Ordering::Acquire))
    }

    /// Makes later model calls hang under `parent`.
    pub(super) fn set_calls_parent(&self, parent: SpanId) {
        self.calls_parent
            .store(u64::from_be_bytes(parent.to_bytes()), Ordering::Release);
    }
}
