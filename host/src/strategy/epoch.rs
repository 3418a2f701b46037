//! The clock that bounds a strategy's CPU time. Wasmtime interrupts a guest
//! when the engine's epoch passes the store's deadline, so something must
//! advance the epoch every [`EPOCH_TICK`] while guest code runs. One thread
//! does it, and only while at least one run is alive: with no composite
//! request in flight it parks, and an idle gateway does not wake a hundred
//! times a second for it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use super::limits::EPOCH_TICK;

/// How often a parked clock checks whether its engine is gone, so that the
/// thread ends with the engine even if no run ever starts again.
const PARKED_CHECK: Duration = Duration::from_secs(1);

/// The epoch ticker of one engine, shared by the engine and every compiled
/// strategy (each run holds a [`Ticking`] while its store lives).
pub struct EpochClock {
    /// Runs alive now.
    running: Mutex<usize>,
    /// Woken when the first run starts.
    started: Condvar,
}

impl EpochClock {
    /// Starts the thread that advances `engine`'s epoch while runs are
    /// alive; it ends when the engine is dropped.
    pub fn start(engine: &Engine) -> Result<Arc<Self>, std::io::Error> {
        let clock = Arc::new(Self {
            running: Mutex::new(0),
            started: Condvar::new(),
        });
        let ticker = Arc::clone(&clock);
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("conclave-epoch".into())
            .spawn(move || ticker.tick(&engine))?;
        Ok(clock)
    }

    /// Keeps the clock ticking until the returned guard is dropped: taken by
    /// a run before its store exists.
    pub fn run_started(self: &Arc<Self>) -> Ticking {
        let mut running = self.lock();
        *running += 1;
        if *running == 1 {
            self.started.notify_one();
        }
        Ticking(Arc::clone(self))
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // The count stays right whatever panicked while holding the lock:
        // every change to it is a single add or subtract.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's loop: one tick per [`EPOCH_TICK`] while a run is alive.
    fn tick(&self, engine: &EngineWeak) {
        loop {
            if !self.wait_for_a_run(engine) {
                return;
            }
            let Some(engine) = engine.upgrade() else {
                return;
            };
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    }

    /// Parks until a run is alive; false once the engine is gone.
    fn wait_for_a_run(&self, engine: &EngineWeak) -> bool {
        let mut running = self.lock();
        while *running == 0 {
            running = match self.started.wait_timeout(running, PARKED_CHECK) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if *running == 0 && engine.upgrade().is_none() {
                return false;
            }
        }
        true
    }
}

/// One alive run's hold on the [`EpochClock`]; the clock may park once
/// every hold is dropped.
pub struct Ticking(Arc<EpochClock>);

impl Drop for Ticking {
    fn drop(&mut self) {
        let mut running = self.0.lock();
        *running = running.saturating_sub(1);
    }
}
