//! The built-in price table: public per-token list prices of the models the
//! provider table serves, embedded from `host/data/model_prices.json` (which
//! names its source and date).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::Price;

/// The embedded data file.
const DATA: &str = include_str!("../../data/model_prices.json");

#[derive(Deserialize)]
struct File {
    models: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    input_cost_per_token: f64,
    output_cost_per_token: f64,
}

/// `provider/model` -> price. A data file that does not parse (only a
/// broken build could ship one; a unit test reads it) leaves the table empty.
static TABLE: LazyLock<HashMap<String, Price>> = LazyLock::new(|| {
    serde_json::from_str::<File>(DATA)
        .map(|f| {
            f.models
                .into_iter()
                .map(|(name, e)| {
                    (
                        name,
                        Price {
                            input: e.input_cost_per_token,
                            output: e.output_cost_per_token,
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
});

/// The listed price of `model` at `provider`. Azure serves OpenAI's models
/// under OpenAI's prices; OpenRouter names them `vendor/model`.
pub fn lookup(provider: &str, model: &str) -> Option<Price> {
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

/// Looks up a `provider/model` name as a client writes it.
pub fn lookup_name(name: &str) -> Option<Price> {
    let (provider, model) = name.split_once('/')?;
    lookup(provider, model)
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
        let p = lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!((p.input, p.output), (0.15e-6, 0.6e-6));
        assert_eq!(lookup("azure", "gpt-4o-mini"), Some(p));
        assert_eq!(lookup("openrouter", "openai/gpt-4o-mini"), Some(p));
        assert_eq!(lookup_name("openai/gpt-4o-mini"), Some(p));
        assert!(lookup("cerebras", "llama-3.3-70b").is_some());
        let sonnet = lookup("anthropic", "claude-3-5-sonnet-20240620").unwrap();
        assert_eq!((sonnet.input, sonnet.output), (3e-6, 15e-6));
        assert_eq!(lookup("openai", "no-such-model"), None);
    }
}
