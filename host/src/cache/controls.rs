//! Per-request cache controls, as LiteLLM reads them from a request's
//! `cache` object (or `metadata.cache`): `no-cache` (do not read),
//! `no-store` (do not write), `ttl` (lifetime of what is written),
//! `s-maxage` (accept only an answer younger than this), `namespace`, and
//! `use-cache` (opt in when the cache is `default_off`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Shortest lifetime an entry may be given: Redis keeps time in
/// milliseconds, and an entry kept for less is never read.
const MIN_TTL: Duration = Duration::from_millis(1);

/// Longest namespace a request may choose (it becomes part of every key).
const MAX_NAMESPACE_LEN: usize = 256;

/// What one request asks of the cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    pub no_cache: bool,
    pub no_store: bool,
    pub ttl: Option<Duration>,
    pub s_maxage: Option<Duration>,
    pub namespace: Option<String>,
    pub use_cache: Option<bool>,
}

/// The controls as sent. A key none of them has is refused: a misspelt
/// `no-stor` would otherwise store what the client asked to keep out.
#[derive(Deserialize)]
#[serde(expecting = "an object of cache controls", deny_unknown_fields)]
struct Wire {
    #[serde(default, rename = "no-cache", alias = "no_cache")]
    no_cache: Option<bool>,
    #[serde(default, rename = "no-store", alias = "no_store")]
    no_store: Option<bool>,
    #[serde(default)]
    ttl: Option<f64>,
    #[serde(default, rename = "s-maxage", alias = "s_maxage")]
    s_maxage: Option<f64>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, rename = "use-cache", alias = "use_cache")]
    use_cache: Option<bool>,
}

impl Controls {
    /// Reads the raw `cache` object; a malformed one is an error naming the
    /// field, as `cache.<key>`.
    pub fn parse(raw: Option<&RawValue>) -> Result<Self, String> {
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        // A derived struct would also read a list (`[]`) as no controls.
        if !crate::ops::is_object_text(raw.get()) {
            return Err("`cache` must be an object of cache controls".into());
        }
        let wire: Wire = serde_json::from_str(raw.get())
            .map_err(|e| format!("`cache` must be an object of cache controls: {e}"))?;
        let namespace = match wire.namespace {
            Some(n) if n.len() > MAX_NAMESPACE_LEN => {
                return Err(format!(
                    "`cache.namespace` is longer than {MAX_NAMESPACE_LEN} bytes"
                ));
            }
            n => n.filter(|n| !n.is_empty()),
        };
        Ok(Self {
            no_cache: wire.no_cache.unwrap_or(false),
            no_store: wire.no_store.unwrap_or(false),
            // An entry kept for no time is no entry: as in the config, a
            // lifetime must be positive (`no-store` keeps an answer out).
            ttl: match seconds(wire.ttl, "ttl")? {
                Some(ttl) if ttl < MIN_TTL => {
                    return Err("`cache.ttl` must be at least 0.001 seconds \
                                (use `no-store` to keep an answer out of the cache)"
                        .into());
                }
                ttl => ttl,
            },
            s_maxage: seconds(wire.s_maxage, "s-maxage")?,
            namespace,
            use_cache: wire.use_cache,
        })
    }
}

/// A duration control: up to a year, as a config's durations (a longer
/// lifetime is none Redis or the memory cache would keep either).
fn seconds(value: Option<f64>, name: &str) -> Result<Option<Duration>, String> {
    let most = crate::config::MAX_SECONDS;
    match value {
        None => Ok(None),
        Some(s) if s > most => Err(format!(
            "`cache.{name}` must be at most {most} seconds (a year)"
        )),
        Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| format!("`cache.{name}` is not a usable number of seconds")),
        Some(_) => Err(format!("`cache.{name}` must not be negative")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Controls, String> {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        Controls::parse(Some(&raw))
    }

    #[test]
    fn a_zero_lifetime_is_refused() {
        let error = parse(r#"{"ttl":0}"#).unwrap_err();
        assert!(
            error.contains("cache.ttl") && error.contains("no-store"),
            "{error}"
        );
        assert!(parse(r#"{"s-maxage":0}"#).is_ok());
        assert!(
            parse(r#"{"ttl":0.0001}"#)
                .unwrap_err()
                .contains("cache.ttl")
        );
        assert!(parse("[]").unwrap_err().contains("`cache`"));
    }

    #[test]
    fn litellm_spellings_are_read() {
        let c = parse(r#"{"no-cache":true,"no-store":true,"ttl":5,"s-maxage":1.5,"namespace":"n","use-cache":true}"#)
            .unwrap();
        assert!(c.no_cache && c.no_store);
        assert_eq!(c.ttl, Some(Duration::from_secs(5)));
        assert_eq!(c.s_maxage, Some(Duration::from_millis(1500)));
        assert_eq!(c.namespace.as_deref(), Some("n"));
        assert_eq!(c.use_cache, Some(true));
        assert_eq!(Controls::parse(None).unwrap(), Controls::default());
    }

    #[test]
    fn wrong_values_are_refused_naming_the_field() {
        assert!(parse(r#"{"ttl":-1}"#).unwrap_err().contains("cache.ttl"));
        assert!(parse(r#""yes""#).unwrap_err().contains("`cache`"));
        assert!(parse(r#"{"no-cache":"yes"}"#).is_err());
        // A lifetime past a year, which Redis could not take either.
        assert!(
            parse(r#"{"ttl":9.2e18}"#)
                .unwrap_err()
                .contains("cache.ttl")
        );
    }

    #[test]
    fn a_misspelt_control_is_refused_naming_it() {
        let error = parse(r#"{"no-stor":true}"#).unwrap_err();
        assert!(error.contains("no-stor"), "{error}");
    }
}
