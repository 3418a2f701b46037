//! `least-busy`: the deployment with the fewest requests in flight; ties are
//! broken at random so idle deployments share the load.

use std::sync::Arc;

use super::{Balancer, random_among};
use crate::router::deployment::Deployment;

pub struct LeastBusy;

impl Balancer for LeastBusy {
    fn pick(&self, candidates: &[&Arc<Deployment>], _minute: u64) -> usize {
        let busy: Vec<u32> = candidates.iter().map(|d| d.in_flight()).collect();
        let least = busy.iter().copied().min().unwrap_or(0);
        random_among(busy.len(), |i| busy[i] == least)
    }
}
