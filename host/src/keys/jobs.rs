//! The store's background work: resetting spent budgets when their period
//! ends (LiteLLM's behaviour: spend goes back to zero at `budget_reset_at`,
//! which moves on by one period; the spend writer runs it, see
//! [`BudgetResets`]), and jobs deleting spend-log rows and stored
//! responses older than their retention period in small batches, so none
//! ever holds a long lock.

use std::time::{Duration, SystemTime};

use super::KeyError;
use super::end_user::EndUser;
use super::model::Principal;
use super::registry::Registry;
use super::reset::ResetClock;
use super::store::{EndedPeriods, SpendOwner, Store};

/// How often due budgets are looked for (by the spend writer).
pub const RESET_EVERY: Duration = Duration::from_secs(5);
/// Spend-log rows deleted per statement.
const RETENTION_BATCH: u32 = 1000;
/// Pause between two deletion batches, so writers get the table between them.
const RETENTION_PAUSE: Duration = Duration::from_millis(50);

/// How due budgets are reset: the clock new periods end on, and the
/// cached records a reset makes stale. The spend writer resets, every
/// [`RESET_EVERY`] and before each batch, so that the calls it writes fall
/// on the right side of a boundary: one made after a period ended is
/// never added to that period's total and zeroed with it, and one made
/// before is not carried into the next period.
#[derive(Clone)]
pub struct BudgetResets {
    pub clock: ResetClock,
    pub registry: Registry<Principal>,
    pub end_users: Registry<EndUser>,
}

impl BudgetResets {
    /// Resets what is due at `now` in `store`, then drops the cached
    /// records it changed; the periods it ended.
    pub async fn run(&self, store: &Store, now: SystemTime) -> Result<EndedPeriods, KeyError> {
        let ended = store.reset_due_budgets(now, &self.clock).await?;
        if !ended.is_empty() {
            tracing::info!("budgets reset for their new period");
            self.forget(&ended);
        }
        Ok(ended)
    }

    /// Drops the cached keys whose key, user or team a reset changed, and
    /// the end users it changed; the rest stay cached, so that a reset of
    /// one budget does not send every key back to the store at once.
    fn forget(&self, ended: &EndedPeriods) {
        let keys = ended.of(SpendOwner::Key);
        let users = ended.of(SpendOwner::User);
        let teams = ended.of(SpendOwner::Team);
        if !(keys.is_empty() && users.is_empty() && teams.is_empty()) {
            let named = |id: &Option<String>, ids: &std::collections::HashSet<&str>| {
                id.as_deref().is_some_and(|id| ids.contains(id))
            };
            self.registry.invalidate_where(|p| {
                keys.contains(p.key.token_hash.as_str())
                    || named(&p.key.user_id, &users)
                    || named(&p.key.team_id, &teams)
            });
        }
        for end_user in ended.of(SpendOwner::EndUser) {
            self.end_users.invalidate(end_user);
        }
    }
}

/// How often retention runs for a given period: a tenth of it, between a
/// second and an hour.
pub fn retention_interval(period: Duration) -> Duration {
    (period / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Starts the spend-log retention job: rows older than `period` are deleted.
pub fn start_retention(store: Store, period: Duration) {
    spawn_retention("spend-log rows", period, move |cutoff| {
        let store = store.clone();
        async move { store.delete_spend_before(cutoff, RETENTION_BATCH).await }
    });
}

/// Starts the stored-responses retention job: responses stored more than
/// `period` ago are deleted.
pub fn start_response_retention(store: Store, period: Duration) {
    spawn_retention("stored responses", period, move |cutoff| {
        let store = store.clone();
        async move { store.delete_responses_before(cutoff, RETENTION_BATCH).await }
    });
}

/// Every [`retention_interval`], deletes what `delete_batch` finds older
/// than `period`, one batch of at most [`RETENTION_BATCH`] at a time.
fn spawn_retention<F, Fut>(what: &'static str, period: Duration, delete_batch: F)
where
    F: Fn(SystemTime) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, super::KeyError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(retention_interval(period));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cutoff) = SystemTime::now().checked_sub(period) else {
                continue;
            };
            let mut deleted = 0u64;
            loop {
                match delete_batch(cutoff).await {
                    Ok(n) => {
                        deleted += n;
                        if n < u64::from(RETENTION_BATCH) {
                            break;
                        }
                        tokio::time::sleep(RETENTION_PAUSE).await;
                    }
                    Err(e) => {
                        tracing::warn!("cannot delete old {what}: {e}");
                        break;
                    }
                }
            }
            if deleted > 0 {
                tracing::info!(deleted, "old {what} deleted");
            }
        }
    });
}
