//! Driving `oha` (the load generator): fixed-rate runs with latency
//! correction (open loop, so a stall is charged to every request it held
//! back, not hidden by coordinated omission) and closed-loop saturation runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Result, fail};

/// The oha version `ensure` installs.
pub const VERSION: &str = "1.16.0";

/// One load run.
pub struct Load<'a> {
    pub url: &'a str,
    pub body_file: &'a Path,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second; `None` for as fast as the connections go.
    pub rate: Option<f64>,
}

/// What a run measured. Latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    pub requests: f64,
    pub rps: f64,
    pub success_rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers that were not 200, plus transport errors.
    pub failures: f64,
}

/// The oha binary and how it is run.
pub struct Oha {
    pub bin: PathBuf,
    pub threads: usize,
}

impl Oha {
    /// `oha --version`, e.g. `oha 1.16.0`.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.bin).arg("--version").output()?;
        if !out.status.success() {
            return Err(fail(format!("{} --version failed", self.bin.display())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs one load and reads oha's JSON report.
    pub fn run(&self, load: &Load<'_>) -> Result<LoadResult> {
        let mut cmd = self.post(load.url, load.body_file, load.connections);
        cmd.arg("-z")
            .arg(format!("{}ms", load.duration.as_millis()))
            // Requests still in flight at the deadline finish and count.
            .arg("-w");
        if let Some(rate) = load.rate {
            cmd.arg("-q")
                .arg(format!("{rate}"))
                .arg("--latency-correction");
        }
        self.report(cmd, load.duration + Duration::from_secs(30))
    }

    /// Sends exactly `requests` requests as fast as `connections` go, for
    /// measurements that count per request; fails after `limit`.
    pub fn run_count(
        &self,
        url: &str,
        body_file: &Path,
        connections: usize,
        requests: u64,
        limit: Duration,
    ) -> Result<LoadResult> {
        let mut cmd = self.post(url, body_file, connections);
        cmd.arg("-n").arg(requests.to_string());
        self.report(cmd, limit)
    }

    /// An oha command posting `body_file` as JSON to `url` over
    /// `connections` connections, reporting as JSON.
    fn post(&self, url: &str, body_file: &Path, connections: usize) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(url)
            .args(["-m", "POST", "-H", "content-type: application/json", "-D"])
            .arg(body_file)
            .arg("-c")
            .arg(connections.to_string())
            .args(["--no-tui", "--output-format", "json"])
            .arg("--worker-threads")
            .arg(self.threads.to_string());
        cmd
    }

    /// Runs `cmd` (killed after `limit`) and reads its report.
    fn report(&self, mut cmd: Command, limit: Duration) -> Result<LoadResult> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot run {}: {e} (install it, or pass --oha)",
                self.bin.display()
            ))
        })?;
        let out = wait_output(child, limit)?;
        if !out.status.success() {
            return Err(fail(format!(
                "oha failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse(&out.stdout)
    }
}

/// Waits for a child's output, killing it after `limit`.
pub fn wait_output(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::Output> {
    // Read the pipes on threads so a chatty child never blocks on a full pipe.
    let out_thread = drain(child.stdout.take());
    let err_thread = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "a child process ran past {limit:?} and was killed"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_thread
        .join()
        .map_err(|_| fail("stdout reader failed"))?;
    let stderr = err_thread
        .join()
        .map_err(|_| fail("stderr reader failed"))?;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Reads oha's `--output-format json` report (latencies in seconds).
pub fn parse(json: &[u8]) -> Result<LoadResult> {
    let v: Value =
        serde_json::from_slice(json).map_err(|e| fail(format!("oha's report is not JSON: {e}")))?;
    let num = |ptr: &str| -> Result<f64> {
        v.pointer(ptr)
            .and_then(Value::as_f64)
            .ok_or_else(|| fail(format!("oha's report has no {ptr}")))
    };
    let statuses: BTreeMap<String, f64> = v
        .get("statusCodeDistribution")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default();
    let errors: f64 = v
        .get("errorDistribution")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0);
    let ok = statuses.get("200").copied().unwrap_or(0.0);
    let total: f64 = statuses.values().sum::<f64>() + errors;
    Ok(LoadResult {
        requests: total,
        rps: num("/summary/requestsPerSec")?,
        success_rate: num("/summary/successRate")?,
        p50_ms: num("/latencyPercentiles/p50")? * 1000.0,
        p90_ms: num("/latencyPercentiles/p90")? * 1000.0,
        p99_ms: num("/latencyPercentiles/p99")? * 1000.0,
        max_ms: num("/summary/slowest")? * 1000.0,
        failures: total - ok,
    })
}

/// Where `ensure` installs oha: `<target>/bench-tools/bin/oha`.
pub fn installed_path(target_dir: &Path) -> PathBuf {
    target_dir.join("bench-tools").join("bin").join("oha")
}

/// Installs oha from crates.io unless it is already there: `cargo install
/// --locked`, with the system OpenSSL (`native-tls`) instead of the default
/// rustls + aws-lc (a long C build; oha does not compile without a TLS
/// backend, and only plain HTTP is used here). Build files stay under
/// `<target>/bench-tools/build`, so an interrupted install resumes.
pub fn ensure(cargo: &Path, target_dir: &Path) -> Result<PathBuf> {
    let bin = installed_path(target_dir);
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "bench: installing oha {VERSION} into {}",
        target_dir.join("bench-tools").display()
    );
    let status = Command::new(cargo)
        .args(["install", "oha", "--locked", "--version", VERSION])
        .args(["--no-default-features", "--features", "native-tls"])
        .arg("--root")
        .arg(target_dir.join("bench-tools"))
        .arg("--target-dir")
        .arg(target_dir.join("bench-tools").join("build"))
        .status()?;
    if !status.success() || !bin.is_file() {
        return Err(fail(format!(
            "cargo install oha failed ({status}); install it and pass --oha <path>"
        )));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ohas_report() {
        let report = br#"{"summary":{"successRate":1.0,"total":2.0,"slowest":0.004,"fastest":0.0001,
            "average":0.0004,"requestsPerSec":999.5,"totalData":1,"sizePerRequest":1,"sizePerSec":1.0},
            "latencyPercentiles":{"p10":0.0002,"p50":0.0004,"p90":0.0008,"p99":0.002,"p99.9":0.003},
            "statusCodeDistribution":{"200":1998,"502":1},"errorDistribution":{"aborted":1}}"#;
        let r = parse(report).unwrap();
        assert_eq!(r.requests, 2000.0);
        assert_eq!(r.failures, 2.0);
        assert!((r.p99_ms - 2.0).abs() < 1e-9);
        assert!((r.max_ms - 4.0).abs() < 1e-9);
        assert!(parse(b"{}").is_err());
    }
}
