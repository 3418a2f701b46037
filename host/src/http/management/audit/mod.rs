//! The audit log at the HTTP edge: [`record`] wraps the management and
//! admin routes and writes one row per object each successful change
//! touches (keys, users, teams, models, the cache, the config), with the
//! object's value before and after; `GET /audit` and `GET /audit/{id}`
//! read the rows back in LiteLLM's shape. On unless
//! `litellm_settings.store_audit_logs: false`; the rows live in the key
//! store, so there is none without a master key.
//!
//! [`rows`] decides which objects a change names and what its rows hold;
//! [`routes`] reads them back.

mod rows;
// Visible to the OpenAPI document, which lists the handlers.
pub(in crate::http) mod routes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::{ApiError, AppState, Manager};
use crate::http::auth::presented_key;
use crate::keys::{Keys, token};
use rows::{rows, snapshot, targets, write};

/// Headers that name the person a change is made for, LiteLLM's first.
const CHANGED_BY_HEADERS: [&str; 2] = ["litellm-changed-by", "x-conclave-changed-by"];

/// Longest `changed_by` a header may give.
const MAX_CHANGED_BY: usize = 256;

/// The kind of object a route changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    User,
    Team,
    /// An end user (`/customer/*`, `/end_user/*`).
    Customer,
    Budget,
    Model,
    Cache,
    Config,
}

impl Kind {
    /// LiteLLM's table name for the kind (what its audit rows say), or
    /// conclave's own name for what LiteLLM does not audit.
    fn table(self) -> &'static str {
        match self {
            Kind::Key => "LiteLLM_VerificationToken",
            Kind::User => "LiteLLM_UserTable",
            Kind::Team => "LiteLLM_TeamTable",
            Kind::Customer => "LiteLLM_EndUserTable",
            Kind::Budget => "LiteLLM_BudgetTable",
            Kind::Model => "LiteLLM_ProxyModelTable",
            Kind::Cache => "cache",
            Kind::Config => "config",
        }
    }

    /// The field of a change's answer that names the object it left (a
    /// new key's hash, a new user's id, ...).
    fn answer_id(self) -> Option<&'static str> {
        match self {
            Kind::Key => Some("token_id"),
            Kind::User => Some("user_id"),
            Kind::Team => Some("team_id"),
            Kind::Customer => Some("user_id"),
            Kind::Budget => Some("budget_id"),
            Kind::Model => Some("model_id"),
            Kind::Cache | Kind::Config => None,
        }
    }
}

/// What a route does to its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    kind: Kind,
    action: &'static str,
}

/// The change a request makes, or `None` for one that changes nothing.
fn change_of(method: &Method, path: &str) -> Option<Change> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let change = |kind, action| Some(Change { kind, action });
    match path {
        "/key/health" | "/budget/info" => None,
        "/key/generate" | "/user/new" | "/team/new" | "/customer/new" | "/end_user/new"
        | "/budget/new" | "/model/new" | "/admin/models" => change(kind_of(path)?, "created"),
        "/key/delete" | "/user/delete" | "/team/delete" | "/customer/delete"
        | "/end_user/delete" | "/budget/delete" | "/model/delete" => {
            change(kind_of(path)?, "deleted")
        }
        "/key/block" | "/team/block" | "/customer/block" | "/end_user/block" => {
            change(kind_of(path)?, "blocked")
        }
        "/key/unblock" | "/team/unblock" | "/customer/unblock" | "/end_user/unblock" => {
            change(kind_of(path)?, "unblocked")
        }
        "/cache/flushall" => change(Kind::Cache, "flushed"),
        "/admin/reload" => change(Kind::Config, "reloaded"),
        "/global/spend/reset" => change(Kind::Config, "spend reset"),
        _ if path.starts_with("/key/") && path.ends_with("/regenerate") => {
            change(Kind::Key, "rotated")
        }
        _ if *method == Method::DELETE || path == "/cache/delete" => {
            change(kind_of(path)?, "deleted")
        }
        _ => change(kind_of(path)?, "updated"),
    }
}

/// The kind of object under `path`.
fn kind_of(path: &str) -> Option<Kind> {
    let first = path.trim_start_matches('/').split('/').next()?;
    match first {
        "key" => Some(Kind::Key),
        "user" => Some(Kind::User),
        "team" => Some(Kind::Team),
        "customer" | "end_user" => Some(Kind::Customer),
        "budget" => Some(Kind::Budget),
        "model" => Some(Kind::Model),
        "admin" if path.starts_with("/admin/models") => Some(Kind::Model),
        "cache" => Some(Kind::Cache),
        _ => None,
    }
}

/// Who makes a change: the name it is recorded under and its key's hash.
struct Changer {
    name: String,
    key_hash: String,
}

/// The caller of a change, as the management API authenticates it: the
/// master key or a valid virtual key; `None` for anyone else (the route
/// refuses them itself). An admin (the master key, a `proxy_admin` user's
/// key) may name the person a change is made for; anyone else's changes
/// are their own.
async fn changer(state: &AppState, headers: &HeaderMap) -> Result<Option<Changer>, ApiError> {
    let Ok((_, manager)) = super::authenticate(state, headers).await else {
        return Ok(None);
    };
    let Some(presented) = presented_key(headers) else {
        return Ok(None);
    };
    let (own_name, admin) = match manager {
        Manager::Master => ("master_key".to_owned(), true),
        Manager::Key {
            principal, admin, ..
        } => {
            let key = &principal.key;
            let name = key
                .user_id
                .clone()
                .or_else(|| key.key_alias.clone())
                .unwrap_or_else(|| key.key_name.clone());
            (name, admin)
        }
    };
    let named = if admin { named_changer(headers)? } else { None };
    Ok(Some(Changer {
        name: named.unwrap_or(own_name),
        key_hash: token::hash(presented),
    }))
}

/// The name a `LiteLLM-Changed-By` (or `x-conclave-changed-by`) header
/// gives: text (UTF-8) of 1 to [`MAX_CHANGED_BY`] bytes without control
/// characters.
fn named_changer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    for name in CHANGED_BY_HEADERS {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let text = std::str::from_utf8(value.as_bytes())
            .ok()
            .map(str::trim)
            .filter(|t| {
                !t.is_empty() && t.len() <= MAX_CHANGED_BY && !t.chars().any(char::is_control)
            })
            .ok_or_else(|| {
                ApiError::invalid(
                    format!(
                        "the {name} header must be text of 1 to {MAX_CHANGED_BY} bytes \
                         without control characters"
                    ),
                    Some(name),
                )
            })?;
        return Ok(Some(text.to_owned()));
    }
    Ok(None)
}

/// The layer over the management and admin routes: a successful change
/// leaves its rows before the answer goes out, so a client that reads
/// `/audit` next finds them. A row that cannot be written is logged; the
/// change itself stands.
pub async fn record(State(audit): State<Audit>, request: Request, next: Next) -> Response {
    let Some(change) = change_of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let state = &audit.state;
    let Some(keys) = state.ops.keys.clone().filter(|_| state.gateway().audit_log) else {
        return next.run(request).await;
    };
    match recorded(&audit, &keys, change, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

/// The runtime model `id` names (an id, or the name of the one runtime
/// deployment of a model), as `/admin/models` shows it: without its key.
/// Models from the config file are not changed through the API.
fn runtime_model(state: &AppState, id: &str) -> Option<Value> {
    match state.control.registrations_named(id).as_slice() {
        [one] => Some(one.to_json(false)),
        _ => None,
    }
}

/// What the audit layer needs: the application, and the locks that keep
/// two changes to one object from reading each other's values.
#[derive(Clone)]
pub struct Audit {
    state: AppState,
    locks: Arc<ObjectLocks>,
}

impl Audit {
    /// The layer's state for `state`; one for every route it wraps.
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            locks: Arc::default(),
        }
    }
}

/// One lock per object being changed through this gateway, so a change's
/// before and after values are its own: a second change to the object
/// waits for the first to be recorded. Objects are locked in name order,
/// so two changes naming the same objects cannot wait for each other.
#[derive(Default)]
struct ObjectLocks {
    held: std::sync::Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

/// Entries kept before the map is swept of objects no change holds.
const LOCKS_BEFORE_SWEEP: usize = 1024;

impl ObjectLocks {
    async fn lock(&self, ids: &[String]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort_unstable();
        let mutexes: Vec<Arc<tokio::sync::Mutex<()>>> = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.len() > LOCKS_BEFORE_SWEEP {
                held.retain(|_, weak| weak.strong_count() > 0);
            }
            sorted
                .into_iter()
                .map(|id| match held.get(id).and_then(std::sync::Weak::upgrade) {
                    Some(mutex) => mutex,
                    None => {
                        let mutex = Arc::new(tokio::sync::Mutex::new(()));
                        held.insert(id.clone(), Arc::downgrade(&mutex));
                        mutex
                    }
                })
                .collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for mutex in mutexes {
            guards.push(mutex.lock_owned().await);
        }
        guards
    }
}

/// [`record`] once it is known that the request changes something.
async fn recorded(
    audit: &Audit,
    keys: &Keys,
    change: Change,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let state = &audit.state;
    let Some(changer) = changer(state, request.headers())
        .await
        .map_err(IntoResponse::into_response)?
    else {
        return Ok(next.run(request).await);
    };
    let gateway = state.gateway();
    let (parts, body) = request.into_parts();
    let bytes = super::super::routes::read_body_of(
        &parts.headers,
        body,
        gateway.body_limit,
        gateway.body_timeout,
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let asked: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    // A new object is named by the answer: one the body names does not
    // exist yet.
    let targets = if change.action == "created" {
        Vec::new()
    } else {
        targets(keys, change.kind, &path, &asked).await
    };
    let _locked = audit.locks.lock(&targets).await;
    let mut before = Vec::with_capacity(targets.len());
    for id in &targets {
        before.push(match change.kind {
            Kind::Model => runtime_model(state, id),
            _ => snapshot(keys, change.kind, id).await,
        });
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    // The handler's own answer, already whole in memory: read as it is,
    // whatever its size, so no change goes unrecorded.
    let answer = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(error = %e, action = change.action, table = change.kind.table(),
                "a change was made but its answer could not be read for the audit log");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "the change was made, but its answer could not be read; check the object's state",
                None,
                Some("audit_answer_unreadable"),
            )
            .into_response());
        }
    };
    let answered: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let rows = rows(keys, change, &targets, before, &asked, &answered).await;
    write(keys, changer, change, rows).await;
    Ok(Response::from_parts(parts, Body::from(answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Option<Change> {
        change_of(&Method::POST, path)
    }

    #[test]
    fn every_change_route_names_its_kind_and_action() {
        let cases = [
            ("/key/generate", Kind::Key, "created"),
            ("/key/update", Kind::Key, "updated"),
            ("/key/sk-abc/regenerate", Kind::Key, "rotated"),
            ("/key/regenerate", Kind::Key, "rotated"),
            ("/key/sk-abc/reset_spend", Kind::Key, "updated"),
            ("/global/spend/reset", Kind::Config, "spend reset"),
            ("/user/delete", Kind::User, "deleted"),
            ("/team/member_add", Kind::Team, "updated"),
            ("/team/block", Kind::Team, "blocked"),
            ("/model/new", Kind::Model, "created"),
            ("/admin/models", Kind::Model, "created"),
            ("/cache/flushall", Kind::Cache, "flushed"),
            ("/cache/delete", Kind::Cache, "deleted"),
            ("/admin/reload", Kind::Config, "reloaded"),
        ];
        for (path, kind, action) in cases {
            assert_eq!(post(path), Some(Change { kind, action }), "{path}");
        }
        assert_eq!(
            change_of(&Method::DELETE, "/admin/models/m"),
            Some(Change {
                kind: Kind::Model,
                action: "deleted"
            })
        );
    }

    #[test]
    fn reads_and_the_key_health_check_change_nothing() {
        assert_eq!(change_of(&Method::GET, "/key/info"), None);
        assert_eq!(post("/key/health"), None);
        assert_eq!(post("/admin/status"), None);
    }

    #[test]
    fn a_changed_by_header_must_be_short_text() {
        let mut headers = HeaderMap::new();
        headers.insert("litellm-changed-by", "alice@example.com".parse().unwrap());
        assert_eq!(
            named_changer(&headers).unwrap().as_deref(),
            Some("alice@example.com")
        );
        headers.insert(
            "litellm-changed-by",
            "x".repeat(MAX_CHANGED_BY + 1).parse().unwrap(),
        );
        let e = named_changer(&headers).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
