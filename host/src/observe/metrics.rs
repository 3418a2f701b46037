//! The Prometheus metrics of `GET /metrics`.
//!
//! Built on the `prometheus-client` crate: it is maintained by the
//! Prometheus organisation, its metric families are typed (a label set is a
//! struct, so a metric cannot be recorded with a missing or misspelt label),
//! and it writes the OpenMetrics text format Prometheus scrapes natively.
//!
//! Counters and histograms are updated from outcomes by the metrics sink, on
//! the outcome dispatcher thread, never on the response path. Gauges that
//! describe the gateway now (in-flight requests, deployment state, reloads)
//! are read when scraped.
//!
//! Every label value comes from the config or from a small fixed set: never
//! a key, a caller or a client-chosen string, so the number of series stays
//! bounded whatever clients send. A requested model that no group serves is
//! recorded as `unknown`, and a model reached through a wildcard group
//! (`openai/*`) is recorded as the group's pattern.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::series::SeriesMemo;
use crate::ops::{Outcome, OutcomeKind, RequestId};

/// OpenTelemetry's advised buckets for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// OpenTelemetry's advised buckets for `gen_ai.client.operation.duration`.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// OpenTelemetry's advised buckets for `gen_ai.server.time_to_first_token`.
const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The gateway's own time is expected in the sub-millisecond range.
const OVERHEAD_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const SUB_CALL_BUCKETS: [f64; 12] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0,
];
/// Composite runs whose sub-calls are being counted; past it the counts are
/// dropped (a parent outcome lost to a full channel must not leak entries).
const MAX_OPEN_RUNS: usize = 100_000;

/// The label value for anything not known (a failure before routing).
pub const UNKNOWN: &str = "unknown";
/// The label of values from outside past [`MAX_OUTSIDE_VALUES`].
const OTHER: &str = "other";
/// Distinct label values taken from upstream answers (a reported model, an
/// error code): an upstream that makes up a new one for every answer must
/// not grow the families without bound.
const MAX_OUTSIDE_VALUES: usize = 256;

/// `value` as a label value of the text format: prometheus-client writes
/// label values as they are, so a `\`, `"` or line break (a model name an
/// upstream reported, say) would end the value or the line early and forge
/// samples. Those are escaped as the format says; other control characters
/// become U+FFFD.
fn label(value: &str) -> String {
    if !value
        .chars()
        .any(|c| c == '\\' || c == '"' || c.is_control())
    {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Labels of the GenAI operation metrics (OpenTelemetry's attribute names,
/// dots made underscores).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenAiLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_provider_name: String,
    pub gen_ai_request_model: String,
    pub gen_ai_response_model: String,
    pub error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: String,
    gen_ai_request_model: String,
    gen_ai_response_model: String,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    model_group: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    model_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    model_group: String,
    fallback_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    profile: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    /// `request` or `sub_call`.
    kind: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabel {
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    model_group: String,
    deployment: String,
    provider: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabel {
    model_group: String,
    deployment: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthCheckLabels {
    model_group: String,
    deployment: String,
    provider: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(
    constructor: fn() -> Histogram,
) -> HistogramFamily<L> {
    Family::new_with_constructor(constructor)
}

/// What one outcome is, as the metrics label it; resolved by the sink,
/// which knows the deployments' providers.
pub struct Resolved<'a> {
    pub outcome: &'a Outcome,
    /// The model group that answered, or for a failure the configured group
    /// the request named; `None` when the name matches no group.
    pub model_group: Option<&'a str>,
    /// The provider of the deployment that answered (or of the group asked).
    pub provider: &'a str,
    /// The `model` an answer reported, when it is safe to use as a label.
    pub response_model: Option<&'a str>,
}

/// A request's series, by route, model group and status class; each made
/// the first time it is recorded, as the families would.
#[derive(Default)]
struct RequestSeries {
    requests: Option<Counter>,
    overhead: Option<Histogram>,
}

/// A model call's series, by operation, provider, requested model,
/// answering model and error type.
#[derive(Default)]
struct CallSeries {
    duration: Option<Histogram>,
    time_to_first_token: Option<Histogram>,
    input_tokens: Option<Histogram>,
    output_tokens: Option<Histogram>,
}

/// Every metric updated from outcomes.
pub struct Metrics {
    registry: Registry,
    token_usage: HistogramFamily<TokenLabels>,
    operation_duration: HistogramFamily<GenAiLabels>,
    time_to_first_token: HistogramFamily<GenAiLabels>,
    requests: Family<RequestLabels, Counter>,
    overhead: HistogramFamily<RouteLabel>,
    retries: Family<GroupLabel, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    strategy_runs: Family<RunLabels, Counter>,
    sub_calls: HistogramFamily<ProfileLabel>,
    cache: Family<CacheLabels, Counter>,
    /// Sub-calls counted per composite request until its own outcome arrives.
    open_runs: Mutex<HashMap<RequestId, u32>>,
    /// Label values seen from outside, at most [`MAX_OUTSIDE_VALUES`].
    outside: Mutex<HashSet<Box<str>>>,
    request_series: SeriesMemo<RequestSeries>,
    call_series: SeriesMemo<CallSeries>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            token_usage: histograms(|| Histogram::new(TOKEN_BUCKETS)),
            operation_duration: histograms(|| Histogram::new(DURATION_BUCKETS)),
            time_to_first_token: histograms(|| Histogram::new(TTFT_BUCKETS)),
            requests: Family::default(),
            overhead: histograms(|| Histogram::new(OVERHEAD_BUCKETS)),
            retries: Family::default(),
            fallbacks: Family::default(),
            strategy_runs: Family::default(),
            sub_calls: histograms(|| Histogram::new(SUB_CALL_BUCKETS)),
            cache: Family::default(),
            open_runs: Mutex::default(),
            outside: Mutex::default(),
            request_series: SeriesMemo::default(),
            call_series: SeriesMemo::default(),
        };
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "gen_ai_client_token_usage",
            "Tokens used per model call, by token type (input/output)",
            self.token_usage.clone(),
        );
        r.register(
            "gen_ai_client_operation_duration_seconds",
            "Duration of model calls, seconds",
            self.operation_duration.clone(),
        );
        r.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first streamed chunk of a model call, seconds",
            self.time_to_first_token.clone(),
        );
        r.register(
            "conclave_requests",
            "Client requests by route, model group and status class",
            self.requests.clone(),
        );
        r.register(
            "conclave_overhead_seconds",
            "Gateway time of a plain request before its answer starts, excluding upstream time",
            self.overhead.clone(),
        );
        r.register(
            "conclave_retries",
            "Upstream calls beyond the first (attempts - 1) per model call",
            self.retries.clone(),
        );
        r.register(
            "conclave_fallbacks",
            "Model calls answered by a fallback group",
            self.fallbacks.clone(),
        );
        r.register(
            "conclave_strategy_runs",
            "Composite strategy runs by profile and outcome",
            self.strategy_runs.clone(),
        );
        r.register(
            "conclave_strategy_sub_calls",
            "Model calls made per composite strategy run",
            self.sub_calls.clone(),
        );
        r.register(
            "conclave_cache",
            "Response cache results (hit, miss, stored, bypass) of requests and sub-calls",
            self.cache.clone(),
        );
        self
    }

    /// Records one outcome.
    pub fn record(&self, r: &Resolved<'_>) {
        let o = r.outcome;
        if o.cache != crate::ops::CacheStatus::None {
            let kind = match o.kind {
                OutcomeKind::Request => "request",
                OutcomeKind::SubCall => "sub_call",
            };
            self.cache
                .get_or_create(&CacheLabels {
                    kind,
                    status: o.cache.label(),
                })
                .inc();
        }
        match o.kind {
            OutcomeKind::Request => self.record_request(r),
            OutcomeKind::SubCall => {
                if let Some(parent) = &o.parent_request_id
                    && let Ok(mut open) = self.open_runs.lock()
                {
                    if open.len() >= MAX_OPEN_RUNS {
                        open.clear();
                    }
                    *open.entry(parent.clone()).or_default() += 1;
                }
            }
        }
        // A composite request's model calls are its sub-calls: counting the
        // request too would count its tokens twice.
        // A cache hit called no model, nor did a request refused at the door.
        let called = o.cache != crate::ops::CacheStatus::Hit && !o.refused_before_auth();
        if called
            && (o.kind == OutcomeKind::SubCall || o.composite.is_none() && o.profile.is_none())
        {
            self.record_model_call(r);
        }
    }

    fn record_request(&self, r: &Resolved<'_>) {
        let o = r.outcome;
        let route = &*o.route;
        let group = r.model_group.unwrap_or(UNKNOWN);
        let status = status_class(o.status);
        self.request_series.with(&[route, group, status], |series| {
            series
                .requests
                .get_or_insert_with(|| {
                    let labels = RequestLabels {
                        route: label(route),
                        model_group: label(group),
                        status_class: status,
                    };
                    self.requests.get_or_create(&labels).clone()
                })
                .inc();
            if let Some(overhead) = o.overhead {
                series
                    .overhead
                    .get_or_insert_with(|| {
                        let labels = RouteLabel {
                            route: label(route),
                        };
                        self.overhead.get_or_create(&labels).clone()
                    })
                    .observe(overhead.as_secs_f64());
            }
        });
        if let Some(profile) = &o.profile {
            let outcome = match o.status {
                s if s < 400 => "success",
                crate::ops::CLIENT_CLOSED => "client_closed",
                _ => "error",
            };
            self.strategy_runs
                .get_or_create(&RunLabels {
                    profile: label(profile),
                    outcome,
                })
                .inc();
            let calls = self
                .open_runs
                .lock()
                .ok()
                .and_then(|mut open| open.remove(&o.request_id))
                .unwrap_or(0);
            self.sub_calls
                .get_or_create(&ProfileLabel {
                    profile: label(profile),
                })
                .observe(f64::from(calls));
        }
    }

    /// `value` when it is one of the first [`MAX_OUTSIDE_VALUES`] seen
    /// from outside, else [`OTHER`].
    fn bounded<'a>(&self, value: &'a str) -> &'a str {
        let Ok(mut seen) = self.outside.lock() else {
            return OTHER;
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() >= MAX_OUTSIDE_VALUES {
            return OTHER;
        }
        seen.insert(value.into());
        value
    }

    fn record_model_call(&self, r: &Resolved<'_>) {
        let o = r.outcome;
        let request_model = model_label(r);
        let response_model = match r.response_model {
            Some(reported) if reported != request_model => self.bounded(reported),
            _ => request_model,
        };
        let operation = operation_name(&o.route);
        // A failure without an error code of its own (a client that left,
        // 499) is named by its status, as OpenTelemetry's error.type asks.
        let status_text;
        let error = match o.error.as_deref() {
            Some(error) => self.bounded(error),
            None if o.status >= 400 => {
                status_text = o.status.to_string();
                status_text.as_str()
            }
            None => "",
        };
        let values = [operation, r.provider, request_model, response_model, error];
        let labels = || GenAiLabels {
            gen_ai_operation_name: operation,
            gen_ai_provider_name: label(r.provider),
            gen_ai_request_model: label(request_model),
            gen_ai_response_model: label(response_model),
            error_type: label(error),
        };
        let tokens = |token_type| TokenLabels {
            gen_ai_operation_name: operation,
            gen_ai_provider_name: label(r.provider),
            gen_ai_request_model: label(request_model),
            gen_ai_response_model: label(response_model),
            gen_ai_token_type: token_type,
        };
        self.call_series.with(&values, |series| {
            series
                .duration
                .get_or_insert_with(|| self.operation_duration.get_or_create(&labels()).clone())
                .observe(o.latency.as_secs_f64());
            if o.stream
                && let Some(ttft) = o.time_to_first_token
            {
                series
                    .time_to_first_token
                    .get_or_insert_with(|| {
                        self.time_to_first_token.get_or_create(&labels()).clone()
                    })
                    .observe(ttft.as_secs_f64());
            }
            if let Some(usage) = o.usage() {
                series
                    .input_tokens
                    .get_or_insert_with(|| self.token_usage.get_or_create(&tokens("input")).clone())
                    .observe(usage.prompt_tokens as f64);
                series
                    .output_tokens
                    .get_or_insert_with(|| {
                        self.token_usage.get_or_create(&tokens("output")).clone()
                    })
                    .observe(usage.completion_tokens as f64);
            }
        });
        // Under the group the call was for, as its fallbacks are: a call
        // whose primary failed and whose fallback answered retried the
        // primary, not the group that answered.
        if o.attempts > 1 {
            self.retries
                .get_or_create(&GroupLabel {
                    model_group: label(model_label(r)),
                })
                .inc_by(u64::from(o.attempts - 1));
        }
        if let Some(fallback) = &o.fallback {
            self.fallbacks
                .get_or_create(&FallbackLabels {
                    model_group: label(model_label(r)),
                    fallback_group: label(fallback),
                })
                .inc();
        }
    }

    /// The exposition text: the recorded families, then `live`'s gauges.
    pub fn render(&self, live: &Live) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        encode_registry(&mut out, &self.registry)?;
        encode_registry(&mut out, &live.registry())?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// One deployment as the state gauge reports it.
pub struct DeploymentState {
    pub model_group: String,
    pub deployment: String,
    pub provider: String,
    pub cooling: bool,
    /// The last background health check failed.
    pub failing: bool,
    /// Background health checks passed and failed since start.
    pub checks_passed: u64,
    pub checks_failed: u64,
    /// Calls of client traffic that failed, rescued ones included.
    pub calls_failed: u64,
}

/// What is read from the gateway when scraped.
#[derive(Default)]
pub struct Live {
    pub in_flight: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub outcomes_dropped: u64,
    /// The key store's counters, when keys are on.
    pub key_store: Option<KeyStoreCounts>,
    /// Failed calls to the shared state's Redis, when limits are shared.
    pub shared_state_failures: Option<u64>,
    pub deployments: Vec<DeploymentState>,
}

/// What the key store has done since start.
pub struct KeyStoreCounts {
    /// SQL statements run, BEGIN and COMMIT included.
    pub statements: u64,
    /// Spend-log rows dropped because the writer's buffer was full.
    pub spend_rows_dropped: u64,
}

impl Live {
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let in_flight: Gauge = Gauge::default();
        in_flight.set(i64::try_from(self.in_flight).unwrap_or(i64::MAX));
        r.register(
            "conclave_in_flight_requests",
            "Requests being served now (streams count until they end)",
            in_flight,
        );
        let reloads: Family<ReloadLabel, Counter> = Family::default();
        reloads
            .get_or_create(&ReloadLabel { outcome: "ok" })
            .inc_by(self.reloads_ok);
        reloads
            .get_or_create(&ReloadLabel { outcome: "failed" })
            .inc_by(self.reloads_failed);
        r.register(
            "conclave_config_reloads",
            "Config reloads since start, by outcome",
            reloads,
        );
        let dropped: Counter = Counter::default();
        dropped.inc_by(self.outcomes_dropped);
        r.register(
            "conclave_outcomes_dropped",
            "Outcomes dropped because the sinks fell behind (metrics and logs miss them)",
            dropped,
        );
        if let Some(store) = &self.key_store {
            let statements: Counter = Counter::default();
            statements.inc_by(store.statements);
            r.register(
                "conclave_key_store_statements",
                "SQL statements the key store has run since start (BEGIN and COMMIT included); \
                 spend is written in batches, so this grows far slower than requests",
                statements,
            );
            let rows: Counter = Counter::default();
            rows.inc_by(store.spend_rows_dropped);
            r.register(
                "conclave_spend_rows_dropped",
                "Spend-log rows dropped because the store fell behind and the buffer was full",
                rows,
            );
        }
        if let Some(failures) = self.shared_state_failures {
            let failed: Counter = Counter::default();
            failed.inc_by(failures);
            r.register(
                "conclave_shared_state_failures",
                "Calls to the shared state's Redis that failed or timed out; while they \
                 fail, admissions are decided by this instance's own counters",
                failed,
            );
        }
        let states: Family<DeploymentLabels, Gauge> = Family::default();
        for d in &self.deployments {
            let states_of = [
                ("healthy", !d.cooling && !d.failing),
                ("cooling", d.cooling),
                ("unhealthy", !d.cooling && d.failing),
            ];
            for (state, on) in states_of {
                states
                    .get_or_create(&DeploymentLabels {
                        model_group: label(&d.model_group),
                        deployment: label(&d.deployment),
                        provider: label(&d.provider),
                        state,
                    })
                    .set(i64::from(on));
            }
        }
        r.register(
            "conclave_deployment_state",
            "1 for the state each deployment is in (healthy, cooling, or unhealthy: its last \
             background health check failed)",
            states,
        );
        let checks: Family<HealthCheckLabels, Counter> = Family::default();
        for d in &self.deployments {
            for (result, count) in [("passed", d.checks_passed), ("failed", d.checks_failed)] {
                checks
                    .get_or_create(&HealthCheckLabels {
                        model_group: label(&d.model_group),
                        deployment: label(&d.deployment),
                        provider: label(&d.provider),
                        result,
                    })
                    .inc_by(count);
            }
        }
        let failed_calls: Family<DeploymentLabel, Counter> = Family::default();
        for d in &self.deployments {
            failed_calls
                .get_or_create(&DeploymentLabel {
                    model_group: label(&d.model_group),
                    deployment: label(&d.deployment),
                    provider: label(&d.provider),
                })
                .inc_by(d.calls_failed);
        }
        r.register(
            "conclave_deployment_failed_calls",
            "Upstream calls of client traffic that failed since start, by deployment, those a \
             retry or a fallback then rescued included (the request's own status hides them)",
            failed_calls,
        );
        r.register(
            "conclave_health_checks",
            "Background health checks since start, by deployment and result",
            checks,
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("conclave_build_info", "The running conclave version", build);
        r
    }
}

/// `2xx`, `4xx`, `5xx`, ...
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// OpenTelemetry's operation name for a route.
fn operation_name(route: &str) -> &'static str {
    // The Messages and Responses APIs are chat calls, as their spans say.
    if route.ends_with("chat/completions")
        || route.ends_with("messages")
        || route.ends_with("responses")
    {
        "chat"
    } else if route.ends_with("completions") {
        "text_completion"
    } else if route.ends_with("embeddings") {
        "embeddings"
    } else if route.ends_with("moderations") {
        "moderation"
    } else if route.ends_with("images/generations") {
        "image_generation"
    } else if route.ends_with("rerank") {
        "rerank"
    } else {
        "other"
    }
}

/// The requested model as a bounded label: the name asked for when a
/// configured group answered to it, the wildcard pattern when a wildcard
/// group did, `unknown` when nothing did.
fn model_label<'a>(r: &Resolved<'a>) -> &'a str {
    match r.model_group {
        Some(group) if group.contains('*') => group,
        Some(_) => &r.outcome.model,
        None => UNKNOWN,
    }
}

/// Whether an answer's reported `model` may be a label: only for groups
/// that are not wildcards (whose upstream is chosen by the config).
pub fn response_model_allowed(o: &Outcome) -> bool {
    o.model_group.as_deref().is_some_and(|g| !g.contains('*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_and_status_classes() {
        assert_eq!(operation_name("/v1/chat/completions"), "chat");
        assert_eq!(operation_name("/completions"), "text_completion");
        assert_eq!(operation_name("/v1/embeddings"), "embeddings");
        assert_eq!(operation_name("/v1/messages"), "chat");
        assert_eq!(operation_name("/v1/responses"), "chat");
        assert_eq!(operation_name("/moderations"), "moderation");
        assert_eq!(operation_name("/v1/images/generations"), "image_generation");
        assert_eq!(operation_name("/v2/rerank"), "rerank");
        assert_eq!(status_class(499), "4xx");
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(503), "5xx");
    }

    #[test]
    fn an_empty_registry_renders_valid_text() {
        let text = Metrics::new().render(&Live::default()).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("conclave_build_info{version="), "{text}");
    }

    #[test]
    fn label_values_from_outside_cannot_forge_samples() {
        let forged = "evil\"} 1\nconclave_fake_total 42\n# x";
        let escaped = label(forged);
        assert!(!escaped.contains('\n'), "{escaped}");
        assert_eq!(escaped, r#"evil\"} 1\nconclave_fake_total 42\n# x"#);
        assert_eq!(label("back\\slash"), r"back\\slash");
        assert_eq!(label("plain-name"), "plain-name");
    }

    #[test]
    fn values_from_outside_are_bounded() {
        let m = Metrics::new();
        let names: Vec<String> = (0..MAX_OUTSIDE_VALUES + 5)
            .map(|i| format!("m{i}"))
            .collect();
        let kept: Vec<&str> = names.iter().map(|n| m.bounded(n)).collect();
        assert_eq!(kept[0], "m0");
        assert_eq!(kept[MAX_OUTSIDE_VALUES + 1], OTHER);
        assert_eq!(m.bounded("m0"), "m0", "a value seen before stays itself");
    }
}
