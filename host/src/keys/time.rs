//! Times as the store keeps them (milliseconds since the Unix epoch, so both
//! backends sort and compare them as plain integers) and as the API shows
//! them (RFC 3339, UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch; times before it are zero.
pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the epoch, with fractions, as the admin and dashboard
/// reports show times; times before it are zero.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The time `ms` milliseconds after the epoch (negative is the epoch).
pub fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// RFC 3339 with milliseconds, UTC (`2026-01-31T12:00:00.000Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The UTC day of `t` as `YYYY-MM-DD`: the daily aggregates' key.
pub fn day(t: SystemTime) -> String {
    day_text(day_number(t))
}

/// The UTC day of `t` as days since the epoch: a key that costs nothing
/// to compare, turned into text once per aggregate.
pub fn day_number(t: SystemTime) -> i64 {
    to_ms(t).div_euclid(86_400_000)
}

/// Day `days` since the epoch as `YYYY-MM-DD`.
pub fn day_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Reads a date or time the way LiteLLM's filters accept them: `YYYY-MM-DD`
/// (midnight UTC) or RFC 3339 (`2026-01-31T12:00:00Z`, with a `±HH:MM`
/// offset, or without a zone for UTC). A date that does not exist
/// (`2026-02-30`) is refused, not moved to another day.
pub fn parse(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    if t.len() == 10 {
        let mut parts = t.split('-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        if !(1970..=9999).contains(&y) {
            return None;
        }
        let days = days_from_civil(y, m, d);
        return (civil_from_days(days) == (y, m, d)).then(|| from_ms(days * 86_400_000));
    }
    let (local, offset) = split_offset(t)?;
    let local =
        humantime::parse_rfc3339_weak(local.trim_end_matches('Z').replace(' ', "T").as_str())
            .ok()?;
    if offset >= 0 {
        local.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        local.checked_add(Duration::from_secs(offset.unsigned_abs()))
    }
}

/// A time's text without its `±HH:MM` (or `±HHMM`) offset, and the offset
/// in seconds east of UTC (zero when there is none).
fn split_offset(t: &str) -> Option<(&str, i64)> {
    let Some(sign_at) = t
        .get(10..)
        .and_then(|rest| rest.rfind(['+', '-']))
        .map(|i| i + 10)
    else {
        return Some((t, 0));
    };
    let (local, zone) = t.split_at(sign_at);
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = hours * 3600 + minutes * 60;
    Some((
        local,
        if zone.starts_with('-') {
            -seconds
        } else {
            seconds
        },
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        let t = parse("2026-02-28").unwrap();
        assert_eq!(day(t), "2026-02-28");
        assert_eq!(day(t + Duration::from_secs(86_400)), "2026-03-01");
        assert_eq!(day(UNIX_EPOCH), "1970-01-01");
    }

    #[test]
    fn rfc3339_times_parse() {
        let t = parse("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(rfc3339(t), "2026-01-31T12:00:00.000Z");
        assert!(parse("yesterday").is_none());
        assert!(parse("2026-13-01").is_none());
    }

    #[test]
    fn dates_that_do_not_exist_are_refused() {
        assert!(parse("2025-02-29").is_none());
        assert!(parse("2026-02-31").is_none());
        assert!(parse("2026-04-31").is_none());
        assert_eq!(day(parse("2024-02-29").unwrap()), "2024-02-29");
    }

    #[test]
    fn rfc3339_offsets_are_taken_into_account() {
        let utc = parse("2026-12-02T05:00:00Z").unwrap();
        assert_eq!(parse("2026-12-02T00:00:00-05:00"), Some(utc));
        assert_eq!(parse("2026-12-02T06:30:00+01:30"), Some(utc));
        assert_eq!(parse("2026-12-02T05:00:00+00:00"), Some(utc));
        assert!(parse("2026-12-02T05:00:00+5").is_none());
        assert!(parse("2026-12-02T05:00:00+25:00").is_none());
    }
}
