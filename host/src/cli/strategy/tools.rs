//! Running the language tools and installing them under the tools
//! directory, one build at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::{TOOL_SETUP, WIT};

/// Environment variable that moves the tool installs (default: the user cache dir).
const TOOLS_ENV: &str = "CONCLAVE_TOOLS_DIR";

/// Runs `cmd` with its output on stderr (stdout is for the component's path).
pub(super) fn run_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs `cmd` and returns its stdout.
pub(super) fn capture(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether `program` runs (`program --version` succeeds).
pub(super) fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where language tools are installed: `$CONCLAVE_TOOLS_DIR`, else
/// `tools/` in the user cache directory (`~/.cache/conclave/tools`).
pub(super) fn tools_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(TOOLS_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    conclave::compile_cache::default_dir()
        .map(|d| d.join("tools"))
        .ok_or_else(|| {
            format!("{TOOL_SETUP}: no user cache directory (HOME is not set); set {TOOLS_ENV}")
        })
}

/// The WIT directory to build against: the project's own `wit/` when it has
/// one, else this binary's copy written under the tools directory.
pub(super) fn wit_dir(dir: &Path) -> Result<PathBuf, String> {
    let own = dir.join("wit");
    let has_wit = std::fs::read_dir(&own).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "wit"))
    });
    if has_wit {
        return Ok(own);
    }
    let base = tools_dir().unwrap_or_else(|_| std::env::temp_dir().join("conclave-tools"));
    let at = base
        .join("wit")
        .join(conclave::digest::sha256_hex(WIT.as_bytes()));
    let file = at.join("strategy.wit");
    if std::fs::read_to_string(&file).is_ok_and(|t| t == WIT) {
        return Ok(at);
    }
    std::fs::create_dir_all(&at).map_err(|e| format!("cannot create {}: {e}", at.display()))?;
    // Written whole, then renamed, so a concurrent build never reads half of it.
    let partial = at.join(format!(".strategy.wit.{}", std::process::id()));
    std::fs::write(&partial, WIT)
        .and_then(|()| std::fs::rename(&partial, &file))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(at)
}

/// A lock directory held while tools are installed, so concurrent builds do
/// not install into the same place at once. Removed on drop.
pub(super) struct InstallLock(PathBuf);

impl InstallLock {
    /// Waits (up to ten minutes) for `path`; a lock older than that is stale.
    pub(super) fn acquire(path: PathBuf) -> Result<Self, String> {
        let started = Instant::now();
        let mut told = false;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > Duration::from_secs(600)) {
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                    if started.elapsed() > Duration::from_secs(600) {
                        return Err(format!(
                            "{TOOL_SETUP}: {} is held by another build; remove it if none is running",
                            path.display()
                        ));
                    }
                    if !told {
                        eprintln!(
                            "waiting for another build to finish installing tools ({})",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    return Err(format!(
                        "{TOOL_SETUP}: cannot create {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
