//! `GET /info`: what this gateway serves, for a person (`?format=text`) or a
//! program (JSON, the default): its version and uptime, the public models
//! with their deployments, the composite profiles with their strategies,
//! and the features turned on. Nothing in it is a credential: deployments
//! show provider, upstream model and api_base (without user info or query),
//! never keys or headers. It takes the same key as the model routes.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Scope};
use crate::gateway::Gateway;

/// `?format=`.
#[derive(Deserialize)]
pub struct InfoQuery {
    format: Option<String>,
}

/// The route handler.
#[utoipa::path(
    get,
    path = "/info",
    operation_id = "info",
    tag = "models",
    summary = "Version, uptime, models with deployments, profiles and features",
    params(("format" = Option<String>, Query, description = "`text` for a plain-text page; JSON otherwise")),
    responses(
        (status = 200, description = "The gateway's description (no secrets)", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn info(
    State(state): State<AppState>,
    Extension(scope): Extension<Scope>,
    Query(query): Query<InfoQuery>,
) -> Response {
    let report = match super::routes::model_filter(&scope) {
        Some(may_see) => report(&state, &scope.gateway, &may_see),
        None => report(&state, &scope.gateway, &|_| true),
    };
    if query.format.as_deref() == Some("text") {
        return text(&report).into_response();
    }
    axum::Json(report).into_response()
}

/// The report as JSON, of the model names `may_see` names.
fn report(state: &AppState, gateway: &Gateway, may_see: &dyn Fn(&str) -> bool) -> Value {
    let started = state.control.started();
    let uptime = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default()
        .as_secs_f64();
    json!({
        "name": "conclave",
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": humantime::format_rfc3339_seconds(started.max(UNIX_EPOCH)).to_string(),
        "uptime_seconds": uptime.floor(),
        "config_loaded_at": humantime::format_rfc3339_seconds(gateway.loaded_at.max(UNIX_EPOCH)).to_string(),
        "models": models(gateway, may_see),
        "profiles": profiles(gateway, may_see),
        "features": features(state, gateway),
    })
}

/// Every public model name: a model group with its deployments, an alias
/// with the group it names, or a composite profile.
fn models(gateway: &Gateway, may_see: &dyn Fn(&str) -> bool) -> Vec<Value> {
    let groups = gateway.router.groups();
    gateway
        .model_names
        .iter()
        .filter(|name| may_see(name))
        .map(|name| {
            if let Some(profile) = gateway.strategies.profile_for(name) {
                return json!({"name": name, "kind": "composite", "profile": profile.plan.name, "strategy": profile.plan.strategy});
            }
            let (kind, group_name) = match gateway.router.aliases().get(name) {
                Some(target) => ("alias", target.as_str()),
                None => ("group", name.as_str()),
            };
            let deployments: Vec<Value> = groups
                .iter()
                .filter(|g| *g.name == *group_name)
                .flat_map(|g| g.deployments.iter())
                .map(|d| {
                    json!({
                        "id": d.id,
                        "provider": d.target.provider(),
                        "model": d.target.upstream_model(),
                        "api_base": d.target.api_base().map(crate::public_url::public_url),
                    })
                })
                .collect();
            let mut entry = json!({"name": name, "kind": kind, "deployments": deployments});
            if kind == "alias" {
                entry["target"] = json!(group_name);
            }
            entry
        })
        .collect()
}

/// The composite profiles, by name, with their strategy and public names.
fn profiles(gateway: &Gateway, may_see: &dyn Fn(&str) -> bool) -> Vec<Value> {
    let mut names: Vec<&String> = gateway.strategies.profiles().keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| gateway.strategies.profiles().get(name))
        .filter_map(|p| {
            let public: Vec<&String> = gateway
                .strategies
                .public_names()
                .filter(|n| {
                    gateway
                        .strategies
                        .profile_for(n)
                        .is_some_and(|q| q.plan.name == p.plan.name)
                })
                .collect();
            // Shown when the caller may call it by one of its names.
            let visible = if public.is_empty() {
                may_see(&p.plan.name)
            } else {
                public.iter().any(|n| may_see(n))
            };
            visible.then(|| {
                json!({
                    "name": p.plan.name,
                    "strategy": p.plan.strategy,
                    "models": public,
                })
            })
        })
        .collect()
}

/// The switches a client or an operator may want to know about.
fn features(state: &AppState, gateway: &Gateway) -> Value {
    json!({
        "auth": if gateway.master_key.is_some() { "master_key" } else { "open" },
        "responses_api": gateway.responses_endpoint,
        "messages_api": true,
        "composite_profiles": !gateway.strategies.profiles().is_empty(),
        "hot_reload": gateway.hot_reload,
        "public_docs": gateway.public_docs,
        "public_metrics": state.ops.observe.public_metrics,
    })
}

/// The report as a page of plain text.
fn text(report: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let _ = writeln!(
        out,
        "conclave {}\nstarted {} (up {} s), config loaded {}\n",
        s(&report["version"]),
        s(&report["started_at"]),
        report["uptime_seconds"],
        s(&report["config_loaded_at"])
    );
    let _ = writeln!(out, "Models:");
    for m in report["models"].as_array().into_iter().flatten() {
        match m["kind"].as_str() {
            Some("composite") => {
                let _ = writeln!(
                    out,
                    "  {}  composite profile {} (strategy {})",
                    s(&m["name"]),
                    s(&m["profile"]),
                    s(&m["strategy"])
                );
            }
            kind => {
                let alias = if kind == Some("alias") {
                    format!("  alias of {}", s(&m["target"]))
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  {}{alias}", s(&m["name"]));
                for d in m["deployments"].as_array().into_iter().flatten() {
                    let base = d["api_base"]
                        .as_str()
                        .map_or_else(String::new, |b| format!(" at {b}"));
                    let _ = writeln!(
                        out,
                        "    - {}: {}/{}{base}",
                        s(&d["id"]),
                        s(&d["provider"]),
                        s(&d["model"])
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "\nProfiles:");
    for p in report["profiles"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}  strategy {}", s(&p["name"]), s(&p["strategy"]));
    }
    let _ = writeln!(out, "\nFeatures:");
    for (k, v) in report["features"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "  {k}: {}", s(v));
    }
    out
}
