//! The metrics sink: turns outcomes into the Prometheus counters and
//! histograms of [`crate::observe::metrics`], on the dispatcher thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::OutcomeSink;
use crate::gateway::Gateway;
use crate::observe::metrics::{Metrics, Resolved, UNKNOWN, response_model_allowed};
use crate::ops::Outcome;

/// Feeds [`Metrics`]; knows the gateway to name each deployment's provider.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
    current: Arc<ArcSwap<Gateway>>,
    providers: Mutex<Providers>,
}

/// Deployment and group names to provider names, for one gateway version.
#[derive(Default)]
struct Providers {
    version: usize,
    by_deployment: HashMap<String, String>,
    by_group: HashMap<String, String>,
    /// Model names that resolve to a group: group names and aliases.
    names: HashMap<String, String>,
}

impl MetricsSink {
    /// A sink recording into `metrics`, reading providers from `current`.
    pub fn new(metrics: Arc<Metrics>, current: Arc<ArcSwap<Gateway>>) -> Self {
        Self {
            metrics,
            current,
            providers: Mutex::default(),
        }
    }

    /// The provider and the (resolved) model group of `o`.
    fn resolve(&self, o: &Outcome) -> (String, Option<String>) {
        let Ok(mut p) = self.providers.lock() else {
            return (UNKNOWN.to_owned(), o.model_group.clone());
        };
        let gateway = self.current.load();
        let version = Arc::as_ptr(&*gateway) as usize;
        if p.version != version {
            *p = Providers {
                version,
                ..Providers::default()
            };
            for group in gateway.router.groups() {
                for d in &group.deployments {
                    let name = d.target.provider().to_owned();
                    p.by_deployment.insert(d.id.clone(), name.clone());
                    p.by_group.entry(group.name.clone()).or_insert(name);
                }
                p.names.insert(group.name.clone(), group.name.clone());
            }
            for (alias, group) in gateway.router.aliases() {
                p.names.insert(alias.clone(), group.clone());
            }
            for name in &gateway.model_names {
                p.names.entry(name.clone()).or_insert_with(|| name.clone());
            }
        }
        let group = o
            .model_group
            .clone()
            .or_else(|| p.names.get(&o.model).cloned());
        let provider = o
            .deployment
            .as_ref()
            .and_then(|d| p.by_deployment.get(d))
            .or_else(|| group.as_ref().and_then(|g| p.by_group.get(g)))
            .cloned()
            .unwrap_or_else(|| UNKNOWN.to_owned());
        (provider, group)
    }
}

/// The `model` an answer (or its last chunk) reported: as the response path
/// read it, else from the kept answer.
fn reported_model(o: &Outcome) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reported {
        model: Option<String>,
    }
    if let Some(model) = o.response_model.as_ref().filter(|m| !m.is_empty()) {
        return Some(model.clone());
    }
    o.body.iter().rev().find_map(|b| {
        serde_json::from_slice::<Reported>(b)
            .ok()
            .and_then(|r| r.model)
            .filter(|m| !m.is_empty())
    })
}

impl OutcomeSink for MetricsSink {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn record(&self, outcome: &Outcome) {
        let response_model = if response_model_allowed(outcome) {
            reported_model(outcome)
        } else {
            None
        };
        let (provider, model_group) = self.resolve(outcome);
        self.metrics.record(&Resolved {
            outcome,
            model_group,
            provider,
            response_model,
        });
    }
}
