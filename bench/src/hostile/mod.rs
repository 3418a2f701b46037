//! The hostile run: the release gateway under every attack class of
//! docs/security.md, one after another, while a steady plain load runs
//! beside them. It reports per attack the outcome and time, the plain
//! load's successes and failures, the gateway's peak RSS (VmRSS sampled
//! every 100 ms, and VmHWM), and whether the process is still up at the end.
//!
//! Everything stays on loopback and is bounded: each attack by its own
//! limits and [`ATTACK_LIMIT`], the whole run by the fixed list.

pub mod clients;
pub mod config;
pub mod ctx;
pub mod gateway;
pub mod load;
pub mod strategies;
pub mod surfaces;
pub mod upstream;
pub mod upstreams;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use self::config::{PLAIN_STREAM_CHUNKS, Secrets};
use self::ctx::{Check, Ctx};
use self::gateway::{Gateway, RssSampler, status_bytes};
use self::load::{LoadStats, PlainLoad};
use self::upstream::Hostile;
use crate::mock::Mock;
use crate::{Result, fail};

/// Longest one attack may take.
pub const ATTACK_LIMIT: Duration = Duration::from_secs(40);
/// The bound the whole run's peak RSS must stay under, in MiB.
pub const RSS_LIMIT_MIB: u64 = 512;
/// Plain load before the first attack and after the last.
const SETTLE: Duration = Duration::from_secs(2);
/// Pause between attacks.
const BETWEEN: Duration = Duration::from_millis(300);

/// Every attack, in the order they run: name and expected outcome.
pub const ATTACKS: [(&str, &str); 22] = [
    (
        "60k-key body",
        "400 naming 1024, < 2 s, concurrent request 200",
    ),
    ("deep nesting", "400 naming 128, < 2 s"),
    ("trickled body", "408 naming request_body_timeout"),
    (
        "slow headers",
        "100 connections closed by header_read_timeout",
    ),
    (
        "connection flood",
        "712 idle connections, the limit reached; a new client still served",
    ),
    (
        "over-parallel requests",
        "503 gateway_busy + Retry-After past 320, rest 200",
    ),
    (
        "composite burst",
        "300 runs past the 256-instance pool all 200",
    ),
    (
        "wildcard path injection",
        "one encoded segment; dot segments 400",
    ),
    (
        "topology-only model names",
        "404 model_not_found; never reached",
    ),
    (
        "stalling upstream (JSON)",
        "504 timeout_error at 2 s; upstream closed",
    ),
    (
        "stalling upstream (stream)",
        "504 timeout_error at 2 s; upstream closed",
    ),
    (
        "absurd retry-after",
        "429 then 503 with Retry-After <= 300 s",
    ),
    ("oversized body", "502 naming max_response_size_mb"),
    ("endless SSE event", "502 event larger than the limit"),
    ("multi-line SSE", "200 valid SSE"),
    ("error event mid-stream", "200, one rate_limit_error event"),
    ("trace flood", "500 strategy_limit_exceeded max_trace_bytes"),
    (
        "oversized call",
        "500 strategy_limit_exceeded max_call_bytes",
    ),
    (
        "run byte limit",
        "500 strategy_limit_exceeded max_run_bytes",
    ),
    (
        "invalid answers",
        "500 strategy_invalid_response naming the field",
    ),
    ("exec env leak", "200 without any gateway secret"),
    ("admin without key", "401; os.environ registration 400"),
];

async fn attack(ctx: &Ctx, name: &str) -> Check {
    match name {
        "60k-key body" => clients::sixty_thousand_keys(ctx).await,
        "deep nesting" => clients::deep_nesting(ctx).await,
        "trickled body" => clients::trickled_body(ctx).await,
        "slow headers" => clients::slow_headers(ctx).await,
        "connection flood" => clients::connection_flood(ctx).await,
        "over-parallel requests" => clients::over_parallel(ctx).await,
        "composite burst" => clients::composite_burst(ctx).await,
        "wildcard path injection" => clients::wildcard_injection(ctx).await,
        "topology-only model names" => clients::topology_only_names(ctx).await,
        "stalling upstream (JSON)" => upstreams::stalled_json(ctx).await,
        "stalling upstream (stream)" => upstreams::stalled_stream(ctx).await,
        "absurd retry-after" => upstreams::absurd_retry_after(ctx).await,
        "oversized body" => upstreams::oversized_body(ctx).await,
        "endless SSE event" => upstreams::endless_event(ctx).await,
        "multi-line SSE" => upstreams::multi_line_sse(ctx).await,
        "error event mid-stream" => upstreams::error_event_mid_stream(ctx).await,
        "trace flood" => strategies::trace_flood(ctx).await,
        "oversized call" => strategies::oversized_call(ctx).await,
        "run byte limit" => strategies::run_byte_limit(ctx).await,
        "invalid answers" => strategies::invalid_answers(ctx).await,
        "exec env leak" => surfaces::exec_env_leak(ctx).await,
        "admin without key" => surfaces::admin_without_key(ctx).await,
        other => Err(format!("no attack named {other}")),
    }
}

/// Where the run finds its programs and writes its files.
pub struct Options {
    /// The release `conclave` binary.
    pub conclave: PathBuf,
    /// The `hostile` test strategy component.
    pub strategy: PathBuf,
    /// Config, exec program and the gateway's log go here.
    pub work: PathBuf,
}

/// One attack's result.
#[derive(Debug, Clone)]
pub struct AttackResult {
    pub name: &'static str,
    pub expected: &'static str,
    pub outcome: Check,
    pub took: Duration,
    /// Largest VmRSS sample while it ran.
    pub peak_rss: u64,
}

/// The whole run's result.
#[derive(Debug, Clone)]
pub struct Summary {
    pub attacks: Vec<AttackResult>,
    pub load: LoadStats,
    /// Largest VmRSS sample of the run, and how many were taken.
    pub sampled_peak: u64,
    pub samples: usize,
    /// VmHWM at the end: the true peak since start.
    pub vm_hwm: u64,
    pub rss_at_end: u64,
    pub up_at_end: bool,
    pub elapsed: Duration,
    pub gateway_log: PathBuf,
}

impl Summary {
    /// The peak RSS the run is judged by: the larger of VmHWM and the samples.
    pub fn peak(&self) -> u64 {
        self.vm_hwm.max(self.sampled_peak)
    }

    /// Every check that failed, in words (empty when the run passed).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .attacks
            .iter()
            .filter_map(|a| a.outcome.as_ref().err().map(|e| format!("{}: {e}", a.name)))
            .collect();
        if self.load.failed > 0 || self.load.ok == 0 {
            out.push(format!(
                "plain load: {} failures of {} ({:?})",
                self.load.failed, self.load.sent, self.load.failures
            ));
        }
        if self.peak() >= RSS_LIMIT_MIB << 20 {
            out.push(format!(
                "peak RSS {} MiB >= {RSS_LIMIT_MIB} MiB",
                mib(self.peak())
            ));
        }
        if !self.up_at_end {
            out.push("the gateway is not up at the end".into());
        }
        out
    }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 20))
}

/// Runs the whole hostile run.
pub fn run(opts: &Options) -> Result<Summary> {
    std::fs::create_dir_all(&opts.work)?;
    let cache = opts.work.join("compile-cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    let mock = Mock::start(1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(opts, &mock))
}

async fn run_async(opts: &Options, mock: &Mock) -> Result<Summary> {
    let hostile = Hostile::start().await?;
    let secrets = Secrets::new();
    let config = config::write(&opts.work, mock.addr(), &hostile, &opts.strategy)?;
    let log = opts.work.join("conclave.log");
    let mut gateway = Gateway::start(
        &opts.conclave,
        &config,
        &secrets.env(),
        &log,
        Duration::from_secs(120),
    )?;
    let pid = gateway.pid();
    let sampler = RssSampler::start(pid);
    let ctx = Ctx {
        base: gateway.base(),
        addr: format!("127.0.0.1:{}", gateway.port),
        secrets,
        hostile,
        log: log.clone(),
    };
    let started = Instant::now();
    let load = PlainLoad::start(
        ctx.base.clone(),
        ctx.secrets.master_key.clone(),
        PLAIN_STREAM_CHUNKS,
    );
    tokio::time::sleep(SETTLE).await;
    let mut attacks = Vec::new();
    for (name, expected) in ATTACKS {
        let from = Instant::now();
        let outcome = tokio::time::timeout(ATTACK_LIMIT, attack(&ctx, name))
            .await
            .unwrap_or_else(|_| Err(format!("not over within {ATTACK_LIMIT:?}")));
        let took = from.elapsed();
        // The sample after the attack belongs to it too.
        tokio::time::sleep(gateway::SAMPLE_EVERY).await;
        let peak_rss = sampler.peak_between(from, Instant::now());
        eprintln!(
            "hostile: {name}: {} in {} ms (RSS peak {} MiB)",
            match &outcome {
                Ok(seen) => format!("ok: {seen}"),
                Err(e) => format!("FAILED: {e}"),
            },
            took.as_millis(),
            mib(peak_rss)
        );
        attacks.push(AttackResult {
            name,
            expected,
            outcome,
            took,
            peak_rss,
        });
        tokio::time::sleep(BETWEEN).await;
    }
    tokio::time::sleep(SETTLE).await;
    let load = load.finish().await;
    let elapsed = started.elapsed();
    let up_at_end = gateway.up();
    let vm_hwm = status_bytes(pid, "VmHWM:").unwrap_or(0);
    let rss_at_end = status_bytes(pid, "VmRSS:").unwrap_or(0);
    let (sampled_peak, samples) = sampler.peak();
    drop(sampler);
    if samples == 0 {
        return Err(fail("no RSS sample was taken"));
    }
    Ok(Summary {
        attacks,
        load,
        sampled_peak,
        samples,
        vm_hwm,
        rss_at_end,
        up_at_end,
        elapsed,
        gateway_log: log,
    })
}

/// The report, as Markdown.
pub fn report(s: &Summary) -> String {
    let mut out =
        String::from("| # | attack | expected | outcome | time (ms) | RSS peak (MiB) |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for (i, a) in s.attacks.iter().enumerate() {
        let outcome = match &a.outcome {
            Ok(seen) => format!("ok: {seen}"),
            Err(e) => format!("**FAILED**: {e}"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            a.name,
            a.expected,
            outcome.replace('|', "/"),
            a.took.as_millis(),
            mib(a.peak_rss)
        );
    }
    let l = &s.load;
    let _ = writeln!(
        out,
        "\nplain load ({} req/s, every 5th streamed): {} sent, {} ok, {} failed; \
         {} served on a retry after 503 gateway_busy; slowest {} ms",
        load::RATE,
        l.sent,
        l.ok,
        l.failed,
        l.served_after_busy,
        l.max_latency.as_millis()
    );
    for f in &l.failures {
        let _ = writeln!(out, "  - {f}");
    }
    let _ = writeln!(
        out,
        "peak RSS: {} MiB (VmHWM), {} MiB (largest of {} VmRSS samples every 100 ms); \
         {} MiB at the end; limit {RSS_LIMIT_MIB} MiB",
        mib(s.vm_hwm),
        mib(s.sampled_peak),
        s.samples,
        mib(s.rss_at_end)
    );
    let _ = writeln!(
        out,
        "gateway up at the end: {}; run took {:.1} s; gateway log: {}",
        if s.up_at_end { "yes" } else { "NO" },
        s.elapsed.as_secs_f64(),
        s.gateway_log.display()
    );
    let problems = s.problems();
    if problems.is_empty() {
        out.push_str("result: PASS\n");
    } else {
        out.push_str("result: FAIL\n");
        for p in problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}
