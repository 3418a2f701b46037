//! Cooldowns: a deployment that keeps failing is taken out of rotation for a
//! while and comes back by itself. Also keeps the per-minute request and token
//! counts that usage-based routing reads, since both share one window.
//!
//! Instances sharing a Redis share cooldowns: a cooldown started here is
//! told to the [`CooldownFeed`] installed for the process (see
//! [`share_cooldowns`]), and one started elsewhere is applied with
//! [`Health::cool_until`], which tells nobody.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::error::ErrorClass;

/// Longest cooldown an upstream's `retry-after` can start. A rate-limited
/// deployment is out of rotation for the longer of `cooldown_time` and the
/// hint, but a hostile or broken hint cannot take it out for good.
pub const RETRY_AFTER_COOLDOWN_MAX: Duration = Duration::from_secs(300);

/// Share of a minute's requests that may fail before the failure-rate rule
/// cools a deployment down (LiteLLM's `DEFAULT_FAILURE_THRESHOLD_PERCENT`).
pub const FAILURE_RATE_THRESHOLD: f64 = 0.5;

/// Requests a deployment must have had this minute before its failure rate
/// counts (LiteLLM's `DEFAULT_FAILURE_THRESHOLD_MINIMUM_REQUESTS`).
pub const FAILURE_RATE_MIN_REQUESTS: u64 = 5;

/// Failures the count rule tolerates when only `allowed_fails_policy` is set
/// (LiteLLM's `litellm.allowed_fails`).
pub const DEFAULT_ALLOWED_FAILS: u32 = 3;

/// When a deployment is cooled down, from `router_settings`.
#[derive(Debug, Clone, Copy)]
pub struct CooldownPolicy {
    /// The count rule, when `allowed_fails` or `allowed_fails_policy` is set;
    /// `None` is LiteLLM's default failure-rate rule.
    pub count_rule: Option<CountRule>,
    pub cooldown_time: Duration,
    pub disabled: bool,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        Self {
            count_rule: None,
            cooldown_time: Duration::from_secs(5),
            disabled: false,
        }
    }
}

/// LiteLLM's legacy rule, chosen by setting `allowed_fails` or
/// `allowed_fails_policy`: a deployment cools down once its failures this
/// minute exceed the tolerance for the failure's class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountRule {
    /// Failures tolerated within a minute; one more cools the deployment down.
    pub allowed_fails: u32,
    /// `allowed_fails_policy`: tolerances that replace `allowed_fails` for
    /// failures of one class.
    pub by_class: AllowedFailsByClass,
}

/// `allowed_fails_policy`, for the classes that count against a deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllowedFailsByClass {
    /// `AuthenticationErrorAllowedFails`.
    pub authentication: Option<u32>,
    /// `TimeoutErrorAllowedFails`.
    pub timeout: Option<u32>,
    /// `RateLimitErrorAllowedFails`.
    pub rate_limit: Option<u32>,
    /// `InternalServerErrorAllowedFails` (also connection failures).
    pub internal_server: Option<u32>,
}

impl CountRule {
    /// The count rule tolerating `allowed_fails` failures of every class.
    pub fn allowing(allowed_fails: u32) -> Self {
        Self {
            allowed_fails,
            by_class: AllowedFailsByClass::default(),
        }
    }

    /// Failures of `class` tolerated within a minute.
    fn tolerance(&self, class: ErrorClass) -> u32 {
        let by = &self.by_class;
        let specific = match class {
            ErrorClass::Authentication => by.authentication,
            ErrorClass::Timeout => by.timeout,
            ErrorClass::RateLimit => by.rate_limit,
            ErrorClass::InternalServer | ErrorClass::Connection => by.internal_server,
            _ => None,
        };
        specific.unwrap_or(self.allowed_fails)
    }
}

/// Told of every cooldown this process starts, to share it with the other
/// instances.
pub trait CooldownFeed: Send + Sync {
    /// Deployment `id` (calling what `fingerprint` hashes) cools for `time`.
    fn cooled(&self, id: &str, fingerprint: &str, time: Duration);
}

/// The feed of this process: one gateway per process, installed at start
/// when instances share state. Read only when a cooldown starts.
static FEED: RwLock<Option<Arc<dyn CooldownFeed>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the feed told of every cooldown
/// this process starts.
pub fn share_cooldowns(feed: Option<Arc<dyn CooldownFeed>>) {
    match FEED.write() {
        Ok(mut f) => *f = feed,
        Err(poisoned) => *poisoned.into_inner() = feed,
    }
}

/// Tells the installed feed, if any, that a cooldown started here.
pub(super) fn announce(id: &str, fingerprint: &str, time: Duration) {
    let feed = match FEED.read() {
        Ok(f) => f.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if let Some(feed) = feed {
        feed.cooled(id, fingerprint, time);
    }
}

/// A deployment's health and usage in the current minute. Guarded by a
/// per-deployment mutex that is never held across an await.
#[derive(Debug, Default)]
pub struct Health {
    minute: u64,
    fails: u32,
    requests: u64,
    tokens: u64,
    cooling_until: Option<Instant>,
    /// A cooldown this process started and has not announced yet.
    started: Option<Duration>,
}

impl Health {
    fn roll(&mut self, minute: u64) {
        if self.minute != minute {
            self.minute = minute;
            self.fails = 0;
            self.requests = 0;
            self.tokens = 0;
        }
    }

    /// When the deployment comes back, if it is cooling down now.
    pub fn cooling_until(&mut self, now: Instant) -> Option<Instant> {
        match self.cooling_until {
            Some(until) if until > now => Some(until),
            Some(_) => {
                self.cooling_until = None;
                None
            }
            None => None,
        }
    }

    /// Cools the deployment until `until` (unless it already cools longer),
    /// for a cooldown another instance started: nothing is announced.
    pub fn cool_until(&mut self, until: Instant) {
        if self.cooling_until.is_none_or(|u| u < until) {
            self.cooling_until = Some(until);
        }
    }

    /// The cooldown started since the last call, to announce it once.
    pub fn take_started(&mut self) -> Option<Duration> {
        self.started.take()
    }

    /// Records a failure; returns the cooldown it started, if any. `alone`
    /// says the deployment is the only one of its model group.
    pub fn record_failure(
        &mut self,
        policy: &CooldownPolicy,
        class: ErrorClass,
        retry_after: Option<Duration>,
        alone: bool,
        now: Instant,
        minute: u64,
    ) -> Option<Duration> {
        if policy.disabled || !class.counts_against_deployment() {
            return None;
        }
        self.roll(minute);
        self.fails += 1;
        let at_once = matches!(class, ErrorClass::Authentication | ErrorClass::NotFound);
        let cool = match &policy.count_rule {
            Some(rule) => at_once || self.fails > rule.tolerance(class),
            None => at_once || self.fails_too_often(class, alone),
        };
        if !cool {
            return None;
        }
        let mut time = policy.cooldown_time;
        if class == ErrorClass::RateLimit
            && let Some(ra) = retry_after
        {
            time = time.max(ra.min(RETRY_AFTER_COOLDOWN_MAX));
        }
        if policy.count_rule.is_some() {
            self.fails = 0;
        }
        // A cooldown_time too large to add to the clock means "for as long
        // as this clock can tell", not a panic.
        self.cooling_until = now
            .checked_add(time)
            .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))));
        self.started = Some(time);
        Some(time)
    }

    /// The failure-rate rule: a 429 in a group of several deployments, or
    /// more than half of at least five requests this minute failed. A
    /// group's only deployment is never cooled this way: cooling it would
    /// turn every next request into a 503.
    fn fails_too_often(&self, class: ErrorClass, alone: bool) -> bool {
        if alone {
            return false;
        }
        if class == ErrorClass::RateLimit {
            return true;
        }
        // Requests are counted as they start, so the failing one is in.
        let requests = self.requests.max(u64::from(self.fails));
        requests >= FAILURE_RATE_MIN_REQUESTS
            && u64::from(self.fails) as f64 > FAILURE_RATE_THRESHOLD * requests as f64
    }

    /// Counts one request against this minute's rpm.
    pub fn record_request(&mut self, minute: u64) {
        self.roll(minute);
        self.requests += 1;
    }

    /// Counts tokens against this minute's tpm.
    pub fn record_tokens(&mut self, minute: u64, tokens: u64) {
        self.roll(minute);
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// Requests and tokens used so far this minute.
    pub fn usage(&mut self, minute: u64) -> (u64, u64) {
        self.roll(minute);
        (self.requests, self.tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cools_down_after_more_than_allowed_fails() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(3)),
            ..CooldownPolicy::default()
        };
        let now = Instant::now();
        let mut h = Health::default();
        for _ in 0..3 {
            assert!(
                h.record_failure(&policy, ErrorClass::InternalServer, None, false, now, 0)
                    .is_none()
            );
        }
        assert!(
            h.record_failure(&policy, ErrorClass::InternalServer, None, false, now, 0)
                .is_some()
        );
        assert!(h.cooling_until(now).is_some());
        assert!(h.cooling_until(now + Duration::from_secs(6)).is_none());
    }

    #[test]
    fn a_started_cooldown_is_announced_once_and_a_received_one_never() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        h.record_failure(&policy, ErrorClass::Authentication, None, false, now, 0);
        assert_eq!(h.take_started(), Some(policy.cooldown_time));
        assert_eq!(h.take_started(), None);
        let mut other = Health::default();
        other.cool_until(now + Duration::from_secs(9));
        assert_eq!(other.take_started(), None);
        assert!(other.cooling_until(now + Duration::from_secs(8)).is_some());
        other.cool_until(now + Duration::from_secs(1));
        assert!(
            other.cooling_until(now + Duration::from_secs(8)).is_some(),
            "a shorter cooldown does not cut a longer one"
        );
    }

    #[test]
    fn auth_and_not_found_cool_down_at_once() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        assert!(
            h.record_failure(&policy, ErrorClass::Authentication, None, false, now, 0)
                .is_some()
        );
    }

    #[test]
    fn rate_limit_cools_for_the_longer_retry_after() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(0)),
            ..CooldownPolicy::default()
        };
        let mut h = Health::default();
        let got = h.record_failure(
            &policy,
            ErrorClass::RateLimit,
            Some(Duration::from_secs(30)),
            false,
            Instant::now(),
            0,
        );
        assert_eq!(got, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_huge_retry_after_cools_for_at_most_the_cap() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(0)),
            ..CooldownPolicy::default()
        };
        let mut h = Health::default();
        let now = Instant::now();
        let got = h.record_failure(
            &policy,
            ErrorClass::RateLimit,
            Some(Duration::MAX),
            false,
            now,
            0,
        );
        assert_eq!(got, Some(RETRY_AFTER_COOLDOWN_MAX));
        assert!(h.cooling_until(now + RETRY_AFTER_COOLDOWN_MAX).is_none());
    }

    #[test]
    fn an_enormous_cooldown_time_does_not_panic() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(0)),
            cooldown_time: Duration::MAX,
            disabled: false,
        };
        let mut h = Health::default();
        let now = Instant::now();
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, false, now, 0)
                .is_some()
        );
        assert!(h.cooling_until(now).is_some());
    }

    #[test]
    fn bad_requests_never_cool_a_deployment() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(0)),
            ..CooldownPolicy::default()
        };
        let mut h = Health::default();
        assert!(
            h.record_failure(
                &policy,
                ErrorClass::BadRequest,
                None,
                false,
                Instant::now(),
                0
            )
            .is_none()
        );
    }

    #[test]
    fn failures_are_forgotten_in_a_new_minute() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule::allowing(1)),
            ..CooldownPolicy::default()
        };
        let now = Instant::now();
        let mut h = Health::default();
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, false, now, 0)
                .is_none()
        );
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, false, now, 1)
                .is_none()
        );
    }

    /// `successes` then `failures` requests this minute on a deployment in
    /// a group of several; whether the last failure cooled it.
    fn rate_rule_after(successes: u32, failures: u32) -> bool {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        let mut cooled = None;
        for i in 0..successes + failures {
            h.record_request(0);
            if i >= successes {
                cooled = h.record_failure(&policy, ErrorClass::InternalServer, None, false, now, 0);
            }
        }
        cooled.is_some()
    }

    #[test]
    fn by_default_more_than_half_of_five_requests_failing_cools() {
        assert!(rate_rule_after(2, 3));
        assert!(!rate_rule_after(3, 2));
        assert!(
            !rate_rule_after(0, 4),
            "fewer than five requests never cool"
        );
        assert!(rate_rule_after(0, 5));
    }

    #[test]
    fn by_default_a_rate_limit_cools_only_a_deployment_with_siblings() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut shared = Health::default();
        shared.record_request(0);
        assert!(
            shared
                .record_failure(&policy, ErrorClass::RateLimit, None, false, now, 0)
                .is_some()
        );
        let mut alone = Health::default();
        for _ in 0..10 {
            alone.record_request(0);
            assert!(
                alone
                    .record_failure(&policy, ErrorClass::RateLimit, None, true, now, 0)
                    .is_none()
            );
            assert!(
                alone
                    .record_failure(&policy, ErrorClass::InternalServer, None, true, now, 0)
                    .is_none()
            );
        }
        assert!(
            alone
                .record_failure(&policy, ErrorClass::NotFound, None, true, now, 0)
                .is_some(),
            "an unknown model cools even the only deployment"
        );
    }

    #[test]
    fn allowed_fails_policy_sets_the_tolerance_per_class() {
        let policy = CooldownPolicy {
            count_rule: Some(CountRule {
                allowed_fails: 0,
                by_class: AllowedFailsByClass {
                    rate_limit: Some(2),
                    ..AllowedFailsByClass::default()
                },
            }),
            ..CooldownPolicy::default()
        };
        let now = Instant::now();
        let mut h = Health::default();
        for _ in 0..2 {
            assert!(
                h.record_failure(&policy, ErrorClass::RateLimit, None, true, now, 0)
                    .is_none()
            );
        }
        assert!(
            h.record_failure(&policy, ErrorClass::RateLimit, None, true, now, 0)
                .is_some()
        );
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, true, now, 0)
                .is_some()
        );
    }
}
