//! One runtime deployment as `POST /admin/models` takes it: read with serde
//! (unknown fields refused, the failing field named), then checked.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::config::{LitellmParams, LoadedConfig, ModelEntry, Problem, Secret};
use crate::providers::table;

/// A problem with one field of an admin request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault, when the problem is in one.
    pub param: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}

impl FieldError {
    fn at(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }

    /// A serde error, attributed to the top-level field it occurred in.
    fn from_serde(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let param = match error.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let inner = error.into_inner().to_string();
        let message = match &param {
            Some(p) => format!("{p}: {inner}"),
            None => inner,
        };
        Self { param, message }
    }
}

/// One runtime deployment, as registered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The deployment's own id, when it has one: such a registration is one
    /// more deployment of its group (LiteLLM's `/model/new`), beside the
    /// config's and the others'. Without one it is `runtime:<model_name>`
    /// and the registration replaces every deployment of its name.
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    /// The model group it serves.
    #[serde(default, deserialize_with = "required_text")]
    pub model_name: String,
    /// `provider/model`; defaults to `openai/<target_model or model_name>`.
    #[serde(default, deserialize_with = "required_text")]
    pub model: String,
    /// The provider URL, when not the provider's default.
    #[serde(default, deserialize_with = "text")]
    pub api_base: Option<String>,
    /// As given: a key, or `os.environ/NAME` resolved at each build.
    #[serde(default, deserialize_with = "secret")]
    pub api_key: Option<Secret>,
    /// The upstream model name, when not the one in `model`.
    #[serde(default, deserialize_with = "text")]
    pub target_model: Option<String>,
    /// Whole-request timeout in seconds (a number, or a string holding
    /// one, as the config reads it).
    #[serde(default, deserialize_with = "crate::config::lenient::opt_f64")]
    pub request_timeout: Option<f64>,
    /// Whether the model takes reasoning parameters.
    pub supports_reasoning: Option<bool>,
    /// Replaces the router's fallbacks for this model when present.
    #[serde(default, deserialize_with = "names")]
    pub fallbacks: Option<Vec<String>>,
}

/// A string field: absent or `null` is `None`; it is trimmed and must not
/// be blank.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) if s.trim().is_empty() => Err(D::Error::custom("must not be empty")),
        s => Ok(s.map(|s| s.trim().to_owned())),
    }
}

/// A [`text`] field that is empty when absent (`validate` decides).
fn required_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d).map(Option::unwrap_or_default)
}

/// A key: as [`text`], but a value of the wrong type is refused without
/// being repeated (serde's message would quote it, and it may be a key).
fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Err(D::Error::custom("must not be empty")),
        Value::String(s) => Ok(Some(Secret::new(s.trim()))),
        _ => Err(D::Error::custom("must be a string")),
    }
}

/// One model name or a list of them.
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a model name or a list of model names")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A list of model names, given as a list or as one name; each trimmed.
fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|names| {
        let list = match names {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(list) => list,
        };
        list.iter().map(|n| n.trim().to_owned()).collect()
    }))
}

impl Registration {
    /// Reads and checks a registration body.
    pub fn from_json(body: &Value) -> Result<Self, FieldError> {
        if !body.is_object() {
            return Err(FieldError {
                param: None,
                message: "the body must be a JSON object".into(),
            });
        }
        let registration: Self =
            serde_path_to_error::deserialize(body).map_err(FieldError::from_serde)?;
        registration.validate()
    }

    /// Reads a body in LiteLLM's `POST /model/new` shape, `{"model_name",
    /// "litellm_params": {"model", "api_base", "api_key", "timeout"}}`, as
    /// the same registration. A `litellm_params` or `model_info` field this
    /// registration cannot honour is refused by name rather than dropped.
    pub fn from_litellm(body: &Value) -> Result<Self, FieldError> {
        let Some(body) = body.as_object() else {
            return Err(FieldError {
                param: None,
                message: "the body must be a JSON object".into(),
            });
        };
        let mut flat = Map::new();
        for (name, value) in body {
            match name.as_str() {
                "model_name" => {
                    flat.insert(name.clone(), value.clone());
                }
                "litellm_params" => flatten_params(value, &mut flat)?,
                "model_info" => {
                    if let Some(id) = take_model_info_id(value)? {
                        flat.insert("id".into(), id);
                    }
                }
                other => {
                    return Err(FieldError::at(
                        other,
                        format!(
                            "{other} is not a field of /model/new (model_name, litellm_params, model_info)"
                        ),
                    ));
                }
            }
        }
        if flat.get("model").is_none_or(Value::is_null) {
            return Err(FieldError::at(
                "litellm_params.model",
                "litellm_params.model is required (provider/model, e.g. openai/gpt-4o-mini)",
            ));
        }
        // As LiteLLM does, a deployment without an id of its own gets one,
        // so a second `/model/new` of a name adds to its group.
        flat.entry("id")
            .or_insert_with(|| Value::String(crate::translate::new_id("")));
        Self::from_json(&Value::Object(flat)).map_err(in_litellm_names)
    }

    /// This registration changed by a LiteLLM `POST /model/update` body:
    /// each `litellm_params` field it gives replaces this one's (`null`
    /// clears it), a `model_name` renames it, and `model_info` may only
    /// name the deployment (`id`). The result is checked as a new one is.
    pub fn updated_by_litellm(&self, body: &Value) -> Result<Self, FieldError> {
        let Some(body) = body.as_object() else {
            return Err(FieldError {
                param: None,
                message: "the body must be a JSON object".into(),
            });
        };
        let mut changes = Map::new();
        for (name, value) in body {
            match name.as_str() {
                "model_name" if !value.is_null() => {
                    changes.insert(name.clone(), value.clone());
                }
                "model_name" | "id" => {}
                "litellm_params" => flatten_params(value, &mut changes)?,
                "model_info" => {
                    take_model_info_id(value)?;
                }
                other => {
                    return Err(FieldError::at(
                        other,
                        format!(
                            "{other} is not a field of /model/update (model_name, litellm_params, model_info)"
                        ),
                    ));
                }
            }
        }
        let mut flat = match self.to_json(true) {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        flat.extend(changes);
        flat.retain(|_, v| !v.is_null());
        Self::from_json(&Value::Object(flat)).map_err(in_litellm_names)
    }

    /// The registration's `litellm_params` under LiteLLM's names, as
    /// `/model/new` answers them (without the key).
    pub fn litellm_params(&self) -> Value {
        let mut params = Map::new();
        if let Value::Object(own) = self.to_json(false) {
            for (name, value) in own {
                if name != "model_name" && name != "id" {
                    params.insert(litellm_name(&name).to_owned(), value);
                }
            }
        }
        Value::Object(params)
    }

    /// Checks what the types cannot say, and fills in the default `model`.
    fn validate(mut self) -> Result<Self, FieldError> {
        if self.model_name.is_empty() {
            return Err(FieldError::at("model_name", "model_name is required"));
        }
        if self.model_name.chars().any(char::is_control) || self.model_name.len() > 256 {
            return Err(FieldError::at(
                "model_name",
                "model_name must be at most 256 printable characters",
            ));
        }
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        check_sizes(&self)?;
        if self.model.is_empty() {
            let target = self.target_model.as_deref().unwrap_or(&self.model_name);
            self.model = format!("openai/{target}");
        }
        check_model(&self.model)?;
        if let Some(base) = &self.api_base {
            check_api_base(base)?;
        }
        if let Some(key) = &self.api_key
            && !key.expose().bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(FieldError::at(
                "api_key",
                "api_key must be printable ASCII without spaces (it is sent in a header)",
            ));
        }
        if let Some(why) = self
            .request_timeout
            .and_then(|t| crate::config::invalid_seconds(t, true))
        {
            return Err(FieldError::at(
                "request_timeout",
                format!("request_timeout {why}"),
            ));
        }
        if let Some(list) = &self.fallbacks {
            if list.iter().any(String::is_empty) {
                return Err(FieldError::at(
                    "fallbacks",
                    "fallbacks must not contain empty names",
                ));
            }
            if list.contains(&self.model_name) {
                return Err(FieldError::at(
                    "fallbacks",
                    "a model cannot be its own fallback",
                ));
            }
        }
        Ok(self)
    }

    /// The registration as JSON; the key only when `with_secret` (for the
    /// persistence file, never for a response).
    pub fn to_json(&self, with_secret: bool) -> Value {
        let mut out = Map::new();
        if let Some(id) = &self.id {
            out.insert("id".into(), json!(id));
        }
        out.insert("model_name".into(), json!(self.model_name));
        out.insert("model".into(), json!(self.model));
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                out.insert(k.into(), v);
            }
        };
        // Credentials in the URL stay out of answers, as the key does.
        let base = match &self.api_base {
            Some(base) if !with_secret => Some(crate::public_url::public_url(base)),
            base => base.clone(),
        };
        put("api_base", json!(base));
        if with_secret {
            put("api_key", json!(self.api_key.as_ref().map(Secret::expose)));
        }
        put("target_model", json!(self.target_model));
        put("request_timeout", json!(self.request_timeout));
        put("supports_reasoning", json!(self.supports_reasoning));
        put("fallbacks", json!(self.fallbacks));
        Value::Object(out)
    }

    /// The deployment id shown in headers, logs and `/v1/model/info`, and
    /// what the registration is kept under: its own id, or
    /// `runtime:<model_name>`.
    pub fn deployment_id(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("{NAMED_ID_PREFIX}{}", self.model_name),
        }
    }

    /// Whether it replaces the config's deployments of its name (a
    /// registration without an id of its own) rather than joining them.
    pub fn replaces_its_group(&self) -> bool {
        self.id.is_none()
    }

    /// The config deployment this registration stands for, its key resolved
    /// from `loaded`'s environment.
    pub(super) fn entry(&self, loaded: &LoadedConfig) -> Result<ModelEntry, Problem> {
        let at = format!("runtime model {:?}", self.model_name);
        let api_key = match &self.api_key {
            Some(key) => match key.expose().strip_prefix("os.environ/") {
                Some(name) => Some(env_key(loaded, name.trim(), &at)?),
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
                // A keyless registration pointing somewhere of its own must
                // not carry the provider's key there.
                no_env_key: self.api_key.is_none() && self.api_base.is_some(),
                ..LitellmParams::default()
            },
            model_info: Some(info),
            ..ModelEntry::default()
        })
    }
}

/// The `litellm_params` a runtime registration honours, under their
/// registration names (`timeout` is LiteLLM's name for the request timeout).
const LITELLM_PARAMS: &[(&str, &str)] = &[
    ("model", "model"),
    ("api_base", "api_base"),
    ("api_key", "api_key"),
    ("timeout", "request_timeout"),
    ("request_timeout", "request_timeout"),
    ("supports_reasoning", "supports_reasoning"),
];

/// LiteLLM's name for a registration field (the first the table gives).
fn litellm_name(own: &str) -> &str {
    LITELLM_PARAMS
        .iter()
        .find(|(_, o)| *o == own)
        .map_or(own, |(litellm, _)| litellm)
}

/// A registration field's error under its LiteLLM name
/// (`litellm_params.api_base`), as a `/model/*` body wrote it.
fn in_litellm_names(mut e: FieldError) -> FieldError {
    if let Some(param) = e.param.as_mut() {
        match param.as_str() {
            "model_name" => {}
            "id" => *param = "model_info.id".into(),
            own => *param = format!("litellm_params.{}", litellm_name(own)),
        }
    }
    e
}

/// Copies `litellm_params` into `flat` under registration names.
fn flatten_params(params: &Value, flat: &mut Map<String, Value>) -> Result<(), FieldError> {
    let Some(params) = params.as_object() else {
        return Err(FieldError::at(
            "litellm_params",
            "litellm_params must be a JSON object",
        ));
    };
    for (name, value) in params {
        let Some((_, own)) = LITELLM_PARAMS.iter().find(|(l, _)| l == name) else {
            let param = format!("litellm_params.{name}");
            let supported: Vec<&str> = LITELLM_PARAMS.iter().map(|(l, _)| *l).collect();
            return Err(FieldError::at(
                &param,
                format!(
                    "{param} is not supported by a runtime registration (supported: {})",
                    supported.join(", ")
                ),
            ));
        };
        if flat.insert((*own).to_owned(), value.clone()).is_some() {
            return Err(FieldError::at(
                &format!("litellm_params.{name}"),
                "litellm_params gives timeout and request_timeout; give one",
            ));
        }
    }
    Ok(())
}

/// The id a `model_info` gives the deployment, if any. Its other fields
/// (prices, limits, descriptions) have no meaning for a runtime
/// registration, so any of them is refused by name rather than dropped.
fn take_model_info_id(info: &Value) -> Result<Option<Value>, FieldError> {
    let fields = match info {
        Value::Null => return Ok(None),
        Value::Object(fields) => fields,
        _ => {
            return Err(FieldError::at(
                "model_info",
                "model_info must be a JSON object",
            ));
        }
    };
    if let Some(name) = fields.keys().find(|k| *k != "id") {
        return Err(FieldError::at(
            &format!("model_info.{name}"),
            format!(
                "model_info.{name} is not supported by a runtime registration \
                 (only model_info.id is; prices come from the price table)"
            ),
        ));
    }
    match fields.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(id @ Value::String(_)) => Ok(Some(id.clone())),
        Some(_) => Err(FieldError::at(
            "model_info.id",
            "model_info.id must be a string",
        )),
    }
}

/// What the id of a registration made by name starts with; an id given to
/// a deployment may not, so the two never meet.
const NAMED_ID_PREFIX: &str = "runtime:";

/// A deployment's own id: printable, at most 256 bytes, and not in the
/// `runtime:` space of the ids registrations by name have.
fn check_id(id: &str) -> Result<(), FieldError> {
    if id.chars().any(char::is_control) || id.len() > 256 {
        return Err(FieldError::at(
            "id",
            "id must be at most 256 printable characters",
        ));
    }
    if id.starts_with(NAMED_ID_PREFIX) {
        return Err(FieldError::at(
            "id",
            format!(
                "id must not start with {NAMED_ID_PREFIX:?}: such ids name registrations made by model name"
            ),
        ));
    }
    Ok(())
}

/// `api_base` must be an absolute http(s) URL with a host, as written
/// (nothing the URL parser would have to repair, such as a space).
/// Most bytes of an `api_base` or an `api_key`: far above any real one, so
/// that a registration cannot grow every later listing and reload.
const MAX_URL_BYTES: usize = 2048;
const MAX_KEY_BYTES: usize = 8192;

/// Bounds what a registration keeps and every rebuild reads again: names
/// as long as a request's may be, as many fallbacks as a request may name.
fn check_sizes(r: &Registration) -> Result<(), FieldError> {
    use crate::openai::{MAX_MODEL_NAME_BYTES, MAX_REQUEST_FALLBACKS};
    let too_long = |field: &str, len: usize, max: usize| {
        (len > max).then(|| {
            FieldError::at(
                field,
                format!("{field} may be at most {max} bytes, got {len}"),
            )
        })
    };
    let fallbacks = r.fallbacks.as_deref().unwrap_or_default();
    if fallbacks.len() > MAX_REQUEST_FALLBACKS {
        return Err(FieldError::at(
            "fallbacks",
            format!(
                "at most {MAX_REQUEST_FALLBACKS} fallbacks, got {}",
                fallbacks.len()
            ),
        ));
    }
    let longest_fallback = fallbacks.iter().map(String::len).max().unwrap_or(0);
    let checks = [
        too_long("model", r.model.len(), MAX_MODEL_NAME_BYTES),
        too_long(
            "target_model",
            r.target_model.as_deref().map_or(0, str::len),
            MAX_MODEL_NAME_BYTES,
        ),
        too_long("fallbacks", longest_fallback, MAX_MODEL_NAME_BYTES),
        too_long(
            "api_base",
            r.api_base.as_deref().map_or(0, str::len),
            MAX_URL_BYTES,
        ),
        too_long(
            "api_key",
            r.api_key.as_ref().map_or(0, |k| k.expose().len()),
            MAX_KEY_BYTES,
        ),
    ];
    match checks.into_iter().flatten().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

fn check_api_base(base: &str) -> Result<(), FieldError> {
    let problem = || {
        FieldError::at(
            "api_base",
            "api_base must be an http:// or https:// URL with a host (e.g. https://api.example.com/v1)",
        )
    };
    if !(base.starts_with("http://") || base.starts_with("https://"))
        || base.bytes().any(|b| !b.is_ascii_graphic())
    {
        return Err(problem());
    }
    match reqwest::Url::parse(base) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(problem()),
    }
}

/// `model` must be `provider/model` with a provider reached over HTTP (or
/// mock): a registration must not be able to make conclave run a program.
fn check_model(model: &str) -> Result<(), FieldError> {
    let provider = match model.split_once('/') {
        Some((provider, rest)) if !rest.is_empty() => provider,
        _ => {
            return Err(FieldError::at(
                "model",
                format!("model must be provider/model (e.g. openai/gpt-4o-mini), got {model:?}"),
            ));
        }
    };
    if provider != "mock" && table::lookup(provider).is_none() {
        return Err(FieldError::at(
            "model",
            format!(
                "model {model:?} uses provider {provider:?}, which cannot be registered at runtime (supported: {})",
                table::names().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(())
}

/// The value of `os.environ/NAME` in a registration: only variables the
/// config allows (`general_settings.admin_env_allowlist`), so that the admin
/// API cannot turn the gateway's environment into outbound credentials.
fn env_key(loaded: &LoadedConfig, name: &str, at: &str) -> Result<Secret, Problem> {
    let allowed = &loaded.config.general_settings.admin_env_allowlist;
    if !allowed.iter().any(|a| a == name) {
        return Err(Problem::new(
            format!("{at}.api_key"),
            format!(
                "os.environ/{name} is not allowed in a runtime registration; \
                 list it in general_settings.admin_env_allowlist to allow it"
            ),
        ));
    }
    loaded.config.env.get(name).map(Secret::new).ok_or_else(|| {
        Problem::new(
            format!("{at}.api_key"),
            format!("environment variable {name} is not set"),
        )
    })
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
    fn messages_name_the_field_and_null_is_absent() {
        for body in [
            json!({"model_name": ""}),
            json!({"model_name": "m", "model": " "}),
            json!({"model_name": "m", "request_timeout": "soon"}),
            json!({"model_name": "m", "supports_reasoning": "yes"}),
            json!({"model_name": "m", "fallbacks": {"a": 1}}),
            json!({"model_name": "m", "api_key": 12}),
            json!({"model_name": "m", "litellm_params": {}}),
            json!({"model_name": "m", "id": "runtime:m"}),
            json!({"model_name": "m", "id": "a\u{7}b"}),
        ] {
            let e = reg(body.clone()).unwrap_err();
            let param = e.param.clone().unwrap_or_default();
            assert!(
                !param.is_empty() && e.message.contains(&param),
                "{body}: {e:?}"
            );
        }
        assert_eq!(
            reg(json!({"model_name": null})).unwrap_err().message,
            "model_name is required"
        );
        let r = reg(json!({"model_name": " m ", "model": null, "api_key": null})).unwrap();
        assert_eq!((r.model_name.as_str(), r.api_key), ("m", None));
    }

    #[test]
    fn litellm_model_new_bodies_read_as_registrations() {
        let r = Registration::from_litellm(&json!({
            "model_name": "m",
            "litellm_params": {"model": "openai/gpt-x", "api_base": "http://127.0.0.1:9/v1", "timeout": 5},
            "model_info": {}
        }))
        .unwrap();
        assert_eq!(r.model, "openai/gpt-x");
        assert_eq!(r.api_base.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(r.request_timeout, Some(5.0));
        let made = r.id.clone().unwrap();
        assert!(!made.is_empty() && r.deployment_id() == made && !r.replaces_its_group());
        let again = Registration::from_litellm(&json!({
            "model_name": "m", "litellm_params": {"model": "openai/gpt-x"}, "model_info": {"id": " eu "}
        }))
        .unwrap();
        assert_eq!(again.deployment_id(), "eu");
        assert_eq!(
            r.litellm_params(),
            json!({"model": "openai/gpt-x", "api_base": "http://127.0.0.1:9/v1", "timeout": 5.0})
        );
    }

    #[test]
    fn litellm_fields_that_cannot_be_honoured_are_named() {
        let param = |body: Value| Registration::from_litellm(&body).unwrap_err().param;
        assert_eq!(
            param(json!({"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": 5}})),
            Some("litellm_params.rpm".into())
        );
        for info in [
            json!({"id": "a", "input_cost_per_token": 1}),
            json!({"id": 3}),
            json!({"id": "runtime:m"}),
            json!([]),
        ] {
            let body = json!({"model_name": "m", "litellm_params": {"model": "openai/x"}, "model_info": info});
            let param = param(body).unwrap();
            assert!(param.starts_with("model_info"), "{info}: {param}");
        }
        assert_eq!(
            param(json!({"model_name": "m", "litellm_params": {}})),
            Some("litellm_params.model".into())
        );
        assert_eq!(
            param(
                json!({"model_name": "m", "litellm_params": {"model": "openai/x", "timeout": -1}})
            ),
            Some("litellm_params.timeout".into())
        );
        assert_eq!(
            param(json!({"litellm_params": {"model": "openai/x"}})),
            Some("model_name".into())
        );
        assert_eq!(
            param(json!({"model_name": "m", "litellm_params": {"model": null}})),
            Some("litellm_params.model".into())
        );
        let e = Registration::from_litellm(
            &json!({"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": 12345678}}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("litellm_params.api_key"));
        assert!(
            !e.message.contains("12345678"),
            "the key is not repeated: {e:?}"
        );
        assert_eq!(
            param(
                json!({"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "sk-a\r\nb"}})
            ),
            Some("litellm_params.api_key".into())
        );
    }

    #[test]
    fn api_base_must_be_a_url_with_a_host_as_written() {
        for bad in [
            "http://",
            "http://127.0.0.1:9/v1 x",
            "ftp://h/v1",
            "https://:80/v1",
        ] {
            let e = reg(json!({"model_name": "m", "api_base": bad})).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("api_base"), "{bad}: {e:?}");
        }
        assert!(reg(json!({"model_name": "m", "api_base": "http://127.0.0.1:9/v1"})).is_ok());
    }

    #[test]
    fn credentials_in_api_base_stay_out_of_answers() {
        let r = reg(json!({"model_name": "m", "api_base": "https://u:pw@h.example/v1"})).unwrap();
        assert_eq!(r.to_json(false)["api_base"], "https://h.example/v1");
        assert_eq!(r.to_json(true)["api_base"], "https://u:pw@h.example/v1");
        let base = "https://h.example/v1?api-key=sk-secret&user=a@b.example";
        let r = reg(json!({"model_name": "m", "api_base": base})).unwrap();
        assert_eq!(r.to_json(false)["api_base"], "https://h.example/v1");
    }

    #[test]
    fn a_timeout_may_come_as_a_string_as_in_the_config() {
        let r = reg(json!({"model_name": "m", "request_timeout": "30"})).unwrap();
        assert_eq!(r.request_timeout, Some(30.0));
        let e = reg(json!({"model_name": "m", "request_timeout": "soon"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("request_timeout"), "{e:?}");
    }

    #[test]
    fn registrations_are_bounded() {
        let many: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
        let e = reg(json!({"model_name": "m", "fallbacks": many})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("fallbacks"), "{e:?}");
        let e = reg(json!({"model_name": "m", "api_key": "k".repeat(10_000)})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("api_key"), "{e:?}");
        assert!(!e.message.contains("kkkk"), "{e:?}");
        let e = reg(json!({"model_name": "m", "target_model": "t".repeat(600)})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("target_model"), "{e:?}");
    }

    #[test]
    fn fallbacks_take_a_string_or_a_list() {
        let r = reg(json!({"model_name": "m", "fallbacks": "b"})).unwrap();
        assert_eq!(r.fallbacks, Some(vec!["b".to_owned()]));
        let r = reg(json!({"model_name": "m", "fallbacks": ["b", "c"]})).unwrap();
        assert_eq!(r.fallbacks, Some(vec!["b".to_owned(), "c".to_owned()]));
    }
}
