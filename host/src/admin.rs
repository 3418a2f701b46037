//! Runtime model registrations: deployments added through `POST /admin/models`
//! on top of the config file. They form an overlay that every gateway version
//! is built with (config, then overlay), so they survive config reloads; with
//! `serve --persist-admin-changes FILE` they are saved after each change and
//! loaded at start. Also the secret-free deployment listing of `/v1/model/info`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::{Config, LitellmParams, LoadedConfig, ModelEntry, Problem, Secret};
use crate::providers::{split_provider, table};
use crate::router::is_composite;

/// Fields a registration may carry.
const FIELDS: &[&str] = &[
    "model_name",
    "model",
    "api_base",
    "api_key",
    "target_model",
    "request_timeout",
    "supports_reasoning",
    "fallbacks",
];

/// A problem with one field of an admin request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub param: Option<String>,
    pub message: String,
}

impl FieldError {
    fn at(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }
}

/// One runtime deployment, as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub model_name: String,
    /// `provider/model`; defaults to `openai/<target_model or model_name>`.
    pub model: String,
    pub api_base: Option<String>,
    /// As given: a key, or `os.environ/NAME` resolved at each build.
    pub api_key: Option<Secret>,
    pub target_model: Option<String>,
    /// Whole-request timeout in seconds.
    pub request_timeout: Option<f64>,
    pub supports_reasoning: Option<bool>,
    /// Replaces the router's fallbacks for this model when present.
    pub fallbacks: Option<Vec<String>>,
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(Value::String(_)) => Err(FieldError::at(key, format!("{key} must not be empty"))),
        Some(_) => Err(FieldError::at(key, format!("{key} must be a string"))),
    }
}

impl Registration {
    /// Reads and checks a registration body.
    pub fn from_json(body: &Value) -> Result<Self, FieldError> {
        let Some(obj) = body.as_object() else {
            return Err(FieldError {
                param: None,
                message: "the body must be a JSON object".into(),
            });
        };
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(FieldError::at(
                unknown,
                format!("unknown field {unknown:?}; expected {}", FIELDS.join(", ")),
            ));
        }
        let model_name = optional_string(obj, "model_name")?
            .ok_or_else(|| FieldError::at("model_name", "model_name is required"))?;
        if model_name.chars().any(char::is_control) || model_name.len() > 256 {
            return Err(FieldError::at(
                "model_name",
                "model_name must be at most 256 printable characters",
            ));
        }
        let target_model = optional_string(obj, "target_model")?;
        let model = optional_string(obj, "model")?.unwrap_or_else(|| {
            format!(
                "openai/{}",
                target_model.as_deref().unwrap_or(model_name.as_str())
            )
        });
        let provider = match model.split_once('/') {
            Some((provider, rest)) if !rest.is_empty() => provider,
            _ => {
                return Err(FieldError::at(
                    "model",
                    format!(
                        "model must be provider/model (e.g. openai/gpt-4o-mini), got {model:?}"
                    ),
                ));
            }
        };
        // Runtime deployments reach HTTP providers (or mock) only: a
        // registration must not be able to make conclave run a program.
        if provider != "mock" && table::lookup(provider).is_none() {
            return Err(FieldError::at(
                "model",
                format!(
                    "model {model:?} uses provider {provider:?}, which cannot be registered at runtime (supported: {})",
                    table::names().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let api_base = optional_string(obj, "api_base")?;
        if let Some(base) = &api_base
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(FieldError::at(
                "api_base",
                "api_base must be an http:// or https:// URL",
            ));
        }
        let api_key = optional_string(obj, "api_key")?.map(Secret::new);
        let request_timeout = match obj.get("request_timeout") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t.is_finite() && t > 0.0 => Some(t),
                _ => {
                    return Err(FieldError::at(
                        "request_timeout",
                        "request_timeout must be a positive number of seconds",
                    ));
                }
            },
            Some(_) => {
                return Err(FieldError::at(
                    "request_timeout",
                    "request_timeout must be a positive number of seconds",
                ));
            }
        };
        let supports_reasoning = match obj.get("supports_reasoning") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(FieldError::at(
                    "supports_reasoning",
                    "supports_reasoning must be true or false",
                ));
            }
        };
        let fallbacks = match obj.get("fallbacks") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.trim().to_owned()]),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(|s| s.trim().to_owned()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        FieldError::at(
                            "fallbacks",
                            "fallbacks must be a model name or a list of model names",
                        )
                    })?,
            ),
            Some(_) => {
                return Err(FieldError::at(
                    "fallbacks",
                    "fallbacks must be a model name or a list of model names",
                ));
            }
        };
        if let Some(list) = &fallbacks {
            if list.iter().any(String::is_empty) {
                return Err(FieldError::at(
                    "fallbacks",
                    "fallbacks must not contain empty names",
                ));
            }
            if list.contains(&model_name) {
                return Err(FieldError::at(
                    "fallbacks",
                    "a model cannot be its own fallback",
                ));
            }
        }
        Ok(Self {
            model_name,
            model,
            api_base,
            api_key,
            target_model,
            request_timeout,
            supports_reasoning,
            fallbacks,
        })
    }

    /// The registration as JSON; the key only when `with_secret` (for the
    /// persistence file, never for a response).
    pub fn to_json(&self, with_secret: bool) -> Value {
        let mut out = Map::new();
        out.insert("model_name".into(), json!(self.model_name));
        out.insert("model".into(), json!(self.model));
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                out.insert(k.into(), v);
            }
        };
        put("api_base", json!(self.api_base));
        if with_secret {
            put("api_key", json!(self.api_key.as_ref().map(Secret::expose)));
        }
        put("target_model", json!(self.target_model));
        put("request_timeout", json!(self.request_timeout));
        put("supports_reasoning", json!(self.supports_reasoning));
        put("fallbacks", json!(self.fallbacks));
        Value::Object(out)
    }

    /// The deployment id shown in headers, logs and `/v1/model/info`.
    pub fn deployment_id(&self) -> String {
        format!("runtime:{}", self.model_name)
    }

    fn entry(&self, loaded: &LoadedConfig) -> Result<ModelEntry, Problem> {
        let at = format!("runtime model {:?}", self.model_name);
        let api_key = match &self.api_key {
            Some(key) => match key.expose().strip_prefix("os.environ/") {
                Some(name) => Some(Secret::new(loaded.env.get(name.trim()).ok_or_else(
                    || {
                        Problem::new(
                            format!("{at}.api_key"),
                            format!("environment variable {} is not set", name.trim()),
                        )
                    },
                )?)),
                None => Some(key.clone()),
            },
            None => None,
        };
        let mut info = BTreeMap::new();
        info.insert(
            "id".to_owned(),
            serde_yaml::Value::String(self.deployment_id()),
        );
        info.insert("db_model".to_owned(), serde_yaml::Value::Bool(true));
        Ok(ModelEntry {
            model_name: self.model_name.clone(),
            litellm_params: LitellmParams {
                model: self.model.clone(),
                api_base: self.api_base.clone(),
                api_key,
                target_model: self.target_model.clone(),
                timeout: self.request_timeout,
                supports_reasoning: self.supports_reasoning,
                ..LitellmParams::default()
            },
            model_info: Some(info),
        })
    }
}

/// The runtime registrations, by model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    models: BTreeMap<String, Registration>,
}

impl Overlay {
    /// Adds or replaces a registration; true when it replaced one.
    pub fn upsert(&mut self, registration: Registration) -> bool {
        self.models
            .insert(registration.model_name.clone(), registration)
            .is_some()
    }

    /// Removes a registration; false when there was none.
    pub fn remove(&mut self, model_name: &str) -> bool {
        self.models.remove(model_name).is_some()
    }

    pub fn get(&self, model_name: &str) -> Option<&Registration> {
        self.models.get(model_name)
    }

    /// Registered model names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.models.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Puts the registrations into `loaded`: each replaces every config
    /// deployment of its model name, and its `fallbacks` (when given)
    /// replace the configured fallbacks of that model.
    pub fn apply(&self, loaded: &mut LoadedConfig) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for registration in self.models.values() {
            let entry = match registration.entry(loaded) {
                Ok(e) => e,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let cfg = &mut loaded.config;
            cfg.model_list
                .retain(|e| e.model_name != registration.model_name);
            cfg.model_list.push(entry);
            if let Some(fallbacks) = &registration.fallbacks {
                for list in [
                    cfg.router_settings.fallbacks.as_mut(),
                    cfg.litellm_settings.fallbacks.as_mut(),
                ]
                .into_iter()
                .flatten()
                {
                    for map in list.iter_mut() {
                        map.remove(&registration.model_name);
                    }
                    list.retain(|map| !map.is_empty());
                }
                if !fallbacks.is_empty() {
                    cfg.router_settings
                        .fallbacks
                        .get_or_insert_with(Vec::new)
                        .push(BTreeMap::from([(
                            registration.model_name.clone(),
                            fallbacks.clone(),
                        )]));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Reads a persistence file; a missing file is an empty overlay.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let models = value
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{}: expected {{\"models\": [...]}}", path.display()))?;
        let mut overlay = Self::default();
        for (i, m) in models.iter().enumerate() {
            let r = Registration::from_json(m).map_err(|e| {
                format!(
                    "{}: models[{i}]{}: {}",
                    path.display(),
                    e.param.map(|p| format!(".{p}")).unwrap_or_default(),
                    e.message
                )
            })?;
            overlay.upsert(r);
        }
        Ok(overlay)
    }

    /// Writes the persistence file atomically (owner-only: it holds keys).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let body = json!({
            "models": self.models.values().map(|r| r.to_json(true)).collect::<Vec<_>>(),
        });
        let mut text = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
        text.push(b'\n');
        crate::compile_cache::write_atomic(path, &text, true, true)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Keys of `litellm_params` never shown: they may hold credentials.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential", "auth"]
        .iter()
        .any(|s| k.contains(s))
}

/// `api_base` without `user:password@`.
fn without_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{scheme}://{}", &rest[at + 1..]);
        }
    }
    url.to_owned()
}

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
        json!(p.api_base.as_deref().map(without_userinfo)),
    );
    put("api_version", json!(p.api_version));
    put("organization", json!(p.organization));
    put("timeout", json!(p.timeout));
    put("stream_timeout", json!(p.stream_timeout));
    put("max_retries", json!(p.max_retries));
    put("rpm", json!(p.rpm));
    put("tpm", json!(p.tpm));
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
/// router gives the deployment).
pub fn model_info_listing(config: &Config) -> Bytes {
    let mut per_group: HashMap<&str, usize> = HashMap::new();
    let mut data = Vec::new();
    for entry in &config.model_list {
        let composite = is_composite(entry);
        let (provider, _) = split_provider(&entry.litellm_params);
        if !composite && !crate::providers::is_supported(provider) {
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
        let configured_id = info.get("id").and_then(|id| {
            id.as_str()
                .map(str::to_owned)
                .or_else(|| id.as_u64().map(|n| n.to_string()))
        });
        let id = if composite {
            configured_id.unwrap_or_else(|| entry.model_name.clone())
        } else {
            let index = per_group.entry(entry.model_name.as_str()).or_insert(0);
            let id = configured_id.unwrap_or_else(|| format!("{}.{index}", entry.model_name));
            *index += 1;
            id
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(body: Value) -> Result<Registration, FieldError> {
        Registration::from_json(&body)
    }

    #[test]
    fn the_model_defaults_to_openai_and_the_target_model() {
        let r = reg(json!({"model_name": "m"})).unwrap();
        assert_eq!(r.model, "openai/m");
        let r = reg(json!({"model_name": "m", "target_model": "gpt-x"})).unwrap();
        assert_eq!(r.model, "openai/gpt-x");
    }

    #[test]
    fn bad_fields_are_named() {
        let param = |body: Value| reg(body).unwrap_err().param;
        assert_eq!(param(json!({})), Some("model_name".into()));
        assert_eq!(param(json!({"model_name": 3})), Some("model_name".into()));
        assert_eq!(
            param(json!({"model_name": "m", "request_timeout": -1})),
            Some("request_timeout".into())
        );
        assert_eq!(
            param(json!({"model_name": "m", "fallbacks": [1]})),
            Some("fallbacks".into())
        );
        assert_eq!(
            param(json!({"model_name": "m", "api_base": "ftp://x"})),
            Some("api_base".into())
        );
        assert_eq!(
            param(json!({"model_name": "m", "model": "exec/run"})),
            Some("model".into())
        );
        assert_eq!(
            param(json!({"model_name": "m", "surprise": 1})),
            Some("surprise".into())
        );
        assert_eq!(reg(json!([])).unwrap_err().param, None);
    }

    #[test]
    fn fallbacks_take_a_string_or_a_list() {
        let r = reg(json!({"model_name": "m", "fallbacks": "b"})).unwrap();
        assert_eq!(r.fallbacks, Some(vec!["b".to_owned()]));
        let r = reg(json!({"model_name": "m", "fallbacks": ["b", "c"]})).unwrap();
        assert_eq!(r.fallbacks, Some(vec!["b".to_owned(), "c".to_owned()]));
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
        let text = String::from_utf8(model_info_listing(&config).to_vec()).unwrap();
        assert!(
            !text.contains("sk-hidden") && !text.contains("pw@"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"][0]["model_info"]["id"], "m.0");
        assert_eq!(v["data"][0]["litellm_params"]["api_base"], "https://h/v1");
    }
}
