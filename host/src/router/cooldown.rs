//! Cooldowns: a deployment that keeps failing is taken out of rotation for a
//! while and comes back by itself. Also keeps the per-minute request and token
//! counts that usage-based routing reads, since both share one window.

use std::time::{Duration, Instant};

use super::error::ErrorClass;

/// When a deployment is cooled down, from `router_settings`.
#[derive(Debug, Clone, Copy)]
pub struct CooldownPolicy {
    /// Failures tolerated within a minute; one more cools the deployment down.
    pub allowed_fails: u32,
    pub cooldown_time: Duration,
    pub disabled: bool,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        Self {
            allowed_fails: 3,
            cooldown_time: Duration::from_secs(5),
            disabled: false,
        }
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

    /// Records a failure; returns the cooldown it started, if any.
    pub fn record_failure(
        &mut self,
        policy: &CooldownPolicy,
        class: ErrorClass,
        retry_after: Option<Duration>,
        now: Instant,
        minute: u64,
    ) -> Option<Duration> {
        if policy.disabled || !class.counts_against_deployment() {
            return None;
        }
        self.roll(minute);
        self.fails += 1;
        let at_once = matches!(class, ErrorClass::Authentication | ErrorClass::NotFound);
        if !at_once && self.fails <= policy.allowed_fails {
            return None;
        }
        let mut time = policy.cooldown_time;
        if class == ErrorClass::RateLimit
            && let Some(ra) = retry_after
        {
            time = time.max(ra);
        }
        self.fails = 0;
        self.cooling_until = Some(now + time);
        Some(time)
    }

    /// Counts one request against this minute's rpm.
    pub fn record_request(&mut self, minute: u64) {
        self.roll(minute);
        self.requests += 1;
    }

    /// Counts tokens against this minute's tpm.
    pub fn record_tokens(&mut self, minute: u64, tokens: u64) {
        self.roll(minute);
        self.tokens += tokens;
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
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        for _ in 0..3 {
            assert!(
                h.record_failure(&policy, ErrorClass::InternalServer, None, now, 0)
                    .is_none()
            );
        }
        assert!(
            h.record_failure(&policy, ErrorClass::InternalServer, None, now, 0)
                .is_some()
        );
        assert!(h.cooling_until(now).is_some());
        assert!(h.cooling_until(now + Duration::from_secs(6)).is_none());
    }

    #[test]
    fn auth_and_not_found_cool_down_at_once() {
        let policy = CooldownPolicy::default();
        let now = Instant::now();
        let mut h = Health::default();
        assert!(
            h.record_failure(&policy, ErrorClass::Authentication, None, now, 0)
                .is_some()
        );
    }

    #[test]
    fn rate_limit_cools_for_the_longer_retry_after() {
        let policy = CooldownPolicy {
            allowed_fails: 0,
            ..CooldownPolicy::default()
        };
        let mut h = Health::default();
        let got = h.record_failure(
            &policy,
            ErrorClass::RateLimit,
            Some(Duration::from_secs(30)),
            Instant::now(),
            0,
        );
        assert_eq!(got, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_requests_never_cool_a_deployment() {
        let policy = CooldownPolicy {
            allowed_fails: 0,
            ..CooldownPolicy::default()
        };
        let mut h = Health::default();
        assert!(
            h.record_failure(&policy, ErrorClass::BadRequest, None, Instant::now(), 0)
                .is_none()
        );
    }

    #[test]
    fn failures_are_forgotten_in_a_new_minute() {
        let policy = CooldownPolicy {
            allowed_fails: 1,
            ..CooldownPolicy::default()
        };
        let now = Instant::now();
        let mut h = Health::default();
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, now, 0)
                .is_none()
        );
        assert!(
            h.record_failure(&policy, ErrorClass::Timeout, None, now, 1)
                .is_none()
        );
    }
}
