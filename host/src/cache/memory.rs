//! The in-memory backend: a moka cache bounded by the bytes of its entries
//! (a weigher counts each body), with TinyLFU admission and LRU eviction, and
//! each entry's own lifetime (its `ttl`, from the config or the request).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::entry::Entry;

/// What the moka cache holds per key.
#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    ttl: Option<Duration>,
}

struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Stored,
        _now: Instant,
    ) -> Option<Duration> {
        value.ttl
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        value.ttl
    }
}

/// Entries in this process, at most `max_bytes` of them.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Stored>,
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of keys and bodies.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Stored| {
                u32::try_from(key.len() + value.entry.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { cache }
    }

    /// The entry under `key`, if present and alive.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key).map(|s| s.entry)
    }

    /// Stores `entry` for `ttl` (`None`: until evicted).
    pub fn put(&self, key: String, entry: Arc<Entry>, ttl: Option<Duration>) {
        self.cache.insert(key, Stored { entry, ttl });
    }

    /// Removes one entry; whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries and their bytes now (after pending evictions ran).
    pub fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_store_stays_within_its_bytes() {
        let store = MemoryStore::new(100_000);
        for i in 0..200 {
            let body = Bytes::from(vec![b'x'; 10_000]);
            store.put(format!("k{i}"), Arc::new(Entry::new(body, false)), None);
        }
        let (_, bytes) = store.size();
        assert!(bytes <= 100_000, "{bytes}");
    }

    #[test]
    fn an_entry_lives_for_its_ttl() {
        let store = MemoryStore::new(1 << 20);
        let entry = Arc::new(Entry::new(Bytes::from_static(b"{}"), false));
        store.put(
            "short".into(),
            entry.clone(),
            Some(Duration::from_millis(50)),
        );
        store.put("long".into(), entry, None);
        assert!(store.get("short").is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(store.get("short").is_none());
        assert!(store.get("long").is_some());
        assert!(store.remove("long"));
        assert!(store.get("long").is_none());
    }
}
