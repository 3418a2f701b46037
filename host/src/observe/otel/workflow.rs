//! The spans of a composite run: one `invoke_workflow` span for the run and
//! one span per stage the strategy traces. While a stage is open the run's
//! model calls hang under it; the run's host imports are made one at a time
//! by the guest, so the current stage is the one every call belongs to.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, SpanKind, Status};

use super::RequestTrace;
use super::span::{SpanRecord, new_span_id};
use super::tracer;
use crate::ops::CallContext;

/// Characters of a stage's traced text recorded (with the content opt-in).
const STAGE_TEXT_CHARS: usize = 1024;

/// A span begun and not yet sent.
struct Open {
    span_id: SpanId,
    parent: SpanId,
    name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

/// The open spans of one run; ends them when the run ends or is dropped.
pub struct WorkflowSpans {
    trace: Arc<RequestTrace>,
    /// What calls hung under before the run (restored at its end).
    outer: SpanId,
    run: Option<Open>,
    stage: Option<Open>,
    capture: bool,
}

/// What the run runs, for its span's attributes.
pub struct WorkflowInfo<'a> {
    pub profile: &'a str,
    /// `builtin:<name>` or the component's path.
    pub strategy: &'a str,
    /// The component's content hash.
    pub hash: &'a str,
}

impl WorkflowSpans {
    /// Opens the run's span under whatever calls hang under now; `None`
    /// when the request is not traced.
    pub fn start(ctx: &CallContext, info: WorkflowInfo<'_>) -> Option<Self> {
        let trace = ctx.request.trace.clone()?;
        let outer = trace.calls_parent();
        let span_id = new_span_id();
        trace.set_calls_parent(span_id);
        let strategy = info
            .strategy
            .strip_prefix("builtin:")
            .unwrap_or(info.strategy);
        Some(Self {
            outer,
            run: Some(Open {
                span_id,
                parent: outer,
                name: format!("invoke_workflow {}", info.profile),
                start: SystemTime::now(),
                attributes: vec![
                    KeyValue::new("gen_ai.operation.name", "invoke_workflow"),
                    KeyValue::new("conclave.profile", info.profile.to_owned()),
                    KeyValue::new("conclave.strategy", strategy.to_owned()),
                    KeyValue::new("conclave.strategy.source", info.strategy.to_owned()),
                    KeyValue::new("conclave.strategy.hash", info.hash.to_owned()),
                ],
            }),
            stage: None,
            capture: tracer().is_some_and(|t| t.capture_content),
            trace,
        })
    }

    /// The strategy traced `stage`: a new stage span opens (unless it is the
    /// one open) and later calls hang under it.
    pub fn stage(&mut self, stage: &str, text: &str) {
        let Some(run) = &self.run else { return };
        if let Some(open) = &mut self.stage
            && open.name == stage
        {
            self.add_text(text);
            return;
        }
        let run_id = run.span_id;
        self.end_stage();
        let span_id = new_span_id();
        self.stage = Some(Open {
            span_id,
            parent: run_id,
            name: stage.to_owned(),
            start: SystemTime::now(),
            attributes: vec![KeyValue::new("conclave.stage", stage.to_owned())],
        });
        self.add_text(text);
        self.trace.set_calls_parent(span_id);
    }

    /// Records the stage's text when message contents are captured.
    fn add_text(&mut self, text: &str) {
        if !self.capture {
            return;
        }
        if let Some(open) = &mut self.stage {
            let text: String = text.chars().take(STAGE_TEXT_CHARS).collect();
            open.attributes
                .push(KeyValue::new("conclave.stage.text", text));
        }
    }

    /// Ends the run's spans with its token totals and, on failure, why.
    pub fn end(mut self, input_tokens: u64, output_tokens: u64, error: Option<&str>) {
        if let Some(run) = &mut self.run {
            run.attributes.push(KeyValue::new(
                "gen_ai.usage.input_tokens",
                i64::try_from(input_tokens).unwrap_or(i64::MAX),
            ));
            run.attributes.push(KeyValue::new(
                "gen_ai.usage.output_tokens",
                i64::try_from(output_tokens).unwrap_or(i64::MAX),
            ));
        }
        self.finish(error);
    }

    fn end_stage(&mut self) {
        if let Some(open) = self.stage.take() {
            self.send(open, Status::Unset);
        }
    }

    fn finish(&mut self, error: Option<&str>) {
        self.end_stage();
        if let Some(mut run) = self.run.take() {
            let status = match error {
                Some(e) => {
                    run.attributes
                        .push(KeyValue::new("error.type", "strategy_error"));
                    Status::Error {
                        description: Cow::Owned(e.chars().take(256).collect()),
                    }
                }
                None => Status::Unset,
            };
            self.send(run, status);
            self.trace.set_calls_parent(self.outer);
        }
    }

    fn send(&self, open: Open, status: Status) {
        let Some(tracer) = tracer() else { return };
        tracer.send(SpanRecord {
            lineage: self.trace.under(open.parent),
            span_id: open.span_id,
            kind: SpanKind::Internal,
            name: Cow::Owned(open.name),
            start: open.start,
            end: SystemTime::now(),
            attributes: open.attributes,
            status,
            answer: None,
            input: None,
            capture: false,
        });
    }
}

impl Drop for WorkflowSpans {
    /// A run dropped before it ended (the client left) still sends its spans.
    fn drop(&mut self) {
        if self.run.is_some() {
            self.finish(Some("the run was stopped before it finished"));
        }
    }
}
