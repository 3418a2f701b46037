//! What a model call costs. Each deployment's per-token prices come from its
//! own `model_info.input_cost_per_token` / `output_cost_per_token` (also
//! accepted in `litellm_params`), else from the built-in table of public
//! prices ([`crate::catalog`]), else zero with one warning naming the model. A
//! [`PriceBook`] is built once per config version, so pricing a call on the
//! response path is one hash lookup and two multiplications.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalog;
use crate::config::{LoadedConfig, ModelEntry};
use crate::router::Router;

/// USD per prompt token and per completion token.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// The cost of a call with these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        prompt_tokens as f64 * self.input + completion_tokens as f64 * self.output
    }
}

/// Where a deployment's price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The deployment's own `input_cost_per_token` / `output_cost_per_token`.
    Configured,
    /// The built-in table.
    Table,
    /// A local or mock provider: calls cost nothing.
    Free,
    /// Nothing known: priced at zero, with one warning.
    Unknown,
}

struct Priced {
    price: Price,
    source: PriceSource,
    /// The model the warning names.
    model: String,
    warned: AtomicBool,
}

/// The prices of one config version's deployments, by deployment id.
#[derive(Default)]
pub struct PriceBook {
    /// Looked up on every priced answer: foldhash, as the gateway's other
    /// maps keyed by names of its own config.
    by_deployment: foldhash::HashMap<String, Priced>,
}

/// Providers that run on the caller's own machines: no per-token price.
const FREE_PROVIDERS: &[&str] = &[
    "mock",
    "ollama",
    "ollama_chat",
    "lm_studio",
    "vllm",
    "hosted_vllm",
];

impl PriceBook {
    /// Prices every deployment of `router`, reading configured prices from
    /// the model_list entry each deployment was built from.
    pub fn build(loaded: &LoadedConfig, router: &Router) -> Self {
        let mut by_deployment = foldhash::HashMap::default();
        for group in router.groups() {
            let entries: Vec<&ModelEntry> = loaded
                .config
                .model_list
                .iter()
                .filter(|e| *e.model_name == *group.name && !e.is_composite())
                .collect();
            for (index, d) in group.deployments.iter().enumerate() {
                let entry = entry_of(&entries, &d.id, &group.name, index);
                let provider = d.target.provider();
                let model = d.target.upstream_model();
                let (price, source) = match entry.and_then(configured) {
                    Some(p) => (p, PriceSource::Configured),
                    None => match entry
                        .and_then(|e| base_model_price(e, provider))
                        .or_else(|| listed(provider, model))
                    {
                        Some(p) => (p, PriceSource::Table),
                        None if FREE_PROVIDERS.contains(&provider) => {
                            (Price::default(), PriceSource::Free)
                        }
                        None => (Price::default(), PriceSource::Unknown),
                    },
                };
                by_deployment.insert(
                    d.id.to_string(),
                    Priced {
                        price,
                        source,
                        model: format!("{provider}/{model}"),
                        warned: AtomicBool::new(false),
                    },
                );
            }
        }
        Self { by_deployment }
    }

    /// The price of a call answered by `deployment` for the client's
    /// `model`. A wildcard deployment sends the client's model name, so the
    /// table is asked for that name when the deployment has no price.
    pub fn price(&self, deployment: Option<&str>, model: &str) -> Price {
        let priced = deployment.and_then(|d| self.by_deployment.get(d));
        match priced {
            Some(p) if p.source != PriceSource::Unknown => p.price,
            Some(p) => match listed_name(model) {
                Some(price) => price,
                None => {
                    if !p.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            model = %p.model,
                            deployment,
                            "no price known for this model: its calls are counted at cost 0 \
                             (set model_info.input_cost_per_token / output_cost_per_token)"
                        );
                    }
                    Price::default()
                }
            },
            None => listed_name(model).unwrap_or_default(),
        }
    }

    /// The price of a call to `deployment` (or, without one, of `model` as
    /// the table lists it), or `None` when nothing is known: for quoting a
    /// cost rather than charging one, so no zero stands in for a price.
    pub fn quote(&self, deployment: Option<&str>, model: &str) -> Option<Price> {
        deployment
            .and_then(|d| self.known(d))
            .or_else(|| listed_name(model))
    }

    /// The price of `deployment` when one is known (configured, from the
    /// table, or free), without the warning an unknown one gives.
    pub fn known(&self, deployment: &str) -> Option<Price> {
        self.by_deployment
            .get(deployment)
            .filter(|p| p.source != PriceSource::Unknown)
            .map(|p| p.price)
    }

    /// Where the price of `deployment` comes from, if it is known here.
    pub fn source(&self, deployment: &str) -> Option<PriceSource> {
        self.by_deployment.get(deployment).map(|p| p.source)
    }
}

/// The catalog's list price of `model` at `provider`.
fn listed(provider: &str, model: &str) -> Option<Price> {
    catalog::find(provider, model).map(Price::from)
}

/// The catalog's list price of a `provider/model` name.
fn listed_name(name: &str) -> Option<Price> {
    catalog::find_name(name).map(Price::from)
}

impl From<catalog::Listing> for Price {
    fn from(listing: catalog::Listing) -> Self {
        Self {
            input: listing.input_cost_per_token,
            output: listing.output_cost_per_token,
        }
    }
}

/// The model_list entry deployment `id` (the `index`th of its group) was
/// built from: the one naming it in `model_info.id`, else the entry at its
/// position in the group.
fn entry_of<'a>(
    entries: &[&'a ModelEntry],
    id: &str,
    group: &str,
    index: usize,
) -> Option<&'a ModelEntry> {
    let named = entries.iter().find(|e| {
        e.model_info
            .as_ref()
            .and_then(|i| i.get("id"))
            .is_some_and(|v| {
                v.as_str() == Some(id) || v.as_u64().map(|n| n.to_string()).as_deref() == Some(id)
            })
    });
    named
        .or_else(|| {
            (id == format!("{group}.{index}"))
                .then(|| entries.get(index))
                .flatten()
        })
        .copied()
}

/// A price configured on the entry: model_info first, then litellm_params.
fn configured(entry: &ModelEntry) -> Option<Price> {
    let read = |get: &dyn Fn(&str) -> Option<f64>| -> Option<Price> {
        let input = get("input_cost_per_token");
        let output = get("output_cost_per_token");
        (input.is_some() || output.is_some()).then(|| Price {
            input: input.unwrap_or(0.0),
            output: output.unwrap_or(0.0),
        })
    };
    let info = entry.model_info.as_ref();
    read(&|k| info.and_then(|i| i.get(k)).and_then(number))
        .or_else(|| read(&|k| entry.litellm_params.extra.get(k).and_then(number)))
}

/// The table's price for the entry's `model_info.base_model`: LiteLLM's
/// way to price a deployment whose own name the table does not know (an
/// Azure deployment's name, a fine-tune). Written `provider/model`, or as a
/// model of the deployment's own provider.
fn base_model_price(entry: &ModelEntry, provider: &str) -> Option<Price> {
    let base = entry.model_info.as_ref()?.get("base_model")?.as_str()?;
    listed_name(base).or_else(|| listed(provider, base))
}

/// A YAML number, or a string holding one (`"1.5e-6"`).
fn number(v: &serde_yaml::Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(yaml: &str) -> PriceBook {
        let loaded = crate::config::load_str(
            yaml,
            std::path::Path::new("prices.yaml"),
            crate::config::Env::default(),
        )
        .unwrap();
        let built = Router::from_config(
            &loaded,
            &[],
            reqwest::Client::new(),
            std::sync::Arc::new(crate::router::SystemClock),
            None,
        )
        .unwrap();
        PriceBook::build(&loaded, &built.router)
    }

    #[test]
    fn configured_prices_win_then_the_table_then_zero() {
        let b = book(
            r#"
model_list:
  - model_name: priced
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9", api_key: x}
    model_info: {input_cost_per_token: 0.001, output_cost_per_token: "0.002"}
  - model_name: listed
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9", api_key: x}
  - model_name: params
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9", api_key: x, input_cost_per_token: 0.5}
  - model_name: unknown
    litellm_params: {model: openai/nothing-known, api_base: "http://127.0.0.1:9", api_key: x}
  - model_name: based
    litellm_params: {model: azure/my-deployment, api_base: "http://127.0.0.1:9", api_key: x, api_version: "2024-06-01"}
    model_info: {base_model: azure/gpt-4o-mini}
  - model_name: based-bare
    litellm_params: {model: openai/my-fine-tune, api_base: "http://127.0.0.1:9", api_key: x}
    model_info: {base_model: gpt-4o-mini}
"#,
        );
        let mini = listed("openai", "gpt-4o-mini").unwrap();
        assert_eq!(b.price(Some("based.0"), "based"), mini);
        assert_eq!(b.price(Some("based-bare.0"), "based-bare"), mini);
        assert_eq!(b.source("based.0"), Some(PriceSource::Table));
        assert_eq!(
            b.price(Some("priced.0"), "priced").cost(10, 5),
            0.001 * 10.0 + 0.002 * 5.0
        );
        assert_eq!(b.source("listed.0"), Some(PriceSource::Table));
        assert_eq!(b.price(Some("params.0"), "params").cost(2, 100), 1.0);
        assert_eq!(b.price(Some("unknown.0"), "unknown").cost(1000, 1000), 0.0);
        assert_eq!(b.source("unknown.0"), Some(PriceSource::Unknown));
    }
}
