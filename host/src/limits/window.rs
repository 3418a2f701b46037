//! Requests and tokens per minute for one scope (a key, a user, a team or a
//! key's use of one model). A window opens with the first request after the
//! previous one closed and lasts a minute, so a burst is measured from its
//! own start rather than from the wall clock's minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::shards::Idle;

/// How long one rate window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The counters of one scope's current window.
pub struct RateWindow(Mutex<State>);

struct State {
    start: Instant,
    requests: u64,
    tokens: u64,
}

/// Which per-minute limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
}

/// A refusal by one window: which limit, and when the window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDenied {
    pub kind: RateKind,
    pub limit: u64,
    pub retry_after: Duration,
    /// What remains of the other limit, for the rate-limit headers.
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

/// What is left in a window after a request was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remaining {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

impl RateWindow {
    /// An empty window.
    pub fn new(now: Instant) -> Self {
        Self(Mutex::new(State {
            start: now,
            requests: 0,
            tokens: 0,
        }))
    }

    /// Counts one request when neither limit is reached: a request is
    /// refused once the window holds `rpm` requests or `tpm` tokens.
    pub fn take(
        &self,
        now: Instant,
        rpm: Option<u64>,
        tpm: Option<u64>,
    ) -> Result<Remaining, RateDenied> {
        let Ok(mut s) = self.0.lock() else {
            return Ok(Remaining::default());
        };
        roll(&mut s, now);
        let remaining_requests = rpm.map(|l| l.saturating_sub(s.requests));
        let remaining_tokens = tpm.map(|l| l.saturating_sub(s.tokens));
        let retry_after = (s.start + WINDOW).saturating_duration_since(now);
        let denied = |kind, limit| RateDenied {
            kind,
            limit,
            retry_after,
            remaining_requests,
            remaining_tokens,
        };
        if let Some(limit) = rpm
            && s.requests >= limit
        {
            return Err(denied(RateKind::Requests, limit));
        }
        if let Some(limit) = tpm
            && s.tokens >= limit
        {
            return Err(denied(RateKind::Tokens, limit));
        }
        s.requests += 1;
        Ok(Remaining {
            requests: remaining_requests.map(|r| r - 1),
            tokens: remaining_tokens,
        })
    }

    /// Gives back a request counted by [`RateWindow::take`] when a later
    /// scope refused the same request.
    pub fn untake(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.requests = s.requests.saturating_sub(1);
        }
    }

    /// Takes the window another counter holds: it closes in `closes_in`
    /// and holds `requests` and `tokens` (none where they are not limited).
    pub fn follow(
        &self,
        now: Instant,
        closes_in: Duration,
        requests: Option<u64>,
        tokens: Option<u64>,
    ) {
        if let Ok(mut s) = self.0.lock() {
            s.start = now
                .checked_sub(WINDOW.saturating_sub(closes_in))
                .unwrap_or(now);
            s.requests = requests.unwrap_or(0);
            s.tokens = tokens.unwrap_or(0);
        }
    }

    /// The open window's counts, for another counter to [`follow`]: when
    /// it closes, its requests and its tokens; `None` once it has closed.
    ///
    /// [`follow`]: RateWindow::follow
    pub fn snapshot(&self, now: Instant) -> Option<(Duration, u64, u64)> {
        let s = self.0.lock().ok()?;
        let closes_in = (s.start + WINDOW).checked_duration_since(now)?;
        (!closes_in.is_zero()).then_some((closes_in, s.requests, s.tokens))
    }

    /// Counts the tokens an answered call used.
    pub fn add_tokens(&self, now: Instant, tokens: u64) {
        if let Ok(mut s) = self.0.lock() {
            roll(&mut s, now);
            s.tokens = s.tokens.saturating_add(tokens);
        }
    }
}

fn roll(s: &mut State, now: Instant) {
    if now.saturating_duration_since(s.start) >= WINDOW {
        s.start = now;
        s.requests = 0;
        s.tokens = 0;
    }
}

impl Idle for RateWindow {
    fn is_idle(&self, now: Instant) -> bool {
        self.0
            .lock()
            .map_or(true, |s| now.saturating_duration_since(s.start) >= WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_past_rpm_is_refused_until_the_window_closes() {
        let t0 = Instant::now();
        let w = RateWindow::new(t0);
        assert_eq!(w.take(t0, Some(2), None).map(|r| r.requests), Ok(Some(1)));
        assert_eq!(w.take(t0, Some(2), None).map(|r| r.requests), Ok(Some(0)));
        let later = t0 + Duration::from_secs(20);
        let denied = w.take(later, Some(2), None).unwrap_err();
        assert_eq!(denied.kind, RateKind::Requests);
        assert_eq!(denied.retry_after, Duration::from_secs(40));
        assert!(w.take(t0 + WINDOW, Some(2), None).is_ok());
    }

    #[test]
    fn tokens_past_tpm_refuse_the_next_request() {
        let t0 = Instant::now();
        let w = RateWindow::new(t0);
        assert!(w.take(t0, None, Some(10)).is_ok());
        w.add_tokens(t0, 12);
        let denied = w.take(t0, Some(100), Some(10)).unwrap_err();
        assert_eq!(denied.kind, RateKind::Tokens);
        assert_eq!(denied.remaining_tokens, Some(0));
        assert_eq!(denied.remaining_requests, Some(99));
    }

    #[test]
    fn an_untaken_request_frees_its_place() {
        let t0 = Instant::now();
        let w = RateWindow::new(t0);
        assert!(w.take(t0, Some(1), None).is_ok());
        w.untake();
        assert!(w.take(t0, Some(1), None).is_ok());
    }
}
