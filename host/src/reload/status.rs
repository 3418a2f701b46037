//! What `GET /admin/status` and `POST /admin/reload` report: the version in
//! service, its strategies and profiles, and how reloads went.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Control;
use crate::gateway::Gateway;
use crate::keys::time::unix_seconds;
use crate::strategy::LoadedProfile;

/// The result of one reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// When it finished.
    pub at: SystemTime,
    /// What asked for it: `watch`, `SIGHUP` or `admin`.
    pub trigger: String,
    /// Whether the new version is in service.
    pub ok: bool,
    /// What was loaded, or why nothing was.
    pub message: String,
    /// How long loading and building took.
    pub duration: Duration,
}

impl ReloadOutcome {
    /// The outcome as reported by the admin API.
    pub fn to_json(&self) -> Value {
        json!({
            "time": rfc3339(self.at),
            "unix_time": unix_seconds(self.at),
            "trigger": self.trigger,
            "result": if self.ok { "ok" } else { "error" },
            "ok": self.ok,
            "message": self.message,
            "duration_ms": ms(self.duration),
        })
    }
}

/// Reloads so far.
#[derive(Default)]
pub(super) struct Status {
    last: Option<ReloadOutcome>,
    last_error: Option<ReloadOutcome>,
    succeeded: u64,
    failed: u64,
}

impl Status {
    /// Counts `outcome` and remembers it as the last (and last failed) one.
    pub(super) fn record(&mut self, outcome: &ReloadOutcome) {
        if outcome.ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
            self.last_error = Some(outcome.clone());
        }
        self.last = Some(outcome.clone());
    }
}

impl Control {
    /// `GET /admin/status`: the current version, its strategies and
    /// profiles, and the last reload.
    pub fn status_json(&self) -> Value {
        let gateway = self.gateway();
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let watched = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        let runtime_models = self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .names()
            .cloned()
            .collect::<Vec<_>>();
        let (strategies, profiles) = strategies_and_profiles(&gateway);
        json!({
            "config": gateway.config_path.display().to_string(),
            "version": self.generation.load(Ordering::SeqCst),
            "loaded_at": rfc3339(gateway.loaded_at),
            "loaded_at_unix": unix_seconds(gateway.loaded_at),
            "started_at": rfc3339(self.started),
            "models": gateway.model_names,
            "runtime_models": runtime_models,
            "strategies": strategies,
            "profiles": profiles,
            "watching": self.watching(),
            "watched_files": watched,
            "compile_cache": self.compile_cache_json(),
            "last_reload": status.last.as_ref().map(ReloadOutcome::to_json),
            "last_reload_error": status.last_error.as_ref().map(ReloadOutcome::to_json),
            "reloads": {"ok": status.succeeded, "failed": status.failed},
        })
    }

    /// The compile cache in use and its hits and misses.
    fn compile_cache_json(&self) -> Value {
        // The engine exists once a profile needed it; status never creates it.
        let engine = self.options.engine.existing();
        let cache = engine.as_ref().and_then(|e| e.compile_cache().cloned());
        match (&cache, &engine, self.options.engine.cache_dir()) {
            (Some(c), _, _) => {
                json!({"enabled": true, "dir": c.dir().display().to_string(), "hits": c.hits(), "misses": c.misses()})
            }
            // Configured, but no component compiled yet.
            (None, None, Some(dir)) => {
                json!({"enabled": true, "dir": dir.display().to_string(), "hits": 0, "misses": 0})
            }
            _ => json!({"enabled": false}),
        }
    }
}

/// Each loaded component once (with the profiles that use it) and each
/// profile, sorted by profile name.
fn strategies_and_profiles(gateway: &Gateway) -> (Vec<Value>, Vec<Value>) {
    let mut profiles: Vec<&LoadedProfile> = gateway
        .strategies
        .profiles()
        .values()
        .map(AsRef::as_ref)
        .collect();
    profiles.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    let mut strategies: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for p in &profiles {
        let s = &p.strategy;
        if seen.contains(&s.source.as_str()) {
            continue;
        }
        seen.push(&s.source);
        let users: Vec<&str> = profiles
            .iter()
            .filter(|q| q.strategy.source == s.source)
            .map(|q| q.plan.name.as_str())
            .collect();
        strategies.push(json!({
            "name": p.plan.strategy,
            "source": s.source,
            "hash": s.hash,
            "loaded_at": rfc3339(s.loaded_at),
            "loaded_at_unix": unix_seconds(s.loaded_at),
            "from_cache": s.from_cache,
            "load_ms": ms(s.load_time),
            "profiles": users,
        }));
    }
    let profiles = profiles.iter().map(|p| profile_json(p)).collect();
    (strategies, profiles)
}

fn profile_json(p: &LoadedProfile) -> Value {
    json!({
        "name": p.plan.name,
        "strategy": p.plan.strategy,
        "source": p.strategy.source,
        "hash": p.strategy.hash,
        "loaded_at": rfc3339(p.strategy.loaded_at),
        "available": true,
    })
}

/// Milliseconds with microsecond precision.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// `t` as an RFC 3339 UTC timestamp with milliseconds; times before the
/// epoch show as the epoch, and times past year 9999 as nothing.
fn rfc3339(t: SystemTime) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{}",
        humantime::format_rfc3339_millis(t.max(UNIX_EPOCH))
    );
    out
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
}
