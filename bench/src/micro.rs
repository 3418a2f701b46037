//! The criterion micro-benchmarks (`benches/`), run through `cargo bench`
//! and read back from criterion's `estimates.json` files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Result, fail};

/// Benchmark ids: `(group, function)`, as the bench files name them.
pub const ROUTE_PLAIN: (&str, &str) = ("strategy_host", "route_plain");
pub const PASSTHROUGH: (&str, &str) = ("strategy_host", "passthrough");
pub const MOA: (&str, &str) = ("strategy_host", "moa_3_proposers");
pub const PARSE: (&str, &str) = ("codec", "parse_proxy_request");
pub const PARSE_MAP: (&str, &str) = ("codec", "parse_json_map_reference");
pub const ENCODE: (&str, &str) = ("codec", "encode_outbound_body");

/// Medians in nanoseconds, and the overheads derived from them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Micro {
    pub route_plain_ns: f64,
    pub passthrough_ns: f64,
    pub moa_ns: f64,
    pub parse_ns: f64,
    /// The same body into a plain JSON map: the floor for `parse_ns`.
    pub parse_map_ns: f64,
    pub encode_ns: f64,
    /// passthrough − plain route: what the strategy host adds to one
    /// composite request (instantiate, run, host calls, answer).
    pub host_overhead_us: f64,
    /// moa (3 proposers + aggregator) − 4 plain routes.
    pub moa_host_overhead_us: f64,
}

fn cargo_bench(cargo: &Path, root: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.arg("bench")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args([
            "-p",
            "conclave-bench",
            "--bench",
            "strategy_host",
            "--bench",
            "codec",
        ]);
    cmd
}

/// Compiles the benches (so the measured phase does not compile).
pub fn build(cargo: &Path, root: &Path) -> Result<()> {
    let status = cargo_bench(cargo, root).arg("--no-run").status()?;
    if !status.success() {
        return Err(fail(format!("cargo bench --no-run failed ({status})")));
    }
    Ok(())
}

/// Runs the benches with results under `home`, and reads them.
pub fn run(cargo: &Path, root: &Path, home: &Path, quick: bool) -> Result<Micro> {
    let times: &[&str] = if quick {
        &[
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--sample-size",
            "20",
        ]
    } else {
        &["--warm-up-time", "1", "--measurement-time", "3"]
    };
    let status = cargo_bench(cargo, root)
        .env("CRITERION_HOME", home)
        .arg("--")
        .arg("--noplot")
        .args(times)
        .status()?;
    if !status.success() {
        return Err(fail(format!("cargo bench failed ({status})")));
    }
    let read = |(group, function): (&str, &str)| median_ns(home, group, function);
    let route = read(ROUTE_PLAIN)?;
    let passthrough = read(PASSTHROUGH)?;
    let moa = read(MOA)?;
    Ok(Micro {
        route_plain_ns: route,
        passthrough_ns: passthrough,
        moa_ns: moa,
        parse_ns: read(PARSE)?,
        parse_map_ns: read(PARSE_MAP)?,
        encode_ns: read(ENCODE)?,
        host_overhead_us: (passthrough - route) / 1000.0,
        moa_host_overhead_us: (moa - 4.0 * route) / 1000.0,
    })
}

fn estimates_path(home: &Path, group: &str, function: &str) -> PathBuf {
    home.join(group)
        .join(function)
        .join("new")
        .join("estimates.json")
}

/// The median point estimate (ns) of one benchmark.
pub fn median_ns(home: &Path, group: &str, function: &str) -> Result<f64> {
    let path = estimates_path(home, group, function);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)?;
    v.pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .ok_or_else(|| fail(format!("{} has no median", path.display())))
}
