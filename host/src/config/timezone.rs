//! The wall clock budget periods end on, in LiteLLM's keys:
//! `litellm_settings.timezone`, the zone whose days, Mondays and firsts of
//! the month end them (UTC when unset), and
//! `litellm_settings.budget_reset_time`, the time of day those resets land
//! on (midnight when unset). Both are checked when the config is read, so
//! a typo cannot move every team's reset unnoticed.

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

/// A time of day on a 24-hour clock, as `HH:MM` or `HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetTime {
    /// Seconds after midnight, below 86,400.
    pub seconds: u32,
}

impl ResetTime {
    /// Reads `12:00`, `09:30:15` or `9:30`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "expected a 24-hour time as \"HH:MM\" or \"HH:MM:SS\", such as \"12:00\", \
                 got {text:?}"
            )
        };
        let parts: Vec<&str> = text.trim().split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(invalid());
        }
        let field = |i: usize, digits: std::ops::RangeInclusive<usize>, below: u32| {
            let part = parts.get(i).copied().unwrap_or("00");
            if !digits.contains(&part.len()) || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u32>().ok().filter(|v| *v < below)
        };
        let (Some(h), Some(m), Some(s)) = (
            field(0, 1..=2, 24),
            field(1, 2..=2, 60),
            field(2, 2..=2, 60),
        ) else {
            return Err(invalid());
        };
        Ok(Self {
            seconds: h * 3600 + m * 60 + s,
        })
    }
}

impl<'de> Deserialize<'de> for ResetTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
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

    #[test]
    fn reset_times_read_hours_minutes_and_seconds() {
        let seconds = |t: &str| ResetTime::parse(t).unwrap().seconds;
        assert_eq!(seconds("00:00"), 0);
        assert_eq!(seconds("12:00"), 12 * 3600);
        assert_eq!(seconds("09:30:15"), 9 * 3600 + 30 * 60 + 15);
        assert_eq!(seconds("9:30"), 9 * 3600 + 30 * 60);
        assert_eq!(seconds("23:59:59"), 86_399);
    }

    #[test]
    fn a_reset_time_off_the_24_hour_clock_is_refused_naming_it() {
        for bad in [
            "24:00",
            "12:60",
            "12:00:60",
            "noon",
            "12",
            "1:2",
            "12:00:00:00",
            "-1:00",
            "+1:00",
            "",
        ] {
            let error = ResetTime::parse(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }
}
