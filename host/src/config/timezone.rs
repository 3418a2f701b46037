//! `litellm_settings.timezone`: the time zone whose midnights, Mondays and
//! firsts of the month end budget periods (LiteLLM's key; UTC when unset).
//! An unknown name is refused when the config is read, so a typo cannot
//! move every team's reset to UTC unnoticed.

use serde::{Deserialize, Deserializer};

/// A time zone named in the config, resolved once when the config is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetZone(jiff::tz::TimeZone);

impl ResetZone {
    /// Resolves an IANA name (`Europe/Paris`, `US/Eastern`, `UTC`).
    pub fn named(name: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(name.trim()).map(Self).map_err(|_| {
            format!(
                "unknown time zone {name:?}: name one from the IANA time zone database, \
                 such as UTC, Europe/London or US/Eastern"
            )
        })
    }

    /// The zone itself.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ResetZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::named(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_and_their_old_aliases_resolve() {
        for name in ["UTC", "Europe/London", "US/Eastern", "Asia/Kolkata"] {
            assert!(ResetZone::named(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn an_unknown_zone_is_refused_by_name() {
        let error = ResetZone::named("Mars/Olympus").unwrap_err();
        assert!(error.contains("\"Mars/Olympus\""), "{error}");
    }
}
