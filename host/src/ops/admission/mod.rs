//! Admission: the checks a request passes once the gateway knows who asks and
//! for which model, before any model is called. Each check is one small
//! module implementing [`AdmissionCheck`]; [`Admission::run`] applies them in
//! order. A check may hand back a guard that holds a resource (a slot, a
//! permit) for as long as the request runs.
//!
//! To add a check: a new file here and one line in [`default_checks`].

mod composite_capacity;
mod end_user_limits;
mod key_limits;
mod model_access;
mod proxy_budget;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::context::CallContext;
pub use composite_capacity::{CompositeCapacity, DEFAULT_QUEUE_TIMEOUT};
pub use end_user_limits::{EndUserAdmission, EndUserLimits};
pub use key_limits::{KeyAdmission, KeyLimits, rate_headers, refusal as limit_refusal};
pub use model_access::{AccessGroups, ModelAccess, denied_by, refusal as access_refusal};
pub use proxy_budget::ProxyBudgetLimit;

/// What a check sees of a request.
pub struct Candidate<'a> {
    pub ctx: &'a CallContext,
    /// The public model the request is for: the name the client asked for,
    /// or the model group a router alias of it names. Limits count it.
    pub model: &'a str,
    /// The name the client asked for (after its key's aliases): access may
    /// be given to it or to `model`, as LiteLLM allows either.
    pub asked: &'a str,
    /// Whether that model is a composite profile.
    pub composite: bool,
    /// The groups the client named in its own `fallbacks`: any of them may
    /// answer, so each must be one the caller may use.
    pub fallbacks: &'a [String],
    /// The access groups of the config version serving the request.
    pub access: &'a AccessGroups,
    /// The budget of end users with none of their own, in that version.
    pub end_user_defaults: &'a crate::keys::EndUserDefaults,
    /// The whole gateway's budget in that version, if it sets one.
    pub proxy_budget: Option<&'a crate::keys::ProxyBudgetSettings>,
}

/// Why a request was refused, in terms the HTTP layer maps to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// OpenAI error `code`, naming the check that refused.
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Extra response headers (the `x-ratelimit-*` figures of a 429).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Held for as long as an admitted request runs; dropping it releases
/// whatever the check reserved.
pub type Guard = Box<dyn Any + Send>;

/// What a check decides: admitted (maybe with a guard) or refused.
pub type Decision = Result<Option<Guard>, Refusal>;

/// A check's answer: most checks decide at once (no key, no limits, not a
/// composite), and only those that must wait (a limiter's store, a queue)
/// box a future, so a request pays for no allocation it does not need.
pub enum Verdict<'a> {
    /// Decided without waiting.
    Now(Decision),
    /// Decided once the future completes.
    Later(Pin<Box<dyn Future<Output = Decision> + Send + 'a>>),
}

/// One admission rule.
pub trait AdmissionCheck: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Admits the request (maybe with a guard) or refuses it.
    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a>;
}

/// The checks every request passes, in order: a virtual key's model
/// access, the whole gateway's budget (its record in `proxy_budget`), the
/// key's limits, then its end user's (all counted in `limiter`; end users
/// are read from `keys`), before a composite waits for a slot.
pub fn default_checks(
    composite_queue_timeout: Duration,
    limiter: &crate::limits::Limiter,
    keys: Option<&crate::keys::Keys>,
    proxy_budget: Arc<crate::keys::ProxyBudget>,
) -> Vec<Arc<dyn AdmissionCheck>> {
    vec![
        Arc::new(ModelAccess),
        Arc::new(ProxyBudgetLimit::new(proxy_budget, limiter.clone())),
        Arc::new(KeyLimits::new(limiter.clone())),
        Arc::new(EndUserLimits::new(keys.cloned(), limiter.clone())),
        Arc::new(CompositeCapacity::new(composite_queue_timeout)),
    ]
}

/// The ordered list of checks of a running server.
#[derive(Clone)]
pub struct Admission {
    checks: Arc<[Arc<dyn AdmissionCheck>]>,
}

/// The guards of an admitted request; released together when it ends.
pub struct Admitted {
    guards: Vec<Guard>,
}

impl Admitted {
    /// The guard of type `T` a check handed back, to read what it says
    /// (e.g. the rate figures of [`KeyAdmission`]).
    pub fn guard<T: 'static>(&self) -> Option<&T> {
        self.guards.iter().find_map(|g| g.downcast_ref::<T>())
    }
}

impl Admission {
    /// Admission applying `checks` in order.
    pub fn new(checks: Vec<Arc<dyn AdmissionCheck>>) -> Self {
        Self {
            checks: checks.into(),
        }
    }

    /// Runs every check; the first refusal wins and releases what earlier
    /// checks reserved.
    pub async fn run(&self, candidate: &Candidate<'_>) -> Result<Admitted, Refusal> {
        let mut guards = Vec::new();
        for check in self.checks.iter() {
            let decided = match check.check(candidate) {
                Verdict::Now(decided) => decided,
                Verdict::Later(waiting) => waiting.await,
            };
            if let Some(guard) = decided? {
                guards.push(guard);
            }
        }
        Ok(Admitted { guards })
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(default_checks(
            DEFAULT_QUEUE_TIMEOUT,
            &crate::limits::Limiter::default(),
            None,
            Arc::default(),
        ))
    }
}
