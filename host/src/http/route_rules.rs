//! LiteLLM's route controls, from `general_settings`, read at start-up:
//!
//! - `allowed_routes`: the only routes served; any other path is answered
//!   403 before its key is looked at, whoever asks (as in LiteLLM, the
//!   probes too unless listed: `LiteLLMRoutes.public_routes` names them);
//! - `public_routes`: routes served without a key. A request that presents
//!   none is served as on a gateway without a master key (the public
//!   models, no key's limits); one that presents a key is judged by it.
//!   Only the model routes, `/metrics` and the API docs can be public: the
//!   management and admin routes always need their keys;
//! - `admin_only_routes`: routes the master key and `proxy_admin` users'
//!   keys may call, and other virtual keys may not (403).
//!
//! A virtual key's own `allowed_routes` ([`key_refusal`]) is held here
//! too: by the model routes' auth, and by [`key_routes`] in front of the
//! management and admin APIs, the probes and metrics, and the dashboard.
//!
//! An entry is a path (`/chat/completions`), a path ending in `*` (every
//! path that starts with the rest), or one of LiteLLM's route groups
//! (`LiteLLMRoutes.public_routes`, `llm_api_routes`, ...). A whole path
//! names the same path with or without a `/v1` prefix (`/chat/completions`
//! and `/v1/chat/completions` are one route here); a prefix is taken as
//! written (see [`route_matches`]). Without any of the three keys the gate
//! only passes requests on.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Request as AxumRequest, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use http::{Request, StatusCode};

use super::AppState;
use super::auth::{RESOLVE_TIMEOUT, is_master, presented_key};
use super::error::ApiError;
use crate::config::GeneralSettings;
use crate::keys::Principal;

/// The model routes, without their `/v1` prefix.
const MODEL_ROUTES: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/responses",
    "/responses/*",
    "/openai/v1/responses",
    "/openai/v1/responses/*",
    "/embeddings",
    "/moderations",
    "/images/generations",
    "/rerank",
    "/v2/rerank",
    "/models",
    "/models/*",
    "/messages",
    "/messages/count_tokens",
    "/anthropic/v1/messages",
    "/anthropic/v1/messages/count_tokens",
    "/anthropic/v1/models",
    "/anthropic/v1/models/*",
    "/openai/deployments/*",
    "/engines/*",
    "/v1/engines/*",
];

/// Routes with a key check of their own that a config may lift: the
/// listings beside the model routes, the metrics and the API docs.
const LIFTABLE: &[&str] = &[
    "/model/info",
    "/v2/model/info",
    "/model_group/info",
    "/provider/budgets",
    "/info",
    "/health",
    "/metrics",
    "/",
    "/docs",
    "/openapi.json",
    "/swagger-ui/*",
    // A price calculator, which LiteLLM's docs make public in their example.
    "/spend/calculate",
];

/// Routes that always keep their key check: the management API, the admin
/// API, the cache controls, the audit log and the dashboard's data.
const NEVER_PUBLIC: &[&str] = &[
    "/key/*",
    "/v2/key/info",
    "/user/*",
    "/team/*",
    "/customer/*",
    "/end_user/*",
    "/budget/*",
    "/spend/*",
    "/global/*",
    "/audit",
    "/audit/*",
    "/admin/*",
    "/model/new",
    "/model/update",
    "/model/delete",
    "/cache/*",
    "/ui/api/*",
];

/// LiteLLM's route groups, by name (with or without `LiteLLMRoutes.`),
/// as the routes conclave serves under them.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "public_routes",
        &[
            "/",
            "/docs",
            "/openapi.json",
            "/swagger-ui/*",
            "/health/liveliness",
            "/health/liveness",
            "/health/readiness",
            "/ui",
            "/ui/",
            "/ui/assets/*",
            "/ui/api/session",
        ],
    ),
    ("llm_api_routes", MODEL_ROUTES),
    ("openai_routes", MODEL_ROUTES),
    (
        "anthropic_routes",
        &[
            "/messages",
            "/messages/count_tokens",
            "/anthropic/v1/messages",
            "/anthropic/v1/messages/count_tokens",
            "/anthropic/v1/models",
            "/anthropic/v1/models/*",
        ],
    ),
    (
        "info_routes",
        &[
            "/key/info",
            "/v2/key/info",
            "/user/info",
            "/user/available_roles",
            "/team/info",
            "/model/info",
            "/v2/model/info",
            "/model_group/info",
            "/models",
            "/models/*",
            "/health",
        ],
    ),
    (
        "management_routes",
        &[
            "/key/*",
            "/v2/key/info",
            "/user/*",
            "/team/*",
            "/customer/*",
            "/end_user/*",
            "/budget/*",
            "/model/new",
            "/model/update",
            "/model/delete",
            // `PATCH /model/{model_id}/update`.
            "/model/*",
        ],
    ),
    (
        "spend_tracking_routes",
        &[
            "/spend/*",
            "/global/spend",
            "/global/spend/*",
            "/user/daily/activity",
            "/team/daily/activity",
        ],
    ),
];

/// Whether `route` names `path` (as sent). A whole path is compared with
/// both sides' `/v1` prefix left out. A prefix (ending in `*`) is taken as
/// written: it names the paths that start with it, and when it does not
/// itself start with `/v1`, those that do once their `/v1` is left out
/// (`/chat/*` names `/v1/chat/completions`; `/v1/*` names only `/v1/...`).
fn route_matches(route: &str, path: &str) -> bool {
    match route.strip_suffix('*') {
        Some(prefix) => {
            path.starts_with(prefix)
                || (!prefix.starts_with("/v1") && without_v1(path).starts_with(prefix))
        }
        None => without_v1(without_slash(route)) == without_v1(without_slash(path)),
    }
}

/// `path` without one trailing slash (`/metrics/`, the path LiteLLM's
/// metrics are scraped at, is `/metrics`), the root kept.
fn without_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

/// `path` without a leading `/v1` segment.
fn without_v1(path: &str) -> &str {
    match path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// Whether any of `routes` (paths or prefixes) names `path`.
fn listed<S: AsRef<str>>(routes: &[S], path: &str) -> bool {
    routes.iter().any(|r| route_matches(r.as_ref(), path))
}

/// The routes of a group entry (`LiteLLMRoutes.public_routes` or
/// `public_routes`); `None` for a path or an unknown name.
fn group(entry: &str) -> Option<&'static [&'static str]> {
    let name = entry.strip_prefix("LiteLLMRoutes.").unwrap_or(entry);
    GROUPS
        .iter()
        .find(|(group, _)| *group == name)
        .map(|(_, routes)| *routes)
}

/// Whether `entry` names LiteLLM's `public_routes` group.
fn is_public_group(entry: &str) -> bool {
    let entry = entry.trim();
    entry.strip_prefix("LiteLLMRoutes.").unwrap_or(entry) == "public_routes"
}

/// Why `entry` is neither a path nor a known group; `None` when it is one.
pub fn entry_problem(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.starts_with('/') {
        return entry
            .find('*')
            .filter(|at| *at + 1 < entry.len())
            .map(|_| format!("{entry:?}: a * may only end a path (as in /key/*)"));
    }
    if group(entry).is_some() {
        return None;
    }
    let known: Vec<String> = GROUPS
        .iter()
        .map(|(g, _)| format!("LiteLLMRoutes.{g}"))
        .collect();
    Some(format!(
        "{entry:?} is neither a path (starting with /) nor a route group ({})",
        known.join(", ")
    ))
}

/// Whether `route` (a path or prefix) names only routes that always keep
/// their key check.
fn never_public(route: &str) -> bool {
    let route = route.trim_end_matches('*');
    listed(NEVER_PUBLIC, route) && !LIFTABLE.contains(&route)
}

/// Whether `entries` (paths, prefixes or groups) name `path` (as sent).
pub fn entries_allow(entries: &[String], path: &str) -> bool {
    entries.iter().any(|entry| {
        let entry = entry.trim();
        match group(entry) {
            Some(routes) => listed(routes, path),
            None => route_matches(entry, path),
        }
    })
}

/// The routes of one entry: a group's, or the path itself.
fn expanded(entry: &str) -> Result<Vec<String>, String> {
    let entry = entry.trim();
    if let Some(why) = entry_problem(entry) {
        return Err(why);
    }
    Ok(match group(entry) {
        Some(routes) => routes.iter().map(|r| (*r).to_owned()).collect(),
        None => vec![entry.to_owned()],
    })
}

/// The three lists, read once.
#[derive(Debug, Default)]
pub struct RouteRules {
    allowed: Option<Vec<String>>,
    public: Vec<String>,
    admin_only: Vec<String>,
}

/// A model route, `/metrics` or a docs route the config made public: its
/// key check admits a request that presents no key.
#[derive(Debug, Clone, Copy)]
pub struct PublicRoute;

/// Why the lists cannot be used: the key path and the reason.
pub type RuleProblem = (String, String);

impl RouteRules {
    /// The rules of `settings`; `None` when it sets none of the three keys.
    pub fn from_settings(settings: &GeneralSettings) -> Result<Option<Self>, RuleProblem> {
        if settings.allowed_routes.is_none()
            && settings.public_routes.is_none()
            && settings.admin_only_routes.is_none()
        {
            return Ok(None);
        }
        let read = |key: &str, entries: &Option<Vec<String>>| {
            let mut all = Vec::new();
            for (i, entry) in entries.iter().flatten().enumerate() {
                let at = || format!("general_settings.{key}[{i}]");
                let mut routes = expanded(entry).map_err(|why| (at(), why))?;
                // LiteLLM's own public group, as its docs list it among the
                // public routes, lifts the key only from those of its routes
                // that can go without one (the dashboard's session cannot).
                if key == "public_routes" && is_public_group(entry) {
                    routes.retain(|r| !never_public(r));
                }
                // A path the gateway does not serve (LiteLLM's docs list
                // `/spend/calculate`) has no key check to lift.
                if key == "public_routes"
                    && group(entry.trim()).is_none()
                    && !entry.trim().ends_with('*')
                    && !super::openapi::serves(entry.trim())
                {
                    continue;
                }
                if key == "public_routes"
                    && let Some(kept) = routes.iter().find(|r| never_public(r))
                {
                    return Err((
                        at(),
                        format!(
                            "{kept} always needs a key (the management and admin routes, the \
                             cache controls and the dashboard's data cannot be public)"
                        ),
                    ));
                }
                all.extend(routes);
            }
            Ok::<_, RuleProblem>(all)
        };
        Ok(Some(Self {
            allowed: match &settings.allowed_routes {
                Some(_) => Some(read("allowed_routes", &settings.allowed_routes)?),
                None => None,
            },
            public: read("public_routes", &settings.public_routes)?,
            admin_only: read("admin_only_routes", &settings.admin_only_routes)?,
        }))
    }

    /// Whether `allowed_routes` lets `path` through.
    fn allows(&self, path: &str) -> bool {
        self.allowed.as_ref().is_none_or(|list| listed(list, path))
    }

    /// Whether `path` is public: listed, and a route that can be.
    fn is_public(&self, path: &str) -> bool {
        listed(&self.public, path) && (listed(MODEL_ROUTES, path) || listed(LIFTABLE, path))
    }

    fn is_admin_only(&self, path: &str) -> bool {
        listed(&self.admin_only, path)
    }
}

/// Checks that the three lists can be used, for `conclave check` and the
/// loader: the key path and the reason of the first that cannot.
pub fn problem(settings: &GeneralSettings) -> Option<RuleProblem> {
    RouteRules::from_settings(settings).err()
}

/// The service that applies the rules around the routes.
#[derive(Clone)]
pub struct RouteGate<S> {
    inner: S,
    rules: Option<Arc<RouteRules>>,
    state: AppState,
}

impl<S> RouteGate<S> {
    /// Wraps `inner` (the routes); without rules it only passes requests on.
    pub fn new(inner: S, rules: Option<Arc<RouteRules>>, state: AppState) -> Self {
        Self {
            inner,
            rules,
            state,
        }
    }
}

type Refused = Ready<Result<Response, Infallible>>;

impl<S, B> tower::Service<Request<B>> for RouteGate<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<S::Future, Either<Refused, BoxFuture<'static, Result<Response, Infallible>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(rules) = &self.rules else {
            return Either::Left(self.inner.call(request));
        };
        let path = request.uri().path();
        if !rules.allows(path) {
            let error = not_allowed(request.uri().path());
            return Either::Right(Either::Left(ready(Ok(answer(&request, error)))));
        }
        let admin_only = rules.is_admin_only(path);
        // Admin-only wins: a route listed in both still needs an admin's key.
        if !admin_only && rules.is_public(path) {
            request.extensions_mut().insert(PublicRoute);
        }
        if !admin_only {
            return Either::Left(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let presented = presented_key(request.headers()).map(str::to_owned);
        let path = request.uri().path().to_owned();
        Either::Right(Either::Right(Box::pin(async move {
            match non_admin_key(&state, presented.as_deref(), &path).await {
                Some(error) => Ok(answer(&request, error)),
                None => inner.call(request).await,
            }
        })))
    }
}

/// The 403 for a request with the key of a user who is not a
/// `proxy_admin`, on an admin-only route. A request without a key, with
/// the master key, or with a key that is not valid goes on to the route,
/// whose own check answers it.
async fn non_admin_key(state: &AppState, presented: Option<&str>, path: &str) -> Option<ApiError> {
    let principal = usable_virtual_key(state, presented?).await?;
    if principal.is_admin() {
        return None;
    }
    Some(ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!(
            "the route {path} is an admin-only route (general_settings.admin_only_routes): it \
             needs the master key or the key of a user with user_role proxy_admin"
        ),
        None,
        Some("admin_only_route"),
    ))
}

/// The virtual key `presented` names, when it is one that may be used now
/// (not the master key, known, neither blocked nor expired), from the key
/// cache. Anything else is left to the route's own key check to answer.
async fn usable_virtual_key(state: &AppState, presented: &str) -> Option<Arc<Principal>> {
    let keys = state.ops.keys.as_ref()?;
    if presented.is_empty()
        || state
            .gateway()
            .master_key
            .as_ref()
            .is_some_and(|master| is_master(presented, master))
    {
        return None;
    }
    let principal = tokio::time::timeout(RESOLVE_TIMEOUT, keys.resolve(presented))
        .await
        .ok()?
        .ok()??;
    let usable = !principal.key.blocked && !principal.key.is_expired(std::time::SystemTime::now());
    usable.then_some(principal)
}

/// The 403 for a virtual key whose own `allowed_routes` does not name
/// `path`; `None` when it does (or lists nothing).
pub fn key_refusal(allowed_routes: &[String], path: &str) -> Option<ApiError> {
    if allowed_routes.is_empty() || entries_allow(allowed_routes, path) {
        return None;
    }
    Some(ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!(
            "this key may not call {path}: its allowed_routes are {}",
            allowed_routes.join(", ")
        ),
        None,
        Some("key_route_not_allowed"),
    ))
}

/// Holds the routes outside the model routes (management, admin, probes
/// and metrics, the dashboard) to a virtual key's own `allowed_routes`
/// (the model routes' auth does it for them). The key is
/// looked up again here, from the key cache; a key that is not valid goes
/// on to the route, whose own check answers it.
pub async fn key_routes(
    State(state): State<AppState>,
    request: AxumRequest,
    next: Next,
) -> Response {
    if let Some(presented) = presented_key(request.headers())
        && let Some(principal) = usable_virtual_key(&state, presented).await
        && let Some(error) = key_refusal(&principal.key.allowed_routes, request.uri().path())
    {
        return super::routes::closing_if_body_unread(&request, error.into_response());
    }
    next.run(request).await
}

/// The 403 for a path outside `allowed_routes`, in LiteLLM's words.
#[cold]
fn not_allowed(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        format!(
            "Access forbidden: route {path} is not allowed (it is not in general_settings.allowed_routes)"
        ),
        None,
        Some("route_not_allowed"),
    )
}

/// `error` in the API's own shape: Anthropic's on its paths.
fn answer<B>(request: &Request<B>, error: ApiError) -> Response {
    let path = request.uri().path();
    tracing::info!(
        method = %request.method(),
        path,
        status = error.status.as_u16(),
        "refused by the route rules"
    );
    let response = if super::messages::looks_like_messages_path(path) {
        super::messages::in_anthropic_shape(&error)
    } else {
        error.into_response()
    };
    super::routes::closing_if_body_unread(request, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Result<Option<RouteRules>, RuleProblem> {
        let settings: GeneralSettings = serde_yaml::from_str(yaml).unwrap();
        RouteRules::from_settings(&settings)
    }

    #[test]
    fn no_lists_no_rules() {
        assert!(rules("{}").unwrap().is_none());
    }

    #[test]
    fn a_path_matches_with_or_without_its_v1_prefix() {
        let r = rules("allowed_routes: ['/chat/completions', '/v1/embeddings']")
            .unwrap()
            .unwrap();
        for path in [
            "/chat/completions",
            "/v1/chat/completions",
            "/embeddings",
            "/v1/embeddings",
        ] {
            assert!(r.allows(path), "{path}");
        }
        assert!(r.allows("/v1/chat/completions/"), "one trailing slash");
        assert!(!r.allows("/v1/completions"));
        assert!(!r.allows("/v1/chat/completions/x"));
        assert!(!r.allows("/health/liveliness"));
    }

    #[test]
    fn groups_and_prefixes_expand() {
        let r = rules(
            "allowed_routes: ['LiteLLMRoutes.public_routes', '/key/*', 'spend_tracking_routes']",
        )
        .unwrap()
        .unwrap();
        for path in [
            "/health/liveliness",
            "/key/generate",
            "/key/info",
            "/global/spend/keys",
        ] {
            assert!(r.allows(path), "{path}");
        }
        assert!(!r.allows("/user/new"));
        let e = rules("allowed_routes: ['/models', 'LiteLLMRoutes.nonsense']").unwrap_err();
        assert_eq!(e.0, "general_settings.allowed_routes[1]");
        assert!(e.1.contains("LiteLLMRoutes.llm_api_routes"), "{}", e.1);
    }

    #[test]
    fn litellms_public_routes_group_lifts_only_what_can_be_public() {
        let r = rules("public_routes: ['LiteLLMRoutes.public_routes', '/v1/models']")
            .unwrap()
            .unwrap();
        assert!(r.is_public("/docs"));
        assert!(r.is_public("/models"));
        assert!(!r.is_public("/ui/api/session"));
        // LiteLLM's documented example lifts the key from its price
        // calculator.
        let r = rules("public_routes: ['LiteLLMRoutes.public_routes', '/spend/calculate']")
            .unwrap()
            .unwrap();
        assert!(r.is_public("/spend/calculate"));
        assert!(!r.is_public("/spend/logs"));
        assert!(
            rules("public_routes: ['/spend/logs']").is_err(),
            "a served one keeps its key"
        );
    }

    #[test]
    fn only_routes_that_can_be_public_are() {
        let r = rules("public_routes: ['/v1/models', '/chat/*', '/*']")
            .unwrap()
            .unwrap();
        assert!(r.is_public("/models"));
        assert!(r.is_public("/chat/completions"));
        // A wildcard does not lift the management routes' check.
        assert!(!r.is_public("/key/generate"));
        assert!(!r.is_public("/ui/api/requests"));
        let e = rules("public_routes: ['/models', '/key/generate']").unwrap_err();
        assert_eq!(e.0, "general_settings.public_routes[1]");
        assert!(e.1.contains("/key/generate"), "{}", e.1);
    }

    #[test]
    fn a_prefix_is_taken_as_written() {
        let r = rules("allowed_routes: ['/v1/*']").unwrap().unwrap();
        assert!(r.allows("/v1/chat/completions"));
        assert!(!r.allows("/admin/status"));
        assert!(!r.allows("/key/generate"));
        let r = rules("admin_only_routes: ['/v1*', '/chat/*']")
            .unwrap()
            .unwrap();
        assert!(r.is_admin_only("/v1/embeddings"));
        assert!(r.is_admin_only("/chat/completions"));
        assert!(!r.is_admin_only("/embeddings"));
        let r = rules("allowed_routes: ['/chat/*']").unwrap().unwrap();
        assert!(r.allows("/v1/chat/completions"));
    }

    #[test]
    fn entries_that_could_never_apply_are_refused() {
        let e = rules("allowed_routes: ['/key/*/info']").unwrap_err();
        assert!(e.1.contains("may only end"), "{}", e.1);
        for public in ["'/key/*'", "LiteLLMRoutes.management_routes", "info_routes"] {
            let e = rules(&format!("public_routes: [{public}]")).unwrap_err();
            assert_eq!(e.0, "general_settings.public_routes[0]", "{public}");
        }
        assert!(rules("public_routes: ['LiteLLMRoutes.llm_api_routes', '/*']").is_ok());
    }

    #[test]
    fn a_key_is_held_to_its_own_routes() {
        let routes = vec!["llm_api_routes".to_owned(), "/key/info".to_owned()];
        assert!(key_refusal(&routes, "/v1/chat/completions").is_none());
        assert!(key_refusal(&routes, "/key/info").is_none());
        let refused = key_refusal(&routes, "/key/generate").unwrap();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(key_refusal(&[], "/key/generate").is_none());
    }

    #[test]
    fn an_empty_allowed_list_allows_nothing() {
        let r = rules("allowed_routes: []").unwrap().unwrap();
        assert!(!r.allows("/chat/completions"));
    }
}
