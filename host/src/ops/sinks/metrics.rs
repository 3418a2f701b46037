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
                self.by_deployment.insert(d.id.to_string(), name.clone());
                self.by_group.entry(group.name.to_string()).or_insert(name);
            }
            self.names
                .insert(group.name.to_string(), group.name.to_string());
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

    /// The (resolved) model group and the provider of `o`: the provider of
    /// the deployment that answered, else of the group asked.
    fn resolve<'a>(&'a self, o: &'a Outcome) -> (Option<&'a str>, &'a str) {
        let group = o
            .model_group
            .as_deref()
            .or_else(|| self.names.get(&o.model).map(String::as_str));
        let provider = o
            .deployment
            .as_ref()
            .and_then(|d| self.by_deployment.get(&**d))
            .or_else(|| group.and_then(|g| self.by_group.get(g)))
            .map_or(UNKNOWN, String::as_str);
        (group, provider)
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
        let providers = self.providers.lock().ok().map(|mut p| {
            p.follow(&self.current.load());
            p
        });
        let (model_group, provider) = match &providers {
            Some(p) => p.resolve(outcome),
            None => (outcome.model_group.as_deref(), UNKNOWN),
        };
        self.metrics.record(&Resolved {
            outcome,
            model_group,
            provider,
            response_model: response_model.as_deref(),
        });
    }
}
