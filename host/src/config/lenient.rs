//! Numbers and switches written as strings. LiteLLM's pydantic models read
//! `timeout: "30"` as 30 and `drop_params: "true"` as true, and an
//! `os.environ/NAME` or `${NAME}` reference (substituted on the YAML tree
//! before any field is read) always yields a string, so every numeric and
//! boolean config field reads through these functions
//! (`#[serde(deserialize_with = "...")]`) instead of serde's strict ones.
//! A string holding no number is still refused, saying why; an empty one
//! reads as unset, because an unset variable leaves one behind and is
//! reported on its own, naming the variable.
//!
//! Keys of the free-form maps (`model_info`, and the `litellm_params`
//! without a field of their own) that conclave reads as numbers or switches
//! are typed here too, after loading, so their readers see a number.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};
use serde_yaml::Value;

use super::Config;

/// A number as written, before it is fitted to its field's type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Raw {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Raw {
    /// Reads `30`, `-1`, `0.5` or `1e-6` (surrounding whitespace allowed),
    /// and `20_000`: LiteLLM's YAML reader and Python's `int` take
    /// underscores between digits.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let joined;
        let text = if text.contains('_') {
            let bytes = text.as_bytes();
            let between_digits = bytes.iter().enumerate().all(|(i, b)| {
                *b != b'_'
                    || (i > 0
                        && bytes[i - 1].is_ascii_digit()
                        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
            });
            if !between_digits {
                return None;
            }
            joined = text.replace('_', "");
            joined.as_str()
        } else {
            text
        };
        text.parse::<u64>()
            .map(Raw::Unsigned)
            .or_else(|_| text.parse::<i64>().map(Raw::Signed))
            .or_else(|_| text.parse::<f64>().map(Raw::Float))
            .ok()
    }

    fn as_f64(self) -> f64 {
        match self {
            Raw::Unsigned(v) => v as f64,
            Raw::Signed(v) => v as f64,
            Raw::Float(v) => v,
        }
    }

    /// The value as a whole number, if it is one (`30.0` is, as in pydantic).
    fn as_whole(self) -> Option<i128> {
        match self {
            Raw::Unsigned(v) => Some(i128::from(v)),
            Raw::Signed(v) => Some(i128::from(v)),
            Raw::Float(v) => (v.is_finite() && v.fract() == 0.0).then_some(v as i128),
        }
    }

    fn yaml(self) -> serde_yaml::Number {
        match self {
            Raw::Unsigned(v) => v.into(),
            Raw::Signed(v) => v.into(),
            Raw::Float(v) => v.into(),
        }
    }
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Unsigned(v) => write!(f, "{v}"),
            Raw::Signed(v) => write!(f, "{v}"),
            Raw::Float(v) => write!(f, "{v}"),
        }
    }
}

/// A field's number type: how a number as written becomes one of it.
trait Fit: Sized {
    fn fit(raw: Raw) -> Result<Self, String>;
}

impl Fit for f64 {
    /// Any number; ranges are checked per key after loading.
    fn fit(raw: Raw) -> Result<Self, String> {
        Ok(raw.as_f64())
    }
}

impl Fit for u32 {
    fn fit(raw: Raw) -> Result<Self, String> {
        fit_whole(raw, u64::from(u32::MAX))
    }
}

impl Fit for u64 {
    fn fit(raw: Raw) -> Result<Self, String> {
        fit_whole(raw, u64::MAX)
    }
}

/// The most retries any config key may ask for. Each retry may wait out a
/// whole timeout and a backoff, so a count in the thousands (a typo, or a
/// model registered at runtime) would hold every failing request, and its
/// client, for days.
pub const MAX_CONFIG_RETRIES: u32 = 100;

/// A retry count, bounded by [`MAX_CONFIG_RETRIES`].
struct RetryCount(u32);

impl Fit for RetryCount {
    fn fit(raw: Raw) -> Result<Self, String> {
        fit_whole(raw, u64::from(MAX_CONFIG_RETRIES)).map(RetryCount)
    }
}

/// A whole number from 0 to `max` (at most the largest `T`), as in
/// pydantic's `int`.
fn fit_whole<T: TryFrom<i128>>(raw: Raw, max: u64) -> Result<T, String> {
    raw.as_whole()
        .filter(|v| (0..=i128::from(max)).contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| format!("must be a whole number from 0 to {max}, got {raw}"))
}

/// The text quoted in an error. A long one may be a secret a reference
/// pulled in by mistake, so only its length is said.
fn shown(text: &str) -> String {
    const LONGEST_SHOWN: usize = 32;
    let chars = text.chars().count();
    if chars <= LONGEST_SHOWN {
        format!("{text:?}")
    } else {
        format!("a string of {chars} characters")
    }
}

/// Fits a number to `T`, as the error type of the deserializer at hand.
fn fitted<T: Fit, E: de::Error>(raw: Raw) -> Result<Option<T>, E> {
    T::fit(raw).map(Some).map_err(E::custom)
}

/// The visitor methods shared by [`NumberVisitor`] and [`SwitchVisitor`]:
/// `null` (and no value) reads as unset, `Some` as its value.
macro_rules! absent_is_unset {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
}

/// Reads a number, a string holding one, or nothing.
struct NumberVisitor<T>(PhantomData<T>);

impl<'de, T: Fit> Visitor<'de> for NumberVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or a string holding one")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        fitted(Raw::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        fitted(Raw::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        fitted(Raw::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        match Raw::parse(v) {
            Some(raw) => fitted(raw),
            None => Err(E::custom(format_args!(
                "expected a number, got {}",
                shown(v)
            ))),
        }
    }

    absent_is_unset!();
}

/// A switch as pydantic reads one from a string (and PyYAML from a bare
/// word: `yes`, `off`), case aside.
pub(crate) fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

/// Reads a boolean, `0`/`1`, a string holding a switch, or nothing.
struct SwitchVisitor;

impl<'de> Visitor<'de> for SwitchVisitor {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false, or a string holding one")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match v {
            0 => Ok(Some(false)),
            1 => Ok(Some(true)),
            _ => Err(E::custom(format_args!("expected true or false, got {v}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(format_args!("expected true or false, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        parse_switch(v)
            .map(Some)
            .ok_or_else(|| E::custom(format_args!("expected true or false, got {}", shown(v))))
    }

    absent_is_unset!();
}

/// `general_settings.otel`: its settings, or LiteLLM's switch (`otel:
/// true`, export configured by the `OTEL_*` variables), read as settings
/// with only `enabled` set.
pub(super) fn otel_settings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<super::OtelSettings>, D::Error> {
    struct OtelVisitor;

    impl<'de> Visitor<'de> for OtelVisitor {
        type Value = Option<super::OtelSettings>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of OpenTelemetry settings, or true or false")
        }

        fn visit_bool<E: de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
            Ok(Some(super::OtelSettings {
                enabled: Some(enabled),
                ..Default::default()
            }))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match SwitchVisitor.visit_str(v)? {
                Some(enabled) => self.visit_bool(enabled),
                None => Ok(None),
            }
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }

        absent_is_unset!();
    }

    d.deserialize_any(OtelVisitor)
}

/// Reads a string, or a number or switch as the text YAML wrote it:
/// LiteLLM takes `redis_password: 90210555` and `REDIS_PORT: 6379`.
struct ScalarTextVisitor;

impl<'de> Visitor<'de> for ScalarTextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A string field that may be written as a number (a secret, a port).
pub(super) fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(ScalarTextVisitor)
}

/// A map of strings whose values may be written as numbers or switches
/// (`environment_variables`); a key with no value sets nothing (the loader
/// warns about it).
pub(super) fn scalar_text_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::HashMap<String, String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Text(#[serde(deserialize_with = "scalar_text")] String);
    let map: std::collections::HashMap<String, Option<Text>> = serde::Deserialize::deserialize(d)?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| v.map(|Text(v)| (k, v)))
        .collect())
}

/// An optional float field: `30`, `0.5`, `"30"`, `" 1e-3 "`.
pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberVisitor::<f64>(PhantomData))
}

/// An optional `u32` field: `3`, `"3"`, `3.0`.
pub(super) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_any(NumberVisitor::<u32>(PhantomData))
}

/// An optional retry count (`num_retries`, `max_retries`, the
/// `retry_policy` entries): as [`opt_u32`], at most [`MAX_CONFIG_RETRIES`].
pub(super) fn opt_retries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(d.deserialize_any(NumberVisitor::<RetryCount>(PhantomData))?
        .map(|RetryCount(n)| n))
}

/// An optional `u64` field: `60`, `"60"`, `60.0`.
pub(super) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(NumberVisitor::<u64>(PhantomData))
}

/// An optional switch: `true`, `"true"`, `"yes"`, `1`.
pub(super) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(SwitchVisitor)
}

/// `ssl_verify`: a switch (as [`opt_bool`] reads one), or else the path
/// of a CA bundle.
pub(super) fn ssl_verify<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<super::SslVerify>, D::Error> {
    use super::SslVerify;
    use serde_yaml::Value;
    match <Option<Value> as serde::Deserialize>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(verify)) => Ok(Some(SslVerify::Switch(verify))),
        Some(Value::String(text)) => Ok(Some(SslVerify::read(&text))),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 1) => {
            Ok(Some(SslVerify::Switch(n.as_u64() == Some(1))))
        }
        Some(_) => Err(de::Error::custom(
            "must be true, false, or the path of a file of PEM CA certificates",
        )),
    }
}

/// A switch that is off unless set.
pub(super) fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    opt_bool(d).map(Option::unwrap_or_default)
}

/// How a free-form key is read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Number,
    Switch,
}

/// litellm_params keys without a field of their own that are read as
/// numbers or switches: request defaults (sent upstream, where a string
/// would be refused), prices, mock and exec settings, the Responses switch.
const PARAM_KEYS: &[(&str, Kind)] = &[
    ("temperature", Kind::Number),
    ("top_p", Kind::Number),
    ("max_tokens", Kind::Number),
    ("max_completion_tokens", Kind::Number),
    ("presence_penalty", Kind::Number),
    ("frequency_penalty", Kind::Number),
    ("seed", Kind::Number),
    ("n", Kind::Number),
    ("top_logprobs", Kind::Number),
    ("logprobs", Kind::Switch),
    ("parallel_tool_calls", Kind::Switch),
    ("input_cost_per_token", Kind::Number),
    ("output_cost_per_token", Kind::Number),
    ("supports_responses", Kind::Switch),
    ("mock_latency_ms", Kind::Number),
    ("mock_chunks", Kind::Number),
    ("mock_chunk_delay_ms", Kind::Number),
    ("mock_error_status", Kind::Number),
    ("mock_error_count", Kind::Number),
    ("mock_break_after_chunks", Kind::Number),
    ("max_output_bytes", Kind::Number),
];

/// model_info keys read as numbers or switches (prices, `/model_group/info`,
/// the Responses switch). `id` is not: it names the deployment as written.
const MODEL_INFO_KEYS: &[(&str, Kind)] = &[
    ("max_tokens", Kind::Number),
    ("max_input_tokens", Kind::Number),
    ("max_output_tokens", Kind::Number),
    ("input_cost_per_token", Kind::Number),
    ("output_cost_per_token", Kind::Number),
    ("supports_vision", Kind::Switch),
    ("supports_function_calling", Kind::Switch),
    ("supports_parallel_function_calling", Kind::Switch),
    ("supports_responses", Kind::Switch),
    ("rpm", Kind::Number),
    ("tpm", Kind::Number),
];

/// Turns strings holding a number or a switch into one, in the free-form
/// maps of every deployment and composite provider bundle. A string that
/// holds neither is left for its reader to refuse by key.
pub(super) fn type_free_form(config: &mut Config) {
    for entry in &mut config.model_list {
        type_keys(&mut entry.litellm_params.extra, PARAM_KEYS);
        if let Some(info) = entry.model_info.as_mut() {
            type_keys(info, MODEL_INFO_KEYS);
        }
        entry.gather_settings();
    }
    if let Some(composite) = config.general_settings.composite_llm.as_mut() {
        for bundle in composite.providers.values_mut() {
            type_keys(&mut bundle.litellm_params.extra, PARAM_KEYS);
        }
    }
}

fn type_keys(map: &mut BTreeMap<String, Value>, keys: &[(&str, Kind)]) {
    for (key, kind) in keys {
        if let Some(value) = map.get_mut(*key)
            && let Some(new) = as_typed(value, *kind)
        {
            *value = new;
        }
    }
}

/// `value` as a number or switch, when it is a string holding one; a
/// non-finite number (`nan`, `inf`) stays a string, as no key wants one.
fn as_typed(value: &Value, kind: Kind) -> Option<Value> {
    let text = value.as_str()?;
    match kind {
        Kind::Switch => parse_switch(text).map(Value::Bool),
        Kind::Number => Raw::parse(text)
            .filter(|raw| raw.as_f64().is_finite())
            .map(|raw| Value::Number(raw.yaml())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ConfigError, Env, LoadedConfig, load_str};

    fn load_text(text: &str) -> Result<LoadedConfig, ConfigError> {
        load_str(text, Path::new("test.yaml"), Env::default())
    }

    fn deployment(params: &str) -> String {
        format!(
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n{params}"
        )
    }

    #[test]
    fn a_timeout_written_as_a_string_reads_as_seconds() {
        let loaded = load_text(&deployment(
            "      timeout: \"30\"\n      stream_timeout: \" 2.5 \"\n",
        ))
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!(params.timeout, Some(30.0));
        assert_eq!(params.stream_timeout, Some(2.5));
    }

    #[test]
    fn a_timeout_from_an_environment_reference_reads_as_seconds() {
        let yaml = format!(
            "environment_variables:\n  CONCLAVE_T_LENIENT_TIMEOUT: \"30\"\n  CONCLAVE_T_LENIENT_RPM: \"60\"\n{}",
            deployment(
                "      timeout: os.environ/CONCLAVE_T_LENIENT_TIMEOUT\n      rpm: ${CONCLAVE_T_LENIENT_RPM}\n"
            )
        );
        let loaded = load_text(&yaml).unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!(params.timeout, Some(30.0));
        assert_eq!(params.rpm, Some(60));
    }

    #[test]
    fn rates_retries_and_weights_written_as_strings_read_as_numbers() {
        let loaded = load_text(&deployment(
            "      rpm: \"60\"\n      tpm: \"1000\"\n      max_retries: \"2\"\n      weight: \"0.5\"\n      order: \"1\"\n",
        ))
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!(params.rpm, Some(60));
        assert_eq!(params.tpm, Some(1000));
        assert_eq!(params.max_retries, Some(2));
        assert_eq!(params.weight, Some(0.5));
        assert_eq!(params.order, Some(1));
    }

    #[test]
    fn router_and_litellm_settings_written_as_strings_read_as_numbers() {
        let loaded = load_text(
            "model_list: []\nrouter_settings:\n  num_retries: \"2\"\n  cooldown_time: \"5\"\n  allowed_fails: \"3\"\n  retry_policy:\n    TimeoutErrorRetries: \"4\"\nlitellm_settings:\n  num_retries: \"1\"\n  request_timeout: \"600\"\n  drop_params: \"true\"\n",
        )
        .unwrap();
        let rs = &loaded.config.router_settings;
        assert_eq!(rs.num_retries, Some(2));
        assert_eq!(rs.cooldown_time, Some(5.0));
        assert_eq!(rs.allowed_fails, Some(3));
        let policy = rs.retry_policy.as_ref().unwrap();
        assert_eq!(policy.TimeoutErrorRetries, Some(4));
        let ls = &loaded.config.litellm_settings;
        assert_eq!(ls.num_retries, Some(1));
        assert_eq!(ls.request_timeout, Some(600.0));
        assert_eq!(ls.drop_params, Some(true));
    }

    #[test]
    fn a_timeout_that_is_not_a_number_is_refused_at_its_key_path() {
        let err = load_text(&deployment("      timeout: \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "test.yaml: model_list[0].litellm_params.timeout: expected a number, got \"soon\""
            ),
            "{err}"
        );
    }

    #[test]
    fn a_count_that_is_not_a_whole_non_negative_number_is_refused() {
        for bad in ["\"1.5\"", "\"-1\"", "-1", "5000000000"] {
            let err = load_text(&format!(
                "model_list: []\nrouter_settings:\n  allowed_fails: {bad}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(
                    "router_settings.allowed_fails: must be a whole number from 0 to 4294967295"
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_retry_count_past_the_bound_is_refused_at_its_key_path() {
        let deployment_keys = ["num_retries", "max_retries"].map(|key| {
            (
                deployment(&format!("      {key}: 101\n")),
                format!("model_list[0].litellm_params.{key}"),
            )
        });
        let settings = [
            (
                "router_settings:\n  num_retries: 1000000\n",
                "router_settings.num_retries",
            ),
            (
                "litellm_settings:\n  num_retries: \"101\"\n",
                "litellm_settings.num_retries",
            ),
            (
                "router_settings:\n  retry_policy:\n    RateLimitErrorRetries: 500\n",
                "router_settings.retry_policy.RateLimitErrorRetries",
            ),
        ]
        .map(|(yaml, path)| (format!("model_list: []\n{yaml}"), path.to_owned()));
        for (yaml, path) in deployment_keys.into_iter().chain(settings) {
            let err = load_text(&yaml).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{path}: must be a whole number from 0 to 100")),
                "{path}: {err}"
            );
        }
        let at_the_bound =
            load_text("model_list: []\nrouter_settings:\n  num_retries: 100\n").unwrap();
        assert_eq!(at_the_bound.config.router_settings.num_retries, Some(100));
    }

    #[test]
    fn a_long_non_number_is_described_rather_than_quoted() {
        let long = "x".repeat(40);
        let err = load_text(&deployment(&format!("      timeout: {long}\n")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a string of 40 characters"), "{err}");
        assert!(!err.contains(&long), "{err}");
    }

    #[test]
    fn a_listed_drop_params_loads_unset_with_a_warning_naming_it() {
        let loaded = load_text(&deployment("      drop_params: [tool_choice]\n")).unwrap();
        assert_eq!(loaded.config.model_list[0].litellm_params.drop_params, None);
        let said = loaded.warnings.join("\n");
        assert!(
            said.contains(
                "test.yaml: model_list[0].litellm_params.drop_params: a list is not a switch"
            ),
            "{said}"
        );
    }

    #[test]
    fn an_unset_variable_in_a_number_is_reported_as_unset() {
        let loaded = load_text(&deployment(
            "      timeout: os.environ/CONCLAVE_T_LENIENT_NO_SUCH_TIMEOUT\n",
        ))
        .unwrap();
        assert_eq!(loaded.config.model_list[0].litellm_params.timeout, None);
        let said = loaded.warnings.join("\n");
        assert!(
            said.contains("model_list[0].litellm_params.timeout: environment variable CONCLAVE_T_LENIENT_NO_SUCH_TIMEOUT is not set; left unset"),
            "{said}"
        );
    }

    #[test]
    fn switches_read_from_pydantic_and_yaml_1_1_words() {
        for (text, want) in [
            ("\"true\"", true),
            ("\"No\"", false),
            ("\" on \"", true),
            ("0", false),
        ] {
            let loaded = load_text(&format!(
                "model_list: []\ngeneral_settings:\n  hot_reload: {text}\n"
            ))
            .unwrap();
            assert_eq!(
                loaded.config.general_settings.hot_reload,
                Some(want),
                "{text}"
            );
        }
        let err = load_text("model_list: []\ngeneral_settings:\n  hot_reload: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("general_settings.hot_reload: expected true or false, got \"maybe\""),
            "{err}"
        );
    }

    #[test]
    fn a_list_where_a_number_belongs_is_still_a_type_error() {
        let err = load_text("model_list: []\nrouter_settings:\n  timeout: [1]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("router_settings.timeout: invalid type: sequence"),
            "{err}"
        );
    }

    #[test]
    fn free_form_numbers_and_switches_written_as_strings_are_typed() {
        let yaml = format!(
            "environment_variables:\n  CONCLAVE_T_LENIENT_TEMP: \"0.2\"\n{}    model_info:\n      max_input_tokens: \"128000\"\n      id: \"7\"\n",
            deployment(
                "      temperature: ${CONCLAVE_T_LENIENT_TEMP}\n      mock_latency_ms: \"5\"\n      stop: \"1\"\n      seed: soon\n"
            )
        );
        let loaded = load_text(&yaml).unwrap();
        let entry = &loaded.config.model_list[0];
        let extra = &entry.litellm_params.extra;
        assert_eq!(extra["temperature"].as_f64(), Some(0.2));
        assert_eq!(extra["mock_latency_ms"].as_u64(), Some(5));
        assert_eq!(extra["stop"].as_str(), Some("1"));
        assert_eq!(extra["seed"].as_str(), Some("soon"));
        let info = entry.model_info.as_ref().unwrap();
        assert_eq!(info["max_input_tokens"].as_u64(), Some(128_000));
        assert_eq!(info["id"].as_str(), Some("7"));
    }

    #[test]
    fn numbers_parse_whole_signed_and_fractional_forms() {
        assert_eq!(Raw::parse(" 30 "), Some(Raw::Unsigned(30)));
        assert_eq!(Raw::parse("-1"), Some(Raw::Signed(-1)));
        assert_eq!(Raw::parse("1e-6"), Some(Raw::Float(1e-6)));
        assert_eq!(Raw::parse("soon"), None);
        assert_eq!(u32::fit(Raw::Float(3.0)), Ok(3));
        assert!(u32::fit(Raw::Float(f64::NAN)).is_err());
    }
}
