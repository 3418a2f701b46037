//! Durations written as seconds in the config (`timeout: 30`, `cooldown_time:
//! 0.5`). One conversion for all of them that cannot panic: a value that is
//! not a finite number, negative, or beyond [`MAX_SECONDS`] never becomes a
//! `Duration` that overflows a clock later. Loading refuses such values with
//! the key's path; the conversion clamps whatever reaches it anyway (runtime
//! registrations, strategy limits).

use std::time::Duration;

/// The longest duration a config key may hold: one year.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// `value` seconds, clamped to `0..=MAX_SECONDS` (NaN is zero).
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.clamp(0.0, MAX_SECONDS)).unwrap_or(Duration::ZERO)
}

/// Why `value` is not a usable number of seconds, if it is not; `positive`
/// also refuses zero.
pub fn invalid_seconds(value: f64, positive: bool) -> Option<String> {
    let in_range = value.is_finite()
        && value <= MAX_SECONDS
        && if positive { value > 0.0 } else { value >= 0.0 };
    (!in_range).then(|| {
        let kind = if positive { "positive" } else { "non-negative" };
        format!("must be a {kind} number of seconds of at most {MAX_SECONDS} (a year), got {value}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_number_converts_without_panicking() {
        for v in [f64::NAN, f64::INFINITY, -1.0, 1e30, f64::MAX, 0.25] {
            assert!(seconds(v) <= Duration::from_secs_f64(MAX_SECONDS));
        }
        assert_eq!(seconds(0.25), Duration::from_millis(250));
    }

    #[test]
    fn out_of_range_values_are_named() {
        assert!(invalid_seconds(1e30, true).is_some());
        assert!(invalid_seconds(0.0, true).is_some());
        assert!(invalid_seconds(0.0, false).is_none());
        assert!(invalid_seconds(30.0, true).is_none());
    }
}
