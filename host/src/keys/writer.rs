//! The background spend writer. `record_spend` only pushes a row into a
//! bounded channel; the writer, on a thread of its own, drains it every
//! [`DRAIN_EVERY`] and writes batches (every [`INTERVAL`] or [`BATCH`] rows,
//! whichever comes first), so no request ever waits on the store and the
//! store sees a few statements per batch instead of several per request.
//!
//! When the store fails, rows wait in memory (up to the channel's capacity
//! again) and the batch is retried every [`RETRY`]; past that bound the
//! oldest waiting rows are dropped. Rows refused because the channel is full
//! are dropped too. Both are counted and logged (at most one warning every
//! [`WARN_EVERY`]), never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::KeyError;
use super::jobs::{BudgetResets, RESET_EVERY};
use super::model::SpendRow;
use super::settings::KeysSettings;
use super::store::{EndedPeriods, Store};
use crate::logging::Throttle;

/// Longest a row waits before its batch is written, unless
/// `proxy_batch_write_at` says otherwise. Budgets do not wait
/// for it (the limiter counts spend in memory at once); what it trades is
/// how soon `/key/info` and `/spend/logs` show a request against how many
/// rows share each write. Each key in a batch has its total, its per-model
/// total and its day's row updated once, whatever its number of rows: a
/// second's rows of a busy key share those writes (LiteLLM writes every 10 s).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Most rows in one batch, and how many make a batch due before its
/// interval is over. Well above what a second brings at saturation on two
/// cores (about 20,000 requests), so a busy second's rows share one
/// transaction: each key's totals and aggregates are then updated once a
/// second, not once per few thousand rows.
pub const BATCH: usize = 25_000;
/// How often waiting rows are taken from the channel. The writer does not
/// wait on the channel while rows are coming: a waiting receiver is woken
/// by every row, and on its own thread each wake-up is a system call and a
/// context switch per request. Polled, it wakes twenty times a second
/// while rows wait; with none waiting it sleeps until the next one.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Pause before writing again after the store failed.
const RETRY: Duration = Duration::from_secs(1);
/// At most one drop (or store failure) warning this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The sending side, owned by [`super::Keys`].
pub struct WriterHandle {
    rows: mpsc::Sender<SpendRow>,
    flushes: mpsc::Sender<oneshot::Sender<bool>>,
    dropped: Arc<Dropped>,
}

/// Rows dropped so far, and when that was last logged.
pub struct Dropped {
    count: AtomicU64,
    warnings: Throttle,
}

impl Default for Dropped {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            warnings: Throttle::new(WARN_EVERY),
        }
    }
}

impl Dropped {
    /// Counts `n` dropped rows and warns when the last warning is old enough.
    fn add(&self, n: u64, why: &str) {
        let total = self.count.fetch_add(n, Ordering::Relaxed) + n;
        if self.warnings.allow() {
            tracing::warn!(dropped_total = total, "spend-log rows dropped: {why}");
        }
    }

    /// Rows dropped since start.
    pub fn total(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl WriterHandle {
    /// Starts the writer on a thread of its own (see [`run_beside`]); it
    /// resets due budgets with `resets` before each batch and every
    /// [`RESET_EVERY`].
    pub fn start(store: Store, settings: &KeysSettings, resets: Option<BudgetResets>) -> Self {
        let capacity = settings.buffer_rows.max(1);
        let (rows, rx) = mpsc::channel(capacity);
        let (flushes, flush_rx) = mpsc::channel(8);
        let dropped = Arc::new(Dropped::default());
        let task = Task {
            store,
            rows: rx,
            flushes: flush_rx,
            pending: Vec::new(),
            capacity,
            interval: settings.write_interval,
            keep_logs: !settings.disable_spend_logs,
            dropped: dropped.clone(),
            failing: false,
            resets,
            next_reset: tokio::time::Instant::now(),
        };
        run_beside(task);
        Self {
            rows,
            flushes,
            dropped,
        }
    }

    /// Queues a row; never blocks. A full buffer drops the row (counted).
    pub fn push(&self, row: SpendRow) {
        if self.rows.try_send(row).is_err() {
            self.dropped.add(
                1,
                "the spend buffer is full (the store is slow or unreachable)",
            );
        }
    }

    /// Writes everything queued so far; false if that did not finish in `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.flushes.send(tx).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)))
    }

    /// Rows dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.total()
    }
}

/// Runs the writer on its own thread and single-threaded runtime, so a
/// batch's work (summing a second's rows by key, binding thousands of
/// values) never holds a request worker: on a shared worker it delayed
/// every request queued behind it by a millisecond or more, once a second,
/// which is where a keyed gateway's p99 went. The operating system shares
/// the cores between it and the workers, with the workers first (see
/// [`lower_priority`]). Where no thread can be started, it runs as a task
/// of the current runtime instead.
fn run_beside(task: Task) {
    let (hand_over, receive) = std::sync::mpsc::sync_channel::<Task>(1);
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            std::thread::Builder::new()
                .name("spend-writer".into())
                .spawn(move || {
                    lower_priority();
                    if let Ok(task) = receive.recv() {
                        // Inside the runtime: a new pool starts its
                        // maintenance task on the runtime it is made in.
                        runtime.block_on(async move { task.with_own_connections().run().await });
                    }
                })
        });
    let task = match started {
        Ok(_) => match hand_over.send(task) {
            Ok(()) => return,
            Err(returned) => returned.0,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the spend writer's thread; it shares the request workers");
            task
        }
    };
    tokio::spawn(task.run());
}

/// The writer's nice value. A second's batch is tens of milliseconds of
/// work at once; at the workers' own priority it took a core from them for
/// that long, and the requests that came meanwhile waited (the keyed
/// gateway's p99). One step of nice is about a tenth less CPU share, so at
/// 5 the writer yields to waking request threads yet still gets about a
/// third of a busy worker's share: far more than it needs to keep up.
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = 5;

/// Runs the calling thread, and the threads it starts (the SQLite
/// connection the writer opens), below the request workers. Linux keeps
/// the nice value per thread; a failure only leaves the priority as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, WRITER_NICE) {
        tracing::debug!(error = %e, "the spend writer keeps the workers' priority");
    }
}

struct Task {
    store: Store,
    rows: mpsc::Receiver<SpendRow>,
    flushes: mpsc::Receiver<oneshot::Sender<bool>>,
    pending: Vec<SpendRow>,
    capacity: usize,
    interval: Duration,
    keep_logs: bool,
    dropped: Arc<Dropped>,
    failing: bool,
    resets: Option<BudgetResets>,
    /// When due budgets are next looked for if no batch comes first.
    next_reset: tokio::time::Instant,
}

impl Task {
    /// The task with store connections of its own runtime's.
    fn with_own_connections(self) -> Self {
        Self {
            store: self.store.own_connections(),
            ..self
        }
    }

    async fn run(mut self) {
        loop {
            let (flush, closed) = self.gather().await;
            if flush.is_some() {
                self.drain();
            }
            let written = self.write_pending().await;
            if let Some(reply) = flush {
                let _ = reply.send(written);
            }
            if closed {
                return;
            }
        }
    }

    /// Waits until a batch is due: full, its interval over, a flush asked
    /// for, or every sender gone. Returns the flush reply and whether closed.
    async fn gather(&mut self) -> (Option<oneshot::Sender<bool>>, bool) {
        let deadline =
            tokio::time::Instant::now() + if self.failing { RETRY } else { self.interval };
        loop {
            if self.drain() {
                return (None, true);
            }
            if self.pending.is_empty() && !self.failing {
                // Nothing to write: wait for the next row or flush instead
                // of polling an idle channel. Only the first row after a
                // quiet spell wakes the writer; the rows behind it are
                // polled for again.
                tokio::select! {
                    reply = self.flushes.recv() => return (reply, false),
                    row = self.rows.recv() => match row {
                        Some(row) => self.pending.push(row),
                        None => return (None, true),
                    },
                    // Budgets end whether or not spend is written.
                    () = tokio::time::sleep_until(self.next_reset), if self.resets.is_some() => {
                        return (None, false);
                    }
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            if (self.pending.len() >= self.due() && !self.failing) || now >= deadline {
                return (None, false);
            }
            let next = deadline.min(now + DRAIN_EVERY);
            tokio::select! {
                reply = self.flushes.recv() => return (reply, false),
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Moves the rows waiting in the channel (at most a buffer's worth) to
    /// `pending`; true when every sender is gone and nothing is left.
    fn drain(&mut self) -> bool {
        let mut closed = false;
        for _ in 0..self.capacity {
            match self.rows.try_recv() {
                Ok(row) => self.pending.push(row),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        self.bound_pending();
        closed
    }

    /// Rows that make a batch due: [`BATCH`], or half the buffer when that
    /// is smaller, so a full buffer never drops rows that were about to be
    /// written.
    fn due(&self) -> usize {
        BATCH.min(self.capacity / 2).max(1)
    }

    /// Keeps at most `capacity` rows waiting, dropping the oldest.
    fn bound_pending(&mut self) {
        if self.pending.len() > self.capacity {
            let excess = self.pending.len() - self.capacity;
            self.pending.drain(..excess);
            self.dropped.add(
                u64::try_from(excess).unwrap_or(u64::MAX),
                "the store has been failing and the waiting rows reached the buffer size",
            );
        }
    }

    /// Writes the waiting rows batch by batch; stops at the first failure
    /// (the rows stay for the retry). Whether everything was written.
    async fn write_pending(&mut self) -> bool {
        let ended = match self.reset_due().await {
            Ok(ended) => {
                if self.failing && self.pending.is_empty() {
                    tracing::info!("the key store answers again");
                    self.failing = false;
                }
                ended
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!("cannot reset budgets in the key store, retrying: {e}");
                }
                self.failing = true;
                return false;
            }
        };
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            match self
                .store
                .write_spend_after(&self.pending[..n], self.keep_logs, &ended)
                .await
            {
                Ok(()) => {
                    self.pending.drain(..n);
                    if self.failing {
                        tracing::info!("the key store accepts spend again");
                    }
                    self.failing = false;
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(
                            waiting = self.pending.len(),
                            "cannot write spend to the key store, retrying: {e}"
                        );
                    }
                    self.failing = true;
                    return false;
                }
            }
        }
        true
    }

    /// Resets the budgets whose period has ended, before the waiting rows
    /// are written: the rows of those periods then stay out of the new
    /// periods' totals, and the rows of the new periods count in them.
    async fn reset_due(&mut self) -> Result<EndedPeriods, KeyError> {
        let Some(resets) = &self.resets else {
            return Ok(EndedPeriods::default());
        };
        self.next_reset = tokio::time::Instant::now() + RESET_EVERY;
        resets.run(&self.store, SystemTime::now()).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::keys::store::SpendFilter;
    use crate::keys::store::tests::scratch_store;

    /// Calls on either side of a key's budget boundary, written together
    /// after it: the one made after it counts in the new period (it is not
    /// zeroed with the ended period's spend), the one made before does not
    /// (it is not carried into the new period).
    #[tokio::test]
    async fn calls_count_in_the_period_they_were_made_in() {
        use crate::keys::model::KeyRecord;
        use crate::keys::registry::Registry;
        use crate::keys::reset::ResetClock;
        let (scratch, store) = scratch_store("writer-reset").await;
        let mut key = KeyRecord::for_test("h1");
        key.limits.budget_duration = Some("30s".into());
        key.spend = 0.3;
        let boundary = SystemTime::now() - Duration::from_secs(1);
        key.budget_reset_at = Some(boundary);
        store.insert_key(&key).await.unwrap();
        let resets = BudgetResets {
            clock: ResetClock::default(),
            registry: Registry::new(16, Duration::from_secs(60)),
            end_users: Registry::new(16, Duration::from_secs(60)),
        };
        let settings = KeysSettings::new(scratch.url.clone());
        let writer = WriterHandle::start(store.clone(), &settings, Some(resets));
        let mut before = SpendRow::for_test("in-the-ended-period", Some("h1"));
        before.spend = 0.2;
        before.started_at = boundary - Duration::from_millis(900);
        before.latency_ms = 400;
        writer.push(before);
        let mut after = SpendRow::for_test("in-the-new-period", Some("h1"));
        after.spend = 0.1;
        after.started_at = SystemTime::now();
        writer.push(after);
        assert!(writer.flush(Duration::from_secs(5)).await);
        let stored = store.key("h1").await.unwrap().unwrap();
        assert!((stored.spend - 0.1).abs() < 1e-9, "spend {}", stored.spend);
        assert!(stored.budget_reset_at.unwrap() > SystemTime::now());
    }

    #[tokio::test]
    async fn a_row_after_a_quiet_spell_is_written_without_a_flush() {
        let (scratch, store) = scratch_store("writer-quiet").await;
        let mut settings = KeysSettings::new(scratch.url.clone());
        settings.write_interval = Duration::from_millis(100);
        let writer = WriterHandle::start(store.clone(), &settings, None);
        let everything = SpendFilter {
            limit: 10,
            ..SpendFilter::default()
        };
        for n in 1..=2 {
            // Quiet long enough for the writer to wait on the channel.
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer.push(SpendRow::for_test(&format!("req-{n}"), None));
            let deadline = Instant::now() + Duration::from_secs(5);
            while store.spend_logs(&everything).await.unwrap().len() < n {
                assert!(Instant::now() < deadline, "row {n} was never written");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
