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
    "proxy-authorization",
    // The key headers of OpenAI-style gateways, Anthropic, Azure and
    // Google, as a client may set them in `extra_headers`.
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "access_token",
    "refresh_token",
    "private_key",
    "password",
    "master_key",
    "pass",
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

/// Endings that make a field name a credential's, whatever comes before
/// (`openai_api_key`, `aws_bearer_token`, `client_secret`), compared as
/// [`is_secret`] compares.
const SECRET_ENDINGS: &[&str] = &[
    "apikey",
    "apikeys",
    "credential",
    "passphrase",
    "pwd",
    "secret",
    "secretkey",
    "accesskey",
    "sessionkey",
    "subscriptionkey",
    "token",
    "password",
    "passwd",
    "privatekey",
    "credentials",
    "auth",
    "bearer",
    "cookie",
];

/// Longest field name (without `-` and `_`) looked at; no credential's is
/// longer.
const MAX_NAME: usize = 64;

/// Whether `name` is a credential field: one of [`SECRET_FIELDS`], or one
/// with a [`SECRET_ENDINGS`] ending, ignoring ASCII case, surrounding
/// whitespace, `-` and `_` (so `apiKey` and `"api_key "` are too).
fn is_secret(name: &[u8]) -> bool {
    let mut folded = [0u8; MAX_NAME];
    let mut len = 0;
    for &b in name.trim_ascii() {
        if matches!(b, b'_' | b'-') {
            continue;
        }
        let Some(slot) = folded.get_mut(len) else {
            return false;
        };
        *slot = b.to_ascii_lowercase();
        len += 1;
    }
    let folded = &folded[..len];
    let same = |field: &str| {
        field
            .bytes()
            .filter(|b| !matches!(b, b'_' | b'-'))
            .eq(folded.iter().copied())
    };
    SECRET_FIELDS.iter().any(|f| same(f))
        || SECRET_ENDINGS
            .iter()
            .any(|e| folded.ends_with(e.as_bytes()))
}

/// Whether the text has an object key that is a credential field name
/// (ignoring ASCII case, escapes decoded).
///
/// A key is the string before a `:`, so only the text before each colon is
/// looked at: back over whitespace to a closing quote, back to the quote
/// before it. Colons inside values find no such string, or one that is not
/// a name; a key with an escape that does not decode counts as a name, and
/// the parsed path decides.
fn names_a_secret(text: &[u8]) -> bool {
    memchr::memchr_iter(b':', text).any(|colon| key_before(text, colon).is_some_and(is_secret_key))
}

/// The string that ends just before `colon` (whitespace aside), if it is
/// short enough to be a name. A quote after an odd run of backslashes is
/// escaped: a string does not end (or start) there.
fn key_before(text: &[u8], colon: usize) -> Option<Key<'_>> {
    let before = text.get(..colon)?;
    let close = before
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if before.get(close) != Some(&b'"') || is_escaped(before, close) {
        return None;
    }
    // Back to the opening quote, noting any escape on the way.
    let mut escapes = false;
    let mut open = close;
    loop {
        open = open.checked_sub(1)?;
        match before.get(open)? {
            b'"' => break,
            _ if close - open > MAX_ESCAPED_NAME => return None,
            b'\\' => escapes = true,
            _ => {}
        }
    }
    if is_escaped(before, open) {
        return None;
    }
    Some(Key {
        raw: before.get(open + 1..close)?,
        escapes,
    })
}

/// A JSON string's text between its quotes.
struct Key<'a> {
    raw: &'a [u8],
    /// Whether it holds a backslash (an escape to decode).
    escapes: bool,
}

/// Whether the byte at `at` follows an odd number of backslashes.
fn is_escaped(text: &[u8], at: usize) -> bool {
    let run = text
        .get(..at)
        .map_or(0, |t| t.iter().rev().take_while(|&&b| b == b'\\').count());
    run % 2 == 1
}

/// Whether `key` is a credential field name. Written without escapes
/// (almost always), its length and bytes are compared; otherwise it is
/// decoded first, and a text that does not decode counts as a name.
fn is_secret_key(key: Key<'_>) -> bool {
    if !key.escapes {
        return is_secret(key.raw);
    }
    let mut quoted = Vec::with_capacity(key.raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(key.raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).map_or(true, |name| is_secret(name.as_bytes()))
}

/// The longest a name [`is_secret`] looks at can be written in JSON (with
/// room for separators and whitespace): every character as a six-byte
/// `\uXXXX` escape.
const MAX_ESCAPED_NAME: usize = 6 * 2 * MAX_NAME;

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
                if is_secret(name.as_bytes()) {
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
    fn provider_specific_and_differently_spelled_credential_names_are_found() {
        for name in [
            "openai_api_key",
            "anthropic_api_key",
            "azure_api_key",
            "aws_bearer_token",
            "apiKey",
            "secret",
            "api_key ",
            "X-Api-Key",
            "google_credentials",
            "Ocp-Apim-Subscription-Key",
            "Cookie",
            "X-Custom-Auth",
            "secret_key",
            "bearer",
        ] {
            let text = format!(r#"{{"model":"m","{name}":"sk-hidden"}}"#);
            assert!(!redacted(&text).contains("sk-hidden"), "{name}");
        }
        for kept in [
            "author",
            "max_tokens",
            "model",
            "keyword",
            "secretary_name",
            "token_count",
        ] {
            let text = format!(r#"{{"{kept}":"visible"}}"#);
            assert!(matches!(body(text.as_bytes()), Cow::Borrowed(_)), "{kept}");
        }
    }

    #[test]
    fn a_credential_name_written_with_escapes_or_spaces_is_found() {
        for text in [
            r#"{"model":"m","api\u005fkey":"sk-escaped"}"#,
            r#"{"model":"m","\u0050ASSWORD" :  "sk-escaped"}"#,
            "{\"model\":\"m\",\n  \"api_key\"\n\t: \"sk-escaped\"}",
        ] {
            assert!(names_a_secret(text.as_bytes()), "{text}");
            let out = redacted(text);
            assert!(!out.contains("sk-escaped"), "{out}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&out).is_ok(),
                "{out}"
            );
        }
    }

    #[test]
    fn names_in_values_and_colons_in_strings_are_not_keys() {
        for text in [
            r#"{"content":"api_key"}"#,
            r#"{"content":"see \"api_key\": here","url":"http://x:80"}"#,
            r#"{"content":"\"password\":\"x\""}"#,
        ] {
            assert!(matches!(body(text.as_bytes()), Cow::Borrowed(_)), "{text}");
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
