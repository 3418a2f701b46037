//! The built-in model catalog: public per-token list prices and context
//! windows of the models the provider table serves, embedded from
//! `host/data/model_prices.json` (which names its source and date). Pricing
//! reads its prices, the router its context windows.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The embedded data file.
const DATA: &str = include_str!("../data/model_prices.json");

#[derive(Deserialize)]
struct File {
    models: HashMap<String, Listing>,
}

/// What the catalog says about one model.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Listing {
    /// List price of a prompt token, in USD.
    pub input_cost_per_token: f64,
    /// List price of a generated token, in USD.
    pub output_cost_per_token: f64,
    /// The longest prompt the model takes, when listed.
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
}

/// `provider/model` -> entry. A data file that does not parse (only a
/// broken build could ship one; a unit test reads it) leaves the table empty.
static TABLE: LazyLock<HashMap<String, Listing>> = LazyLock::new(|| {
    serde_json::from_str::<File>(DATA)
        .map(|f| f.models)
        .unwrap_or_default()
});

/// The catalog's listing of `model` at `provider`. Azure serves OpenAI's
/// models under OpenAI's names; OpenRouter names them `vendor/model`.
pub fn find(provider: &str, model: &str) -> Option<Listing> {
    let table = &*TABLE;
    let exact = |p: &str, m: &str| table.get(&format!("{p}/{m}")).copied();
    exact(provider, model)
        .or_else(|| {
            (provider == "azure")
                .then(|| exact("openai", model))
                .flatten()
        })
        .or_else(|| {
            (provider == "openrouter")
                .then(|| model.split_once('/'))
                .flatten()
                .and_then(|(vendor, m)| exact(vendor, m))
        })
}

/// Finds a `provider/model` name as a client writes it.
pub fn find_name(name: &str) -> Option<Listing> {
    let (provider, model) = name.split_once('/')?;
    find(provider, model)
}

/// The listed context window (`max_input_tokens`) of `model` at
/// `provider`: what pre-call checks hold a prompt to when the deployment
/// sets none of its own.
pub fn context_window(provider: &str, model: &str) -> Option<u64> {
    find(provider, model).and_then(|e| e.max_input_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_file_parses_and_names_its_source_and_date() {
        let doc: serde_json::Value = serde_json::from_str(DATA).unwrap();
        assert!(doc["source"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(doc["date"].as_str().is_some_and(|s| s.len() == 10));
        assert!(TABLE.len() > 50);
    }

    #[test]
    fn prices_are_found_by_provider_and_model() {
        let mini = find("openai", "gpt-4o-mini").unwrap();
        assert_eq!(
            (mini.input_cost_per_token, mini.output_cost_per_token),
            (0.15e-6, 0.6e-6)
        );
        assert_eq!(find("azure", "gpt-4o-mini"), Some(mini));
        assert_eq!(find("openrouter", "openai/gpt-4o-mini"), Some(mini));
        assert_eq!(find_name("openai/gpt-4o-mini"), Some(mini));
        assert!(find("cerebras", "llama-3.3-70b").is_some());
        let sonnet = find("anthropic", "claude-3-5-sonnet-20240620").unwrap();
        assert_eq!(
            (sonnet.input_cost_per_token, sonnet.output_cost_per_token),
            (3e-6, 15e-6)
        );
        assert_eq!(find("openai", "no-such-model"), None);
    }

    #[test]
    fn context_windows_are_found_like_prices() {
        assert_eq!(context_window("openai", "gpt-4"), Some(8192));
        assert_eq!(context_window("azure", "gpt-3.5-turbo"), Some(16385));
        assert_eq!(context_window("openrouter", "openai/gpt-4o"), Some(128_000));
        assert_eq!(context_window("groq", "llama-3.1-8b-instant"), None);
        assert_eq!(context_window("openai", "no-such-model"), None);
    }
}
