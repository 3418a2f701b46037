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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::KeyError;
use super::model::{Principal, SpendRow};
use super::store::Store;

/// One cached answer: the principal (or `None` for an unknown key) and when
/// it was read, so spend applied later is only added to reads older than it.
#[derive(Clone)]
pub struct Entry {
    pub principal: Option<Arc<Principal>>,
    pub loaded_at: Instant,
    /// The invalidation count when the read began: a change made since may
    /// be missing from this entry.
    pub epoch: u64,
}

/// Cached keys brought up to date between two yields to the runtime.
const YIELD_EVERY: usize = 64;

/// Principals by key hash.
#[derive(Clone)]
pub struct Registry {
    cache: Cache<String, Entry>,
    /// Invalidations so far. A load that overlaps one, or a spend update
    /// of an entry older than one, drops the entry instead of keeping it,
    /// so a change can never be undone by a read that raced it.
    invalidations: Arc<AtomicU64>,
}

/// Spend committed to the store in one batch, to bring cached copies up to date.
#[derive(Default)]
pub struct Applied {
    pub keys: HashMap<String, f64>,
    /// Per key hash, per model: each cached key finds its own at once.
    pub key_models: HashMap<String, HashMap<String, f64>>,
    pub users: HashMap<String, f64>,
    pub teams: HashMap<String, f64>,
}

impl Applied {
    /// The totals one batch adds, per entity.
    pub fn of(batch: &[SpendRow]) -> Self {
        let mut a = Applied::default();
        for r in batch {
            if let Some(h) = &r.token_hash {
                add(&mut a.keys, h, r.spend);
                match a.key_models.get_mut(h) {
                    Some(models) => add(models, &r.model, r.spend),
                    None => {
                        let models = HashMap::from([(r.model.clone(), r.spend)]);
                        a.key_models.insert(h.clone(), models);
                    }
                }
            }
            if let Some(u) = &r.user_id {
                add(&mut a.users, u, r.spend);
            }
            if let Some(t) = &r.team_id {
                add(&mut a.teams, t, r.spend);
            }
        }
        a
    }

    fn touches(&self, p: &Principal) -> bool {
        self.keys.contains_key(&p.key.token_hash)
            || p.user
                .as_ref()
                .is_some_and(|u| self.users.contains_key(&u.user_id))
            || p.team
                .as_ref()
                .is_some_and(|t| self.teams.contains_key(&t.team_id))
    }

    fn apply(&self, p: &Principal) -> Principal {
        let mut p = p.clone();
        p.key.spend += self.keys.get(&p.key.token_hash).copied().unwrap_or(0.0);
        if let Some(models) = self.key_models.get(&p.key.token_hash) {
            for (model, s) in models {
                *p.key.model_spend.entry(model.clone()).or_default() += s;
            }
        }
        if let Some(u) = &mut p.user {
            u.spend += self.users.get(&u.user_id).copied().unwrap_or(0.0);
        }
        if let Some(t) = &mut p.team {
            t.spend += self.teams.get(&t.team_id).copied().unwrap_or(0.0);
        }
        p
    }
}

/// Adds `spend` to `name`'s total, copying the name only when it is new.
fn add(totals: &mut HashMap<String, f64>, name: &str, spend: f64) {
    match totals.get_mut(name) {
        Some(total) => *total += spend,
        None => {
            totals.insert(name.to_owned(), spend);
        }
    }
}

impl Registry {
    /// A cache of at most `capacity` keys, each kept for at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
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
        let epoch = self.epoch();
        let mut loaded_here = false;
        let entry = self
            .cache
            .try_get_with_by_ref(token_hash, async {
                loaded_here = true;
                let loaded_at = Instant::now();
                let principal = store.principal(token_hash).await?.map(Arc::new);
                Ok::<_, KeyError>(Entry {
                    principal,
                    loaded_at,
                    epoch,
                })
            })
            .await
            .map_err(|e: Arc<KeyError>| (*e).clone())?;
        if loaded_here && self.epoch() != epoch {
            // A change was made while this read ran: serve what was read,
            // but do not keep it.
            self.cache.invalidate(token_hash).await;
        }
        Ok(entry.principal)
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
            .invalidate_entries_if(move |_, e| e.principal.as_ref().is_some_and(|p| pred(p)));
        if registered.is_err() {
            self.cache.invalidate_all();
        }
    }

    /// Forgets everything (after budget resets).
    pub fn invalidate_all(&self) {
        self.bump();
        self.cache.invalidate_all();
    }

    /// Brings cached principals up to date with spend committed at
    /// `committed_from`: entries read before it get the spend added; entries
    /// read since may or may not include it, and entries older than an
    /// invalidation may be stale, so those are dropped and re-read.
    pub async fn apply_spend(&self, applied: &Applied, committed_from: Instant) {
        let mut stale = Vec::new();
        let mut touched = Vec::new();
        let epoch = self.epoch();
        for (k, e) in self.cache.iter() {
            let Some(p) = &e.principal else { continue };
            if !applied.touches(p) {
                continue;
            }
            if e.loaded_at < committed_from && e.epoch == epoch {
                touched.push(((*k).clone(), p.clone(), e.loaded_at, e.epoch));
            } else {
                stale.push((*k).clone());
            }
        }
        // A batch can touch thousands of keys: this runs on a request
        // worker, so it steps aside now and then instead of holding it.
        for (i, (k, p, loaded_at, epoch)) in touched.into_iter().enumerate() {
            let entry = Entry {
                principal: Some(Arc::new(applied.apply(&p))),
                loaded_at,
                epoch,
            };
            self.cache.insert(k, entry).await;
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        for k in stale {
            self.cache.invalidate(&k).await;
        }
    }
}
