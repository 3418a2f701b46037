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
/// How often the dispatcher takes what the channel holds while it is busy.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// Empty drains in a row (half a second) after which the dispatcher parks
/// until the next outcome.
const IDLE_DRAINS: u32 = 50;
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
        Arc::new(CompositeLog::default()),
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

/// Drains the channel every [`DRAIN_INTERVAL`] while outcomes arrive
/// instead of parking on it: a parked receiver must be woken by every send,
/// which costs a futex call and a thread switch per request; a polling one
/// costs the senders nothing. After [`IDLE_DRAINS`] empty drains in a row
/// it parks until the next message, so an idle gateway's dispatcher does
/// not wake a hundred times a second; only the first outcome after a quiet
/// spell pays the wake-up. The lines the sinks log (the access log's) leave
/// together after each drain, in one write.
fn dispatch(mut rx: mpsc::Receiver<Message>, sinks: &[Arc<dyn OutcomeSink>]) {
    crate::logging::batch_this_thread();
    let mut empty_drains = 0;
    loop {
        match drain(&mut rx, sinks) {
            Drained::Closed => return,
            Drained::Some => empty_drains = 0,
            Drained::Nothing => empty_drains += 1,
        }
        if empty_drains < IDLE_DRAINS {
            std::thread::sleep(DRAIN_INTERVAL);
            continue;
        }
        empty_drains = 0;
        let Some(message) = rx.blocking_recv() else {
            return;
        };
        if handle(message, sinks) {
            flush_all(sinks);
        }
    }
}

/// What one drain of the channel found.
enum Drained {
    /// At least one message.
    Some,
    /// Nothing waiting.
    Nothing,
    /// Every sender is gone: the gateway is shutting down.
    Closed,
}

/// Hands every waiting message to the sinks, then flushes them once.
fn drain(rx: &mut mpsc::Receiver<Message>, sinks: &[Arc<dyn OutcomeSink>]) -> Drained {
    let mut received = false;
    let mut unflushed = false;
    loop {
        match rx.try_recv() {
            Ok(message) => {
                received = true;
                unflushed = handle(message, sinks);
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                flush_all(sinks);
                return Drained::Closed;
            }
        }
    }
    if unflushed {
        flush_all(sinks);
    }
    if received {
        Drained::Some
    } else {
        Drained::Nothing
    }
}

/// Records an outcome in every sink (true: a flush is due), or flushes and
/// acknowledges a flush request (false: nothing is left unflushed).
fn handle(message: Message, sinks: &[Arc<dyn OutcomeSink>]) -> bool {
    match message {
        Message::Outcome(mut outcome) => {
            outcome.read_kept_answer();
            for sink in sinks {
                record_guarded(sink.as_ref(), &outcome);
            }
            true
        }
        Message::Flush(ack) => {
            flush_all(sinks);
            let _ = ack.send(());
            false
        }
    }
}

/// Lets every sink hand on what it batched, and writes this thread's log
/// lines.
fn flush_all(sinks: &[Arc<dyn OutcomeSink>]) {
    sinks.iter().for_each(|sink| sink.flush());
    crate::logging::flush_this_thread();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{CallContext, Caller, PendingOutcome, RequestContext, RequestId};

    #[derive(Default)]
    struct Counter(AtomicU64);

    impl OutcomeSink for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }

        fn record(&self, _: &Outcome) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Emits one request outcome through `outcomes`, as a finished request
    /// does.
    fn finish_a_request(outcomes: &Outcomes) {
        let request = RequestContext::new(
            RequestId::generate(),
            Caller::Master,
            "/v1/chat/completions",
            outcomes.clone(),
        );
        let ctx = CallContext::client(Arc::new(request));
        drop(PendingOutcome::request(&ctx, "m", false));
    }

    /// Whether `counter` reaches `n` within five seconds.
    fn counts_to(counter: &Counter, n: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if counter.0.load(Ordering::Relaxed) == n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn an_outcome_after_the_dispatcher_parks_still_reaches_the_sinks() {
        let counter = Arc::new(Counter::default());
        let outcomes = Outcomes::start(vec![counter.clone()]).unwrap();
        finish_a_request(&outcomes);
        assert!(counts_to(&counter, 1));
        // Long enough for the dispatcher to find the channel empty
        // IDLE_DRAINS times and park.
        std::thread::sleep(DRAIN_INTERVAL * (IDLE_DRAINS + 30));
        finish_a_request(&outcomes);
        assert!(counts_to(&counter, 2));
        finish_a_request(&outcomes);
        assert!(counts_to(&counter, 3));
    }

    #[test]
    fn a_flush_after_the_dispatcher_parks_is_acknowledged() {
        let outcomes = Outcomes::start(vec![Arc::new(Counter::default())]).unwrap();
        std::thread::sleep(DRAIN_INTERVAL * (IDLE_DRAINS + 30));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(runtime.block_on(outcomes.flush(Duration::from_secs(5))));
    }
}
