//! The HTTP surface: OpenAI-compatible routes, health, auth and error mapping.
//! [`app`] assembles the whole stack in one place, top to bottom.

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
use axum::routing::{get, post};

use crate::gateway::Gateway;

/// Shared state of every handler: the current gateway version.
#[derive(Clone)]
pub struct AppState {
    current: Arc<ArcSwap<Gateway>>,
}

impl AppState {
    /// State serving `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(gateway)),
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
        .route("/health", get(routes::health))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_master_key,
        ));
    let open = Router::new()
        .route("/health/liveliness", get(routes::liveliness))
        .route("/health/liveness", get(routes::liveliness))
        .route("/health/readiness", get(routes::readiness));
    authenticated
        .merge(open)
        .fallback(routes::not_found)
        // After every route is added: it applies to the routes present.
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Bodies are read with the configured limit by the handlers, which
        // answer 413 in OpenAI's error shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
