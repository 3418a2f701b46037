//! The cache key: what makes two requests the same question. It is the
//! SHA-256 (hex) of the endpoint, the resolved model group (or composite
//! profile), the namespace, the caller's team or key when the scope asks for
//! it, and a canonical form of every field that changes the answer: keys
//! sorted at every level, no whitespace. Fields that do not change the answer
//! (`user`, `metadata`, `stream`, `stream_options`, the cache controls and
//! LiteLLM's transport settings) are left out, so a streamed and a plain
//! request for the same question share one entry.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::openai::{Endpoint, RawFields};

/// Top-level fields that never change the answer.
const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "stream",
    "stream_options",
    "cache",
    "caching",
    "tags",
    "timeout",
    "request_timeout",
    "num_retries",
    "mock_testing_fallbacks",
];

/// What goes into a key besides the body.
pub struct KeyParts<'a> {
    pub endpoint: Endpoint,
    /// The model group after aliases, or the composite profile's model.
    pub model: &'a str,
    pub namespace: &'a str,
    /// The caller's team or key (per `scope`), or `None` for a global entry.
    pub tenant: Option<&'a str>,
}

/// The key of a request: 64 lowercase hex digits. `None` when a field is
/// not valid JSON (impossible for a parsed body; such a request is not cached).
pub fn key(parts: &KeyParts<'_>, body: &RawFields) -> Option<String> {
    let mut fields: Vec<(&str, &serde_json::value::RawValue)> = body
        .iter()
        .filter(|(name, _)| !IGNORED.contains(name))
        .collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    let endpoint = match parts.endpoint {
        Endpoint::ChatCompletions => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embedding",
    };
    for part in [
        "conclave-cache-v1",
        endpoint,
        parts.model,
        parts.namespace,
        parts.tenant.unwrap_or(""),
    ] {
        hasher.update(part.len().to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut canonical = Vec::new();
    for (name, raw) in fields {
        let value: Value = serde_json::from_str(raw.get()).ok()?;
        canonical.clear();
        write_canonical(&mut canonical, &value);
        hasher.update(name.len().to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(canonical.len().to_le_bytes());
        hasher.update(&canonical);
    }
    Some(crate::digest::hex(&hasher.finalize()))
}

/// `value` as JSON with object keys sorted at every level and no whitespace.
#[cfg(test)]
fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the canonical form of `value` to `out`. Strings and numbers are
/// written by serde_json's own formatter (the escaping and number forms of
/// `Value`'s `Display`), straight into the buffer.
fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(out, k);
                out.push(b':');
                write_canonical(out, v);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, v);
            }
            out.push(b']');
        }
        Value::String(s) => write_scalar(out, s),
        Value::Number(n) => write_scalar(out, n),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

/// A string (quoted and escaped) or a number, as serde_json writes it;
/// writing into a `Vec` cannot fail.
fn write_scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(body: &str) -> String {
        let fields: RawFields = serde_json::from_str(body).unwrap();
        key(
            &KeyParts {
                endpoint: Endpoint::ChatCompletions,
                model: "g",
                namespace: "ns",
                tenant: None,
            },
            &fields,
        )
        .unwrap()
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_key() {
        let a = key_of(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#);
        let b = key_of(
            "{ \"temperature\" : 0.2,\n \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ] }",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn answer_changing_fields_change_the_key_and_others_do_not() {
        let base = key_of(r#"{"messages":[],"temperature":0.2}"#);
        assert_ne!(base, key_of(r#"{"messages":[],"temperature":0.3}"#));
        assert_ne!(
            base,
            key_of(r#"{"messages":[],"temperature":0.2,"seed":1}"#)
        );
        assert_eq!(
            base,
            key_of(
                r#"{"messages":[],"temperature":0.2,"user":"u","metadata":{"x":1},"stream_options":{"include_usage":true}}"#
            )
        );
    }

    #[test]
    fn tenants_and_namespaces_get_their_own_keys() {
        let fields: RawFields = serde_json::from_str(r#"{"messages":[]}"#).unwrap();
        let of = |namespace, tenant| {
            key(
                &KeyParts {
                    endpoint: Endpoint::ChatCompletions,
                    model: "g",
                    namespace,
                    tenant,
                },
                &fields,
            )
        };
        assert_ne!(of("a", None), of("b", None));
        assert_ne!(of("a", Some("team-1")), of("a", Some("team-2")));
        assert_ne!(of("a", Some("")), of("a", None).map(|k| k + "x"));
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v: Value = serde_json::from_str(r#"{"b":[{"d":1,"c":"x\"y"}],"a":null}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":null,"b":[{"c":"x\"y","d":1}]}"#);
    }
}
