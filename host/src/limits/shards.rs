//! A map from scope names to shared counters, split into shards so that
//! requests of different keys rarely touch the same lock, and bounded so that
//! outside input (new keys, model names) cannot grow it without limit.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Shards per map: enough that two cores rarely contend.
const SHARDS: usize = 32;

/// Something a shard may drop when it is full: counters nobody needs now.
pub trait Idle {
    /// Whether the counter holds nothing that matters at `now`.
    fn is_idle(&self, now: Instant) -> bool;
}

/// One shard: scope name -> counter. Names are made by the gateway from key
/// hashes and admin-chosen ids, never by a caller, so the maps use a fast
/// seeded hasher: a request hashes several 70-byte names, and SipHash was
/// a visible share of a keyed request's cost.
type Shard<V> = RwLock<HashMap<Arc<str>, Arc<V>, RandomState>>;

/// Scope name -> counter, sharded; see the module docs.
pub struct Shards<V> {
    shards: Box<[Shard<V>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl<V: Idle> Shards<V> {
    /// A map holding at most about `capacity` counters.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::default(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The counter of `key`, made by `make` when there is none. When the
    /// shard is full even after dropping idle counters, the new counter is
    /// returned unshared (that scope goes uncounted until room is made) and
    /// `false` says so.
    pub fn get(&self, key: &str, now: Instant, make: impl FnOnce() -> V) -> (Arc<V>, bool) {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        if let Ok(map) = shard.read()
            && let Some(v) = map.get(key)
        {
            return (v.clone(), true);
        }
        let Ok(mut map) = shard.write() else {
            return (Arc::new(make()), false);
        };
        if let Some(v) = map.get(key) {
            return (v.clone(), true);
        }
        if map.len() >= self.per_shard {
            map.retain(|_, v| Arc::strong_count(v) > 1 || !v.is_idle(now));
            if map.len() >= self.per_shard {
                return (Arc::new(make()), false);
            }
        }
        let v = Arc::new(make());
        map.insert(key.into(), v.clone());
        (v, true)
    }

    /// The counter of `key`, if there is one.
    pub fn find(&self, key: &str) -> Option<Arc<V>> {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        shard.read().ok().and_then(|m| m.get(key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(AtomicBool);
    impl Idle for Flag {
        fn is_idle(&self, _: Instant) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_full_map_drops_idle_counters_and_refuses_to_grow_past_its_bound() {
        let map: Shards<Flag> = Shards::new(SHARDS);
        let now = Instant::now();
        let mut kept = 0;
        for i in 0..SHARDS * 8 {
            let (_, shared) = map.get(&format!("busy-{i}"), now, || Flag(AtomicBool::new(false)));
            kept += usize::from(shared);
        }
        assert!(kept <= SHARDS, "kept {kept} busy counters");
    }

    #[test]
    fn idle_counters_make_room_for_new_ones() {
        let map: Shards<Flag> = Shards::new(SHARDS);
        let now = Instant::now();
        for i in 0..SHARDS * 8 {
            let (_, shared) = map.get(&format!("idle-{i}"), now, || Flag(AtomicBool::new(true)));
            assert!(
                shared,
                "an idle counter should have been dropped for idle-{i}"
            );
        }
    }

    #[test]
    fn the_same_name_gets_the_same_counter() {
        let map: Shards<Flag> = Shards::new(1024);
        let now = Instant::now();
        let (a, _) = map.get("key:x", now, || Flag(AtomicBool::new(false)));
        let (b, _) = map.get("key:x", now, || Flag(AtomicBool::new(false)));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(map.find("key:x").is_some());
        assert!(map.find("key:y").is_none());
    }
}
