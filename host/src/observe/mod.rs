//! Observability: the Prometheus metrics the `/metrics` route serves, the
//! OpenTelemetry traces, and the per-request log files. The outcome sinks in [`crate::ops::sinks`] feed
//! them, off the response path.

pub mod metrics;
pub mod otel;
pub mod request_log;
mod series;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::GeneralSettings;

/// The observability a server was started with (read once, at start-up):
/// what the sinks record into and what `/metrics` serves.
#[derive(Debug, Clone)]
pub struct Observe {
    pub metrics: Arc<metrics::Metrics>,
    /// `/metrics` answers without the master key.
    pub public_metrics: bool,
    /// Where and how request logs are written; `None` when they are off.
    pub request_log: Option<request_log::Settings>,
}

/// Stream payloads a request's outcome keeps when request logs are on
/// (otherwise only the last two, where usage is).
pub const LOGGED_STREAM_PAYLOADS: usize = 4096;
/// Stream payloads each streamed request keeps for its outcome. Process-wide
/// because the stream wrapper is built far from the sinks; set once at
/// start-up.
static STREAM_PAYLOADS_KEPT: AtomicUsize = AtomicUsize::new(2);

/// How many stream payloads a streamed request keeps for its outcome.
pub fn stream_payloads_kept() -> usize {
    STREAM_PAYLOADS_KEPT.load(Ordering::Relaxed)
}

/// Whether request logs are on. Process-wide for the same reason: the
/// contexts that record what only request logs need (the request body,
/// each upstream attempt) are made far from the sinks; set once at start-up.
static REQUEST_LOGS_ON: AtomicBool = AtomicBool::new(false);

/// Whether model calls should record what request logs show.
pub fn request_logs_on() -> bool {
    REQUEST_LOGS_ON.load(Ordering::Relaxed)
}

/// Whether model calls record each upstream attempt: for request logs and
/// for the dashboard's request pages. Set once at start-up.
static ATTEMPTS_RECORDED: AtomicBool = AtomicBool::new(false);

/// Whether model calls should record each upstream attempt.
pub fn attempts_recorded() -> bool {
    ATTEMPTS_RECORDED.load(Ordering::Relaxed)
}

/// Makes model calls record each upstream attempt (the dashboard shows them).
pub fn record_attempts() {
    ATTEMPTS_RECORDED.store(true, Ordering::Relaxed);
}

/// The environment variable that turns request logs on when the config
/// names no directory.
pub const REQUEST_LOG_DIR_ENV: &str = "CONCLAVE_REQUEST_LOG_DIR";

impl Observe {
    /// Settings from `general_settings` of the config at `config_path`.
    pub fn from_settings(general: &GeneralSettings, config_path: &Path) -> Self {
        let config_dir = config_path.parent().unwrap_or(Path::new("."));
        let request_log = request_log::Settings::resolve(
            general,
            config_dir,
            std::env::var(REQUEST_LOG_DIR_ENV).ok(),
        );
        if request_log.is_some() {
            STREAM_PAYLOADS_KEPT.fetch_max(LOGGED_STREAM_PAYLOADS, Ordering::Relaxed);
            REQUEST_LOGS_ON.store(true, Ordering::Relaxed);
            record_attempts();
        }
        Self {
            metrics: Arc::new(metrics::Metrics::new()),
            public_metrics: general.public_metrics.unwrap_or(false),
            request_log,
        }
    }
}
