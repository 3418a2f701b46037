//! The current gateway version and everything that replaces it: config
//! reloads and runtime model changes, each built, then swapped in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use serde_json::Value;

use super::status::{ReloadOutcome, Status, ms};
use super::watch::{Baseline, Seen, scan, watched_files};
use crate::admin::{Overlay, Registration, StoredModels};
use crate::config::{self, ConfigError, LoadedConfig};
use crate::gateway::{BuildError, Gateway};
use crate::router::{Clock, Router};
use crate::strategy::SharedEngine;

/// Builds the gateway for `base` with the runtime `overlay` applied.
/// When it replaces a version whose router is `previous`, deployments that
/// did not change keep their cooldowns, usage windows, latency and in-flight
/// counts.
pub async fn build(
    base: &LoadedConfig,
    overlay: &Overlay,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    engine: &SharedEngine,
    previous: Option<&Router>,
) -> Result<(Gateway, Vec<String>), BuildError> {
    let mut effective = base.clone();
    overlay
        .apply(&mut effective)
        .map_err(|problems| BuildError::Overlay(ConfigError::invalid(&base.path, problems)))?;
    Gateway::build(&effective, client, clock, engine, previous).await
}

/// [`build`] for an overlay read from the store, which was checked against
/// the config it was registered under, not necessarily this one: a
/// registration that no longer makes a deployment, or whose version does
/// not build, is left out with a warning naming it rather than failing the
/// whole build. Returns the overlay actually served.
pub async fn build_usable(
    base: &LoadedConfig,
    mut overlay: Overlay,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    engine: &SharedEngine,
    previous: Option<&Router>,
) -> Result<(Gateway, Vec<String>, Overlay), BuildError> {
    let skipped = |name: &str, why: &dyn std::fmt::Display| {
        format!("runtime model {name:?} from the store is skipped: {why}")
    };
    let mut warnings: Vec<String> = overlay
        .drop_unusable(base)
        .iter()
        .map(|(name, why)| skipped(name, why))
        .collect();
    match build(
        base,
        &overlay,
        client.clone(),
        clock.clone(),
        engine,
        previous,
    )
    .await
    {
        Ok((gateway, more)) => {
            warnings.extend(more);
            return Ok((gateway, warnings, overlay));
        }
        Err(e) if overlay.is_empty() => return Err(e),
        Err(e) => tracing::debug!(
            error = %e,
            "the stored runtime models do not all build; trying them one by one"
        ),
    }
    // Keep each registration that builds together with those kept before it.
    let mut kept = Overlay::default();
    for registration in overlay.registrations() {
        let mut trial = kept.clone();
        trial.upsert(registration.clone());
        match build(
            base,
            &trial,
            client.clone(),
            clock.clone(),
            engine,
            previous,
        )
        .await
        {
            Ok(_) => kept = trial,
            Err(e) => warnings.push(skipped(&registration.model_name, &e)),
        }
    }
    let (gateway, more) = build(base, &kept, client, clock, engine, previous).await?;
    warnings.extend(more);
    Ok((gateway, warnings, kept))
}

/// Why an admin change was refused.
#[derive(Debug)]
pub enum AdminError {
    /// The change would make a version that does not build.
    Rejected(BuildError),
    /// No runtime model has that name.
    NotFound(String),
    /// The model exists but is not the API's to change.
    Conflict(String),
    /// A deployment in service has the id a registration gives itself.
    IdTaken(String),
    /// The change could not be saved.
    Failed(String),
}

/// One admin change, as it is persisted.
enum Edit<'a> {
    Put(&'a Registration),
    /// A registration under an id of its own that no other may have
    /// (LiteLLM's `/model/new`).
    Add(&'a Registration),
    /// The deployment ids removed, all of one model name.
    Delete(&'a str, Vec<String>),
}

impl Edit<'_> {
    fn model_name(&self) -> &str {
        match self {
            Edit::Put(r) | Edit::Add(r) => &r.model_name,
            Edit::Delete(name, _) => name,
        }
    }
}

/// The config and overlay the current version was built from.
struct Layers {
    base: LoadedConfig,
    overlay: Overlay,
    /// The config the process started with: what is opened once (the key
    /// store, the shared Redis, the compile cache) came from it, so a
    /// reload is said to differ from it, not from the version before.
    started: LoadedConfig,
}

/// How `serve` was asked to run the control plane.
pub struct ControlOptions {
    /// The pooled HTTP client every version shares.
    pub client: reqwest::Client,
    /// The clock every version's router reads.
    pub clock: Arc<dyn Clock>,
    /// `serve --watch`; `general_settings.hot_reload` also turns watching on.
    pub watch: bool,
    /// `serve --persist-admin-changes FILE`.
    pub persist: Option<PathBuf>,
    /// The key store, when registrations are kept there
    /// (`general_settings.store_model_in_db`); the file is then unused.
    pub stored: Option<Arc<StoredModels>>,
    /// The strategy engine every version shares (and its compile cache).
    pub engine: Arc<SharedEngine>,
}

/// The current gateway version and everything that replaces it.
pub struct Control {
    current: Arc<ArcSwap<Gateway>>,
    config_path: PathBuf,
    pub(super) options: ControlOptions,
    /// Held while a version is built and swapped in; never by a request.
    builds: tokio::sync::Mutex<Layers>,
    pub(super) status: Mutex<Status>,
    /// The overlay in service, for reading without waiting for a build.
    pub(super) registered: Mutex<Overlay>,
    /// Files the watcher polls, from the config that parsed last.
    pub(super) watched: Mutex<Vec<PathBuf>>,
    /// What the watched files looked like when last checked: taken before
    /// a version reads them, so a change made while it loads is not missed.
    pub(super) known: Mutex<HashMap<PathBuf, Seen>>,
    pub(super) generation: AtomicU64,
    pub(super) started: SystemTime,
}

impl Control {
    /// Control over `gateway`, built from `base` and `overlay`. `known`
    /// is [`baseline`](super::baseline) taken before `gateway` was built.
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
            builds: tokio::sync::Mutex::new(Layers {
                started: base.clone(),
                base,
                overlay,
            }),
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

    /// When the server started (for uptime).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The version new requests get.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    fn swap(&self, gateway: Gateway) -> u64 {
        self.current.store(Arc::new(gateway));
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Builds the version that replaces the current one, carrying on the
    /// live numbers of its unchanged deployments.
    async fn build(&self, base: &LoadedConfig, overlay: &Overlay) -> Result<Gateway, BuildError> {
        let previous = self.gateway();
        let (gateway, warnings) = build(
            base,
            overlay,
            self.options.client.clone(),
            self.options.clock.clone(),
            &self.options.engine,
            Some(&previous.router),
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
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&outcome);
        outcome
    }

    async fn reload_locked(&self, layers: &mut Layers) -> Result<String, String> {
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("the config loader failed: {e}"))?
            .map_err(|e| e.to_string())?;
        if keyed(&layers.base) && !keyed(&loaded) {
            return Err(format!(
                "{}: general_settings.master_key is gone from the new version; a reload never \
                 opens a gateway that runs with a master key (restart it to run without one)",
                self.config_path.display()
            ));
        }
        // A version a restart would refuse is refused now: the note below
        // would otherwise send the operator to a restart that fails.
        if keyed(&loaded) {
            crate::keys::KeysSettings::from_config(&loaded.config, &self.config_path, true)?;
        }
        self.watch_files_of(&loaded).await;
        let notes = kept_until_restart(&layers.started, &loaded, &self.config_path);
        for note in &notes {
            tracing::warn!("{note}");
        }
        let configured = config_cache_dir(&loaded);
        if configured != config_cache_dir(&layers.started) {
            tracing::warn!(
                "general_settings.compile_cache_dir changed; the compile cache in use ({}) changes on restart",
                self.options
                    .engine
                    .cache_dir()
                    .map_or("off".to_owned(), |d| d.display().to_string())
            );
        }
        let gateway = self
            .build(&loaded, &layers.overlay)
            .await
            .map_err(|e| e.to_string())?;
        let models = gateway.model_names.len();
        let profiles = gateway.strategies.profiles().len();
        let generation = self.swap(gateway);
        layers.base = loaded;
        let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
        Ok(format!(
            "reloaded {} (version {generation}): {models} models, {profiles} profiles{notes}",
            self.config_path.display()
        ))
    }

    /// Makes the watcher poll `loaded`'s files, fingerprinting those seen
    /// for the first time before the build reads them.
    async fn watch_files_of(&self, loaded: &LoadedConfig) {
        let files = watched_files(loaded);
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
    }

    /// Registers (or replaces) a runtime model; true when it replaced a
    /// runtime registration. An id of its own replaces the runtime
    /// deployment that has it, never one of the config's.
    pub async fn register(&self, registration: Registration) -> Result<bool, AdminError> {
        self.put(registration, false).await
    }

    /// Registers one more deployment, refusing an id any deployment in
    /// service has (LiteLLM's `/model/new`).
    pub async fn add(&self, registration: Registration) -> Result<(), AdminError> {
        self.put(registration, true).await.map(drop)
    }

    /// Registers `registration` under the build lock, so that the check of
    /// its id and the change see the same deployments; `new_only` refuses
    /// replacing a runtime one too.
    async fn put(&self, registration: Registration, new_only: bool) -> Result<bool, AdminError> {
        let mut layers = self.builds.lock().await;
        let id = registration.deployment_id();
        let runtime = layers.overlay.get(&id).is_some();
        if registration.id.is_some()
            && (new_only || !runtime)
            && (self.in_service(&id) || self.in_config(&layers.base, &id))
        {
            return Err(AdminError::IdTaken(id));
        }
        // One more deployment of a composite model's name would never be
        // called: the name runs its profile.
        if new_only
            && self
                .gateway()
                .strategies
                .profile_for(&registration.model_name)
                .is_some()
        {
            return Err(AdminError::Conflict(format!(
                "model {:?} is a composite model: a deployment under its name would never be \
                 called; register it under a name of its own",
                registration.model_name
            )));
        }
        let mut overlay = layers.overlay.clone();
        let replaced = overlay.upsert(registration.clone());
        let edit = if new_only && registration.id.is_some() {
            Edit::Add(&registration)
        } else {
            Edit::Put(&registration)
        };
        let generation = self.apply_overlay(&mut layers, overlay, edit).await?;
        tracing::info!(
            model_name = %registration.model_name,
            deployment = %registration.deployment_id(),
            model = %registration.model,
            // Without userinfo or query: either may hold a credential.
            api_base = registration
                .api_base
                .as_deref()
                .map_or_else(|| "(provider default)".to_owned(), crate::public_url::public_url),
            replaced,
            generation,
            "runtime model registered"
        );
        Ok(replaced)
    }

    /// Whether a deployment in service has the id `id`.
    fn in_service(&self, id: &str) -> bool {
        self.gateway()
            .router
            .groups()
            .iter()
            .any(|g| g.deployments.iter().any(|d| *d.id == *id))
    }

    /// Whether a deployment of the config file has the id `id`, in service
    /// or not (a runtime registration may replace its group for now; the
    /// id comes back with it when that registration is deleted).
    fn in_config(&self, base: &LoadedConfig, id: &str) -> bool {
        Router::from_config(
            base,
            &[],
            self.options.client.clone(),
            self.options.clock.clone(),
            None,
        )
        .is_ok_and(|built| {
            built
                .router
                .groups()
                .iter()
                .any(|g| g.deployments.iter().any(|d| *d.id == *id))
        })
    }

    /// Deletes every runtime deployment of `model_name`; a model from the
    /// config file is refused.
    pub async fn unregister(&self, model_name: &str) -> Result<(), AdminError> {
        let mut layers = self.builds.lock().await;
        let mut overlay = layers.overlay.clone();
        let removed = overlay.remove_model(model_name);
        if removed.is_empty() {
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
        self.remove(&mut layers, overlay, model_name, removed).await
    }

    /// Deletes the runtime deployment with this id (its group keeps its
    /// other deployments); false when there is none.
    pub async fn unregister_deployment(&self, deployment_id: &str) -> Result<bool, AdminError> {
        let mut layers = self.builds.lock().await;
        let mut overlay = layers.overlay.clone();
        let Some(model_name) = overlay.get(deployment_id).map(|r| r.model_name.clone()) else {
            return Ok(false);
        };
        overlay.remove(deployment_id);
        let removed = vec![deployment_id.to_owned()];
        self.remove(&mut layers, overlay, &model_name, removed)
            .await
            .map(|()| true)
    }

    /// Serves `overlay`, which lacks the deployments `removed` of
    /// `model_name`.
    async fn remove(
        &self,
        layers: &mut Layers,
        overlay: Overlay,
        model_name: &str,
        removed: Vec<String>,
    ) -> Result<(), AdminError> {
        let ids = removed.join(", ");
        let generation = self
            .apply_overlay(layers, overlay, Edit::Delete(model_name, removed))
            .await?;
        tracing::info!(model_name, deployments = %ids, generation, "runtime model deleted");
        Ok(())
    }

    /// Serves `overlay` on top of the current config: built first (a
    /// rejected overlay changes nothing), persisted, then swapped in,
    /// remembered and (with the store) announced to the other instances.
    /// Returns the new version's generation.
    async fn apply_overlay(
        &self,
        layers: &mut Layers,
        overlay: Overlay,
        edit: Edit<'_>,
    ) -> Result<u64, AdminError> {
        let gateway = self
            .build(&layers.base, &overlay)
            .await
            .map_err(AdminError::Rejected)?;
        self.persist(&overlay, &edit).await?;
        let generation = self.serve_overlay(layers, gateway, overlay);
        if let Some(stored) = &self.options.stored {
            stored.announce(edit.model_name());
        }
        Ok(generation)
    }

    /// Swaps in `gateway`, built from `overlay`, and remembers the overlay
    /// as the one in service; the new generation.
    fn serve_overlay(&self, layers: &mut Layers, gateway: Gateway, overlay: Overlay) -> u64 {
        let generation = self.swap(gateway);
        *self.registered.lock().unwrap_or_else(|p| p.into_inner()) = overlay.clone();
        layers.overlay = overlay;
        generation
    }

    /// The store registrations are kept in, when they are.
    pub fn stored_models(&self) -> Option<&Arc<StoredModels>> {
        self.options.stored.as_ref()
    }

    /// Reads the registrations from the store again and, when they differ
    /// from those in service, builds and swaps in a version with them (as
    /// an admin change would): how another instance's registration or
    /// deletion reaches this one. Failures are logged; the current version
    /// keeps serving.
    pub async fn refresh_models(&self, trigger: &str) {
        let Some(stored) = self.options.stored.clone() else {
            return;
        };
        let mut layers = self.builds.lock().await;
        let overlay = match stored.load().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(trigger, error = %e, "runtime models not refreshed; the current version keeps serving");
                return;
            }
        };
        if overlay == layers.overlay {
            return;
        }
        let previous = self.gateway();
        let built = build_usable(
            &layers.base,
            overlay,
            self.options.client.clone(),
            self.options.clock.clone(),
            &self.options.engine,
            Some(&previous.router),
        )
        .await;
        drop(previous);
        let (gateway, warnings, overlay) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(trigger, error = %e, "runtime models from the store do not build; the current version keeps serving");
                return;
            }
        };
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let names = overlay.names().cloned().collect::<Vec<_>>().join(", ");
        let generation = self.serve_overlay(&mut layers, gateway, overlay);
        tracing::info!(trigger, generation, models = %names, "runtime models reloaded from the store");
    }

    /// The runtime registrations in service that `id` names, keys included
    /// (for an update to start from): the one with that deployment id, else
    /// those serving the model name `id` (or `runtime:<model_name>`) names.
    pub fn registrations_named(&self, id: &str) -> Vec<Registration> {
        let registered = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = registered.get(id) {
            return vec![r.clone()];
        }
        let serving = |name: &str| -> Vec<Registration> {
            registered
                .registrations()
                .filter(|r| r.model_name == name)
                .cloned()
                .collect()
        };
        match (serving(id), id.strip_prefix("runtime:")) {
            (found, Some(name)) if found.is_empty() => serving(name),
            (found, _) => found,
        }
    }

    /// The runtime registrations in service (without keys).
    pub fn registrations(&self) -> Vec<Value> {
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registrations()
            .map(|r| r.to_json(false))
            .collect()
    }

    async fn persist(&self, overlay: &Overlay, edit: &Edit<'_>) -> Result<(), AdminError> {
        if let Some(stored) = &self.options.stored {
            return match edit {
                Edit::Put(registration) => stored.save(registration).await,
                Edit::Add(registration) => match stored.add(registration).await {
                    Ok(true) => Ok(()),
                    Ok(false) => return Err(AdminError::IdTaken(registration.deployment_id())),
                    Err(e) => Err(e),
                },
                Edit::Delete(_, ids) => stored.delete(ids).await,
            }
            .map_err(AdminError::Failed);
        }
        let Some(path) = self.options.persist.clone() else {
            return Ok(());
        };
        let overlay = overlay.clone();
        tokio::task::spawn_blocking(move || overlay.save(&path))
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))?
            .map_err(AdminError::Failed)
    }
}

fn config_cache_dir(loaded: &LoadedConfig) -> Option<String> {
    loaded.config.general_settings.compile_cache_dir.clone()
}

/// Whether `config` runs the gateway with a master key (from the file or
/// the environment).
fn keyed(config: &LoadedConfig) -> bool {
    crate::gateway::master_key(&config.config).is_some()
}

/// What a new version changes that only a restart applies: the key store
/// and the shared Redis are opened once, at start. Said in the reload's
/// outcome and the log, never with the address (it may hold a password).
fn kept_until_restart(
    old: &LoadedConfig,
    new: &LoadedConfig,
    config_path: &std::path::Path,
) -> Vec<String> {
    let mut notes = Vec::new();
    let store = |c: &LoadedConfig| crate::keys::database_url(&c.config, config_path).ok();
    if !keyed(old) && keyed(new) {
        notes.push(
            "a master key is set now, but the key store opens at start: virtual keys and \
             the management API stay off until a restart"
                .to_owned(),
        );
    } else if keyed(new) && store(old) != store(new) {
        notes.push(
            "the key store's address changed (general_settings.database_url or DATABASE_URL); \
             the store in use stays until a restart"
                .to_owned(),
        );
    }
    let redis = |c: &LoadedConfig| crate::cluster::Settings::from_config(&c.config);
    if redis(old) != redis(new) {
        notes.push(
            "the shared Redis settings changed (router_settings.redis_*, REDIS_URL); the \
             connection in use stays until a restart"
                .to_owned(),
        );
    }
    let clients = |c: &LoadedConfig| {
        let g = &c.config.general_settings;
        (g.allowed_ips.clone(), g.use_x_forwarded_for)
    };
    if clients(old) != clients(new) {
        notes.push(
            "general_settings.allowed_ips or use_x_forwarded_for changed; the addresses \
             served stay those read at start until a restart"
                .to_owned(),
        );
    }
    let routes = |c: &LoadedConfig| {
        let g = &c.config.general_settings;
        (
            g.allowed_routes.clone(),
            g.public_routes.clone(),
            g.admin_only_routes.clone(),
        )
    };
    if routes(old) != routes(new) {
        notes.push(
            "general_settings.allowed_routes, public_routes or admin_only_routes changed; the \
             route rules read at start stay until a restart"
                .to_owned(),
        );
    }
    if process_settings(old) != process_settings(new) {
        notes.push(
            "general_settings.global_max_parallel_requests, max_request_bodies_mb, \
             max_connections, header_read_timeout, client_write_timeout, \
             composite_queue_timeout, cors_allow_origins, ui, ui_recent_requests or \
             public_metrics changed; the values read at start stay until a restart"
                .to_owned(),
        );
    }
    let tls = |c: &LoadedConfig| crate::upstream_tls::UpstreamTls::from_config(&c.config);
    if tls(old) != tls(new) {
        notes.push(
            "the upstream TLS settings changed (litellm_settings.ssl_verify, ssl_certificate); \
             the ones read at start stay until a restart"
                .to_owned(),
        );
    }
    notes
}

/// The process-wide settings `serve` reads once, at start: the gateway's
/// bounds, its connections' timeouts, the CORS rules and the dashboard.
fn process_settings(c: &LoadedConfig) -> impl PartialEq + use<> {
    let g = &c.config.general_settings;
    (
        (
            g.global_max_parallel_requests,
            g.max_request_bodies_mb,
            g.max_connections,
            g.header_read_timeout,
            g.client_write_timeout,
            g.composite_queue_timeout,
        ),
        g.cors_allow_origins.clone(),
        (g.ui, g.ui_recent_requests, g.public_metrics),
        c.config.litellm_settings.require_auth_for_metrics_endpoint,
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(yaml: &str) -> LoadedConfig {
        config::load_str(yaml, Path::new("/srv/c.yaml"), config::Env::default()).unwrap()
    }

    #[test]
    fn a_new_store_or_redis_address_is_said_to_wait_for_a_restart_without_showing_it() {
        let path = Path::new("/srv/c.yaml");
        let base = load("model_list: []\ngeneral_settings:\n  master_key: sk-1\n");
        let moved = load(
            "model_list: []\ngeneral_settings:\n  master_key: sk-1\n  database_url: postgres://u:hunter2@db/x\nrouter_settings:\n  redis_url: redis://:pw@127.0.0.1:6390\n",
        );
        let notes = kept_until_restart(&base, &moved, path);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("key store") && notes[1].contains("Redis"));
        assert!(
            notes
                .iter()
                .all(|n| !n.contains("hunter2") && !n.contains("6390")),
            "{notes:?}"
        );
        assert!(kept_until_restart(&base, &base, path).is_empty());
        let unkeyed = load("model_list: []\n");
        let notes = kept_until_restart(&unkeyed, &base, path);
        assert!(notes[0].contains("master key"), "{notes:?}");
    }

    #[test]
    fn new_client_addresses_or_upstream_tls_are_said_to_wait_for_a_restart() {
        let path = Path::new("/srv/c.yaml");
        let base = load("model_list: []\n");
        let narrowed = load(
            "model_list: []\ngeneral_settings:\n  allowed_ips: ['10.0.0.0/8']\nlitellm_settings:\n  ssl_verify: false\n",
        );
        let notes = kept_until_restart(&base, &narrowed, path);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("allowed_ips") && notes[1].contains("ssl_verify"));
    }

    #[test]
    fn new_process_limits_cors_or_dashboard_settings_are_said_to_wait_for_a_restart() {
        let path = Path::new("/srv/c.yaml");
        let base = load("model_list: []\n");
        for changed in [
            "  global_max_parallel_requests: 1\n",
            "  cors_allow_origins: []\n",
            "  ui: false\n",
        ] {
            let new = load(&format!("model_list: []\ngeneral_settings:\n{changed}"));
            let notes = kept_until_restart(&base, &new, path);
            assert_eq!(notes.len(), 1, "{changed}: {notes:?}");
            assert!(notes[0].contains("until a restart"), "{notes:?}");
        }
    }
}
