//! OpenAI wire format: the parts of requests conclave reads, and error bodies.
//!
//! Requests keep every field the client sent: only the fields the gateway acts
//! on are typed, the rest stays in a JSON map forwarded as is.

mod fields;
pub mod response;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use fields::{MAX_DEPTH, MAX_FIELDS, RawFields, nested_too_deep, too_many_fields};

/// Parses JSON bytes after checking them as UTF-8 once, whole: parsed as
/// bytes, serde_json checks every string and every raw value again, piece
/// by piece. Bytes that are not UTF-8 are parsed as bytes anyway, so the
/// result is exactly serde_json's: the same error saying where, and the
/// same leniency for strings it skips unread.
pub fn from_json_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A JSON parse error in words a client can act on: serde_json's own,
/// except that a body nested past the parser's limit (the same
/// [`MAX_DEPTH`]) says so instead of naming the parser's recursion.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        format!("the body is nested deeper than {MAX_DEPTH} levels (the limit is {MAX_DEPTH})")
    } else {
        text
    }
}

/// A client request to any of the model endpoints.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// The public model (group, alias, wildcard match or composite profile).
    pub model: String,
    /// Whether the client wants server-sent events.
    pub stream: bool,
    /// Request-level fallback groups (LiteLLM extension); never forwarded.
    pub fallbacks: Option<Vec<String>>,
    /// Turns every fallback off for this request (LiteLLM extension); never forwarded.
    pub disable_fallbacks: bool,
    /// LiteLLM's per-request cache controls, raw: the top-level `cache`
    /// object, else `metadata.cache`; never forwarded.
    pub cache: Option<Box<RawValue>>,
    /// LiteLLM's request tags (`tags`, `metadata.tags`,
    /// `litellm_metadata.tags`), for spend logs; never forwarded.
    pub tags: Vec<String>,
    /// The request's own `timeout` and `num_retries`; never forwarded.
    pub limits: CallLimits,
    /// The caller's end user (OpenAI's `user`, which stays in `rest` and is
    /// forwarded), for spend logs as LiteLLM's `end_user`.
    pub end_user: Option<Arc<str>>,
    /// Everything else, forwarded unchanged.
    pub rest: RawFields,
}

/// Request fields that belong to the gateway, as they do in LiteLLM, and
/// are never sent to a model: an upstream refuses them (OpenAI takes
/// `metadata` only with `store`, and names none of the others).
/// `metadata` is read for its `cache` controls and `tags`.
pub const GATEWAY_FIELDS: &[&str] = &[
    "metadata",
    "litellm_metadata",
    "tags",
    "num_retries",
    "timeout",
    "request_timeout",
    "mock_testing_fallbacks",
    "mock_testing_context_window_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "caching",
    "drop_params",
    "additional_drop_params",
    "guardrails",
    "disable_global_guardrails",
];

/// LiteLLM's own call settings, which its SDK and clients written for it
/// send in the body and LiteLLM never passes to a model: tracing ids,
/// per-call routing and pricing hints, cache and logging switches. This
/// gateway's config decides all of these, so they are left out of what an
/// upstream is sent (which would refuse them) and otherwise read for
/// nothing.
pub const LITELLM_CALL_SETTINGS: &[&str] = &[
    "litellm_session_id",
    "litellm_trace_id",
    "litellm_call_id",
    "litellm_parent_otel_span",
    "no-log",
    "ttl",
    "stream_timeout",
    "max_retries",
    "cooldown_time",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_second",
    "output_cost_per_second",
    "base_model",
    "model_info",
    "proxy_server_request",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "context_window_fallback_dict",
    "max_fallbacks",
    "fallback_depth",
    "custom_llm_provider",
    "hf_model_name",
    "region_name",
    "allowed_model_region",
    "model_group",
    "cache_key",
    "preset_cache_key",
    "caching_groups",
    "user_continue_message",
    "assistant_continue_message",
    "ensure_alternating_roles",
    "supports_system_message",
    "logger_fn",
    "verbose",
    "rpm",
    "tpm",
    "litellm_params",
];

/// LiteLLM request fields that change what is answered in a way this
/// gateway does not do: a request naming them is refused (400) rather
/// than answered as if they were not there. `mock_response` would have
/// LiteLLM answer without calling a model, and `prompt_id` fill in a
/// stored prompt; served here, the first would be a real, billed call and
/// the second an answer to another question.
pub const LITELLM_REFUSED_FIELDS: &[(&str, &str)] = &[
    (
        "mock_response",
        "this gateway does not answer with a mock in place of a model call; \
         point a model at the `mock/` provider instead",
    ),
    (
        "mock_tool_calls",
        "this gateway does not answer with a mock in place of a model call; \
         point a model at the `mock/` provider instead",
    ),
    (
        "prompt_id",
        "this gateway has no stored prompts; send the messages themselves",
    ),
    (
        "prompt_variables",
        "this gateway has no stored prompts; send the messages themselves",
    ),
    (
        "prompt_version",
        "this gateway has no stored prompts; send the messages themselves",
    ),
    (
        "prompt_label",
        "this gateway has no stored prompts; send the messages themselves",
    ),
    (
        "mock_timeout",
        "this gateway does not answer with a mock in place of a model call; \
         point a model at the `mock/` provider instead",
    ),
];

/// The fields that belong to the gateway rather than the model: the
/// lists above, whose fields are never sent to a model.
fn owned_field_names() -> impl Iterator<Item = &'static str> {
    GATEWAY_FIELDS
        .iter()
        .chain(CLIENT_CREDENTIAL_FIELDS)
        .chain(CLIENT_ROUTING_FIELDS)
        .chain(LITELLM_CALL_SETTINGS)
        .chain(LITELLM_REFUSED_FIELDS.iter().map(|(f, _)| f))
        .copied()
}

/// [`owned_field_names`] and the cache controls, gathered once into one
/// set, as it is asked of every field of every request.
static GATEWAY_OWNED: std::sync::LazyLock<foldhash::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| owned_field_names().chain(["cache"]).collect());

/// Whether a request field belongs to the gateway rather than the model.
fn gateway_owned(name: &str) -> bool {
    GATEWAY_OWNED.contains(name)
}

/// Whether a request's raw `guardrails` names any (null, `[]` and `{}`
/// name none).
fn names_guardrails(raw: &str) -> bool {
    !matches!(raw.trim(), "null" | "[]" | "{}")
}

/// Why a request naming guardrails in `field` is refused.
fn guardrails_refused(field: &str) -> String {
    format!(
        "`{field}`: this gateway runs no guardrails, and a request that names them is \
         refused rather than served unchecked"
    )
}

/// LiteLLM's client-side credentials: fields with which a request would
/// bring its own upstream key, API version or headers. The gateway calls
/// every deployment with its configured ones, so these are read for
/// nothing and never forwarded: a client's secret must not reach a
/// provider inside a body (which the provider refuses anyway).
pub const CLIENT_CREDENTIAL_FIELDS: &[&str] = &[
    "api_key",
    "api_version",
    "extra_headers",
    "headers",
    // The cloud credentials LiteLLM takes per call.
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "aws_profile_name",
    "aws_role_name",
    "aws_web_identity_token",
    "azure_ad_token",
    "azure_username",
    "azure_password",
    "client_id",
    "client_secret",
    "tenant_id",
    "vertex_credentials",
    "vertex_project",
    "vertex_location",
];

/// Fields with which a request would choose its own upstream address or
/// router config. They are refused (400), as LiteLLM refuses a client's
/// `api_base` unless told to allow it: the gateway never sends a request,
/// or a deployment's key, where the client says.
pub const CLIENT_ROUTING_FIELDS: &[&str] = &["api_base", "base_url", "user_config", "model_list"];

/// What a request may set for its own model calls, as LiteLLM clients do:
/// a `timeout` (or `request_timeout`) in seconds that shortens the
/// deployments' timeouts, never lengthens them (the config bounds how long
/// a client may hold the gateway), and a `num_retries` in place of the
/// configured one (a `retry_policy` entry for the error still wins).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallLimits {
    pub timeout: Option<std::time::Duration>,
    pub num_retries: Option<u32>,
    /// LiteLLM's `drop_params`: leave out the fields a model is known to
    /// refuse rather than send them.
    pub drop_params: bool,
}

/// The gateway's request settings as another API's body (Anthropic
/// Messages, Responses) may carry them: [`GATEWAY_FIELDS`] but `metadata`,
/// which each API defines for itself, and the routing fields. A translated
/// request takes them onto its chat request; a body passed through as it
/// is loses them.
pub fn carried_settings() -> impl Iterator<Item = &'static str> {
    owned_field_names().filter(|f| *f != "metadata").chain([
        "cache",
        "fallbacks",
        "disable_fallbacks",
        "composite_settings",
    ])
}

/// `body` without the gateway's request settings ([`carried_settings`],
/// and cache controls given as `metadata.cache`): the copy of another API's
/// body that a native deployment sends on as it is, where an upstream would
/// refuse fields it does not define.
pub fn without_carried_settings(body: &serde_json::Value) -> serde_json::Value {
    let mut native = body.clone();
    if let Some(fields) = native.as_object_mut() {
        for field in carried_settings() {
            fields.remove(field);
        }
        if let Some(metadata) = fields
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            metadata.remove("cache");
        }
    }
    native
}

/// The copy of a Messages or Responses client's body a chat request carries
/// for native deployments: [`without_carried_settings`], and without
/// `stream`, which the provider sets from the call itself. A streamed and a
/// plain request for the same question then carry the same copy, and share
/// a cache entry as chat requests do.
pub fn native_copy(body: &serde_json::Value) -> serde_json::Value {
    let mut native = without_carried_settings(body);
    if let Some(fields) = native.as_object_mut() {
        fields.remove("stream");
    }
    native
}

/// Shortest timeout a request may ask for (1 ms): below it no upstream
/// could answer, and the call would only fail.
pub const MIN_REQUEST_TIMEOUT_SECS: f64 = 0.001;
/// Most retries a request may ask for.
pub const MAX_REQUEST_RETRIES: u32 = 10;

impl CallLimits {
    /// Reads `timeout` / `request_timeout` and `num_retries` from the
    /// fields before they are dropped.
    fn read(rest: &RawFields) -> Result<Self, String> {
        let seconds = |name: &str| -> Result<Option<f64>, String> {
            match rest.parse::<Option<f64>>(name) {
                None | Some(Ok(None)) => Ok(None),
                Some(Ok(Some(s))) if s >= MIN_REQUEST_TIMEOUT_SECS && s.is_finite() => Ok(Some(s)),
                _ => Err(format!(
                    "`{name}` must be a number of seconds, at least {MIN_REQUEST_TIMEOUT_SECS}"
                )),
            }
        };
        let timeout = match seconds("timeout")? {
            Some(s) => Some(s),
            None => seconds("request_timeout")?,
        };
        let num_retries = match rest.parse::<Option<u32>>("num_retries") {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(n))) if n <= MAX_REQUEST_RETRIES => Some(n),
            _ => {
                return Err(format!(
                    "`num_retries` must be a whole number from 0 to {MAX_REQUEST_RETRIES}"
                ));
            }
        };
        let drop_params = match rest.parse::<Option<bool>>("drop_params") {
            None | Some(Ok(None)) => false,
            Some(Ok(Some(drop))) => drop,
            Some(Err(_)) => return Err("`drop_params` must be a boolean".to_owned()),
        };
        Ok(Self {
            // Past what a `Duration` holds, it shortens nothing.
            timeout: timeout.map(|s| {
                std::time::Duration::try_from_secs_f64(s).unwrap_or(std::time::Duration::MAX)
            }),
            num_retries,
            drop_params,
        })
    }
}

/// LiteLLM's `caching` switch as cache controls, for a request that sends
/// no `cache` object: `false` neither reads nor writes the cache for this
/// call, `true` uses it even when the cache is off by default.
fn caching_switch(own: &RawFields) -> Result<Option<Box<RawValue>>, String> {
    let controls = match own.parse::<Option<bool>>("caching") {
        None | Some(Ok(None)) => return Ok(None),
        Some(Ok(Some(false))) => r#"{"no-cache":true,"no-store":true}"#,
        Some(Ok(Some(true))) => r#"{"use-cache":true}"#,
        Some(Err(_)) => return Err("`caching` must be a boolean".to_owned()),
    };
    Ok(RawValue::from_string(controls.to_owned()).ok())
}

/// Most fields one request's `additional_drop_params` may name.
pub const MAX_REQUEST_DROPS: usize = 64;

/// The names in a request's `additional_drop_params` (LiteLLM's: fields
/// never sent upstream): a list of at most [`MAX_REQUEST_DROPS`] names.
fn request_drops(raw: Option<&RawValue>) -> Result<Vec<String>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let names: Option<Vec<String>> = serde_json::from_str(raw.get())
        .map_err(|_| "`additional_drop_params` must be a list of field names".to_owned())?;
    let names = names.unwrap_or_default();
    if names.len() > MAX_REQUEST_DROPS {
        return Err(format!(
            "`additional_drop_params` names {} fields; at most {MAX_REQUEST_DROPS} are allowed",
            names.len()
        ));
    }
    Ok(names)
}

/// Most tags one request may carry (key and deployment tags come on top).
pub const MAX_REQUEST_TAGS: usize = 32;
/// Longest tag, in bytes: tags are stored with every spend-log row.
pub const MAX_TAG_BYTES: usize = 256;

/// Longest model name a request may give, its own or a fallback's: names
/// are repeated in errors, headers and log lines, so an unbounded one would
/// make those unbounded too.
pub const MAX_MODEL_NAME_BYTES: usize = 512;
/// Most fallbacks one request may name.
pub const MAX_REQUEST_FALLBACKS: usize = 16;

/// Why a model name a request gives cannot be used, if it cannot.
fn model_name_problem(field: &str, name: &str) -> Option<String> {
    (name.len() > MAX_MODEL_NAME_BYTES).then(|| {
        format!(
            "`{field}` holds a name of {} bytes; a model name may be at most {MAX_MODEL_NAME_BYTES}",
            name.len()
        )
    })
}

/// The fallbacks a request's `fallbacks` names for `model`, in LiteLLM's
/// three forms: model names (`["b"]`), objects naming one (`[{"model":
/// "b"}]`), or lists by model group (`[{"a": ["b"]}, {"*": ["c"]}]`, the
/// requested group's own list, else the one under `*`). `null` names none.
fn request_fallbacks(raw: &RawValue, model: &str) -> Result<Option<Vec<String>>, String> {
    use serde_json::Value;
    let shape = || {
        "`fallbacks` must be a list of model names, of {\"model\": name} objects, or of \
         {group: [names]} objects"
            .to_owned()
    };
    let Some(items) = serde_json::from_str::<Option<Vec<Value>>>(raw.get()).map_err(|_| shape())?
    else {
        return Ok(None);
    };
    let mut names = Vec::new();
    let mut any_group = None;
    for item in items {
        match item {
            Value::String(name) => names.push(name),
            Value::Object(mut object) if object.contains_key("model") => {
                if let Some(field) = object.keys().find(|k| *k != "model") {
                    return Err(format!(
                        "`fallbacks`: a fallback's own `{field}` is not supported; name the \
                         model only, and the fallback is sent the request as it came"
                    ));
                }
                match object.remove("model") {
                    Some(Value::String(name)) => names.push(name),
                    _ => return Err(shape()),
                }
            }
            Value::Object(groups) => {
                for (group, list) in groups {
                    let list: Vec<String> = serde_json::from_value(list).map_err(|_| shape())?;
                    if group == model {
                        names.extend(list);
                    } else if group == "*" {
                        any_group.get_or_insert(list);
                    }
                }
            }
            _ => return Err(shape()),
        }
    }
    if names.is_empty()
        && let Some(list) = any_group
    {
        names = list;
    }
    Ok(Some(names))
}

impl<'de> Deserialize<'de> for ProxyRequest {
    /// Reads the body's fields as raw JSON and parses only the typed ones.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        /// A typed field: absent and `null` are `None`, a mismatch an error.
        fn typed<T: serde::de::DeserializeOwned, E: Error>(
            raw: Option<Box<RawValue>>,
            name: &str,
            expected: &str,
        ) -> Result<Option<T>, E> {
            match raw {
                None => Ok(None),
                Some(raw) => serde_json::from_str::<Option<T>>(raw.get())
                    .map_err(|_| E::custom(format!("`{name}` must be {expected}"))),
            }
        }
        let mut rest = RawFields::deserialize(d)?;
        let model = match rest.remove("model") {
            None => return Err(D::Error::missing_field("model")),
            raw => typed::<String, D::Error>(raw, "model", "a string")?
                .ok_or_else(|| D::Error::custom("`model` must be a string"))?,
        };
        let flag =
            |raw, name| typed::<bool, D::Error>(raw, name, "a boolean").map(|v| v.unwrap_or(false));
        let stream = flag(rest.remove("stream"), "stream")?;
        let disable_fallbacks = flag(rest.remove("disable_fallbacks"), "disable_fallbacks")?;
        let fallbacks = match rest.remove("fallbacks") {
            None => None,
            Some(raw) => request_fallbacks(&raw, &model).map_err(D::Error::custom)?,
        };
        if let Some(problem) = model_name_problem("model", &model) {
            return Err(D::Error::custom(problem));
        }
        if let Some(names) = &fallbacks {
            if names.len() > MAX_REQUEST_FALLBACKS {
                return Err(D::Error::custom(format!(
                    "`fallbacks` names {} models; at most {MAX_REQUEST_FALLBACKS} are allowed",
                    names.len()
                )));
            }
            if let Some(problem) = names
                .iter()
                .find_map(|n| model_name_problem("fallbacks", n))
            {
                return Err(D::Error::custom(problem));
            }
        }
        let mut own = rest.split_off(gateway_owned);
        if let Some(field) = CLIENT_ROUTING_FIELDS.iter().find(|f| own.get(f).is_some()) {
            return Err(D::Error::custom(format!(
                "`{field}`: a request may not choose its own upstream address or router \
                 config; the gateway calls the deployments its config names"
            )));
        }
        if let Some((field, why)) = LITELLM_REFUSED_FIELDS
            .iter()
            .find(|(f, _)| own.get(f).is_some_and(|raw| raw.get() != "null"))
        {
            return Err(D::Error::custom(format!("`{field}`: {why}")));
        }
        if own
            .get("guardrails")
            .is_some_and(|raw| names_guardrails(raw.get()))
        {
            return Err(D::Error::custom(guardrails_refused("guardrails")));
        }
        let limits = CallLimits::read(&own).map_err(D::Error::custom)?;
        check_stream_options(rest.get("stream_options")).map_err(D::Error::custom)?;
        let drops = request_drops(own.get("additional_drop_params")).map_err(D::Error::custom)?;
        let nested = read_metadata(own.get("metadata"), "metadata").map_err(D::Error::custom)?;
        let litellm = read_metadata(own.get("litellm_metadata"), "litellm_metadata")
            .map_err(D::Error::custom)?;
        let top_tags = own.remove("tags");
        // `caching` is checked even where a `cache` object wins over it.
        let switch = caching_switch(&own).map_err(D::Error::custom)?;
        let cache = own
            .remove("cache")
            .filter(|raw| raw.get() != "null")
            .or(nested.cache)
            .or(litellm.cache)
            .or(switch);
        let mut tags = tag_list(top_tags.as_deref(), "tags").map_err(D::Error::custom)?;
        for (raw, field) in [
            (&nested.tags, "metadata.tags"),
            (&litellm.tags, "litellm_metadata.tags"),
        ] {
            tags.extend(tag_list(raw.as_deref(), field).map_err(D::Error::custom)?);
        }
        // LiteLLM's order: `user`, then `litellm_metadata.user`, then
        // `metadata.user_id`, then OpenAI's newer `safety_identifier`.
        let end_user = match end_user(rest.get("user"), "`user`").map_err(D::Error::custom)? {
            Some(user) => Some(user),
            None => match litellm.user.or(nested.user) {
                Some(user) => Some(user),
                None => end_user(rest.get("safety_identifier"), "`safety_identifier`")
                    .map_err(D::Error::custom)?,
            },
        };
        // After the end user is read: a `user` dropped is still charged.
        for name in drops {
            rest.remove(&name);
        }
        dedup_in_order(&mut tags);
        if tags.len() > MAX_REQUEST_TAGS {
            return Err(D::Error::custom(format!(
                "`tags`: the request carries {} tags; at most {MAX_REQUEST_TAGS} are allowed",
                tags.len()
            )));
        }
        Ok(Self {
            model,
            stream,
            fallbacks,
            disable_fallbacks,
            cache,
            tags,
            limits,
            end_user,
            rest,
        })
    }
}

/// Refuses `stream_options` that is not an object, or whose
/// `include_usage` is not a boolean, as OpenAI does: the gateway reads it
/// to know whether the client wants the usage chunk, and would otherwise
/// read junk as "no".
fn check_stream_options(raw: Option<&RawValue>) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Options {
        #[serde(default, rename = "include_usage")]
        _include_usage: Option<bool>,
    }
    let refused =
        || "`stream_options` must be an object whose `include_usage` is a boolean".to_owned();
    match raw.map(|r| r.get()) {
        None | Some("null") => Ok(()),
        // A derived struct would also read a list (`[true]`).
        Some(text) if !crate::ops::is_object_text(text) => Err(refused()),
        Some(text) => serde_json::from_str::<Options>(text)
            .map(|_| ())
            .map_err(|_| refused()),
    }
}

/// Longest `user` a request may give, in bytes: it is stored with every
/// spend-log row.
pub const MAX_END_USER_BYTES: usize = 256;

/// The request's `user` (or the field `field` names): a string of at most
/// [`MAX_END_USER_BYTES`] without control characters (`null` or absent is
/// none).
fn end_user(raw: Option<&RawValue>, field: &str) -> Result<Option<Arc<str>>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    // Borrowed from the body unless it has escapes to undo.
    let user: Option<std::borrow::Cow<'_, str>> =
        match serde_json::from_str::<Option<&str>>(raw.get()) {
            Ok(user) => user.map(Into::into),
            Err(_) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|_| format!("{field} must be a string"))?
                .map(Into::into),
        };
    match user {
        Some(u) => checked_end_user(&u, field),
        None => Ok(None),
    }
}

/// An end user's name as `field` (the body's `user` or a customer
/// header) gives it: at most [`MAX_END_USER_BYTES`], no control
/// characters; empty is none.
pub fn checked_end_user(user: &str, field: &str) -> Result<Option<Arc<str>>, String> {
    if user.len() > MAX_END_USER_BYTES {
        Err(format!(
            "{field} is {} bytes long; at most {MAX_END_USER_BYTES} are allowed",
            user.len()
        ))
    } else if user.chars().any(char::is_control) {
        Err(format!("{field} must not contain control characters"))
    } else if user.is_empty() {
        Ok(None)
    } else {
        Ok(Some(Arc::from(user)))
    }
}

/// What the gateway reads from LiteLLM's request `metadata` (the rest of
/// it is the caller's and goes nowhere).
#[derive(Default)]
struct MetadataControls {
    cache: Option<Box<RawValue>>,
    tags: Option<Box<RawValue>>,
    /// The end user it names (`litellm_metadata.user`, `metadata.user_id`).
    user: Option<Arc<str>>,
}

/// The controls inside `metadata` (or `litellm_metadata`, named by
/// `field`). Metadata that is not an object is refused, as LiteLLM refuses
/// it; a repeated key counts once, the last, as at the top level.
fn read_metadata(metadata: Option<&RawValue>, field: &str) -> Result<MetadataControls, String> {
    let Some(raw) = metadata.filter(|raw| raw.get() != "null") else {
        return Ok(MetadataControls::default());
    };
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(format!("`{field}` must be a JSON object"));
    }
    // The key naming its end user: LiteLLM's own metadata says `user`,
    // a client's `user_id` (Anthropic's name).
    let (user_key, user_needle) = if field == "litellm_metadata" {
        ("user", "\"user\"")
    } else {
        ("user_id", "\"user_id\"")
    };
    // Most metadata holds none of these (a key written with escapes
    // might): only then is it read.
    if !text.contains("\"cache\"")
        && !text.contains("\"tags\"")
        && !text.contains(user_needle)
        && !text.contains("\"guardrails\"")
        && !text.contains('\\')
    {
        return Ok(MetadataControls::default());
    }
    let mut read: RawFields =
        serde_json::from_str(text).map_err(|e| format!("`{field}` cannot be read: {e}"))?;
    if read
        .get("guardrails")
        .is_some_and(|raw| names_guardrails(raw.get()))
    {
        return Err(guardrails_refused(&format!("{field}.guardrails")));
    }
    // The caller's own metadata: a value that is no usable name names no
    // end user, and is refused only where LiteLLM's field is the gateway's.
    let user = match read.remove(user_key) {
        Some(raw) if field == "litellm_metadata" => {
            end_user(Some(&raw), &format!("`{field}.{user_key}`"))?
        }
        // A number is an end user as LiteLLM names it (`str(user_id)`).
        Some(raw)
            if raw
                .get()
                .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
        {
            checked_end_user(raw.get(), "").ok().flatten()
        }
        Some(raw) => end_user(Some(&raw), "").ok().flatten(),
        None => None,
    };
    Ok(MetadataControls {
        cache: read.remove("cache").filter(|c| c.get() != "null"),
        tags: read.remove("tags"),
        user,
    })
}

/// A list of tags as LiteLLM takes them: an array of strings (`null` or
/// absent is none), each passing [`check_tags`]. `field` names it in the
/// error.
fn tag_list(raw: Option<&RawValue>, field: &str) -> Result<Vec<String>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let tags: Option<Vec<String>> = serde_json::from_str(raw.get())
        .map_err(|_| format!("`{field}` must be a list of strings"))?;
    let tags = tags.unwrap_or_default();
    check_tags(&tags, field)?;
    Ok(tags)
}

/// Whether `tags` may be stored: at most [`MAX_REQUEST_TAGS`], each one
/// non-empty, at most [`MAX_TAG_BYTES`] and free of control characters
/// (tags are written with every spend-log row and shown in reports). The
/// same rule holds for a request's tags, its header's and a key's.
pub fn check_tags(tags: &[String], field: &str) -> Result<(), String> {
    if tags.len() > MAX_REQUEST_TAGS {
        return Err(format!(
            "`{field}` holds {} tags; at most {MAX_REQUEST_TAGS} are allowed",
            tags.len()
        ));
    }
    for tag in tags {
        if tag.trim().is_empty() {
            return Err(format!("`{field}` holds an empty tag"));
        }
        if tag.len() > MAX_TAG_BYTES {
            return Err(format!(
                "`{field}` holds a tag of {} bytes; a tag may be at most {MAX_TAG_BYTES}",
                tag.len()
            ));
        }
        if tag.chars().any(char::is_control) {
            return Err(format!("`{field}` holds a tag with a control character"));
        }
    }
    Ok(())
}

/// `first`'s tags, then those of `then` that are new (`first` as it is
/// when `then` adds none).
pub fn merged_tags(first: &[String], then: &[String]) -> Vec<String> {
    if then.is_empty() {
        return first.to_vec();
    }
    let mut tags = [first, then].concat();
    dedup_in_order(&mut tags);
    tags
}

/// Drops repeated entries, keeping the first of each.
pub fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.retain(|t| seen.insert(t.clone()));
}

/// Which OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// `/v1/moderations`: whether a text breaks a usage policy.
    Moderations,
    /// `/v1/images/generations`: images from a prompt.
    ImageGenerations,
    /// `/v1/rerank`: documents ordered by relevance to a query (Cohere's
    /// shape, as LiteLLM serves it).
    Rerank,
}

impl Endpoint {
    /// The path under a provider's api_base.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Moderations => "/moderations",
            Self::ImageGenerations => "/images/generations",
            Self::Rerank => "/rerank",
        }
    }

    /// The request field that must be present for this endpoint.
    pub fn required_field(self) -> &'static str {
        match self {
            Self::ChatCompletions => "messages",
            Self::Completions | Self::ImageGenerations => "prompt",
            Self::Embeddings | Self::Moderations => "input",
            Self::Rerank => "query",
        }
    }

    /// How messages name the endpoint.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Moderations => "moderations",
            Self::ImageGenerations => "image generations",
            Self::Rerank => "rerank",
        }
    }

    /// Whether its answers may come as a stream of server-sent events.
    pub fn streams(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    /// Builds an error body; `kind` is OpenAI's `type` (e.g. `invalid_request_error`).
    pub fn new(
        message: impl Into<String>,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            },
        }
    }

    /// The body as JSON bytes.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_else(|_| b"{\"error\":{}}".to_vec()))
    }
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// Current Unix time in seconds, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_gateway_field_is_kept_from_the_model() {
        let listed = GATEWAY_FIELDS
            .iter()
            .chain(CLIENT_CREDENTIAL_FIELDS)
            .chain(CLIENT_ROUTING_FIELDS)
            .chain(LITELLM_CALL_SETTINGS)
            .chain(LITELLM_REFUSED_FIELDS.iter().map(|(f, _)| f));
        for field in listed {
            assert!(gateway_owned(field), "{field}");
        }
        for field in ["messages", "temperature", "tools", "user", "x_vendor"] {
            assert!(!gateway_owned(field), "{field}");
        }
    }

    #[test]
    fn litellms_call_settings_are_dropped_and_its_mock_and_stored_prompts_refused() {
        let request: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"litellm_trace_id":"t","no-log":true,"ttl":5,"headers":{"a":"b"}}"#,
        )
        .unwrap();
        assert!(request.rest.get("messages").is_some());
        for gone in ["litellm_trace_id", "no-log", "ttl", "headers"] {
            assert!(request.rest.get(gone).is_none(), "{gone}");
        }
        for field in ["mock_response", "prompt_id"] {
            let body = format!(r#"{{"model":"m","messages":[],"{field}":"x"}}"#);
            let error = serde_json::from_str::<ProxyRequest>(&body).unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
        let body = r#"{"model":"m","messages":[],"mock_response":null}"#;
        assert!(serde_json::from_str::<ProxyRequest>(body).is_ok());
    }

    #[test]
    fn a_body_nested_past_the_parsers_limit_says_so() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        let text = describe_json_error(&error);
        assert!(text.contains("nested deeper than 128 levels"), "{text}");
        let error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(describe_json_error(&error).contains("EOF"));
    }

    #[test]
    fn the_end_user_is_read_in_litellms_order() {
        let end_user = |body: serde_json::Value| {
            serde_json::from_str::<ProxyRequest>(&body.to_string())
                .map(|r| r.end_user.map(|u| u.to_string()))
        };
        let all = serde_json::json!({"model": "m", "user": "a",
            "litellm_metadata": {"user": "b"}, "metadata": {"user_id": "c"},
            "safety_identifier": "d"});
        assert_eq!(end_user(all.clone()).unwrap().as_deref(), Some("a"));
        let mut rest = all;
        for (field, next) in [("user", "b"), ("litellm_metadata", "c"), ("metadata", "d")] {
            rest.as_object_mut().unwrap().remove(field);
            assert_eq!(
                end_user(rest.clone()).unwrap().as_deref(),
                Some(next),
                "{rest}"
            );
        }
        // The caller's own metadata naming no usable end user is no error,
        // and a number there is one, written as LiteLLM writes it; LiteLLM's
        // field, and OpenAI's, must be strings.
        let odd = serde_json::json!({"model": "m", "metadata": {"user_id": ["x"]}});
        assert_eq!(end_user(odd).unwrap(), None);
        let number = serde_json::json!({"model": "m", "metadata": {"user_id": 7}});
        assert_eq!(end_user(number).unwrap().as_deref(), Some("7"));
        for bad in [
            serde_json::json!({"model": "m", "litellm_metadata": {"user": 7}}),
            serde_json::json!({"model": "m", "safety_identifier": ["x"]}),
        ] {
            assert!(end_user(bad).is_err());
        }
    }

    #[test]
    fn unknown_fields_are_kept_in_rest() {
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"tools":[{"type":"function"}],"seed":7,"stream":null}"#,
        )
        .unwrap();
        assert!(!req.stream);
        assert_eq!(req.rest.value("seed"), Some(serde_json::json!(7)));
        assert!(req.rest.contains_key("tools"));
        assert!(!req.rest.contains_key("model"));
        assert!(!req.rest.contains_key("stream"));
    }

    #[test]
    fn client_credentials_are_never_forwarded_and_a_client_address_is_refused() {
        for field in CLIENT_CREDENTIAL_FIELDS {
            let body = format!(r#"{{"model":"m","messages":[],"{field}":"sk-client-own"}}"#);
            let req: ProxyRequest = serde_json::from_str(&body).unwrap();
            assert!(!req.rest.contains_key(field), "{field}");
        }
        for field in CLIENT_ROUTING_FIELDS {
            let body = format!(r#"{{"model":"m","messages":[],"{field}":"http://evil.example"}}"#);
            let error = serde_json::from_str::<ProxyRequest>(&body)
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("`{field}`")), "{error}");
        }
    }

    #[test]
    fn a_request_naming_guardrails_is_refused_and_an_empty_list_is_dropped() {
        let error = serde_json::from_str::<ProxyRequest>(
            r#"{"model":"m","messages":[],"guardrails":["pii-mask"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`guardrails`"), "{error}");
        let req: ProxyRequest =
            serde_json::from_str(r#"{"model":"m","messages":[],"guardrails":[],"mock_testing_context_window_fallbacks":true}"#)
                .unwrap();
        assert!(req.rest.get("guardrails").is_none());
        assert!(
            req.rest
                .get("mock_testing_context_window_fallbacks")
                .is_none()
        );
        let error = serde_json::from_str::<ProxyRequest>(
            r#"{"model":"m","messages":[],"metadata":{"guardrails":["pii"]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`metadata.guardrails`"), "{error}");
    }

    #[test]
    fn fallbacks_are_read_in_each_of_litellms_forms() {
        let fallbacks = |list: &str| {
            serde_json::from_str::<ProxyRequest>(&format!(r#"{{"model":"a","fallbacks":{list}}}"#))
                .map(|r| r.fallbacks)
                .map_err(|e| e.to_string())
        };
        let named = |names: &[&str]| Ok(Some(names.iter().map(|n| n.to_string()).collect()));
        assert_eq!(fallbacks(r#"["b","c"]"#), named(&["b", "c"]));
        assert_eq!(fallbacks(r#"[{"model":"b"}]"#), named(&["b"]));
        assert_eq!(
            fallbacks(r#"[{"x":["z"]},{"a":["b"]},{"*":["c"]}]"#),
            named(&["b"])
        );
        assert_eq!(fallbacks(r#"[{"x":["z"]},{"*":["c"]}]"#), named(&["c"]));
        assert_eq!(fallbacks(r#"[{"x":["z"]}]"#), named(&[]));
        assert_eq!(fallbacks("null"), Ok(None));
        let error = fallbacks(r#"[{"model":"b","messages":[]}]"#).unwrap_err();
        assert!(error.contains("own `messages`"), "{error}");
        for junk in ["[1]", r#"[{"a":"b"}]"#, r#"[{"model":1}]"#, r#""b""#] {
            assert!(fallbacks(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn typed_fields_of_the_wrong_type_are_refused() {
        assert!(serde_json::from_str::<ProxyRequest>(r#"{"model":1}"#).is_err());
        assert!(serde_json::from_str::<ProxyRequest>(r#"{"messages":[]}"#).is_err());
        assert!(serde_json::from_str::<ProxyRequest>(r#"{"model":"m","stream":"yes"}"#).is_err());
        assert!(serde_json::from_str::<ProxyRequest>(r#"{"model":"m","fallbacks":[1]}"#).is_err());
        let long = "m".repeat(MAX_MODEL_NAME_BYTES + 1);
        let error = serde_json::from_str::<ProxyRequest>(&format!(r#"{{"model":"{long}"}}"#))
            .unwrap_err()
            .to_string();
        assert!(error.contains("at most 512"), "{error}");
        let many = vec!["f"; MAX_REQUEST_FALLBACKS + 1];
        let body = serde_json::json!({"model": "m", "fallbacks": many}).to_string();
        assert!(serde_json::from_str::<ProxyRequest>(&body).is_err());
        let body = serde_json::json!({"model": "m", "fallbacks": [long]}).to_string();
        assert!(serde_json::from_str::<ProxyRequest>(&body).is_err());
        let req: ProxyRequest =
            serde_json::from_str(r#"{"model":"m","fallbacks":["a","b"],"disable_fallbacks":true}"#)
                .unwrap();
        assert_eq!(
            req.fallbacks.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert!(req.disable_fallbacks);
        for junk in [r#""x""#, r#"{"include_usage":"x"}"#, "[true]"] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{junk}}}"#);
            let error = serde_json::from_str::<ProxyRequest>(&body)
                .unwrap_err()
                .to_string();
            assert!(error.contains("`stream_options`"), "{junk}: {error}");
        }
        for fine in ["null", "{}", r#"{"include_usage":true,"other":1}"#] {
            let body = format!(r#"{{"model":"m","stream":true,"stream_options":{fine}}}"#);
            assert!(
                serde_json::from_str::<ProxyRequest>(&body).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn cache_controls_are_taken_out_of_the_forwarded_fields() {
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"cache":{"no-cache":true},"metadata":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(
            req.cache.as_ref().map(|c| c.get()),
            Some(r#"{"no-cache":true}"#)
        );
        assert!(!req.rest.contains_key("cache"));
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"metadata":{"a":1,"cache":{"ttl":5}}}"#,
        )
        .unwrap();
        assert_eq!(req.cache.as_ref().map(|c| c.get()), Some(r#"{"ttl":5}"#));
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","cache":{"ttl":1},"metadata":{"cache":{"ttl":5}}}"#,
        )
        .unwrap();
        assert_eq!(req.cache.as_ref().map(|c| c.get()), Some(r#"{"ttl":1}"#));
    }

    #[test]
    fn litellms_caching_switch_becomes_cache_controls() {
        let cache = |body: &str| {
            serde_json::from_str::<ProxyRequest>(body)
                .map(|r| r.cache.map(|c| c.get().to_owned()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            cache(r#"{"model":"m","caching":false}"#)
                .unwrap()
                .as_deref(),
            Some(r#"{"no-cache":true,"no-store":true}"#)
        );
        assert_eq!(
            cache(r#"{"model":"m","caching":true}"#).unwrap().as_deref(),
            Some(r#"{"use-cache":true}"#)
        );
        // An explicit `cache` object says more and wins.
        assert_eq!(
            cache(r#"{"model":"m","caching":false,"cache":{"ttl":5}}"#)
                .unwrap()
                .as_deref(),
            Some(r#"{"ttl":5}"#)
        );
        assert!(
            cache(r#"{"model":"m","caching":"no"}"#)
                .unwrap_err()
                .contains("`caching`")
        );
    }

    #[test]
    fn the_gateways_own_fields_are_never_forwarded() {
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"seed":1,"metadata":{"trace":"t"},"litellm_metadata":{},
                "tags":["a"],"num_retries":2,"timeout":30,"request_timeout":5,
                "mock_testing_fallbacks":true,"caching":false}"#,
        )
        .unwrap();
        let forwarded: Vec<&str> = req.rest.iter().map(|(name, _)| name).collect();
        assert_eq!(forwarded, ["messages", "seed"]);
    }

    #[test]
    fn tags_come_from_the_body_and_its_metadata_once_each() {
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","tags":["job:1","app"],"metadata":{"tags":["app","env:prod"],"x":1}}"#,
        )
        .unwrap();
        assert_eq!(req.tags, ["job:1", "app", "env:prod"]);
        let req: ProxyRequest =
            serde_json::from_str(r#"{"model":"m","tags":null,"metadata":null}"#).unwrap();
        assert!(req.tags.is_empty());
        // Escaped keys are read too.
        let req: ProxyRequest =
            serde_json::from_str(r#"{"model":"m","metadata":{"t\u0061gs":["x"]}}"#).unwrap();
        assert_eq!(req.tags, ["x"]);
    }

    #[test]
    fn a_requests_own_timeout_and_retries_are_read_and_checked() {
        let limits = |body: &str| serde_json::from_str::<ProxyRequest>(body).map(|r| r.limits);
        assert_eq!(limits(r#"{"model":"m"}"#).unwrap(), CallLimits::default());
        let read = limits(r#"{"model":"m","request_timeout":2.5,"num_retries":0}"#).unwrap();
        assert_eq!(read.timeout, Some(std::time::Duration::from_millis(2500)));
        assert_eq!(read.num_retries, Some(0));
        let both = limits(r#"{"model":"m","timeout":1,"request_timeout":9}"#).unwrap();
        assert_eq!(both.timeout, Some(std::time::Duration::from_secs(1)));
        let huge = limits(r#"{"model":"m","timeout":1e300}"#).unwrap();
        assert_eq!(huge.timeout, Some(std::time::Duration::MAX));
        for bad in [
            r#"{"model":"m","timeout":0}"#,
            r#"{"model":"m","timeout":"5"}"#,
            r#"{"model":"m","num_retries":-1}"#,
            r#"{"model":"m","num_retries":11}"#,
        ] {
            assert!(limits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_tags_and_metadata_are_refused_by_name() {
        let error = |body: &str| {
            serde_json::from_str::<ProxyRequest>(body)
                .unwrap_err()
                .to_string()
        };
        assert!(error(r#"{"model":"m","tags":"a"}"#).contains("`tags` must be a list of strings"));
        assert!(error(r#"{"model":"m","metadata":{"tags":[1]}}"#).contains("`metadata.tags`"));
        assert!(
            error(r#"{"model":"m","metadata":[1]}"#).contains("`metadata` must be a JSON object")
        );
        let long = "t".repeat(MAX_TAG_BYTES + 1);
        assert!(error(&format!(r#"{{"model":"m","tags":["{long}"]}}"#)).contains("at most 256"));
        let many: Vec<String> = (0..=MAX_REQUEST_TAGS).map(|i| i.to_string()).collect();
        let body = serde_json::json!({"model": "m", "tags": many}).to_string();
        assert!(error(&body).contains("at most 32 are allowed"));
    }
}
