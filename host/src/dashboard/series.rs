//! Request counts, errors, latency, tokens and spend over time, in fixed
//! buckets: what the overview charts draw. Each series is a ring of buckets
//! of one width; a bucket is reused once its time has passed out of the
//! window, so memory is fixed whatever the traffic.

use serde::Serialize;

/// Latency histogram classes: geometric, from 0.5 ms up by 25 % a class,
/// the last one open-ended (past ~10 minutes). A percentile read from it is
/// within one class (25 %) of the true value: plenty for a chart.
const LATENCY_CLASSES: usize = 64;
const FIRST_CLASS_MS: f64 = 0.5;
const CLASS_GROWTH: f64 = 1.25;

/// What happened in one bucket of time.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The bucket's start, in Unix seconds.
    start: u64,
    requests: u64,
    errors: u64,
    server_errors: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: f64,
    latency: [u32; LATENCY_CLASSES],
}

impl Bucket {
    fn empty(start: u64) -> Self {
        Self {
            start,
            requests: 0,
            errors: 0,
            server_errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            latency: [0; LATENCY_CLASSES],
        }
    }

    fn add(&mut self, point: &Point) {
        self.requests += 1;
        self.errors += u64::from(point.status >= 400);
        self.server_errors += u64::from(point.status >= 500);
        self.prompt_tokens = self.prompt_tokens.saturating_add(point.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(point.completion_tokens);
        self.cost += point.cost;
        let class = latency_class(point.latency_ms);
        self.latency[class] = self.latency[class].saturating_add(1);
    }

    fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.server_errors += other.server_errors;
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cost += other.cost;
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The bucket as the overview reports it.
    pub fn report(&self) -> BucketReport {
        BucketReport {
            t: self.start,
            requests: self.requests,
            errors: self.errors,
            server_errors: self.server_errors,
            p50_ms: percentile(&self.latency, 0.50),
            p99_ms: percentile(&self.latency, 0.99),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost: self.cost,
        }
    }
}

/// One finished request, as the series count it.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// When it ended, in Unix seconds.
    pub at: f64,
    pub status: u16,
    pub latency_ms: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

/// A bucket in the overview's JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BucketReport {
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub server_errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

/// A ring of `count` buckets `width` seconds wide.
#[derive(Debug)]
pub struct Series {
    width: u64,
    buckets: Vec<Bucket>,
}

impl Series {
    /// A series covering `width * count` seconds.
    pub fn new(width: u64, count: usize) -> Self {
        let width = width.max(1);
        Self {
            width,
            buckets: (0..count.max(1)).map(|_| Bucket::empty(0)).collect(),
        }
    }

    /// The bucket width in seconds.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Counts `point` in the bucket of its time.
    pub fn add(&mut self, point: &Point) {
        let start = self.start_of(point.at as u64);
        let slot = self.slot(start);
        let bucket = &mut self.buckets[slot];
        if bucket.start != start {
            if bucket.start > start {
                // Older than what this slot holds now: out of the window.
                return;
            }
            *bucket = Bucket::empty(start);
        }
        bucket.add(point);
    }

    /// Every bucket of the window ending at `now` (Unix seconds), oldest
    /// first, with empty ones where nothing happened.
    pub fn window(&self, now: u64) -> Vec<Bucket> {
        let last = self.start_of(now);
        let count = self.buckets.len() as u64;
        (0..count)
            .rev()
            .map(|back| {
                let start = last.saturating_sub(back * self.width);
                let held = &self.buckets[self.slot(start)];
                if held.start == start {
                    held.clone()
                } else {
                    Bucket::empty(start)
                }
            })
            .collect()
    }

    fn start_of(&self, t: u64) -> u64 {
        t - t % self.width
    }

    fn slot(&self, start: u64) -> usize {
        ((start / self.width) % self.buckets.len() as u64) as usize
    }
}

/// The sum of `buckets`, as one bucket.
pub fn total(buckets: &[Bucket]) -> Bucket {
    let mut sum = Bucket::empty(buckets.first().map_or(0, |b| b.start));
    for b in buckets {
        sum.merge(b);
    }
    sum
}

fn latency_class(ms: f64) -> usize {
    // Also catches NaN: a latency that is not a number counts as the fastest.
    if ms.partial_cmp(&FIRST_CLASS_MS) != Some(std::cmp::Ordering::Greater) {
        return 0;
    }
    let class = ((ms / FIRST_CLASS_MS).ln() / CLASS_GROWTH.ln()).ceil();
    (class as usize).min(LATENCY_CLASSES - 1)
}

/// The upper bound of the class holding the `q` quantile; `None` when empty.
fn percentile(classes: &[u32; LATENCY_CLASSES], q: f64) -> Option<f64> {
    let count: u64 = classes.iter().map(|&c| u64::from(c)).sum();
    if count == 0 {
        return None;
    }
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (class, &c) in classes.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank {
            return Some(FIRST_CLASS_MS * CLASS_GROWTH.powi(class as i32));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: f64, status: u16, latency_ms: f64) -> Point {
        Point {
            at,
            status,
            latency_ms,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost: 0.5,
        }
    }

    #[test]
    fn requests_land_in_the_bucket_of_their_time_and_idle_buckets_are_zero() {
        let mut series = Series::new(60, 60);
        series.add(&point(1_000_020.0, 200, 10.0));
        series.add(&point(1_000_030.0, 503, 10.0));
        series.add(&point(1_000_200.0, 404, 10.0));
        let window = series.window(1_000_200);
        assert_eq!(window.len(), 60);
        let reports: Vec<BucketReport> = window.iter().map(Bucket::report).collect();
        let last = reports.last().unwrap();
        assert_eq!(
            (last.t, last.requests, last.errors, last.server_errors),
            (1_000_200 / 60 * 60, 1, 1, 0)
        );
        let first_minute = reports.iter().find(|r| r.t == 1_000_020 / 60 * 60).unwrap();
        assert_eq!(
            (
                first_minute.requests,
                first_minute.errors,
                first_minute.server_errors
            ),
            (2, 1, 1)
        );
        assert_eq!(reports.iter().map(|r| r.requests).sum::<u64>(), 3);
        assert!(reports.windows(2).all(|w| w[1].t == w[0].t + 60));
    }

    #[test]
    fn a_slot_reused_after_the_window_forgets_the_old_bucket() {
        let mut series = Series::new(1, 10);
        series.add(&point(100.0, 200, 1.0));
        series.add(&point(110.0, 200, 1.0));
        let total = total(&series.window(110));
        assert_eq!(total.requests, 1);
        // A late point older than what its slot holds is out of the window.
        series.add(&point(100.0, 200, 1.0));
        assert_eq!(super::total(&series.window(110)).requests, 1);
    }

    #[test]
    fn percentiles_are_within_one_class_of_the_truth() {
        let mut series = Series::new(60, 1);
        for i in 1..=100 {
            series.add(&point(0.0, 200, f64::from(i)));
        }
        let report = total(&series.window(0)).report();
        let p50 = report.p50_ms.unwrap();
        let p99 = report.p99_ms.unwrap();
        assert!((50.0..=50.0 * CLASS_GROWTH).contains(&p50), "{p50}");
        assert!((99.0..=99.0 * CLASS_GROWTH).contains(&p99), "{p99}");
        assert_eq!(Series::new(60, 1).window(0)[0].report().p50_ms, None);
    }
}
