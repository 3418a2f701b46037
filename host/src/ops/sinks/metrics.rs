//! The metrics sink: turns outcomes into the Prometheus counters and
//! histograms of [`crate::observe::metrics`], on the dispatcher thread.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foldhash::HashMap;

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

    /// Records `o` with its provider and (resolved) model group, read from
    /// the current gateway's deployments.
    fn record_resolved(&self, o: &Outcome, response_model: Option<&str>) {
        let Ok(mut p) = self.providers.lock() else {
            self.metrics.record(&Resolved {
                outcome: o,
                model_group: o.model_group.as_deref(),
                provider: UNKNOWN,
                response_model,
            });
            return;
        };
        p.follow(&self.current.load());
        let group = o
            .model_group
            .as_deref()
            .or_else(|| p.names.get(&o.model).map(String::as_str));
        let provider = o
            .deployment
            .as_ref()
            .and_then(|d| p.by_deployment.get(d))
            .or_else(|| group.and_then(|g| p.by_group.get(g)))
            .map_or(UNKNOWN, String::as_str);
        self.metrics.record(&Resolved {
            outcome: o,
            model_group: group,
            provider,
            response_model,
        });
    }
}

impl Providers {
    /// Rebuilt from `gateway` when it is not the version these came from.
    fn follow(&mut self, gateway: &Arc<Gateway>) {
        let version = Arc::as_ptr(gateway) as usize;
        if self.version == version {
            return;
        }
        *self = Providers {
            version,
            ..Providers::default()
        };
        for group in gateway.router.groups() {
            for d in &group.deployments {
                let name = d.target.provider().to_owned();
                self.by_deployment.insert(d.id.clone(), name.clone());
                self.by_group.entry(group.name.clone()).or_insert(name);
            }
            self.names.insert(group.name.clone(), group.name.clone());
        }
        for (alias, group) in gateway.router.aliases() {
            self.names.insert(alias.clone(), group.clone());
        }
        for name in &gateway.model_names {
            self.names
                .entry(name.clone())
                .or_insert_with(|| name.clone());
        }
    }
}

/// The `model` an answer (or its last chunk) reported: as the response path
/// read it, else from the kept answer.
fn reported_model(o: &Outcome) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Reported {
        model: Option<String>,
    }
    if let Some(model) = o.response_model.as_deref().filter(|m| !m.is_empty()) {
        return Some(Cow::Borrowed(model));
    }
    o.body.iter().rev().find_map(|b| {
        serde_json::from_slice::<Reported>(b)
            .ok()
            .and_then(|r| r.model)
            .filter(|m| !m.is_empty())
            .map(Cow::Owned)
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
        self.record_resolved(outcome, response_model.as_deref());
    }
}
