//! The `/v1/model/info` listing: every deployment in LiteLLM's shape, with
//! nothing that could be a credential.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::{Config, LitellmParams};
use crate::pricing::PriceBook;

/// Keys of `litellm_params` never shown: they may hold credentials.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential", "auth"]
        .iter()
        .any(|s| k.contains(s))
}

/// A deployment's `litellm_params` without keys, secrets or URL credentials;
/// extra header values are masked.
fn params_json(p: &LitellmParams) -> Value {
    let mut out = Map::new();
    out.insert("model".into(), json!(p.model));
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            out.insert(k.into(), v);
        }
    };
    put(
        "api_base",
        json!(p.api_base.as_deref().map(crate::public_url::public_url)),
    );
    put("api_version", json!(p.api_version));
    put("organization", json!(p.organization));
    put("timeout", json!(p.timeout));
    put("stream_timeout", json!(p.stream_timeout));
    put("max_retries", json!(p.max_retries));
    put("rpm", json!(p.rpm));
    put("tpm", json!(p.tpm));
    put("max_parallel_requests", json!(p.max_parallel_requests));
    put("weight", json!(p.weight));
    put("order", json!(p.order));
    put("target_model", json!(p.target_model));
    put("supports_reasoning", json!(p.supports_reasoning));
    put("custom_llm_provider", json!(p.custom_llm_provider));
    if !p.extra_headers.is_empty() {
        let names: Map<String, Value> = p
            .extra_headers
            .keys()
            .map(|k| (k.clone(), json!("***")))
            .collect();
        put("extra_headers", Value::Object(names));
    }
    for (k, v) in &p.extra {
        if !is_secret_key(k) && !out.contains_key(k) {
            out.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// The `/v1/model/info` body, in LiteLLM's shape: every model_list entry
/// with its `litellm_params` (no keys) and `model_info` (with the id the
/// router gives the deployment, and the price it is charged at, as
/// LiteLLM fills them in from its price table).
pub fn model_info_listing(config: &Config, prices: &PriceBook) -> Bytes {
    let mut per_group: HashMap<String, usize> = HashMap::new();
    let mut data = Vec::new();
    for entry in config.model_list.iter().flat_map(|e| e.per_organization()) {
        let composite = entry.is_composite();
        if !composite && !entry.litellm_params.is_served() {
            continue;
        }
        let mut info: Map<String, Value> = entry
            .model_info
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
                    .collect()
            })
            .unwrap_or_default();
        let configured_id = entry.written_id();
        let id = if composite {
            configured_id.unwrap_or_else(|| entry.model_name.clone())
        } else {
            let index = per_group.entry(entry.model_name.clone()).or_insert(0);
            let id = configured_id.unwrap_or_else(|| format!("{}.{index}", entry.model_name));
            *index += 1;
            id
        };
        if let Some(price) = (!composite).then(|| prices.known(&id)).flatten() {
            info.entry("input_cost_per_token")
                .or_insert(json!(price.input));
            info.entry("output_cost_per_token")
                .or_insert(json!(price.output));
        }
        info.insert("id".into(), json!(id));
        info.entry("db_model").or_insert(json!(false));
        data.push(json!({
            "model_name": entry.model_name,
            "litellm_params": params_json(&entry.litellm_params),
            "model_info": info,
        }));
    }
    Bytes::from(serde_json::to_vec(&json!({"data": data})).unwrap_or_default())
}

/// `model_info` keys `/model_group/info` reads, with the value a group
/// shows when none of its deployments sets them.
const GROUP_FIELDS: &[(&str, Value)] = &[
    ("max_input_tokens", Value::Null),
    ("max_output_tokens", Value::Null),
    ("input_cost_per_token", Value::Null),
    ("output_cost_per_token", Value::Null),
    ("supports_vision", Value::Bool(false)),
    ("supports_function_calling", Value::Bool(false)),
    ("supports_parallel_function_calling", Value::Bool(false)),
];

/// LiteLLM's `/model_group/info`: one entry per public model name, with
/// its deployments' providers and what their `model_info` says (the first
/// deployment that sets a field gives it, else the built-in price table's
/// prices and context window for its model). Composite profiles are groups of
/// provider `composite`.
pub fn model_group_info_listing(config: &Config) -> Bytes {
    let mut groups: Vec<(String, Map<String, Value>)> = Vec::new();
    for entry in &config.model_list {
        let composite = entry.is_composite();
        if !composite && !entry.litellm_params.is_served() {
            continue;
        }
        let at = match groups
            .iter()
            .position(|(name, _)| *name == entry.model_name)
        {
            Some(at) => at,
            None => {
                let mut group = Map::new();
                group.insert("model_group".into(), json!(entry.model_name));
                group.insert("providers".into(), json!([]));
                group.insert("mode".into(), json!("chat"));
                for (key, default) in GROUP_FIELDS {
                    group.insert((*key).into(), default.clone());
                }
                groups.push((entry.model_name.clone(), group));
                groups.len() - 1
            }
        };
        let group = &mut groups[at].1;
        let provider = if composite {
            "composite"
        } else {
            entry.litellm_params.provider()
        };
        if let Some(providers) = group.get_mut("providers").and_then(Value::as_array_mut)
            && !providers.iter().any(|p| p == provider)
        {
            providers.push(json!(provider));
        }
        // Prices may be written in litellm_params too (LiteLLM's custom
        // pricing), where model_info does not set them.
        let params = &entry.litellm_params.extra;
        for (key, default) in GROUP_FIELDS.iter().chain(&[("mode", json!("chat"))]) {
            let written = entry
                .model_info
                .as_ref()
                .and_then(|info| info.get(*key))
                .or_else(|| {
                    key.ends_with("_cost_per_token")
                        .then(|| params.get(*key))
                        .flatten()
                });
            if group.get(*key) == Some(default)
                && let Some(value) = written.and_then(|v| serde_json::to_value(v).ok())
            {
                group.insert((*key).into(), value);
            }
        }
        // What the config leaves unsaid, from the built-in table, as
        // LiteLLM fills it from its own.
        let (provider, model) = entry.litellm_params.provider_and_model();
        if let Some(listed) = (!composite)
            .then(|| crate::catalog::find(provider, model))
            .flatten()
        {
            for (key, value) in [
                ("input_cost_per_token", json!(listed.input_cost_per_token)),
                ("output_cost_per_token", json!(listed.output_cost_per_token)),
                ("max_input_tokens", json!(listed.max_input_tokens)),
            ] {
                if group.get(key) == Some(&Value::Null) {
                    group.insert(key.into(), value);
                }
            }
        }
    }
    let data: Vec<Value> = groups.into_iter().map(|(_, g)| Value::Object(g)).collect();
    Bytes::from(serde_json::to_vec(&json!({"data": data})).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelEntry, Secret};

    #[test]
    fn model_groups_list_their_providers_and_model_info() {
        let cfg: Config = serde_yaml::from_str(
            r#"
model_list:
  - model_name: smart
    litellm_params: {model: openai/gpt-4o, api_key: sk-secret}
    model_info: {max_input_tokens: 128000, supports_vision: true, input_cost_per_token: 0.0000025}
  - model_name: smart
    litellm_params: {model: anthropic/claude, api_key: sk-other}
  - model_name: embedder
    litellm_params: {model: openai/text-embedding-3-small, output_cost_per_token: 0.00000002}
    model_info: {mode: embedding}
"#,
        )
        .unwrap();
        let listing: Value = serde_json::from_slice(&model_group_info_listing(&cfg)).unwrap();
        let data = listing["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{listing}");
        assert_eq!(data[0]["model_group"], "smart");
        assert_eq!(data[0]["providers"], json!(["openai", "anthropic"]));
        assert_eq!(data[0]["max_input_tokens"], 128000);
        assert_eq!(data[0]["supports_vision"], true);
        assert_eq!(data[0]["supports_function_calling"], false);
        assert_eq!(data[0]["input_cost_per_token"], 0.0000025);
        assert!(
            data[0]["output_cost_per_token"].as_f64().unwrap() > 0.0,
            "what the config leaves out comes from the price table: {listing}"
        );
        assert_eq!(data[1]["mode"], "embedding");
        assert_eq!(
            data[1]["output_cost_per_token"], 0.00000002,
            "a price written in litellm_params"
        );
        assert!(!listing.to_string().contains("sk-"), "{listing}");
    }

    #[test]
    fn the_listing_never_shows_keys() {
        let mut entry = ModelEntry {
            model_name: "m".into(),
            ..ModelEntry::default()
        };
        entry.litellm_params.model = "openai/x".into();
        entry.litellm_params.api_key = Some(Secret::new("sk-hidden"));
        entry.litellm_params.api_base = Some("https://user:pw@h/v1".into());
        entry
            .litellm_params
            .extra_headers
            .insert("Authorization".into(), "Bearer sk-hidden".into());
        entry.litellm_params.extra.insert(
            "aws_secret_access_key".into(),
            serde_yaml::Value::String("sk-hidden".into()),
        );
        let config = Config {
            model_list: vec![entry],
            ..Config::default()
        };
        let text =
            String::from_utf8(model_info_listing(&config, &PriceBook::default()).to_vec()).unwrap();
        assert!(
            !text.contains("sk-hidden") && !text.contains("pw@"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"][0]["model_info"]["id"], "m.0");
        assert_eq!(v["data"][0]["litellm_params"]["api_base"], "https://h/v1");
    }

    #[test]
    fn the_listed_api_base_drops_its_query_and_fragment() {
        let mut entry = ModelEntry {
            model_name: "m".into(),
            ..ModelEntry::default()
        };
        entry.litellm_params.model = "azure/x".into();
        entry.litellm_params.api_base =
            Some("https://u:pw@h.example:8443/openai?api-key=sk-hidden#key=sk-hidden".into());
        let config = Config {
            model_list: vec![entry],
            ..Config::default()
        };
        let text =
            String::from_utf8(model_info_listing(&config, &PriceBook::default()).to_vec()).unwrap();
        assert!(
            !text.contains("sk-hidden") && !text.contains("pw"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["data"][0]["litellm_params"]["api_base"],
            "https://h.example:8443/openai"
        );
    }
}
