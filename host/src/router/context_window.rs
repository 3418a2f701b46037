//! The context-window half of `router_settings.enable_pre_call_checks`: a
//! prompt estimated longer than a deployment's `max_input_tokens` is not
//! sent to it, and when no deployment of a group takes it, the group fails
//! as an upstream's "context length exceeded" would, so that
//! `context_window_fallbacks` send it to a larger model without a call
//! that could only fail.
//!
//! The estimate is made without a tokenizer: about four bytes of text a
//! token, counting the strings of the prompt's fields and nothing else (no
//! JSON syntax, no keys). Inline data (base64 images, audio and files) is
//! left out: a model counts it by other rules, and by its bytes it would
//! look many times longer than it is. So the estimate errs short, and a
//! prompt it lets through can still be refused upstream, which the
//! context-window fallbacks then handle as before.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ModelGroup;
use crate::openai::{Endpoint, RawFields};

/// The fields a chat request's prompt is made of: the messages and tool
/// definitions, and a Responses API body's own names for them.
const CHAT_FIELDS: [&str; 5] = ["messages", "tools", "input", "instructions", "system"];

/// The estimated prompt length of a request to `group`, when a pre-call
/// check should hold it to the deployments' context windows: only when
/// some deployment of the group has a known window.
pub(super) fn prompt_to_fit(
    group: &ModelGroup,
    endpoint: Endpoint,
    body: &RawFields,
) -> Option<u64> {
    if group
        .deployments
        .iter()
        .any(|d| d.max_input_tokens.is_some())
    {
        estimated_prompt_tokens(endpoint, body)
    } else {
        None
    }
}

/// The estimated prompt length of a chat or text completion request; `None`
/// for the other endpoints, whose inputs are not held to a context window.
pub fn estimated_prompt_tokens(endpoint: Endpoint, body: &RawFields) -> Option<u64> {
    let fields: &[&str] = match endpoint {
        Endpoint::ChatCompletions => &CHAT_FIELDS,
        Endpoint::Completions => &["prompt"],
        _ => return None,
    };
    Some(text_tokens(body, fields))
}

/// About one token per four bytes of the text in `fields`.
fn text_tokens(body: &RawFields, fields: &[&str]) -> u64 {
    let mut bytes = 0usize;
    for raw in fields.iter().filter_map(|f| body.get(f)) {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        // The body was checked when it arrived; should a field still not
        // read, what was counted of it stands.
        let _ = TextBytes(&mut bytes).deserialize(&mut de);
    }
    bytes.div_ceil(4) as u64
}

/// Adds up the bytes of a JSON value's strings, leaving out keys, inline
/// data URLs and the values of `data` fields (base64 payloads).
struct TextBytes<'a>(&'a mut usize);

impl<'de> DeserializeSeed<'de> for TextBytes<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextBytes<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        if !text.starts_with("data:") {
            *self.0 += text.len();
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(TextBytes(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(is_data) = map.next_key_seed(IsDataKey)? {
            if is_data {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(TextBytes(&mut *self.0))?;
            }
        }
        Ok(())
    }
}

/// Whether an object key is `data`, read without allocating.
struct IsDataKey;

impl<'de> DeserializeSeed<'de> for IsDataKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsDataKey {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == "data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(body: &str) -> u64 {
        let req: crate::openai::ProxyRequest = serde_json::from_str(body).unwrap();
        text_tokens(&req.rest, &CHAT_FIELDS)
    }

    #[test]
    fn text_is_counted_at_four_bytes_a_token_without_json_syntax() {
        let text = "a".repeat(400);
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{text}"}}],"temperature":0.5}}"#
        );
        // 400 bytes of content and 4 of role; keys, quotes and the other fields do not count.
        assert_eq!(tokens(&body), 101);
    }

    #[test]
    fn inline_data_is_not_counted() {
        let image = "A".repeat(100_000);
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[
                {{"type":"text","text":"abcdefgh"}},
                {{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}},
                {{"type":"input_audio","input_audio":{{"data":"{image}","format":"wav"}}}}
            ]}}]}}"#
        );
        // "user", "text", "abcdefgh", "image_url", "input_audio", "wav".
        assert_eq!(tokens(&body), (4 + 4 + 8 + 9 + 11 + 3_u64).div_ceil(4));
    }

    #[test]
    fn tools_and_a_responses_body_count_and_other_endpoints_are_not_checked() {
        let body =
            r#"{"model":"m","input":"abcd","instructions":"efgh","tools":[{"name":"ijkl"}]}"#;
        assert_eq!(tokens(body), 3);
        let req: crate::openai::ProxyRequest = serde_json::from_str(body).unwrap();
        let group = ModelGroup {
            name: "g".into(),
            deployments: Vec::new(),
        };
        assert_eq!(prompt_to_fit(&group, Endpoint::Embeddings, &req.rest), None);
        assert_eq!(
            prompt_to_fit(&group, Endpoint::ChatCompletions, &req.rest),
            None
        );
    }
}
