//! What makes a reload happen by itself: the watched files changing (polled
//! and debounced) and SIGHUP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Control;
use crate::config::LoadedConfig;
use crate::digest::sha256_hex;

/// How often watched files are checked.
const POLL: Duration = Duration::from_millis(250);
/// How long files must stay unchanged before a reload starts, so that
/// several quick saves make one reload.
const QUIET: Duration = Duration::from_millis(250);
/// A reload starts at the latest this long after the first change, even if
/// files keep changing.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// A file whose mtime was this recent when it was hashed is hashed again on
/// the next poll: a same-size write within the filesystem's timestamp
/// granularity would otherwise go unnoticed.
const RACY: Duration = Duration::from_secs(2);

/// Fingerprints of the files a config makes conclave watch.
pub struct Baseline(pub(super) HashMap<PathBuf, Seen>);

/// Takes the [`Baseline`] of `loaded`'s watched files; call it before the
/// version built from `loaded` reads its components.
pub fn baseline(loaded: &LoadedConfig) -> Baseline {
    Baseline(scan(&watched_files(loaded), HashMap::new()).0)
}

/// The config file, the `.env` beside it and every external component of
/// `strategy_registry` (resolved as the profiles resolve them).
pub(super) fn watched_files(loaded: &LoadedConfig) -> Vec<PathBuf> {
    let dir = loaded
        .path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    let mut files = vec![loaded.path.clone(), dir.join(".env")];
    if let Some(composite) = &loaded.config.general_settings.composite_llm {
        for target in composite.strategy_registry.values() {
            if target.ends_with(".wasm") {
                let path = dir.join(target);
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
    }
    files
}

#[derive(Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime: Option<SystemTime>,
    /// `None` when the file could not be read.
    hash: Option<String>,
}

impl Fingerprint {
    /// Whether the file was hashed long enough after its last write that a
    /// later same-size write would change its mtime.
    fn settled(&self, hashed_at: SystemTime) -> bool {
        self.mtime
            .and_then(|t| hashed_at.duration_since(t).ok())
            .is_some_and(|age| age >= RACY)
    }
}

/// One watched file as last checked.
pub(super) struct Seen {
    /// `None` while the file does not exist.
    fingerprint: Option<Fingerprint>,
    hashed_at: SystemTime,
}

/// Fingerprints `paths` (size, mtime, content hash), reusing hashes of files
/// whose size and mtime did not change and were not racily recent; true when
/// a file already known changed, appeared or disappeared.
pub(super) fn scan(
    paths: &[PathBuf],
    mut previous: HashMap<PathBuf, Seen>,
) -> (HashMap<PathBuf, Seen>, bool) {
    let mut out = HashMap::with_capacity(paths.len());
    let mut changed = false;
    for path in paths {
        let before = previous.remove(path);
        let seen = fingerprint(path, before.as_ref());
        if before.is_some_and(|b| b.fingerprint != seen.fingerprint) {
            changed = true;
        }
        out.insert(path.clone(), seen);
    }
    (out, changed)
}

/// `path` as it is now, hashed again unless `before` has a settled
/// fingerprint of the same size and mtime.
fn fingerprint(path: &Path, before: Option<&Seen>) -> Seen {
    let now = SystemTime::now();
    let fingerprint = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|meta| {
            let len = meta.len();
            let mtime = meta.modified().ok();
            let reusable = before.and_then(|seen| {
                let fp = seen.fingerprint.as_ref()?;
                (fp.len == len && fp.mtime == mtime && fp.settled(seen.hashed_at))
                    .then(|| fp.hash.clone())
            });
            let hash = reusable.unwrap_or_else(|| hash_file(path));
            Fingerprint { len, mtime, hash }
        });
    let hashed_at = match (before, &fingerprint) {
        (Some(seen), Some(fp))
            if seen.fingerprint.as_ref() == Some(fp) && fp.settled(seen.hashed_at) =>
        {
            seen.hashed_at
        }
        _ => now,
    };
    Seen {
        fingerprint,
        hashed_at,
    }
}

/// The content hash of a file (`None` when it cannot be read).
fn hash_file(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| sha256_hex(&bytes))
}

impl Control {
    /// Whether files are being watched right now.
    pub fn watching(&self) -> bool {
        self.options.watch || self.gateway().hot_reload
    }

    /// Reloads on SIGHUP. The handler is installed before this returns, so
    /// a SIGHUP sent once the server listens never kills the process.
    pub fn spawn_signal_handler(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(mut hangups) => {
                    let control = self.clone();
                    tokio::spawn(async move {
                        while hangups.recv().await.is_some() {
                            control.reload("SIGHUP").await;
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
            }
        }
    }

    /// Polls the watched files and reloads when they change (debounced).
    pub fn spawn_watcher(self: &Arc<Self>) {
        let control = self.clone();
        tokio::spawn(async move { control.watch().await });
    }

    async fn watch(self: Arc<Self>) {
        let mut first_change: Option<Instant> = None;
        let mut last_change = Instant::now();
        loop {
            tokio::time::sleep(POLL).await;
            if !self.watching() {
                first_change = None;
                continue;
            }
            let Some(changed) = self.poll().await else {
                continue;
            };
            let now = Instant::now();
            if changed {
                last_change = now;
                first_change.get_or_insert(now);
            }
            let due = first_change.is_some_and(|first| {
                (!changed && now.duration_since(last_change) >= QUIET)
                    || now.duration_since(first) >= MAX_WAIT
            });
            if due {
                first_change = None;
                self.reload("watch").await;
            }
        }
    }

    /// Scans the watched files once; whether any changed (`None` when the
    /// scan could not run).
    async fn poll(&self) -> Option<bool> {
        let paths = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let previous = std::mem::take(&mut *self.known.lock().unwrap_or_else(|p| p.into_inner()));
        let (scanned, changed) = tokio::task::spawn_blocking(move || scan(&paths, previous))
            .await
            .ok()?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        // Keep what a reload fingerprinted meanwhile.
        for (path, seen) in scanned {
            known.entry(path).or_insert(seen);
        }
        Some(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_same_size_rewrite_within_the_racy_window_is_seen() {
        let dir = std::env::temp_dir().join(format!("conclave-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "aaaa").unwrap();
        let paths = vec![file.clone(), dir.join("missing")];
        let (known, changed) = scan(&paths, HashMap::new());
        assert!(!changed, "a first scan only records");
        let (known, changed) = scan(&paths, known);
        assert!(!changed);
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, "bbbb").unwrap();
        // Even with the old mtime put back, the content hash tells.
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let (known, changed) = scan(&paths, known);
        assert!(changed);
        std::fs::write(dir.join("missing"), "x").unwrap();
        let (_, changed) = scan(&paths, known);
        assert!(changed, "a file that appears is a change");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
