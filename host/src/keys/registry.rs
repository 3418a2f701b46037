//! The registry cache: resolved principals by key hash, so a request never
//! waits on the store once its key has been seen.
//!
//! It is a moka `future::Cache` because that gives the three properties the
//! hot path needs in one maintained crate: a hard bound on entries (no
//! unbounded memory from callers presenting random keys), a time-to-live
//! (changes made elsewhere are picked up without a restart), and coalesced
//! loads (a thousand concurrent requests with a cold key make one store
//! read, not a thousand). Unknown keys are cached too, for the same TTL, so
//! a stream of wrong keys cannot become a stream of store reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use super::KeyError;
use super::model::Principal;
use super::store::Store;

/// One cached answer: the principal, or `None` for an unknown key.
///
/// Spend is not brought into cached principals as it is written: the limit
/// counters count every call at once and only take a principal's recorded
/// spend as a floor, so a record up to one time-to-live old is enough.
/// Rewriting every busy key once a second also kept its entry from ever
/// expiring, and a change made by another instance without Redis was then
/// never read.
type Entry = Option<Arc<Principal>>;

/// Principals by key hash.
#[derive(Clone)]
pub struct Registry {
    /// Keyed by SHA-256 digests, which no caller can aim at one bucket, so
    /// a fast seeded hasher is as safe here as SipHash.
    cache: Cache<String, Entry, foldhash::fast::RandomState>,
    /// Invalidations so far. A load that overlaps one drops its entry
    /// instead of keeping it, so a change can never be undone by a read
    /// that raced it.
    invalidations: Arc<AtomicU64>,
}

impl Registry {
    /// A cache of at most `capacity` keys, each kept for at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build_with_hasher(foldhash::fast::RandomState::default()),
            invalidations: Arc::default(),
        }
    }

    fn epoch(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }

    /// The principal for `token_hash`, from the cache or (once, however
    /// many ask at the same time) from the store.
    pub async fn get(
        &self,
        token_hash: &str,
        store: &Store,
    ) -> Result<Option<Arc<Principal>>, KeyError> {
        // A key seen before, nearly every request's case, is one lookup
        // with a small future. The loading path's (moka's coalesced load
        // around a store read) is about 4.5 KB: boxed, it is not copied
        // into every authenticated request's future.
        if let Some(entry) = self.cache.get(token_hash).await {
            return Ok(entry);
        }
        Box::pin(self.load(token_hash, store)).await
    }

    /// Reads `token_hash` through the cache, so that concurrent misses make
    /// one store read.
    async fn load(
        &self,
        token_hash: &str,
        store: &Store,
    ) -> Result<Option<Arc<Principal>>, KeyError> {
        let epoch = self.epoch();
        let mut loaded_here = false;
        let entry = self
            .cache
            .try_get_with_by_ref(token_hash, async {
                loaded_here = true;
                Ok::<_, KeyError>(store.principal(token_hash).await?.map(Arc::new))
            })
            .await
            .map_err(|e: Arc<KeyError>| (*e).clone())?;
        if loaded_here && self.epoch() != epoch {
            // A change was made while this read ran: serve what was read,
            // but do not keep it.
            self.cache.invalidate(token_hash).await;
        }
        Ok(entry)
    }

    /// Forgets one key, so its next use reads the store.
    pub fn invalidate(&self, token_hash: &str) {
        // A predicate rather than `invalidate().await`: it needs no await,
        // so it can run anywhere, and it applies to the entry as soon as
        // it is registered.
        self.bump();
        let hash = token_hash.to_owned();
        if self
            .cache
            .invalidate_entries_if(move |k, _| *k == hash)
            .is_err()
        {
            self.cache.invalidate_all();
        }
    }

    /// Forgets every key of a user or team, or all keys.
    pub fn invalidate_where(&self, pred: impl Fn(&Principal) -> bool + Send + Sync + 'static) {
        self.bump();
        let registered = self
            .cache
            .invalidate_entries_if(move |_, e| e.as_ref().is_some_and(|p| pred(p)));
        if registered.is_err() {
            self.cache.invalidate_all();
        }
    }

    /// Forgets everything (after budget resets).
    pub fn invalidate_all(&self) {
        self.bump();
        self.cache.invalidate_all();
    }
}
