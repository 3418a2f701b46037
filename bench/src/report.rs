//! The report: `latest.json` (every run, their median, the micro-benchmarks,
//! the targets) and `latest.md` (the same as tables).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::Result;
use crate::micro::Micro;

/// Where and how the numbers were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub timestamp_unix: u64,
    pub command: String,
    pub quick: bool,
    pub runs: usize,
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_average_start: String,
    pub load_average_end: String,
    pub conclave_version: String,
    pub git_revision: String,
    pub rustc: String,
    pub load_generator: String,
    pub oha_worker_threads: usize,
    pub mock_threads: usize,
    pub phase_seconds: f64,
    pub note: String,
}

/// One target, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub measured: Option<f64>,
    pub unit: String,
    pub target: String,
    /// `None` when it was not measured.
    pub met: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    /// First start of the invocation, with an emptied compile cache.
    pub startup_cold_ms: Option<f64>,
    /// The element-wise median of the runs.
    pub median: Value,
    pub runs: Vec<Value>,
    pub micro: Option<Micro>,
    pub targets: Vec<Check>,
    /// Failed requests and other things that make a figure suspect.
    pub problems: Vec<String>,
}

/// Load phases that had failed requests, in any run.
pub fn problems(runs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let mut phases: Vec<(String, String)> = vec![
            ("saturation, direct".into(), "/saturation/direct".into()),
            ("saturation, conclave".into(), "/saturation/conclave".into()),
        ];
        let rates = run
            .get("fixed_rate")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for r in 0..rates {
            let rate = f(at(run, &format!("/fixed_rate/{r}/rate")), 0);
            for side in ["direct", "conclave"] {
                phases.push((
                    format!("{rate} req/s, {side}"),
                    format!("/fixed_rate/{r}/{side}"),
                ));
            }
        }
        for key in [
            "cache_memory",
            "cache_redis",
            "observed",
            "without_dashboard",
            "team/no_keys",
            "team/sqlite/loads",
            "team/redis/loads",
        ] {
            for phase in ["at_rate", "saturation"] {
                phases.push((
                    format!("feature {key}, {phase}"),
                    format!("/features/{key}/{phase}"),
                ));
            }
        }
        for (label, pointer) in phases {
            let failures = at(run, &format!("{pointer}/failures")).unwrap_or(0.0);
            if failures > 0.0 {
                out.push(format!(
                    "run {}: {label}: {failures} of {} requests failed",
                    i + 1,
                    f(at(run, &format!("{pointer}/requests")), 0)
                ));
            }
        }
    }
    out
}

/// A number at a JSON pointer.
pub fn at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

/// The index of the fixed-rate entry for `rate`.
fn rate_index(median: &Value, rate: f64) -> Option<usize> {
    median
        .get("fixed_rate")?
        .as_array()?
        .iter()
        .position(|r| r.get("rate").and_then(Value::as_f64) == Some(rate))
}

fn check(
    name: &str,
    measured: Option<f64>,
    unit: &str,
    target: &str,
    pass: impl Fn(f64) -> bool,
    detail: String,
) -> Check {
    Check {
        name: name.to_owned(),
        measured,
        unit: unit.to_owned(),
        target: target.to_owned(),
        met: measured.map(pass),
        detail,
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "n/a".to_owned(),
    }
}

/// Checks the targets against the median run and the micro-benchmarks.
pub fn targets(median: &Value, micro: Option<&Micro>) -> Vec<Check> {
    let mut out = Vec::new();
    let r1000 = rate_index(median, 1000.0);
    let p = |suffix: &str| r1000.and_then(|i| at(median, &format!("/fixed_rate/{i}/{suffix}")));
    out.push(check(
        "Overhead p99 at 1000 req/s",
        p("overhead_p99_ms"),
        "ms",
        "< 1 ms",
        |x| x < 1.0,
        format!(
            "conclave p99 {} ms vs direct {} ms (p50 overhead {} ms)",
            f(p("conclave/p99_ms"), 3),
            f(p("direct/p99_ms"), 3),
            f(p("overhead_p50_ms"), 3)
        ),
    ));
    out.push(check(
        "Saturation throughput, 64 connections",
        at(median, "/saturation/ratio"),
        "x direct",
        ">= 0.333 x direct",
        |x| x >= 1.0 / 3.0,
        format!(
            "conclave {} req/s vs direct-to-mock {} req/s; a bare axum + reqwest forwarder on the same machine: {} x direct",
            f(at(median, "/saturation/conclave/rps"), 0),
            f(at(median, "/saturation/direct/rps"), 0),
            f(at(median, "/saturation/bare_forwarder_ratio"), 2)
        ),
    ));
    out.push(check(
        "Streaming TTFB overhead (p50)",
        at(median, "/streaming/ttfb_overhead_p50_ms"),
        "ms",
        "< 1 ms",
        |x| x < 1.0,
        format!(
            "p90 {} ms; total-time overhead p50 {} ms; max events per frame {}, bunched gaps {}, late gaps {}",
            f(at(median, "/streaming/ttfb_overhead_p90_ms"), 3),
            f(at(median, "/streaming/total_overhead_p50_ms"), 3),
            f(at(median, "/streaming/conclave/max_events_per_frame"), 0),
            f(at(median, "/streaming/conclave/bunched_gaps"), 0),
            f(at(median, "/streaming/conclave/late_gaps"), 0)
        ),
    ));
    out.push(check(
        "Idle RSS",
        at(median, "/memory/idle_rss_mib"),
        "MiB",
        "< 40 MiB",
        |x| x < 40.0,
        format!(
            "after load {} MiB, peak {} MiB",
            f(at(median, "/memory/after_load_rss_mib"), 1),
            f(at(median, "/memory/peak_rss_mib"), 1)
        ),
    ));
    let http_host = at(median, "/passthrough_http/passthrough_over_plain_p50_us");
    match micro {
        Some(m) => out.push(check(
            "Strategy-host overhead per composite request (criterion)",
            Some(m.host_overhead_us),
            "µs",
            "< 100 µs",
            |x| x < 100.0,
            format!(
                "passthrough {} µs − plain route {} µs, in-process mock upstream; over HTTP (p50 difference) {} µs",
                f(Some(m.passthrough_ns / 1000.0), 1),
                f(Some(m.route_plain_ns / 1000.0), 1),
                f(http_host, 0)
            ),
        )),
        None => out.push(check(
            "Strategy-host overhead per composite request (HTTP, p50)",
            http_host,
            "µs",
            "< 100 µs",
            |x| x < 100.0,
            "micro-benchmarks skipped: passthrough − plain request over HTTP".to_owned(),
        )),
    }
    out.push(check(
        "Composite moa over its critical path (p50)",
        at(median, "/moa/over_direct_p50_ms"),
        "ms",
        "< 2 ms",
        |x| x < 2.0,
        format!(
            "moa p50 {} ms; the same fan-out direct {} ms; nominal {} ms (+{} ms); p90 over direct {} ms; with zero-latency members {} ms over direct",
            f(at(median, "/moa/composite_ms/p50"), 2),
            f(at(median, "/moa/direct_fanout_ms/p50"), 2),
            f(at(median, "/moa/nominal_critical_path_ms"), 0),
            f(at(median, "/moa/over_nominal_p50_ms"), 2),
            f(at(median, "/moa/over_direct_p90_ms"), 2),
            f(at(median, "/moa/zero_latency_over_direct_p50_ms"), 2)
        ),
    ));
    let s1 = at(median, "/startup_warm_ms/0");
    let s2 = at(median, "/startup_warm_ms/1");
    let worst = match (s1, s2) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    out.push(check(
        "Start-up to /health, compile cache warm (slower of two)",
        worst,
        "ms",
        "< 300 ms",
        |x| x < 300.0,
        format!("starts: {} ms and {} ms", f(s1, 1), f(s2, 1)),
    ));
    out.extend(feature_targets(median));
    out
}

/// The optional features' targets, for the scenarios that ran.
fn feature_targets(median: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    for (backend, key) in [("memory", "cache_memory"), ("Redis", "cache_redis")] {
        let g = |k: &str| at(median, &format!("/features/{key}/{k}"));
        if g("saturation/rps").is_none() {
            continue;
        }
        out.push(check(
            &format!("Cache hit p99, {backend} backend (sequential, client round trip included)"),
            g("sequential_ms/p99"),
            "ms",
            "< 0.5 ms",
            |x| x < 0.5,
            format!(
                "p50 {} ms over {} hits; at 1000 req/s p50 / p99 {} / {} ms",
                f(g("sequential_ms/p50"), 3),
                f(g("sequential_ms/n"), 0),
                f(g("at_rate/p50_ms"), 3),
                f(g("at_rate/p99_ms"), 3)
            ),
        ));
        out.push(check(
            &format!("Cache hit saturation, {backend} backend"),
            g("saturation_over_direct"),
            "x direct",
            ">= 1.0 x direct",
            |x| x >= 1.0,
            format!(
                "{} req/s of hits vs direct-to-mock {} req/s; {} µs CPU per hit; {} upstream call(s); \
                 the floor, bare axum answering from memory: {} req/s ({} x direct, {} µs CPU)",
                f(g("saturation/rps"), 0),
                f(at(median, "/saturation/direct/rps"), 0),
                f(g("cpu_us_per_request"), 1),
                f(g("upstream_calls"), 0),
                f(at(median, "/features/hit_floor/saturation/rps"), 0),
                f(at(median, "/features/hit_floor/saturation_over_direct"), 2),
                f(at(median, "/features/hit_floor/cpu_us_per_request"), 1)
            ),
        ));
    }
    let o = |k: &str| at(median, &format!("/features/observed/{k}"));
    if o("saturation/rps").is_some() {
        out.push(check(
            "Overhead p99 at 1000 req/s, metrics + OTLP + request logs on",
            o("overhead_p99_ms"),
            "ms",
            "< 1 ms",
            |x| x < 1.0,
            format!(
                "p99 {} ms vs direct {} ms (p50 overhead {} ms); {} OTLP exports ({} KiB), {} KiB of request logs",
                f(o("at_rate/p99_ms"), 3),
                f(o("at_rate/p99_ms").zip(o("overhead_p99_ms")).map(|(a, b)| a - b), 3),
                f(o("overhead_p50_ms"), 3),
                f(o("otlp_exports"), 0),
                f(o("otlp_bytes").map(|b| b / 1024.0), 0),
                f(o("request_log_bytes").map(|b| b / 1024.0), 0)
            ),
        ));
        out.push(check(
            "Saturation, metrics + OTLP + request logs on",
            o("saturation_over_plain"),
            "x plain",
            ">= 0.85 x plain",
            |x| x >= 0.85,
            format!(
                "{} req/s vs {} req/s without them, measured alternately; {} µs CPU per request (without: {})",
                f(o("saturation/rps"), 0),
                f(o("paired_plain_rps"), 0),
                f(o("cpu_us_per_request"), 1),
                f(o("paired_plain_cpu_us"), 1)
            ),
        ));
    }
    out.extend(team_targets(median));
    out
}

/// The team scenario's targets, for each storage set-up that ran.
fn team_targets(median: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    for (label, key) in [("SQLite", "sqlite"), ("SQLite + Redis", "redis")] {
        let t = |k: &str| at(median, &format!("/features/team/{key}/{k}"));
        if t("loads/saturation/rps").is_none() {
            continue;
        }
        out.push(check(
            &format!("Team of 1,000 keys ({label}): overhead p99 at 1000 req/s"),
            t("overhead_p99_ms"),
            "ms",
            "< 1 ms",
            |x| x < 1.0,
            format!(
                "p99 {} ms vs direct {} ms, measured alternately (p50 overhead {} ms)",
                f(t("loads/at_rate/p99_ms"), 3),
                f(t("paired_direct_at_rate/p99_ms"), 3),
                f(t("overhead_p50_ms"), 3)
            ),
        ));
        out.push(check(
            &format!("Team of 1,000 keys ({label}): saturation"),
            t("saturation_over_no_keys"),
            "x no keys",
            ">= 0.85 x no keys",
            |x| x >= 0.85,
            format!(
                "{} req/s vs {} req/s without keys, measured alternately (same generator); {} µs CPU per request (without, in the same phases: {})",
                f(t("loads/saturation/rps"), 0),
                f(t("paired_no_keys_rps"), 0),
                f(t("loads/cpu_us_per_request"), 1),
                f(t("paired_no_keys_cpu_us"), 1)
            ),
        ));
        out.push(check(
            &format!("Team of 1,000 keys ({label}): key store statements per request"),
            t("store_statements_per_request"),
            "per request",
            "< 0.05",
            |x| x < 0.05,
            "conclave_key_store_statements_total before and after the loads".to_owned(),
        ));
    }
    out
}

/// Writes `latest.json` and `latest.md` into `out`.
pub fn write(out: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("latest.md"), markdown(report))?;
    Ok(())
}

/// Per-run values of one pointer, e.g. "0.21, 0.25, 0.19".
fn per_run(report: &Report, pointer: &str, digits: usize) -> String {
    report
        .runs
        .iter()
        .map(|r| f(at(r, pointer), digits))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as markdown tables.
pub fn markdown(report: &Report) -> String {
    let m = &report.median;
    let meta = &report.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# conclave benchmark results\n");
    let _ = writeln!(
        s,
        "{} run(s){}, median shown; {} CPUs ({}), load average {} at start and {} at end. \
         Load generator ({}), mock upstream and conclave share these cores.\n",
        meta.runs,
        if meta.quick { ", --quick" } else { "" },
        meta.nproc,
        meta.cpu_model,
        meta.load_average_start,
        meta.load_average_end,
        meta.load_generator
    );
    let _ = writeln!(
        s,
        "{} (git {}), {}; phases of {} s.\n",
        meta.conclave_version, meta.git_revision, meta.rustc, meta.phase_seconds
    );

    if !report.problems.is_empty() {
        let _ = writeln!(s, "## Problems\n");
        for p in &report.problems {
            let _ = writeln!(s, "- {p}");
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| measure | result | target | verdict | detail |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    for c in &report.targets {
        let verdict = match c.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let digits = if c.unit.starts_with("x ") {
            2
        } else if c.unit == "ms" || c.unit == "per request" {
            // Statements per request are compared with 0.05.
            3
        } else {
            1
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {} |",
            c.name,
            f(c.measured, digits),
            c.unit,
            c.target,
            verdict,
            c.detail
        );
    }

    let _ = writeln!(
        s,
        "\n## Fixed request rates (oha, open loop with latency correction, 32 connections)\n"
    );
    let _ = writeln!(
        s,
        "| rate (req/s) | direct p50 / p90 / p99 (ms) | conclave p50 / p90 / p99 (ms) | overhead p50 / p90 / p99 (ms) | achieved req/s direct / conclave | failures | CPU per request, conclave / mock (µs) |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    if let Some(rates) = m.get("fixed_rate").and_then(Value::as_array) {
        for (i, _) in rates.iter().enumerate() {
            let g = |k: &str| at(m, &format!("/fixed_rate/{i}/{k}"));
            let _ = writeln!(
                s,
                "| {} | {} / {} / {} | {} / {} / {} | {} / {} / {} | {} / {} | {} / {} | {} / {} |",
                f(g("rate"), 0),
                f(g("direct/p50_ms"), 3),
                f(g("direct/p90_ms"), 3),
                f(g("direct/p99_ms"), 3),
                f(g("conclave/p50_ms"), 3),
                f(g("conclave/p90_ms"), 3),
                f(g("conclave/p99_ms"), 3),
                f(g("overhead_p50_ms"), 3),
                f(g("overhead_p90_ms"), 3),
                f(g("overhead_p99_ms"), 3),
                f(g("direct/rps"), 0),
                f(g("conclave/rps"), 0),
                f(g("direct/failures"), 0),
                f(g("conclave/failures"), 0),
                f(g("conclave_cpu_us_per_request"), 1),
                f(g("mock_cpu_us_per_request_direct"), 1),
            );
        }
    }
    let i1000 = rate_index(m, 1000.0).unwrap_or(1);
    let _ = writeln!(
        s,
        "\nOverhead p99 at 1000 req/s, per run: {} ms.",
        per_run(report, &format!("/fixed_rate/{i1000}/overhead_p99_ms"), 3)
    );

    let _ = writeln!(s, "\n## Saturation (64 connections, closed loop)\n");
    let _ = writeln!(
        s,
        "| | req/s | p50 (ms) | p99 (ms) | per run (req/s) | CPU per request, server / mock (µs) |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for side in ["direct", "conclave"] {
        let cpu = if side == "direct" {
            format!(
                "– / {}",
                f(at(m, "/saturation/mock_cpu_us_per_request_direct"), 1)
            )
        } else {
            format!(
                "{} / {}",
                f(at(m, "/saturation/conclave_cpu_us_per_request"), 1),
                f(at(m, "/saturation/mock_cpu_us_per_request_through"), 1)
            )
        };
        let _ = writeln!(
            s,
            "| {side} | {} | {} | {} | {} | {cpu} |",
            f(at(m, &format!("/saturation/{side}/rps")), 0),
            f(at(m, &format!("/saturation/{side}/p50_ms")), 3),
            f(at(m, &format!("/saturation/{side}/p99_ms")), 3),
            per_run(report, &format!("/saturation/{side}/rps"), 0),
        );
    }
    let _ = writeln!(
        s,
        "| bare axum + reqwest forwarder | {} | {} | {} | {} | {} / – |",
        f(at(m, "/saturation/bare_forwarder/rps"), 0),
        f(at(m, "/saturation/bare_forwarder/p50_ms"), 3),
        f(at(m, "/saturation/bare_forwarder/p99_ms"), 3),
        per_run(report, "/saturation/bare_forwarder/rps", 0),
        f(at(m, "/saturation/bare_forwarder_cpu_us_per_request"), 1),
    );
    let _ = writeln!(
        s,
        "\nconclave / direct: {} (per run {}). The bare forwarder (`bare-forwarder`: the same axum server and reqwest client, copying bytes, nothing else) / direct: {} (per run {}), the floor of the stack on this machine.",
        f(at(m, "/saturation/ratio"), 3),
        per_run(report, "/saturation/ratio", 3),
        f(at(m, "/saturation/bare_forwarder_ratio"), 3),
        per_run(report, "/saturation/bare_forwarder_ratio", 3)
    );

    let _ = writeln!(
        s,
        "\n## Streaming ({} chunks sent {} ms apart; sequential, one connection per side)\n",
        f(at(m, "/streaming/chunks_sent"), 0),
        f(at(m, "/streaming/gap_sent_ms"), 0)
    );
    let _ = writeln!(
        s,
        "| | streams | TTFB p50 / p90 (ms) | total p50 / p90 (ms) | min events | max events per frame | gap p50 / p99 / max (ms) | gaps < 1 ms | gaps > 7 ms |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for side in ["direct", "conclave"] {
        let g = |k: &str| at(m, &format!("/streaming/{side}/{k}"));
        let _ = writeln!(
            s,
            "| {side} | {} | {} / {} | {} / {} | {} | {} | {} / {} / {} | {} | {} |",
            f(g("streams"), 0),
            f(g("ttfb_ms/p50"), 3),
            f(g("ttfb_ms/p90"), 3),
            f(g("total_ms/p50"), 2),
            f(g("total_ms/p90"), 2),
            f(g("min_events"), 0),
            f(g("max_events_per_frame"), 0),
            f(g("gap_ms/p50"), 2),
            f(g("gap_ms/p99"), 2),
            f(g("gap_ms/max"), 2),
            f(g("bunched_gaps"), 0),
            f(g("late_gaps"), 0),
        );
    }
    let _ = writeln!(
        s,
        "\nTTFB overhead p50 / p90: {} / {} ms; total-time overhead p50 / p90: {} / {} ms.",
        f(at(m, "/streaming/ttfb_overhead_p50_ms"), 3),
        f(at(m, "/streaming/ttfb_overhead_p90_ms"), 3),
        f(at(m, "/streaming/total_overhead_p50_ms"), 3),
        f(at(m, "/streaming/total_overhead_p90_ms"), 3)
    );

    let _ = writeln!(
        s,
        "\n## Composite moa (proposers 40/50/60 ms, aggregator 30 ms; {} sequential requests)\n",
        f(at(m, "/moa/requests"), 0)
    );
    let _ = writeln!(s, "| | p50 (ms) | p90 (ms) | max (ms) |");
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    let _ = writeln!(
        s,
        "| nominal critical path | {} | | |",
        f(at(m, "/moa/nominal_critical_path_ms"), 1)
    );
    for (label, key) in [
        ("same fan-out, direct to the mock", "direct_fanout_ms"),
        ("moa through conclave", "composite_ms"),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            f(at(m, &format!("/moa/{key}/p50")), 2),
            f(at(m, &format!("/moa/{key}/p90")), 2),
            f(at(m, &format!("/moa/{key}/max")), 2),
        );
    }
    for (label, key) in [
        (
            "zero-latency members: fan-out direct",
            "zero_latency_direct_fanout_ms",
        ),
        (
            "zero-latency members: moa through conclave",
            "zero_latency_composite_ms",
        ),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            f(at(m, &format!("/moa/{key}/p50")), 3),
            f(at(m, &format!("/moa/{key}/p90")), 3),
            f(at(m, &format!("/moa/{key}/max")), 3),
        );
    }
    let _ = writeln!(
        s,
        "\nWith zero-latency members, moa costs {} ms over the direct fan-out (p50): the host's own share.",
        f(at(m, "/moa/zero_latency_over_direct_p50_ms"), 3)
    );
    let _ = writeln!(
        s,
        "\nmoa over the direct fan-out p50 / p90: {} / {} ms; over the nominal path p50: {} ms.",
        f(at(m, "/moa/over_direct_p50_ms"), 2),
        f(at(m, "/moa/over_direct_p90_ms"), 2),
        f(at(m, "/moa/over_nominal_p50_ms"), 2)
    );

    let _ = writeln!(
        s,
        "\n## Sequential requests, zero-latency upstream ({} each)\n",
        f(at(m, "/passthrough_http/requests"), 0)
    );
    let _ = writeln!(s, "| | p50 (ms) | p90 (ms) | p99 (ms) |");
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for (label, key) in [
        ("direct to the mock", "direct_ms"),
        ("plain request through conclave", "plain_ms"),
        ("passthrough composite through conclave", "passthrough_ms"),
        (
            "conclave's x-conclave-overhead-ms (plain)",
            "plain_self_reported_overhead_ms",
        ),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            f(at(m, &format!("/passthrough_http/{key}/p50")), 3),
            f(at(m, &format!("/passthrough_http/{key}/p90")), 3),
            f(at(m, &format!("/passthrough_http/{key}/p99")), 3),
        );
    }
    let _ = writeln!(
        s,
        "\nplain over direct p50: {} µs; passthrough over plain p50: {} µs.",
        f(at(m, "/passthrough_http/plain_over_direct_p50_us"), 0),
        f(at(m, "/passthrough_http/passthrough_over_plain_p50_us"), 0)
    );

    let _ = writeln!(s, "\n## Memory and start-up\n");
    let _ = writeln!(s, "| | value | per run |");
    let _ = writeln!(s, "| --- | --- | --- |");
    for (label, key, digits) in [
        ("RSS idle (MiB)", "/memory/idle_rss_mib", 1),
        ("RSS after load (MiB)", "/memory/after_load_rss_mib", 1),
        ("peak RSS (MiB)", "/memory/peak_rss_mib", 1),
        ("start-up, warm cache, 1st (ms)", "/startup_warm_ms/0", 1),
        ("start-up, warm cache, 2nd (ms)", "/startup_warm_ms/1", 1),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} |",
            f(at(m, key), digits),
            per_run(report, key, digits)
        );
    }
    let _ = writeln!(
        s,
        "| start-up, emptied cache (ms) | {} | once per invocation |",
        f(report.startup_cold_ms, 1)
    );

    feature_tables(&mut s, report);

    let _ = writeln!(s, "\n## Micro-benchmarks (criterion, median)\n");
    match &report.micro {
        Some(mi) => {
            let _ = writeln!(s, "| benchmark | time |");
            let _ = writeln!(s, "| --- | --- |");
            for (label, ns) in [
                (
                    "plain route to an in-process mock deployment",
                    mi.route_plain_ns,
                ),
                ("passthrough strategy over the same mock", mi.passthrough_ns),
                ("moa, 3 proposers + aggregator, same mock", mi.moa_ns),
                ("parse a chat request (ProxyRequest)", mi.parse_ns),
                (
                    "the same bytes into a plain JSON map (reference)",
                    mi.parse_map_ns,
                ),
                ("encode the outbound body", mi.encode_ns),
            ] {
                let _ = writeln!(s, "| {label} | {} µs |", f(Some(ns / 1000.0), 2));
            }
            let _ = writeln!(
                s,
                "\nStrategy host per composite request (passthrough − route): {} µs; moa − 4 routes: {} µs.",
                f(Some(mi.host_overhead_us), 1),
                f(Some(mi.moa_host_overhead_us), 1)
            );
        }
        None => {
            let _ = writeln!(s, "Skipped (--skip-micro).");
        }
    }
    s
}

/// The optional features' section: one row per scenario that ran.
fn feature_tables(s: &mut String, report: &Report) {
    let m = &report.median;
    let _ = writeln!(
        s,
        "\n## Optional features (each on its own conclave, beside the plain run)\n"
    );
    let _ = writeln!(
        s,
        "| scenario | 1000 req/s p50 / p99 (ms) | saturation (req/s) | per run (req/s) | CPU per request (µs) | failures |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    let mut any = false;
    for (label, key) in [
        ("cache hits, memory", "cache_memory"),
        ("cache hits, Redis", "cache_redis"),
        (
            "floor of a hit: bare axum answering from memory",
            "hit_floor",
        ),
        ("metrics + OTLP + jsonl request logs", "observed"),
        (
            "plain, dashboard off (the plain run has it on)",
            "without_dashboard",
        ),
        ("team: no keys (keyed generator)", "team/no_keys"),
        ("team: 1,000 keys, SQLite", "team/sqlite/loads"),
        ("team: 1,000 keys, SQLite + Redis", "team/redis/loads"),
    ] {
        let g = |k: &str| at(m, &format!("/features/{key}/{k}"));
        if g("saturation/rps").is_none() {
            continue;
        }
        any = true;
        let _ = writeln!(
            s,
            "| {label} | {} / {} | {} | {} | {} | {} |",
            f(g("at_rate/p50_ms"), 3),
            f(g("at_rate/p99_ms"), 3),
            f(g("saturation/rps"), 0),
            per_run(report, &format!("/features/{key}/saturation/rps"), 0),
            f(g("cpu_us_per_request"), 1),
            f(
                g("at_rate/failures")
                    .zip(g("saturation/failures"))
                    .map(|(a, b)| a + b),
                0
            ),
        );
    }
    if !any {
        let _ = writeln!(s, "| skipped (--skip-features) | | | | | |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_read_the_median() {
        let median = json!({
            "fixed_rate": [
                {"rate": 500.0, "overhead_p99_ms": 9.0},
                {"rate": 1000.0, "overhead_p99_ms": 0.4, "conclave": {"p99_ms": 1.0}, "direct": {"p99_ms": 0.6}}
            ],
            "saturation": {"ratio": 0.2, "bare_forwarder_ratio": 0.25},
            "streaming": {"ttfb_overhead_p50_ms": 0.3},
            "memory": {"idle_rss_mib": 20.0},
            "moa": {"over_direct_p50_ms": 1.5},
            "startup_warm_ms": [120.0, 310.0],
            "passthrough_http": {"passthrough_over_plain_p50_us": 50.0}
        });
        let t = targets(&median, None);
        let met: Vec<Option<bool>> = t.iter().map(|c| c.met).collect();
        assert_eq!(
            met,
            vec![
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(true),
                Some(true),
                Some(false)
            ]
        );
        assert_eq!(t[0].measured, Some(0.4));
        assert!(t[1].detail.ends_with("0.25 x direct"), "{}", t[1].detail);
        assert_eq!(t[6].measured, Some(310.0));
    }
}
