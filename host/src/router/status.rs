//! The status a failed route reports, as a number: shared by the HTTP
//! layer's error mapping and by the outcomes of composite sub-calls, which
//! have no HTTP response of their own.

use super::RouteError;
use crate::providers::UpstreamError;

impl RouteError {
    /// The HTTP status a client would see for this failure.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::ModelNotFound { .. } => 404,
            RouteError::InvalidRequest { .. }
            | RouteError::ContextWindowExceeded { .. }
            | RouteError::NoDeploymentForTags { .. } => 400,
            RouteError::GroupCooling { .. } | RouteError::Unavailable(_) => 503,
            RouteError::GroupRateLimited { .. }
            | RouteError::GroupOverBudget { .. }
            | RouteError::DeploymentBusy { .. } => 429,
            RouteError::Upstream { error, .. } => upstream_status(error),
        }
    }

    /// A short name for the kind of failure, for outcomes and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::ModelNotFound { .. } => "model_not_found",
            RouteError::InvalidRequest { .. } => "invalid_request",
            RouteError::ContextWindowExceeded { .. } => "context_length_exceeded",
            RouteError::NoDeploymentForTags { .. } => "no_deployment_for_tags",
            RouteError::GroupCooling { .. } => "model_group_cooling_down",
            RouteError::GroupRateLimited { .. } => "model_group_rate_limited",
            RouteError::GroupOverBudget { .. } => "model_group_over_budget",
            RouteError::DeploymentBusy { .. } => "deployment_parallel_limit",
            RouteError::Unavailable(_) => "unavailable",
            RouteError::Upstream { error, .. }
                if matches!(
                    **error,
                    UpstreamError::Timeout(_) | UpstreamError::StreamTooLong(_)
                ) =>
            {
                "upstream_timeout"
            }
            RouteError::Upstream { .. } => "upstream_error",
        }
    }
}

/// The status a client sees for an upstream failure: an upstream 4xx keeps
/// its status, a timeout is 504, anything else broken is 502.
pub fn upstream_status(error: &UpstreamError) -> u16 {
    match error {
        UpstreamError::Timeout(_) | UpstreamError::StreamTooLong(_) => 504,
        UpstreamError::Status { status, .. } if (400..500).contains(status) => *status,
        _ => 502,
    }
}
