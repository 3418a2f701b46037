//! The whole gateway's budget (`litellm_settings.max_budget`): every model
//! request is refused while it is spent, whoever asks (the master key
//! included, as in LiteLLM), with the `budget_exceeded` error naming it,
//! its cap and when it renews. An admitted request's calls are charged to
//! it by the meter. A gateway without a budget passes at once.

use std::sync::Arc;

use super::key_limits::refusal as limit_refusal;
use super::{AdmissionCheck, Candidate, Verdict};
use crate::keys::ProxyBudget;
use crate::limits::Limiter;

/// Checks the gateway's budget and has the meter charge it.
pub struct ProxyBudgetLimit {
    budget: Arc<ProxyBudget>,
    limiter: Limiter,
}

impl ProxyBudgetLimit {
    /// A check reading the budget's record from `budget` and counting in
    /// `limiter`.
    pub fn new(budget: Arc<ProxyBudget>, limiter: Limiter) -> Self {
        Self { budget, limiter }
    }
}

impl AdmissionCheck for ProxyBudgetLimit {
    fn name(&self) -> &'static str {
        "proxy-budget"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        let Some(settings) = candidate.proxy_budget else {
            return Verdict::Now(Ok(None));
        };
        let scope = self.budget.scope(settings);
        Verdict::Later(Box::pin(async move {
            self.limiter
                .admit(std::slice::from_ref(&scope), false)
                .await
                .map_err(|refused| limit_refusal(&refused))?;
            candidate.ctx.request.meter.count_proxy(scope);
            Ok(None)
        }))
    }
}
