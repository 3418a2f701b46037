//! A virtual key's rate limits, parallel-request limits and budgets, at
//! every level they are set (key, user, team, and each level's per-model
//! limits). A refusal is a 429 with `Retry-After` and LiteLLM's
//! `x-ratelimit-*` headers, or, for a spent budget, LiteLLM's
//! `budget_exceeded` error naming the budget, its limit and its reset time.
//! The in-flight slots it takes are held by its guard until the request
//! ends; the guard also carries the rate figures an admitted answer reports
//! in the same headers.

use http::{HeaderName, HeaderValue};

use super::{AdmissionCheck, Candidate, Refusal, Verdict};
use crate::keys::scopes;
use crate::limits::{Exceeded, Level, Limiter, RateFigures, RateKind, Refused, Slot};

/// What an admitted key request holds: its in-flight slots, and what is
/// left of its tightest per-minute limits.
pub struct KeyAdmission {
    _slots: Vec<Slot>,
    pub figures: RateFigures,
}

/// Checks and counts a key caller's request in its scopes.
pub struct KeyLimits {
    limiter: Limiter,
}

impl KeyLimits {
    /// A check counting in `limiter`.
    pub fn new(limiter: Limiter) -> Self {
        Self { limiter }
    }
}

impl AdmissionCheck for KeyLimits {
    fn name(&self) -> &'static str {
        "key-limits"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        let Some(p) = candidate.ctx.request.caller.principal() else {
            return Verdict::Now(Ok(None));
        };
        let mut counted = scopes::scopes(p, candidate.model);
        counted.extend(scopes::fallback_scopes(
            p,
            candidate.model,
            candidate.fallbacks,
        ));
        if counted.is_empty() {
            return Verdict::Now(Ok(None));
        }
        Verdict::Later(Box::pin(async move {
            match self.limiter.admit(&counted, true).await {
                Ok(admit) => Ok(Some(Box::new(KeyAdmission {
                    _slots: admit.slots,
                    figures: admit.limits,
                }) as super::Guard)),
                Err(refused) => Err(refusal(&refused)),
            }
        }))
    }
}

/// The HTTP refusal for a limit that was reached.
pub fn refusal(refused: &Refused) -> Refusal {
    let exceeded = &refused.exceeded;
    let (status, kind, code) = match exceeded {
        Exceeded::Rate { denied, .. } => (
            429,
            "rate_limit_error",
            match denied.kind {
                RateKind::Requests => "rpm_limit_exceeded",
                RateKind::Tokens => "tpm_limit_exceeded",
            },
        ),
        Exceeded::Parallel { .. } => (429, "rate_limit_error", "max_parallel_requests_exceeded"),
        Exceeded::Budget { level, .. } => (400, "budget_exceeded", budget_code(*level)),
    };
    Refusal {
        status,
        kind,
        code,
        message: exceeded.to_string(),
        retry_after: exceeded.retry_after(),
        headers: rate_headers(&refused.figures),
    }
}

/// The error code naming which budget was spent.
fn budget_code(level: Level) -> &'static str {
    match level {
        Level::Key => "key_budget_exceeded",
        Level::User => "user_budget_exceeded",
        Level::Team => "team_budget_exceeded",
        Level::Model => "model_budget_exceeded",
        Level::EndUser => "end_user_budget_exceeded",
        Level::Proxy => "proxy_budget_exceeded",
    }
}

/// LiteLLM's rate-limit header names, built at compile time: every keyed
/// answer carries some of them, and a name made from a string at run time
/// is validated byte by byte each time.
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");

/// LiteLLM's rate-limit headers for the figures that are known.
pub fn rate_headers(f: &RateFigures) -> Vec<(HeaderName, HeaderValue)> {
    [
        (LIMIT_REQUESTS, f.limit_requests),
        (REMAINING_REQUESTS, f.remaining_requests),
        (LIMIT_TOKENS, f.limit_tokens),
        (REMAINING_TOKENS, f.remaining_tokens),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name, HeaderValue::from(v))))
    .collect()
}
