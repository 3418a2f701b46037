//! OpenAI wire format: the parts of requests conclave reads, and error bodies.
//!
//! Requests keep every field the client sent: only the fields the gateway acts
//! on are typed, the rest stays in a JSON map forwarded as is.

mod fields;
pub mod response;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use fields::{MAX_DEPTH, RawFields};

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
    /// Everything else, forwarded unchanged.
    pub rest: RawFields,
}

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
        let fallbacks = typed::<Vec<String>, D::Error>(
            rest.remove("fallbacks"),
            "fallbacks",
            "a list of model names",
        )?;
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
        let cache = take_cache_controls(&mut rest).map_err(D::Error::custom)?;
        Ok(Self {
            model,
            stream,
            fallbacks,
            disable_fallbacks,
            cache,
            rest,
        })
    }
}

/// Removes the cache controls from the forwarded fields: the top-level
/// `cache`, and `cache` inside `metadata` (only then is `metadata` parsed and
/// written again). The top-level object wins when both are present.
fn take_cache_controls(rest: &mut RawFields) -> Result<Option<Box<RawValue>>, String> {
    let top = rest.remove("cache").filter(|raw| raw.get() != "null");
    let in_metadata = rest
        .get("metadata")
        .is_some_and(|raw| raw.get().starts_with('{') && raw.get().contains("\"cache\""));
    if !in_metadata {
        return Ok(top);
    }
    let parsed = rest.parse::<serde_json::Map<String, serde_json::Value>>("metadata");
    let Some(Ok(mut metadata)) = parsed else {
        return Ok(top);
    };
    let Some(nested) = metadata.remove("cache") else {
        return Ok(top);
    };
    let raw = |v: &serde_json::Value| {
        serde_json::value::to_raw_value(v).map_err(|e| format!("`metadata` cannot be written: {e}"))
    };
    rest.insert(
        "metadata".to_owned(),
        raw(&serde_json::Value::Object(metadata))?,
    );
    match top {
        Some(top) => Ok(Some(top)),
        None if nested.is_null() => Ok(None),
        None => raw(&nested).map(Some),
    }
}

/// Which OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// The path under a provider's api_base.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }

    /// The request field that must be present for this endpoint.
    pub fn required_field(self) -> &'static str {
        match self {
            Self::ChatCompletions => "messages",
            Self::Completions => "prompt",
            Self::Embeddings => "input",
        }
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
    fn a_body_nested_past_the_parsers_limit_says_so() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        let text = describe_json_error(&error);
        assert!(text.contains("nested deeper than 128 levels"), "{text}");
        let error = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(describe_json_error(&error).contains("EOF"));
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
        assert_eq!(
            req.rest.get("metadata").map(RawValue::get),
            Some(r#"{"a":1}"#)
        );
        let req: ProxyRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"metadata":{"a":1,"cache":{"ttl":5}}}"#,
        )
        .unwrap();
        assert_eq!(req.cache.as_ref().map(|c| c.get()), Some(r#"{"ttl":5}"#));
        assert_eq!(req.rest.value("metadata"), Some(serde_json::json!({"a":1})));
    }
}
