//! Spend per budget period for one scope. The counter starts from the spend
//! the store last reported for the key, user or team, counts every charged
//! call at once (so the very next call sees it, even a composite's next
//! sub-call), and starts again from zero when the period ends.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::shards::Idle;

/// What the store says about a scope's spend, read from its record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recorded {
    /// Spend in the current period as of the last store read.
    pub spend: f64,
    /// When the store's period ends.
    pub reset_at: Option<SystemTime>,
    /// The length of a period (`budget_duration`), if the budget renews.
    pub period: Option<Duration>,
    /// When the store was read. Keys of one user or team each hold a copy
    /// of its record read at their own time: an older copy than one taken
    /// in already says nothing new (its lower spend is not a reset).
    pub as_of: Instant,
}

/// The current-period spend of one scope.
pub struct SpendCell(Mutex<State>);

struct State {
    spent: f64,
    /// The record's spend the last time it was seen.
    last_record: f64,
    /// The record's reset time the last time it was seen.
    record_reset_at: Option<SystemTime>,
    /// When the newest record taken in was read.
    record_as_of: Instant,
    /// When the current period ends here.
    reset_at: Option<SystemTime>,
    period: Option<Duration>,
    touched: Instant,
}

impl SpendCell {
    /// A counter starting from `recorded`.
    pub fn new(recorded: Recorded, now: SystemTime) -> Self {
        let reset_at = recorded
            .reset_at
            .or_else(|| recorded.period.and_then(|p| now.checked_add(p)));
        Self(Mutex::new(State {
            spent: recorded.spend,
            last_record: recorded.spend,
            record_reset_at: recorded.reset_at,
            record_as_of: recorded.as_of,
            reset_at,
            period: recorded.period,
            touched: Instant::now(),
        }))
    }

    /// The spend so far in the current period and when that period ends,
    /// after taking in what the store now reports.
    pub fn current(
        &self,
        recorded: Option<Recorded>,
        now: SystemTime,
    ) -> (f64, Option<SystemTime>) {
        let Ok(mut s) = self.0.lock() else {
            return (0.0, None);
        };
        if let Some(r) = recorded {
            merge(&mut s, r);
        }
        roll(&mut s, now);
        s.touched = Instant::now();
        (s.spent, s.reset_at)
    }

    /// Sets the spend so far (an administrator's correction); the record
    /// that follows it is taken as having said so.
    pub fn set(&self, spend: f64) {
        if let Ok(mut s) = self.0.lock() {
            s.spent = spend;
            s.last_record = spend;
            s.touched = Instant::now();
        }
    }

    /// Takes in the spend another counter holds for this period (the
    /// shared counters'): the count here is never lower than it.
    pub fn at_least(&self, spent: f64, now: SystemTime) {
        if let Ok(mut s) = self.0.lock() {
            roll(&mut s, now);
            if spent.is_finite() && spent > s.spent {
                s.spent = spent;
            }
            s.touched = Instant::now();
        }
    }

    /// Adds the cost of one call.
    pub fn add(&self, cost: f64, now: SystemTime) {
        if let Ok(mut s) = self.0.lock() {
            roll(&mut s, now);
            s.spent += cost;
            s.touched = Instant::now();
        }
    }
}

/// Takes in a newer reading of the record: a reading older than one taken
/// in already is ignored (another key's copy of its user's or team's
/// record); a record of a period this counter already closed is ignored
/// (the store's reset has not run yet);
/// a period the store started later than ours replaces our count (or joins
/// it, when we had rolled into the same period); a lower spend is an
/// administrator's reset, and a higher one is spend this counter may not
/// have seen (the writer flushed it, or another instance spent it).
fn merge(s: &mut State, r: Recorded) {
    if r.as_of < s.record_as_of {
        return;
    }
    s.record_as_of = r.as_of;
    s.period = r.period;
    if let (Some(record), Some(ours)) = (r.reset_at, s.reset_at)
        && record < ours
    {
        s.last_record = r.spend;
        s.record_reset_at = r.reset_at;
        return;
    }
    let store_moved_on = match (r.reset_at, s.record_reset_at) {
        (Some(new), Some(old)) => new > old,
        (Some(_), None) => true,
        _ => false,
    };
    if store_moved_on {
        s.spent = if r.reset_at == s.reset_at {
            s.spent.max(r.spend)
        } else {
            r.spend
        };
        s.reset_at = r.reset_at;
        s.record_reset_at = r.reset_at;
    } else if r.spend < s.last_record || r.spend > s.spent {
        s.spent = r.spend;
    }
    s.last_record = r.spend;
}

/// Ends the period when its time has come: spend restarts from zero and
/// the next period starts where this one ended.
fn roll(s: &mut State, now: SystemTime) {
    let Some(reset_at) = s.reset_at else { return };
    if now < reset_at {
        return;
    }
    s.spent = 0.0;
    s.reset_at = s.period.filter(|p| !p.is_zero()).and_then(|p| {
        let behind = now.duration_since(reset_at).unwrap_or_default();
        let periods = (behind.as_secs_f64() / p.as_secs_f64()).floor() + 1.0;
        reset_at.checked_add(p.mul_f64(periods))
    });
}

impl Idle for SpendCell {
    /// A counter idle for an hour can be dropped: the next request starts
    /// again from the record, whose spend the writer has flushed by then.
    fn is_idle(&self, now: Instant) -> bool {
        self.0.lock().map_or(true, |s| {
            now.saturating_duration_since(s.touched) >= Duration::from_secs(3600)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(spend: f64, reset_at: Option<SystemTime>, period: Option<u64>) -> Recorded {
        Recorded {
            spend,
            reset_at,
            period: period.map(Duration::from_secs),
            as_of: Instant::now(),
        }
    }

    #[test]
    fn an_older_copy_of_the_record_is_not_taken_for_a_reset() {
        let t0 = SystemTime::now();
        let older = recorded(1.0, None, None);
        let newer = recorded(3.0, None, None);
        let cell = SpendCell::new(older, t0);
        assert_eq!(cell.current(Some(newer), t0).0, 3.0);
        cell.add(0.5, t0);
        // Another key's copy, read before: no reset, whichever key asks.
        for _ in 0..3 {
            assert_eq!(cell.current(Some(older), t0).0, 3.5);
            assert_eq!(cell.current(Some(newer), t0).0, 3.5);
        }
        // A copy read later that says less is an administrator's reset.
        assert_eq!(cell.current(Some(recorded(0.0, None, None)), t0).0, 0.0);
    }

    #[test]
    fn spend_counts_from_the_record_and_resets_when_the_period_ends() {
        let t0 = SystemTime::now();
        let reset = t0 + Duration::from_secs(30);
        let cell = SpendCell::new(recorded(1.0, Some(reset), Some(30)), t0);
        cell.add(0.5, t0);
        assert_eq!(cell.current(None, t0), (1.5, Some(reset)));
        let after = t0 + Duration::from_secs(65);
        let (spent, next) = cell.current(None, after);
        assert_eq!(spent, 0.0);
        assert_eq!(next, Some(t0 + Duration::from_secs(90)));
    }

    #[test]
    fn a_flushed_record_is_not_counted_twice_and_a_lowered_one_is_a_reset() {
        let t0 = SystemTime::now();
        let cell = SpendCell::new(recorded(0.0, None, None), t0);
        cell.add(2.0, t0);
        assert_eq!(cell.current(Some(recorded(2.0, None, None)), t0).0, 2.0);
        assert_eq!(cell.current(Some(recorded(3.0, None, None)), t0).0, 3.0);
        assert_eq!(cell.current(Some(recorded(0.0, None, None)), t0).0, 0.0);
    }

    #[test]
    fn a_period_the_store_started_replaces_the_local_count() {
        let t0 = SystemTime::now();
        let first = t0 + Duration::from_secs(10);
        let cell = SpendCell::new(recorded(5.0, Some(first), Some(10)), t0);
        let second = first + Duration::from_secs(10);
        let (spent, reset) = cell.current(Some(recorded(0.25, Some(second), Some(10))), t0);
        assert_eq!((spent, reset), (0.25, Some(second)));
    }

    #[test]
    fn a_record_of_a_closed_period_does_not_bring_its_spend_back() {
        let t0 = SystemTime::now();
        let past = t0 - Duration::from_secs(5);
        let stale = recorded(9.0, Some(past), Some(60));
        let cell = SpendCell::new(stale, t0);
        assert_eq!(cell.current(Some(stale), t0).0, 0.0);
        cell.add(1.0, t0);
        let (spent, reset) = cell.current(Some(stale), t0);
        assert_eq!((spent, reset), (1.0, Some(past + Duration::from_secs(60))));
        // The store's reset job catches up: the new period is the same one.
        let caught_up = recorded(0.0, Some(past + Duration::from_secs(60)), Some(60));
        assert_eq!(cell.current(Some(caught_up), t0).0, 1.0);
    }

    #[test]
    fn a_budget_without_a_period_never_resets() {
        let t0 = SystemTime::now();
        let cell = SpendCell::new(recorded(1.0, None, None), t0);
        let far = t0 + Duration::from_secs(1_000_000);
        assert_eq!(cell.current(None, far), (1.0, None));
    }
}
