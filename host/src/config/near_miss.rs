//! What to add to "unknown key, ignored": the key the writer most likely
//! meant, when one of the section's own keys is a near miss of it, or the
//! section that reads it, when it was written in another one. Without the
//! hint a misspelt setting goes unnoticed: the file loads and the setting
//! keeps its default.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{
    CacheParams, Config, GeneralSettings, LitellmSettings, RouterSettings, RoutingStrategyArgs,
};

/// The sections whose keys are known, by key path, each with the names its
/// struct declares; the top-level sections come first.
fn sections() -> [(&'static str, &'static [&'static str]); 6] {
    [
        ("general_settings", field_names::<GeneralSettings>()),
        ("litellm_settings", field_names::<LitellmSettings>()),
        ("router_settings", field_names::<RouterSettings>()),
        ("", field_names::<Config>()),
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

/// The hint for the unknown key at `path` (`router_settings.num_retrys`),
/// starting with "; ", or nothing when no known key is close to it.
pub fn hint(path: &str) -> String {
    let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
    let sections = sections();
    let Some((_, own)) = sections.iter().find(|(name, _)| *name == section) else {
        return String::new();
    };
    if let Some(meant) = nearest(key, own) {
        return format!("; did you mean `{meant}`?");
    }
    let elsewhere = sections
        .iter()
        .filter(|(name, _)| *name != section && !name.is_empty() && !name.contains('.'))
        .find(|(_, names)| names.contains(&key));
    match elsewhere {
        Some((name, _)) => format!("; it belongs in {name}"),
        None => String::new(),
    }
}

/// The name among `known` that `key` most likely misspells: the same but
/// for case and `-` for `_`, or at most one edit away (two for longer
/// names); `None` when nothing is that close.
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let written = key.to_ascii_lowercase().replace('-', "_");
    let allowed = if written.len() >= 8 { 2 } else { 1 };
    known
        .iter()
        .map(|name| (strsim::damerau_levenshtein(&written, name), *name))
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
        assert_eq!(
            hint("router_settings.routing_stratgy"),
            "; did you mean `routing_strategy`?"
        );
        assert_eq!(
            hint("router_settings.Num-Retries"),
            "; did you mean `num_retries`?"
        );
        assert_eq!(hint("router_setting"), "; did you mean `router_settings`?");
        assert_eq!(
            hint("litellm_settings.cache_params.namspace"),
            "; did you mean `namespace`?"
        );
    }

    #[test]
    fn a_key_of_another_section_names_that_section() {
        assert_eq!(
            hint("general_settings.routing_strategy"),
            "; it belongs in router_settings"
        );
    }

    #[test]
    fn a_key_close_to_nothing_gets_no_hint() {
        assert_eq!(hint("router_settings.colour"), "");
        assert_eq!(hint("general_settings.alerting_threshold"), "");
        assert_eq!(hint("model_list[0].model_info.x"), "");
    }
}
