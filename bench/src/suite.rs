//! One measurement run against a running mock, and the setup it needs: the
//! conclave config, the request body file, and the phases in order.
//!
//! Every loop is bounded twice: by a count and by a wall-clock deadline
//! ([`Plan::loop_limit`]); oha runs are bounded by `-z` and killed 30 s
//! after it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::body::{chat_body, short_body};
use crate::client::{Conn, StreamTiming};
use crate::features::{self, Baseline, FEATURE_RATE, Features};
use crate::mock::{self, Mock};
use crate::oha::{Load, LoadResult, Oha};
use crate::procs::{Server, cpu_seconds, free_port};
use crate::stats::{Summary, ms, summarize};
use crate::{Result, fail};

/// Proposer latencies of the composite test, and the aggregator's.
pub const MOA_PROPOSERS_MS: [u64; 3] = [40, 50, 60];
pub const MOA_AGGREGATOR_MS: u64 = 30;
/// Fixed request rates.
pub const RATES: [f64; 3] = [500.0, 1000.0, 2000.0];
/// Connections of the saturation test.
pub const SATURATION_CONNECTIONS: usize = 64;
/// Connections available to the fixed-rate runs (the rate, not these, sets the load).
pub const FIXED_RATE_CONNECTIONS: usize = 32;
/// How long conclave may take to answer /health.
const START_LIMIT: Duration = Duration::from_secs(120);

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Each oha phase.
    pub phase: Duration,
    pub warmup: Duration,
    pub streams: usize,
    pub moa_requests: usize,
    pub passthrough_requests: usize,
    /// Deadline of each sequential loop.
    pub loop_limit: Duration,
    /// Measure the optional features too ([`crate::features`]).
    pub features: bool,
}

impl Plan {
    pub fn full() -> Plan {
        Plan {
            phase: Duration::from_secs(6),
            warmup: Duration::from_secs(2),
            streams: 20,
            moa_requests: 30,
            passthrough_requests: 300,
            loop_limit: Duration::from_secs(30),
            features: true,
        }
    }

    pub fn quick() -> Plan {
        Plan {
            phase: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            streams: 8,
            moa_requests: 10,
            passthrough_requests: 100,
            loop_limit: Duration::from_secs(10),
            features: true,
        }
    }
}

/// Everything a run uses.
pub struct Setup {
    pub conclave_bin: PathBuf,
    /// The bare axum + reqwest forwarder, when built.
    pub forwarder_bin: Option<PathBuf>,
    pub oha: Oha,
    pub mock: Mock,
    pub work: PathBuf,
    pub config: PathBuf,
    pub body_file: PathBuf,
    pub plan: Plan,
    /// Clock ticks per second of /proc/<pid>/stat.
    pub ticks: f64,
}

/// A load run with the CPU time the server under test (conclave or the
/// bare forwarder) and the mock (this process) spent on it, in µs per request.
pub struct Measured {
    pub load: LoadResult,
    pub server_us: f64,
    pub mock_us: f64,
}

/// Runs `run` and divides the CPU time the server and this process spent
/// meanwhile by the requests it made.
pub fn measured(
    setup: &Setup,
    server: &Server,
    run: impl FnOnce() -> Result<LoadResult>,
) -> Result<Measured> {
    let pid = server.pid().to_string();
    let (c0, m0) = (
        cpu_seconds(&pid, setup.ticks)?,
        cpu_seconds("self", setup.ticks)?,
    );
    let load = run()?;
    let (c1, m1) = (
        cpu_seconds(&pid, setup.ticks)?,
        cpu_seconds("self", setup.ticks)?,
    );
    let per = |d: f64| {
        if load.requests > 0.0 {
            d * 1e6 / load.requests
        } else {
            f64::NAN
        }
    };
    Ok(Measured {
        server_us: per(c1 - c0),
        mock_us: per(m1 - m0),
        load,
    })
}

/// Saturation of two servers, measured alternately in cycles of A, B, B,
/// A. On a shared machine whose speed drifts from one phase to the next, a
/// drift across a cycle's four phases weighs on both sides alike, so
/// `b_over_a` compares them more fairly than two loads minutes apart; more
/// cycles average out the stalls that a single phase catches.
pub struct Paired {
    /// A's loads, all cycles merged.
    pub a: Measured,
    /// B's loads, all cycles merged.
    pub b: Measured,
    /// B's rate over A's in each cycle, in the order measured: their
    /// spread is the run's own measure of its noise.
    pub cycle_ratios: Vec<f64>,
}

impl Paired {
    /// B's mean rate over A's.
    pub fn b_over_a(&self) -> f64 {
        self.b.load.rps / self.a.load.rps
    }
}

/// Measures `a` and `b` (each a server and the load that saturates it) in
/// `cycles` cycles of A, B, B, A (at least one); each side's loads are
/// merged.
pub fn paired(
    setup: &Setup,
    a: (&Server, &dyn Fn() -> Result<LoadResult>),
    b: (&Server, &dyn Fn() -> Result<LoadResult>),
    cycles: usize,
) -> Result<Paired> {
    let (mut a_loads, mut b_loads, mut cycle_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cycles.max(1) {
        let a1 = measured(setup, a.0, a.1)?;
        let b1 = measured(setup, b.0, b.1)?;
        let b2 = measured(setup, b.0, b.1)?;
        let a2 = measured(setup, a.0, a.1)?;
        cycle_ratios.push((b1.load.rps + b2.load.rps) / (a1.load.rps + a2.load.rps));
        a_loads.extend([a1, a2]);
        b_loads.extend([b1, b2]);
    }
    Ok(Paired {
        a: merge(&a_loads),
        b: merge(&b_loads),
        cycle_ratios,
    })
}

/// Loads of one server as one: requests and failures added, rates and
/// latency percentiles averaged, CPU per request weighted by requests.
fn merge(all: &[Measured]) -> Measured {
    let loads: Vec<&LoadResult> = all.iter().map(|m| &m.load).collect();
    Measured {
        load: merge_loads(&loads),
        server_us: by_requests(all, |m| m.load.requests, |m| m.server_us),
        mock_us: by_requests(all, |m| m.load.requests, |m| m.mock_us),
    }
}

/// Loads as one: requests and failures added, success weighted by
/// requests, rates and latency percentiles averaged, the largest maximum.
pub fn merge_loads(all: &[&LoadResult]) -> LoadResult {
    let mean = |figure: fn(&LoadResult) -> f64| {
        all.iter().map(|l| figure(l)).sum::<f64>() / all.len().max(1) as f64
    };
    LoadResult {
        requests: all.iter().map(|l| l.requests).sum(),
        rps: mean(|l| l.rps),
        success_rate: by_requests(all, |l| l.requests, |l| l.success_rate),
        p50_ms: mean(|l| l.p50_ms),
        p90_ms: mean(|l| l.p90_ms),
        p99_ms: mean(|l| l.p99_ms),
        max_ms: all.iter().map(|l| l.max_ms).fold(f64::NAN, f64::max),
        failures: all.iter().map(|l| l.failures).sum(),
    }
}

/// The mean of each item's `figure` weighted by its `requests`.
fn by_requests<T>(items: &[T], requests: fn(&T) -> f64, figure: fn(&T) -> f64) -> f64 {
    let total: f64 = items.iter().map(requests).sum();
    if total > 0.0 {
        items.iter().map(|i| requests(i) * figure(i)).sum::<f64>() / total
    } else {
        f64::NAN
    }
}

/// Writes the config conclave is started with (see [`config_yaml`]).
pub fn write_config(work: &Path, mock: SocketAddr) -> Result<PathBuf> {
    let path = work.join("conclave-bench.yaml");
    std::fs::write(&path, config_yaml(work, mock))?;
    Ok(path)
}

/// One `model_list` entry: the group `name` on the mock at `api_base`.
pub fn deployment_yaml(name: &str, api_base: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/bench-model\n      api_base: {api_base}\n      api_key: sk-bench\n"
    )
}

/// The benchmark config: a plain group on the mock, the moa members on
/// latency paths, and the composite profiles. It ends inside
/// `general_settings`, so a feature scenario can append settings there
/// (two-space indent) or add a top-level section.
pub fn config_yaml(work: &Path, mock: SocketAddr) -> String {
    let cache = work.join("compile-cache");
    let base = |latency_ms: u64| format!("http://{mock}{}", mock::api_path(latency_ms));
    let mut yaml =
        String::from("# Written by conclave-bench; rewritten on every run.\nmodel_list:\n");
    let mut deployment = |name: &str, api_base: String| {
        yaml.push_str(&deployment_yaml(name, &api_base));
    };
    deployment("bench", base(0));
    for ms in MOA_PROPOSERS_MS {
        deployment(&format!("bench-p{ms}"), base(ms));
    }
    deployment(
        &format!("bench-agg{MOA_AGGREGATOR_MS}"),
        base(MOA_AGGREGATOR_MS),
    );
    let proposers: Vec<String> = MOA_PROPOSERS_MS
        .iter()
        .map(|ms| format!("{{model: bench-p{ms}}}"))
        .collect();
    yaml.push_str(&format!(
        "  - model_name: bench-moa
    litellm_params:
      model: composite/profile/bench_moa
  - model_name: bench-passthrough
    litellm_params:
      model: composite/profile/bench_passthrough
  - model_name: bench-moa-zero
    litellm_params:
      model: composite/profile/bench_moa_zero
general_settings:
  compile_cache_dir: {cache}
  composite_llm:
    profiles:
      bench_moa:
        strategy: moa
        topology:
          aggregator: {{model: bench-agg{MOA_AGGREGATOR_MS}}}
          proposers: [{proposers}]
      bench_passthrough:
        strategy: passthrough
        topology: {{model: bench}}
      bench_moa_zero:
        strategy: moa
        topology:
          aggregator: {{model: bench}}
          proposers: [{{model: bench}}, {{model: bench}}, {{model: bench}}]
",
        cache = cache.display(),
        proposers = proposers.join(", "),
    ));
    yaml
}

/// Both sides of a fixed-rate comparison. Latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateResult {
    pub rate: f64,
    pub direct: LoadResult,
    pub conclave: LoadResult,
    pub overhead_p50_ms: f64,
    pub overhead_p90_ms: f64,
    pub overhead_p99_ms: f64,
    /// conclave's CPU time (all threads) over the requests of its run.
    pub conclave_cpu_us_per_request: f64,
    /// The mock's CPU time per request in the direct run.
    pub mock_cpu_us_per_request_direct: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saturation {
    pub connections: f64,
    pub direct: LoadResult,
    pub conclave: LoadResult,
    /// conclave's throughput over the mock's.
    pub ratio: f64,
    /// CPU time per request (all threads of the process, user + system).
    pub conclave_cpu_us_per_request: f64,
    pub mock_cpu_us_per_request_direct: f64,
    pub mock_cpu_us_per_request_through: f64,
    /// The same load through `bare-forwarder`: axum and reqwest with nothing
    /// on top, the floor of conclave's stack on this machine.
    pub bare_forwarder: Option<LoadResult>,
    pub bare_forwarder_ratio: Option<f64>,
    pub bare_forwarder_cpu_us_per_request: Option<f64>,
}

/// Streams of one side, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamStats {
    pub streams: f64,
    pub ttfb_ms: Summary,
    pub total_ms: Summary,
    /// Fewest data events any stream delivered (50 expected).
    pub min_events: f64,
    /// Most events one body frame completed, over all streams (1: never coalesced).
    pub max_events_per_frame: f64,
    /// Every gap between consecutive events, pooled.
    pub gap_ms: Summary,
    /// Gaps under 1 ms (events bunched together: coalesced or held back).
    pub bunched_gaps: f64,
    /// Gaps over the sent gap + 2 ms (an event delayed).
    pub late_gaps: f64,
    /// Streams that ended with `data: [DONE]`.
    pub completed: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Streaming {
    pub chunks_sent: f64,
    pub gap_sent_ms: f64,
    pub direct: StreamStats,
    pub conclave: StreamStats,
    pub ttfb_overhead_p50_ms: f64,
    pub ttfb_overhead_p90_ms: f64,
    pub total_overhead_p50_ms: f64,
    pub total_overhead_p90_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Moa {
    pub requests: f64,
    /// Slowest proposer + aggregator, as configured.
    pub nominal_critical_path_ms: f64,
    /// The same fan-out done by this client straight against the mock:
    /// three proposers concurrently, then the aggregator.
    pub direct_fanout_ms: Summary,
    pub composite_ms: Summary,
    pub over_direct_p50_ms: f64,
    pub over_direct_p90_ms: f64,
    pub over_nominal_p50_ms: f64,
    pub over_nominal_p90_ms: f64,
    /// The same with every member answering at once: what the composite
    /// costs without the idle waits between stages.
    pub zero_latency_direct_fanout_ms: Summary,
    pub zero_latency_composite_ms: Summary,
    pub zero_latency_over_direct_p50_ms: f64,
}

/// Sequential requests over HTTP: a plain routed request against the same
/// request through the `passthrough` strategy (zero-latency upstream).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PassthroughHttp {
    pub requests: f64,
    pub direct_ms: Summary,
    pub plain_ms: Summary,
    pub passthrough_ms: Summary,
    /// conclave's own `x-conclave-overhead-ms` on the plain requests.
    pub plain_self_reported_overhead_ms: Summary,
    pub plain_over_direct_p50_us: f64,
    pub passthrough_over_plain_p50_us: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    pub idle_rss_mib: f64,
    pub after_load_rss_mib: f64,
    pub peak_rss_mib: f64,
}

/// One run's measurements.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Time to the first /health 200 of two starts with a warm compile cache.
    pub startup_warm_ms: [f64; 2],
    pub memory: Memory,
    pub fixed_rate: Vec<RateResult>,
    pub saturation: Saturation,
    pub streaming: Streaming,
    pub moa: Moa,
    pub passthrough_http: PassthroughHttp,
    pub features: Features,
}

/// Starts conclave and waits for /health; the time it took.
pub fn start_conclave(setup: &Setup, label: &str) -> Result<(Server, Duration)> {
    start_conclave_with(setup, &setup.config, label)
}

/// Starts conclave on `config` and waits for /health; the time it took.
pub fn start_conclave_with(
    setup: &Setup,
    config: &Path,
    label: &str,
) -> Result<(Server, Duration)> {
    let port = free_port()?;
    let log = setup.work.join(format!("conclave-{label}.log"));
    let mut c = Server::conclave(&setup.conclave_bin, config, port, &log)?;
    let took = c
        .wait_healthy(START_LIMIT)
        .map_err(|e| fail(format!("{e}; its log is {}", log.display())))?;
    Ok((c, took))
}

/// One full run: start-up, memory, fixed rates, saturation, streaming,
/// composite requests.
pub fn run(setup: &Setup, rt: &tokio::runtime::Runtime, index: usize) -> Result<RunResult> {
    let plan = setup.plan;
    let say = |what: &str| eprintln!("bench: run {}: {what}", index + 1);

    say("start-up (warm compile cache) x2");
    let mut startup = [0.0; 2];
    for (i, slot) in startup.iter_mut().enumerate() {
        let (c, took) = start_conclave(setup, &format!("start{}", i + 1))?;
        *slot = ms(took);
        drop(c);
    }

    let (conclave, _) = start_conclave(setup, "main")?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, _) = conclave.memory_mib()?;

    let mock_addr = setup.mock.addr();
    let direct_url = format!("http://{mock_addr}/v1/chat/completions");
    let conclave_url = format!("http://127.0.0.1:{}/v1/chat/completions", conclave.port);
    let direct_body = setup.body_file.with_extension("direct.json");
    let load =
        |url: &str, body: &Path, connections: usize, duration: Duration, rate: Option<f64>| {
            setup.oha.run(&Load {
                url,
                body_file: body,
                connections,
                duration,
                rate,
            })
        };

    say("warm-up");
    load(
        &direct_url,
        &direct_body,
        SATURATION_CONNECTIONS,
        plan.warmup,
        None,
    )?;
    load(
        &conclave_url,
        &setup.body_file,
        SATURATION_CONNECTIONS,
        plan.warmup,
        None,
    )?;

    let mut fixed_rate = Vec::new();
    for rate in RATES {
        say(&format!("{rate} req/s, direct and through conclave"));
        let direct = measured(setup, &conclave, || {
            load(
                &direct_url,
                &direct_body,
                FIXED_RATE_CONNECTIONS,
                plan.phase,
                Some(rate),
            )
        })?;
        let through = measured(setup, &conclave, || {
            load(
                &conclave_url,
                &setup.body_file,
                FIXED_RATE_CONNECTIONS,
                plan.phase,
                Some(rate),
            )
        })?;
        fixed_rate.push(RateResult {
            rate,
            overhead_p50_ms: through.load.p50_ms - direct.load.p50_ms,
            overhead_p90_ms: through.load.p90_ms - direct.load.p90_ms,
            overhead_p99_ms: through.load.p99_ms - direct.load.p99_ms,
            conclave_cpu_us_per_request: through.server_us,
            mock_cpu_us_per_request_direct: direct.mock_us,
            direct: direct.load,
            conclave: through.load,
        });
    }

    say("saturation, 64 connections, direct and through conclave");
    let direct = measured(setup, &conclave, || {
        load(
            &direct_url,
            &direct_body,
            SATURATION_CONNECTIONS,
            plan.phase,
            None,
        )
    })?;
    let through = measured(setup, &conclave, || {
        load(
            &conclave_url,
            &setup.body_file,
            SATURATION_CONNECTIONS,
            plan.phase,
            None,
        )
    })?;
    let bare = match &setup.forwarder_bin {
        Some(bin) => {
            say("saturation, 64 connections, through the bare forwarder");
            let port = free_port()?;
            let log = setup.work.join("bare-forwarder.log");
            let mut forwarder = Server::bare_forwarder(bin, &direct_url, port, &log)?;
            forwarder.wait_healthy(START_LIMIT)?;
            let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
            load(
                &url,
                &direct_body,
                SATURATION_CONNECTIONS,
                plan.warmup,
                None,
            )?;
            Some(measured(setup, &forwarder, || {
                load(&url, &direct_body, SATURATION_CONNECTIONS, plan.phase, None)
            })?)
        }
        None => None,
    };
    let saturation = Saturation {
        connections: SATURATION_CONNECTIONS as f64,
        ratio: through.load.rps / direct.load.rps,
        conclave_cpu_us_per_request: through.server_us,
        mock_cpu_us_per_request_direct: direct.mock_us,
        mock_cpu_us_per_request_through: through.mock_us,
        bare_forwarder_ratio: bare.as_ref().map(|b| b.load.rps / direct.load.rps),
        bare_forwarder_cpu_us_per_request: bare.as_ref().map(|b| b.server_us),
        bare_forwarder: bare.map(|b| b.load),
        direct: direct.load,
        conclave: through.load,
    };
    let (after_rss, peak_rss) = conclave.memory_mib()?;

    let conclave_addr = SocketAddr::from(([127, 0, 0, 1], conclave.port));
    say("streaming");
    let streaming = rt.block_on(streaming(mock_addr, conclave_addr, &plan))?;
    say("composite moa and passthrough");
    let moa = rt.block_on(moa(mock_addr, conclave_addr, &plan))?;
    let passthrough_http = rt.block_on(passthrough(mock_addr, conclave_addr, &plan))?;
    drop(conclave);
    let features = if plan.features {
        let baseline = Baseline {
            direct_saturation_rps: saturation.direct.rps,
            direct_at_rate: fixed_rate
                .iter()
                .find(|r| r.rate == FEATURE_RATE)
                .map(|r| r.direct.clone())
                .unwrap_or_default(),
        };
        features::run(setup, rt, &baseline, &say)?
    } else {
        Features::default()
    };

    Ok(RunResult {
        startup_warm_ms: startup,
        memory: Memory {
            idle_rss_mib: idle_rss,
            after_load_rss_mib: after_rss,
            peak_rss_mib: peak_rss,
        },
        fixed_rate,
        saturation,
        streaming,
        moa,
        passthrough_http,
        features,
    })
}

fn stream_stats(timings: &[StreamTiming], gap: Duration) -> StreamStats {
    let ttfb: Vec<f64> = timings.iter().filter_map(|t| t.ttfb()).map(ms).collect();
    let total: Vec<f64> = timings.iter().filter_map(|t| t.done).map(ms).collect();
    let gaps: Vec<f64> = timings.iter().flat_map(StreamTiming::gaps_ms).collect();
    let late = ms(gap) + 2.0;
    StreamStats {
        streams: timings.len() as f64,
        ttfb_ms: summarize(&ttfb),
        total_ms: summarize(&total),
        min_events: timings.iter().map(|t| t.events.len()).min().unwrap_or(0) as f64,
        max_events_per_frame: timings
            .iter()
            .map(|t| t.max_events_per_frame)
            .max()
            .unwrap_or(0) as f64,
        bunched_gaps: gaps.iter().filter(|g| **g < 1.0).count() as f64,
        late_gaps: gaps.iter().filter(|g| **g > late).count() as f64,
        gap_ms: summarize(&gaps),
        completed: timings.iter().filter(|t| t.done.is_some()).count() as f64,
    }
}

/// Sequential streams, alternating direct and through conclave.
async fn streaming(mock: SocketAddr, conclave: SocketAddr, plan: &Plan) -> Result<Streaming> {
    let direct_body = Bytes::from(chat_body("bench-model", true));
    let conclave_body = Bytes::from(chat_body("bench", true));
    let mut direct_conn = Conn::connect(mock).await?;
    let mut conclave_conn = Conn::connect(conclave).await?;
    // One of each to warm the connections (and conclave's pool) up.
    direct_conn
        .post_stream("/v1/chat/completions", &direct_body)
        .await?;
    conclave_conn
        .post_stream("/v1/chat/completions", &conclave_body)
        .await?;
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + plan.loop_limit;
    for _ in 0..plan.streams {
        if Instant::now() > deadline {
            break;
        }
        let d = direct_conn
            .post_stream("/v1/chat/completions", &direct_body)
            .await?;
        let c = conclave_conn
            .post_stream("/v1/chat/completions", &conclave_body)
            .await?;
        if d.status != 200 || c.status != 200 {
            return Err(fail(format!(
                "streaming answered {} (direct) / {} (conclave)",
                d.status, c.status
            )));
        }
        direct.push(d);
        through.push(c);
    }
    let d = stream_stats(&direct, mock::DEFAULT_GAP);
    let c = stream_stats(&through, mock::DEFAULT_GAP);
    Ok(Streaming {
        chunks_sent: mock::DEFAULT_CHUNKS as f64,
        gap_sent_ms: ms(mock::DEFAULT_GAP),
        ttfb_overhead_p50_ms: c.ttfb_ms.p50 - d.ttfb_ms.p50,
        ttfb_overhead_p90_ms: c.ttfb_ms.p90 - d.ttfb_ms.p90,
        total_overhead_p50_ms: c.total_ms.p50 - d.total_ms.p50,
        total_overhead_p90_ms: c.total_ms.p90 - d.total_ms.p90,
        direct: d,
        conclave: c,
    })
}

fn check(reply: &crate::client::Reply, what: &str) -> Result<()> {
    if reply.status != http::StatusCode::OK {
        return Err(fail(format!(
            "{what} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )));
    }
    Ok(())
}

/// The moa composite against the same fan-out done directly.
/// Latencies (ms) of composite requests and of the same fan-out done directly.
struct FanOut {
    direct: Vec<f64>,
    composite: Vec<f64>,
}

/// `requests` moa requests through conclave (model `model`), each after
/// the same fan-out done directly against the mock: proposers on
/// `proposer_ms` latency paths concurrently, then the aggregator.
async fn fan_out(
    mock: SocketAddr,
    conclave: SocketAddr,
    model: &str,
    proposer_ms: &[u64],
    aggregator_ms: u64,
    requests: usize,
    limit: Duration,
) -> Result<FanOut> {
    let body = Bytes::from(short_body("bench-model", false));
    let composite_body = Bytes::from(short_body(model, false));
    let mut proposers = Vec::new();
    for _ in proposer_ms {
        proposers.push(Conn::connect(mock).await?);
    }
    let mut aggregator = Conn::connect(mock).await?;
    let mut gateway = Conn::connect(conclave).await?;
    let paths: Vec<String> = proposer_ms
        .iter()
        .map(|ms| format!("{}/chat/completions", mock::api_path(*ms)))
        .collect();
    let agg_path = format!("{}/chat/completions", mock::api_path(aggregator_ms));
    let mut out = FanOut {
        direct: Vec::new(),
        composite: Vec::new(),
    };
    let deadline = Instant::now() + limit;
    // The first round is a warm-up (pool connections to each path).
    for i in 0..=requests {
        if Instant::now() > deadline {
            break;
        }
        let started = Instant::now();
        let replies = futures_util::future::join_all(
            proposers
                .iter_mut()
                .zip(&paths)
                .map(|(conn, path)| conn.post(path, &body)),
        )
        .await;
        for r in replies {
            check(&r?, "a direct proposer")?;
        }
        check(
            &aggregator.post(&agg_path, &body).await?,
            "the direct aggregator",
        )?;
        let direct_took = started.elapsed();
        let reply = gateway
            .post("/v1/chat/completions", &composite_body)
            .await?;
        check(&reply, "the moa composite")?;
        if i > 0 {
            out.direct.push(ms(direct_took));
            out.composite.push(ms(reply.elapsed));
        }
    }
    Ok(out)
}

/// The moa composite against the same fan-out done directly, with the
/// configured member latencies and with zero-latency members.
async fn moa(mock: SocketAddr, conclave: SocketAddr, plan: &Plan) -> Result<Moa> {
    let timed = fan_out(
        mock,
        conclave,
        "bench-moa",
        &MOA_PROPOSERS_MS,
        MOA_AGGREGATOR_MS,
        plan.moa_requests,
        plan.loop_limit,
    )
    .await?;
    let zero = fan_out(
        mock,
        conclave,
        "bench-moa-zero",
        &[0; MOA_PROPOSERS_MS.len()],
        0,
        plan.moa_requests * 3,
        plan.loop_limit,
    )
    .await?;
    let nominal = (MOA_PROPOSERS_MS.iter().max().copied().unwrap_or(0) + MOA_AGGREGATOR_MS) as f64;
    let d = summarize(&timed.direct);
    let c = summarize(&timed.composite);
    let zd = summarize(&zero.direct);
    let zc = summarize(&zero.composite);
    Ok(Moa {
        requests: timed.composite.len() as f64,
        nominal_critical_path_ms: nominal,
        over_direct_p50_ms: c.p50 - d.p50,
        over_direct_p90_ms: c.p90 - d.p90,
        over_nominal_p50_ms: c.p50 - nominal,
        over_nominal_p90_ms: c.p90 - nominal,
        direct_fanout_ms: d,
        composite_ms: c,
        zero_latency_over_direct_p50_ms: zc.p50 - zd.p50,
        zero_latency_direct_fanout_ms: zd,
        zero_latency_composite_ms: zc,
    })
}

/// Direct, plain routed and passthrough requests in turn, one connection each.
async fn passthrough(
    mock: SocketAddr,
    conclave: SocketAddr,
    plan: &Plan,
) -> Result<PassthroughHttp> {
    let direct_body = Bytes::from(chat_body("bench-model", false));
    let plain_body = Bytes::from(chat_body("bench", false));
    let pt_body = Bytes::from(chat_body("bench-passthrough", false));
    let mut direct_conn = Conn::connect(mock).await?;
    let mut plain_conn = Conn::connect(conclave).await?;
    let mut pt_conn = Conn::connect(conclave).await?;
    let (mut direct, mut plain, mut pt, mut reported) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let path = "/v1/chat/completions";
    let deadline = Instant::now() + plan.loop_limit;
    for i in 0..plan.passthrough_requests + 10 {
        if Instant::now() > deadline {
            break;
        }
        let d = direct_conn.post(path, &direct_body).await?;
        check(&d, "the mock")?;
        let p = plain_conn.post(path, &plain_body).await?;
        check(&p, "a plain request")?;
        let t = pt_conn.post(path, &pt_body).await?;
        check(&t, "a passthrough request")?;
        // The first ten warm the connections, the pool and the pooling allocator.
        if i >= 10 {
            direct.push(ms(d.elapsed));
            plain.push(ms(p.elapsed));
            pt.push(ms(t.elapsed));
            if let Some(v) = p
                .headers
                .get("x-conclave-overhead-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
            {
                reported.push(v);
            }
        }
    }
    let (d, p, t) = (summarize(&direct), summarize(&plain), summarize(&pt));
    Ok(PassthroughHttp {
        requests: plain.len() as f64,
        plain_over_direct_p50_us: (p.p50 - d.p50) * 1000.0,
        passthrough_over_plain_p50_us: (t.p50 - p.p50) * 1000.0,
        direct_ms: d,
        plain_ms: p,
        passthrough_ms: t,
        plain_self_reported_overhead_ms: summarize(&reported),
    })
}

/// Writes the oha request bodies: through conclave (model `bench`) and
/// straight to the mock (the model name conclave would send).
pub fn write_bodies(work: &Path) -> Result<PathBuf> {
    let path = work.join("body.json");
    std::fs::write(&path, chat_body("bench", false))?;
    std::fs::write(
        path.with_extension("direct.json"),
        chat_body("bench-model", false),
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(requests: f64, rps: f64, success_rate: f64, max_ms: f64) -> LoadResult {
        LoadResult {
            requests,
            rps,
            success_rate,
            p50_ms: rps,
            max_ms,
            ..LoadResult::default()
        }
    }

    #[test]
    fn merged_loads_add_requests_average_rates_and_weigh_success_by_requests() {
        let (x, y, z) = (
            load(100.0, 10.0, 1.0, 3.0),
            load(300.0, 20.0, 0.5, 9.0),
            load(0.0, 30.0, 0.0, 1.0),
        );
        let m = merge_loads(&[&x, &y, &z]);
        assert_eq!(m.requests, 400.0);
        assert_eq!(m.rps, 20.0);
        assert_eq!(m.p50_ms, 20.0);
        assert_eq!(m.success_rate, 0.625);
        assert_eq!(m.max_ms, 9.0);
    }

    #[test]
    fn merged_measurements_weigh_cpu_per_request_by_requests() {
        let measured = |requests, server_us| Measured {
            load: load(requests, 1.0, 1.0, 1.0),
            server_us,
            mock_us: 2.0 * server_us,
        };
        let m = merge(&[measured(1.0, 10.0), measured(3.0, 30.0)]);
        assert_eq!((m.server_us, m.mock_us), (25.0, 50.0));
        assert!(merge(&[]).server_us.is_nan());
    }
}
