//! One request counted by callgrind: the instructions conclave runs
//! for it and, with the cache simulation, the cache lines it misses and the
//! branches it mispredicts. Unlike times, these counts repeat exactly on a
//! busy machine, so two builds can be told apart by a per cent or less.
//! Instructions alone are not enough: code that runs few instructions
//! over many lines of code costs its lines (docs/benchmarks.md), which is
//! why the estimate of cycles weighs the misses in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::oha::Oha;
use crate::procs::{Server, free_port};
use crate::{Result, fail, mock, suite};

/// Requests sent before counting starts: connections, pools and caches
/// warm, lazy set-up done.
pub const WARM_UP: u64 = 1_000;
/// Requests counted; the figures are the totals divided by this.
pub const COUNTED: u64 = 4_000;
/// Chunks in each counted stream (`--stream`), sent with no gap between
/// them so that the count is of conclave's work per chunk, not of waiting.
pub const STREAM_CHUNKS: usize = 20;
/// Connections the requests are sent over.
const CONNECTIONS: usize = 4;
/// Longest wait for each step under valgrind (start-up, a load, the dump).
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// What one request cost, from callgrind's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    /// Callgrind's event names (`Ir`, `I1mr`, `Bcm`, ...) with their
    /// totals divided by the requests counted, in callgrind's order.
    pub per_request: Vec<(String, f64)>,
}

impl Counts {
    /// The per-request figure of `event`, if it was collected.
    pub fn get(&self, event: &str) -> Option<f64> {
        self.per_request
            .iter()
            .find(|(name, _)| name == event)
            .map(|(_, n)| *n)
    }

    /// KCachegrind's estimate of cycles: each instruction one cycle, each
    /// first-level miss or mispredicted branch ten, each last-level miss a
    /// hundred. `None` without the cache and branch simulation.
    pub fn estimated_cycles(&self) -> Option<f64> {
        let sum = |events: &[&str]| -> Option<f64> {
            events.iter().map(|e| self.get(e)).sum::<Option<f64>>()
        };
        let first_level = sum(&["I1mr", "D1mr", "D1mw", "Bcm", "Bim"])?;
        let last_level = sum(&["ILmr", "DLmr", "DLmw"])?;
        Some(self.get("Ir")? + 10.0 * first_level + 100.0 * last_level)
    }
}

/// What is counted.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// A streamed chat request rather than a plain one.
    pub stream: bool,
    /// With callgrind's cache and branch simulation.
    pub cache_sim: bool,
    /// YAML appended to the config (a feature's settings), or empty.
    pub extra_config: String,
}

/// Counts `conclave`'s cost of one chat request of `shape` (the
/// benchmark's body, one deployment on the mock upstream at `mock`).
/// Files go to `work`.
pub fn run(
    conclave: &Path,
    oha: &Oha,
    mock: SocketAddr,
    work: &Path,
    shape: Shape,
) -> Result<Counts> {
    require_valgrind()?;
    let config = work.join("counted.yaml");
    let spec = if shape.stream {
        mock::Spec {
            chunks: STREAM_CHUNKS,
            gap: Duration::ZERO,
            ..mock::Spec::default()
        }
    } else {
        mock::Spec::default()
    };
    let api_base = format!("http://{mock}{}", spec.api_path());
    std::fs::write(
        &config,
        format!(
            "model_list:\n{}{}",
            suite::deployment_yaml("bench", &api_base),
            shape.extra_config
        ),
    )?;
    let body_file = if shape.stream {
        let path = work.join("counted-stream.json");
        std::fs::write(&path, crate::body::chat_body("bench", true))?;
        path
    } else {
        suite::write_bodies(work)?
    };
    let out_file = work.join("callgrind.out");
    let mut tool_args = vec![
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out_file.display()),
    ];
    if shape.cache_sim {
        tool_args.extend(["--cache-sim=yes".to_owned(), "--branch-sim=yes".to_owned()]);
    }
    let port = free_port()?;
    let mut server = Server::conclave_under_valgrind(
        &tool_args,
        conclave,
        &config,
        port,
        &work.join("counted.log"),
    )?;
    server.wait_healthy(STEP_LIMIT)?;
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    send(oha, &url, &body_file, WARM_UP)?;
    callgrind_control("-z", server.pid())?;
    send(oha, &url, &body_file, COUNTED)?;
    let dump = PathBuf::from(format!("{}.1", out_file.display()));
    // A dump left by an earlier run would be read as this one's.
    if dump.exists() {
        std::fs::remove_file(&dump)?;
    }
    callgrind_control("-d", server.pid())?;
    let text = wait_for_dump(&dump)?;
    drop(server);
    per_request(&text, COUNTED)
}

/// Sends `requests` requests; every one must be answered 200.
fn send(oha: &Oha, url: &str, body_file: &Path, requests: u64) -> Result<()> {
    let load = oha.run_count(url, body_file, CONNECTIONS, requests, STEP_LIMIT)?;
    let answered = load.requests - load.failures;
    if answered < requests as f64 {
        return Err(fail(format!(
            "{answered} of {requests} requests were answered 200 under callgrind"
        )));
    }
    Ok(())
}

fn require_valgrind() -> Result<()> {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(fail(format!(
                "--counted needs {tool} (Debian's valgrind package)"
            )));
        }
    }
    Ok(())
}

/// `callgrind_control <flag> <pid>`: `-z` zeroes the counts, `-d` dumps them.
fn callgrind_control(flag: &str, pid: u32) -> Result<()> {
    let out = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .output()?;
    if !out.status.success() {
        return Err(fail(format!(
            "callgrind_control {flag} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The dump's text once callgrind has written all of it (its `totals:`
/// line comes last).
fn wait_for_dump(dump: &Path) -> Result<String> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(dump)
            && text.lines().any(|l| l.starts_with("totals:"))
        {
            return Ok(text);
        }
        if started.elapsed() > STEP_LIMIT {
            return Err(fail(format!(
                "callgrind wrote no dump at {} within {STEP_LIMIT:?}",
                dump.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a callgrind dump's `events:` and `summary:` lines and divides
/// each total by `requests`.
pub fn per_request(dump: &str, requests: u64) -> Result<Counts> {
    let line = |prefix: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .ok_or_else(|| fail(format!("the callgrind dump has no `{prefix}` line")))
    };
    let events: Vec<&str> = line("events:")?.split_whitespace().collect();
    let totals = line("summary:")?
        .split_whitespace()
        .map(|n| {
            n.parse::<u64>()
                .map_err(|_| fail(format!("the callgrind summary holds {n:?}, not a count")))
        })
        .collect::<Result<Vec<u64>>>()?;
    if events.is_empty() || events.len() != totals.len() {
        return Err(fail(format!(
            "the callgrind dump names {} events and sums {} counts",
            events.len(),
            totals.len()
        )));
    }
    let per_request = events
        .into_iter()
        .zip(totals)
        .map(|(event, total)| (event.to_owned(), total as f64 / requests as f64))
        .collect();
    Ok(Counts { per_request })
}

/// The counts as lines for a terminal: each event, then the estimate.
pub fn describe(counts: &Counts) -> String {
    let mut out = String::from("per request, counted by callgrind:\n");
    for (event, n) in &counts.per_request {
        out.push_str(&format!("  {event:<6} {n:>12.1}\n"));
    }
    if let Some(cycles) = counts.estimated_cycles() {
        out.push_str(&format!("  {:<6} {cycles:>12.1}\n", "CEst"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "version: 1\ncreator: callgrind-3.19.0\n\
        events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim\n\
        fn=(1) main\n0 5\n\
        summary: 8000 400 400 40 8 4 0 0 4 800 20 40 8\n\
        totals: 8000 400 400 40 8 4 0 0 4 800 20 40 8\n";

    #[test]
    fn totals_are_divided_by_the_requests() {
        let counts = per_request(DUMP, 4).unwrap();
        assert_eq!(counts.get("Ir"), Some(2000.0));
        assert_eq!(counts.get("Bcm"), Some(5.0));
        assert_eq!(counts.per_request.len(), 13);
    }

    #[test]
    fn the_estimate_weighs_misses_in() {
        let counts = per_request(DUMP, 4).unwrap();
        // 2000 + 10 * (10 + 2 + 1 + 5 + 2) + 100 * 1
        assert_eq!(counts.estimated_cycles(), Some(2300.0));
    }

    #[test]
    fn without_the_simulation_there_is_no_estimate() {
        let dump = "events: Ir\nsummary: 400\ntotals: 400\n";
        let counts = per_request(dump, 4).unwrap();
        assert_eq!(counts.get("Ir"), Some(100.0));
        assert_eq!(counts.estimated_cycles(), None);
    }

    #[test]
    fn a_dump_without_totals_is_refused() {
        assert!(per_request("events: Ir\n", 4).is_err());
        assert!(per_request("events: Ir\nsummary: x\n", 4).is_err());
        assert!(per_request("events: Ir Dr\nsummary: 400\n", 4).is_err());
    }
}
