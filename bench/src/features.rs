//! The operations layer's optional features, each measured beside the plain
//! run of the same invocation: response-cache hits (memory and Redis
//! backends), full observability (Prometheus metrics, OTLP export of every
//! trace to a local collector, JSON-lines request logs), and the plain load
//! with the dashboard turned off (it is on by default, so the plain run pays
//! for it: the difference is its cost), and a team of 1,000 virtual keys
//! ([`crate::team`]).
//!
//! Each scenario starts its own conclave on the benchmark config plus the
//! feature's settings, warms it up, and measures a fixed rate of 1000 req/s,
//! saturation with 64 connections, and (cache) sequential hits over one
//! connection, client round trip included. A scenario judged against
//! conclave without the feature (observability, the dashboard, the team)
//! starts that plain conclave too and alternates their saturation loads
//! (plain, feature, feature, plain: [`paired`]), so the ratio does not hang
//! on how the machine's speed drifted between scenarios minutes apart.
//! Loops are bounded like the rest of the suite.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::body::chat_body;
use crate::client::Conn;
use crate::oha::{Load, LoadResult};
use crate::procs::Server;
use crate::stats::{Summary, ms, summarize};
use crate::suite::{
    FIXED_RATE_CONNECTIONS, Paired, Plan, SATURATION_CONNECTIONS, Setup, config_yaml, measured,
    paired, start_conclave_with,
};
use crate::{Result, fail};

/// The Redis the Redis-backed cache scenario uses (the machine's own).
pub const REDIS_ADDR: &str = "127.0.0.1:6379";
/// The fixed rate the features are compared at.
pub const FEATURE_RATE: f64 = 1000.0;

/// Cache hits of one backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheHits {
    /// Sequential hits over one keep-alive connection, client round trip
    /// included (ms).
    pub sequential_ms: Summary,
    /// Hits at 1000 req/s (oha, open loop).
    pub at_rate: LoadResult,
    /// Hits as fast as 64 connections go.
    pub saturation: LoadResult,
    /// Hit saturation over the run's direct-to-mock saturation.
    pub saturation_over_direct: f64,
    pub cpu_us_per_request: f64,
    /// Upstream calls the mock saw during the scenario (1: the first miss).
    pub upstream_calls: f64,
}

/// The plain load with metrics, OTLP export and request logs on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observed {
    pub at_rate: LoadResult,
    /// p99 at 1000 req/s over the run's direct p99 at the same rate (ms).
    pub overhead_p99_ms: f64,
    pub overhead_p50_ms: f64,
    pub saturation: LoadResult,
    /// Saturation over that of a conclave without the features, measured
    /// beside it (plain, observed, observed, plain; see [`paired`]).
    pub saturation_over_plain: f64,
    /// The plain conclave's saturation in those phases (req/s).
    #[serde(default)]
    pub paired_plain_rps: f64,
    /// The plain conclave's CPU per request in those phases (µs).
    #[serde(default)]
    pub paired_plain_cpu_us: f64,
    pub cpu_us_per_request: f64,
    /// What reached the collector and the log directory: proof they were on.
    pub otlp_exports: f64,
    pub otlp_bytes: f64,
    pub request_log_bytes: f64,
}

/// The plain load with the dashboard off (`general_settings.ui: false`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WithoutDashboard {
    pub at_rate: LoadResult,
    pub saturation: LoadResult,
    /// Saturation with the dashboard over this one's, measured beside it
    /// (on, off, off, on; see [`paired`]).
    pub plain_over_this: f64,
    pub cpu_us_per_request: f64,
}

/// The floor of a cache hit: the bare axum server answering a fixed body
/// from memory (`bare-forwarder --answer`), at saturation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HitFloor {
    pub at_rate: LoadResult,
    pub saturation: LoadResult,
    pub saturation_over_direct: f64,
    pub cpu_us_per_request: f64,
}

/// Every feature scenario of one run; `None` where it was skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Features {
    pub cache_memory: Option<CacheHits>,
    pub hit_floor: Option<HitFloor>,
    pub cache_redis: Option<CacheHits>,
    pub observed: Option<Observed>,
    #[serde(default)]
    pub without_dashboard: Option<WithoutDashboard>,
    /// 1,000 virtual keys sharing the gateway ([`crate::team`]).
    #[serde(default)]
    pub team: Option<crate::team::Team>,
}

/// What a scenario compares against: figures of the same run.
pub struct Baseline {
    pub direct_saturation_rps: f64,
    pub direct_at_rate: LoadResult,
}

/// Runs every scenario.
pub fn run(
    setup: &Setup,
    rt: &tokio::runtime::Runtime,
    baseline: &Baseline,
    say: &dyn Fn(&str),
) -> Result<Features> {
    say("cache hits, memory backend");
    let cache_memory = Some(cache_hits(setup, rt, baseline, "memory", "type: local")?);
    let hit_floor = match &setup.forwarder_bin {
        Some(bin) => {
            say("the floor of a hit: bare axum answering from memory");
            Some(hit_floor(setup, bin, baseline)?)
        }
        None => None,
    };
    let cache_redis = if TcpStream::connect(REDIS_ADDR).is_ok() {
        say("cache hits, Redis backend");
        let (host, port) = REDIS_ADDR.split_once(':').unwrap_or(("127.0.0.1", "6379"));
        let params = format!(
            "type: redis\n    host: {host}\n    port: {port}\n    namespace: conclave-bench-{}",
            std::process::id()
        );
        Some(cache_hits(setup, rt, baseline, "redis", &params)?)
    } else {
        eprintln!("bench: no Redis on {REDIS_ADDR}: the Redis cache scenario is skipped");
        None
    };
    say("metrics + OTLP export + jsonl request logs");
    let observed = Some(observed(setup, baseline)?);
    say("the plain load with the dashboard off");
    let without_dashboard = Some(without_dashboard(setup)?);
    let team = Some(crate::team::run(setup, say)?);
    Ok(Features {
        cache_memory,
        hit_floor,
        cache_redis,
        observed,
        without_dashboard,
        team,
    })
}

/// Writes the benchmark config with `extra` appended.
pub fn write_variant(setup: &Setup, name: &str, extra: &str) -> Result<PathBuf> {
    let path = setup.work.join(format!("conclave-bench-{name}.yaml"));
    let mut yaml = config_yaml(&setup.work, setup.mock.addr());
    yaml.push_str(extra);
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// oha against `server` with the benchmark body: a warm-up, 1000 req/s,
/// then saturation; the CPU the server spent per request at saturation.
struct Loads {
    at_rate: LoadResult,
    saturation: LoadResult,
    cpu_us_per_request: f64,
}

fn loads(setup: &Setup, server: &Server) -> Result<Loads> {
    let saturate = saturate(setup, server);
    warm_up(setup, server)?;
    let at_rate = at_feature_rate(setup, server)?;
    let saturation = measured(setup, server, saturate)?;
    Ok(Loads {
        at_rate,
        cpu_us_per_request: saturation.server_us,
        saturation: saturation.load,
    })
}

/// Starts a plain conclave (the benchmark config, named `label`) beside
/// `conclave`, warms both up, loads `conclave` at the feature rate, then
/// measures their saturation alternately (plain is side A). The plain one
/// is stopped before returning.
fn beside_plain(setup: &Setup, conclave: &Server, label: &str) -> Result<(LoadResult, Paired)> {
    let (plain, _) = start_conclave_with(setup, &setup.config, label)?;
    warm_up(setup, &plain)?;
    warm_up(setup, conclave)?;
    let at_rate = at_feature_rate(setup, conclave)?;
    let pair = paired(
        setup,
        (&plain, &saturate(setup, &plain)),
        (conclave, &saturate(setup, conclave)),
        1,
    )?;
    Ok((at_rate, pair))
}

/// oha against `server` with the benchmark body.
fn oha(
    setup: &Setup,
    server: &Server,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<LoadResult> {
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", server.port);
    setup.oha.run(&Load {
        url: &url,
        body_file: &setup.body_file,
        connections,
        duration,
        rate,
    })
}

fn warm_up(setup: &Setup, server: &Server) -> Result<LoadResult> {
    oha(
        setup,
        server,
        SATURATION_CONNECTIONS,
        setup.plan.warmup,
        None,
    )
}

fn at_feature_rate(setup: &Setup, server: &Server) -> Result<LoadResult> {
    oha(
        setup,
        server,
        FIXED_RATE_CONNECTIONS,
        setup.plan.phase,
        Some(FEATURE_RATE),
    )
}

/// One saturation load of `server`, as many times as it is called.
fn saturate<'a>(setup: &'a Setup, server: &'a Server) -> impl Fn() -> Result<LoadResult> + 'a {
    move || {
        oha(
            setup,
            server,
            SATURATION_CONNECTIONS,
            setup.plan.phase,
            None,
        )
    }
}

fn cache_hits(
    setup: &Setup,
    rt: &tokio::runtime::Runtime,
    baseline: &Baseline,
    name: &str,
    cache_params: &str,
) -> Result<CacheHits> {
    let extra = format!(
        "litellm_settings:\n  cache: true\n  cache_params:\n    {cache_params}\n    ttl: 3600\n"
    );
    let config = write_variant(setup, &format!("cache-{name}"), &extra)?;
    let (conclave, _) = start_conclave_with(setup, &config, &format!("cache-{name}"))?;
    let calls_before = setup.mock.requests();
    let addr = SocketAddr::from(([127, 0, 0, 1], conclave.port));
    let sequential_ms = rt.block_on(sequential_hits(addr, &setup.plan))?;
    let l = loads(setup, &conclave)?;
    Ok(CacheHits {
        sequential_ms,
        saturation_over_direct: l.saturation.rps / baseline.direct_saturation_rps,
        at_rate: l.at_rate,
        saturation: l.saturation,
        cpu_us_per_request: l.cpu_us_per_request,
        upstream_calls: (setup.mock.requests() - calls_before) as f64,
    })
}

fn hit_floor(setup: &Setup, bin: &Path, baseline: &Baseline) -> Result<HitFloor> {
    let port = crate::procs::free_port()?;
    let log = setup.work.join("bare-answer.log");
    let mut server = Server::bare_forwarder(bin, "--answer", port, &log)?;
    server.wait_healthy(Duration::from_secs(30))?;
    let l = loads(setup, &server)?;
    Ok(HitFloor {
        at_rate: l.at_rate,
        saturation_over_direct: l.saturation.rps / baseline.direct_saturation_rps,
        saturation: l.saturation,
        cpu_us_per_request: l.cpu_us_per_request,
    })
}

/// One miss to fill the entry, ten requests to warm up (the entry is stored
/// off the response path, so the first of them may still miss), then timed
/// hits; every timed one must say `x-conclave-cache: hit`.
async fn sequential_hits(conclave: SocketAddr, plan: &Plan) -> Result<Summary> {
    let body = Bytes::from(chat_body("bench", false));
    let mut conn = Conn::connect(conclave).await?;
    let path = "/v1/chat/completions";
    let first = conn.post(path, &body).await?;
    if first.status != http::StatusCode::OK {
        return Err(fail(format!(
            "the first cached request answered {}",
            first.status
        )));
    }
    let mut hits = Vec::new();
    let deadline = Instant::now() + plan.loop_limit;
    for i in 0..plan.passthrough_requests + 10 {
        if Instant::now() > deadline {
            break;
        }
        let reply = conn.post(path, &body).await?;
        let cache = reply
            .headers
            .get("x-conclave-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if reply.status != http::StatusCode::OK || (i >= 10 && cache != "hit") {
            return Err(fail(format!(
                "a repeated request answered {} with x-conclave-cache {cache:?}",
                reply.status
            )));
        }
        if i >= 10 {
            hits.push(ms(reply.elapsed));
        }
    }
    Ok(summarize(&hits))
}

fn observed(setup: &Setup, baseline: &Baseline) -> Result<Observed> {
    let log_dir = setup.work.join("request-logs");
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir)?;
    }
    let mock = setup.mock.addr();
    let extra = format!(
        "  request_log_dir: {dir}\n  request_log_format: jsonl\n  \
         otel:\n    endpoint: http://{mock}{traces}\n    sampler: always_on\n\
         litellm_settings:\n  callbacks: [prometheus]\n",
        dir = log_dir.display(),
        traces = crate::mock::TRACES_PATH,
    );
    let config = write_variant(setup, "observed", &extra)?;
    let (exports_before, bytes_before) = setup.mock.trace_exports();
    let (conclave, _) = start_conclave_with(setup, &config, "observed")?;
    let (at_rate, pair) = beside_plain(setup, &conclave, "observed-plain")?;
    // Let the last export batch and log writes land before counting them.
    std::thread::sleep(Duration::from_secs(2));
    drop(conclave);
    let (exports, bytes) = setup.mock.trace_exports();
    let request_log_bytes = dir_bytes(&log_dir)?;
    // Deleted at once: hundreds of MB of dirty pages written back while the
    // next run measures would slow it down.
    std::fs::remove_dir_all(&log_dir)?;
    if exports == exports_before || request_log_bytes == 0 {
        return Err(fail(format!(
            "observability was not on: {} OTLP exports, {request_log_bytes} request-log bytes",
            exports - exports_before
        )));
    }
    Ok(Observed {
        overhead_p99_ms: at_rate.p99_ms - baseline.direct_at_rate.p99_ms,
        overhead_p50_ms: at_rate.p50_ms - baseline.direct_at_rate.p50_ms,
        saturation_over_plain: pair.b_over_a(),
        paired_plain_rps: pair.a.load.rps,
        paired_plain_cpu_us: pair.a.server_us,
        at_rate,
        saturation: pair.b.load,
        cpu_us_per_request: pair.b.server_us,
        otlp_exports: (exports - exports_before) as f64,
        otlp_bytes: (bytes - bytes_before) as f64,
        request_log_bytes: request_log_bytes as f64,
    })
}

fn without_dashboard(setup: &Setup) -> Result<WithoutDashboard> {
    let config = write_variant(setup, "without-dashboard", "  ui: false\n")?;
    let (conclave, _) = start_conclave_with(setup, &config, "without-dashboard")?;
    let (at_rate, pair) = beside_plain(setup, &conclave, "with-dashboard")?;
    Ok(WithoutDashboard {
        plain_over_this: 1.0 / pair.b_over_a(),
        at_rate,
        saturation: pair.b.load,
        cpu_us_per_request: pair.b.server_us,
    })
}

/// Total size of the files in `dir` (not recursive); 0 when it is missing.
fn dir_bytes(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}
