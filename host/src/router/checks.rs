//! What `/health` and the metrics tell about a deployment beyond its
//! cooldown: the last call that failed (user traffic or a health check) and
//! what the background health checks found. Written on failures and by the
//! checker only, never on a successful request's path.

use std::time::{Duration, SystemTime};

/// Characters of an error message kept.
const MESSAGE_CHARS: usize = 300;

/// A failure, as reported.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The error, without credentials.
    pub message: String,
    pub at: SystemTime,
}

/// The latest health check of a deployment.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub at: SystemTime,
    pub latency: Duration,
    /// Why it failed; `None` when the deployment answered.
    pub error: Option<String>,
}

/// A deployment's failure and health-check record.
#[derive(Debug, Default)]
pub struct Checks {
    pub last_error: Option<Failure>,
    pub last_check: Option<CheckResult>,
    /// Health checks that succeeded and failed since start.
    pub passed: u64,
    pub failed: u64,
    /// Calls of client traffic that failed since start, those a retry or a
    /// fallback then rescued included.
    pub calls_failed: u64,
}

impl Checks {
    /// Notes a failed call; `message` is already free of credentials.
    pub fn record_error(&mut self, message: String) {
        self.last_error = Some(Failure {
            message: message.chars().take(MESSAGE_CHARS).collect(),
            at: SystemTime::now(),
        });
    }

    /// Notes a failed call of client traffic; `message` is already free
    /// of credentials.
    pub fn record_call_failure(&mut self, message: String) {
        self.calls_failed += 1;
        self.record_error(message);
    }

    /// Notes a health check's result (a failure is also the last error).
    pub fn record_check(&mut self, latency: Duration, error: Option<String>) {
        let error = error.map(|e| e.chars().take(MESSAGE_CHARS).collect::<String>());
        match &error {
            Some(message) => {
                self.failed += 1;
                self.record_error(message.clone());
            }
            None => self.passed += 1,
        }
        self.last_check = Some(CheckResult {
            at: SystemTime::now(),
            latency,
            error,
        });
    }

    /// Whether the latest health check failed.
    pub fn failing(&self) -> bool {
        self.last_check.as_ref().is_some_and(|c| c.error.is_some())
    }
}
