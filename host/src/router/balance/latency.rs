//! `latency-based-routing`: the deployment with the lowest recent latency
//! (an exponential moving average; time to first chunk for streams). A
//! deployment with no sample yet is tried first so that it gets one.
//! `lowest_latency_buffer` spreads load over every deployment within that
//! fraction of the fastest.

use std::sync::Arc;

use super::{Balancer, random_among};
use crate::router::deployment::Deployment;

pub struct LowestLatency {
    pub buffer: f64,
}

impl Balancer for LowestLatency {
    fn pick(&self, candidates: &[&Arc<Deployment>], _minute: u64) -> usize {
        let latencies: Vec<Option<f64>> = candidates
            .iter()
            .map(|d| d.latency().map(|l| l.as_secs_f64()))
            .collect();
        if latencies.iter().any(Option::is_none) {
            return random_among(latencies.len(), |i| latencies[i].is_none());
        }
        let fastest = latencies
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let limit = fastest * (1.0 + self.buffer.max(0.0));
        random_among(latencies.len(), |i| {
            latencies[i].is_some_and(|l| l <= limit)
        })
    }
}
