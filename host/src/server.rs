//! Starting and stopping the server: load the config, choose the compile
//! cache, build the gateway (with the runtime overlay), bind, start the
//! control plane (SIGHUP, file watching, admin API), serve until
//! SIGINT/SIGTERM, then drain in-flight requests and, after the grace
//! period, end open streams ([`accept`] has the connection handling).

mod accept;
mod watchdog;
mod write_timeout;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Overlay;
use crate::config;
use crate::http::client_ip::IpAllowlist;
use crate::http::{AppState, DEFAULT_MAX_BODIES_MB, DEFAULT_MAX_IN_FLIGHT, InFlight, Ops, app};
use crate::ops::admission::{Admission, DEFAULT_QUEUE_TIMEOUT, default_checks};
use crate::ops::sinks::{OutcomeSink, Outcomes, default_sinks};
use crate::reload::{Control, ControlOptions};
use crate::router::{Clock, SystemClock};
use crate::strategy::SharedEngine;
use crate::upstream_tls::UpstreamTls;

pub use accept::{
    DEFAULT_CLIENT_WRITE_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_GRACE,
};

/// The `user-agent` of every upstream call.
pub const USER_AGENT: &str = concat!("conclave/", env!("CARGO_PKG_VERSION"));

/// The one pooled HTTP client every upstream call shares, with the
/// config's upstream TLS settings (`UpstreamTls::default()` for a client of
/// the gateway itself).
pub fn http_client(tls: &UpstreamTls) -> Result<reqwest::Client, String> {
    let builder = tls.configure(reqwest::Client::builder())?;
    builder
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(USER_AGENT)
        // An upstream's redirect is its answer, not a place to send the
        // prompt (and its key) to: a 3xx fails the call like any error.
        .redirect(reqwest::redirect::Policy::none())
        // Retries are the router's (num_retries, fallbacks, cooldowns).
        // The client itself resends only a request an HTTP/2 upstream
        // refused unread (REFUSED_STREAM, or a graceful GOAWAY before the
        // stream), at most twice, which RFC 9113 deems safe.
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// What `conclave serve` was asked to do.
#[derive(Clone)]
pub struct ServeOptions {
    pub config_path: PathBuf,
    pub host: String,
    pub port: u16,
    /// Reload when the config, its `.env` or a strategy component changes.
    pub watch: bool,
    /// Compile every component instead of using the on-disk cache.
    pub no_compile_cache: bool,
    /// Where runtime model registrations are kept across restarts.
    pub persist_admin_changes: Option<PathBuf>,
    /// Outcome sinks besides the default ones (an embedding program's own).
    pub extra_sinks: Vec<Arc<dyn OutcomeSink>>,
    /// How long open streams may go on after SIGINT/SIGTERM before they are
    /// ended with a shutdown error event.
    pub shutdown_grace: Duration,
}

/// How long shutdown waits for the outcome sinks to take what is queued.
const OUTCOME_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A server whose port is bound and whose first gateway version is built,
/// ready to [`Bound::run`].
pub struct Bound {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    state: AppState,
    outcomes: Outcomes,
    limits: accept::Limits,
    /// The CORS rules (`general_settings.cors_allow_origins`, read at start-up).
    cors: Option<tower_http::cors::CorsLayer>,
    /// The addresses served (`general_settings.allowed_ips`, read at start-up).
    allowlist: Option<Arc<IpAllowlist>>,
    /// `allowed_routes`, `public_routes` and `admin_only_routes`, read at start-up.
    route_rules: Option<Arc<crate::http::route_rules::RouteRules>>,
    /// The key store, whose queued spend is written before exit.
    keys: Option<crate::keys::Keys>,
}

impl Bound {
    /// The address the server listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` completes, drains in-flight requests (open
    /// streams for at most the grace period), then flushes queued outcomes
    /// to their sinks.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let cutoff = self.state.stream_cutoff().clone();
        accept::serve(
            self.listener,
            app(self.state, self.cors, self.allowlist, self.route_rules),
            self.limits,
            cutoff,
            shutdown,
        )
        .await;
        if !self.outcomes.flush(OUTCOME_FLUSH_TIMEOUT).await {
            tracing::warn!("outcome sinks did not take every queued outcome before shutdown");
        }
        if !crate::observe::otel::flush(OUTCOME_FLUSH_TIMEOUT).await {
            tracing::warn!("queued spans were not all exported before shutdown");
        }
        if let Some(keys) = &self.keys
            && !keys.flush(SPEND_FLUSH_TIMEOUT).await
        {
            tracing::warn!(
                "queued spend rows were not all written to the key store before shutdown"
            );
        }
        tracing::info!("conclave stopped");
        Ok(())
    }
}

/// Serves until a shutdown signal. Config errors return before any port is bound.
pub async fn serve(options: ServeOptions) -> Result<(), String> {
    bind(options).await?.run(shutdown_signal()).await
}

/// Loads the config, builds the first gateway version and binds the port.
/// Config errors return before any port is bound.
pub async fn bind(options: ServeOptions) -> Result<Bound, String> {
    let ServeOptions {
        config_path,
        host,
        port,
        watch,
        no_compile_cache,
        persist_admin_changes,
        extra_sinks,
        shutdown_grace,
    } = options;
    let loaded = config::load(&config_path).map_err(|e| e.to_string())?;
    let tls = UpstreamTls::from_config(&loaded.config);
    tls.warn_if_unchecked();
    let client = http_client(&tls)?;
    // Process-wide limits are read once, at start-up.
    let mut general = loaded.config.general_settings.clone();
    general.public_metrics = general.public_metrics.or(loaded
        .config
        .litellm_settings
        .require_auth_for_metrics_endpoint
        .map(|required| !required));
    if loaded.config.general_settings.database_url.is_some()
        || loaded.config.env.get("DATABASE_URL").is_some()
    {
        crate::keys::database_url(&loaded.config, &config_path)?;
    }
    let shared_state = crate::cluster::Settings::from_config(&loaded.config);
    if let Some(shared) = &shared_state {
        shared
            .check()
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
    }
    crate::observe::otel::install(&loaded.config, &config_path.display().to_string())?;
    let cache_dir = crate::compile_cache::resolve_dir(
        no_compile_cache,
        loaded.config.general_settings.compile_cache_dir.as_deref(),
        &config_path,
    );
    let engine = Arc::new(SharedEngine::new(cache_dir.clone()));
    // The store is open before the first version is built: runtime models
    // kept there serve from the first request.
    let has_master_key = crate::gateway::master_key(&loaded.config).is_some();
    let keys = open_keys(&loaded.config, &config_path, has_master_key).await?;
    let stored = stored_models(
        &loaded.config,
        keys.as_ref(),
        persist_admin_changes.as_deref(),
    );
    let overlay = match (&stored, &persist_admin_changes) {
        (Some(stored), _) => stored.load().await?,
        (None, Some(path)) => Overlay::load(path)?,
        (None, None) => Overlay::default(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let known = crate::reload::baseline(&loaded);
    let (gateway, overlay) = first_version(
        &loaded,
        overlay,
        stored.is_some(),
        client.clone(),
        clock.clone(),
        &engine,
    )
    .await?;
    let models = gateway.model_names.len();
    let watching = watch || gateway.hot_reload;
    let addr = listen_address(&host, port).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let responses = crate::keys::ResponseStore::new(
        crate::keys::ResponsesSettings::from_config(&loaded.config, &config_path)?,
        keys.as_ref(),
    );
    let control = Control::new(
        ControlOptions {
            client,
            clock,
            watch,
            persist: persist_admin_changes,
            stored,
            engine,
        },
        gateway,
        loaded,
        overlay,
        known,
    );
    control.spawn_signal_handler();
    control.spawn_watcher();
    crate::health::spawn(&general, control.current(), http_client(&tls)?);
    let observe = crate::observe::Observe::from_settings(&general, &config_path);
    let dashboard = open_dashboard(&general, observe.request_log.is_some());
    let outcomes = start_sinks(
        &observe,
        &control,
        extra_sinks,
        dashboard.as_ref(),
        keys.as_ref(),
    )?;
    let limiter = limiter(shared_state, keys.as_ref(), &control).await?;
    let proxy_budget = start_proxy_budget(keys.as_ref(), &control).await?;
    let ops = Ops {
        observe,
        outcomes: outcomes.clone(),
        admission: Admission::new(default_checks(
            general
                .composite_queue_timeout
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(DEFAULT_QUEUE_TIMEOUT),
            &limiter,
            keys.as_ref(),
            proxy_budget.clone(),
        )),
        limiter,
        keys: keys.clone(),
        responses,
        dashboard,
        proxy_budget,
    };
    let in_flight = InFlight::new(
        general
            .global_max_parallel_requests
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        general
            .max_request_bodies_mb
            .unwrap_or(DEFAULT_MAX_BODIES_MB),
    );
    let state = AppState::new(control, local.ip().is_loopback(), ops, in_flight);
    let allowlist = allowlist(&general)?;
    let route_rules = crate::http::route_rules::RouteRules::from_settings(&general)
        .map_err(|(key, why)| format!("{key}: {why}"))?
        .map(Arc::new);
    let limits = accept::Limits {
        peer_addresses: allowlist.is_some(),
        ..connection_limits(&general, shutdown_grace)
    };
    tracing::info!(
        address = %local,
        config = %config_path.display(),
        models,
        watching,
        compile_cache = %cache_dir.as_ref().map_or("off".to_owned(), |d| d.display().to_string()),
        "conclave listening"
    );
    Ok(Bound {
        listener,
        local,
        state,
        cors: crate::http::cors::layer(general.cors_allow_origins.as_deref()),
        allowlist,
        route_rules,
        outcomes,
        limits,
        keys,
    })
}

/// The first version to serve: the config with the runtime models kept in
/// the store (`from_store`: those that no longer fit it are skipped, with a
/// warning) or the persistence file (refused whole when one does not fit).
/// Its warnings are logged here.
async fn first_version(
    loaded: &config::LoadedConfig,
    overlay: Overlay,
    from_store: bool,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    engine: &SharedEngine,
) -> Result<(crate::gateway::Gateway, Overlay), String> {
    let (gateway, warnings, overlay) = if from_store {
        crate::reload::build_usable(loaded, overlay, client, clock, engine, None).await
    } else {
        crate::reload::build(loaded, &overlay, client, clock, engine, None)
            .await
            .map(|(gateway, warnings)| (gateway, warnings, overlay))
    }
    .map_err(|e| e.to_string())?;
    if !overlay.is_empty() {
        tracing::info!(
            models = overlay.names().cloned().collect::<Vec<_>>().join(", "),
            "runtime models loaded from {}",
            if from_store {
                "the key store"
            } else {
                "the persistence file"
            }
        );
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok((gateway, overlay))
}

/// Starts the outcome dispatcher with every sink this gateway has: the
/// default ones, the caller's extra ones, the dashboard's and the spend
/// writer's.
fn start_sinks(
    observe: &crate::observe::Observe,
    control: &Arc<Control>,
    extra_sinks: Vec<Arc<dyn OutcomeSink>>,
    dashboard: Option<&Arc<crate::dashboard::Dashboard>>,
    keys: Option<&crate::keys::Keys>,
) -> Result<Outcomes, String> {
    let mut sinks = default_sinks(observe, control.current());
    sinks.extend(extra_sinks);
    if let Some(dashboard) = dashboard {
        sinks.push(Arc::new(crate::dashboard::DashboardSink(dashboard.clone())));
    }
    if let Some(keys) = keys {
        sinks.push(Arc::new(crate::ops::sinks::SpendSink::new(keys.clone())));
    }
    Outcomes::start(sinks).map_err(|e| format!("cannot start the outcome sinks: {e}"))
}

/// The dashboard's data, unless `general_settings.ui` is false; its request
/// pages show each upstream attempt, so model calls record them.
fn open_dashboard(
    general: &config::GeneralSettings,
    keep_bodies: bool,
) -> Option<Arc<crate::dashboard::Dashboard>> {
    if !general.ui.unwrap_or(true) {
        return None;
    }
    crate::observe::record_attempts();
    let recent = general
        .ui_recent_requests
        .map_or(crate::dashboard::DEFAULT_RECENT_REQUESTS, |n| n as usize);
    Some(crate::dashboard::Dashboard::new(recent, keep_bodies))
}

/// Where runtime registrations are kept when `store_model_in_db` asks for
/// the store: there when it is open (the persistence file is then unused,
/// with a warning when both are asked for); without it (no master key, so
/// no store), a warning says registrations stay as before.
fn stored_models(
    config: &config::Config,
    keys: Option<&crate::keys::Keys>,
    persist: Option<&std::path::Path>,
) -> Option<Arc<crate::admin::StoredModels>> {
    if !crate::admin::store_model_in_db(config) {
        return None;
    }
    let Some(keys) = keys else {
        tracing::warn!(
            "{}{}",
            crate::admin::NO_KEY_STORE,
            if persist.is_some() {
                " (they are kept in the --persist-admin-changes file)"
            } else {
                " and are lost at restart"
            }
        );
        return None;
    };
    if let Some(path) = persist {
        tracing::warn!(
            file = %path.display(),
            "general_settings.store_model_in_db wins over --persist-admin-changes: runtime models are kept in the key store; the file is neither read nor written"
        );
    }
    Some(Arc::new(crate::admin::StoredModels::new(
        keys.store().clone(),
    )))
}

/// The address `host:port` names: an IP address as written (IPv6 with or
/// without brackets), else the first address a name such as `localhost`
/// resolves to.
async fn listen_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let written = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse());
    if let Ok(addr) = written {
        return Ok(addr);
    }
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!(
                "invalid listen address {host}:{port}: not an IP address or a name that resolves \
                 (the host is set by --host, CONCLAVE_HOST or HOST)"
            )
        })
}

/// How long shutdown waits for queued spend rows to reach the key store.
const SPEND_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the virtual-key store when the gateway has a master key (see
/// [`crate::keys`]); an unusable store stops start-up with its reason.
/// The whole gateway's budget record: read from the key store before the
/// first request (and kept in step with it from then on), or counted in
/// memory without a store, which is said once.
async fn start_proxy_budget(
    keys: Option<&crate::keys::Keys>,
    control: &Arc<Control>,
) -> Result<Arc<crate::keys::ProxyBudget>, String> {
    let budget = Arc::new(crate::keys::ProxyBudget::default());
    let current = control.current();
    let first = current.load().proxy_budget.clone();
    match (keys, first) {
        (Some(keys), first) => {
            if let Some(settings) = &first {
                budget
                    .sync(keys, settings)
                    .await
                    .map_err(|e| format!("litellm_settings.max_budget: {e}"))?;
            }
            crate::keys::proxy_budget::spawn_sync(budget.clone(), keys.clone(), move || {
                current.load().proxy_budget.clone()
            });
        }
        (None, Some(_)) => tracing::warn!(
            "litellm_settings.max_budget: there is no key store (it opens with a master key), \
             so the gateway's spend is counted in this process's memory from start-up and a \
             restart starts it again from zero"
        ),
        (None, None) => {}
    }
    Ok(budget)
}

async fn open_keys(
    config: &config::Config,
    config_path: &std::path::Path,
    has_master_key: bool,
) -> Result<Option<crate::keys::Keys>, String> {
    let Some(settings) =
        crate::keys::KeysSettings::from_config(config, config_path, has_master_key)?
    else {
        if config.general_settings.database_url.is_some() {
            tracing::warn!(
                "general_settings.database_url is set but there is no master key: virtual keys are off; the database only keeps stored Responses API answers"
            );
        }
        return Ok(None);
    };
    let keys = crate::keys::Keys::open(settings)
        .await
        .map_err(|e| match e {
            // Its message already names the key store.
            crate::keys::KeyError::Store(_) => format!("cannot open the {e}"),
            e => format!("cannot open the key store: {e}"),
        })?;
    tracing::info!(backend = ?keys.store().backend(), "key store open");
    Ok(Some(keys))
}

/// The connection limits from `general_settings` (read at start-up); an
/// unusable value (zero, negative, not a number) falls back to the default.
fn connection_limits(
    general: &config::GeneralSettings,
    shutdown_grace: Duration,
) -> accept::Limits {
    accept::Limits {
        header_read_timeout: general
            .header_read_timeout
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        client_write_timeout: general
            .client_write_timeout
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(DEFAULT_CLIENT_WRITE_TIMEOUT),
        max_connections: general
            .max_connections
            .filter(|n| *n > 0)
            .map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize),
        shutdown_grace,
        peer_addresses: false,
    }
}

/// `general_settings.allowed_ips` (with `use_x_forwarded_for`), when set.
/// The config check has named any entry that is not an address already.
fn allowlist(general: &config::GeneralSettings) -> Result<Option<Arc<IpAllowlist>>, String> {
    let Some(entries) = &general.allowed_ips else {
        return Ok(None);
    };
    let xff = general.use_x_forwarded_for.unwrap_or(false);
    let list = IpAllowlist::new(entries, xff)
        .map_err(|(i, why)| format!("general_settings.allowed_ips[{i}]: {why}"))?;
    tracing::info!(
        entries = entries.len(),
        use_x_forwarded_for = xff,
        "serving only the addresses in general_settings.allowed_ips"
    );
    Ok(Some(Arc::new(list)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

/// The limit counters of a starting server: shared through Redis when
/// `settings` name one and virtual keys are on (`keys`), this process's
/// otherwise. With Redis, key changes and cooldowns are shared as well
/// (cooldowns even without keys), and so are runtime models kept in the
/// store.
async fn limiter(
    settings: Option<crate::cluster::Settings>,
    keys: Option<&crate::keys::Keys>,
    control: &Arc<Control>,
) -> Result<crate::limits::Limiter, String> {
    let Some(settings) = settings else {
        return Ok(crate::limits::Limiter::new());
    };
    let cluster = crate::cluster::Cluster::start(settings).await?;
    cluster.share(keys, control).await;
    Ok(match keys {
        Some(_) => {
            crate::limits::Limiter::shared(crate::limits::shared::SharedCounters::of(&cluster))
        }
        None => crate::limits::Limiter::new(),
    })
}
