//! Hot reload and the admin control plane.
//!
//! Every change (the config file, its `.env` or a strategy component edited;
//! SIGHUP; `POST /admin/reload`; a runtime model registered or deleted)
//! builds a whole new [`Gateway`] in the background from the config file and
//! the runtime overlay, then swaps it in atomically. Requests hold the
//! version they started with until they finish; new requests get the new
//! one. A version that fails to parse, compile or validate is refused, and
//! the old one keeps serving. Builds are serialized by one lock that no
//! request ever takes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::admin::{Overlay, Registration};
use crate::config::{self, ConfigError, LoadedConfig};
use crate::gateway::Gateway;
use crate::router::Clock;
use crate::strategy::StrategyEngine;
use crate::strategy::profiles::Source;

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

/// Builds the gateway for `base` with the runtime `overlay` applied.
pub async fn build(
    base: &LoadedConfig,
    overlay: &Overlay,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
) -> Result<(Gateway, Vec<String>), String> {
    let mut effective = base.clone();
    overlay
        .apply(&mut effective)
        .map_err(|problems| ConfigError::invalid(&base.path, problems).to_string())?;
    Gateway::build(&effective, client, clock)
        .await
        .map_err(|e| e.to_string())
}

/// The result of one reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub at: SystemTime,
    /// What asked for it: `watch`, `SIGHUP` or `admin`.
    pub trigger: String,
    pub ok: bool,
    pub message: String,
    pub duration: Duration,
}

impl ReloadOutcome {
    pub fn to_json(&self) -> Value {
        json!({
            "time": rfc3339(self.at),
            "unix_time": unix(self.at),
            "trigger": self.trigger,
            "result": if self.ok { "ok" } else { "error" },
            "ok": self.ok,
            "message": self.message,
            "duration_ms": ms(self.duration),
        })
    }
}

/// Why an admin change was refused.
#[derive(Debug)]
pub enum AdminError {
    /// The change would make a version that does not build.
    Rejected(String),
    NotFound(String),
    /// The model exists but is not the API's to change.
    Conflict(String),
    /// The change could not be saved.
    Failed(String),
}

#[derive(Default)]
struct Status {
    last: Option<ReloadOutcome>,
    last_error: Option<ReloadOutcome>,
    succeeded: u64,
    failed: u64,
}

/// The config and overlay the current version was built from.
struct Layers {
    base: LoadedConfig,
    overlay: Overlay,
}

/// How `serve` was asked to run the control plane.
pub struct ControlOptions {
    pub client: reqwest::Client,
    pub clock: Arc<dyn Clock>,
    /// `serve --watch`; `general_settings.hot_reload` also turns watching on.
    pub watch: bool,
    /// `serve --persist-admin-changes FILE`.
    pub persist: Option<PathBuf>,
    /// The compile cache directory the engine uses.
    pub compile_cache_dir: Option<PathBuf>,
}

/// The current gateway version and everything that replaces it.
pub struct Control {
    current: Arc<ArcSwap<Gateway>>,
    config_path: PathBuf,
    options: ControlOptions,
    /// Held while a version is built and swapped in; never by a request.
    builds: tokio::sync::Mutex<Layers>,
    status: Mutex<Status>,
    /// The overlay in service, for reading without waiting for a build.
    registered: Mutex<Overlay>,
    /// Files the watcher polls, from the config that parsed last.
    watched: Mutex<Vec<PathBuf>>,
    /// What the watched files looked like when last checked: taken before
    /// a version reads them, so a change made while it loads is not missed.
    known: Mutex<HashMap<PathBuf, Seen>>,
    generation: AtomicU64,
    started: SystemTime,
}

impl Control {
    /// Control over `gateway`, built from `base` and `overlay`. `known`
    /// is [`baseline`] taken before `gateway` was built.
    pub fn new(
        options: ControlOptions,
        gateway: Gateway,
        base: LoadedConfig,
        overlay: Overlay,
        known: Baseline,
    ) -> Arc<Self> {
        let watched = watched_files(&base);
        Arc::new(Self {
            known: Mutex::new(known.0),
            registered: Mutex::new(overlay.clone()),
            current: Arc::new(ArcSwap::from_pointee(gateway)),
            config_path: base.path.clone(),
            options,
            builds: tokio::sync::Mutex::new(Layers { base, overlay }),
            status: Mutex::new(Status::default()),
            watched: Mutex::new(watched),
            generation: AtomicU64::new(1),
            started: SystemTime::now(),
        })
    }

    /// The swappable current version, shared with the HTTP state.
    pub fn current(&self) -> Arc<ArcSwap<Gateway>> {
        self.current.clone()
    }

    /// The version new requests get.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Whether files are being watched right now.
    pub fn watching(&self) -> bool {
        self.options.watch || self.gateway().hot_reload
    }

    fn swap(&self, gateway: Gateway) -> u64 {
        self.current.store(Arc::new(gateway));
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn build(&self, base: &LoadedConfig, overlay: &Overlay) -> Result<Gateway, String> {
        let (gateway, warnings) = build(
            base,
            overlay,
            self.options.client.clone(),
            self.options.clock.clone(),
        )
        .await?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(gateway)
    }

    /// Reloads the config file (with its `.env` and strategy components)
    /// and swaps the new version in, or keeps the old one and reports why.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let mut layers = self.builds.lock().await;
        let started = Instant::now();
        let result = self.reload_locked(&mut layers).await;
        let outcome = ReloadOutcome {
            at: SystemTime::now(),
            trigger: trigger.to_owned(),
            ok: result.is_ok(),
            message: match &result {
                Ok(m) | Err(m) => m.clone(),
            },
            duration: started.elapsed(),
        };
        drop(layers);
        if outcome.ok {
            tracing::info!(trigger, ms = ms(outcome.duration), "{}", outcome.message);
        } else {
            tracing::error!(
                trigger,
                ms = ms(outcome.duration),
                error = %outcome.message,
                "reload failed; the previous version keeps serving"
            );
        }
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if outcome.ok {
            status.succeeded += 1;
        } else {
            status.failed += 1;
            status.last_error = Some(outcome.clone());
        }
        status.last = Some(outcome.clone());
        outcome
    }

    async fn reload_locked(&self, layers: &mut Layers) -> Result<String, String> {
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("the config loader failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let files = watched_files(&loaded);
        // Files this version watches for the first time: fingerprint them
        // before the build reads them.
        let new: Vec<PathBuf> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            files
                .iter()
                .filter(|f| !known.contains_key(*f))
                .cloned()
                .collect()
        };
        if !new.is_empty()
            && let Ok((seen, _)) =
                tokio::task::spawn_blocking(move || scan(&new, HashMap::new())).await
        {
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(seen);
        }
        *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = files;
        let configured = config_cache_dir(&loaded);
        if configured != config_cache_dir(&layers.base) {
            tracing::warn!(
                "general_settings.compile_cache_dir changed; the compile cache in use ({}) changes on restart",
                self.options
                    .compile_cache_dir
                    .as_ref()
                    .map_or("off".to_owned(), |d| d.display().to_string())
            );
        }
        let gateway = self.build(&loaded, &layers.overlay).await?;
        let models = gateway.model_names.len();
        let profiles = gateway.strategies.profiles().len();
        let generation = self.swap(gateway);
        layers.base = loaded;
        Ok(format!(
            "reloaded {} (version {generation}): {models} models, {profiles} profiles",
            self.config_path.display()
        ))
    }

    /// Registers (or replaces) a runtime model; true when it replaced a
    /// runtime registration.
    pub async fn register(&self, registration: Registration) -> Result<bool, AdminError> {
        let mut layers = self.builds.lock().await;
        let mut overlay = layers.overlay.clone();
        let replaced = overlay.upsert(registration.clone());
        let generation = self.apply_overlay(&mut layers, overlay).await?;
        tracing::info!(
            model_name = %registration.model_name,
            model = %registration.model,
            api_base = registration.api_base.as_deref().unwrap_or("(provider default)"),
            replaced,
            generation,
            "runtime model registered"
        );
        Ok(replaced)
    }

    /// Deletes a runtime model; a model from the config file is refused.
    pub async fn unregister(&self, model_name: &str) -> Result<(), AdminError> {
        let mut layers = self.builds.lock().await;
        let mut overlay = layers.overlay.clone();
        if !overlay.remove(model_name) {
            let in_config = layers
                .base
                .config
                .model_list
                .iter()
                .any(|e| e.model_name == model_name);
            return Err(if in_config {
                AdminError::Conflict(format!(
                    "model {model_name:?} is defined in {}, not registered at runtime; remove it from the config file",
                    self.config_path.display()
                ))
            } else {
                AdminError::NotFound(format!("no runtime model named {model_name:?}"))
            });
        }
        let generation = self.apply_overlay(&mut layers, overlay).await?;
        tracing::info!(model_name, generation, "runtime model deleted");
        Ok(())
    }

    /// Serves `overlay` on top of the current config: built first (a
    /// rejected overlay changes nothing), persisted, then swapped in and
    /// remembered. Returns the new version's generation.
    async fn apply_overlay(
        &self,
        layers: &mut Layers,
        overlay: Overlay,
    ) -> Result<u64, AdminError> {
        let gateway = self
            .build(&layers.base, &overlay)
            .await
            .map_err(AdminError::Rejected)?;
        self.persist(&overlay).await?;
        let generation = self.swap(gateway);
        *self.registered.lock().unwrap_or_else(|p| p.into_inner()) = overlay.clone();
        layers.overlay = overlay;
        Ok(generation)
    }

    /// The runtime registrations in service (without keys).
    pub fn registrations(&self) -> Vec<Value> {
        let overlay = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        overlay
            .names()
            .filter_map(|n| overlay.get(n))
            .map(|r| r.to_json(false))
            .collect()
    }

    async fn persist(&self, overlay: &Overlay) -> Result<(), AdminError> {
        let Some(path) = self.options.persist.clone() else {
            return Ok(());
        };
        let overlay = overlay.clone();
        tokio::task::spawn_blocking(move || overlay.save(&path))
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))?
            .map_err(AdminError::Failed)
    }

    /// `GET /admin/status`: the current version, its strategies and
    /// profiles, and the last reload.
    pub fn status_json(&self) -> Value {
        let gateway = self.gateway();
        let mut profiles: Vec<_> = gateway.strategies.profiles().values().collect();
        profiles.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
        let mut strategies: Vec<Value> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let profile_json: Vec<Value> = profiles
            .iter()
            .map(|p| {
                let source_path = match &p.plan.source {
                    Source::Builtin(name) => format!("builtin:{name}"),
                    Source::File(path) => path.display().to_string(),
                    Source::Missing(name) => format!("missing:{name}"),
                };
                if let Some(s) = &p.strategy
                    && !seen.contains(&s.source)
                {
                    seen.push(s.source.clone());
                    strategies.push(json!({
                        "name": p.plan.strategy,
                        "source": s.source,
                        "hash": s.hash,
                        "loaded_at": rfc3339(s.loaded_at),
                        "loaded_at_unix": unix(s.loaded_at),
                        "from_cache": s.from_cache,
                        "load_ms": ms(s.load_time),
                    }));
                }
                json!({
                    "name": p.plan.name,
                    "strategy": p.plan.strategy,
                    "source": p.strategy.as_ref().map_or(source_path, |s| s.source.clone()),
                    "hash": p.strategy.as_ref().map(|s| s.hash.clone()),
                    "loaded_at": p.strategy.as_ref().map(|s| rfc3339(s.loaded_at)),
                    "available": p.strategy.is_some(),
                })
            })
            .collect();
        for s in &mut strategies {
            let source = s["source"].as_str().unwrap_or_default().to_owned();
            let users: Vec<&str> = profiles
                .iter()
                .filter(|p| p.strategy.as_ref().is_some_and(|c| c.source == source))
                .map(|p| p.plan.name.as_str())
                .collect();
            s["profiles"] = json!(users);
        }
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        // The engine exists once a profile needed it; status never creates it.
        let engine = StrategyEngine::existing();
        let cache = engine.as_ref().and_then(|e| e.compile_cache().cloned());
        let watched = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        json!({
            "config": gateway.config_path.display().to_string(),
            "version": self.generation.load(Ordering::SeqCst),
            "loaded_at": rfc3339(gateway.loaded_at),
            "loaded_at_unix": unix(gateway.loaded_at),
            "started_at": rfc3339(self.started),
            "models": gateway.model_names,
            "runtime_models": self.registered.lock().unwrap_or_else(|p| p.into_inner()).names().cloned().collect::<Vec<_>>(),
            "strategies": strategies,
            "profiles": profile_json,
            "watching": self.watching(),
            "watched_files": watched,
            "compile_cache": match (&cache, &engine, &self.options.compile_cache_dir) {
                (Some(c), _, _) => json!({"enabled": true, "dir": c.dir().display().to_string(), "hits": c.hits(), "misses": c.misses()}),
                // Configured, but no component compiled yet.
                (None, None, Some(dir)) => json!({"enabled": true, "dir": dir.display().to_string(), "hits": 0, "misses": 0}),
                _ => json!({"enabled": false}),
            },
            "last_reload": status.last.as_ref().map(ReloadOutcome::to_json),
            "last_reload_error": status.last_error.as_ref().map(ReloadOutcome::to_json),
            "reloads": {"ok": status.succeeded, "failed": status.failed},
        })
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
            let paths = self
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let previous =
                std::mem::take(&mut *self.known.lock().unwrap_or_else(|p| p.into_inner()));
            let Ok((scanned, changed)) =
                tokio::task::spawn_blocking(move || scan(&paths, previous)).await
            else {
                continue;
            };
            {
                let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                // Keep what a reload fingerprinted meanwhile.
                for (path, seen) in scanned {
                    known.entry(path).or_insert(seen);
                }
            }
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
}

/// Fingerprints of the files a config makes conclave watch.
pub struct Baseline(HashMap<PathBuf, Seen>);

/// Takes the [`Baseline`] of `loaded`'s watched files; call it before the
/// version built from `loaded` reads its components.
pub fn baseline(loaded: &LoadedConfig) -> Baseline {
    Baseline(scan(&watched_files(loaded), HashMap::new()).0)
}

fn config_cache_dir(loaded: &LoadedConfig) -> Option<String> {
    loaded.config.general_settings.compile_cache_dir.clone()
}

/// The config file, the `.env` beside it and every external component of
/// `strategy_registry` (resolved as the profiles resolve them).
pub fn watched_files(loaded: &LoadedConfig) -> Vec<PathBuf> {
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
    hash: u64,
}

struct Seen {
    /// `None` while the file does not exist.
    fingerprint: Option<Fingerprint>,
    hashed_at: SystemTime,
}

/// Fingerprints `paths` (size, mtime, content hash), reusing hashes of files
/// whose size and mtime did not change and were not racily recent; true when
/// a file already known changed, appeared or disappeared.
fn scan(paths: &[PathBuf], mut previous: HashMap<PathBuf, Seen>) -> (HashMap<PathBuf, Seen>, bool) {
    let mut out = HashMap::with_capacity(paths.len());
    let mut changed = false;
    for path in paths {
        let before = previous.remove(path);
        let now = SystemTime::now();
        let fingerprint = std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|meta| {
                let len = meta.len();
                let mtime = meta.modified().ok();
                let reusable = before.as_ref().and_then(|seen| {
                    let fp = seen.fingerprint.as_ref()?;
                    let settled = mtime
                        .and_then(|t| seen.hashed_at.duration_since(t).ok())
                        .is_some_and(|age| age >= RACY);
                    (fp.len == len && fp.mtime == mtime && settled).then_some(fp.hash)
                });
                let hash = reusable.unwrap_or_else(|| hash_file(path));
                Fingerprint { len, mtime, hash }
            });
        let hashed_at = match (&before, &fingerprint) {
            (Some(seen), Some(fp))
                if seen.fingerprint.as_ref() == Some(fp)
                    && fp
                        .mtime
                        .and_then(|t| seen.hashed_at.duration_since(t).ok())
                        .is_some_and(|age| age >= RACY) =>
            {
                seen.hashed_at
            }
            _ => now,
        };
        if let Some(seen) = &before
            && seen.fingerprint != fingerprint
        {
            changed = true;
        }
        out.insert(
            path.clone(),
            Seen {
                fingerprint,
                hashed_at,
            },
        );
    }
    (out, changed)
}

/// FNV-1a 64 of a file's contents (0 when it cannot be read).
fn hash_file(path: &Path) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for b in &buf[..n] {
                    h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    h
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `t` as an RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_200_123);
        assert_eq!(rfc3339(t), "2024-03-01T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 - 1);
        assert_eq!(rfc3339(t), "2000-02-28T23:59:59.000Z");
    }

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
