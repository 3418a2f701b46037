//! The Redis backend: entries shared by every instance pointing at the same
//! Redis, under `<namespace>:<key>`, written with their TTL (`SET .. PX`),
//! read in one round trip (`GET`).
//!
//! The connection is [`crate::cluster::Connection`]: one multiplexed
//! connection shared by every request, made in the background, remade by
//! itself after Redis comes back. Every lookup has a budget (20 ms by
//! default): a timeout, an error or a Redis that is not connected is a
//! miss, counted and logged at most once a minute, never an error for the
//! client and never a stalled request. A lookup made while the store's
//! first connection is being made waits for it within that budget, so a
//! cache built at start or on a reload does not miss its first requests. Writes happen on their own task
//! after the answer has gone. After a failed lookup or write, answers are
//! not stored (and say `miss`) until a lookup or write succeeds again, and
//! writes waiting for Redis hold at most [`MAX_PENDING_WRITE_BYTES`]: past
//! it an answer is not stored, so an outage never grows memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::entry::Entry;
use crate::cluster::{Connection, glob_escape};
use crate::logging::Throttle;

/// Budget of a write, a delete or a ping (off the answer's path).
const WRITE_BUDGET: Duration = Duration::from_secs(2);
/// Most bytes of entries being written at once.
pub const MAX_PENDING_WRITE_BYTES: usize = 64 << 20;
/// At most one "Redis unavailable" warning per this long.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Keys deleted per `UNLINK` when flushing a namespace.
const FLUSH_BATCH: usize = 500;

/// Redis failures: counted, and warned about at most once a minute; and
/// whether the last operation failed.
#[derive(Debug)]
pub struct Health {
    pub errors: AtomicU64,
    warnings: Throttle,
    /// The last lookup or write failed: Redis is taken to be down.
    down: AtomicBool,
    /// Bytes of entries whose writes have not finished.
    pending_write_bytes: AtomicUsize,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            errors: AtomicU64::new(0),
            warnings: Throttle::new(WARN_INTERVAL),
            down: AtomicBool::new(false),
            pending_write_bytes: AtomicUsize::new(0),
        }
    }
}

impl Health {
    /// A lookup or write went through: Redis is up.
    pub fn succeeded(&self) {
        if self.down.load(Ordering::Relaxed) {
            self.down.store(false, Ordering::Relaxed);
        }
    }

    /// Whether the last lookup or write failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of the pending-write budget; false when they do not fit.
    pub fn reserve_write(&self, bytes: usize) -> bool {
        self.pending_write_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                pending
                    .checked_add(bytes)
                    .filter(|total| *total <= MAX_PENDING_WRITE_BYTES)
            })
            .is_ok()
    }

    /// Gives back what [`Self::reserve_write`] took.
    pub fn release_write(&self, bytes: usize) {
        self.pending_write_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts one failure and warns when the last warning is old enough.
    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.down.store(true, Ordering::Relaxed);
        let total = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if self.warnings.allow() {
            tracing::warn!(
                %error,
                failures = total,
                "redis cache {what} failed; answering without the cache (logged once a minute)"
            );
        }
    }
}

/// Why a Redis operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    #[error("not connected")]
    NotConnected,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// A Redis server holding entries under one namespace. Clones share the
/// connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    namespace: String,
    budget: Duration,
    max_body: usize,
    pub health: Arc<Health>,
}

impl RedisStore {
    /// A store for `url`; it connects in the background (a lookup before
    /// the connection is up is a miss). The URL is checked here.
    pub fn new(
        url: &str,
        namespace: &str,
        budget: Duration,
        max_body: usize,
    ) -> Result<Self, String> {
        let health: Arc<Health> = Arc::default();
        let on_failure = {
            let health = health.clone();
            Arc::new(move |e: &redis::RedisError| health.failed("connection", e))
        };
        Ok(Self {
            conn: Connection::new(url, "the response cache", on_failure)?,
            namespace: namespace.to_owned(),
            budget,
            max_body,
            health,
        })
    }

    /// Whether the connection is up now (a write would be attempted).
    pub fn is_connected(&self) -> bool {
        self.conn.get().is_some()
    }

    fn connection(&self) -> Result<ConnectionManager, RedisFailure> {
        self.conn.get().ok_or(RedisFailure::NotConnected)
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    /// The entry under `key`: one `GET` within the lookup budget.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, RedisFailure> {
        let started = tokio::time::Instant::now();
        let mut conn = self
            .conn
            .get_soon(self.budget)
            .await
            .ok_or(RedisFailure::NotConnected)?;
        let budget = self.budget.saturating_sub(started.elapsed());
        let key = self.redis_key(key);
        let value: Option<Vec<u8>> = tokio::time::timeout(budget, conn.get(&key))
            .await
            .map_err(|_| RedisFailure::Timeout(self.budget))??;
        Ok(value.and_then(|v| Entry::decode(&v, self.max_body)))
    }

    /// Writes `entry` with its lifetime (`SET .. PX`).
    pub async fn put(&self, key: &str, entry: &Entry, ttl: Duration) -> Result<(), RedisFailure> {
        let mut conn = self.connection()?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let value = entry.encode();
        let set = redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .clone();
        tokio::time::timeout(WRITE_BUDGET, set.query_async::<()>(&mut conn))
            .await
            .map_err(|_| RedisFailure::Timeout(WRITE_BUDGET))??;
        Ok(())
    }

    /// Deletes one entry; whether it existed.
    pub async fn remove(&self, key: &str) -> Result<bool, RedisFailure> {
        let mut conn = self.connection()?;
        let n: u64 = tokio::time::timeout(WRITE_BUDGET, conn.del(self.redis_key(key)))
            .await
            .map_err(|_| RedisFailure::Timeout(WRITE_BUDGET))??;
        Ok(n > 0)
    }

    /// Deletes every entry of this namespace (and no other key), in batches.
    pub async fn clear(&self) -> Result<u64, RedisFailure> {
        let mut conn = self.connection()?;
        let pattern = format!("{}:*", glob_escape(&self.namespace));
        let mut cursor: u64 = 0;
        let mut removed = 0u64;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(FLUSH_BATCH)
                .clone();
            let (next, keys): (u64, Vec<String>) =
                tokio::time::timeout(WRITE_BUDGET, scan.query_async(&mut conn))
                    .await
                    .map_err(|_| RedisFailure::Timeout(WRITE_BUDGET))??;
            if !keys.is_empty() {
                let unlink = redis::cmd("UNLINK").arg(&keys).clone();
                let n: u64 = tokio::time::timeout(WRITE_BUDGET, unlink.query_async(&mut conn))
                    .await
                    .map_err(|_| RedisFailure::Timeout(WRITE_BUDGET))??;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Round-trip time of a `PING`.
    pub async fn ping(&self) -> Result<Duration, RedisFailure> {
        let mut conn = self.connection()?;
        let started = std::time::Instant::now();
        let ping = redis::cmd("PING").clone();
        tokio::time::timeout(WRITE_BUDGET, ping.query_async::<String>(&mut conn))
            .await
            .map_err(|_| RedisFailure::Timeout(WRITE_BUDGET))??;
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted() {
        let health = Health::default();
        health.failed("lookup", &"boom");
        health.failed("lookup", &"boom");
        assert_eq!(health.errors.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_failure_marks_redis_down_until_an_operation_succeeds() {
        let health = Health::default();
        assert!(!health.is_down());
        health.failed("write", &"timed out");
        assert!(health.is_down());
        health.succeeded();
        assert!(!health.is_down());
    }

    #[test]
    fn pending_writes_are_bounded_in_bytes() {
        let health = Health::default();
        let half = MAX_PENDING_WRITE_BYTES / 2;
        assert!(health.reserve_write(half));
        assert!(health.reserve_write(half));
        assert!(!health.reserve_write(1), "the bound is full");
        health.release_write(half);
        assert!(health.reserve_write(1));
        assert!(!health.reserve_write(usize::MAX), "no overflow");
    }
}
