//! `simple-shuffle`: weighted random choice, by `weight`, else by rpm or tpm
//! when every candidate sets one, else uniform.

use std::sync::Arc;

use super::{Balancer, random_among};
use crate::router::deployment::Deployment;

pub struct SimpleShuffle;

impl Balancer for SimpleShuffle {
    fn pick(&self, candidates: &[&Arc<Deployment>], _minute: u64) -> usize {
        let weights: Vec<f64> = if candidates.iter().any(|d| d.weight.is_some()) {
            candidates.iter().map(|d| d.weight.unwrap_or(1.0)).collect()
        } else if candidates.iter().all(|d| d.rpm.is_some()) {
            candidates
                .iter()
                .map(|d| d.rpm.unwrap_or(0) as f64)
                .collect()
        } else if candidates.iter().all(|d| d.tpm.is_some()) {
            candidates
                .iter()
                .map(|d| d.tpm.unwrap_or(0) as f64)
                .collect()
        } else {
            return random_among(candidates.len(), |_| true);
        };
        weighted(&weights, fastrand::f64())
    }
}

/// The index whose cumulative weight first exceeds `r * total`.
fn weighted(weights: &[f64], r: f64) -> usize {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return random_among(weights.len(), |_| true);
    }
    let mut target = r * total;
    for (i, w) in weights.iter().enumerate() {
        if *w <= 0.0 {
            continue;
        }
        if target < *w {
            return i;
        }
        target -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::weighted;

    #[test]
    fn weights_divide_the_unit_interval() {
        let w = [1.0, 3.0];
        assert_eq!(weighted(&w, 0.0), 0);
        assert_eq!(weighted(&w, 0.24), 0);
        assert_eq!(weighted(&w, 0.26), 1);
        assert_eq!(weighted(&w, 0.999), 1);
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let w = [0.0, 2.0, 0.0];
        for r in [0.0, 0.5, 0.99] {
            assert_eq!(weighted(&w, r), 1);
        }
    }
}
