//! Ending every open stream at once. Shutdown gives open streams a grace
//! period; when it is over the server fires the cutoff, and every
//! [`super::tracked::Tracked`] stream ends with one shutdown error event.
//!
//! A stream costs nothing here until it first waits: it then registers its
//! task's waker once (one lock), keeps a copy to see whether a later wait is
//! from the same task (no lock), and unregisters when dropped (one lock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

/// The shared switch; cheap to clone (one reference count).
#[derive(Clone, Default)]
pub struct StreamCutoff {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    waiting: Mutex<Slots>,
}

/// The wakers of the streams that are waiting, by slot; freed slots are reused.
#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl StreamCutoff {
    /// Ends every open stream: each waiting one is woken and sees the cutoff.
    pub fn fire(&self) {
        self.shared.fired.store(true, Ordering::Release);
        let slots = self.shared.slots();
        for waker in slots.wakers.iter().flatten() {
            waker.wake_by_ref();
        }
    }

    /// Whether [`StreamCutoff::fire`] was called.
    pub fn is_fired(&self) -> bool {
        self.shared.fired()
    }

    /// One stream's view of the cutoff.
    pub fn watch(&self) -> CutoffWatch {
        CutoffWatch {
            shared: self.shared.clone(),
            slot: None,
        }
    }
}

/// One stream's registration: see the module docs.
pub struct CutoffWatch {
    shared: Arc<Shared>,
    slot: Option<(usize, Waker)>,
}

impl CutoffWatch {
    /// Whether the cutoff has fired (no registration).
    pub fn is_fired(&self) -> bool {
        self.shared.fired()
    }

    /// True once the cutoff has fired; otherwise makes sure `cx`'s task is
    /// woken when it does.
    pub fn poll_fired(&mut self, cx: &Context<'_>) -> bool {
        if self.is_fired() {
            return true;
        }
        if let Some((_, known)) = &self.slot
            && known.will_wake(cx.waker())
        {
            return false;
        }
        let waker = cx.waker().clone();
        let mut slots = self.shared.slots();
        match &mut self.slot {
            Some((i, known)) => {
                if let Some(stored) = slots.wakers.get_mut(*i) {
                    *stored = Some(waker.clone());
                }
                *known = waker;
            }
            None => {
                let i = match slots.free.pop() {
                    Some(i) => {
                        if let Some(stored) = slots.wakers.get_mut(i) {
                            *stored = Some(waker.clone());
                        }
                        i
                    }
                    None => {
                        slots.wakers.push(Some(waker.clone()));
                        slots.wakers.len() - 1
                    }
                };
                self.slot = Some((i, waker));
            }
        }
        drop(slots);
        // A fire that took the lock before this registration is seen here.
        self.is_fired()
    }
}

impl Drop for CutoffWatch {
    fn drop(&mut self) {
        if let Some((i, _)) = self.slot.take() {
            let mut slots = self.shared.slots();
            if let Some(stored) = slots.wakers.get_mut(i) {
                *stored = None;
                slots.free.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_stream_is_woken_once_fired_and_slots_are_reused() {
        let cutoff = StreamCutoff::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);
        let mut a = cutoff.watch();
        assert!(!a.poll_fired(&cx));
        assert!(!a.poll_fired(&cx));
        {
            let mut b = cutoff.watch();
            assert!(!b.poll_fired(&cx));
        }
        let mut c = cutoff.watch();
        assert!(!c.poll_fired(&cx));
        assert_eq!(cutoff.shared.slots().wakers.len(), 2);
        cutoff.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.poll_fired(&cx) && c.is_fired() && cutoff.is_fired());
    }
}
