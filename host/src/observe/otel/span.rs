//! A finished span as the request path describes it: ids, times, the
//! attributes known there and the answer to read the rest from. The export
//! task adds what the answer says and encodes it.

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TraceState};

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
    /// The record with the attributes read from its answer and input added.
    pub fn with_answer_attributes(mut self) -> Self {
        if let Some(answer) = self.answer.take() {
            super::genai::answer_attributes(&answer, self.capture, &mut self.attributes);
        }
        if let Some(input) = self.input.take() {
            super::genai::input_attributes(&input, &mut self.attributes);
        }
        self
    }
}
