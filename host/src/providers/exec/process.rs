//! Running the program: what it inherits, how its pipes are drained, and how
//! it is stopped.
//!
//! The program gets a cleared environment: only [`INHERITED_ENV`] from the
//! gateway's own, plus the deployment's `env:` map, so provider keys, the
//! master key and anything else the gateway holds stay in the gateway.
//! stderr is read by its own task into a bounded tail while stdout is read,
//! so a program that writes much to stderr first cannot block on a full pipe.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::providers::UpstreamError;

/// The gateway's variables a program inherits: enough to find programs, its
/// own configuration and credentials under HOME, a locale, a scratch
/// directory and a terminal type. Everything else comes from `env:`.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "USER"];

/// How much of stderr's end is kept while the program runs.
const STDERR_KEEP: usize = 16 * 1024;
/// How much of stderr is quoted when the program fails.
const STDERR_QUOTE: usize = 2000;
/// How long stderr may stay open after the program exited (a process it
/// started may hold it) before the quote is taken from what was read.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// How a program is started.
pub struct Launch<'a> {
    /// The program, looked up on PATH when it has no slash.
    pub command: &'a str,
    /// Its arguments, already filled.
    pub args: &'a [String],
    /// The deployment's `env:` map, added to the inherited few.
    pub env: &'a BTreeMap<String, String>,
    /// An empty directory of its own to run in.
    pub workdir: &'a Path,
    /// Written to the program's stdin, which is then closed; without it
    /// stdin is empty.
    pub stdin: Option<String>,
}

/// A started program with its stderr being drained.
pub struct Running {
    /// The process; killed when dropped.
    pub child: Child,
    /// The end of its stderr, for the error message if it fails.
    pub stderr: StderrTail,
}

/// Starts the program with a cleared environment and piped output.
pub fn spawn(launch: Launch<'_>) -> Result<Running, UpstreamError> {
    let mut command = Command::new(launch.command);
    command
        .args(launch.args)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .envs(launch.env)
        .current_dir(launch.workdir)
        .stdin(if launch.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| spawn_error(launch.command, &e))?;
    if let (Some(prompt), Some(stdin)) = (launch.stdin, child.stdin.take()) {
        feed(stdin, prompt);
    }
    let stderr = StderrTail::drain(child.stderr.take());
    Ok(Running { child, stderr })
}

/// A spawn failure; an argument list the kernel refuses is named as such.
fn spawn_error(command: &str, e: &std::io::Error) -> UpstreamError {
    // E2BIG: the arguments and environment together are over the kernel's limit.
    if e.raw_os_error() == Some(7) {
        return UpstreamError::Status {
            status: 400,
            message: format!(
                "the prompt is too long to pass to {command:?} as an argument (the kernel \
                 refused the argument list: {e}); set `prompt_via: stdin` on the deployment \
                 if the program reads its prompt from stdin"
            ),
            code: None,
            param: None,
            retry_after: None,
        };
    }
    UpstreamError::Connect(format!("cannot run {command:?}: {e}"))
}

/// Writes the prompt to stdin from its own task and closes it; a program
/// that exits without reading it is not an error here.
fn feed(mut stdin: ChildStdin, prompt: String) {
    tokio::spawn(async move {
        let _ = stdin.write_all(prompt.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
}

/// The end of stderr, collected by a task of its own while the program runs.
pub struct StderrTail(Option<JoinHandle<Vec<u8>>>);

impl StderrTail {
    /// Nothing kept (stderr was already taken).
    pub fn empty() -> Self {
        Self(None)
    }

    fn drain(stderr: Option<ChildStderr>) -> Self {
        Self(stderr.map(|e| tokio::spawn(keep_tail(e))))
    }

    /// What was kept, once stderr closed (or after a short grace when a
    /// process the program started still holds it open).
    pub async fn text(mut self) -> String {
        let Some(mut task) = self.0.take() else {
            return String::new();
        };
        match tokio::time::timeout(STDERR_GRACE, &mut task).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => {
                task.abort();
                String::new()
            }
        }
    }
}

impl Drop for StderrTail {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Reads `stderr` to its end, keeping at most the last [`STDERR_KEEP`] bytes.
async fn keep_tail(mut stderr: ChildStderr) -> Vec<u8> {
    let mut kept = Vec::with_capacity(8192);
    let mut buf = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * STDERR_KEEP {
            kept.drain(..kept.len() - STDERR_KEEP);
        }
    }
    if kept.len() > STDERR_KEEP {
        kept.drain(..kept.len() - STDERR_KEEP);
    }
    kept
}

/// The error of a program that exited unsuccessfully, quoting stderr's end.
pub async fn failed(command: &str, status: ExitStatus, stderr: StderrTail) -> UpstreamError {
    let text = stderr.text().await;
    let trimmed = text.trim();
    let skip = trimmed.chars().count().saturating_sub(STDERR_QUOTE);
    let tail: String = trimmed.chars().skip(skip).collect();
    UpstreamError::Status {
        status: 500,
        message: format!("{command:?} exited with {status}: {tail}"),
        code: None,
        param: None,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_environment_is_cleared_but_for_the_allowlist_and_env() {
        let dir = std::env::temp_dir();
        let env = BTreeMap::from([("EXTRA".to_owned(), "1".to_owned())]);
        let args = vec!["-c".to_owned(), "env".to_owned()];
        let mut running = spawn(Launch {
            command: "/bin/sh",
            args: &args,
            env: &env,
            workdir: &dir,
            stdin: None,
        })
        .unwrap();
        let mut out = String::new();
        let mut stdout = running.child.stdout.take().unwrap();
        stdout.read_to_string(&mut out).await.unwrap();
        running.child.wait().await.unwrap();
        for line in out.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                INHERITED_ENV.contains(&name) || ["EXTRA", "PWD", "SHLVL", "_"].contains(&name),
                "{line}"
            );
        }
        assert!(out.contains("EXTRA=1"), "{out}");
    }
}
