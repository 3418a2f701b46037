//! The client span of one upstream attempt, following OpenTelemetry's GenAI
//! conventions. The router starts it before the call and ends it with the
//! answer (JSON), the failure, or — for a stream — when the stream ends, so
//! it covers the whole answer. Retries and fallbacks each get their own, as
//! siblings under the same parent.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};

use super::span::{Answer, Lineage, SpanRecord, new_span_id};
use super::tracer;
use crate::openai::{Endpoint, RawFields};
use crate::ops::{CallContext, Reported};
use crate::providers::UpstreamError;

/// Stream payloads kept for usage and finish reasons (they come last).
const TAIL_PAYLOADS: usize = 3;
/// Bytes of stream payloads kept when message contents are captured.
const CAPTURED_STREAM_BYTES: usize = 1024 * 1024;
/// Characters of an error message recorded as the span's status.
const ERROR_MESSAGE_CHARS: usize = 256;

/// An upstream attempt under way; sends its span when finished or dropped.
pub struct AttemptSpan {
    lineage: Lineage,
    span_id: SpanId,
    name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    traceparent: String,
    input: Option<String>,
    capture: bool,
    kept: Vec<Bytes>,
    kept_bytes: usize,
    status: Status,
    /// Set once the span was sent.
    sent: bool,
}

/// What the attempt calls, for its attributes.
pub struct AttemptTarget<'a> {
    pub endpoint: Endpoint,
    pub provider: &'a str,
    /// The model name the upstream is sent.
    pub model: &'a str,
    pub deployment: &'a str,
    pub group: &'a str,
}

/// The W3C `traceparent` header of a sampled span.
fn traceparent(trace_id: TraceId, span_id: SpanId) -> String {
    let mut header = String::with_capacity(55);
    header.push_str("00-");
    crate::digest::push_hex(&mut header, &trace_id.to_bytes());
    header.push('-');
    crate::digest::push_hex(&mut header, &span_id.to_bytes());
    header.push_str("-01");
    header
}

/// The GenAI operation name of an endpoint.
fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Moderations => "moderation",
        Endpoint::ImageGenerations => "image_generation",
        Endpoint::Rerank => "rerank",
    }
}

impl AttemptSpan {
    /// Starts the span of an attempt made for `ctx`; `None` (and no work)
    /// when the request is not traced.
    pub fn start(ctx: &CallContext, target: AttemptTarget<'_>, body: &RawFields) -> Option<Self> {
        let trace: &Arc<super::RequestTrace> = ctx.request.trace.as_ref()?;
        let capture = tracer().is_some_and(|t| t.capture_content);
        let span_id = new_span_id();
        let lineage = trace.under(trace.calls_parent());
        let op = operation(target.endpoint);
        let traceparent = traceparent(lineage.trace_id, span_id);
        let attributes = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("gen_ai.provider.name", target.provider.to_owned()),
            KeyValue::new("gen_ai.request.model", target.model.to_owned()),
            KeyValue::new("conclave.deployment", target.deployment.to_owned()),
            KeyValue::new("conclave.model_group", target.group.to_owned()),
        ];
        let input = capture
            .then(|| body.get("messages").or_else(|| body.get("prompt")))
            .flatten()
            .map(|raw| raw.get().to_owned());
        Some(Self {
            lineage,
            span_id,
            name: [op, " ", target.model].concat(),
            start: SystemTime::now(),
            attributes,
            traceparent,
            input,
            capture,
            kept: Vec::new(),
            kept_bytes: 0,
            status: Status::Unset,
            sent: false,
        })
    }

    /// The W3C `traceparent` the upstream request carries: this span as parent.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// Ends the span with a whole JSON answer and what the router read of
    /// it. Only when message contents are captured does the export task
    /// read the answer itself (for the text).
    pub fn answered(mut self, body: &Bytes, reported: Option<&Reported>) {
        if self.capture {
            self.send(Some(Answer::Json(body.clone())));
            return;
        }
        if let Some(reported) = reported {
            super::genai::reported_attributes(reported, &mut self.attributes);
        }
        self.send(None);
    }

    /// Ends the span with a failure; `message` is already free of credentials.
    pub fn failed(mut self, error: &UpstreamError, message: &str) {
        self.fail(error, message);
        self.send(None);
    }

    /// Keeps a stream payload for the span's attributes (the last few; all
    /// of them, bounded, when message contents are captured).
    pub fn keep(&mut self, payload: &Bytes) {
        if self.capture {
            if self.kept_bytes + payload.len() <= CAPTURED_STREAM_BYTES {
                self.kept_bytes += payload.len();
                self.kept.push(payload.clone());
            }
            return;
        }
        if self.kept.len() == TAIL_PAYLOADS {
            self.kept.remove(0);
        }
        self.kept.push(payload.clone());
    }

    /// Marks a stream that broke off after it started.
    pub fn stream_failed(&mut self, error: &UpstreamError, message: &str) {
        self.fail(error, message);
    }

    fn fail(&mut self, error: &UpstreamError, message: &str) {
        self.attributes
            .push(KeyValue::new("error.type", error_type(error)));
        let description: String = message.chars().take(ERROR_MESSAGE_CHARS).collect();
        self.status = Status::Error {
            description: Cow::Owned(description),
        };
    }

    fn send(&mut self, answer: Option<Answer>) {
        if std::mem::replace(&mut self.sent, true) {
            return;
        }
        let Some(tracer) = tracer() else { return };
        tracer.send(SpanRecord {
            lineage: self.lineage.clone(),
            span_id: self.span_id,
            kind: SpanKind::Client,
            name: Cow::Owned(std::mem::take(&mut self.name)),
            start: self.start,
            end: SystemTime::now(),
            attributes: std::mem::take(&mut self.attributes),
            status: std::mem::replace(&mut self.status, Status::Unset),
            answer,
            input: self.input.take(),
            capture: self.capture,
        });
    }
}

impl Drop for AttemptSpan {
    /// A stream's span ends when the stream does (or is dropped unfinished).
    fn drop(&mut self) {
        let kept = std::mem::take(&mut self.kept);
        self.send((!kept.is_empty()).then_some(Answer::Chunks(kept)));
    }
}

/// GenAI's `error.type`: the upstream's status code, or what went wrong.
fn error_type(error: &UpstreamError) -> String {
    match error {
        UpstreamError::Status { status, .. } => status.to_string(),
        UpstreamError::Connect(_) => "connection_error".into(),
        UpstreamError::Timeout(_) | UpstreamError::StreamTooLong(_) => "timeout".into(),
        UpstreamError::Protocol(_) => "malformed_response".into(),
        UpstreamError::Unsendable { .. } => "unsendable_request".into(),
        UpstreamError::StreamBroken(_) => "stream_broken".into(),
        UpstreamError::AnswerRoomFull(_) => "gateway_busy".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_version_ids_and_sampled_flag_in_lowercase_hex() {
        let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let span_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
        assert_eq!(
            traceparent(trace_id, span_id),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }
}
