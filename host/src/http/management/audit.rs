//! The audit log at the HTTP edge: [`record`] wraps the management and
//! admin routes and writes one row per object each successful change
//! touches (keys, users, teams, models, the cache, the config), with the
//! object's value before and after; `GET /audit` and `GET /audit/{id}`
//! read the rows back in LiteLLM's shape. On unless
//! `litellm_settings.store_audit_logs: false`; the rows live in the key
//! store, so there is none without a master key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::keys::{hash_of, page_of};
use super::spend::date;
use super::{ApiError, AppState, admin, invalid, key_error, shape, teams};
use crate::http::auth::{is_master, presented_key};
use crate::keys::store::{AuditFilter, AuditRow};
use crate::keys::{Keys, token};

/// Headers that name the person a change is made for, LiteLLM's first.
const CHANGED_BY_HEADERS: [&str; 2] = ["litellm-changed-by", "x-conclave-changed-by"];

/// Longest `changed_by` a header may give.
const MAX_CHANGED_BY: usize = 256;

/// Largest value (before or after) a row keeps; a larger one (a key with
/// megabytes of metadata) is replaced by a note of its size, so a page of
/// rows stays small.
const MAX_VALUE_BYTES: usize = 32 << 10;

/// Most objects one change's rows name; a request naming more is left to
/// its route to refuse, and its objects are not read beforehand.
const MAX_TARGETS: usize = 1000;

/// Rows a page shows when the query does not say.
const DEFAULT_PAGE_SIZE: u32 = 50;

/// The kind of object a route changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    User,
    Team,
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
        "/key/health" => None,
        "/key/generate" | "/user/new" | "/team/new" | "/model/new" | "/admin/models" => {
            change(kind_of(path)?, "created")
        }
        "/key/delete" | "/user/delete" | "/team/delete" | "/model/delete" => {
            change(kind_of(path)?, "deleted")
        }
        "/key/block" | "/team/block" => change(kind_of(path)?, "blocked"),
        "/key/unblock" | "/team/unblock" => change(kind_of(path)?, "unblocked"),
        "/cache/flushall" => change(Kind::Cache, "flushed"),
        "/admin/reload" => change(Kind::Config, "reloaded"),
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

/// The caller of a change, when its key is the master key or a valid
/// virtual key; `None` for anyone else (the route refuses them itself).
/// An admin (the master key, a `proxy_admin` user's key) may name the
/// person a change is made for; anyone else's changes are their own.
async fn changer(
    state: &AppState,
    keys: &Keys,
    headers: &HeaderMap,
) -> Result<Option<Changer>, ApiError> {
    let Some(presented) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let gateway = state.gateway();
    let (own_name, admin) = if gateway
        .master_key
        .as_ref()
        .is_some_and(|m| is_master(presented, m))
    {
        ("master_key".to_owned(), true)
    } else {
        let Ok(Some(principal)) = keys.resolve(presented).await else {
            return Ok(None);
        };
        let key = &principal.key;
        let name = key
            .user_id
            .clone()
            .or_else(|| key.key_alias.clone())
            .unwrap_or_else(|| key.key_name.clone());
        (name, principal.is_admin())
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
    let Some(changer) = changer(state, keys, request.headers())
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
        before.push(snapshot(keys, change.kind, id).await);
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

/// The ids of the objects a request names before it runs (keys by hash).
async fn targets(keys: &Keys, kind: Kind, path: &str, asked: &Value) -> Vec<String> {
    let mut ids = named_targets(keys, kind, path, asked).await;
    if ids.len() > MAX_TARGETS {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// [`targets`] as the request names them, repeats included.
async fn named_targets(keys: &Keys, kind: Kind, path: &str, asked: &Value) -> Vec<String> {
    let strings = |field: &str| -> Vec<String> {
        match asked.get(field) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    match kind {
        Kind::Key => {
            let mut ids: Vec<String> = strings("key")
                .into_iter()
                .chain(strings("keys"))
                .map(|k| hash_of(&k))
                .collect();
            if let Some(given) = path
                .strip_prefix("/key/")
                .and_then(|rest| rest.strip_suffix("/regenerate"))
                .filter(|given| !given.is_empty())
            {
                ids.push(hash_of(given));
            }
            let aliases = strings("key_aliases");
            if ids.len() + aliases.len() > MAX_TARGETS {
                return Vec::new();
            }
            for alias in aliases {
                if let Ok(Some(hash)) = keys.store().key_hash_by_alias(&alias).await {
                    ids.push(hash);
                }
            }
            ids
        }
        Kind::User => {
            let ids = [strings("user_id"), strings("user_ids")].concat();
            match asked.get("user_email").and_then(Value::as_str) {
                // `/user/update` may name its user by email alone.
                Some(email) if ids.is_empty() => {
                    super::users::user_by_email(keys, email, "user_email")
                        .await
                        .ok()
                        .flatten()
                        .into_iter()
                        .collect()
                }
                _ => ids,
            }
        }
        Kind::Team => [strings("team_id"), strings("team_ids")].concat(),
        Kind::Model => match path.strip_prefix("/admin/models/") {
            // The id a registration by name has.
            Some(name) => vec![format!("runtime:{name}")],
            None => asked
                .pointer("/model_info/id")
                .or_else(|| asked.get("id"))
                .and_then(Value::as_str)
                .map(|id| vec![id.to_owned()])
                .unwrap_or_default(),
        },
        Kind::Cache => match path.strip_prefix("/cache/") {
            Some("flushall") => vec!["all".to_owned()],
            Some("delete") => strings("keys"),
            Some(key) => vec![key.to_owned()],
            None => Vec::new(),
        },
        Kind::Config => vec!["config".to_owned()],
    }
}

/// The object as the API shows it (never a key's value), when it exists
/// and its kind is kept in the key store.
async fn snapshot(keys: &Keys, kind: Kind, id: &str) -> Option<Value> {
    let store = keys.store();
    match kind {
        Kind::Key => store.key(id).await.ok()?.map(|k| shape::key(&k)),
        Kind::User => store.user(id).await.ok()?.map(|u| shape::user(&u)),
        Kind::Team => {
            let team = store.team(id).await.ok()??;
            teams::shown(keys, &team).await.ok()
        }
        Kind::Model | Kind::Cache | Kind::Config => None,
    }
}

/// One audit row's object and values.
struct Entry {
    kind: Kind,
    action: &'static str,
    object_id: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// The rows a successful change leaves: one per object it named that
/// existed (or was named at all, for kinds without snapshots), or the one
/// object its answer names when it named none (a new key, user or team).
async fn rows(
    keys: &Keys,
    change: Change,
    targets: &[String],
    before: Vec<Option<Value>>,
    asked: &Value,
    answered: &Value,
) -> Vec<Entry> {
    let answer_id = change
        .kind
        .answer_id()
        .and_then(|field| answered.get(field))
        .and_then(Value::as_str);
    let deleted = change.action == "deleted";
    // A registration that replaced one of its name changed it.
    let action = match answered.get("replaced") {
        Some(Value::Bool(true)) => "updated",
        _ => change.action,
    };
    // What the change left behind, for kinds the store keeps no snapshot
    // of: the answer (models: without their keys), or what was asked of
    // the cache. A reload's body says nothing.
    let left = || match change.kind {
        Kind::Model => Some(answered.clone()),
        Kind::Config => None,
        _ => Some(asked.clone()).filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
    };
    if targets.is_empty() {
        let Some(id) = answer_id else {
            return Vec::new();
        };
        let after = match snapshot(keys, change.kind, id).await {
            Some(after) => Some(after),
            None => left(),
        };
        let mut entries = vec![Entry {
            kind: change.kind,
            action,
            object_id: id.to_owned(),
            before: None,
            after,
        }];
        // A new user's first key (`auto_create_key`) is a new key too.
        if let (Kind::User, Some(token)) = (change.kind, answered["token"].as_str()) {
            entries.push(Entry {
                kind: Kind::Key,
                action,
                object_id: token.to_owned(),
                before: None,
                after: snapshot(keys, Kind::Key, token).await,
            });
        }
        return entries;
    }
    let keeps_snapshots = matches!(change.kind, Kind::Key | Kind::User | Kind::Team);
    let mut entries = Vec::with_capacity(targets.len());
    for (id, before) in targets.iter().zip(before) {
        if keeps_snapshots && before.is_none() {
            continue;
        }
        let after = if deleted {
            None
        } else if keeps_snapshots {
            // A rotated key lives on under its new hash.
            let now = if targets.len() == 1 { answer_id } else { None };
            snapshot(keys, change.kind, now.unwrap_or(id)).await
        } else {
            left()
        };
        // An update that left its object as it was changed nothing.
        if keeps_snapshots && !deleted && after == before {
            continue;
        }
        entries.push(Entry {
            kind: change.kind,
            action,
            object_id: id.clone(),
            before,
            after,
        });
    }
    entries
}

/// Writes `entries` as rows, their values without credentials.
async fn write(keys: &Keys, changer: Changer, change: Change, entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let at = SystemTime::now();
    let rows: Vec<AuditRow> = entries
        .into_iter()
        .map(|entry| AuditRow {
            id: crate::translate::new_id(""),
            at,
            changed_by: changer.name.clone(),
            changed_by_api_key: changer.key_hash.clone(),
            action: entry.action.to_owned(),
            table_name: entry.kind.table().to_owned(),
            object_id: entry.object_id,
            before_value: entry
                .before
                .as_ref()
                .map(|v| without_credentials(v, entry.kind)),
            updated_values: entry
                .after
                .as_ref()
                .map(|v| without_credentials(v, entry.kind)),
        })
        .collect();
    if let Err(e) = keys.store().insert_audit(&rows).await {
        tracing::error!(
            error = %e,
            action = change.action,
            table = change.kind.table(),
            rows = rows.len(),
            "a change was made but its audit log rows were not written"
        );
    }
}

/// `value` as JSON text with every credential field's value replaced (a
/// key's `token` is its hash, kept: it is how a key is followed), or a
/// note of its size when it is larger than a row keeps.
fn without_credentials(value: &Value, kind: Kind) -> String {
    let mut value = value.clone();
    let token = value
        .as_object_mut()
        .filter(|_| kind == Kind::Key)
        .and_then(|fields| fields.remove("token"));
    let text = value.to_string();
    let clean = crate::observe::request_log::without_credentials(text.as_bytes());
    let mut kept: Value = serde_json::from_slice(&clean).unwrap_or(Value::Null);
    if let (Some(fields), Some(token)) = (kept.as_object_mut(), token) {
        fields.insert("token".into(), token);
    }
    let text = kept.to_string();
    if text.len() <= MAX_VALUE_BYTES {
        return text;
    }
    json!({
        "omitted": format!(
            "the value was {} bytes, more than an audit log row keeps ({MAX_VALUE_BYTES})",
            text.len()
        )
    })
    .to_string()
}

/// A row as `GET /audit` shows it: the values as JSON again.
fn shown(row: &AuditRow) -> Value {
    let parsed = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "id": row.id,
        "updated_at": crate::keys::time::rfc3339(row.at),
        "changed_by": row.changed_by,
        "changed_by_api_key": row.changed_by_api_key,
        "action": row.action,
        "table_name": row.table_name,
        "object_id": row.object_id,
        "before_value": parsed(&row.before_value),
        "updated_values": parsed(&row.updated_values),
    })
}

#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "audit_list",
    tag = "keys",
    summary = "The audit log of management changes",
    params(
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Rows a page, 1 to 100 (50)"),
        ("changed_by" = Option<String>, Query, description = "Who made the change"),
        ("changed_by_api_key" = Option<String>, Query, description = "The hash of the key used"),
        ("action" = Option<String>, Query, description = "created, updated, deleted, blocked, unblocked, rotated, flushed, reloaded"),
        ("table_name" = Option<String>, Query, description = "LiteLLM_VerificationToken, LiteLLM_UserTable, LiteLLM_TeamTable, LiteLLM_ProxyModelTable, cache, config"),
        ("object_id" = Option<String>, Query, description = "The object changed (a key by its hash)"),
        ("start_date" = Option<String>, Query, description = "From this date or time"),
        ("end_date" = Option<String>, Query, description = "Until this date (included) or time"),
        ("sort_order" = Option<String>, Query, description = "desc (newest first, the default) or asc")
    ),
    responses(
        (status = 200, description = "One page of rows, newest first", body = super::super::openapi::JsonObject),
        (status = 400, description = "A query parameter is not usable", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not an admin, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /audit`: one page of the audit log, newest first, filtered by any
/// of its fields and a date window, as LiteLLM's UI reads it.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let keys = admin(&state, &headers).await?;
    let page = page_of(&q, DEFAULT_PAGE_SIZE)?;
    let ascending = match q.get("sort_order").map(|s| s.to_ascii_lowercase()) {
        None => false,
        Some(order) if order == "desc" => false,
        Some(order) if order == "asc" => true,
        Some(_) => return Err(invalid("sort_order", "must be asc or desc")),
    };
    // LiteLLM's UI sorts by time only; anything else would be ignored.
    if let Some(by) = q.get("sort_by").filter(|b| b.as_str() != "updated_at") {
        return Err(invalid(
            "sort_by",
            format!(
                "rows are sorted by updated_at only, not {:?}",
                by.chars().take(64).collect::<String>()
            ),
        ));
    }
    let text = |name: &str| q.get(name).filter(|v| !v.is_empty()).cloned();
    let mut filter = AuditFilter {
        changed_by: text("changed_by"),
        changed_by_api_key: text("changed_by_api_key"),
        action: text("action"),
        table_name: text("table_name"),
        object_id: text("object_id"),
        since: date(&q, "start_date", false)?,
        until: date(&q, "end_date", true)?,
        ascending,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(invalid("start_date", "must be before end_date"));
    }
    // LiteLLM's object filters: a key by its hash (or value), a team by id.
    for (param, table) in [
        ("object_key_hash", Kind::Key),
        ("object_team_id", Kind::Team),
    ] {
        if let Some(id) = text(param) {
            let id = if table == Kind::Key { hash_of(&id) } else { id };
            filter.object_id = Some(id);
            filter.table_name = Some(table.table().to_owned());
        }
    }
    let (rows, total) = keys
        .store()
        .list_audit(&filter, page)
        .await
        .map_err(key_error)?;
    let logs: Vec<Value> = rows.iter().map(shown).collect();
    Ok(Json(json!({
        "audit_logs": logs,
        "total": total,
        "page": page.page,
        "page_size": page.size,
        "total_pages": total.div_ceil(u64::from(page.size)),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/audit/{id}",
    operation_id = "audit_entry",
    tag = "keys",
    summary = "One row of the audit log",
    params(("id" = String, Path, description = "The row's id")),
    responses(
        (status = 200, description = "The row", body = super::super::openapi::JsonObject),
        (status = 404, description = "No row has this id", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not an admin, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /audit/{id}`: one row of the audit log.
pub async fn entry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let keys = admin(&state, &headers).await?;
    let row = keys.store().audit_entry(&id).await.map_err(key_error)?;
    match row {
        Some(row) => Ok(Json(shown(&row)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "no audit log row has this id",
            Some("id"),
            Some("audit_log_not_found"),
        )),
    }
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
