//! Retries within one model group: how many, how long to wait, and the loop
//! that tries deployments until one answers. All retry and backoff logic of
//! the gateway lives here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attempt::{Answer, attempt, own_deadline};
use super::deployment::{CallSlot, Deployment};
use super::error::{ErrorClass, RouteError, classify};
use super::{ModelGroup, RouteRequest, Router};
use crate::config::RetryPolicyConfig;
use crate::openai::Endpoint;
use crate::ops::Attempt;
use crate::providers::UpstreamError;

/// Longest error message an attempt record keeps.
const MAX_ATTEMPT_ERROR_CHARS: usize = 1000;

/// First backoff step when the same deployment must be retried.
const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest backoff step.
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Longest wait an upstream's `retry-after` can impose before a retry. A
/// longer hint (a quota that resets in an hour) is not waited for at all,
/// as in LiteLLM: the retry backs off as without one, rather than hold the
/// client for a minute per retry; the hint still cools the deployment down
/// (up to the cooldown cap).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(crate::config::MAX_RETRY_AFTER_SECS);

/// How many times each error class is retried, from `num_retries`,
/// `retry_policy` and `retry_after`.
#[derive(Debug, Clone, Default)]
pub struct RetryPolicy {
    pub num_retries: u32,
    pub per_class: RetryPolicyConfig,
    /// Minimum wait before any retry.
    pub min_wait: Duration,
}

impl RetryPolicy {
    /// Retries allowed after a failure of `class` on `deployment`: the class's
    /// `retry_policy` entry, else (for retryable classes) the request's own
    /// `num_retries`, the deployment's `max_retries`, else `num_retries`.
    /// Non-retryable classes get none unless the policy names them.
    pub fn retries_for(
        &self,
        class: ErrorClass,
        deployment: &Deployment,
        requested: Option<u32>,
    ) -> u32 {
        let p = &self.per_class;
        let explicit = match class {
            ErrorClass::BadRequest => p.BadRequestErrorRetries,
            ErrorClass::Authentication => p.AuthenticationErrorRetries,
            ErrorClass::Timeout => p.TimeoutErrorRetries,
            ErrorClass::RateLimit => p.RateLimitErrorRetries,
            ErrorClass::ContentPolicy => p.ContentPolicyViolationErrorRetries,
            ErrorClass::InternalServer | ErrorClass::Connection => p.InternalServerErrorRetries,
            ErrorClass::ContextWindow | ErrorClass::NotFound => None,
        };
        match explicit {
            Some(n) => n,
            None if class.is_retryable() => requested
                .or(deployment.max_retries)
                .unwrap_or(self.num_retries),
            None => 0,
        }
    }

    /// Wait before retry number `retry` (1-based). Moving to another
    /// deployment waits only the configured minimum; retrying the same one
    /// backs off exponentially with jitter, and never less than the
    /// upstream's `retry-after` when that is at most [`RETRY_AFTER_MAX`].
    pub fn wait(
        &self,
        retry: u32,
        same_deployment: bool,
        upstream_retry_after: Option<Duration>,
    ) -> Duration {
        if !same_deployment {
            return self.min_wait;
        }
        let exp = BACKOFF_INITIAL.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(BACKOFF_MAX);
        let jittered = capped.mul_f64(0.5 + fastrand::f64() * 0.5);
        let hinted = upstream_retry_after
            .filter(|d| *d <= RETRY_AFTER_MAX)
            .unwrap_or(Duration::ZERO);
        jittered.max(hinted).max(self.min_wait)
    }
}

/// Records one upstream call in the call's attempt log, when it keeps one
/// (`started` is set then): an answer, or a failure with its class and its
/// redacted message.
fn record_attempt(
    req: &RouteRequest<'_>,
    started: Option<Instant>,
    deployment: &Deployment,
    group: &ModelGroup,
    failure: Option<(&UpstreamError, ErrorClass, &str)>,
) {
    let (Some(log), Some(started)) = (&req.ctx.attempts, started) else {
        return;
    };
    let status = match failure {
        None => Some(200),
        Some((UpstreamError::Status { status, .. }, _, _)) => Some(*status),
        Some(_) => None,
    };
    log.push(Attempt {
        deployment: deployment.id.clone(),
        group: group.name.clone(),
        status,
        error_class: failure.map(|(_, class, _)| class.label()),
        duration: started.elapsed(),
        error: failure
            .map(|(_, _, message)| message.chars().take(MAX_ATTEMPT_ERROR_CHARS).collect()),
    });
}

fn retry_after_of(error: &UpstreamError) -> Option<Duration> {
    match error {
        UpstreamError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// A call slot of `deployment` when it limits its calls in flight
/// (`max_parallel_requests`): at the limit, the call waits for one, as
/// LiteLLM's per-deployment semaphore makes it, for at most the
/// deployment's timeout (or the request's, when shorter).
async fn wait_for_slot(
    group: &ModelGroup,
    deployment: &Deployment,
    req: &RouteRequest<'_>,
    waited: &mut Duration,
) -> Result<Option<CallSlot>, RouteError> {
    if deployment.call_limit().is_none() {
        return Ok(None);
    }
    // The request's own `timeout` shortens the wait, never lengthens it.
    let configured = deployment.timeouts.request;
    let within = req.limits.timeout.map_or(configured, |t| t.min(configured));
    let asked = Instant::now();
    let slot = deployment.wait_for_slot(within).await;
    *waited += asked.elapsed();
    slot.map_err(|full| RouteError::DeploymentBusy {
        group: group.name.to_string(),
        deployment: deployment.id.to_string(),
        limit: full.limit,
        waited: within,
    })
}

/// Tries deployments of `group` until one answers or the retries for the
/// failures seen are used up. `attempts` counts every upstream call made;
/// `waited` adds up the time failed calls and the waits before retries took.
pub(super) async fn run_group(
    router: &Router,
    group: &ModelGroup,
    req: &RouteRequest<'_>,
    capture: Option<&str>,
    attempts: &mut u32,
    waited: &mut Duration,
) -> Result<(Answer, Arc<Deployment>), RouteError> {
    let mut tried: Vec<usize> = Vec::new();
    let needs = router.needs(group, req)?;
    let mut next = router.select(group, &tried, &needs)?;
    let mut retries = 0u32;
    loop {
        let deployment = group.deployments[next].clone();
        let slot = wait_for_slot(group, &deployment, req, waited).await?;
        *attempts += 1;
        if let Some(log) = &req.ctx.attempts {
            log.begin();
        }
        let called = Instant::now();
        // Kept for the attempt's record only when attempts are recorded.
        let started = req.ctx.attempts.as_ref().map(|_| called);
        let result = attempt(router, &deployment, req, capture, slot).await;
        let error = match result {
            Ok(answer) => {
                record_attempt(req, started, &deployment, group, None);
                tracing::debug!(
                    deployment = %deployment.id,
                    group = %group.name,
                    attempt = *attempts,
                    upstream_ms = answer.upstream_time.as_millis() as u64,
                    "upstream answered"
                );
                return Ok((answer, deployment));
            }
            Err(e) => e,
        };
        *waited += called.elapsed();
        let class = classify(&error);
        // A wildcard deployment serves every model its pattern matches: the
        // upstream not knowing one of them (404), or not letting this key
        // use it (403), says nothing about the others.
        let about_one_model = deployment.group.contains('*')
            && matches!(
                &error,
                UpstreamError::Status {
                    status: 403 | 404,
                    ..
                }
            );
        // The request's own deadline says nothing about the deployment:
        // neither a cooldown, a latency sample nor a failed call in its
        // health and metrics.
        let own = own_deadline(&deployment, req, &error);
        // A timeout is a latency sample too: the deployment took at least
        // this long. Without it a deployment that only ever times out has
        // no sample, and latency-based routing would keep trying it first
        // as "not measured yet".
        if matches!(error, UpstreamError::Timeout(_)) && !own {
            deployment.record_latency(called.elapsed());
        }
        // A 404 on another endpoint than chat (an image, embedding,
        // moderation or rerank call naming a chat model, which any caller
        // may send) says the deployment does not serve that endpoint, not
        // that it is unwell for the calls it is there for.
        let about_one_endpoint = req.endpoint != Endpoint::ChatCompletions
            && matches!(&error, UpstreamError::Status { status: 404, .. });
        if !about_one_model && !about_one_endpoint && !own {
            router.record_failure(&deployment, class, retry_after_of(&error));
        }
        let message = deployment.target.redact(&error.to_string());
        record_attempt(
            req,
            started,
            &deployment,
            group,
            Some((&error, class, &message)),
        );
        if !own {
            deployment.with_checks(|c| c.record_call_failure(message));
        }
        if !tried.contains(&next) {
            tried.push(next);
        }
        let allowed = router
            .retry
            .retries_for(class, &deployment, req.limits.num_retries);
        let failed = RouteError::Upstream {
            group: group.name.to_string(),
            deployment: deployment.id.to_string(),
            error: Box::new(error),
        };
        let candidate = router.select(group, &tried, &needs).ok();
        // A bad key or unknown model is this deployment's problem: a healthy
        // sibling that has not been tried may still answer.
        let sibling_may_help = matches!(class, ErrorClass::Authentication | ErrorClass::NotFound)
            && candidate.is_some_and(|c| !tried.contains(&c));
        if retries >= allowed && !sibling_may_help {
            // A request the upstream refused for what it asked is the
            // client's matter, not the operator's: said only at debug, so
            // that a client cannot fill the log with its own bad requests.
            if class.counts_against_deployment() {
                tracing::warn!(deployment = %deployment.id, group = %group.name, ?class, error = %failed, "giving up on group: no retries left for this error");
            } else {
                tracing::debug!(deployment = %deployment.id, group = %group.name, ?class, error = %failed, "the upstream refused the request");
            }
            return Err(failed);
        }
        retries += 1;
        let Some(candidate) = candidate else {
            // What the client needs to hear is the failure itself, not that
            // it has just cooled the last deployment down.
            tracing::warn!(deployment = %deployment.id, group = %group.name, ?class, error = %failed, "no deployment left to retry on");
            return Err(failed);
        };
        let upstream_hint = match &failed {
            RouteError::Upstream { error, .. } => retry_after_of(error),
            _ => None,
        };
        let wait = router.retry.wait(retries, candidate == next, upstream_hint);
        tracing::warn!(
            deployment = %deployment.id,
            group = %group.name,
            ?class,
            error = %failed,
            retry = retries,
            wait_ms = wait.as_millis() as u64,
            next = %group.deployments[candidate].id,
            "retrying"
        );
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            *waited += wait;
        }
        next = candidate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_to_another_deployment_waits_only_the_minimum() {
        let p = RetryPolicy {
            min_wait: Duration::from_millis(7),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.wait(3, false, Some(Duration::from_secs(9))),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let first = p.wait(1, true, None);
        assert!(
            first >= BACKOFF_INITIAL / 2 && first <= BACKOFF_INITIAL,
            "{first:?}"
        );
        let third = p.wait(3, true, None);
        assert!(third >= BACKOFF_INITIAL * 2, "{third:?}");
        assert!(p.wait(1, true, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert!(p.wait(30, true, None) <= BACKOFF_MAX);
    }

    #[test]
    fn a_hint_past_a_minute_is_not_waited_for() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait(1, true, Some(RETRY_AFTER_MAX)), RETRY_AFTER_MAX);
        for hint in [RETRY_AFTER_MAX + Duration::from_secs(1), Duration::MAX] {
            assert!(p.wait(1, true, Some(hint)) <= BACKOFF_INITIAL);
            assert!(p.wait(u32::MAX, true, Some(hint)) <= BACKOFF_MAX);
        }
    }
}
