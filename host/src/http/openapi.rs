//! `GET /openapi.json`: the OpenAPI 3.1 document of every public route,
//! generated from the `#[utoipa::path]` annotations on the handlers. This file
//! is the one place that lists them ([`ApiDoc`]); a new route's handler is
//! annotated where it lives and named here. Routes served under two paths
//! (`/v1/x` and `/x`) are annotated once and copied by [`ALIASES`].

mod schemas;

use std::sync::LazyLock;

use bytes::Bytes;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem};
use utoipa::{Modify, OpenApi};

use super::{admin, cache_routes, docs, info, management, messages, metrics, responses, routes};
pub use schemas::*;

/// Every documented route. Sections follow the route groups of
/// [`super::app`]; a route added there is annotated in its handler's file
/// and listed here, or the route-list test fails.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "conclave",
        description = "An OpenAI-compatible LLM gateway: chat completions, completions, \
            embeddings, moderations, image generations, rerank, OpenAI's Responses API and \
            Anthropic's Messages API, served by \
            plain model groups and composite profiles through one router. Request bodies \
            are forwarded as the client sent them; the schemas name the fields the \
            gateway reads and admit every other field."
    ),
    paths(
        // OpenAI-compatible model routes (model-route auth).
        routes::chat_completions,
        routes::completions,
        routes::embeddings,
        routes::moderations,
        routes::image_generations,
        routes::rerank,
        responses::create,
        responses::retrieve,
        responses::delete,
        responses::list_input_items,
        routes::models,
        routes::model,
        routes::model_info,
        routes::model_info_v2,
        routes::model_group_info,
        routes::provider_budgets,
        info::info,
        routes::health,
        // Anthropic's Messages API (model-route auth, Anthropic's error shape).
        messages::create,
        messages::count,
        // Probes and metrics (no auth; /metrics takes the master key).
        routes::liveliness,
        routes::readiness,
        metrics::metrics,
        // The admin API (master key).
        admin::status,
        admin::reload,
        admin::list_models,
        admin::register_model,
        admin::delete_model,
        admin::model_new,
        admin::model_update,
        admin::model_patch,
        admin::model_delete,
        // These docs.
        docs::index,
        docs::openapi_json,
        // Virtual keys, users, teams and spend (master key or an admin key).
        management::keys::generate,
        management::keys::update,
        management::keys::delete,
        management::keys::info,
        management::keys::health,
        management::keys::list,
        management::keys::block,
        management::keys::unblock,
        management::keys::regenerate,
        management::keys::regenerate_path,
        management::spend_reset::reset_key,
        management::keys::info_many,
        management::users::new,
        management::users::update,
        management::users::delete,
        management::users::info,
        management::users::list,
        management::users::available_roles,
        management::audit::routes::list,
        management::audit::routes::entry,
        management::teams::new,
        management::teams::update,
        management::teams::delete,
        management::teams::block,
        management::teams::unblock,
        management::teams::member_add,
        management::teams::bulk_member_add,
        management::teams::member_delete,
        management::teams::member_update,
        management::teams::model_add,
        management::teams::model_delete,
        management::teams::info,
        management::teams::list,
        management::customers::new,
        management::customers::update,
        management::customers::delete,
        management::customers::info,
        management::customers::list,
        management::customers::block,
        management::customers::unblock,
        management::budgets::new,
        management::budgets::update,
        management::budgets::info,
        management::budgets::list,
        management::budgets::settings,
        management::budgets::delete,
        management::spend::logs,
        management::spend::keys_by_spend,
        management::spend::users_by_spend,
        management::spend::global,
        management::spend::global_keys,
        management::spend::global_models,
        management::spend::global_teams,
        management::spend::tags,
        management::spend::global_tags,
        management::spend::report,
        management::activity::user_activity,
        management::activity::team_activity,
        management::activity::global_logs,
        management::spend_reset::reset_global,
        management::spend_calculate::calculate,
        // The response cache (master key).
        cache_routes::ping,
        cache_routes::flush_all,
        cache_routes::delete_many,
        cache_routes::delete_one,
    ),
    components(schemas(
        JsonObject,
        ChatCompletionRequest,
        CompletionRequest,
        EmbeddingRequest,
        ModerationRequest,
        ImageGenerationRequest,
        RerankRequest,
        ResponsesRequest,
        MessagesRequest,
        CountTokensResponse,
        ModelList,
        ModelEntry,
        ErrorResponse,
        ErrorDetail,
        AnthropicErrorResponse,
        AnthropicErrorDetail,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "openai", description = "OpenAI-compatible model routes"),
        (name = "anthropic", description = "Anthropic's Messages API"),
        (name = "models", description = "Model listings and health"),
        (name = "probes", description = "Liveness, readiness and metrics"),
        (name = "admin", description = "Reload, status and runtime models (master key)"),
        (name = "keys", description = "Virtual keys"),
        (name = "users", description = "Users"),
        (name = "teams", description = "Teams"),
        (name = "customers", description = "End users (customers) and what they spend"),
        (name = "budgets", description = "Budgets end users are linked to"),
        (name = "spend", description = "Spend logs and reports"),
        (name = "cache", description = "The response cache"),
        (name = "docs", description = "This document and its viewer"),
    )
)]
pub struct ApiDoc;

/// Routes served under a second path: (alias, documented path). Each alias
/// gets a copy of the documented operations with `_alias` operation ids
/// (`_alias2` for a path's second alias).
pub const ALIASES: &[(&str, &str)] = &[
    ("/chat/completions", "/v1/chat/completions"),
    ("/completions", "/v1/completions"),
    ("/embeddings", "/v1/embeddings"),
    ("/moderations", "/v1/moderations"),
    ("/images/generations", "/v1/images/generations"),
    ("/rerank", "/v1/rerank"),
    ("/v2/rerank", "/v1/rerank"),
    ("/end_user/new", "/customer/new"),
    ("/end_user/update", "/customer/update"),
    ("/end_user/delete", "/customer/delete"),
    ("/end_user/info", "/customer/info"),
    ("/end_user/list", "/customer/list"),
    ("/end_user/block", "/customer/block"),
    ("/end_user/unblock", "/customer/unblock"),
    ("/responses", "/v1/responses"),
    ("/responses/{response_id}", "/v1/responses/{response_id}"),
    (
        "/responses/{response_id}/input_items",
        "/v1/responses/{response_id}/input_items",
    ),
    ("/openai/v1/responses", "/v1/responses"),
    (
        "/openai/v1/responses/{response_id}",
        "/v1/responses/{response_id}",
    ),
    (
        "/openai/v1/responses/{response_id}/input_items",
        "/v1/responses/{response_id}/input_items",
    ),
    ("/models", "/v1/models"),
    ("/models/{model}", "/v1/models/{model}"),
    ("/model/info", "/v1/model/info"),
    ("/anthropic/v1/messages", "/v1/messages"),
    ("/anthropic/v1/models", "/v1/models"),
    ("/anthropic/v1/models/{model}", "/v1/models/{model}"),
    (
        "/anthropic/v1/messages/count_tokens",
        "/v1/messages/count_tokens",
    ),
    ("/health/liveness", "/health/liveliness"),
];

/// The security schemes the annotations name: the master key (or any key
/// the gateway accepts) as a bearer token, or as `x-api-key` as Anthropic's
/// clients send it.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// The whole document, aliases included.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for (i, (alias, documented)) in ALIASES.iter().enumerate() {
        // A path's second alias (`/v2/rerank` beside `/rerank`) gets `_alias2`.
        let earlier = ALIASES[..i].iter().filter(|(_, d)| d == documented).count();
        if let Some(item) = doc.paths.paths.get(*documented) {
            let copy = aliased(item.clone(), earlier + 1);
            doc.paths.paths.insert((*alias).to_owned(), copy);
        }
    }
    doc
}

/// Whether the gateway serves `path` (as a client sends it, with or
/// without `/v1`): a documented path, `{param}` segments matching any one.
pub fn serves(path: &str) -> bool {
    static PATHS: LazyLock<Vec<String>> =
        LazyLock::new(|| document().paths.paths.keys().cloned().collect());
    let matches = |path: &str, documented: &str| {
        let (mut a, mut b) = (path.split('/'), documented.split('/'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(seg), Some(doc)) if seg == doc || doc.starts_with('{') => {}
                _ => return false,
            }
        }
    };
    let bare = path.strip_prefix("/v1").filter(|p| p.starts_with('/'));
    PATHS.iter().any(|documented| {
        matches(path, documented) || bare.is_some_and(|bare| matches(bare, documented))
    })
}

/// The document as served: built once, the same for every version of the
/// config (it describes routes, not models).
pub fn document_json() -> Bytes {
    static JSON: LazyLock<Bytes> =
        LazyLock::new(|| Bytes::from(serde_json::to_vec(&document()).unwrap_or_default()));
    JSON.clone()
}

/// A copy of `item` for its `nth` alias, whose operation ids stay unique.
fn aliased(mut item: PathItem, nth: usize) -> PathItem {
    for op in [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(id) = &mut op.operation_id {
            id.push_str("_alias");
            if nth > 1 {
                id.push_str(&nth.to_string());
            }
        }
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_copies_a_documented_path() {
        let doc = document();
        for (alias, documented) in ALIASES {
            assert!(doc.paths.paths.contains_key(*documented), "{documented}");
            assert!(doc.paths.paths.contains_key(*alias), "{alias}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let json = serde_json::to_value(document()).unwrap();
        let mut ids: Vec<&str> = json["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
