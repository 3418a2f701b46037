//! When a budget period ends, as LiteLLM schedules it: on calendar and
//! clock boundaries rather than a fixed length after the budget was set,
//! so that every key with a daily budget starts its day at the same time
//! and a monthly budget renews on the 1st. The boundaries are those of the
//! wall clock in `litellm_settings.timezone` (UTC when unset); periods of a
//! day or longer end at `litellm_settings.budget_reset_time` on it
//! (midnight when unset). A boundary that a daylight-saving change skips
//! is read with the offset from before the change (so it falls after the
//! gap, as far on as it was into it), and one it repeats at the first of
//! its two instants still to come.
//!
//! - `Nd`: `1d` at the next reset time, `7d` on the next Monday at it,
//!   `30d` on the 1st of the month at it, any other `N` at it `N` days on;
//! - `Nw`: as `7N` days (`1w` is Monday);
//! - `Nmo`: the 1st of the month `N` months on (`1mo` as `30d`);
//! - `Nh`, `Nm`, `Ns`: the next multiple of the period counted from the
//!   start of the day (hours), the hour (minutes) or the minute (seconds);
//!   the time of day does not move them.

use std::time::SystemTime;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::model::{Limits, PeriodUnit, period_parts};
use super::time::{civil_from_days, days_from_civil};

const DAY: u64 = 86_400;

/// The clock budget periods end on: a zone and the time of day that
/// periods of a day or longer end at. Read from the config at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetClock {
    /// `litellm_settings.timezone`; UTC by default.
    pub zone: TimeZone,
    /// `litellm_settings.budget_reset_time` in seconds after midnight
    /// (below 86,400); midnight by default.
    pub time_of_day: u32,
}

impl Default for ResetClock {
    fn default() -> Self {
        Self {
            zone: TimeZone::UTC,
            time_of_day: 0,
        }
    }
}

impl ResetClock {
    /// The clock `litellm_settings.timezone` and `budget_reset_time` set.
    pub fn of(settings: &crate::config::LitellmSettings) -> Self {
        let mut clock = Self::default();
        if let Some(zone) = &settings.timezone {
            clock.zone = zone.zone().clone();
        }
        if let Some(time) = settings.budget_reset_time {
            clock.time_of_day = time.seconds;
        }
        clock
    }
}

impl Limits {
    /// When the budget period set now ends ([`next_budget_reset`]), if
    /// there is one: when a budget is set, and at each reset.
    pub fn budget_reset_after(&self, now: SystemTime, clock: &ResetClock) -> Option<SystemTime> {
        next_budget_reset(self.budget_duration.as_deref()?, now, clock)
    }
}

/// The end of the budget period that `duration` (LiteLLM's
/// `budget_duration`) makes current at `now` on `clock`: the first
/// boundary after `now`. `None` when `duration` is not a period
/// `budget_period` accepts.
pub fn next_budget_reset(
    duration: &str,
    now: SystemTime,
    clock: &ResetClock,
) -> Option<SystemTime> {
    let zone = &clock.zone;
    let now = Timestamp::try_from(now).ok()?;
    // The wall clock's reading, counted in seconds as if it were UTC, so
    // that the boundaries below are plain arithmetic on days and seconds.
    let wall = now
        .as_second()
        .checked_add(i64::from(zone.to_offset(now).seconds()))?;
    let next_wall = next_boundary(duration, u64::try_from(wall).ok()?, clock.time_of_day)?;
    let civil =
        TimeZone::UTC.to_datetime(Timestamp::from_second(i64::try_from(next_wall).ok()?).ok()?);
    let instants = zone.to_ambiguous_timestamp(civil);
    let next = instants.compatible().ok()?;
    // A boundary inside an hour the clock repeats has two instants, and
    // the first may be past already; the period then ends at the second.
    let next = if next > now {
        next
    } else {
        instants.later().ok()?.max(now)
    };
    SystemTime::try_from(next).ok()
}

/// The first period boundary after the wall-clock time `secs` (seconds
/// since 1970-01-01 00:00 on that clock), periods of days and longer
/// ending `at` seconds after midnight.
fn next_boundary(duration: &str, secs: u64, at: u32) -> Option<u64> {
    let (n, unit, _) = period_parts(duration).ok()?;
    let day = Day::of(secs, at);
    let next = match unit {
        PeriodUnit::Second => next_multiple(secs, 60, n)?,
        PeriodUnit::Minute => next_multiple(secs, 3600, n.checked_mul(60)?)?,
        PeriodUnit::Hour => next_multiple(secs, DAY, n.checked_mul(3600)?)?,
        PeriodUnit::Day => day.at(days_on(day, n)?)?,
        PeriodUnit::Week => day.at(days_on(day, n.checked_mul(7)?)?)?,
        PeriodUnit::Month => day.at(months_on(day, n)?)?,
    };
    Some(next)
}

/// The first multiple of `step` seconds after `secs`, counted from the
/// start of the `span` (a minute, an hour or a day) that `secs` is in.
fn next_multiple(secs: u64, span: u64, step: u64) -> Option<u64> {
    let start = secs - secs % span;
    let done = (secs - start) / step;
    start.checked_add(done.checked_add(1)?.checked_mul(step)?)
}

/// Today on the wall clock, seen from the reset time of day.
#[derive(Debug, Clone, Copy)]
struct Day {
    /// Days since 1970-01-01.
    number: u64,
    /// Today's reset time is still to come.
    before_reset: bool,
    /// The reset time, in seconds after midnight.
    reset: u64,
}

impl Day {
    fn of(secs: u64, reset: u32) -> Self {
        let reset = u64::from(reset);
        Self {
            number: secs / DAY,
            before_reset: secs % DAY < reset,
            reset,
        }
    }

    /// The reset time on day `number`, in wall-clock seconds.
    fn at(self, number: u64) -> Option<u64> {
        number.checked_mul(DAY)?.checked_add(self.reset)
    }
}

/// The day that ends a period of `n` days begun today (LiteLLM's special
/// lengths: a day, a week from Monday, a month from the 1st): today's
/// reset when it is still to come and the period is one of those.
fn days_on(today: Day, n: u64) -> Option<u64> {
    let Day {
        number,
        before_reset,
        ..
    } = today;
    let day = match n {
        1 if before_reset => number,
        1 => number + 1,
        7 => {
            // 1970-01-01 was a Thursday: Monday is 0 in (days + 3) % 7.
            match (number + 3) % 7 {
                0 if before_reset => number,
                weekday => number + 7 - weekday,
            }
        }
        30 => months_on(today, 1)?,
        _ => number.checked_add(n)?,
    };
    Some(day)
}

/// The 1st of the month `months` after this one, or today for a month's
/// period on a 1st whose reset time is still to come.
fn months_on(today: Day, months: u64) -> Option<u64> {
    let (year, month, day) = civil_from_days(i64::try_from(today.number).ok()?);
    if months == 1 && day == 1 && today.before_reset {
        return Some(today.number);
    }
    let index = i64::from(month) - 1 + i64::try_from(months).ok()?;
    let year = year.checked_add(index.div_euclid(12))?;
    let month = u32::try_from(index.rem_euclid(12) + 1).ok()?;
    u64::try_from(days_from_civil(year, month, 1)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::time::{parse, rfc3339};

    fn next(duration: &str, now: &str) -> String {
        next_in(duration, now, "UTC")
    }

    fn next_in(duration: &str, now: &str, zone: &str) -> String {
        next_at(duration, now, zone, "00:00")
    }

    fn next_at(duration: &str, now: &str, zone: &str, time_of_day: &str) -> String {
        let clock = ResetClock {
            zone: TimeZone::get(zone).unwrap(),
            time_of_day: crate::config::ResetTime::parse(time_of_day)
                .unwrap()
                .seconds,
        };
        rfc3339(next_budget_reset(duration, parse(now).unwrap(), &clock).unwrap())
    }

    #[test]
    fn days_weeks_and_months_end_on_calendar_boundaries() {
        // 2026-12-02 is a Wednesday.
        let now = "2026-12-02T15:20:00Z";
        assert_eq!(next("1d", now), "2026-12-03T00:00:00.000Z");
        assert_eq!(next("7d", now), "2026-12-07T00:00:00.000Z");
        assert_eq!(next("1w", now), "2026-12-07T00:00:00.000Z");
        assert_eq!(next("30d", now), "2027-01-01T00:00:00.000Z");
        assert_eq!(next("1mo", now), "2027-01-01T00:00:00.000Z");
        assert_eq!(next("3mo", now), "2027-03-01T00:00:00.000Z");
        assert_eq!(next("2d", now), "2026-12-04T00:00:00.000Z");
        assert_eq!(next("2w", now), "2026-12-16T00:00:00.000Z");
    }

    #[test]
    fn a_week_begun_on_monday_ends_the_next_monday() {
        assert_eq!(
            next("7d", "2026-12-07T00:00:00Z"),
            "2026-12-14T00:00:00.000Z"
        );
    }

    #[test]
    fn hours_minutes_and_seconds_end_on_clock_multiples() {
        let now = "2026-12-02T22:50:10Z";
        assert_eq!(next("1h", now), "2026-12-02T23:00:00.000Z");
        assert_eq!(next("5h", now), "2026-12-03T01:00:00.000Z");
        assert_eq!(next("15m", now), "2026-12-02T23:00:00.000Z");
        assert_eq!(next("45m", now), "2026-12-02T23:30:00.000Z");
        assert_eq!(next("30s", now), "2026-12-02T22:50:30.000Z");
        assert_eq!(
            next("2s", "2026-12-02T22:50:10.500Z"),
            "2026-12-02T22:50:12.000Z"
        );
    }

    #[test]
    fn a_period_that_does_not_parse_has_no_end() {
        let utc = ResetClock::default();
        assert_eq!(next_budget_reset("bogus", SystemTime::now(), &utc), None);
        assert_eq!(next_budget_reset("0d", SystemTime::now(), &utc), None);
    }

    #[test]
    fn days_weeks_and_months_end_at_midnight_in_the_configured_zone() {
        // 10:20 in New York (EST, UTC-5), a Wednesday.
        let now = "2026-12-02T15:20:00Z";
        assert_eq!(next_in("1d", now, "US/Eastern"), "2026-12-03T05:00:00.000Z");
        assert_eq!(next_in("7d", now, "US/Eastern"), "2026-12-07T05:00:00.000Z");
        assert_eq!(
            next_in("30d", now, "US/Eastern"),
            "2027-01-01T05:00:00.000Z"
        );
        // In summer the same midnight is an hour earlier in UTC.
        let summer = "2026-07-01T12:00:00Z";
        assert_eq!(
            next_in("1d", summer, "US/Eastern"),
            "2026-07-02T04:00:00.000Z"
        );
        // Already the 3rd in Kolkata (UTC+5:30): the next midnight is the 4th's.
        let late = "2026-12-02T20:00:00Z";
        assert_eq!(
            next_in("1d", late, "Asia/Kolkata"),
            "2026-12-03T18:30:00.000Z"
        );
        assert_eq!(
            next_in("1h", late, "Asia/Kolkata"),
            "2026-12-02T20:30:00.000Z"
        );
    }

    #[test]
    fn a_month_that_ends_on_a_daylight_saving_day_ends_at_that_days_midnight() {
        // New York leaves daylight saving at 02:00 on 2026-11-01; its
        // midnight is still on daylight time (UTC-4).
        assert_eq!(
            next_in("1mo", "2026-10-15T12:00:00Z", "US/Eastern"),
            "2026-11-01T04:00:00.000Z"
        );
    }

    #[test]
    fn a_boundary_the_clock_skips_falls_after_the_gap() {
        // London skips 01:00-02:00 on 2027-03-28: 02:00 BST is 01:00 UTC.
        assert_eq!(
            next_in("1h", "2027-03-28T00:30:00Z", "Europe/London"),
            "2027-03-28T01:00:00.000Z"
        );
    }

    #[test]
    fn a_boundary_in_a_repeated_hour_is_never_in_the_past() {
        // 01:30 on New York's second pass through 01:00-02:00 (EST): the
        // next quarter hour is 01:45 EST, not the 01:45 EDT an hour ago.
        assert_eq!(
            next_in("15m", "2026-11-01T06:30:00Z", "US/Eastern"),
            "2026-11-01T06:45:00.000Z"
        );
    }

    /// Each case: period, now, zone, time of day, the reset expected.
    fn expect_resets(cases: &[(&str, &str, &str, &str, &str)]) {
        for (duration, now, zone, time, expected) in cases {
            let got = next_at(duration, now, zone, time);
            assert_eq!(&got, expected, "{duration} from {now} in {zone} at {time}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn a_daily_period_ends_at_the_configured_time_of_day() {
        expect_resets(&[
            // Before noon the period ends today at noon; from noon on, tomorrow.
            ("1d", "2026-12-02T09:00:00Z", "UTC", "12:00", "2026-12-02T12:00:00.000Z"),
            ("1d", "2026-12-02T12:00:00Z", "UTC", "12:00", "2026-12-03T12:00:00.000Z"),
            // Noon in Jerusalem (UTC+2 in December).
            ("1d", "2026-12-02T15:00:00Z", "Asia/Jerusalem", "12:00", "2026-12-03T10:00:00.000Z"),
            // Other lengths count whole days from today.
            ("2d", "2026-12-02T09:00:00Z", "UTC", "12:00", "2026-12-04T12:00:00.000Z"),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_week_ends_on_monday_at_the_time_of_day_even_when_today_is_monday() {
        // 2026-12-07 is a Monday.
        expect_resets(&[
            ("7d", "2026-12-07T08:00:00Z", "UTC", "09:30:15", "2026-12-07T09:30:15.000Z"),
            ("1w", "2026-12-07T10:00:00Z", "UTC", "09:30:15", "2026-12-14T09:30:15.000Z"),
            ("7d", "2026-12-02T10:00:00Z", "UTC", "09:30:15", "2026-12-07T09:30:15.000Z"),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_month_ends_on_the_first_at_the_time_of_day() {
        expect_resets(&[
            ("30d", "2026-12-01T05:00:00Z", "UTC", "06:00", "2026-12-01T06:00:00.000Z"),
            ("1mo", "2026-12-01T07:00:00Z", "UTC", "06:00", "2027-01-01T06:00:00.000Z"),
            ("30d", "2026-12-15T07:00:00Z", "UTC", "06:00", "2027-01-01T06:00:00.000Z"),
            // Longer periods count whole months on, whatever the hour.
            ("3mo", "2026-12-01T05:00:00Z", "UTC", "06:00", "2027-03-01T06:00:00.000Z"),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn the_time_of_day_leaves_hours_minutes_and_seconds_alone() {
        let now = "2026-12-02T22:50:10Z";
        expect_resets(&[
            ("1h", now, "UTC", "12:00", "2026-12-02T23:00:00.000Z"),
            ("15m", now, "UTC", "12:00", "2026-12-02T23:00:00.000Z"),
            ("30s", now, "UTC", "12:00", "2026-12-02T22:50:30.000Z"),
        ]);
    }

    #[test]
    fn a_reset_time_the_clock_skips_falls_after_the_gap() {
        // New York skips 02:00-03:00 on 2027-03-14: 02:30 is not on its
        // clock that day, and is read with the offset before the change,
        // an hour on: 03:30 EDT (07:30 UTC).
        assert_eq!(
            next_at("1d", "2027-03-13T12:00:00Z", "US/Eastern", "02:30"),
            "2027-03-14T07:30:00.000Z"
        );
    }
}
