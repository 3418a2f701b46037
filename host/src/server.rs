//! Starting and stopping the server: load the config, build the gateway, bind,
//! serve until SIGINT/SIGTERM, then drain in-flight requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, ConfigError, LoadedConfig};
use crate::gateway::Gateway;
use crate::http::{AppState, app};
use crate::router::SystemClock;

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

/// Serves until a shutdown signal. Config errors return before any port is bound.
pub async fn serve(config_path: &Path, host: &str, port: u16) -> Result<(), String> {
    let client = http_client()?;
    let (_, gateway) = load_gateway(config_path, client)
        .await
        .map_err(|e| e.to_string())?;
    let models = gateway.model_names.len();
    let state = AppState::new(gateway);
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| format!("invalid listen address {host}:{port}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %local, config = %config_path.display(), models, "conclave listening");
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
