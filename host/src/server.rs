//! Starting and stopping the server: load the config, choose the compile
//! cache, build the gateway (with the runtime overlay), bind, start the
//! control plane (SIGHUP, file watching, admin API), serve until
//! SIGINT/SIGTERM, then drain in-flight requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;

use crate::admin::Overlay;
use crate::config::{self, ConfigError, LoadedConfig};
use crate::gateway::Gateway;
use crate::http::{AppState, app};
use crate::reload::{Control, ControlOptions};
use crate::router::{Clock, SystemClock};
use crate::strategy::StrategyEngine;

/// The one pooled HTTP client every upstream call shares.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("conclave/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Loads `path` and builds a gateway from it, logging every warning.
pub async fn load_gateway(
    path: &Path,
    client: reqwest::Client,
) -> Result<(LoadedConfig, Gateway), ConfigError> {
    let loaded = config::load(path)?;
    let (gateway, warnings) = Gateway::build(&loaded, client, Arc::new(SystemClock)).await?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok((loaded, gateway))
}

/// What `conclave serve` was asked to do.
#[derive(Debug, Clone)]
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
}

/// Serves until a shutdown signal. Config errors return before any port is bound.
pub async fn serve(options: ServeOptions) -> Result<(), String> {
    let ServeOptions {
        config_path,
        host,
        port,
        watch,
        no_compile_cache,
        persist_admin_changes,
    } = options;
    let client = http_client()?;
    let loaded = config::load(&config_path).map_err(|e| e.to_string())?;
    let cache_dir = crate::compile_cache::resolve_dir(
        no_compile_cache,
        loaded.config.general_settings.compile_cache_dir.as_deref(),
        &config_path,
    );
    StrategyEngine::use_compile_cache(cache_dir.clone())?;
    let overlay = match &persist_admin_changes {
        Some(path) => Overlay::load(path)?,
        None => Overlay::default(),
    };
    if !overlay.is_empty() {
        tracing::info!(
            models = overlay.names().cloned().collect::<Vec<_>>().join(", "),
            "runtime models loaded from the persistence file"
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let known = crate::reload::baseline(&loaded);
    let (gateway, warnings) =
        crate::reload::build(&loaded, &overlay, client.clone(), clock.clone()).await?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let models = gateway.model_names.len();
    let watching = watch || gateway.hot_reload;
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| format!("invalid listen address {host}:{port}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let control = Control::new(
        ControlOptions {
            client,
            clock,
            watch,
            persist: persist_admin_changes,
            compile_cache_dir: cache_dir.clone(),
        },
        gateway,
        loaded,
        overlay,
        known,
    );
    control.spawn_signal_handler();
    control.spawn_watcher();
    let state = AppState::with_control(control, local.ip().is_loopback());
    tracing::info!(
        address = %local,
        config = %config_path.display(),
        models,
        watching,
        compile_cache = %cache_dir.as_ref().map_or("off".to_owned(), |d| d.display().to_string()),
        "conclave listening"
    );
    // Answers go out as soon as they are written: without TCP_NODELAY a
    // response written in two parts can wait for the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("conclave stopped");
    Ok(())
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
