//! The HTTP surface: OpenAI-compatible routes, health, auth and error mapping.
//! [`app`] assembles the whole stack in one place, top to bottom.

mod admin;
mod anthropic_models;
mod auth;
mod cache_routes;
mod cached;
pub mod client_ip;
pub mod cors;
mod dashboard;
mod dialect;
mod docs;
pub mod error;
mod execute;
mod guard;
mod in_flight;
mod info;
mod keyless;
mod management;
mod messages;
mod metered;
mod metrics;
mod openapi;
mod request_id;
mod responses;
pub mod route_rules;
mod routes;
mod sse;
mod stream_cutoff;
mod tracked;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, patch, post};
use tower::ServiceBuilder;

pub use request_id::AssignId;

use crate::gateway::Gateway;
use crate::openai::Endpoint;
use crate::ops::admission::Admission;
use crate::ops::sinks::Outcomes;
use crate::reload::Control;

pub use auth::Scope;
pub use in_flight::{DEFAULT_MAX_BODIES_MB, DEFAULT_MAX_IN_FLIGHT, InFlight};
pub use stream_cutoff::StreamCutoff;

/// Shared state of every handler: the current gateway version, the control
/// plane that replaces it, and the operations layer every request passes.
/// One `Arc`: axum clones the state for every layer and handler a request
/// passes, so a clone must cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    current: Arc<ArcSwap<Gateway>>,
    control: Arc<Control>,
    /// The server listens on loopback only (admits the admin API without a master key).
    loopback_only: bool,
    ops: Ops,
    in_flight: InFlight,
    /// Ends every open stream when shutdown's grace period is over.
    cutoff: StreamCutoff,
    /// The response cache, kept across versions while its settings stay the same.
    cache: Arc<crate::cache::CacheSlot>,
}

/// What the operations layer gives the HTTP edge: where outcomes go, and the
/// checks that admit a request.
#[derive(Clone)]
pub struct Ops {
    /// Metrics and their settings, for `GET /metrics`.
    pub observe: crate::observe::Observe,
    pub outcomes: Outcomes,
    pub admission: Admission,
    /// Virtual keys, users, teams and spend; `None` without a master key.
    pub keys: Option<crate::keys::Keys>,
    /// The virtual-key limit counters (shared with the admission checks).
    pub limiter: crate::limits::Limiter,
    /// Stored Responses API answers (`previous_response_id`, `GET /v1/responses/{id}`).
    pub responses: crate::keys::ResponseStore,
    /// What the web dashboard shows; `None` when it is off (`general_settings.ui: false`).
    pub dashboard: Option<Arc<crate::dashboard::Dashboard>>,
    /// The whole gateway's budget record (`litellm_settings.max_budget`).
    pub proxy_budget: Arc<crate::keys::ProxyBudget>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State serving `control`'s current version.
    pub fn new(control: Arc<Control>, loopback_only: bool, ops: Ops, in_flight: InFlight) -> Self {
        let state = Self(Arc::new(Shared {
            current: control.current(),
            control,
            loopback_only,
            ops,
            in_flight,
            cutoff: StreamCutoff::default(),
            cache: Arc::default(),
        }));
        // Built now rather than on the first request: a Redis cache starts
        // connecting at once.
        let _ = state.cache.for_settings(state.gateway().cache.as_ref());
        state
    }

    /// The switch that ends every open stream (the server fires it).
    pub fn stream_cutoff(&self) -> &StreamCutoff {
        &self.cutoff
    }

    /// The version a request should use from start to end.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }
}

/// The whole HTTP stack as hyper serves it: the CORS gate, [`AssignId`]
/// and the address check around the axum router (see [`app`]).
pub type App = cors::CorsGate<AssignId<client_ip::IpGate<route_rules::RouteGate<Router>>>>;

/// The HTTP application. A request passes, top to bottom:
///
/// 0. [`cors::CorsGate`]: a browser's request (one with an `Origin`) has
///    its preflight answered and its answer marked by the CORS rules
///    (`cors`; `None` allows no other origin);
/// 1. [`AssignId`]: the client's `x-request-id` or a new one, echoed as
///    `x-conclave-request-id` on every answer; inside it, errors answered
///    as plain text are rewritten in the JSON error shape;
/// 2. [`client_ip::IpGate`]: with `allowed_ips`, a client whose address
///    is not listed is answered 403 on every route;
///    then [`route_rules::RouteGate`]: with `allowed_routes`, a path not
///    listed is answered 403; `admin_only_routes` refuses other virtual
///    keys; `public_routes` marks the routes served without a key;
/// 3. [`guard`], on the model routes: `in_flight` first, at most
///    `global_max_parallel_requests` model requests at once (503 past it),
///    counted until their bodies end;
/// 4. then `auth`: resolves the [`crate::ops::Caller`] and pins one gateway
///    version for the whole request ([`Scope`]); probes skip both, the admin
///    API has its own rule;
/// 5. the endpoint handler, which reads the body, runs the admission checks
///    ([`crate::ops::admission`]) once it knows the model, executes through
///    the router or the strategy host, and leaves one outcome for the sinks.
///
/// The management and admin routes have one more layer of their own,
/// [`management::audit::record`]: each change they make leaves audit log rows;
/// they, `/metrics` and the dashboard also hold a virtual key to its own
/// `allowed_routes` ([`route_rules::key_routes`]).
pub fn app(
    state: AppState,
    cors: Option<tower_http::cors::CorsLayer>,
    allowlist: Option<Arc<client_ip::IpAllowlist>>,
    route_rules: Option<Arc<route_rules::RouteRules>>,
) -> App {
    // A virtual key's own `allowed_routes`, on the routes whose key check
    // is not the model routes' auth (which holds a key to it itself).
    let key_routes = || middleware::from_fn_with_state(state.clone(), route_rules::key_routes);
    let models = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/completions", post(routes::completions))
        .merge(responses_routes())
        .merge(deployment_routes())
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/embeddings", post(routes::embeddings))
        .route("/v1/moderations", post(routes::moderations))
        .route("/moderations", post(routes::moderations))
        .route("/v1/images/generations", post(routes::image_generations))
        .route("/images/generations", post(routes::image_generations))
        .route("/v1/rerank", post(routes::rerank))
        .route("/rerank", post(routes::rerank))
        .route("/v2/rerank", post(routes::rerank))
        .route("/v1/models", get(routes::models))
        .route("/models", get(routes::models))
        .route("/v1/models/{*model}", get(routes::model))
        .route("/models/{*model}", get(routes::model))
        .route("/v1/model/info", get(routes::model_info))
        .route("/model/info", get(routes::model_info))
        .route("/v2/model/info", get(routes::model_info_v2))
        .route("/model_group/info", get(routes::model_group_info))
        .route("/provider/budgets", get(routes::provider_budgets))
        .route("/info", get(info::info))
        .route("/health", get(routes::health));
    let models = guarded(models, &state);
    // Anthropic's Messages API: every error, the auth layer's included,
    // leaves in Anthropic's shape (the outermost layer rewrites it).
    let anthropic = Router::new()
        .route("/v1/messages", post(messages::create))
        .route("/anthropic/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count))
        .route("/anthropic/v1/messages/count_tokens", post(messages::count))
        .route("/anthropic/v1/models", get(anthropic_models::list))
        .route(
            "/anthropic/v1/models/{*model}",
            get(anthropic_models::retrieve),
        );
    let anthropic =
        guarded(anthropic, &state).route_layer(middleware::from_fn(messages::anthropic_errors));
    // One audit layer state for the admin and management routes, which
    // change the same objects.
    let audit = management::audit::Audit::new(state.clone());
    let admin = Router::new()
        .route("/admin/status", get(admin::status))
        .route("/admin/reload", post(admin::reload))
        .route(
            "/admin/models",
            post(admin::register_model).get(admin::list_models),
        )
        .route("/admin/models/{*model_name}", delete(admin::delete_model))
        .route("/model/new", post(admin::model_new))
        .route("/model/update", post(admin::model_update))
        .route("/model/{model_id}/update", patch(admin::model_patch))
        .route("/model/delete", post(admin::model_delete))
        .route("/cache/ping", get(cache_routes::ping))
        .route("/cache/flushall", post(cache_routes::flush_all))
        .route("/cache/delete", post(cache_routes::delete_many))
        .route("/cache/{key}", delete(cache_routes::delete_one))
        .route_layer(middleware::from_fn_with_state(
            audit.clone(),
            management::audit::record,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ))
        .route_layer(key_routes());
    // Keys, users, teams and spend; their changes, like the admin API's,
    // leave audit log rows.
    let management_routes = management::routes()
        .route_layer(middleware::from_fn_with_state(
            audit,
            management::audit::record,
        ))
        .route_layer(key_routes());
    // The probes need no key, so a key's route list has nothing to hold
    // them to; the metrics do.
    let probes = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/", get(metrics::metrics))
        .route_layer(key_routes())
        .route("/health/liveliness", get(routes::liveliness))
        .route("/health/liveness", get(routes::liveliness))
        .route("/health/readiness", get(routes::readiness));
    // API docs: public unless a master key is set and `public_docs: false`.
    let docs = Router::new()
        .route("/", get(docs::index))
        .route("/docs", get(docs::redirect))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/swagger-ui/{file}", get(docs::asset))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            docs::require_docs_access,
        ));
    // The web dashboard: public pages, data behind the model routes' key.
    let dashboard = Router::new()
        .route("/ui", get(dashboard::index))
        .route("/ui/", get(dashboard::index))
        .route("/ui/assets/{file}", get(dashboard::asset))
        .route("/ui/api/session", get(dashboard::session))
        .route("/ui/api/overview", get(dashboard::overview))
        .route("/ui/api/requests", get(dashboard::requests))
        .route("/ui/api/requests/{id}", get(dashboard::request))
        .route("/ui/api/models", get(dashboard::models))
        .route_layer(key_routes());
    let routes = models
        .merge(anthropic)
        .merge(dashboard)
        .merge(admin)
        .merge(management_routes)
        .merge(probes)
        .merge(docs)
        .fallback(routes::not_found)
        // After every route is added: it applies to the routes present.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone());
    // The layer every request passes wraps the router once. Applied with
    // `Router::layer` it would wrap each route, and every request would
    // clone its route's whole stack of boxed services, level by level.
    // Bodies are read by the handlers with the configured limit (413 in
    // OpenAI's error shape), never by axum's body extractors, so axum's
    // default body limit has nothing to apply to.
    ServiceBuilder::new()
        .layer_fn(move |inner| cors::CorsGate::new(inner, cors.clone()))
        .layer_fn(AssignId::new)
        .layer_fn(move |inner| client_ip::IpGate::new(inner, allowlist.clone()))
        .layer_fn(move |inner| {
            route_rules::RouteGate::new(inner, route_rules.clone(), state.clone())
        })
        .service(routes)
}

/// The Responses API, under OpenAI's paths and under `/openai/v1`, the
/// path Azure OpenAI's v1 API and LiteLLM serve it at too.
fn responses_routes() -> Router<AppState> {
    let mut routes = Router::new();
    for prefix in ["/v1", "", "/openai/v1"] {
        routes = routes
            .route(&format!("{prefix}/responses"), post(responses::create))
            .route(
                &format!("{prefix}/responses/{{response_id}}"),
                get(responses::retrieve).delete(responses::delete),
            )
            .route(
                &format!("{prefix}/responses/{{response_id}}/input_items"),
                get(responses::list_input_items),
            );
    }
    routes
}

/// Azure OpenAI's paths and the older engine paths, which name the model
/// in the path (LiteLLM serves them for `AzureOpenAI` clients).
fn deployment_routes() -> Router<AppState> {
    let mut routes = Router::new();
    for prefix in ["/openai/deployments", "/engines", "/v1/engines"] {
        for endpoint in [
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::Embeddings,
        ] {
            let path = format!("{prefix}/{{model}}{}", endpoint.path());
            routes = routes.route(&path, routes::deployment_route(endpoint));
        }
    }
    routes
}

/// The routes behind the in-flight bound and auth ([`guard`]).
fn guarded(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(guard::GuardLayer(state.clone()))
}
