//! `router_settings.enable_pre_call_checks`: whatever the routing strategy,
//! a deployment that has used up its `rpm` or `tpm` for the minute is no
//! candidate, as usage-based routing always has it; the strategy picks
//! among the rest.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Balancer, usage};
use crate::router::deployment::Deployment;

/// Another strategy, with deployments at their rpm/tpm left out.
pub struct PreCallChecked(pub Box<dyn Balancer>);

impl Balancer for PreCallChecked {
    fn admits(&self, d: &Deployment, minute: u64) -> bool {
        usage::within_limits(d, minute) && self.0.admits(d, minute)
    }

    fn pick(&self, candidates: &[&Arc<Deployment>], minute: u64) -> usize {
        self.0.pick(candidates, minute)
    }

    fn learn_prices(&self, per_token: HashMap<Arc<str>, f64>) {
        self.0.learn_prices(per_token)
    }
}
