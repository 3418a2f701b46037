//! The registry caches: resolved principals by key hash, and end users by
//! their id, so a request never waits on the store once its key (or end
//! user) has been seen.
//!
//! It is a `quick_cache` cache because a hit, every request's case, must
//! cost next to nothing: one read lock on one of its shards and a flag,
//! with no bookkeeping queued for later (moka's hit records a read for its
//! eviction policy and runs that upkeep on the requests' own threads). It
//! also gives the other two properties the hot path needs: a hard bound on
//! entries (no unbounded memory from callers presenting random keys) and
//! coalesced loads (a thousand concurrent requests with a cold key make one
//! store read, not a thousand). Each entry carries its own expiry, so a
//! change made elsewhere is picked up within the time-to-live. Unknown keys
//! are cached too, for the same time, so a stream of wrong keys cannot
//! become a stream of store reads.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use super::KeyError;
use super::model::Principal;
use super::store::Store;

/// What a registry caches, and how one is read from the store by its id.
pub trait Stored: Send + Sync + Sized + 'static {
    /// The record with id `id`; `None` when there is none.
    fn read(store: &Store, id: &str)
    -> impl Future<Output = Result<Option<Self>, KeyError>> + Send;

    /// The cache slots the record takes: one, and one more for each
    /// [`SLOT_BYTES`] of what its callers wrote into it (metadata, lists),
    /// so that the cache's bound holds in bytes as well as in records.
    fn weight(&self) -> u64 {
        1
    }
}

/// The bytes of written data one cache slot stands for.
pub const SLOT_BYTES: usize = 4096;

impl Stored for Principal {
    fn read(
        store: &Store,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<Self>, KeyError>> + Send {
        store.principal(token_hash)
    }

    fn weight(&self) -> u64 {
        let listed = |items: &[String]| items.iter().map(String::len).sum::<usize>();
        let metadata = |m: &serde_json::Value| {
            if m.as_object().is_some_and(|o| o.is_empty()) {
                0
            } else {
                m.to_string().len()
            }
        };
        let key = &self.key;
        let mut bytes = metadata(&key.metadata)
            + listed(&key.models)
            + listed(&key.tags)
            + listed(&key.allowed_routes)
            + key
                .aliases
                .iter()
                .map(|(a, b)| a.len() + b.len())
                .sum::<usize>();
        if let Some(user) = &self.user {
            bytes += metadata(&user.metadata) + listed(&user.models);
        }
        if let Some(team) = &self.team {
            bytes += metadata(&team.metadata) + listed(&team.models);
        }
        1 + (bytes / SLOT_BYTES) as u64
    }
}

/// A record, or `None` for an unknown id.
///
/// Spend is not brought into cached records as it is written: the limit
/// counters count every call at once and only take a record's
/// spend as a floor, so a record up to one time-to-live old is enough.
/// Rewriting every busy key once a second also kept its entry from ever
/// expiring, and a change made by another instance without Redis was then
/// never read.
type Entry<V> = Option<Arc<V>>;

/// One cached answer of the store, and when it was read.
struct Cached<V> {
    /// The store's answer; a failed read is kept only to hand its error to
    /// the requests that waited for that read.
    answer: Result<Entry<V>, Arc<KeyError>>,
    loaded: Instant,
    /// [`Stored::weight`] of the record, worked out once when it is read.
    weight: u64,
}

impl<V> Clone for Cached<V> {
    fn clone(&self) -> Self {
        Self {
            answer: self.answer.clone(),
            loaded: self.loaded,
            weight: self.weight,
        }
    }
}

/// Weighs an entry by its record's [`Stored::weight`].
#[derive(Clone, Copy, Default)]
struct RecordWeighter;

impl<V> Weighter<String, Cached<V>> for RecordWeighter {
    fn weight(&self, _: &String, cached: &Cached<V>) -> u64 {
        cached.weight
    }
}

/// Keyed by SHA-256 digests or end-user ids. A digest no caller can aim
/// at one shard or bucket; for the ids callers choose, foldhash's seeded
/// hasher is built to resist such collisions.
type RecordCache<V> = Cache<
    String,
    Cached<V>,
    RecordWeighter,
    foldhash::fast::RandomState,
    DefaultLifecycle<String, Cached<V>>,
>;

/// Records by id: principals by key hash, end users by their id.
pub struct Registry<V> {
    cache: Arc<RecordCache<V>>,
    ttl: Duration,
    /// Invalidations so far. A load that overlaps one drops its entry
    /// instead of keeping it, so a change can never be undone by a read
    /// that raced it.
    invalidations: Arc<AtomicU64>,
}

impl<V> Clone for Registry<V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            ttl: self.ttl,
            invalidations: self.invalidations.clone(),
        }
    }
}

impl<V: Stored> Registry<V> {
    /// A cache of at most about `capacity` records (a large record counting
    /// as several, [`Stored::weight`]), each kept for at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let items = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self {
            cache: Arc::new(Cache::with(
                items,
                capacity.max(1),
                RecordWeighter,
                foldhash::fast::RandomState::default(),
                DefaultLifecycle::default(),
            )),
            ttl,
            invalidations: Arc::default(),
        }
    }

    fn epoch(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether `cached` may still be served: a successful read younger
    /// than the time-to-live.
    fn fresh(&self, cached: &Cached<V>) -> bool {
        cached.answer.is_ok() && cached.loaded.elapsed() < self.ttl
    }

    /// The record of `token_hash` (or end-user id), from the cache or
    /// (once, however many ask at the same time) from the store.
    pub async fn get(&self, token_hash: &str, store: &Store) -> Result<Option<Arc<V>>, KeyError> {
        // A key seen before, nearly every request's case, is one lookup
        // with no future of its own. The loading path's future is boxed so
        // that it is not part of every authenticated request's.
        if let Some(cached) = self.cache.get(token_hash)
            && self.fresh(&cached)
        {
            return cached.answer.map_err(|e| (*e).clone());
        }
        Box::pin(self.load(token_hash, store)).await
    }

    /// Reads `token_hash` through the cache, so that concurrent misses make
    /// one store read and share its answer, error included.
    async fn load(&self, token_hash: &str, store: &Store) -> Result<Entry<V>, KeyError> {
        let asked = Instant::now();
        loop {
            let guard = match self.cache.get_value_or_guard_async(token_hash).await {
                Ok(cached) if self.fresh(&cached) => {
                    return cached.answer.map_err(|e| (*e).clone());
                }
                // Another request's read that this one waited for failed.
                Ok(Cached {
                    answer: Err(e),
                    loaded,
                    ..
                }) if loaded >= asked => return Err((*e).clone()),
                // Expired, or an earlier failure: read again.
                Ok(_) => {
                    self.cache.remove_if(token_hash, |c| !self.fresh(c));
                    continue;
                }
                Err(guard) => guard,
            };
            let epoch = self.epoch();
            let answer = V::read(store, token_hash)
                .await
                .map(|p| p.map(Arc::new))
                .map_err(Arc::new);
            let weight = match &answer {
                Ok(Some(record)) => record.weight(),
                _ => 1,
            };
            let cached = Cached {
                answer: answer.clone(),
                loaded: Instant::now(),
                weight,
            };
            let _ = guard.insert(cached);
            if answer.is_err() || self.epoch() != epoch {
                // A failure is not kept, and neither is a read that a change
                // overlapped: serve it, but read again next time.
                self.cache.remove(token_hash);
            }
            return answer.map_err(|e| (*e).clone());
        }
    }

    /// Forgets one record, so its next use reads the store.
    pub fn invalidate(&self, token_hash: &str) {
        self.bump();
        self.cache.remove(token_hash);
    }

    /// Forgets every record `pred` picks (every key of a user or team).
    pub fn invalidate_where(&self, pred: impl Fn(&V) -> bool) {
        self.bump();
        self.cache.retain(|_, c| match &c.answer {
            Ok(Some(p)) => !pred(p),
            _ => true,
        });
    }

    /// Forgets everything (after budget resets).
    pub fn invalidate_all(&self) {
        self.bump();
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::KeyRecord;
    use crate::keys::store::tests::{Scratch, close};

    async fn store_with_key(scratch: &Scratch, token_hash: &str) -> Store {
        let store = Store::connect(&scratch.url).await.unwrap();
        store
            .insert_key(&KeyRecord::for_test(token_hash))
            .await
            .unwrap();
        store
    }

    #[test]
    fn a_key_holding_much_written_data_weighs_more() {
        let plain = Principal::new(KeyRecord::for_test("plain"), None, None);
        assert_eq!(plain.weight(), 1);
        let mut heavy = KeyRecord::for_test("heavy");
        heavy.metadata = serde_json::json!({"note": "x".repeat(10_000)});
        heavy.models = vec!["m".repeat(500); 20];
        let heavy = Principal::new(heavy, None, None);
        assert_eq!(
            heavy.weight(),
            1 + (10_011 + 10_000) as u64 / SLOT_BYTES as u64
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_on_one_key_make_one_store_read() {
        let scratch = Scratch::new("registry-coalesce");
        let store = store_with_key(&scratch, "cold").await;
        store
            .insert_key(&KeyRecord::for_test("alone"))
            .await
            .unwrap();
        let registry = Registry::<Principal>::new(100, Duration::from_secs(60));
        let before = store.statements_run();
        registry.get("alone", &store).await.unwrap().unwrap();
        let one_read = store.statements_run() - before;
        let before = store.statements_run();
        let reads = (0..50).map(|_| {
            let (registry, store) = (registry.clone(), store.clone());
            tokio::spawn(async move { registry.get("cold", &store).await })
        });
        for read in reads {
            let principal = read.await.unwrap().unwrap().unwrap();
            assert_eq!(principal.key.token_hash, "cold");
        }
        assert_eq!(store.statements_run() - before, one_read);
    }

    #[tokio::test]
    async fn an_unknown_key_is_remembered_as_unknown_until_its_time_is_up() {
        let scratch = Scratch::new("registry-unknown");
        let store = store_with_key(&scratch, "known").await;
        let registry = Registry::<Principal>::new(100, Duration::from_millis(200));
        assert!(registry.get("nobody", &store).await.unwrap().is_none());
        let before = store.statements_run();
        assert!(registry.get("nobody", &store).await.unwrap().is_none());
        assert_eq!(store.statements_run(), before, "served from the cache");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(registry.get("nobody", &store).await.unwrap().is_none());
        assert_eq!(
            store.statements_run(),
            before + 1,
            "read again once expired"
        );
    }

    #[tokio::test]
    async fn an_invalidated_key_is_read_from_the_store_again() {
        let scratch = Scratch::new("registry-invalidate");
        let store = store_with_key(&scratch, "changing").await;
        let registry = Registry::<Principal>::new(100, Duration::from_secs(60));
        let first = registry.get("changing", &store).await.unwrap().unwrap();
        assert!(!first.key.blocked);
        let blocked = KeyRecord {
            blocked: true,
            ..KeyRecord::for_test("changing")
        };
        assert!(store.update_key(&blocked, None).await.unwrap());
        let cached = registry.get("changing", &store).await.unwrap().unwrap();
        assert!(!cached.key.blocked, "served from the cache until told");
        registry.invalidate("changing");
        let again = registry.get("changing", &store).await.unwrap().unwrap();
        assert!(again.key.blocked);
    }

    #[tokio::test]
    async fn a_failed_store_read_is_reported_and_not_kept() {
        let scratch = Scratch::new("registry-failure");
        let store = store_with_key(&scratch, "somebody").await;
        let registry = Registry::<Principal>::new(100, Duration::from_secs(60));
        close(&store).await;
        assert!(registry.get("somebody", &store).await.is_err());
        let reopened = Store::connect(&scratch.url).await.unwrap();
        let principal = registry.get("somebody", &reopened).await.unwrap();
        assert!(principal.is_some(), "the failure was not cached");
    }
}
