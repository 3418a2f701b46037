//! What to add to "unknown key, ignored": the key the writer most likely
//! meant, when one of the section's own keys (or, in `litellm_params`, one
//! of the keys conclave reads there) is a near miss of it; the settings
//! section that reads it, when it was written in another one; or that a
//! dot does not nest keys. Without the hint a misspelt setting goes
//! unnoticed: the file loads and the setting keeps its default.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{
    CacheParams, Config, GeneralSettings, LitellmSettings, ModelEntry, RouterSettings,
    RoutingStrategyArgs,
};

/// The sections holding settings, whose keys another section may be
/// written for by mistake.
const SETTINGS_SECTIONS: [&str; 3] = ["general_settings", "litellm_settings", "router_settings"];

/// Longest key a hint is looked for: a longer one is no typo of a setting.
const LONGEST_KEY: usize = 64;

/// The sections whose keys are known, by key path (a list's items as
/// `[]`), each with the names its struct declares.
fn sections() -> [(&'static str, &'static [&'static str]); 7] {
    [
        ("general_settings", field_names::<GeneralSettings>()),
        ("litellm_settings", field_names::<LitellmSettings>()),
        ("router_settings", field_names::<RouterSettings>()),
        ("", field_names::<Config>()),
        ("model_list[]", field_names::<ModelEntry>()),
        (
            "litellm_settings.cache_params",
            field_names::<CacheParams>(),
        ),
        (
            "router_settings.routing_strategy_args",
            field_names::<RoutingStrategyArgs>(),
        ),
    ]
}

/// The hint for the unknown `key` of the mapping at `section`
/// (`router_settings`, `model_list[3]`), starting with "; ", or nothing
/// when no known key is close to it.
pub fn hint(section: &str, key: &str) -> String {
    if key.len() > LONGEST_KEY {
        return String::new();
    }
    let section = without_indices(section);
    let sections = sections();
    if section.is_empty()
        && let Some((first, rest)) = key.split_once('.')
        && sections.iter().any(|(name, _)| *name == first)
    {
        return format!("; a dot does not nest keys: write {rest} under {first}");
    }
    let written = normalized(key);
    let own = sections
        .iter()
        .find(|(name, _)| *name == section)
        .map_or(&[][..], |(_, names)| *names);
    if let Some(same) = own.iter().find(|name| **name == written) {
        return format!("; did you mean `{same}`?");
    }
    if SETTINGS_SECTIONS.contains(&section.as_str()) {
        let elsewhere = SETTINGS_SECTIONS
            .iter()
            .filter(|name| **name != section)
            .find(|name| {
                sections
                    .iter()
                    .any(|(s, names)| s == *name && names.contains(&written.as_str()))
            });
        if let Some(name) = elsewhere {
            return format!("; it belongs in {name}");
        }
    }
    nearest(&written, own.iter().copied())
        .map_or_else(String::new, |meant| format!("; did you mean `{meant}`?"))
}

/// The hint for an unknown key of a deployment's `litellm_params`, among
/// the keys conclave reads there.
pub fn param_hint(key: &str) -> String {
    if key.len() > LONGEST_KEY {
        return String::new();
    }
    if matches!(key, "ssl_verify" | "ssl_certificate") {
        return format!("; TLS to upstreams is set for all of them, in litellm_settings.{key}");
    }
    nearest(&normalized(key), super::params::known_param_keys())
        .map_or_else(String::new, |meant| format!("; did you mean `{meant}`?"))
}

/// The provider prefix `provider` most likely misspells, when it is no
/// provider LiteLLM knows but a near miss of one (`opneai` for `openai`).
pub fn provider_hint(provider: &str) -> Option<&'static str> {
    use super::params::{EXEC_PROVIDER, HTTP_PROVIDERS, LITELLM_ONLY_PROVIDERS, MOCK_PROVIDER};
    let known = || {
        HTTP_PROVIDERS
            .iter()
            .chain(LITELLM_ONLY_PROVIDERS)
            .chain(&[MOCK_PROVIDER, EXEC_PROVIDER])
            .copied()
    };
    if provider.len() > LONGEST_KEY || known().any(|p| p == provider) {
        return None;
    }
    // Provider names are few and far apart: one edit is a typo from four
    // letters on (`opena`), two from eight.
    let allowed = match provider.len() {
        0..4 => 0,
        4..8 => 1,
        _ => 2,
    };
    nearest_within(&provider.to_ascii_lowercase(), known(), allowed)
}

/// `key` as the names are written: lower case, `_` for `-`.
fn normalized(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// `path` with every list index left out (`model_list[3]` → `model_list[]`).
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if in_index => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The name among `known` that `written` (normalized) most likely
/// misspells: itself, or a few edits away (for short names, whose other
/// near neighbours are other words rather than typos, only two neighbouring
/// letters swapped: `rmp` for `rpm`).
fn nearest<'k>(written: &str, mut known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let allowed = match written.len() {
        0..6 => return known.find(|name| *name == written || swapped(written, name)),
        6..10 => 1,
        _ => 2,
    };
    nearest_within(written, known, allowed)
}

/// Whether `a` is `b` with two neighbouring letters swapped.
fn swapped(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    matches!(differ[..], [i, j] if j == i + 1 && a[i] == b[j] && a[j] == b[i])
}

/// The name among `known` at most `allowed` edits from `written`, the
/// nearest first.
fn nearest_within<'k>(
    written: &str,
    known: impl Iterator<Item = &'k str>,
    allowed: usize,
) -> Option<&'k str> {
    known
        .filter(|name| name.len().abs_diff(written.len()) <= allowed)
        .map(|name| (strsim::damerau_levenshtein(written, name), name))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The field names `T` declares, read by asking it to deserialize from a
/// deserializer that only notes the names a derived struct passes to it.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that records the field names of the struct asked of it
/// and then stops.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// The only error [`FieldNames`] gives: it never yields a value.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_declares_its_names() {
        for (section, names) in sections() {
            assert!(!names.is_empty(), "{section:?}");
        }
    }

    #[test]
    fn a_near_miss_names_the_key_meant() {
        for (section, key, meant) in [
            ("router_settings", "routing_stratgy", "routing_strategy"),
            ("router_settings", "Num-Retries", "num_retries"),
            ("router_settings", "num_retrys", "num_retries"),
            ("", "router_setting", "router_settings"),
            ("litellm_settings.cache_params", "namspace", "namespace"),
            ("model_list[3]", "litelm_params", "litellm_params"),
        ] {
            assert_eq!(
                hint(section, key),
                format!("; did you mean `{meant}`?"),
                "{section}.{key}"
            );
        }
        assert_eq!(param_hint("api_bse"), "; did you mean `api_base`?");
        assert_eq!(
            param_hint("max-parallel-request"),
            "; did you mean `max_parallel_requests`?"
        );
        assert_eq!(param_hint("temprature"), "; did you mean `temperature`?");
        // Short names: two neighbouring letters swapped, nothing further.
        assert_eq!(param_hint("rmp"), "; did you mean `rpm`?");
        assert_eq!(param_hint("tmp"), "; did you mean `tpm`?");
        assert_eq!(param_hint("rpx"), "");
        assert_eq!(provider_hint("opneai"), Some("openai"));
        assert_eq!(provider_hint("opena"), Some("openai"));
        assert_eq!(provider_hint("azur"), Some("azure"));
        assert_eq!(provider_hint("anthropc"), Some("anthropic"));
        assert_eq!(provider_hint("bedrok"), Some("bedrock"));
        assert_eq!(provider_hint("bedrock"), None, "LiteLLM's, not a typo");
        assert_eq!(provider_hint("somethingelse"), None);
    }

    #[test]
    fn a_key_of_another_settings_section_names_that_section() {
        assert_eq!(
            hint("general_settings", "routing_strategy"),
            "; it belongs in router_settings"
        );
        assert_eq!(
            hint("general_settings", "routing-strategy"),
            "; it belongs in router_settings"
        );
        // The exact key elsewhere wins over a near miss here (`fallbacks`).
        assert_eq!(
            hint("router_settings", "callbacks"),
            "; it belongs in litellm_settings"
        );
        // A nested section's key is not sent to a settings section.
        assert_eq!(hint("litellm_settings.cache_params", "redis_host"), "");
    }

    #[test]
    fn a_dotted_key_is_told_that_dots_do_not_nest() {
        assert_eq!(
            hint("", "router_settings.routing_strategy"),
            "; a dot does not nest keys: write routing_strategy under router_settings"
        );
    }

    #[test]
    fn a_key_close_to_nothing_gets_no_hint() {
        for (section, key) in [
            ("router_settings", "colour"),
            ("general_settings", "alerting_threshold"),
            ("general_settings", "uid"),
            ("litellm_settings.cache_params", "model"),
            ("model_list[0].model_info", "x"),
        ] {
            assert_eq!(hint(section, key), "", "{section}.{key}");
        }
        assert_eq!(hint("router_settings", &"x".repeat(200_000)), "");
        assert_eq!(param_hint(&"api_base".repeat(1000)), "");
    }
}
