//! Credentials out of a logged request body. LiteLLM lets clients pass their
//! own `api_key` (and other provider credentials, `litellm_params`-style) in
//! the body, so a body is never logged with those values: each field named
//! like a credential, at any depth, is written as `"[redacted]"`.
//!
//! Most bodies name no such field: one scan over the bytes tells, and they
//! are logged as sent without being parsed. The others are rewritten field
//! by field, keeping the order and the text of everything else.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Field names whose values are credentials, compared ignoring ASCII case.
const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "api_secret",
    "api_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_ad_token",
    "vertex_credentials",
    "client_secret",
    "authorization",
    "password",
    "master_key",
];

/// What a credential's value is replaced with, as JSON.
pub const REDACTED: &[u8] = b"\"[redacted]\"";

/// What is logged for a body that names a credential field but cannot be
/// read as JSON (so its credentials cannot be told apart), as JSON.
const UNREADABLE: &[u8] =
    b"\"[not logged: the body names a credential field and is not valid JSON]\"";

/// Nesting past which a value naming a credential is replaced whole.
const MAX_DEPTH: usize = 64;

/// `body` with every credential field's value replaced; borrowed as is when
/// it names none.
pub fn body(body: &[u8]) -> Cow<'_, [u8]> {
    if !names_a_secret(body) {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let redacted = serde_json::from_slice::<&RawValue>(body)
        .and_then(|raw| redact(raw, 0, &mut out))
        .is_ok();
    Cow::Owned(if redacted { out } else { UNREADABLE.to_vec() })
}

/// Whether `name` is a credential field.
fn is_secret(name: &str) -> bool {
    SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Whether the text holds a JSON string equal to a credential field name
/// (ignoring ASCII case): a quote, the name, a quote. Values that merely
/// mention a name carry it between escaped quotes and do not count.
///
/// No name holds a quote, so a match lies between two consecutive quotes:
/// `memchr` finds the quotes, and only a stretch as long as some name is
/// compared.
fn names_a_secret(text: &[u8]) -> bool {
    let mut quotes = memchr::memchr_iter(b'"', text);
    let Some(mut open) = quotes.next() else {
        return false;
    };
    for close in quotes {
        let between = &text[open + 1..close];
        if SECRET_LENGTHS & (1u64 << between.len().min(63)) != 0
            && SECRET_FIELDS
                .iter()
                .any(|name| name.as_bytes().eq_ignore_ascii_case(between))
        {
            return true;
        }
        open = close;
    }
    false
}

/// A bit for each length a name in [`SECRET_FIELDS`] has (all under 63).
const SECRET_LENGTHS: u64 = {
    let mut mask = 0u64;
    let mut i = 0;
    while i < SECRET_FIELDS.len() {
        mask |= 1u64 << SECRET_FIELDS[i].len();
        i += 1;
    }
    mask
};

/// Writes `raw` to `out`, credentials replaced. Values that name no
/// credential are copied without being parsed.
fn redact(raw: &RawValue, depth: usize, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let text = raw.get();
    if !names_a_secret(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        out.extend_from_slice(REDACTED);
        return Ok(());
    }
    match text.as_bytes().first() {
        Some(b'{') => {
            let Fields(fields) = serde_json::from_str(text)?;
            out.push(b'{');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, name)?;
                out.push(b':');
                if is_secret(name) {
                    out.extend_from_slice(REDACTED);
                } else {
                    redact(value, depth + 1, out)?;
                }
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                redact(item, depth + 1, out)?;
            }
            out.push(b']');
        }
        // A string that is a credential's name is not a credential.
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// An object's fields in the order they were written, values unparsed.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        String::from_utf8(body(text.as_bytes()).into_owned()).unwrap_or_default()
    }

    #[test]
    fn a_body_without_credentials_is_borrowed_as_sent() {
        let text =
            br#"{"model":"m","messages":[{"role":"user","content":"say \"api_key\" twice"}]}"#;
        assert!(matches!(body(text), Cow::Borrowed(_)));
    }

    #[test]
    fn credentials_are_replaced_at_any_depth_keeping_the_rest() {
        let text = r#"{"model":"m", "api_key":"sk-live-1","temperature":0.70000000000000001,
            "user_config":{"model_list":[{"litellm_params":{"model":"x","API_KEY":"sk-2","aws_secret_access_key":{"a":1}}}]},
            "messages":[{"role":"user","content":"api_key"}]}"#;
        let out = redacted(text);
        assert!(!out.contains("sk-live-1") && !out.contains("sk-2"), "{out}");
        assert!(!out.contains("\"a\":1"), "{out}");
        assert!(
            out.starts_with(
                r#"{"model":"m","api_key":"[redacted]","temperature":0.70000000000000001,"#
            ),
            "{out}"
        );
        assert!(out.contains(r#""litellm_params":{"model":"x","API_KEY":"[redacted]","aws_secret_access_key":"[redacted]"}"#), "{out}");
        // A value that is a credential's name stays.
        assert!(out.contains(r#""content":"api_key""#), "{out}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
    }

    #[test]
    fn every_credential_name_is_found_in_any_case_after_any_string() {
        for name in SECRET_FIELDS {
            let upper = name.to_ascii_uppercase();
            let text = format!(r#"{{"a":"","b":"x","{upper}":"sk-hidden"}}"#);
            assert!(names_a_secret(text.as_bytes()), "{name}");
            assert!(!redacted(&text).contains("sk-hidden"), "{name}");
            let longer = format!(r#"{{"{name}_x":"kept"}}"#);
            assert!(!names_a_secret(longer.as_bytes()), "{name}");
        }
    }

    #[test]
    fn a_body_naming_a_credential_that_is_not_json_is_not_logged() {
        let out = redacted(r#"{"api_key":"sk-secret","#);
        assert!(!out.contains("sk-secret"), "{out}");
        assert!(out.contains("not logged"), "{out}");
    }

    #[test]
    fn deep_nesting_is_replaced_whole() {
        let text = format!(
            "{}{{\"api_key\":\"sk-deep\"}}{}",
            "[".repeat(MAX_DEPTH + 2),
            "]".repeat(MAX_DEPTH + 2)
        );
        let out = redacted(&text);
        assert!(!out.contains("sk-deep"), "{out}");
    }
}
