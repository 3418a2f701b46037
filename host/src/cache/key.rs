//! The cache key: what makes two requests the same question. It is the
//! SHA-256 (hex) of the endpoint, the resolved model group (or composite
//! profile), the namespace, the caller's team or key when the scope asks for
//! it, and a canonical form of every field that changes the answer: keys
//! sorted at every level, no whitespace. Fields that do not change the answer
//! (`metadata`, `stream`, `stream_options`, the cache controls and LiteLLM's
//! transport settings) are left out, so a streamed and a plain request for
//! the same question share one entry. The end user counts (the body's
//! `user`, as in LiteLLM, and the one a customer header or `metadata`
//! names): one end user's answer never serves another.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::openai::{Endpoint, RawFields};

/// Top-level fields that never change the answer.
const IGNORED: &[&str] = &[
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
    "mock_testing_context_window_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "guardrails",
    "drop_params",
    "additional_drop_params",
];

/// What goes into a key besides the body.
pub struct KeyParts<'a> {
    pub endpoint: Endpoint,
    /// The model group after aliases, or the composite profile's model.
    pub model: &'a str,
    pub namespace: &'a str,
    /// The caller's team or key (per `scope`), or `None` for a global entry.
    pub tenant: Option<&'a str>,
    /// The groups the client named in its own `fallbacks`: one of them may
    /// have answered, so a request naming none must not read that answer.
    pub fallbacks: &'a [String],
    /// The request's tags when they choose the deployment (tag filtering
    /// on), so one tier's answer never serves another's request; empty
    /// otherwise.
    pub tags: &'a [String],
    /// The end user the request names (a customer header, the body's
    /// `user` or `metadata`), or `None`.
    pub end_user: Option<&'a str>,
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
        Endpoint::Moderations => "moderation",
        Endpoint::ImageGenerations => "image_generation",
        Endpoint::Rerank => "rerank",
    };
    for part in [
        "conclave-cache-v1",
        endpoint,
        parts.model,
        parts.namespace,
        parts.tenant.unwrap_or(""),
        parts.end_user.unwrap_or(""),
    ] {
        hasher.update(part.len().to_le_bytes());
        hasher.update(part.as_bytes());
    }
    // Counted first, so no fallback name can pass for a field.
    hasher.update(parts.fallbacks.len().to_le_bytes());
    for group in parts.fallbacks {
        hasher.update(group.len().to_le_bytes());
        hasher.update(group.as_bytes());
    }
    // Sorted, so the order a client lists its tags in does not matter.
    let mut tags: Vec<&str> = parts.tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    tags.dedup();
    hasher.update(tags.len().to_le_bytes());
    for tag in tags {
        hasher.update(tag.len().to_le_bytes());
        hasher.update(tag.as_bytes());
    }
    let mut canonical = Vec::new();
    let mut work = Work::default();
    for (name, raw) in fields {
        let form = canonical_form(raw.get(), &mut canonical, &mut work)?;
        hasher.update(name.len().to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(form.len().to_le_bytes());
        hasher.update(form);
        hasher.update(work.exact.len().to_le_bytes());
        hasher.update(&work.exact);
    }
    Some(crate::digest::hex(&hasher.finalize()))
}

/// The canonical form of the JSON text `raw`, written into `out`: straight
/// from the text in one pass (object members sorted by their spans, no tree
/// of values), or, for what that pass leaves alone (escaped or repeated
/// keys, very deep nesting), from the parsed value. JSON that serde_json
/// does not take as a value (a number past `f64`, a lone surrogate escape)
/// is its own text: such a request hits only when sent again byte for byte.
fn canonical_form<'a>(raw: &str, out: &'a mut Vec<u8>, work: &mut Work) -> Option<&'a [u8]> {
    out.clear();
    work.members.clear();
    work.exact.clear();
    let mut writer = Canonical {
        bytes: raw.as_bytes(),
        out: &mut *out,
        members: &mut work.members,
        scratch: &mut work.scratch,
        exact: &mut work.exact,
    };
    let done = writer
        .value(0, 0)
        .map(|end| writer.skip_space(end) == raw.len());
    if done != Some(true) {
        out.clear();
        work.exact.clear();
        match serde_json::from_str::<Value>(raw) {
            Ok(value) => write_canonical(out, &value),
            Err(_) => {
                serde_json::from_str::<&serde_json::value::RawValue>(raw).ok()?;
                out.extend_from_slice(raw.as_bytes());
            }
        }
    }
    Some(out)
}

/// Nesting past which the one-pass writer gives up (the parsed path decides).
const MAX_WRITTEN_DEPTH: usize = 100;

/// An object member met by the one-pass writer: its key's text in the
/// input and its canonical form (`"key":value`) in the output.
#[derive(Clone)]
struct Member {
    key: std::ops::Range<usize>,
    text: std::ops::Range<usize>,
}

/// The one-pass writer's buffers, kept from one field to the next.
#[derive(Default)]
struct Work {
    members: Vec<Member>,
    scratch: Vec<u8>,
    /// The digits of integers past 64 bits in the field, which its
    /// canonical form rounds; hashed beside it.
    exact: Vec<u8>,
}

/// Writes the canonical form of JSON text as [`write_canonical`] would
/// write its parsed value: whitespace dropped, object members sorted by
/// key, strings and numbers re-written only when serde_json would write
/// them differently. `None` sends the value down the parsed path.
struct Canonical<'a> {
    bytes: &'a [u8],
    out: &'a mut Vec<u8>,
    /// Members of the objects being written, innermost last.
    members: &'a mut Vec<Member>,
    /// Where an object's members are put in order before they are copied
    /// back (one object at a time: inner objects are done by then).
    scratch: &'a mut Vec<u8>,
    /// See [`Work::exact`].
    exact: &'a mut Vec<u8>,
}

impl Canonical<'_> {
    /// Writes the value at `at` (after any whitespace); returns where it ends.
    fn value(&mut self, at: usize, depth: usize) -> Option<usize> {
        if depth > MAX_WRITTEN_DEPTH {
            return None;
        }
        let at = self.skip_space(at);
        match *self.bytes.get(at)? {
            b'{' => self.object(at + 1, depth),
            b'[' => self.array(at + 1, depth),
            b'"' => self.string(at, true).map(|(end, _)| end),
            b't' => self.literal(at, b"true"),
            b'f' => self.literal(at, b"false"),
            b'n' => self.literal(at, b"null"),
            b'-' | b'0'..=b'9' => self.number(at),
            _ => None,
        }
    }

    fn skip_space(&self, mut at: usize) -> usize {
        while matches!(self.bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at += 1;
        }
        at
    }

    /// The members are written as they come (`"key":value,`); when their
    /// keys were not already in order they are copied out sorted and back
    /// over the same bytes, which keep their length.
    fn object(&mut self, at: usize, depth: usize) -> Option<usize> {
        let start = self.out.len();
        let base = self.members.len();
        self.out.push(b'{');
        let mut at = self.skip_space(at);
        if self.bytes.get(at) == Some(&b'}') {
            self.out.push(b'}');
            return Some(at + 1);
        }
        loop {
            let key_at = self.skip_space(at);
            let (key_end, escaped) = self.string(key_at, false)?;
            // Sorted by the decoded key: equal to the text only unescaped.
            if escaped {
                return None;
            }
            at = self.skip_space(key_end);
            if self.bytes.get(at) != Some(&b':') {
                return None;
            }
            let member_start = self.out.len();
            self.out.extend_from_slice(&self.bytes[key_at..key_end]);
            self.out.push(b':');
            at = self.value(at + 1, depth + 1)?;
            self.members.push(Member {
                key: key_at + 1..key_end - 1,
                text: member_start..self.out.len(),
            });
            at = self.skip_space(at);
            match self.bytes.get(at)? {
                b',' => {
                    self.out.push(b',');
                    at += 1;
                }
                b'}' => break,
                _ => return None,
            }
        }
        self.out.push(b'}');
        let bytes = self.bytes;
        let members = &mut self.members[base..];
        let in_order = members
            .windows(2)
            .all(|w| bytes[w[0].key.clone()] < bytes[w[1].key.clone()]);
        if !in_order {
            members.sort_unstable_by(|a, b| bytes[a.key.clone()].cmp(&bytes[b.key.clone()]));
            // A repeated key: the parsed path keeps the last one.
            if members
                .windows(2)
                .any(|w| bytes[w[0].key.clone()] == bytes[w[1].key.clone()])
            {
                return None;
            }
            self.scratch.clear();
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b',');
                }
                self.scratch.extend_from_slice(&self.out[m.text.clone()]);
            }
            let inside = start + 1..self.out.len() - 1;
            self.out
                .get_mut(inside)?
                .copy_from_slice(self.scratch.as_slice());
        }
        self.members.truncate(base);
        Some(at + 1)
    }

    fn array(&mut self, at: usize, depth: usize) -> Option<usize> {
        self.out.push(b'[');
        let mut at = self.skip_space(at);
        if self.bytes.get(at) == Some(&b']') {
            self.out.push(b']');
            return Some(at + 1);
        }
        loop {
            at = self.value(at, depth + 1)?;
            at = self.skip_space(at);
            match self.bytes.get(at)? {
                b',' => {
                    self.out.push(b',');
                    at += 1;
                }
                b']' => {
                    self.out.push(b']');
                    return Some(at + 1);
                }
                _ => return None,
            }
        }
    }

    /// Reads the string starting at `at` (its opening quote), writing it
    /// when `write` is set; returns its end and whether it holds escapes.
    /// An escaped string is written as serde_json writes its decoded text.
    fn string(&mut self, at: usize, write: bool) -> Option<(usize, bool)> {
        if self.bytes.get(at) != Some(&b'"') {
            return None;
        }
        let rest = self.bytes.get(at + 1..)?;
        let mut escaped = false;
        let mut i = 0;
        loop {
            i += memchr::memchr2(b'"', b'\\', rest.get(i..)?)?;
            if rest[i] == b'"' {
                break;
            }
            escaped = true;
            i += 2;
        }
        let end = at + 1 + i + 1;
        let text = self.bytes.get(at..end)?;
        if write {
            if escaped {
                let decoded: String = serde_json::from_slice(text).ok()?;
                write_scalar(self.out, &decoded);
            } else {
                self.out.extend_from_slice(text);
            }
        }
        Some((end, escaped))
    }

    /// A number, as serde_json writes the number it parses from the text.
    /// An integer too large for 64 bits is also noted by its digits in
    /// `exact`: serde_json rounds it to the nearest `f64`, and two
    /// different integers (two seeds, say), which an upstream may read
    /// exactly, must not share a key.
    fn number(&mut self, at: usize) -> Option<usize> {
        let len = self
            .bytes
            .get(at..)?
            .iter()
            .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            .unwrap_or(self.bytes.len() - at);
        let end = at + len;
        let text = self.bytes.get(at..end)?;
        let number: serde_json::Number = serde_json::from_slice(text).ok()?;
        if number.is_f64() && !text.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            self.exact.extend_from_slice(text);
            self.exact.push(b',');
        }
        write_scalar(self.out, &number);
        Some(end)
    }

    fn literal(&mut self, at: usize, word: &[u8]) -> Option<usize> {
        let end = at + word.len();
        if self.bytes.get(at..end)? != word {
            return None;
        }
        self.out.extend_from_slice(word);
        Some(end)
    }
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
                fallbacks: &[],
                tags: &[],
                end_user: None,
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
                r#"{"messages":[],"temperature":0.2,"metadata":{"x":1},"stream_options":{"include_usage":true}}"#
            )
        );
    }

    #[test]
    fn each_end_user_gets_their_own_key() {
        let alice = key_of(r#"{"messages":[],"user":"alice"}"#);
        assert_ne!(alice, key_of(r#"{"messages":[],"user":"bob"}"#));
        assert_ne!(alice, key_of(r#"{"messages":[]}"#));
        assert_eq!(alice, key_of(r#"{"user":"alice","messages":[]}"#));
    }

    #[test]
    fn integers_past_64_bits_keep_their_own_keys() {
        let seed = |n: &str| key_of(&format!(r#"{{"model":"m","seed":{n}}}"#));
        assert_ne!(seed("18446744073709551616"), seed("18446744073709551617"));
        assert_ne!(seed("-9223372036854775809"), seed("-9223372036854775810"));
        assert_eq!(seed("18446744073709551616"), seed("18446744073709551616"));
        // Within 64 bits, and for fractions, the parsed number decides.
        assert_eq!(seed("1.0e1"), seed("10.0"));
        assert_eq!(seed("7"), seed("7"));
    }

    #[test]
    fn tenants_namespaces_and_own_fallbacks_get_their_own_keys() {
        let fields: RawFields = serde_json::from_str(r#"{"messages":[]}"#).unwrap();
        let of = |namespace, tenant| {
            key(
                &KeyParts {
                    endpoint: Endpoint::ChatCompletions,
                    model: "g",
                    namespace,
                    tenant,
                    fallbacks: &[],
                    tags: &[],
                    end_user: None,
                },
                &fields,
            )
        };
        assert_ne!(of("a", None), of("b", None));
        let with_fallbacks = key(
            &KeyParts {
                endpoint: Endpoint::ChatCompletions,
                model: "g",
                namespace: "a",
                tenant: None,
                fallbacks: &["other".to_owned()],
                tags: &[],
                end_user: None,
            },
            &fields,
        );
        assert_ne!(
            with_fallbacks,
            of("a", None),
            "a client's own fallbacks get their own key"
        );
        assert_ne!(of("a", Some("team-1")), of("a", Some("team-2")));
        assert_ne!(of("a", Some("")), of("a", None).map(|k| k + "x"));
    }

    #[test]
    fn tags_that_choose_the_deployment_get_their_own_keys_in_any_order() {
        let fields: RawFields = serde_json::from_str(r#"{"messages":[]}"#).unwrap();
        let of = |tags: &[&str]| {
            let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
            key(
                &KeyParts {
                    endpoint: Endpoint::ChatCompletions,
                    model: "g",
                    namespace: "",
                    tenant: None,
                    fallbacks: &[],
                    tags: &tags,
                    end_user: None,
                },
                &fields,
            )
        };
        assert_ne!(of(&["free"]), of(&["paid"]));
        assert_ne!(of(&["free"]), of(&[]));
        assert_eq!(of(&["a", "b"]), of(&["b", "a", "b"]));
        assert_ne!(of(&["ab"]), of(&["a", "b"]));
    }

    /// The canonical form the key hashes, whichever path made it.
    fn form_of(raw: &str) -> Option<Vec<u8>> {
        let (mut out, mut work) = (Vec::new(), Work::default());
        canonical_form(raw, &mut out, &mut work).map(<[u8]>::to_vec)
    }

    #[test]
    fn text_is_written_in_the_form_of_its_parsed_value() {
        for raw in [
            r#"{"a":[1,-2,0.5,1e-7,true,null],"b":{"c":"x\"y\\z\n","d":"é/€"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{ "a": 1 }"#,
            r#"[0.50,1E3,-0,1.0e0,10000000000000000000000,"\u0041","\/"]"#,
            r#"{"\u0062":1,"a":{"z":[],"y":{}}}"#,
            r#"{"a":"\u001f\t"}"#,
            " { \"role\" : \"user\",\n \"content\": [ {\"type\":\"text\", \"text\":\"hi\"} ] } ",
            r#"{"z":{"b":[{"y":1,"x":2}],"a":{}},"y":[],"x":{"d":null,"c":false}}"#,
        ] {
            let parsed: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                form_of(raw).unwrap(),
                canonical(&parsed).into_bytes(),
                "{raw}"
            );
        }
        assert_eq!(form_of("[1,"), None);
        // What serde_json takes for no value is keyed by its text.
        for (one, other) in [
            (r#"{"a":1e400}"#, r#"{"a":1e401}"#),
            (r#"{"a":"\ud800"}"#, r#"{"a":"\ud801"}"#),
        ] {
            let (one, other) = (form_of(one).unwrap(), form_of(other).unwrap());
            assert_ne!(one, other);
        }
    }

    proptest::proptest! {
        #[test]
        fn both_paths_give_the_parsed_canonical_form(value in json_value()) {
            // Against the text parsed again: a float's text need not parse
            // back to the very same `f64`, and the key is of the text.
            for raw in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                let parsed: Value = serde_json::from_str(&raw).unwrap();
                proptest::prop_assert_eq!(form_of(&raw).unwrap(), canonical(&parsed).into_bytes());
            }
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
            r#"[a-c"\\\n\x01/é]{0,4}"#.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(r#"[a-d"é]{0,3}"#, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v: Value = serde_json::from_str(r#"{"b":[{"d":1,"c":"x\"y"}],"a":null}"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":null,"b":[{"c":"x\"y","d":1}]}"#);
    }
}
