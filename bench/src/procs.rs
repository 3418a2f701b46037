//! The server processes under test (conclave, and the bare forwarder it is
//! compared with): start, readiness, memory, stop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, fail};

/// A free port on 127.0.0.1 (bound and released: another process could take
/// it in between, which on a benchmark machine does not happen in practice).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `GET path` on 127.0.0.1:`port` answers 200.
pub fn get_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU time (user + system, all threads) of process `pid` so far, in seconds.
pub fn cpu_seconds(pid: &str, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces: fields start after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| fail("malformed /proc/<pid>/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let field = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| fail("malformed /proc/<pid>/stat"))
    };
    Ok((field(14)? + field(15)?) / ticks)
}

/// `serve` on 127.0.0.1:`port` with `config`, logging JSON lines as the
/// benchmark always runs conclave.
fn serve_args(cmd: &mut Command, config: &Path, port: u16) {
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .args(["--host", "127.0.0.1", "--port"])
        .arg(port.to_string());
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub started: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `bin serve --config config` on 127.0.0.1:`port`, logging to `log`.
    pub fn conclave(bin: &Path, config: &Path, port: u16, log: &Path) -> Result<Server> {
        let mut cmd = Command::new(bin);
        serve_args(&mut cmd, config, port);
        Self::spawn(cmd, port, log)
    }

    /// Starts conclave as [`Server::conclave`] does, under `valgrind`
    /// with `tool_args` (the process keeps its pid).
    pub fn conclave_under_valgrind(
        tool_args: &[String],
        bin: &Path,
        config: &Path,
        port: u16,
        log: &Path,
    ) -> Result<Server> {
        let mut cmd = Command::new("valgrind");
        cmd.args(tool_args).arg(bin);
        serve_args(&mut cmd, config, port);
        Self::spawn(cmd, port, log)
    }

    /// Starts the bare forwarder (`bin/bare_forwarder.rs`) on 127.0.0.1:`port`.
    pub fn bare_forwarder(bin: &Path, upstream: &str, port: u16, log: &Path) -> Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.arg(port.to_string()).arg(upstream);
        Self::spawn(cmd, port, log)
    }

    fn spawn(mut cmd: Command, port: u16, log: &Path) -> Result<Server> {
        let log_out = File::create(log)?;
        let log_err = log_out.try_clone()?;
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log_err)
            .spawn()
            .map_err(|e| fail(format!("cannot start {:?}: {e}", cmd.get_program())))?;
        Ok(Server {
            child,
            port,
            started,
        })
    }

    /// Polls `/health` (or, for a gateway with a master key, the open
    /// `/health/liveliness`) every millisecond; the time from spawning to
    /// the first 200.
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<Duration> {
        loop {
            if get_ok(self.port, "/health") || get_ok(self.port, "/health/liveliness") {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(fail(format!(
                    "the server exited during start-up ({status})"
                )));
            }
            if self.started.elapsed() > limit {
                return Err(fail(format!(
                    "the server did not answer /health within {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(VmRSS, VmHWM)` in MiB, from /proc/<pid>/status.
    pub fn memory_mib(&self) -> Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .ok_or_else(|| fail(format!("no {name} in /proc/<pid>/status")))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}
