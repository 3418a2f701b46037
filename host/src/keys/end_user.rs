//! The end user a request names (LiteLLM's customer), as admission and
//! the meter see it: its stored record, if it has one, with the budget it
//! is linked to, and the names its limits are counted under. Read through
//! a registry cache like principals, so a request naming an end user seen
//! before never waits on the store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::KeyError;
use super::model::{BudgetRecord, EndUserRecord, Limits};
use super::registry::Stored;
use super::scopes::LevelNames;
use super::store::Store;
use crate::limits::Level;

/// What applies to end users with no budget of their own
/// (`litellm_settings`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndUserDefaults {
    /// `max_end_user_budget`: the most each may spend, in all.
    pub limits: Option<Arc<Limits>>,
    /// `max_end_user_budget_id`: the budget each is linked to when first
    /// seen, after which it is its own.
    pub budget_id: Option<String>,
}

impl EndUserDefaults {
    /// The defaults a config sets.
    pub fn of(settings: &crate::config::LitellmSettings) -> Self {
        Self {
            limits: settings.max_end_user_budget.map(|max| {
                Arc::new(Limits {
                    max_budget: Some(max),
                    ..Limits::default()
                })
            }),
            budget_id: settings.max_end_user_budget_id.clone(),
        }
    }
}

/// An end user, known to the store or not.
#[derive(Debug)]
pub struct EndUser {
    pub id: String,
    /// `None` for an end user the store has not seen yet.
    pub record: Option<EndUserRecord>,
    /// The limits of the budget it is linked to, shared by its requests.
    own_limits: Option<Arc<Limits>>,
    /// The names its own limits are counted under (`end_user:<id>`).
    pub names: LevelNames,
    /// When the record was read.
    pub read_at: Instant,
    /// Set once the default budget's link was asked for, so it is asked
    /// for once per cached read.
    default_asked: AtomicBool,
}

impl EndUser {
    /// The end user `id` as the store answered for it.
    pub fn new(id: &str, record: Option<EndUserRecord>) -> Self {
        Self {
            id: id.to_owned(),
            own_limits: record
                .as_ref()
                .and_then(EndUserRecord::limits)
                .map(|l| Arc::new(l.clone())),
            record,
            names: LevelNames::new(Level::EndUser, id, format!("end user {id}")),
            read_at: Instant::now(),
            default_asked: AtomicBool::new(false),
        }
    }

    /// Whether its requests are refused.
    pub fn is_blocked(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.blocked)
    }

    /// The limits of the budget it is linked to, if any.
    pub fn own_limits(&self) -> Option<&Arc<Limits>> {
        self.own_limits.as_ref()
    }

    /// Claims the one request of this cached read that links the end user
    /// to the default budget.
    pub fn claim_default_link(&self) -> bool {
        !self.default_asked.swap(true, Ordering::AcqRel)
    }
}

impl Stored for EndUser {
    async fn read(store: &Store, id: &str) -> Result<Option<Self>, KeyError> {
        let record = store.end_user(id).await?;
        Ok(Some(EndUser::new(id, record)))
    }
}

impl Stored for BudgetRecord {
    fn read(
        store: &Store,
        id: &str,
    ) -> impl Future<Output = Result<Option<Self>, KeyError>> + Send {
        store.budget(id)
    }
}
