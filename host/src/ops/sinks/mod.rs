//! Outcome sinks: where finished requests go. The response path only puts an
//! [`Outcome`] on a bounded channel ([`Outcomes::emit`], never blocking); one
//! dispatcher thread hands each outcome to every sink in turn. A sink never
//! slows an answer down, and a full channel drops outcomes with a counted,
//! rate-limited warning instead of growing without bound.
//!
//! To add a sink: implement [`OutcomeSink`] in a new file here and add it to
//! [`default_sinks`].

mod access_log;
mod composite_log;
mod metrics;
mod request_log;
mod spend;
mod traces;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::outcome::Outcome;
use crate::logging::Throttle;
pub use access_log::{ACCESS_TARGET, AccessLog};
pub use composite_log::{CompositeLog, CompositeRun};
pub use metrics::MetricsSink;
pub use request_log::RequestLog;
pub use spend::SpendSink;
pub use traces::Traces;

/// Outcomes waiting for the dispatcher before new ones are dropped.
const CHANNEL_CAPACITY: usize = 16 * 1024;
/// How often the dispatcher takes what the channel holds.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// At most one "outcomes dropped" warning per this interval.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Something that wants to know about every finished request and model call.
/// Called on the dispatcher thread, one outcome at a time: a sink may block
/// briefly (a buffered file write) but should hand slow work to its own task.
pub trait OutcomeSink: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Takes one outcome.
    fn record(&self, outcome: &Outcome);
    /// Called when the dispatcher has taken every queued outcome: a sink
    /// that batches its writes hands them on here.
    fn flush(&self) {}
}

/// The sinks every gateway has: composite trace logs, the access log, the
/// metrics (which read deployment providers from `current`) and, when
/// configured, the trace export and the request logs.
pub fn default_sinks(
    observe: &crate::observe::Observe,
    current: Arc<arc_swap::ArcSwap<crate::gateway::Gateway>>,
) -> Vec<Arc<dyn OutcomeSink>> {
    let mut sinks: Vec<Arc<dyn OutcomeSink>> = vec![
        Arc::new(CompositeLog),
        Arc::new(AccessLog),
        Arc::new(MetricsSink::new(observe.metrics.clone(), current)),
    ];
    if crate::observe::otel::tracer().is_some() {
        sinks.push(Arc::new(Traces));
    }
    if let Some(settings) = &observe.request_log {
        match crate::observe::request_log::Writer::open(settings.clone()) {
            Ok(writer) => sinks.push(Arc::new(RequestLog::new(writer))),
            Err(e) => tracing::warn!(
                dir = %settings.dir.display(),
                error = %e,
                "cannot open the request log directory; request logs are off"
            ),
        }
    }
    sinks
}

enum Message {
    Outcome(Box<Outcome>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The sending side of the outcome channel; cheap to clone, carried by every
/// request context.
#[derive(Clone)]
pub struct Outcomes {
    tx: Option<mpsc::Sender<Message>>,
    dropped: Arc<AtomicU64>,
    /// One "falling behind" warning per [`DROP_WARNING_INTERVAL`].
    drop_warnings: Arc<Throttle>,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl Outcomes {
    /// Starts the dispatcher thread feeding `sinks`.
    pub fn start(sinks: Vec<Arc<dyn OutcomeSink>>) -> Result<Self, std::io::Error> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        std::thread::Builder::new()
            .name("conclave-outcomes".into())
            .spawn(move || dispatch(rx, &sinks))?;
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::default(),
            drop_warnings: Arc::new(Throttle::new(DROP_WARNING_INTERVAL)),
        })
    }

    /// Outcomes that go nowhere (commands that do not serve).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::default(),
            drop_warnings: Arc::new(Throttle::new(DROP_WARNING_INTERVAL)),
        }
    }

    /// Hands `outcome` to the sinks without waiting; drops it (counted) when
    /// the dispatcher is this far behind.
    pub fn emit(&self, outcome: Outcome) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(Message::Outcome(Box::new(outcome))).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(dropped);
        }
    }

    /// Outcomes dropped because the sinks fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every outcome emitted before this call
    /// has reached the sinks; used at shutdown.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let sent = tokio::time::timeout(timeout, tx.send(Message::Flush(ack_tx))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return false;
        }
        tokio::task::spawn_blocking(move || ack_rx.recv_timeout(timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    fn warn_dropped(&self, dropped: u64) {
        if self.drop_warnings.allow() {
            tracing::warn!(
                dropped,
                "outcome sinks are falling behind; outcomes were dropped"
            );
        }
    }
}

/// Records `outcome` in one sink; a sink that panics loses that outcome,
/// not the thread every other sink (and every later outcome) depends on.
fn record_guarded(sink: &dyn OutcomeSink, outcome: &Outcome) {
    let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.record(outcome)));
    if recorded.is_err() {
        tracing::error!(
            request_id = %outcome.request_id,
            "an outcome sink failed on this request's outcome; the other sinks recorded it"
        );
    }
}

/// Drains the channel every [`DRAIN_INTERVAL`] instead of parking on it: a
/// parked receiver must be woken by every send, which costs a futex call and
/// a thread switch per request; a polling one costs the senders nothing.
/// The lines the sinks log (the access log's) leave together after each
/// drain, in one write.
fn dispatch(mut rx: mpsc::Receiver<Message>, sinks: &[Arc<dyn OutcomeSink>]) {
    crate::logging::batch_this_thread();
    let flush = || {
        sinks.iter().for_each(|sink| sink.flush());
        crate::logging::flush_this_thread();
    };
    loop {
        let mut recorded = false;
        loop {
            match rx.try_recv() {
                Ok(Message::Outcome(mut outcome)) => {
                    outcome.read_kept_answer();
                    for sink in sinks {
                        record_guarded(sink.as_ref(), &outcome);
                    }
                    recorded = true;
                }
                Ok(Message::Flush(ack)) => {
                    flush();
                    recorded = false;
                    let _ = ack.send(());
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    flush();
                    return;
                }
            }
        }
        if recorded {
            flush();
        }
        std::thread::sleep(DRAIN_INTERVAL);
    }
}
