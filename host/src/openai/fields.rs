//! A request body's top-level fields, each value kept as the JSON text the
//! client sent.
//!
//! A proxy reads a handful of fields and forwards the rest. Building a JSON
//! tree for `messages` only to write it out again was most of the CPU a plain
//! request cost; raw values are checked for validity once, copied once, and
//! written out verbatim, in the client's order and with the client's exact
//! numbers. Code that needs a field's structure (composite strategies, the
//! in-process providers) parses that field when it asks for it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Most top-level fields a body may have. OpenAI's largest request has a
/// few dozen; the cap keeps a hostile body's cost small and predictable.
pub const MAX_FIELDS: usize = 1024;

/// The refusal of a body with more than [`MAX_FIELDS`] top-level fields,
/// worded the same on every route.
pub fn too_many_fields() -> String {
    format!("the body has more than {MAX_FIELDS} top-level fields (the limit is {MAX_FIELDS})")
}

/// Fields a body may have before repeated keys are looked up in an index
/// instead of by scanning the ones read so far.
const SCANNED_FIELDS: usize = 16;

/// Deepest nesting accepted in a field's value, counting the body itself as
/// level 1: serde_json's own recursion limit, so whatever is accepted here
/// can later be parsed into a tree by any code that needs one.
pub const MAX_DEPTH: usize = 128;

/// The fields of one JSON object, in the order they were received.
#[derive(Debug, Clone, Default)]
pub struct RawFields {
    entries: Vec<(FieldName, Box<RawValue>)>,
}

/// A field's name: one of the API's own names is not copied for every
/// request that sends it, any other name is.
type FieldName = Cow<'static, str>;

/// Defines [`known_field`] over a list of names: a `match`, which the
/// compiler turns into a switch on the length and one comparison.
macro_rules! known_fields {
    ($($name:literal),* $(,)?) => {
        /// `name` when it is one of the request fields of the APIs conclave
        /// serves (OpenAI's chat, completions, embeddings and Responses,
        /// Anthropic's Messages, LiteLLM's own), which nearly every body is
        /// made of.
        fn known_field(name: &str) -> Option<&'static str> {
            match name {
                $($name => Some($name),)*
                _ => None,
            }
        }
    };
}

known_fields![
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "stop_sequences",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "user",
    "metadata",
    "response_format",
    "reasoning_effort",
    "reasoning",
    "thinking",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "store",
    "prompt",
    "suffix",
    "echo",
    "best_of",
    "input",
    "encoding_format",
    "dimensions",
    "instructions",
    "text",
    "include",
    "previous_response_id",
    "truncation",
    "system",
    "tags",
    "timeout",
    "request_timeout",
    "num_retries",
    "fallbacks",
    "disable_fallbacks",
    "cache",
    "caching",
    "litellm_metadata",
    "mock_testing_fallbacks",
];

/// `name` as a [`FieldName`], copied only when it is not a known field.
fn field_name(name: &str) -> FieldName {
    match known_field(name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    }
}

/// Reads an object key as a [`FieldName`], without copying a known one.
struct FieldNameSeed;

impl<'de> DeserializeSeed<'de> for FieldNameSeed {
    type Value = FieldName;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldName, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldNameSeed {
    type Value = FieldName;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FieldName, E> {
        Ok(field_name(name))
    }
}

impl RawFields {
    /// The raw JSON of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Removes `key`, returning its raw JSON.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    /// Moves every field that `named` picks into a set of its own, in one
    /// pass (cheaper than removing the names one by one).
    pub fn split_off(&mut self, named: impl Fn(&str) -> bool) -> RawFields {
        let mut taken = RawFields::default();
        if !self.entries.iter().any(|(k, _)| named(k)) {
            return taken;
        }
        let (picked, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(k, _)| named(k));
        taken.entries = picked;
        self.entries = kept;
        taken
    }

    /// A copy in which `edit` gives each field its name, or leaves it out
    /// (`None`). The names it gives must stay distinct.
    pub fn edited(
        &self,
        edit: impl Fn(&Cow<'static, str>, &RawValue) -> Option<Cow<'static, str>>,
    ) -> RawFields {
        let entries = self
            .entries
            .iter()
            .filter_map(|(k, v)| Some((edit(k, v)?, v.clone())))
            .collect();
        RawFields { entries }
    }

    /// Sets `key`, replacing an earlier value in place (JSON's last-wins rule).
    pub fn insert(&mut self, key: impl Into<FieldName>, value: Box<RawValue>) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Sets `key` to `value`, serialized.
    pub fn insert_value(&mut self, key: &str, value: &Value) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.insert(field_name(key), raw);
        Ok(())
    }

    /// `key` parsed as `T`: `None` when absent, an error when it does not fit.
    pub fn parse<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.get(key).map(|raw| serde_json::from_str(raw.get()))
    }

    /// `key` as a JSON value, or `None` when absent (or, impossibly, invalid).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.parse(key).and_then(Result::ok)
    }

    /// Whether `key` holds a JSON array.
    pub fn is_array(&self, key: &str) -> bool {
        self.get(key).is_some_and(|raw| raw.get().starts_with('['))
    }

    /// Whether `key` holds a JSON string.
    pub fn is_string(&self, key: &str) -> bool {
        self.get(key).is_some_and(|raw| raw.get().starts_with('"'))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every field parsed, for code that works on the whole structure.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        self.entries
            .iter()
            .map(|(k, v)| Ok((k.to_string(), serde_json::from_str(v.get())?)))
            .collect()
    }

    /// The fields of `map`, serialized.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, serde_json::Error> {
        let entries = map
            .iter()
            .map(|(k, v)| Ok((field_name(k), serde_json::value::to_raw_value(v)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self { entries })
    }
}

impl Serialize for RawFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawFields {
    /// Only from a JSON text (serde_json's raw values cannot come from a
    /// `Value`); anything but an object is refused.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RawFields, A::Error> {
                use serde::de::Error;
                let capacity = access.size_hint().unwrap_or(8).min(MAX_FIELDS);
                let mut entries: Vec<(FieldName, Box<RawValue>)> = Vec::with_capacity(capacity);
                // Position of each key in `entries`, built once a body has
                // more fields than a scan finds quickly: a repeated key then
                // costs one lookup, so any body parses in linear time.
                let mut index: Option<HashMap<FieldName, usize>> = None;
                let mut seen = 0usize;
                while let Some(key) = access.next_key_seed(FieldNameSeed)? {
                    seen += 1;
                    if seen > MAX_FIELDS {
                        return Err(A::Error::custom(too_many_fields()));
                    }
                    let value: Box<RawValue> = access.next_value()?;
                    if nested_too_deep(value.get()) {
                        return Err(A::Error::custom(format_args!(
                            "field `{key}` is nested deeper than {MAX_DEPTH} levels (the limit is {MAX_DEPTH})"
                        )));
                    }
                    if index.is_none() && entries.len() >= SCANNED_FIELDS {
                        index = Some(
                            entries
                                .iter()
                                .enumerate()
                                .map(|(at, (k, _))| (k.clone(), at))
                                .collect(),
                        );
                    }
                    let earlier = match &index {
                        Some(index) => index.get(&key).copied(),
                        None => entries.iter().position(|(k, _)| *k == key),
                    };
                    match earlier {
                        Some(at) => entries[at].1 = value,
                        None => {
                            if let Some(index) = &mut index {
                                index.insert(key.clone(), entries.len());
                            }
                            entries.push((key, value));
                        }
                    }
                }
                Ok(RawFields { entries })
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// Whether arrays and objects nest [`MAX_DEPTH`] levels or more in a valid
/// JSON text: a client's body, or an upstream's answer or stream event,
/// which clients (Python's `json` among them) could not read either.
/// Nesting can never go deeper than the number of opening brackets, and
/// counting those is a loop the compiler vectorizes, so almost every text
/// is settled without the exact byte-by-byte scan.
pub fn nested_too_deep(json: &str) -> bool {
    opening_brackets(json.as_bytes()) >= MAX_DEPTH && nesting_depth(json) >= MAX_DEPTH
}

/// How many `[` and `{` bytes `json` holds, strings included. Counted in
/// byte-wide sums over runs of at most 255 bytes: a `usize` count per byte
/// makes the compiler widen every lane to 64 bits, about five instructions
/// a byte, where byte-wide lanes take 16 bytes in a few.
fn opening_brackets(json: &[u8]) -> usize {
    json.chunks(255)
        .map(|run| {
            // `[` and `{` differ only in bit 5, and no other byte maps to `{`.
            let in_run: u8 = run.iter().map(|&b| u8::from(b | 0x20 == b'{')).sum();
            usize::from(in_run)
        })
        .sum()
}

/// How deeply arrays and objects nest in a valid JSON text, in one pass:
/// brackets inside strings (escapes included) do not count.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_field_names_are_not_copied_and_others_are_kept_as_sent() {
        let fields: RawFields =
            serde_json::from_str(r#"{"messages":[],"x_vendor":1,"temperature":0.2,"x_vendor":2}"#)
                .unwrap();
        let names: Vec<(&str, bool)> = fields
            .entries
            .iter()
            .map(|(k, _)| (k.as_ref(), matches!(k, Cow::Borrowed(_))))
            .collect();
        assert_eq!(
            names,
            [
                ("messages", true),
                ("x_vendor", false),
                ("temperature", true)
            ]
        );
        assert_eq!(fields.get("x_vendor").unwrap().get(), "2");
    }

    #[test]
    fn values_are_written_back_verbatim_in_order() {
        let text = r#"{"z":1.50,"a":[1, 2],"big":123456789012345678901234567890,"s":"\u00e9"}"#;
        let fields: RawFields = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"z":1.50,"a":[1, 2],"big":123456789012345678901234567890,"s":"\u00e9"}"#
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let fields: RawFields = serde_json::from_str(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields.get("a").map(RawValue::get), Some("3"));
    }

    #[test]
    fn repeated_keys_past_the_scanned_fields_keep_their_last_value_in_place() {
        let keys = SCANNED_FIELDS + 4;
        let first: Vec<String> = (0..keys).map(|i| format!("\"k{i}\":{i}")).collect();
        let again: Vec<String> = (0..keys).map(|i| format!("\"k{i}\":{}", i + 100)).collect();
        let text = format!("{{{},{}}}", first.join(","), again.join(","));
        let fields: RawFields = serde_json::from_str(&text).unwrap();
        assert_eq!(fields.len(), keys);
        for (i, (key, value)) in fields.iter().enumerate() {
            assert_eq!(key, format!("k{i}"));
            assert_eq!(value.get(), (i + 100).to_string());
        }
    }

    #[test]
    fn invalid_json_and_non_objects_are_refused() {
        assert!(serde_json::from_str::<RawFields>(r#"{"a":[1,}"#).is_err());
        assert!(serde_json::from_str::<RawFields>("[1]").is_err());
    }

    #[test]
    fn fields_parse_on_demand() {
        let mut fields: RawFields =
            serde_json::from_str(r#"{"messages":[{"role":"user"}],"n":2}"#).unwrap();
        assert!(fields.is_array("messages"));
        assert!(!fields.is_array("n"));
        assert_eq!(fields.parse::<u32>("n").unwrap().unwrap(), 2);
        fields.insert_value("n", &Value::from(3)).unwrap();
        assert_eq!(fields.value("n"), Some(Value::from(3)));
        let map = fields.to_map().unwrap();
        assert_eq!(RawFields::from_map(&map).unwrap().len(), 2);
    }

    #[test]
    fn more_than_the_field_limit_is_refused_naming_it() {
        let at_limit: Vec<String> = (0..MAX_FIELDS).map(|i| format!("\"k{i}\":{i}")).collect();
        let body = format!("{{{}}}", at_limit.join(","));
        assert_eq!(
            serde_json::from_str::<RawFields>(&body).unwrap().len(),
            MAX_FIELDS
        );
        let over = format!("{{{},\"one_more\":0}}", at_limit.join(","));
        let err = serde_json::from_str::<RawFields>(&over).unwrap_err();
        assert!(err.to_string().contains("1024"), "{err}");
    }

    #[test]
    fn sixty_thousand_repeated_keys_parse_in_linear_time() {
        // Repeats are fields too: a body of 60k copies of one key is refused
        // at the limit instead of costing a scan per key.
        let body = format!("{{{}\"a\":0}}", "\"a\":0,".repeat(60_000));
        let started = std::time::Instant::now();
        assert!(serde_json::from_str::<RawFields>(&body).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn nesting_beyond_the_depth_limit_is_refused() {
        let nested = |levels: usize| {
            format!(
                "{{\"messages\":{}{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // The body is level 1, so the deepest accepted value has one level less.
        let deepest = nested(MAX_DEPTH - 1);
        let fields: RawFields = serde_json::from_str(&deepest).unwrap();
        assert!(
            fields.value("messages").is_some(),
            "accepted means parseable"
        );
        let err = serde_json::from_str::<RawFields>(&nested(MAX_DEPTH)).unwrap_err();
        assert!(err.to_string().contains("128"), "{err}");
        assert!(serde_json::from_str::<RawFields>(&nested(200_000)).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        assert_eq!(nesting_depth(r#"["[[[\"{{{", {"a": "]]]"}]"#), 2);
        assert_eq!(nesting_depth("1"), 0);
        let many_in_a_string = format!("[\"{}\"]", "[{".repeat(MAX_DEPTH));
        assert!(!nested_too_deep(&many_in_a_string));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(nested_too_deep(&deep));
    }

    #[test]
    fn opening_brackets_are_counted_exactly_across_runs() {
        // Every byte value, and runs of brackets longer than one 255-byte sum.
        let all: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let brackets = vec![b'{'; 1000];
        for bytes in [&all[..], &brackets[..], b"", b"[", &all[..254], &all[..256]] {
            let plain = bytes.iter().filter(|b| matches!(b, b'[' | b'{')).count();
            assert_eq!(opening_brackets(bytes), plain);
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "[a-z\\\\\"\\[\\]{}é ]{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn any_json_object_round_trips_its_fields(
                map in prop::collection::btree_map("[a-z_\"\\\\]{1,6}", json_value(), 0..12)
            ) {
                let map: Map<String, Value> = map.into_iter().collect();
                let text = serde_json::to_string(&map).unwrap();
                let fields: RawFields = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(fields.len(), map.len());
                prop_assert_eq!(&fields.to_map().unwrap(), &map);
                prop_assert_eq!(serde_json::to_string(&fields).unwrap(), text);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(fields) = serde_json::from_slice::<RawFields>(&bytes) {
                    prop_assert!(fields.len() <= MAX_FIELDS);
                }
            }

            #[test]
            fn json_shaped_noise_never_panics(text in "[{}\\[\\]\":,a0-9 \\\\]{0,256}") {
                let _ = serde_json::from_str::<RawFields>(&text);
                let _ = nesting_depth(&text);
            }
        }
    }
}
