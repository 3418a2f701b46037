//! A finished span as the request path describes it: ids, times, the
//! attributes known there and the answer to read the rest from. The export
//! task turns it into OpenTelemetry span data.

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

/// Where a span hangs: its trace, its parent and the parent's origin.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub trace_id: TraceId,
    /// [`SpanId::INVALID`] for a root span.
    pub parent: SpanId,
    /// The parent came from the client's `traceparent`.
    pub parent_remote: bool,
    pub trace_state: TraceState,
}

/// The answer of a model call, read off the response path.
#[derive(Debug)]
pub enum Answer {
    /// A whole JSON answer.
    Json(Bytes),
    /// A stream's payloads: the last few, or all of them (bounded) when
    /// message contents are captured.
    Chunks(Vec<Bytes>),
}

/// One finished span.
#[derive(Debug)]
pub struct SpanRecord {
    pub lineage: Lineage,
    pub span_id: SpanId,
    pub kind: SpanKind,
    pub name: Cow<'static, str>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub status: Status,
    /// For model calls: the answer to read usage and finish reasons from.
    pub answer: Option<Answer>,
    /// The request's `messages` JSON, kept only when contents are captured.
    pub input: Option<String>,
    /// Whether to record message contents.
    pub capture: bool,
}

/// A fresh span id (never the invalid all-zero one).
pub fn new_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

/// A fresh trace id (never the invalid all-zero one).
pub fn new_trace_id() -> TraceId {
    TraceId::from(fastrand::u128(1..))
}

impl SpanRecord {
    /// The OpenTelemetry span data, with the answer's attributes added.
    pub fn into_span_data(mut self, scope: &opentelemetry::InstrumentationScope) -> SpanData {
        if let Some(answer) = self.answer.take() {
            super::genai::answer_attributes(&answer, self.capture, &mut self.attributes);
        }
        if let Some(input) = self.input.take() {
            super::genai::input_attributes(&input, &mut self.attributes);
        }
        SpanData {
            span_context: SpanContext::new(
                self.lineage.trace_id,
                self.span_id,
                TraceFlags::SAMPLED,
                false,
                self.lineage.trace_state,
            ),
            parent_span_id: self.lineage.parent,
            parent_span_is_remote: self.lineage.parent_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start,
            end_time: self.end.max(self.start),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: scope.clone(),
        }
    }
}
