//! The Responses API's conversation state: the answers `POST /v1/responses`
//! gave with `store` on (OpenAI's default), each with the input items that
//! produced it, so a later request's `previous_response_id` can continue
//! the conversation and `GET`/`DELETE /v1/responses/{id}` can reach it.
//!
//! They live in the key store's database: the one [`super::Keys`] opened
//! when a master key is set, else the same database (SQLite beside the
//! config unless `database_url` / `DATABASE_URL` says otherwise) opened
//! when a response is first stored or looked up, so a gateway that never
//! serves the Responses API creates nothing. Every row belongs to one
//! owner (a virtual key's hash, `master` or `open`) and is found by no
//! other. Bounded: an answer larger than `max_stored_response_mb` is served
//! but not stored, and rows older than `responses_retention_period` are
//! deleted by a background job and no longer found.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::sync::OnceCell;

use super::store::{ResponseRow, Store};
use super::{KeyError, Keys, budget_period, jobs, settings};
use crate::config::Config;
use crate::logging::Throttle;

/// How long stored responses are kept when nothing says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// The largest stored response (object and conversation, as JSON) when
/// nothing says otherwise: 4 MiB.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
/// Longest an answer waits for its write before it is sent; the write goes
/// on in the background past it.
const WRITE_WAIT: Duration = Duration::from_secs(2);
/// After a failed attempt to open the store, the next one waits this long,
/// so a store that cannot be opened does not cost every request a connect.
const OPEN_RETRY: Duration = Duration::from_secs(30);
/// At most one warning about failed writes per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How responses are stored, from `general_settings`.
#[derive(Debug, Clone)]
pub struct ResponsesSettings {
    /// `store_responses` (on unless false).
    pub enabled: bool,
    /// `responses_retention_period`.
    pub retention: Duration,
    /// `max_stored_response_mb`, in bytes.
    pub max_bytes: usize,
    /// The database to open when there is no key store, or why there is
    /// none usable (an in-memory SQLite URL).
    pub database_url: Result<String, String>,
}

impl ResponsesSettings {
    /// The settings of a config; an unreadable retention period is refused.
    pub fn from_config(config: &Config, config_path: &std::path::Path) -> Result<Self, String> {
        let general = &config.general_settings;
        let retention = match &general.responses_retention_period {
            Some(period) => budget_period(period).map_err(|e| {
                format!(
                    "{}: general_settings.responses_retention_period: {e}",
                    config_path.display()
                )
            })?,
            None => DEFAULT_RETENTION,
        };
        let max_bytes = general
            .max_stored_response_mb
            .filter(|mb| mb.is_finite() && *mb > 0.0)
            .map_or(DEFAULT_MAX_BYTES, |mb| (mb * 1024.0 * 1024.0) as usize);
        Ok(Self {
            enabled: general.store_responses != Some(false),
            retention,
            max_bytes,
            database_url: settings::database_url(config, config_path),
        })
    }
}

/// A stored response as it was answered, with the conversation (input
/// items) it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub response: Value,
    pub input: Vec<Value>,
}

/// The handle on stored responses; cheap to clone.
#[derive(Clone)]
pub struct ResponseStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ResponsesSettings,
    source: Source,
    /// The first response too large to store has been logged.
    oversize_warned: AtomicBool,
    /// Failed writes: one warning per [`WARN_EVERY`].
    write_warnings: Throttle,
}

/// Where the rows go.
enum Source {
    /// `store_responses: false`.
    Off,
    /// The key store's database.
    Keys(Store),
    /// No key store: the database is opened on first use.
    Deferred {
        store: OnceCell<Store>,
        /// The last failed attempt to open it, and why.
        failed: Mutex<Option<(Instant, String)>>,
    },
}

impl ResponseStore {
    /// The store for `settings`: `keys`' database when there is a key store
    /// (its retention job starts now), else one opened on first use.
    pub fn new(settings: ResponsesSettings, keys: Option<&Keys>) -> Self {
        let source = match (settings.enabled, keys) {
            (false, _) => Source::Off,
            (true, Some(keys)) => {
                let store = keys.store().clone();
                jobs::start_response_retention(store.clone(), settings.retention);
                Source::Keys(store)
            }
            (true, None) => Source::Deferred {
                store: OnceCell::new(),
                failed: Mutex::new(None),
            },
        };
        Self {
            inner: Arc::new(Inner {
                settings,
                source,
                oversize_warned: AtomicBool::new(false),
                write_warnings: Throttle::new(WARN_EVERY),
            }),
        }
    }

    /// Whether responses are stored at all (`store_responses`).
    pub fn enabled(&self) -> bool {
        !matches!(self.inner.source, Source::Off)
    }

    /// The database, opening it on first use when there is no key store.
    async fn store(&self) -> Result<&Store, KeyError> {
        match &self.inner.source {
            Source::Off => Err(KeyError::Config(
                "stored responses are off (general_settings.store_responses: false)".into(),
            )),
            Source::Keys(store) => Ok(store),
            Source::Deferred { store, failed } => {
                store.get_or_try_init(|| self.open_deferred(failed)).await
            }
        }
    }

    async fn open_deferred(
        &self,
        failed: &Mutex<Option<(Instant, String)>>,
    ) -> Result<Store, KeyError> {
        if let Ok(last) = failed.lock()
            && let Some((at, why)) = last.as_ref()
            && at.elapsed() < OPEN_RETRY
        {
            return Err(KeyError::Store(why.clone()));
        }
        let settings = &self.inner.settings;
        let opened = match &settings.database_url {
            Ok(url) => Store::connect(url).await,
            Err(why) => Err(KeyError::Config(why.clone())),
        };
        match opened {
            Ok(store) => {
                tracing::info!(backend = ?store.backend(), "response store open");
                jobs::start_response_retention(store.clone(), settings.retention);
                Ok(store)
            }
            Err(e) => {
                let why = format!("cannot open the response store: {e}");
                tracing::warn!("{why}");
                if let Ok(mut last) = failed.lock() {
                    *last = Some((Instant::now(), why.clone()));
                }
                Err(KeyError::Store(why))
            }
        }
    }

    /// The response `id` of `owner`, if it is stored and not past retention.
    pub async fn get(&self, id: &str, owner: &str) -> Result<Option<StoredResponse>, KeyError> {
        let not_before = SystemTime::now()
            .checked_sub(self.inner.settings.retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let Some((response, input)) = self
            .store()
            .await?
            .get_response(id, owner, not_before)
            .await?
        else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| {
            KeyError::Store(format!("stored response {id} is not readable JSON: {e}"))
        };
        Ok(Some(StoredResponse {
            response: serde_json::from_str(&response).map_err(unreadable)?,
            input: serde_json::from_str(&input).map_err(unreadable)?,
        }))
    }

    /// Deletes the response `id` of `owner`; whether there was one.
    pub async fn delete(&self, id: &str, owner: &str) -> Result<bool, KeyError> {
        self.store().await?.delete_response(id, owner).await
    }

    /// Stores `response` (its `id` is the key) for `owner` with the
    /// conversation it answered. Waits at most [`WRITE_WAIT`] for the write
    /// (past that it finishes in the background), so a client chaining
    /// right after the answer finds it. False when it is not stored: too
    /// large, or the store failed (logged, at most one warning every ten
    /// seconds); the answer is served either way.
    pub async fn keep(&self, owner: &str, response: &Value, input: &[Value]) -> bool {
        let Some(id) = response["id"].as_str() else {
            return false;
        };
        let (Ok(response_text), Ok(input_text)) = (
            serde_json::to_string(response),
            serde_json::to_string(input),
        ) else {
            return false;
        };
        let size = response_text.len() + input_text.len();
        if size > self.inner.settings.max_bytes {
            let limit = self.inner.settings.max_bytes;
            if self.inner.oversize_warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(id, size, limit, "response too large to store");
            } else {
                tracing::warn!(
                    id,
                    size,
                    limit,
                    "a response is too large to store (general_settings.max_stored_response_mb); it is served but cannot be continued or fetched (logged once)"
                );
            }
            return false;
        }
        let row = ResponseRow {
            id: id.to_owned(),
            owner: owner.to_owned(),
            response: response_text,
            input: input_text,
            created_at: SystemTime::now(),
        };
        let this = self.clone();
        let write = tokio::spawn(async move {
            let store = this.store().await?;
            store.insert_response(&row).await
        });
        match tokio::time::timeout(WRITE_WAIT, write).await {
            Ok(Ok(Ok(true))) => true,
            // Only an upstream that reuses an id (it made the id of a
            // natively passed response) gets here.
            Ok(Ok(Ok(false))) => {
                self.warn(&format!(
                    "response {id} was not stored: a response with that id is stored already"
                ));
                false
            }
            Ok(Ok(Err(e))) => {
                self.warn(&format!("cannot store response {id}: {e}"));
                false
            }
            Ok(Err(e)) => {
                self.warn(&format!(
                    "cannot store response {id}: the write failed: {e}"
                ));
                false
            }
            Err(_) => {
                self.warn(&format!(
                    "storing response {id} takes longer than {WRITE_WAIT:?}; it is answered before the write ends"
                ));
                true
            }
        }
    }

    fn warn(&self, message: &str) {
        if self.inner.write_warnings.allow() {
            tracing::warn!("{message}");
        } else {
            tracing::debug!("{message}");
        }
    }
}
