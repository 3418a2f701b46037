//! Authentication: resolves the caller from `Authorization: Bearer <key>` or
//! `x-api-key` and pins the gateway version the request is served by.
//!
//! The master key (compared in constant time) makes the caller `Master`.
//! With virtual keys enabled any other key is looked up in the key cache
//! (the store only on a miss): an unknown, expired or blocked key (or a key
//! of a blocked team) is refused with 401 and a `code` naming which. A
//! lookup that fails or takes longer than [`RESOLVE_TIMEOUT`] (the store is
//! down and the key is not cached) is answered 503 `key_store_unavailable`
//! with `Retry-After`, never held open.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{MatchedPath, Request};
use http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::Secret;
use crate::gateway::Gateway;
use crate::keys::Principal;
use crate::ops::{Caller, Meter, RequestContext, RequestId};

/// Longest wait for the key store when a presented key is not cached.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a client may present its key, in order of preference. Named as
/// header names, not text: a lookup by text parses the name first, on
/// every authenticated request.
const KEY_HEADERS: [HeaderName; 4] = [
    // LiteLLM's own header first, as LiteLLM reads it: clients send it
    // exactly when `Authorization` carries another service's token.
    HeaderName::from_static("x-litellm-api-key"),
    http::header::AUTHORIZATION,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
];

/// The key a client presented: `Authorization: Bearer`, `x-api-key`,
/// `api-key` (Azure's) or LiteLLM's `x-litellm-api-key`, each with or
/// without a `Bearer` scheme (any case, as RFC 9110 has it). The model
/// routes and the management API read it the same way. A header that is not
/// visible ASCII is a key that matches nothing, not a missing one.
pub(super) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = KEY_HEADERS.iter().find_map(|h| headers.get(h))?;
    let Ok(value) = value.to_str() else {
        return Some("");
    };
    let value = value.trim();
    let unschemed = value
        .split_once([' ', '\t'])
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or(value, |(_, key)| key.trim());
    Some(unschemed)
}

/// What the auth layer hands every handler behind it: the one gateway
/// version that serves the request from start to end (a reload in between
/// does not change it), and the request's context.
#[derive(Clone)]
pub struct Scope {
    pub gateway: Arc<Gateway>,
    pub ctx: Arc<RequestContext>,
}

/// Resolves who is asking (refusing a wrong or missing master key when one
/// is configured) and pins the gateway version the request was
/// authenticated against, as the request's [`Scope`]; a refusal is the
/// error to answer instead.
pub async fn authenticate(
    state: &AppState,
    route: Option<&MatchedPath>,
    request: &mut Request,
) -> Result<(), ApiError> {
    let gateway = state.gateway();
    let public = is_public(request);
    let caller = resolve_caller(state, &gateway, request.headers(), public).await?;
    if let Caller::Key(principal) = &caller
        && let Some(refused) =
            super::route_rules::key_refusal(&principal.key.allowed_routes, request.uri().path())
    {
        return Err(refused);
    }
    install_scope(state, gateway, caller, route, request)
}

/// [`authenticate`] when it needs no wait: `None` when the presented key
/// must be looked up among the virtual keys (the caller then awaits
/// [`authenticate`]).
pub fn authenticate_now(
    state: &AppState,
    route: Option<&MatchedPath>,
    request: &mut Request,
) -> Option<Result<(), ApiError>> {
    let gateway = state.gateway();
    let public = is_public(request);
    let caller = match caller_without_lookup(state, &gateway, request.headers(), public) {
        Presented::Known(Ok(caller)) => caller,
        Presented::Known(Err(refused)) => return Some(Err(refused)),
        Presented::VirtualKey(..) => return None,
    };
    Some(install_scope(state, gateway, caller, route, request))
}

/// Whether the config made the request's route public
/// (`general_settings.public_routes`).
fn is_public(request: &Request) -> bool {
    request
        .extensions()
        .get::<super::route_rules::PublicRoute>()
        .is_some()
}

/// Gives `request` its [`Scope`]: `caller`, served by `gateway`.
fn install_scope(
    state: &AppState,
    gateway: Arc<Gateway>,
    caller: Caller,
    route: Option<&MatchedPath>,
    request: &mut Request,
) -> Result<(), ApiError> {
    // Before the id is taken: a refusal's outcome is recorded under it.
    let tags = header_tags(request.headers())?;
    let end_user = header_end_user(request.headers(), &gateway.end_user_headers)?;
    // Taken out, not copied: the scope carries it from here on, and the
    // request's extensions stay few enough not to grow their table.
    let id = request
        .extensions_mut()
        .remove::<RequestId>()
        .unwrap_or_else(RequestId::generate);
    let route = route.map_or("", MatchedPath::as_str);
    let mut ctx = RequestContext::new(id, caller, route, state.ops.outcomes.clone());
    ctx.tags = tags;
    ctx.end_user = end_user;
    let limited = state.ops.keys.is_some() || gateway.proxy_budget.is_some();
    ctx.meter = Meter::new(
        limited.then(|| state.ops.limiter.clone()),
        gateway.prices.clone(),
        gateway.router.spend_caps().cloned(),
    );
    ctx.trace = crate::observe::otel::RequestTrace::start(request.headers(), request.method());
    request.extensions_mut().insert(Scope {
        gateway,
        ctx: Arc::new(ctx),
    });
    Ok(())
}

/// LiteLLM's `x-litellm-tags` header: tags separated by commas (in one
/// header or several), spaces around each trimmed; held to the same rule
/// as a body's tags.
fn header_tags(headers: &HeaderMap) -> Result<Option<Arc<[String]>>, ApiError> {
    const HEADER: &str = "x-litellm-tags";
    const NAME: http::HeaderName = http::HeaderName::from_static(HEADER);
    let refused = |message: String| ApiError::invalid(message, Some(HEADER));
    let mut tags: Vec<String> = Vec::new();
    for value in headers.get_all(NAME) {
        let text = value
            .to_str()
            .map_err(|_| refused(format!("the {HEADER} header must be visible ASCII")))?;
        tags.extend(
            text.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
        if tags.len() > crate::openai::MAX_REQUEST_TAGS {
            break;
        }
    }
    crate::openai::dedup_in_order(&mut tags);
    crate::openai::check_tags(&tags, HEADER).map_err(refused)?;
    Ok((!tags.is_empty()).then(|| tags.into()))
}

/// The end user the customer headers name (`names`, in order: LiteLLM's
/// `x-litellm-customer-id`, `x-litellm-end-user-id`, then the config's),
/// ahead of the body's `user`.
fn header_end_user(
    headers: &HeaderMap,
    names: &[http::HeaderName],
) -> Result<Option<Arc<str>>, ApiError> {
    for name in names {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let field = format!("the {name} header");
        let refused = |message: String| ApiError::invalid(message, Some(name.as_str()));
        let text = value
            .to_str()
            .map_err(|_| refused(format!("{field} must be visible ASCII")))?;
        // An empty one names nobody: the next place is read.
        if let Some(named) =
            crate::openai::checked_end_user(text.trim(), &field).map_err(refused)?
        {
            return Ok(Some(named));
        }
    }
    Ok(None)
}

/// Who presents the request's key: the master key's holder, a virtual key
/// (when keys are enabled), or anyone when no master key is set or on a
/// `public` route without a key.
pub(super) async fn resolve_caller(
    state: &AppState,
    gateway: &Gateway,
    headers: &HeaderMap,
    public: bool,
) -> Result<Caller, ApiError> {
    let (keys, presented) = match caller_without_lookup(state, gateway, headers, public) {
        Presented::Known(known) => return known,
        Presented::VirtualKey(keys, presented) => (keys, presented),
    };
    // Boxed: a store lookup's future is kilobytes, and inline it would be
    // copied with every request's middleware future, keyed or not.
    match tokio::time::timeout(RESOLVE_TIMEOUT, Box::pin(keys.resolve(presented))).await {
        Ok(Ok(Some(principal))) => usable(&principal).map(|()| Caller::Key(principal)),
        Ok(Ok(None)) => Err(ApiError::unauthorized("invalid API key: no such key")),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot look up a virtual key");
            Err(store_unavailable())
        }
        Err(_) => {
            tracing::warn!(
                timeout_s = RESOLVE_TIMEOUT.as_secs_f64(),
                "the key store did not answer a key lookup in time"
            );
            Err(store_unavailable())
        }
    }
}

/// What the presented key says before any store lookup.
enum Presented<'a> {
    /// The caller, or the refusal, is known at once: anyone when no master
    /// key is set, the master key's holder, or the master key's refusal
    /// when there are no virtual keys or no key was presented.
    Known(Result<Caller, ApiError>),
    /// A key that may be a virtual one, to look up in `Keys`.
    VirtualKey(&'a crate::keys::Keys, &'a str),
}

/// Reads the presented key against the master key, and says whether a
/// virtual key must be looked up to know the caller. On a `public` route a
/// request without a key is served as on an open gateway.
fn caller_without_lookup<'a>(
    state: &'a AppState,
    gateway: &Gateway,
    headers: &'a HeaderMap,
    public: bool,
) -> Presented<'a> {
    let Some(expected) = &gateway.master_key else {
        return Presented::Known(Ok(Caller::Open));
    };
    let presented = presented_key(headers);
    // Only a request that presents no key at all: an empty or unreadable
    // one is a key that matches nothing.
    if public && presented.is_none() {
        return Presented::Known(Ok(Caller::Open));
    }
    if presented.is_some_and(|key| is_master(key, expected)) {
        return Presented::Known(Ok(Caller::Master));
    }
    match (&state.ops.keys, presented.filter(|key| !key.is_empty())) {
        (Some(keys), Some(presented)) => Presented::VirtualKey(keys, presented),
        // No virtual keys, or no key at all: the master key's refusal.
        _ => Presented::Known(Err(refusal(presented))),
    }
}

/// Refuses a key that exists but may not be used now.
fn usable(principal: &Principal) -> Result<(), ApiError> {
    let key = &principal.key;
    let refuse = |code: &str, message: String| {
        Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "authentication_error",
            message,
            None,
            Some(code),
        ))
    };
    if key.blocked {
        return refuse("key_blocked", format!("key {} is blocked", key.key_name));
    }
    if let Some(team) = principal.team.as_ref().filter(|t| t.blocked) {
        return refuse(
            "team_blocked",
            format!("key {}: its team {} is blocked", key.key_name, team.team_id),
        );
    }
    if key.is_expired(SystemTime::now()) {
        let when = key
            .expires
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default();
        return refuse(
            "key_expired",
            format!("key {} expired at {when}", key.key_name),
        );
    }
    Ok(())
}

/// 503 for a key lookup the store could not answer.
fn store_unavailable() -> ApiError {
    let mut e = ApiError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable_error",
        "the key store is unavailable and this key is not cached; retry shortly",
        None,
        Some("key_store_unavailable"),
    );
    e.retry_after = Some(Duration::from_secs(1));
    e
}

/// Checks the presented key against `expected` in constant time.
pub(super) fn check_key(headers: &HeaderMap, expected: &Secret) -> Result<(), ApiError> {
    let presented = presented_key(headers);
    if presented.is_some_and(|key| is_master(key, expected)) {
        Ok(())
    } else {
        Err(refusal(presented))
    }
}

/// The master key's refusal of `presented`, a key already found not to be
/// the master key (or no key at all).
fn refusal(presented: Option<&str>) -> ApiError {
    match presented {
        None => {
            ApiError::unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key")
        }
        Some(_) => ApiError::unauthorized("invalid API key"),
    }
}

/// Whether `key` is the master key, compared in constant time.
pub(super) fn is_master(key: &str, expected: &Secret) -> bool {
    key.as_bytes().ct_eq(expected.expose().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tags_header_is_split_trimmed_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert("x-litellm-tags", " a, b ,,a".parse().unwrap());
        let tags = header_tags(&h).unwrap().unwrap();
        assert_eq!(&*tags, ["a", "b"]);
        h.append("x-litellm-tags", "c".parse().unwrap());
        let tags = header_tags(&h).unwrap().unwrap();
        assert_eq!(&*tags, ["a", "b", "c"], "every header counts");
        let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        h.insert("x-litellm-tags", many.join(",").parse().unwrap());
        assert!(header_tags(&h).is_err());
        h.insert("x-litellm-tags", "a\tb".parse().unwrap());
        assert!(header_tags(&h).is_err(), "a control character");
        h.insert("x-litellm-tags", " , ".parse().unwrap());
        assert!(header_tags(&h).unwrap().is_none());
        assert!(header_tags(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn bearer_and_x_api_key_are_both_read() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-2"));
        assert_eq!(presented_key(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer ya29.another-services-token".parse().unwrap(),
        );
        h.insert("x-litellm-api-key", "sk-3".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-3"), "LiteLLM's header decides");
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_on_every_key_header() {
        for (header, value) in [
            ("authorization", "BEARER sk-1"),
            ("authorization", "bearer\tsk-1"),
            ("authorization", "sk-1"),
            ("x-litellm-api-key", "Bearer sk-1"),
            ("x-api-key", " sk-1 "),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header, value.parse().unwrap());
            assert_eq!(presented_key(&h), Some("sk-1"), "{header}: {value:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            http::HeaderValue::from_bytes("Bearer sk-\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(presented_key(&h), Some(""), "unreadable, not missing");
    }
}
