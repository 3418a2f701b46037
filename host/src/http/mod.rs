//! The HTTP surface: OpenAI-compatible routes, health, auth and error mapping.
//! [`app`] assembles the whole stack in one place, top to bottom.

mod admin;
mod auth;
mod composite;
pub mod error;
mod routes;
mod sse;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};

use crate::gateway::Gateway;
use crate::reload::Control;

/// Shared state of every handler: the current gateway version, and the
/// control plane that replaces it.
#[derive(Clone)]
pub struct AppState {
    current: Arc<ArcSwap<Gateway>>,
    control: Option<Arc<Control>>,
    /// The server listens on loopback only (admits the admin API without a master key).
    loopback_only: bool,
}

impl AppState {
    /// State serving `gateway`, without reloads or an admin API.
    pub fn new(gateway: Gateway) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(gateway)),
            control: None,
            loopback_only: false,
        }
    }

    /// State serving `control`'s current version, with the admin API.
    pub fn with_control(control: Arc<Control>, loopback_only: bool) -> Self {
        Self {
            current: control.current(),
            control: Some(control),
            loopback_only,
        }
    }

    /// The version a request should use from start to end.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Makes `gateway` the version new requests get.
    pub fn replace(&self, gateway: Gateway) {
        self.current.store(Arc::new(gateway));
    }
}

/// The axum application.
pub fn app(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/completions", post(routes::completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/embeddings", post(routes::embeddings))
        .route("/v1/models", get(routes::models))
        .route("/models", get(routes::models))
        .route("/v1/model/info", get(routes::model_info))
        .route("/model/info", get(routes::model_info))
        .route("/health", get(routes::health))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_master_key,
        ));
    let admin = Router::new()
        .route("/admin/status", get(admin::status))
        .route("/admin/reload", post(admin::reload))
        .route(
            "/admin/models",
            post(admin::register_model).get(admin::list_models),
        )
        .route("/admin/models/{*model_name}", delete(admin::delete_model))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let open = Router::new()
        .route("/health/liveliness", get(routes::liveliness))
        .route("/health/liveness", get(routes::liveliness))
        .route("/health/readiness", get(routes::readiness));
    authenticated
        .merge(admin)
        .merge(open)
        .fallback(routes::not_found)
        // After every route is added: it applies to the routes present.
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Bodies are read with the configured limit by the handlers, which
        // answer 413 in OpenAI's error shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
