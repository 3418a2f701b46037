//! Balancing within a model group (`router_settings.routing_strategy`). Each
//! strategy is a small module behind [`Balancer`]; selection is one pass over
//! the group's deployments and takes no lock beyond a deployment's own.

mod cost;
mod latency;
mod least_busy;
mod pre_call;
mod shuffle;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use super::deployment::Deployment;
use crate::config::RoutingStrategyArgs;

/// Chooses a deployment among healthy candidates.
pub trait Balancer: Send + Sync {
    /// Whether `deployment` may take one more request this minute.
    fn admits(&self, _deployment: &Deployment, _minute: u64) -> bool {
        true
    }

    /// Index into `candidates` (never empty) of the deployment to use.
    fn pick(&self, candidates: &[&Arc<Deployment>], minute: u64) -> usize;

    /// Takes what each deployment's tokens cost (input and output price per
    /// token together, by id; unknown prices left out), once the config
    /// version's prices are known. Only a strategy that routes by price
    /// keeps them.
    fn learn_prices(&self, _per_token: HashMap<Arc<str>, f64>) {}
}

/// The strategy names LiteLLM configs use.
pub const STRATEGY_NAMES: &[&str] = &[
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
];

pub use pre_call::PreCallChecked;

/// Builds the balancer a config names.
pub fn from_name(
    name: Option<&str>,
    args: &RoutingStrategyArgs,
) -> Result<Box<dyn Balancer>, String> {
    match name.unwrap_or("simple-shuffle") {
        "simple-shuffle" => Ok(Box::new(shuffle::SimpleShuffle)),
        "least-busy" => Ok(Box::new(least_busy::LeastBusy)),
        "latency-based-routing" => Ok(Box::new(latency::LowestLatency {
            buffer: args.lowest_latency_buffer.unwrap_or(0.0),
        })),
        "usage-based-routing" | "usage-based-routing-v2" => Ok(Box::new(usage::UsageBased)),
        "cost-based-routing" => Ok(Box::new(cost::LowestCost::default())),
        other => Err(format!(
            "unknown routing strategy {other:?}; expected one of {}",
            STRATEGY_NAMES.join(", ")
        )),
    }
}

/// A uniformly random index among those `pred` accepts (at least one must).
fn random_among(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let matching = (0..len).filter(|&i| pred(i)).count();
    if matching == 0 {
        return 0;
    }
    let nth = fastrand::usize(..matching);
    (0..len).filter(|&i| pred(i)).nth(nth).unwrap_or(0)
}
