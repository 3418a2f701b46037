//! `/key/*`: generate, update, delete, info, list, block, unblock and
//! regenerate virtual keys.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{KeyBody, check_entries, check_id, expiry, metadata};
use super::key_scope::{KeyScope, key_lister, key_manager};
use super::{
    ApiError, AppState, Manager, admin, authenticate, invalid, key_error, read_json,
    read_with_limits, shape, written,
};
use crate::keys::store::{KeyFilter, ListOrder, ListPage, SpendOwner};
use crate::keys::{KeyError, KeyRecord, Keys, Limits, PROXY_BUDGET_USER, UserRecord, token};

/// The hash a key is stored under, from what a client sent: the full key
/// (`sk-...`) or its hash (`token`, 64 hex digits).
pub(super) fn hash_of(given: &str) -> String {
    let g = given.trim();
    if g.len() == 64 && g.bytes().all(|b| b.is_ascii_hexdigit()) {
        g.to_ascii_lowercase()
    } else {
        token::hash(g)
    }
}

/// How long regenerating a key waits for its queued spend to be written.
const SPEND_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The key with this value or hash, or 404.
pub(super) async fn existing(keys: &Keys, given: &str) -> Result<KeyRecord, ApiError> {
    keys.store()
        .key(&hash_of(given))
        .await
        .map_err(key_error)?
        .ok_or_else(|| {
            key_error(KeyError::NotFound {
                entity: "key",
                id: token::display_name(given),
            })
        })
}

/// Checks that a team exists (404 otherwise).
async fn team_exists(keys: &Keys, team_id: &str) -> Result<(), ApiError> {
    match keys.store().team(team_id).await.map_err(key_error)? {
        Some(_) => Ok(()),
        None => Err(key_error(KeyError::NotFound {
            entity: "team",
            id: team_id.into(),
        })),
    }
}

/// Creates the user a key names when it does not exist yet (as LiteLLM does).
async fn ensure_user(keys: &Keys, user_id: &str) -> Result<(), ApiError> {
    check_id("user_id", user_id)?;
    if keys
        .store()
        .user(user_id)
        .await
        .map_err(key_error)?
        .is_some()
    {
        return Ok(());
    }
    let now = SystemTime::now();
    let user = UserRecord {
        user_id: user_id.into(),
        user_role: None,
        user_email: None,
        models: Vec::new(),
        limits: Limits::default(),
        spend: 0.0,
        budget_reset_at: None,
        metadata: json!({}),
        teams: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    match keys.store().insert_user(&user).await {
        // Created by someone else in between: fine.
        Ok(()) | Err(KeyError::Invalid { .. }) => Ok(()),
        Err(e) => Err(key_error(e)),
    }
}

/// Most routes one key's `allowed_routes` may list.
const MAX_ALLOWED_ROUTES: usize = 256;

/// A 400 naming the first `allowed_routes` entry that is neither a path
/// nor a route group, or a list past [`MAX_ALLOWED_ROUTES`].
fn check_routes(routes: &[String]) -> Result<(), ApiError> {
    if routes.len() > MAX_ALLOWED_ROUTES {
        return Err(ApiError::invalid(
            format!(
                "allowed_routes: {} entries; a key may list at most {MAX_ALLOWED_ROUTES}",
                routes.len()
            ),
            Some("allowed_routes"),
        ));
    }
    for (i, entry) in routes.iter().enumerate() {
        if entry.len() > 512 {
            return Err(ApiError::invalid(
                format!("allowed_routes[{i}]: longer than 512 bytes"),
                Some("allowed_routes"),
            ));
        }
        if let Some(why) = crate::http::route_rules::entry_problem(entry) {
            return Err(ApiError::invalid(
                format!("allowed_routes[{i}]: {why}"),
                Some("allowed_routes"),
            ));
        }
    }
    Ok(())
}

/// Refuses `alias` when a key other than `own` (a token hash) holds it:
/// checked before anything is written, so that a refusal changes nothing.
pub(super) async fn refuse_taken_alias(
    keys: &Keys,
    alias: &str,
    own: Option<&str>,
) -> Result<(), ApiError> {
    let holder = keys
        .store()
        .key_hash_by_alias(alias)
        .await
        .map_err(key_error)?;
    match holder {
        Some(holder) if Some(holder.as_str()) != own => Err(invalid("key_alias", "already exists")),
        _ => Ok(()),
    }
}

/// Refuses a key for the reserved user that keeps the gateway's own spend
/// ([`PROXY_BUDGET_USER`]): every call already counts there, so its key's
/// calls would count twice and spend the gateway's budget at double speed.
pub(super) fn refuse_reserved_owner(user_id: &str) -> Result<(), ApiError> {
    if user_id == PROXY_BUDGET_USER {
        return Err(invalid(
            "user_id",
            format!(
                "{PROXY_BUDGET_USER} keeps the gateway's own spend; a key may not belong to it"
            ),
        ));
    }
    Ok(())
}

/// The route group a LiteLLM `key_type` stands for, which replaces the
/// body's `allowed_routes` as in LiteLLM; `None` for `default` or none.
fn routes_of_key_type(key_type: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match key_type {
        None | Some("default") => Ok(None),
        Some("llm_api") => Ok(Some("llm_api_routes")),
        Some("management") => Ok(Some("management_routes")),
        Some("read_only") => Ok(Some("info_routes")),
        Some(_) => Err(ApiError::invalid(
            "key_type must be one of default, llm_api, management, read_only",
            Some("key_type"),
        )),
    }
}

/// Applies a body to a key record (new or existing), checking every field.
async fn apply(
    keys: &Keys,
    k: &mut KeyRecord,
    b: KeyBody,
    now: SystemTime,
) -> Result<(), ApiError> {
    // Checked before anything is written: a key's tags go on every spend
    // row its requests make, under the same rule as a request's own.
    if let Some(Some(tags)) = &b.tags {
        crate::openai::check_tags(tags, "tags")
            .map_err(|message| ApiError::invalid(message, Some("tags")))?;
    }
    let mut b = b;
    if let Some(group) = routes_of_key_type(b.key_type.take().flatten().as_deref())? {
        b.allowed_routes = Some(Some(vec![group.to_owned()]));
    }
    if let Some(Some(routes)) = &b.allowed_routes {
        check_routes(routes)?;
    }
    if let Some(alias) = b.key_alias {
        if let Some(a) = &alias {
            check_id("key_alias", a)?;
        }
        k.key_alias = alias;
    }
    if let Some(duration) = b.duration {
        k.expires = expiry(duration.as_deref(), now)?;
    }
    // `null` clears a list or map, as it clears the other fields.
    if let Some(models) = b.models {
        k.models = models.unwrap_or_default();
        check_entries("models", k.models.iter())?;
    }
    if let Some(aliases) = b.aliases {
        k.aliases = aliases.unwrap_or_default();
        check_entries("aliases", k.aliases.keys())?;
        check_entries("aliases", k.aliases.values())?;
    }
    if let Some(user) = b.user_id {
        if let Some(u) = &user {
            refuse_reserved_owner(u)?;
            ensure_user(keys, u).await?;
        }
        k.user_id = user;
    }
    if let Some(team) = b.team_id {
        if let Some(t) = &team {
            team_exists(keys, t).await?;
        }
        k.team_id = team;
    }
    if let Some(m) = b.metadata {
        k.metadata = metadata(m.unwrap_or_default())?;
    }
    if let Some(tags) = b.tags {
        k.tags = tags.unwrap_or_default();
        check_entries("tags", k.tags.iter())?;
    }
    if let Some(routes) = b.allowed_routes {
        k.allowed_routes = routes.unwrap_or_default();
    }
    if let Some(blocked) = b.blocked {
        k.blocked = blocked;
    }
    if let Some(spend) = b.limits.spend()? {
        k.spend = spend;
    }
    b.limits.apply(
        &mut k.limits,
        &mut k.budget_reset_at,
        now,
        &keys.settings().reset_clock,
    )?;
    k.updated_at = now;
    Ok(())
}

#[utoipa::path(
    post,
    path = "/key/generate",
    operation_id = "key_generate",
    tag = "keys",
    summary = "Create a virtual key",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Create a virtual key: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/generate`: a new key, shown in full this once.
pub async fn generate(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, scope) = key_manager(&state, request.headers()).await?;
    super::refuse_route_limited(&state, request.headers(), "make keys").await?;
    let mut asked = super::read_object(&state, request).await?;
    let gateway = state.gateway();
    let rules = &gateway.key_generate;
    if let Some(fields) = asked.as_object_mut().filter(|_| !rules.is_empty()) {
        rules.apply(fields).map_err(super::over_bound)?;
    }
    let (mut body, limits): (KeyBody, _) = super::with_limits(asked)?;
    body.limits = limits;
    scope.restrict(&keys, &mut body, true).await?;
    let value = key_value(&state, body.key.take(), "key")?;
    let now = SystemTime::now();
    let mut record = KeyRecord {
        token_hash: token::hash(&value),
        key_alias: None,
        key_name: token::display_name(&value),
        user_id: None,
        team_id: None,
        models: Vec::new(),
        aliases: Default::default(),
        limits: Limits::default(),
        spend: 0.0,
        model_spend: Default::default(),
        budget_reset_at: None,
        expires: None,
        blocked: false,
        metadata: json!({}),
        tags: Vec::new(),
        created_at: now,
        updated_at: now,
        allowed_routes: Vec::new(),
    };
    apply(&keys, &mut record, body, now).await?;
    if keys
        .store()
        .key(&record.token_hash)
        .await
        .map_err(key_error)?
        .is_some()
    {
        return Err(invalid("key", "this key already exists"));
    }
    keys.store().insert_key(&record).await.map_err(key_error)?;
    keys.invalidate(&record.token_hash);
    Ok(Json(shape::generated(&record, &value)).into_response())
}

#[utoipa::path(
    post,
    path = "/key/update",
    operation_id = "key_update",
    tag = "keys",
    summary = "Change a virtual key",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Change a virtual key: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/update`: changes the fields the body names (`key` says which).
pub async fn update(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (keys, scope) = key_manager(&state, request.headers()).await?;
    let headers = request.headers().clone();
    let (mut body, limits): (KeyBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    if body.allowed_routes.is_some() || body.key_type.as_ref().is_some_and(Option::is_some) {
        super::refuse_route_limited(&state, &headers, "change a key's allowed_routes").await?;
    }
    let given = body
        .key
        .take()
        .ok_or_else(|| invalid("key", "is required"))?;
    let mut record = existing(&keys, &given).await?;
    scope.check(&record)?;
    let moved = |new: &Option<Option<String>>, old: &Option<String>| {
        new.as_ref().is_some_and(|new| new != old)
    };
    if moved(&body.user_id, &record.user_id) || moved(&body.team_id, &record.team_id) {
        // A key's user gives it that user's role: moving an unlimited key
        // to an administrator would make it one.
        super::refuse_route_limited(&state, &headers, "move a key to another user or team").await?;
    }
    scope.restrict(&keys, &mut body, false).await?;
    let spend = body.limits.spend()?;
    let before = record.clone();
    apply(&keys, &mut record, body, SystemTime::now()).await?;
    scope.check_change(&before, &record, spend)?;
    written(
        keys.store()
            .update_key(&record, Some(before.updated_at))
            .await,
        "key",
    )?;
    super::set_spend(&state, &keys, SpendOwner::Key, &record.token_hash, spend).await?;
    keys.invalidate(&record.token_hash);
    let mut out = shape::key(&record);
    if let Some(o) = out.as_object_mut() {
        o.insert("key".into(), json!(record.token_hash));
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
struct DeleteBody {
    keys: Option<Vec<String>>,
    key_aliases: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/key/delete",
    operation_id = "key_delete",
    tag = "keys",
    summary = "Delete virtual keys",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete virtual keys: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/delete`: `{"keys": [...]}` (values or hashes) or
/// `{"key_aliases": [...]}`; 404 when none of them exists.
pub async fn delete(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (keys, scope) = key_manager(&state, request.headers()).await?;
    let body: DeleteBody = read_json(&state, request).await?;
    if body.keys.as_ref().is_none_or(Vec::is_empty)
        && body.key_aliases.as_ref().is_none_or(Vec::is_empty)
    {
        return Err(invalid(
            "keys",
            "name at least one key in keys or key_aliases",
        ));
    }
    let given = super::bounded_list("keys", body.keys.unwrap_or_default())?;
    let aliases = body.key_aliases.unwrap_or_default();
    let aliases = super::bounded_list("key_aliases", aliases)?;
    if given.len() + aliases.len() > super::MAX_NAMED {
        return Err(invalid(
            "keys",
            format!(
                "keys and key_aliases may name at most {} keys together",
                super::MAX_NAMED
            ),
        ));
    }
    let mut hashes = Vec::new();
    let mut named = Vec::new();
    for k in given {
        let h = hash_of(&k);
        // Only keys that exist are reported deleted.
        match keys.store().key(&h).await.map_err(key_error)? {
            Some(record) => scope.check(&record)?,
            None => {
                scope.check_unknown()?;
                continue;
            }
        }
        hashes.push(h);
        named.push(k);
    }
    for alias in aliases {
        match keys
            .store()
            .key_hash_by_alias(&alias)
            .await
            .map_err(key_error)?
        {
            Some(h) => {
                scope.check(&existing(&keys, &h).await?)?;
                hashes.push(h);
                named.push(alias);
            }
            None => scope.check_unknown()?,
        }
    }
    let deleted = keys.store().delete_keys(&hashes).await.map_err(key_error)?;
    for h in &hashes {
        keys.invalidate(h);
    }
    super::forget_spend(&state, crate::limits::Level::Key, &hashes).await;
    if deleted == 0 {
        return Err(key_error(KeyError::NotFound {
            entity: "key",
            id: "none of the keys named exists".into(),
        }));
    }
    Ok(Json(json!({"deleted_keys": named})).into_response())
}

#[utoipa::path(
    post,
    path = "/key/health",
    operation_id = "key_health",
    tag = "keys",
    summary = "Whether the calling key works",
    responses(
        (status = 200, description = "The key is valid, unblocked and unexpired", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing, wrong, blocked or expired key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "The key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/health`: LiteLLM's check that the calling key works. conclave
/// has no per-key logging callbacks to check, so a key that authenticates is
/// healthy (`logging_callbacks: null`, as LiteLLM answers a key without any).
pub async fn health(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    authenticate(&state, request.headers()).await?;
    Ok(Json(json!({"key": "healthy", "logging_callbacks": null})).into_response())
}

#[utoipa::path(
    get,
    path = "/key/info",
    operation_id = "key_info",
    tag = "keys",
    summary = "A virtual key's settings and spend",
    responses(
        (status = 200, description = "A virtual key's settings and spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /key/info?key=`: any key for an admin; a key's own info for itself
/// (without `key`, the caller's own); another key is 403.
pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let given = q.get("key").cloned();
    let record = match (&manager, given.as_deref()) {
        (Manager::Key { principal, .. }, given) => {
            let own = &principal.key.token_hash;
            match given {
                Some(g) if hash_of(g) != *own && !manager.reads_all() => {
                    // A key of another user is refused whether or not it
                    // exists: the answer must not tell which keys do.
                    match keys.store().key(&hash_of(g)).await.map_err(key_error)? {
                        Some(other) if may_read(&manager, &other) => other,
                        _ => {
                            return Err(ApiError::new(
                                StatusCode::FORBIDDEN,
                                "permission_error",
                                "a key may read only its own info and that of its user's keys",
                                Some("key"),
                                Some("not_own_key"),
                            ));
                        }
                    }
                }
                Some(g) => existing(&keys, g).await?,
                None => existing(&keys, own).await?,
            }
        }
        (Manager::Master, Some(g)) => existing(&keys, g).await?,
        (Manager::Master, None) => return Err(invalid("key", "is required with the master key")),
    };
    let shown = given.unwrap_or_else(|| record.token_hash.clone());
    Ok(Json(json!({"key": shown, "info": shape::key(&record)})).into_response())
}

#[derive(Deserialize)]
struct InfoManyBody {
    #[serde(default)]
    keys: Option<Vec<String>>,
    #[serde(default)]
    key_aliases: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/v2/key/info",
    operation_id = "key_info_v2",
    tag = "keys",
    summary = "Several virtual keys' settings and spend",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "`key` (the keys asked for) and `info` (those the caller may read, most spent first)", body = super::super::openapi::JsonObject),
        (status = 400, description = "Neither keys nor key_aliases, or more than 100 of them", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "The key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /v2/key/info` with `{"keys": [...]}` and/or `{"key_aliases":
/// [...]}`: the info of each key the caller may read (as `/key/info`
/// decides), most spent first. Keys that do not exist or that the caller
/// may not read are left out alike, so the answer tells nothing of them.
pub async fn info_many(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let body: InfoManyBody = read_json(&state, request).await?;
    let aliases = body.key_aliases.unwrap_or_default();
    let given = body.keys.clone().unwrap_or_default();
    if given.is_empty() && aliases.is_empty() {
        return Err(invalid(
            "keys",
            "give keys or key_aliases, a list of at least one",
        ));
    }
    if given.len() + aliases.len() > MAX_PAGE_SIZE as usize {
        return Err(invalid(
            "keys",
            format!("at most {MAX_PAGE_SIZE} keys and aliases together"),
        ));
    }
    let mut hashes: Vec<String> = given.iter().map(|g| hash_of(g)).collect();
    for alias in &aliases {
        if let Some(hash) = keys
            .store()
            .key_hash_by_alias(alias)
            .await
            .map_err(key_error)?
        {
            hashes.push(hash);
        }
    }
    hashes.sort_unstable();
    hashes.dedup();
    let mut found = Vec::with_capacity(hashes.len());
    for hash in &hashes {
        if let Some(record) = keys.store().key(hash).await.map_err(key_error)?
            && may_read(&manager, &record)
        {
            found.push(record);
        }
    }
    found.sort_by(|a, b| b.spend.total_cmp(&a.spend));
    let info: Vec<Value> = found.iter().map(shape::key).collect();
    Ok(Json(json!({"key": body.keys, "info": info})).into_response())
}

/// Whether `manager` may read `record`: every key for a reader, else its
/// own key and its user's other keys.
pub(super) fn may_read(manager: &Manager, record: &KeyRecord) -> bool {
    match manager {
        Manager::Key { principal, .. } if !manager.reads_all() => {
            record.token_hash == principal.key.token_hash
                || (record.user_id.is_some() && record.user_id == principal.key.user_id)
        }
        _ => true,
    }
}

/// The most rows a page of a management list holds, as LiteLLM's lists
/// allow (a larger size is refused, not cut).
pub(super) const MAX_PAGE_SIZE: u32 = 100;

/// Page and size from a query (`page` from 1, `size` or `page_size` from
/// 1 to [`MAX_PAGE_SIZE`]).
pub(super) fn page_of(
    q: &HashMap<String, String>,
    default_size: u32,
) -> Result<ListPage, ApiError> {
    page_within(q, default_size, MAX_PAGE_SIZE)
}

/// Page and size from a query, the size from 1 to `max_size`.
pub(in crate::http) fn page_within(
    q: &HashMap<String, String>,
    default_size: u32,
    max_size: u32,
) -> Result<ListPage, ApiError> {
    let num = |name: &str, default: u32, max: u32| -> Result<u32, ApiError> {
        q.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| invalid(name, format!("must be an integer from 1 to {max}")))
        })
    };
    let size_name = if q.contains_key("page_size") {
        "page_size"
    } else {
        "size"
    };
    Ok(ListPage {
        page: num("page", 1, u32::MAX)?,
        size: num(size_name, default_size, max_size)?,
    })
}

#[utoipa::path(
    get,
    path = "/key/list",
    operation_id = "key_list",
    tag = "keys",
    summary = "List virtual keys",
    responses(
        (status = 200, description = "List virtual keys: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /key/list`: key hashes (or whole records with
/// `return_full_object=true`), filtered by `user_id`, `team_id`, `key_alias`,
/// `key_hash`, sorted by `sort_by`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, scope) = key_lister(&state, request.headers()).await?;
    let page = page_of(&q, 10)?;
    let filter = KeyFilter {
        user_id: scope.list_user(q.get("user_id"))?,
        team_id: q.get("team_id").cloned(),
        key_alias: q.get("key_alias").cloned(),
        token_hashes: q
            .get("key_hash")
            .map(|k| vec![hash_of(k)])
            .unwrap_or_default(),
        order: list_order(&q)?,
    };
    let (found, total) = keys
        .store()
        .list_keys(&filter, page)
        .await
        .map_err(key_error)?;
    let full = q.get("return_full_object").is_some_and(|v| v == "true");
    let listed: Vec<Value> = found
        .iter()
        .map(|k| {
            if full {
                shape::key(k)
            } else {
                json!(k.token_hash)
            }
        })
        .collect();
    Ok(Json(json!({
        "keys": listed,
        "total_count": total,
        "current_page": page.page,
        "total_pages": total.div_ceil(u64::from(page.size)),
    }))
    .into_response())
}

/// LiteLLM's `sort_by` (`created_at`, the default, or `spend`) and
/// `sort_order` (`desc`, the default, or `asc`) of `/key/list`.
fn list_order(q: &HashMap<String, String>) -> Result<ListOrder, ApiError> {
    let ascending = match q.get("sort_order").map(|o| o.to_ascii_lowercase()) {
        None => false,
        Some(o) if o == "desc" => false,
        Some(o) if o == "asc" => true,
        Some(_) => return Err(invalid("sort_order", "must be asc or desc")),
    };
    match (q.get("sort_by").map(String::as_str), ascending) {
        (None | Some("created_at"), false) => Ok(ListOrder::Created),
        (None | Some("created_at"), true) => Ok(ListOrder::CreatedAscending),
        (Some("spend"), false) => Ok(ListOrder::Spend),
        (Some("spend"), true) => Ok(ListOrder::SpendAscending),
        (Some(other), _) => Err(invalid(
            "sort_by",
            format!("must be spend or created_at, not {other:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct KeyOnly {
    key: Option<String>,
}

/// A new key's value: the one chosen in `field` (checked), or a random one.
fn key_value(state: &AppState, chosen: Option<String>, field: &str) -> Result<String, ApiError> {
    use subtle::ConstantTimeEq;
    let is_master = |v: &str| {
        state
            .gateway()
            .master_key
            .as_ref()
            .is_some_and(|m| bool::from(v.as_bytes().ct_eq(m.expose().as_bytes())))
    };
    match chosen {
        Some(v) if !v.starts_with("sk-") || v.len() < 8 || v.len() > 256 => Err(invalid(
            field,
            "a chosen key must start with sk- and have 8 to 256 characters",
        )),
        // Only visible ASCII travels in a header as the key it is.
        Some(v) if !v.bytes().all(|b| b.is_ascii_graphic()) => Err(invalid(
            field,
            "a chosen key may hold only visible ASCII characters (no spaces): \
             clients send it in a header",
        )),
        // It would be listed and logged as a virtual key's value.
        Some(v) if is_master(&v) => Err(invalid(field, "a chosen key may not be the master key")),
        Some(v) => Ok(v),
        None => token::generate().map_err(key_error),
    }
}

/// LiteLLM's `/key/regenerate` body besides the key fields to change at
/// once: the key, and a chosen new value.
#[derive(Deserialize)]
struct Regenerate {
    key: Option<String>,
    new_key: Option<String>,
}

async fn set_blocked(
    state: AppState,
    request: Request,
    blocked: bool,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: KeyOnly = read_json(&state, request).await?;
    let given = body.key.ok_or_else(|| invalid("key", "is required"))?;
    let mut record = existing(&keys, &given).await?;
    let read_at = record.updated_at;
    record.blocked = blocked;
    record.updated_at = SystemTime::now();
    written(keys.store().update_key(&record, Some(read_at)).await, "key")?;
    keys.invalidate(&record.token_hash);
    Ok(Json(shape::key(&record)).into_response())
}

#[utoipa::path(
    post,
    path = "/key/block",
    operation_id = "key_block",
    tag = "keys",
    summary = "Block a virtual key",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Block a virtual key: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/block`: the key is refused until unblocked.
pub async fn block(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    set_blocked(state, request, true).await
}

#[utoipa::path(
    post,
    path = "/key/unblock",
    operation_id = "key_unblock",
    tag = "keys",
    summary = "Unblock a virtual key",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Unblock a virtual key: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/unblock`.
pub async fn unblock(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    set_blocked(state, request, false).await
}

#[utoipa::path(
    post,
    path = "/key/regenerate",
    operation_id = "key_regenerate",
    tag = "keys",
    summary = "Replace a virtual key's secret",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Replace a virtual key's secret: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/regenerate` with `{"key": ...}`: a new value for the key,
/// keeping its settings and spend; the old value stops working at once.
pub async fn regenerate(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, scope) = key_manager(&state, request.headers()).await?;
    super::refuse_route_limited(&state, request.headers(), "regenerate keys").await?;
    let (asked, changes) = read_regenerate(&state, request).await?;
    let given = asked.key.ok_or_else(|| invalid("key", "is required"))?;
    rotate(&state, &keys, &scope, &given, asked.new_key, changes).await
}

/// A regenerate body: what to regenerate, and the key fields it changes.
async fn read_regenerate(
    state: &AppState,
    request: Request,
) -> Result<(Regenerate, KeyBody), ApiError> {
    let value = super::read_object(state, request).await?;
    if let Some(fields) = value.as_object() {
        state
            .gateway()
            .key_generate
            .check(fields)
            .map_err(super::over_bound)?;
    }
    super::unenforced::refuse(&value, super::unenforced::ON_KEYS)?;
    let asked: Regenerate = super::typed(value.clone())?;
    let mut changes: KeyBody = super::typed(value.clone())?;
    changes.limits = super::typed(value)?;
    changes.key = None;
    Ok((asked, changes))
}

#[utoipa::path(
    post,
    path = "/key/{key}/regenerate",
    operation_id = "key_by_key_regenerate",
    tag = "keys",
    summary = "Replace a virtual key's secret (key in the path)",
    request_body = super::super::openapi::JsonObject,
    params(("key" = String, Path, description = "The key or its hash")),
    responses(
        (status = 200, description = "Replace a virtual key's secret (key in the path): done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /key/{key}/regenerate`, LiteLLM's other spelling.
pub async fn regenerate_path(
    State(state): State<AppState>,
    Path(given): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, scope) = key_manager(&state, request.headers()).await?;
    super::refuse_route_limited(&state, request.headers(), "regenerate keys").await?;
    let (asked, changes) = read_regenerate(&state, request).await?;
    rotate(&state, &keys, &scope, &given, asked.new_key, changes).await
}

/// Counts the key's new value on from what its old one used of the
/// current minute, so that a new value is no way around its rate limits.
/// A Redis that does not answer leaves the new value's shared window empty,
/// which a warning says.
async fn carry_counters(state: &AppState, old_hash: &str, record: &KeyRecord) {
    use crate::keys::scopes::key_counter_names;
    let from = key_counter_names(old_hash, &record.limits);
    let to = key_counter_names(&record.token_hash, &record.limits);
    for (from, to) in from.iter().zip(&to) {
        if let Err(error) = state.ops.limiter.carry(from, to).await {
            tracing::warn!(%error, key = %record.key_name, "regenerate: the key's rate window could not be carried to its new value in Redis");
            return;
        }
    }
}

/// Gives a key a new value (`chosen`, or a random one), keeping its
/// settings and spend, then applies the body's other key fields (as
/// LiteLLM's regenerate does).
async fn rotate(
    state: &AppState,
    keys: &Keys,
    scope: &KeyScope,
    given: &str,
    chosen: Option<String>,
    mut changes: KeyBody,
) -> Result<Response, ApiError> {
    let found = existing(keys, given).await?;
    scope.check(&found)?;
    scope.restrict(keys, &mut changes, false).await?;
    // Every change is checked before the key changes value: a refusal
    // afterwards would leave its holder with a value never shown.
    let mut preview = found.clone();
    apply(keys, &mut preview, changes.clone(), SystemTime::now()).await?;
    scope.check_change(&found, &preview, changes.limits.spend()?)?;
    // Only a new alias can be taken.
    if let Some(alias) = preview
        .key_alias
        .as_deref()
        .filter(|a| Some(*a) != found.key_alias.as_deref())
    {
        refuse_taken_alias(keys, alias, Some(&found.token_hash)).await?;
    }
    let value = key_value(state, chosen, "new_key")?;
    // What this instance's counter has charged the key so far: a call that
    // just ended may not have reached the spend log yet.
    let counted = state.ops.limiter.spent(&crate::keys::scopes::counter_name(
        crate::limits::Level::Key,
        &found.token_hash,
    ));
    // Spend rows still queued name the old hash: written first (outcomes to
    // the spend sink, then the writer), they count in the record the new
    // hash's limits start from.
    if !(state.ops.outcomes.flush(SPEND_FLUSH_WAIT).await && keys.flush(SPEND_FLUSH_WAIT).await) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "the key's latest spend could not be written yet; regenerate again",
            None,
            Some("spend_not_written"),
        ));
    }
    let mut record = existing(keys, &found.token_hash).await?;
    // A charge still on its way to the log would be written under the old
    // hash and lost: the new hash starts from the larger of the two.
    let carried = counted.filter(|c| *c > record.spend);
    let old = record.token_hash.clone();
    let read_at = record.updated_at;
    record.token_hash = token::hash(&value);
    record.key_name = token::display_name(&value);
    // Later than what was read, so the final write below can tell.
    record.updated_at = crate::keys::store::later_than_read(SystemTime::now(), read_at);
    let rotated = keys
        .store()
        .rehash_key(
            &old,
            &record.token_hash,
            &record.key_name,
            (read_at, record.updated_at),
        )
        .await
        .map_err(key_error)?;
    keys.invalidate(&old);
    if !rotated {
        // Another regenerate of the same key got there first (its new value
        // is the key now), or another change did: this value was never
        // stored.
        return match keys.store().key(&old).await.map_err(key_error)? {
            Some(_) => Err(super::changed_meanwhile("key")),
            None => Err(key_error(KeyError::NotFound {
                entity: "key",
                id: found.key_name.clone(),
            })),
        };
    }
    carry_counters(state, &old, &record).await;
    if let Some(spend) = carried {
        keys.store()
            .set_spend(SpendOwner::Key, &record.token_hash, spend)
            .await
            .map_err(key_error)?;
        record.spend = spend;
    }
    let spend = changes.limits.spend()?;
    let rehashed_at = record.updated_at;
    apply(keys, &mut record, changes, SystemTime::now()).await?;
    written(
        keys.store().update_key(&record, Some(rehashed_at)).await,
        "key",
    )?;
    super::set_spend(state, keys, SpendOwner::Key, &record.token_hash, spend).await?;
    keys.invalidate(&record.token_hash);
    Ok(Json(shape::generated(&record, &value)).into_response())
}
