//! `GET /metrics`: the Prometheus exposition (OpenMetrics text). The master
//! key is required when one is configured, unless
//! `general_settings.public_metrics` is true (or `public_routes` lists it). Counters come from the metrics
//! sink; deployment state, in-flight requests and reloads are read now.

use std::collections::HashSet;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::AppState;
use super::auth::check_key;
use super::error::ApiError;
use super::route_rules::PublicRoute;
use crate::observe::metrics::{DeploymentState, KeyStoreCounts, Live};

/// The OpenMetrics text content type Prometheus asks for.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "probes",
    summary = "Prometheus metrics (OpenMetrics text)",
    description = "Needs the master key when one is configured, unless `general_settings.public_metrics` is true.",
    responses(
        (status = 200, description = "The OpenMetrics exposition", content_type = "application/openmetrics-text"),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []), ())
)]
/// Serves the metrics.
pub async fn metrics(
    State(state): State<AppState>,
    public: Option<Extension<PublicRoute>>,
    headers: HeaderMap,
) -> Response {
    let gateway = state.gateway();
    if !state.ops.observe.public_metrics
        && public.is_none()
        && let Some(key) = &gateway.master_key
        && let Err(e) = check_key(&headers, key)
        && let Some(refused) = super::admin::unless_admin_key(&state, &headers, e).await
    {
        return refused.into_response();
    }
    let reloads = &state.control.status_json()["reloads"];
    let cooling: HashSet<String> = gateway
        .router
        .cooling()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let deployments = gateway
        .router
        .groups()
        .iter()
        .flat_map(|g| {
            g.deployments.iter().map(|d| {
                let (failing, checks_passed, checks_failed, calls_failed) =
                    d.with_checks(|c| (c.failing(), c.passed, c.failed, c.calls_failed));
                DeploymentState {
                    model_group: g.name.to_string(),
                    deployment: d.id.to_string(),
                    provider: d.target.provider().to_owned(),
                    cooling: cooling.contains(&*d.id),
                    failing,
                    checks_passed,
                    checks_failed,
                    calls_failed,
                }
            })
        })
        .collect();
    let live = Live {
        in_flight: u64::from(state.in_flight.in_use()),
        reloads_ok: reloads["ok"].as_u64().unwrap_or(0),
        reloads_failed: reloads["failed"].as_u64().unwrap_or(0),
        outcomes_dropped: state.ops.outcomes.dropped(),
        key_store: state.ops.keys.as_ref().map(|k| KeyStoreCounts {
            statements: k.store().statements_run(),
            spend_rows_dropped: k.dropped_spend_rows(),
        }),
        shared_state_failures: state.ops.limiter.shared_failures(),
        deployments,
    };
    match state.ops.observe.metrics.render(&live) {
        Ok(text) => {
            let mut r = text.into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "cannot encode the metrics",
            None,
            None,
        )
        .into_response(),
    }
}
