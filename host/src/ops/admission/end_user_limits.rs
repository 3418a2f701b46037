//! The end user a request names (`user`, or LiteLLM's customer headers):
//! refused while blocked, and counted in the budget it is linked to (or
//! the config's default for end users with none), as LiteLLM counts its
//! customers. Its record comes from the end-user cache, so a request
//! naming an end user seen before never waits on the store; requests that
//! name none, or run without a key store, pass at once.

use std::sync::Arc;

use super::key_limits::refusal as limit_refusal;
use super::{AdmissionCheck, Candidate, Decision, Refusal, Verdict};
use crate::keys::{EndUser, EndUserDefaults, KeyError, Keys, Limits, scopes};
use crate::limits::{Limiter, Slot};
use crate::logging::Throttle;

/// At most one warning a minute that the default budget is missing.
static MISSING_DEFAULT: Throttle = Throttle::new(std::time::Duration::from_secs(60));

/// What an admitted end user's request holds: its in-flight slots.
pub struct EndUserAdmission {
    _slots: Vec<Slot>,
}

/// Checks and counts the end user of a request.
pub struct EndUserLimits {
    keys: Option<Keys>,
    limiter: Limiter,
}

impl EndUserLimits {
    /// A check reading end users from `keys` (none: no check) and counting
    /// them in `limiter`.
    pub fn new(keys: Option<Keys>, limiter: Limiter) -> Self {
        Self { keys, limiter }
    }
}

impl AdmissionCheck for EndUserLimits {
    fn name(&self) -> &'static str {
        "end-user-limits"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        let (Some(keys), Some(id)) = (&self.keys, candidate.ctx.end_user.as_deref()) else {
            return Verdict::Now(Ok(None));
        };
        Verdict::Later(Box::pin(async move {
            let end_user = keys.end_user(id).await.map_err(store_refusal)?;
            if end_user.is_blocked() {
                return Err(blocked(id));
            }
            let Some(limits) = limits_of(keys, &end_user, candidate.end_user_defaults).await?
            else {
                return Ok(None);
            };
            self.admit(candidate, end_user, limits).await
        }))
    }
}

impl EndUserLimits {
    /// Counts the request in the end user's scopes, and has the meter
    /// charge its calls there.
    async fn admit(
        &self,
        candidate: &Candidate<'_>,
        end_user: Arc<EndUser>,
        limits: Arc<Limits>,
    ) -> Decision {
        let counted = scopes::end_user_scopes(&end_user, &limits, candidate.model);
        if counted.is_empty() {
            return Ok(None);
        }
        let admitted = self
            .limiter
            .admit(&counted, true)
            .await
            .map_err(|refused| limit_refusal(&refused))?;
        drop(counted);
        candidate.ctx.request.meter.count_end_user(end_user, limits);
        Ok(Some(Box::new(EndUserAdmission {
            _slots: admitted.slots,
        })))
    }
}

/// The limits that apply to `end_user`: its budget's; for one with no
/// budget (or one since deleted), the default budget's (linking it there,
/// once) or the default `max_end_user_budget`; `None` when nothing limits
/// it.
async fn limits_of(
    keys: &Keys,
    end_user: &EndUser,
    defaults: &EndUserDefaults,
) -> Result<Option<Arc<Limits>>, Refusal> {
    if let Some(own) = end_user.own_limits() {
        return Ok(Some(own.clone()));
    }
    if let Some(budget_id) = &defaults.budget_id {
        let budget = keys.budget(budget_id).await.map_err(store_refusal)?;
        if let Some(budget) = budget {
            if end_user.claim_default_link() {
                keys.link_default_budget(&end_user.id, &budget);
            }
            return Ok(Some(Arc::new(budget.limits.clone())));
        }
        if MISSING_DEFAULT.allow() {
            tracing::warn!(
                budget_id,
                "litellm_settings.max_end_user_budget_id names a budget that does not exist \
                 (make it with /budget/new); max_end_user_budget applies meanwhile"
            );
        }
    }
    Ok(defaults.limits.clone())
}

/// The refusal of a blocked end user's request.
fn blocked(id: &str) -> Refusal {
    Refusal {
        status: 403,
        kind: "permission_error",
        code: "end_user_blocked",
        message: format!("end user {id} is blocked from making model calls (/customer/unblock)"),
        retry_after: None,
        headers: Vec::new(),
    }
}

/// The refusal when the store cannot say who the end user is.
fn store_refusal(e: KeyError) -> Refusal {
    tracing::warn!("end user lookup: {e}");
    Refusal {
        status: 503,
        kind: "api_error",
        code: "store_unavailable",
        message:
            "the key store is unavailable, so the request's end user cannot be checked; try again"
                .into(),
        retry_after: Some(std::time::Duration::from_secs(1)),
        headers: Vec::new(),
    }
}
