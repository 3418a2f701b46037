//! `usage-based-routing`: keeps every deployment under its rpm and tpm for the
//! current minute and prefers the one with the most room left.

use std::sync::Arc;

use super::Balancer;
use crate::router::deployment::Deployment;

pub struct UsageBased;

/// The fraction of the tighter limit already used this minute.
fn load(d: &Deployment, minute: u64) -> f64 {
    let (requests, tokens) = d.with_health(|h| h.usage(minute));
    let by_rpm = d.rpm.map_or(0.0, |rpm| requests as f64 / rpm.max(1) as f64);
    let by_tpm = d.tpm.map_or(0.0, |tpm| tokens as f64 / tpm.max(1) as f64);
    by_rpm.max(by_tpm)
}

/// Whether `d` is under its rpm and tpm (where it sets them) this minute.
pub(super) fn within_limits(d: &Deployment, minute: u64) -> bool {
    if d.rpm.is_none() && d.tpm.is_none() {
        return true;
    }
    let (requests, tokens) = d.with_health(|h| h.usage(minute));
    d.rpm.is_none_or(|rpm| requests < rpm) && d.tpm.is_none_or(|tpm| tokens < tpm)
}

impl Balancer for UsageBased {
    fn admits(&self, d: &Deployment, minute: u64) -> bool {
        within_limits(d, minute)
    }

    fn pick(&self, candidates: &[&Arc<Deployment>], minute: u64) -> usize {
        let mut best = 0;
        let mut best_load = f64::INFINITY;
        for (i, d) in candidates.iter().enumerate() {
            let l = load(d, minute);
            if l < best_load {
                best = i;
                best_load = l;
            }
        }
        best
    }
}
