//! Anthropic's Models API over the gateway's public models: `GET
//! /anthropic/v1/models[/{id}]`, and `/v1/models` for a client that sends
//! `anthropic-version` (Anthropic's SDKs and Claude Code, which discovers a
//! gateway's models there and reads only Anthropic's shape).

use std::time::{Duration, UNIX_EPOCH};

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Scope;
use super::error::ApiError;
use super::routes;

/// The header that tells an Anthropic client from an OpenAI one.
const ANTHROPIC_VERSION: &str = "anthropic-version";
/// Anthropic's page size when the client names none, and its largest.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

/// Whether the request speaks Anthropic's API rather than OpenAI's.
pub fn wants_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key(ANTHROPIC_VERSION)
}

/// Anthropic's paging parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Page {
    limit: Option<usize>,
    after_id: Option<String>,
    before_id: Option<String>,
}

/// `GET /anthropic/v1/models` (and `/v1/models` with `anthropic-version`):
/// the models the caller may use, a page at a time.
pub async fn list(
    Extension(scope): Extension<Scope>,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(page) =
        query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text()), None))?;
    let models: Vec<Value> = routes::public_models(&scope)
        .iter()
        .map(anthropic_entry)
        .collect();
    Ok(axum::Json(paged(models, &page)?).into_response())
}

/// `GET /anthropic/v1/models/{id}` (and `/v1/models/{id}` with
/// `anthropic-version`): one model the caller may use.
pub async fn retrieve(
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = routes::public_model(&scope, &id)?;
    Ok(axum::Json(anthropic_entry(&entry)).into_response())
}

/// An entry of OpenAI's listing in Anthropic's shape.
fn anthropic_entry(openai: &Value) -> Value {
    let id = openai["id"].as_str().unwrap_or_default();
    let created = UNIX_EPOCH + Duration::from_secs(openai["created"].as_u64().unwrap_or(0));
    json!({
        "type": "model",
        "id": id,
        "display_name": id,
        "created_at": humantime::format_rfc3339_seconds(created).to_string(),
    })
}

/// One page of `models` as Anthropic pages: `limit` entries after
/// `after_id` or before `before_id`, with `has_more`, `first_id` and
/// `last_id`.
fn paged(models: Vec<Value>, page: &Page) -> Result<Value, ApiError> {
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
            Some("limit"),
        ));
    }
    let position = |id: &str, name: &str| {
        models.iter().position(|m| m["id"] == id).ok_or_else(|| {
            ApiError::invalid(format!("{name} {id:?} is not a model id"), Some(name))
        })
    };
    let (start, end, more) = match (&page.after_id, &page.before_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give after_id or before_id, not both",
                Some("before_id"),
            ));
        }
        (Some(after), None) => {
            let start = position(after, "after_id")? + 1;
            let end = (start + limit).min(models.len());
            (start, end, end < models.len())
        }
        (None, Some(before)) => {
            let end = position(before, "before_id")?;
            let start = end.saturating_sub(limit);
            (start, end, start > 0)
        }
        (None, None) => {
            let end = limit.min(models.len());
            (0, end, end < models.len())
        }
    };
    let data = &models[start..end];
    Ok(json!({
        "data": data,
        "has_more": more,
        "first_id": data.first().map(|m| &m["id"]),
        "last_id": data.last().map(|m| &m["id"]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("m{i}")})).collect()
    }

    fn ids(page: &Value) -> Vec<&str> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect()
    }

    fn page(limit: Option<usize>, after: Option<&str>, before: Option<&str>) -> Page {
        Page {
            limit,
            after_id: after.map(str::to_owned),
            before_id: before.map(str::to_owned),
        }
    }

    #[test]
    fn pages_follow_after_id_to_the_end() {
        let first = paged(models(5), &page(Some(2), None, None)).unwrap();
        assert_eq!(ids(&first), ["m0", "m1"]);
        assert_eq!(
            (first["has_more"].clone(), first["last_id"].clone()),
            (json!(true), json!("m1"))
        );
        let last = paged(models(5), &page(Some(2), Some("m3"), None)).unwrap();
        assert_eq!(ids(&last), ["m4"]);
        assert_eq!(last["has_more"], false);
    }

    #[test]
    fn before_id_pages_backwards() {
        let p = paged(models(5), &page(Some(2), None, Some("m3"))).unwrap();
        assert_eq!(ids(&p), ["m1", "m2"]);
        assert_eq!(p["has_more"], true);
    }

    #[test]
    fn an_empty_listing_has_no_ids() {
        let p = paged(Vec::new(), &Page::default()).unwrap();
        assert_eq!(p["first_id"], Value::Null);
        assert_eq!(p["has_more"], false);
    }

    #[test]
    fn bad_paging_is_named() {
        for (p, named) in [
            (page(Some(0), None, None), "limit"),
            (page(Some(1001), None, None), "limit"),
            (page(None, Some("nope"), None), "after_id"),
            (page(None, Some("m0"), Some("m1")), "before_id"),
        ] {
            let error = paged(models(3), &p).unwrap_err();
            assert_eq!(error.body.error.param.as_deref(), Some(named));
        }
    }

    #[test]
    fn entries_take_anthropics_shape() {
        let entry = anthropic_entry(&json!({"id": "claude-x", "object": "model", "created": 0}));
        assert_eq!(
            entry,
            json!({"type": "model", "id": "claude-x", "display_name": "claude-x",
                   "created_at": "1970-01-01T00:00:00Z"})
        );
    }
}
