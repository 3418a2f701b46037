//! Virtual keys, users, teams and spend: the data side of a gateway a team
//! shares. [`Keys`] is the one handle the rest of the gateway holds: it
//! resolves a presented key to its [`Principal`] from an in-memory cache
//! (the store is read only on a miss), takes spend-log rows without ever
//! waiting (a background writer on its own thread writes them in batches),
//! and runs the budget
//! reset and retention jobs. The store behind it is SQLite by default and
//! PostgreSQL when the database URL says so (`store/`).
//!
//! The store opens when a master key is configured: virtual keys are
//! managed with it, as in LiteLLM. Without a master key the gateway stays
//! open and the database is touched only to store Responses API answers
//! ([`responses`]), when the first one is stored or looked up.

pub mod end_user;
mod generate_params;
mod jobs;
pub mod model;
pub mod proxy_budget;
mod registry;
pub mod reset;
pub mod responses;
pub mod scopes;
mod settings;
pub mod store;
pub mod time;
pub mod token;
mod writer;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use end_user::{EndUser, EndUserDefaults};
pub use generate_params::{KeyGenerateParams, OverBound};
pub use model::{
    BudgetRecord, EndUserRecord, KeyRecord, Limits, PROXY_ADMIN_ROLE, PeriodError, Principal,
    SpendRow, TeamRecord, UserRecord, budget_period,
};
pub use proxy_budget::{PROXY_BUDGET_USER, ProxyBudget, ProxyBudgetSettings};
pub use responses::{ResponseStore, ResponsesSettings, StoredResponse};
pub use settings::{DEFAULT_DATABASE_URL, KeysSettings, database_url};
pub use store::{Backend, Store};

use registry::Registry;
use writer::WriterHandle;

/// Why the key store or a key operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The database failed or is unreachable (never carries its URL).
    #[error("key store: {0}")]
    Store(String),
    /// The schema could not be brought up to date.
    #[error("key store migration failed: {0}")]
    Migration(String),
    /// The store's settings are unusable.
    #[error("{0}")]
    Config(String),
    /// A named entity does not exist.
    #[error("{entity} not found: {id}")]
    NotFound { entity: &'static str, id: String },
    /// A field's value was refused; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A value the database cannot keep: PostgreSQL refuses a NUL in text.
    #[error(
        "a text value holds a NUL character (\\u0000), which the key store cannot keep; remove it"
    )]
    Unstorable,
}

/// A change to keys, users or teams that cached principals must not
/// outlive: made here through the management API, or announced by another
/// instance sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One key, by its hash.
    Key(String),
    /// A user, whose record is part of each of its keys' principals.
    User(String),
    /// A team, likewise.
    Team(String),
    /// One end user (customer).
    EndUser(String),
    /// A budget, whose limits are part of its end users' records.
    Budget(String),
    /// Anything: every cached key is read again.
    All,
}

/// Where changes made here are announced, so that other instances sharing
/// the store drop their cached copies too.
pub trait ChangeFeed: Send + Sync {
    /// Tells the other instances about `change` (without waiting).
    fn announce(&self, change: &Change);
}

/// The handle on virtual keys: cheap to clone (one `Arc` inside), shared by
/// the auth layer, the admission checks, the spend sink and the management API.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry<Principal>,
    end_users: Registry<EndUser>,
    budgets: Registry<BudgetRecord>,
    writer: WriterHandle,
    settings: KeysSettings,
    /// Set once when instances share state.
    feed: OnceLock<Arc<dyn ChangeFeed>>,
}

impl Keys {
    /// Opens (and creates or migrates) the store, then starts the spend
    /// writer, the budget reset job and, when a retention period is set,
    /// the spend-log retention job. Needs a Tokio runtime.
    pub async fn open(settings: KeysSettings) -> Result<Keys, KeyError> {
        let store = Store::connect_with(&settings.database_url, settings.pool).await?;
        let registry = Registry::new(settings.cache_capacity, settings.cache_ttl);
        let end_users = Registry::new(settings.cache_capacity, settings.cache_ttl);
        let budgets = Registry::new(settings.cache_capacity, settings.cache_ttl);
        let resets = jobs::BudgetResets {
            clock: settings.reset_clock.clone(),
            registry: registry.clone(),
            end_users: end_users.clone(),
        };
        let writer = WriterHandle::start(store.clone(), &settings, Some(resets));
        if let Some(period) = settings.spend_log_retention {
            jobs::start_retention(store.clone(), period);
        }
        Ok(Keys {
            inner: Arc::new(Inner {
                store,
                registry,
                end_users,
                budgets,
                writer,
                settings,
                feed: OnceLock::new(),
            }),
        })
    }

    /// The principal behind a presented key (the full `sk-...` value), from
    /// the cache or, on a miss, the store. `None` for a key that does not
    /// exist; an expired or blocked key is returned as it is (the record
    /// says so) and the caller decides.
    pub async fn resolve(&self, presented_key: &str) -> Result<Option<Arc<Principal>>, KeyError> {
        self.resolve_hash(&token::hash(presented_key)).await
    }

    /// [`Keys::resolve`] by the key's hash (its `token`).
    pub async fn resolve_hash(&self, token_hash: &str) -> Result<Option<Arc<Principal>>, KeyError> {
        self.inner.registry.get(token_hash, &self.inner.store).await
    }

    /// The end user `id`, from the cache or, on a miss, the store (an end
    /// user the store has not seen yet has no record).
    pub async fn end_user(&self, id: &str) -> Result<Arc<EndUser>, KeyError> {
        match self.inner.end_users.get(id, &self.inner.store).await? {
            Some(found) => Ok(found),
            None => Ok(Arc::new(EndUser::new(id, None))),
        }
    }

    /// A budget, from the cache or, on a miss, the store.
    pub async fn budget(&self, id: &str) -> Result<Option<Arc<BudgetRecord>>, KeyError> {
        self.inner.budgets.get(id, &self.inner.store).await
    }

    /// Links `end_user`, which has no budget, to the default budget
    /// `budget`, in the background: its period starts now. An end user
    /// linked meanwhile keeps its own.
    pub fn link_default_budget(&self, end_user: &str, budget: &BudgetRecord) {
        let keys = self.clone();
        let (id, budget_id) = (end_user.to_owned(), budget.budget_id.clone());
        let clock = &self.inner.settings.reset_clock;
        let reset_at = budget
            .limits
            .budget_reset_after(std::time::SystemTime::now(), clock);
        tokio::spawn(async move {
            let linked = keys
                .store()
                .link_end_user_budget(&id, &budget_id, reset_at, std::time::SystemTime::now())
                .await;
            match linked {
                Ok(()) => keys.invalidate_end_user(&id),
                Err(e) => tracing::warn!("cannot link an end user to the default budget: {e}"),
            }
        });
    }

    /// Queues one spend-log row for the background writer. Never blocks and
    /// never awaits: when the bounded buffer is full the row is dropped,
    /// counted and logged (at most one warning every ten seconds).
    pub fn record_spend(&self, row: SpendRow) {
        self.inner.writer.push(row);
    }

    /// Writes every queued spend row (graceful shutdown); false when that
    /// did not finish within `timeout` or the store refused it.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.inner.writer.flush(timeout).await
    }

    /// Forgets one cached key, so its next use reads the store: called
    /// after every change to it (here and, when shared, on every instance).
    pub fn invalidate(&self, token_hash: &str) {
        self.changed(Change::Key(token_hash.to_owned()));
    }

    /// Forgets the cached keys of a user (its record is part of them).
    pub fn invalidate_user(&self, user_id: &str) {
        self.changed(Change::User(user_id.to_owned()));
    }

    /// Forgets the cached keys of a team (its record is part of them).
    pub fn invalidate_team(&self, team_id: &str) {
        self.changed(Change::Team(team_id.to_owned()));
    }

    /// Forgets every cached key, user, team, end user and budget: after a
    /// change to all of them at once.
    pub fn invalidate_all(&self) {
        self.changed(Change::All);
    }

    /// Forgets one cached end user.
    pub fn invalidate_end_user(&self, id: &str) {
        self.changed(Change::EndUser(id.to_owned()));
    }

    /// Forgets a cached budget and the end users linked to it.
    pub fn invalidate_budget(&self, budget_id: &str) {
        self.changed(Change::Budget(budget_id.to_owned()));
    }

    fn changed(&self, change: Change) {
        self.forget(&change);
        if let Some(feed) = self.inner.feed.get() {
            feed.announce(&change);
        }
    }

    /// Forgets what `change` touches in this instance's cache only: for a
    /// change another instance announced.
    pub fn forget(&self, change: &Change) {
        let registry = &self.inner.registry;
        match change {
            Change::Key(hash) => registry.invalidate(hash),
            Change::User(id) => {
                let id = id.clone();
                registry.invalidate_where(move |p| p.key.user_id.as_deref() == Some(id.as_str()));
            }
            Change::Team(id) => {
                let id = id.clone();
                registry.invalidate_where(move |p| p.key.team_id.as_deref() == Some(id.as_str()));
            }
            Change::EndUser(id) => self.inner.end_users.invalidate(id),
            Change::Budget(id) => {
                self.inner.budgets.invalidate(id);
                let id = id.clone();
                self.inner.end_users.invalidate_where(move |e| {
                    e.record
                        .as_ref()
                        .is_some_and(|r| r.budget_id.as_deref() == Some(id.as_str()))
                });
            }
            Change::All => {
                registry.invalidate_all();
                self.inner.end_users.invalidate_all();
                self.inner.budgets.invalidate_all();
            }
        }
    }

    /// Announces every later change to `feed` as well (set once, when
    /// instances share state; a second feed is ignored).
    pub fn announce_changes_to(&self, feed: Arc<dyn ChangeFeed>) {
        let _ = self.inner.feed.set(feed);
    }

    /// The store, for the management API.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings the store was opened with.
    pub fn settings(&self) -> &KeysSettings {
        &self.inner.settings
    }

    /// Spend rows dropped since start because the buffer was full.
    pub fn dropped_spend_rows(&self) -> u64 {
        self.inner.writer.dropped()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;

    fn spend_row(token_hash: &str, n: usize) -> SpendRow {
        SpendRow {
            model_group: Some("m".into()),
            prompt_tokens: 1,
            completion_tokens: 1,
            spend: 0.001,
            started_at: SystemTime::now(),
            latency_ms: 1,
            ..SpendRow::for_test(&format!("req-{n}"), Some(token_hash))
        }
    }

    /// Two changes read from one version of a key: the first write wins, and
    /// the second, written over a row that changed since its read, writes
    /// nothing rather than undoing the first.
    #[tokio::test]
    async fn a_change_read_before_another_was_written_writes_nothing() {
        let path = std::env::temp_dir().join(format!(
            "conclave-keys-conditional-{}.db",
            std::process::id()
        ));
        let keys = Keys::open(KeysSettings::new(format!(
            "sqlite://{}?mode=rwc",
            path.display()
        )))
        .await
        .unwrap();
        let record = KeyRecord::for_test("raced-key-hash");
        keys.store().insert_key(&record).await.unwrap();
        let read = keys.store().key("raced-key-hash").await.unwrap().unwrap();
        let blocked = KeyRecord {
            blocked: true,
            ..read.clone()
        };
        let renamed = KeyRecord {
            key_alias: Some("renamed".into()),
            ..read.clone()
        };
        let store = keys.store();
        assert!(
            store
                .update_key(&blocked, Some(read.updated_at))
                .await
                .unwrap()
        );
        assert!(
            !store
                .update_key(&renamed, Some(read.updated_at))
                .await
                .unwrap()
        );
        let now = store.key("raced-key-hash").await.unwrap().unwrap();
        assert!(now.blocked && now.key_alias.is_none(), "{now:?}");
        let again = KeyRecord {
            key_alias: Some("renamed".into()),
            ..now.clone()
        };
        assert!(
            store
                .update_key(&again, Some(now.updated_at))
                .await
                .unwrap()
        );
        // A new value read before that change is not stored either.
        let later = now.updated_at + Duration::from_secs(1);
        let rehash =
            |read_at| store.rehash_key("raced-key-hash", "new-hash", "sk-...new", (read_at, later));
        assert!(!rehash(now.updated_at).await.unwrap());
        let current = store.key("raced-key-hash").await.unwrap().unwrap();
        assert!(rehash(current.updated_at).await.unwrap());

        let orphan = KeyRecord {
            team_id: Some("deleted-team".into()),
            ..KeyRecord::for_test("orphan-key-hash")
        };
        store.insert_key(&orphan).await.unwrap();
        assert!(
            store.principal("orphan-key-hash").await.unwrap().is_none(),
            "a key whose team is gone is no key"
        );
        let team = TeamRecord::new("deleted-team".into(), SystemTime::now());
        store.insert_team(&team).await.unwrap();
        assert!(
            store.key("orphan-key-hash").await.unwrap().is_none(),
            "a new team of that id does not bring the key back"
        );
        assert!(store.insert_team(&team).await.is_err(), "the id is taken");
        drop(keys);
        let _ = std::fs::remove_file(&path);
    }

    /// A key blocked in the shared store by another instance (with no Redis
    /// to announce it) is seen once its cached record's time is up, even
    /// while its spend keeps being written: writing spend must not keep a
    /// cached record alive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_keys_cached_record_is_read_again_when_its_time_is_up() {
        let path =
            std::env::temp_dir().join(format!("conclave-keys-ttl-{}.db", std::process::id()));
        let mut settings = KeysSettings::new(format!("sqlite://{}?mode=rwc", path.display()));
        settings.cache_ttl = Duration::from_millis(300);
        let keys = Keys::open(settings).await.unwrap();
        let record = KeyRecord::for_test("busy-key-hash");
        keys.store().insert_key(&record).await.unwrap();
        let seen = keys.resolve_hash("busy-key-hash").await.unwrap().unwrap();
        assert!(!seen.key.blocked);

        let blocked = KeyRecord {
            blocked: true,
            ..record
        };
        assert!(keys.store().update_key(&blocked, None).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        for n in 0.. {
            keys.record_spend(spend_row("busy-key-hash", n));
            assert!(
                keys.flush(Duration::from_secs(2)).await,
                "the writer flushes"
            );
            let now = keys.resolve_hash("busy-key-hash").await.unwrap().unwrap();
            if now.key.blocked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cached record was never read again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(keys);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
