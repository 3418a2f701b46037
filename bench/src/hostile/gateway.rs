//! The gateway under attack: the release `conclave` started with the hostile
//! run's config and secrets in its environment, and a sampler of its
//! resident memory every [`SAMPLE_EVERY`].

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::{free_port, get_ok};
use crate::{Result, fail};

/// How often the sampler reads VmRSS.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Samples kept at most (an hour at [`SAMPLE_EVERY`]): the sampler's own
/// memory is bounded too.
const MAX_SAMPLES: usize = 36_000;

/// A running `conclave serve`; killed when dropped.
pub struct Gateway {
    child: Child,
    pub port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `bin serve --config config` on a free port of 127.0.0.1 with
    /// `env` added to its environment, logging to `log`, and waits for
    /// `/health/liveliness` (at most `limit`; `/health` needs the key).
    pub fn start(
        bin: &Path,
        config: &Path,
        env: &[(String, String)],
        log: &Path,
        limit: Duration,
    ) -> Result<Gateway> {
        let port = free_port()?;
        let log_out = File::create(log)?;
        let log_err = log_out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .args(["--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", bin.display())))?;
        let mut gateway = Gateway { child, port };
        let started = Instant::now();
        while !get_ok(port, "/health/liveliness") {
            if let Some(status) = gateway.child.try_wait()? {
                return Err(fail(format!(
                    "conclave exited during start-up ({status}); see {}",
                    log.display()
                )));
            }
            if started.elapsed() > limit {
                return Err(fail(format!(
                    "conclave did not answer /health within {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(gateway)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running and answers `/health/liveliness`.
    pub fn up(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && get_ok(self.port, "/health/liveliness")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A field of /proc/<pid>/status in bytes (`VmRSS:`, `VmHWM:`).
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// VmRSS samples of one process, taken on a thread of their own.
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Samples `pid` every [`SAMPLE_EVERY`] until stopped or the process is gone.
    pub fn start(pid: u32) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(rss) = status_bytes(pid, "VmRSS:") else {
                        break;
                    };
                    let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
                    if s.len() < MAX_SAMPLES {
                        s.push((Instant::now(), rss));
                    }
                    drop(s);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        RssSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest sample taken between `from` and `to`, in bytes.
    pub fn peak_between(&self, from: Instant, to: Instant) -> u64 {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0)
    }

    /// The largest sample and the number taken.
    pub fn peak(&self) -> (u64, usize) {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        (s.iter().map(|(_, rss)| *rss).max().unwrap_or(0), s.len())
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
