//! `GET /audit` and `GET /audit/{id}`: the audit log as LiteLLM's UI reads it.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Kind;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::management::keys::{hash_of, page_of};
use crate::http::management::spend::optional_window;
use crate::http::management::{invalid, key_error, reader};
use crate::keys::store::{AuditFilter, AuditRow};

/// Rows a page shows when the query does not say.
const DEFAULT_PAGE_SIZE: u32 = 50;

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
        (status = 200, description = "One page of rows, newest first", body = crate::http::openapi::JsonObject),
        (status = 400, description = "A query parameter is not usable", body = crate::http::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = crate::http::openapi::ErrorResponse),
        (status = 403, description = "Not an admin or a viewer, or the key store is off (no master key)", body = crate::http::openapi::ErrorResponse)
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
    let keys = reader(&state, &headers).await?;
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
    let (since, until) = optional_window(&q)?;
    let mut filter = AuditFilter {
        changed_by: text("changed_by"),
        changed_by_api_key: text("changed_by_api_key"),
        action: text("action"),
        table_name: text("table_name"),
        object_id: text("object_id"),
        since,
        until,
        ascending,
    };
    // LiteLLM's object filters: a key by its hash (or value), a team by id.
    for (param, table) in [
        ("object_key_hash", Kind::Key),
        ("object_team_id", Kind::Team),
    ] {
        if let Some(id) = text(param) {
            let id = if table == Kind::Key { hash_of(&id) } else { id };
            let table_name = table.table().to_owned();
            // Each filter narrows: two that name different objects match nothing.
            if filter.object_id.as_ref().is_some_and(|o| *o != id)
                || filter.table_name.as_ref().is_some_and(|t| *t != table_name)
            {
                return Err(invalid(
                    param,
                    "names another object than object_id, table_name or the other object filter",
                ));
            }
            filter.object_id = Some(id);
            filter.table_name = Some(table_name);
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
        (status = 200, description = "The row", body = crate::http::openapi::JsonObject),
        (status = 404, description = "No row has this id", body = crate::http::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = crate::http::openapi::ErrorResponse),
        (status = 403, description = "Not an admin or a viewer, or the key store is off (no master key)", body = crate::http::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /audit/{id}`: one row of the audit log.
pub async fn entry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let keys = reader(&state, &headers).await?;
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
