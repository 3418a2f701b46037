//! What the web dashboard (`/ui`) reads: the recent requests with their
//! attempts and composite traces ([`recent`]), and request rates, errors,
//! latency, tokens and spend over the last hour and day ([`series`]). Both
//! are fed by an outcome sink, off the response path, and bounded in memory.
//! The pages themselves are static files embedded in the binary
//! ([`assets`]); the HTTP routes are in `http::dashboard`.

pub mod assets;
pub mod recent;
pub mod series;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::ops::sinks::OutcomeSink;
use crate::ops::{Outcome, OutcomeKind};
use recent::{Entry, Recent, Viewer};
use series::{Point, Series};

/// Requests kept for the live table unless `general_settings.ui_recent_requests` says otherwise.
pub const DEFAULT_RECENT_REQUESTS: usize = 1000;
/// Most requests the ring may be asked to keep (each may hold a 16 KiB body
/// and a composite trace).
pub const MAX_RECENT_REQUESTS: usize = 100_000;

/// The overview's windows: (name, bucket width in seconds, buckets).
const HOUR: (u64, usize) = (60, 60);
const DAY: (u64, usize) = (900, 96);
/// Per-second buckets for the current request rate.
const RATE: (u64, usize) = (1, 120);
/// Seconds the current rate is averaged over.
const RATE_SECONDS: u64 = 60;

/// The dashboard's data, shared by the sink that fills it and the routes
/// that read it. Each lock is held only to push one outcome or copy a view.
pub struct Dashboard {
    recent: Mutex<Recent>,
    series: Mutex<AllSeries>,
    /// Whether request bodies are kept (request logs are on).
    keep_bodies: bool,
}

struct AllSeries {
    rate: Series,
    hour: Series,
    day: Series,
}

/// Which overview window to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    /// Reads `1h` or `1d`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1h" => Some(Self::Hour),
            "1d" => Some(Self::Day),
            _ => None,
        }
    }

    fn shape(self) -> (u64, usize) {
        match self {
            Self::Hour => HOUR,
            Self::Day => DAY,
        }
    }
}

/// The overview: every bucket of the window and its totals.
#[derive(Debug, serde::Serialize)]
pub struct Overview {
    pub window_seconds: u64,
    pub bucket_seconds: u64,
    pub buckets: Vec<series::BucketReport>,
    pub totals: Totals,
}

/// The window's sums and the current rate.
#[derive(Debug, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Requests per second over the last minute.
    pub rps: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

impl Dashboard {
    /// An empty dashboard keeping `recent_requests` requests (and their
    /// bodies when `keep_bodies`).
    pub fn new(recent_requests: usize, keep_bodies: bool) -> Arc<Self> {
        Arc::new(Self {
            recent: Mutex::new(Recent::new(recent_requests.min(MAX_RECENT_REQUESTS))),
            series: Mutex::new(AllSeries {
                rate: Series::new(RATE.0, RATE.1),
                hour: Series::new(HOUR.0, HOUR.1),
                day: Series::new(DAY.0, DAY.1),
            }),
            keep_bodies,
        })
    }

    /// Whether request pages show bodies.
    pub fn keeps_bodies(&self) -> bool {
        self.keep_bodies
    }

    /// The recent requests, locked (poisoning is ignored: the data stays usable).
    pub fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn series(&self) -> MutexGuard<'_, AllSeries> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one outcome: every client request in the series and the ring,
    /// every sub-call in the ring.
    pub fn record(&self, outcome: &Outcome) {
        if outcome.refused_before_auth() {
            return;
        }
        let entry = Entry::from_outcome(outcome, self.keep_bodies);
        if outcome.kind == OutcomeKind::Request {
            let point = point_of(&entry);
            let mut series = self.series();
            series.rate.add(&point);
            series.hour.add(&point);
            series.day.add(&point);
        }
        self.recent().push(entry);
    }

    /// The overview of `window` as `viewer` may see it: everyone's numbers
    /// from the series, or a virtual key's own from the recent requests.
    pub fn overview(&self, window: Window, viewer: &Viewer) -> Overview {
        let now = crate::openai::unix_now();
        let (width, count) = window.shape();
        match viewer {
            Viewer::All => {
                let series = self.series();
                let buckets = match window {
                    Window::Hour => series.hour.window(now),
                    Window::Day => series.day.window(now),
                };
                let rate = series.rate.window(now);
                drop(series);
                overview_of(width, &buckets, &rate)
            }
            Viewer::Key(_) => {
                let mut own = Series::new(width, count);
                let mut rate = Series::new(RATE.0, RATE.1);
                let since = now.saturating_sub(width * count as u64) as f64;
                let filter = recent::Filter {
                    since: Some(since),
                    ..recent::Filter::default()
                };
                for entry in self.recent().list(viewer, &filter, usize::MAX) {
                    let point = point_of(&entry);
                    own.add(&point);
                    rate.add(&point);
                }
                overview_of(width, &own.window(now), &rate.window(now))
            }
        }
    }
}

fn overview_of(width: u64, buckets: &[series::Bucket], rate: &[series::Bucket]) -> Overview {
    let total = series::total(buckets).report();
    let last_minute = rate.len().saturating_sub(RATE_SECONDS as usize);
    let recent_requests = series::total(&rate[last_minute..]).report().requests;
    Overview {
        window_seconds: width * buckets.len() as u64,
        bucket_seconds: width,
        buckets: buckets.iter().map(series::Bucket::report).collect(),
        totals: Totals {
            requests: total.requests,
            errors: total.errors,
            error_rate: if total.requests == 0 {
                0.0
            } else {
                total.errors as f64 / total.requests as f64
            },
            rps: recent_requests as f64 / RATE_SECONDS as f64,
            p50_ms: total.p50_ms,
            p99_ms: total.p99_ms,
            prompt_tokens: total.prompt_tokens,
            completion_tokens: total.completion_tokens,
            cost: total.cost,
        },
    }
}

/// A request as the series count it: at its end.
fn point_of(entry: &Entry) -> Point {
    let s = &entry.summary;
    Point {
        at: s.time + s.duration_ms / 1000.0,
        status: s.status,
        latency_ms: s.duration_ms,
        prompt_tokens: s.prompt_tokens.unwrap_or(0),
        completion_tokens: s.completion_tokens.unwrap_or(0),
        cost: s.cost.unwrap_or(0.0),
    }
}

/// The outcome sink feeding the dashboard.
pub struct DashboardSink(pub Arc<Dashboard>);

impl OutcomeSink for DashboardSink {
    fn name(&self) -> &'static str {
        "dashboard"
    }

    fn record(&self, outcome: &Outcome) {
        self.0.record(outcome);
    }
}
