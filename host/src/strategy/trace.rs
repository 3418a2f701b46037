//! The stage-by-stage trace of a composite request: a small tree of stage
//! and model-call nodes, written to the observability log as JSON.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::bindings::Usage;

/// Characters of a model call's answer kept in its node's preview.
const PREVIEW_CHARS: usize = 200;
/// Characters of a stage event's text kept: enough for the tables strategies
/// write (a council's ranking, a vote count), bounded by the trace limit too.
const STAGE_TEXT_CHARS: usize = 4000;

/// One node of the trace tree.
#[derive(Debug, Clone, Serialize)]
pub struct TraceNode {
    pub id: usize,
    pub parent_id: Option<usize>,
    /// `strategy`, `llm_call`, or the stage name a strategy traced (`aggregation`, `review`, ...).
    pub step: String,
    pub model: Option<String>,
    /// When the node began, in milliseconds from the run's start: a call's
    /// start, a stage event's moment. Lets a reader draw the run on a time axis.
    pub start_ms: f64,
    /// How long a call (or, for the root, the whole run) took; 0 for a stage event.
    pub duration_ms: f64,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub preview: Option<String>,
    pub error: Option<String>,
}

impl TraceNode {
    /// A model-call node (its ids and start are set when pushed).
    pub fn call(
        model: &str,
        took: Duration,
        usage: Option<&Usage>,
        content: Option<&str>,
        error: Option<&str>,
    ) -> Self {
        Self {
            id: 0,
            parent_id: None,
            step: "llm_call".into(),
            model: Some(model.to_owned()),
            start_ms: 0.0,
            duration_ms: millis(took),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            preview: content.map(preview),
            error: error.map(str::to_owned),
        }
    }
}

/// The first `n` characters of `text`, with an ellipsis when cut.
pub fn preview_chars(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn preview(text: &str) -> String {
    preview_chars(text, PREVIEW_CHARS)
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    started: Instant,
    nodes: Vec<TraceNode>,
    current_stage: usize,
}

impl Trace {
    /// A trace whose root is the strategy node.
    pub fn new(profile: &str) -> Self {
        Self {
            started: Instant::now(),
            nodes: vec![TraceNode {
                id: 0,
                parent_id: None,
                step: "strategy".into(),
                model: Some(profile.to_owned()),
                start_ms: 0.0,
                duration_ms: 0.0,
                prompt_tokens: None,
                completion_tokens: None,
                preview: None,
                error: None,
            }],
            current_stage: 0,
        }
    }

    /// Opens a stage; later calls hang under it.
    pub fn push_stage(&mut self, stage: &str, text: &str) {
        let id = self.nodes.len();
        self.nodes.push(TraceNode {
            id,
            parent_id: Some(0),
            step: stage.to_owned(),
            model: None,
            start_ms: millis(self.started.elapsed()),
            duration_ms: 0.0,
            prompt_tokens: None,
            completion_tokens: None,
            preview: Some(preview_chars(text, STAGE_TEXT_CHARS)),
            error: None,
        });
        self.current_stage = id;
    }

    /// Adds a model call that began at `started` under the current stage.
    pub fn push_call(&mut self, mut node: TraceNode, started: Instant) {
        node.id = self.nodes.len();
        node.start_ms = millis(started.saturating_duration_since(self.started));
        node.parent_id = Some(self.current_stage);
        self.nodes.push(node);
    }

    /// The nodes so far, with the root's duration and error filled in.
    pub fn snapshot(&self, error: Option<String>) -> Vec<TraceNode> {
        let mut nodes = self.nodes.clone();
        if let Some(root) = nodes.first_mut() {
            root.duration_ms = millis(self.started.elapsed());
            root.error = error;
        }
        nodes
    }
}

/// The nodes as JSON.
pub fn to_json(nodes: &[TraceNode]) -> Value {
    serde_json::to_value(nodes).unwrap_or(Value::Null)
}
