//! State several instances share through one Redis, so that a team can run
//! more than one conclave behind a load balancer and still have one set of
//! limits:
//!
//! - rate, in-flight and budget counters of virtual keys
//!   ([`crate::limits::shared`]), checked and counted by atomic scripts;
//! - changes to keys, users and teams ([`events`]): the management API of
//!   one instance announces them on a pub/sub channel and every other
//!   instance drops its cached copies;
//! - router cooldowns ([`events`] too): a deployment one instance cools is
//!   skipped by all, for the same time; the cooldowns in force are also
//!   kept as expiring keys, which an instance reads when it starts;
//! - runtime models kept in the store (`store_model_in_db`, [`events`]
//!   again): a registration or deletion on one instance makes every other
//!   read the registrations from the store and rebuild.
//!
//! Nothing here is on the path of a request that has no limited key: the
//! no-key and master-key paths never touch Redis, and cooldowns travel
//! only when one starts. Redis is found as [`settings`] says; without one,
//! every instance counts on its own, as before.

mod connection;
mod events;
pub mod link;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

pub use connection::{Connection, glob_escape};
use events::Bus;
use link::{Health, Link};
pub use settings::{Settings, url_problem};

use crate::keys::Keys;
use crate::reload::Control;

/// How long start-up waits for Redis before serving anyway (counting in
/// the instance until it answers).
const START_WAIT: Duration = Duration::from_secs(2);

/// This instance's handle on the shared state.
pub struct Cluster {
    settings: Settings,
    link: Link,
    /// Names this process in Redis (its in-flight slots, its messages).
    instance: String,
}

impl Cluster {
    /// Connects to the Redis `settings` name (waiting a little for it, never
    /// failing when it is down: requests are then counted here until it
    /// answers). Only an unusable URL is an error.
    pub async fn start(settings: Settings) -> Result<Self, String> {
        let health = Arc::new(Health::default());
        let on_failure = {
            let health = health.clone();
            Arc::new(move |e: &redis::RedisError| health.failed("connection", e, false))
        };
        let conn = Connection::new(&settings.url, "shared state", on_failure)?;
        if !conn.wait_connected(START_WAIT).await {
            tracing::warn!(
                redis = %settings.location(),
                "shared state: redis does not answer yet; limits are counted in this instance until it does"
            );
        }
        let link = Link::start(conn, settings.budget, health);
        let instance = format!("{:016x}", fastrand::u64(..));
        tracing::info!(
            redis = %settings.location(),
            namespace = %settings.namespace,
            instance = %instance,
            "shared state through redis: limits, key changes and cooldowns"
        );
        Ok(Self {
            settings,
            link,
            instance,
        })
    }

    /// Whether Redis answers a `PING` now (through the command queue).
    pub async fn answers(&self) -> bool {
        self.link.call_command(redis::cmd("PING")).await.is_ok()
    }

    /// The command queue to Redis, for the shared limit counters.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The prefix of every key and channel.
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// This process's name in Redis.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Shares key changes (when `keys` is on), router cooldowns and (when
    /// kept in the store) runtime models: this instance announces its own
    /// and applies the others', starting with the cooldowns in force now.
    /// Returns once subscribed (so nothing announced from then on is
    /// missed), or after [`START_WAIT`] at most while Redis does not answer.
    pub async fn share(&self, keys: Option<&Keys>, control: &Arc<Control>) {
        let bus = Bus::new(self.link.clone(), &self.settings.namespace, &self.instance);
        if let Some(keys) = keys {
            keys.announce_changes_to(Arc::new(bus.clone()));
        }
        crate::router::cooldown::share_cooldowns(Some(Arc::new(bus.clone())));
        let models = control.stored_models().map(|stored| {
            stored.announce_changes_to(Arc::new(bus.clone()));
            control.clone()
        });
        let ready = events::listen(bus, keys.cloned(), control.current(), models);
        if self.link.connection().get().is_some()
            && tokio::time::timeout(START_WAIT, ready).await.is_err()
        {
            tracing::warn!(
                "shared state: not subscribed yet; changes announced meanwhile are read when it is"
            );
        }
    }
}
