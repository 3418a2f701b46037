//! The live state of every deployment, as a person watching the gateway
//! wants it: healthy, cooling down until when, or at its per-minute limit,
//! with its latency, load and last failure. Read on demand (the dashboard's
//! models page), never on a request's path.

use std::time::{Duration, SystemTime};

use super::Router;
use super::checks::{CheckResult, Failure};

/// Whether a deployment takes requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Healthy,
    /// Skipped after failures until the cooldown ends.
    Cooling {
        until: SystemTime,
    },
    /// Its `rpm`/`tpm` for this minute is used up.
    RateLimited,
}

impl Availability {
    /// The state's name as the dashboard shows it.
    pub fn label(self) -> &'static str {
        match self {
            Availability::Healthy => "healthy",
            Availability::Cooling { .. } => "cooling",
            Availability::RateLimited => "rate_limited",
        }
    }
}

/// One deployment's state.
#[derive(Debug, Clone)]
pub struct DeploymentState {
    pub group: String,
    pub id: String,
    pub provider: String,
    pub upstream_model: String,
    pub availability: Availability,
    /// The moving average of answered calls' latency.
    pub latency: Option<Duration>,
    pub in_flight: u32,
    pub last_error: Option<Failure>,
    pub last_check: Option<CheckResult>,
}

impl Router {
    /// Every deployment of every group, in group name order.
    pub fn deployment_states(&self) -> Vec<DeploymentState> {
        let now = self.clock.now();
        let wall = SystemTime::now();
        let minute = self.minute();
        self.groups()
            .into_iter()
            .flat_map(|g| g.deployments.iter().map(move |d| (g, d)))
            .map(|(g, d)| {
                let availability = match d.cooling_until(now) {
                    Some(until) => Availability::Cooling {
                        until: wall + until.duration_since(now),
                    },
                    None if !self.balancer.admits(d, minute) => Availability::RateLimited,
                    None => Availability::Healthy,
                };
                let (last_error, last_check) =
                    d.with_checks(|c| (c.last_error.clone(), c.last_check.clone()));
                DeploymentState {
                    group: g.name.to_string(),
                    id: d.id.to_string(),
                    provider: d.target.provider().to_owned(),
                    upstream_model: d.target.upstream_model().to_owned(),
                    availability,
                    latency: d.latency(),
                    in_flight: d.in_flight(),
                    last_error,
                    last_check,
                }
            })
            .collect()
    }
}
