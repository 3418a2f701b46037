//! One multiplexed Redis connection, made in the background. Used by the
//! response cache's Redis backend and by the state instances share
//! (limits, key changes, cooldowns), each with its own.
//!
//! It is the `redis` crate's `ConnectionManager` (features `tokio-comp`
//! and `connection-manager`): one connection shared by every request, so a
//! command never waits for a pool, and the manager reconnects by itself
//! after Redis comes back. Until the first connection is made, asking for
//! it answers `None` at once (and keeps a background attempt going), so a
//! Redis that is down at start never holds up a request; only during the
//! first attempt may a caller wait a budget of its own for it
//! ([`Connection::get_soon`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait between attempts while Redis is unreachable at start.
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// How often [`Connection::wait_connected`] looks.
const WAIT_STEP: Duration = Duration::from_millis(2);

/// Called with each failed connection attempt (for counting and logging).
pub type OnFailure = Arc<dyn Fn(&redis::RedisError) + Send + Sync>;

/// A Redis connection made in the background; clones share it.
#[derive(Clone)]
pub struct Connection {
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    connecting: Arc<AtomicBool>,
    /// When the first attempt started.
    opened: Instant,
    client: redis::Client,
    /// What uses it, for the "connected" log line.
    what: &'static str,
    on_failure: OnFailure,
}

impl Connection {
    /// A connection to `url`, started in the background. The URL is checked
    /// here; the error never contains it (it may hold a password).
    pub fn new(url: &str, what: &'static str, on_failure: OnFailure) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("the Redis URL is not usable: {:?}", e.kind()))?;
        let connection = Self {
            conn: Arc::new(ArcSwapOption::empty()),
            connecting: Arc::new(AtomicBool::new(false)),
            opened: Instant::now(),
            client,
            what,
            on_failure,
        };
        connection.connect_in_background();
        Ok(connection)
    }

    /// The connection when it is up; otherwise `None` at once, with an
    /// attempt started in the background.
    pub fn get(&self) -> Option<ConnectionManager> {
        match self.conn.load_full() {
            Some(c) => Some((*c).clone()),
            None => {
                self.connect_in_background();
                None
            }
        }
    }

    /// Waits at most `limit` for the connection to be up; whether it is.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.get().is_some() {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(WAIT_STEP.min(deadline - now)).await;
        }
    }

    /// [`Self::get`], except that while the first attempt may still be
    /// under way it waits for it, at most `limit`: a fresh connection's
    /// first commands should not all fail while it is being made (a cache
    /// built at start or reload would otherwise miss its first lookups).
    pub async fn get_soon(&self, limit: Duration) -> Option<ConnectionManager> {
        if let Some(conn) = self.get() {
            return Some(conn);
        }
        let first_attempt = CONNECT_TIMEOUT.saturating_sub(self.opened.elapsed());
        if first_attempt.is_zero() {
            return None;
        }
        self.wait_connected(limit.min(first_attempt)).await;
        self.get()
    }

    /// The client, for connections of another kind (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Starts connecting unless connected or already trying; retries until
    /// it succeeds or every clone is dropped.
    fn connect_in_background(&self) {
        if self.conn.load().is_some() || self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.connecting.store(false, Ordering::Release);
            return;
        };
        let slot = Arc::downgrade(&self.conn);
        let connecting = self.connecting.clone();
        let client = self.client.clone();
        let on_failure = self.on_failure.clone();
        let what = self.what;
        runtime.spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_number_of_retries(2)
                .set_factor(50)
                .set_max_delay(500);
            loop {
                let Some(conn_slot) = slot.upgrade() else {
                    break;
                };
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        conn_slot.store(Some(Arc::new(manager)));
                        tracing::info!("{what} connected to redis");
                        break;
                    }
                    Err(e) => on_failure(&e),
                }
                drop(conn_slot);
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            connecting.store(false, Ordering::Release);
        });
    }
}

/// `s` with Redis glob characters escaped, for `SCAN MATCH`.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_namespaces_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
