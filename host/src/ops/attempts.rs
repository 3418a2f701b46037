//! Each upstream call a model call made, for request logs. The router pushes
//! one [`Attempt`] per call into the [`AttemptLog`] its [`CallContext`]
//! carries; the call's outcome takes them when it is emitted. A context
//! carries a log only while request logs are on, so otherwise the router
//! pays one `None` check per call.
//!
//! [`CallContext`]: super::CallContext

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Attempts kept per model call; retries and fallbacks are bounded by the
/// config, this bounds a log whatever the config says.
pub const MAX_ATTEMPTS: usize = 64;

/// One upstream call and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The deployment called (its `model_info.id`).
    pub deployment: Arc<str>,
    /// The model group it belongs to (a fallback's group after a fallback).
    pub group: Arc<str>,
    /// The HTTP status the upstream answered with; `None` when it never
    /// answered (connection failure, timeout) or broke its answer off.
    pub status: Option<u16>,
    /// LiteLLM's error class of a failure (`timeout`, `rate_limit`, ...).
    pub error_class: Option<&'static str>,
    /// Time to the answer (to the first chunk for a stream) or the failure.
    pub duration: Duration,
    /// The failure's message, credentials removed and bounded.
    pub error: Option<String>,
}

/// The attempts of one model call, in the order they were made.
#[derive(Debug, Default)]
pub struct AttemptLog {
    kept: Mutex<Kept>,
    /// Attempts started, finished or not: what a call the client left in
    /// the middle of one had done (counted without the lock).
    begun: AtomicU32,
}

#[derive(Debug, Default)]
struct Kept {
    attempts: Vec<Attempt>,
    /// Attempts past [`MAX_ATTEMPTS`], counted but not kept.
    omitted: u32,
}

impl AttemptLog {
    /// Records one finished attempt. The lock is held only to push: never
    /// across an await.
    pub fn push(&self, attempt: Attempt) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.attempts.len() < MAX_ATTEMPTS {
                kept.attempts.push(attempt);
            } else {
                kept.omitted = kept.omitted.saturating_add(1);
            }
        }
    }

    /// Notes an attempt as it starts.
    pub fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    /// How many attempts started.
    pub fn begun(&self) -> u32 {
        self.begun.load(Ordering::Relaxed)
    }

    /// Takes what was recorded so far (and how many attempts were not kept),
    /// leaving the log empty.
    pub fn take(&self) -> (Vec<Attempt>, u32) {
        match self.kept.lock() {
            Ok(mut kept) => {
                let kept = std::mem::take(&mut *kept);
                (kept.attempts, kept.omitted)
            }
            Err(_) => (Vec::new(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: usize) -> Attempt {
        Attempt {
            deployment: format!("d.{n}").into(),
            group: "d".into(),
            status: Some(200),
            error_class: None,
            duration: Duration::from_millis(1),
            error: None,
        }
    }

    #[test]
    fn a_log_is_bounded_and_taken_once() {
        let log = AttemptLog::default();
        for n in 0..MAX_ATTEMPTS + 3 {
            log.push(attempt(n));
        }
        let (kept, omitted) = log.take();
        assert_eq!(kept.len(), MAX_ATTEMPTS);
        assert_eq!(&*kept[0].deployment, "d.0");
        assert_eq!(omitted, 3);
        assert_eq!(log.take(), (Vec::new(), 0));
    }
}
