//! `cost-based-routing`: the deployment whose tokens cost least (its
//! input and output price per token together); ties, and deployments whose
//! price is not known, are broken at random among the cheapest. Prices are
//! learned once per config version, after the router is built
//! ([`Balancer::learn_prices`]); until then every deployment ties.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::{Balancer, random_among};
use crate::router::deployment::Deployment;

#[derive(Default)]
pub struct LowestCost {
    /// Price per prompt token plus price per completion token, by deployment id.
    per_token: OnceLock<HashMap<Arc<str>, f64>>,
}

impl LowestCost {
    /// What `deployment` costs; an unknown price sorts after every known one.
    fn cost(&self, deployment: &Deployment) -> f64 {
        self.per_token
            .get()
            .and_then(|prices| prices.get(&deployment.id))
            .copied()
            .unwrap_or(f64::INFINITY)
    }
}

impl Balancer for LowestCost {
    fn pick(&self, candidates: &[&Arc<Deployment>], _minute: u64) -> usize {
        let costs: Vec<f64> = candidates.iter().map(|d| self.cost(d)).collect();
        let least = costs.iter().copied().fold(f64::INFINITY, f64::min);
        random_among(costs.len(), |i| costs[i] == least || least.is_infinite())
    }

    fn learn_prices(&self, per_token: HashMap<Arc<str>, f64>) {
        let _ = self.per_token.set(per_token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_named(id: &str) -> Arc<Deployment> {
        Deployment::for_test(id, &[])
    }

    #[test]
    fn the_cheapest_known_deployment_is_picked() {
        let (cheap, dear, unknown) = (
            deployment_named("cheap"),
            deployment_named("dear"),
            deployment_named("unknown"),
        );
        let balancer = LowestCost::default();
        let candidates = [&dear, &unknown, &cheap];
        balancer.learn_prices(HashMap::from([
            (Arc::from("cheap"), 1e-6),
            (Arc::from("dear"), 3e-5),
        ]));
        for _ in 0..20 {
            assert_eq!(balancer.pick(&candidates, 0), 2);
        }
    }
}
