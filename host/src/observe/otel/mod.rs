//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf).
//!
//! Spans are described by the gateway where it knows them and built off the
//! response path: the request path only takes ids, timestamps and cheap
//! references (the answer's `Bytes`), and one export task completes them —
//! reading usage, finish reasons and (with the opt-in) message contents out
//! of the kept answers —, encodes them as OTLP protobuf and sends them in
//! batches to the collector.
//!
//! The span tree of a request:
//!
//! ```text
//! POST /v1/chat/completions                       server span (from the request outcome)
//! ├── chat gpt-4o-mini                            one client span per upstream attempt;
//! └── chat gpt-4o-mini                            retries and fallbacks are siblings
//! POST /v1/chat/completions  (composite)
//! └── invoke_workflow council                     the strategy run
//!     ├── stage answers                           one span per traced stage
//!     │   ├── chat model-a                        each complete() call's attempts
//!     │   └── chat model-b
//!     └── stage synthesis
//!         └── chat model-c
//! ```
//!
//! Why not `tracing-opentelemetry`: the request span is at debug level on
//! purpose (an info span per request costs a formatted field set), the
//! attributes that matter (usage, finish reasons) are only known from the
//! answer, and a stream's attempt ends long after the router returned. With
//! export off nothing here runs: [`RequestTrace::start`] returns `None`
//! after one atomic load and every later hook is a `None` check.

mod attempt;
mod collector;
mod export;
mod genai;
mod proto;
mod request;
mod server;
pub mod settings;
mod span;
mod workflow;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;
use tokio::sync::mpsc;

pub use attempt::{AttemptSpan, AttemptTarget};
pub use request::RequestTrace;
pub use server::record_request;
pub use workflow::{WorkflowInfo, WorkflowSpans};

use span::SpanRecord;

/// The exporter this process was started with.
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// What the request path needs to describe spans: where records go and the
/// sampling and content settings.
pub struct Tracer {
    tx: mpsc::Sender<export::Message>,
    sampler: Sampler,
    capture_content: bool,
    dropped: AtomicU64,
}

/// The installed tracer, when trace export is on.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Starts trace export when the config or the environment asks for it
/// (see [`settings::resolve`]). Must run inside the Tokio runtime; called
/// once, at start-up. An error names the variable or key that is wrong.
pub fn install(config: &crate::config::Config, file: &str) -> Result<bool, String> {
    // The process's variables, then the `.env` file beside the config and
    // its `environment_variables`, where LiteLLM configs set them.
    let env = |name: &str| config.env.get(name).filter(|v| !v.trim().is_empty());
    let Some(settings) = settings::resolve(config, file, &env)? else {
        return Ok(false);
    };
    let capture_content = settings.capture_content;
    let sampler = settings.sampler.clone();
    let tx = export::start(settings)?;
    let installed = TRACER
        .set(Tracer {
            tx,
            sampler,
            capture_content,
            dropped: AtomicU64::new(0),
        })
        .is_ok();
    if installed {
        tracing::info!(capture_content, "OpenTelemetry trace export on");
    }
    Ok(installed)
}

/// Sends what is queued to the collector, waiting at most `timeout`; used
/// at shutdown.
pub async fn flush(timeout: Duration) -> bool {
    let Some(tracer) = tracer() else { return true };
    let (ack, done) = tokio::sync::oneshot::channel();
    let sent = tokio::time::timeout(timeout, tracer.tx.send(export::Message::Flush(ack))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return false;
    }
    matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(())))
}

impl Tracer {
    /// Queues a finished span without waiting; counts it dropped when the
    /// exporter is this far behind.
    fn send(&self, record: SpanRecord) {
        if self
            .tx
            .try_send(export::Message::Span(Box::new(record)))
            .is_err()
        {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "trace export is falling behind; spans were dropped"
                );
            }
        }
    }
}
