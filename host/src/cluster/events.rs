//! Changes announced to every instance on one pub/sub channel,
//! `<namespace>:events`: a key, user or team changed through the
//! management API (each instance drops its cached copies), and a deployment
//! cooling down (each instance cools it for the same time), and a runtime
//! model registered or deleted where registrations are kept in the store
//! (each instance reads them from the store again and rebuilds). Messages
//! are small JSON objects naming their sender, which ignores its own.
//!
//! A cooldown is also written as `<namespace>:cooldown:<fingerprint>:<id>`
//! with the cooldown's lifetime (`SET .. PX`), so an instance that starts,
//! or reconnects after missing messages, reads the cooldowns in force.
//! After each subscription every cached key is dropped and the runtime
//! models are read from the store again: a change may have gone by unheard.
//!
//! An announcement that does not reach Redis is tried again, ten times half
//! a second apart. The subscription is its own connection, remade after a
//! loss with a backoff from 100 ms to 5 s, and pinged every 10 s so a
//! silent loss is noticed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::connection::glob_escape;
use super::link::Link;
use crate::admin::ModelFeed;
use crate::gateway::Gateway;
use crate::keys::{Change, ChangeFeed, Keys};
use crate::logging::Throttle;
use crate::reload::Control;
use crate::router::cooldown::CooldownFeed;

/// First wait before subscribing again after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a quiet subscription is checked.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Budget of a connection attempt, a ping, or reading the cooldowns in force.
const OP_BUDGET: Duration = Duration::from_secs(2);
/// Cooldown keys read per `SCAN`.
const SCAN_BATCH: usize = 200;
/// Attempts at delivering one announcement, [`DELIVERY_PAUSE`] apart: a
/// Redis that failed for a moment (the queue leaves it alone for a second)
/// does not lose a change.
const DELIVERY_ATTEMPTS: u32 = 10;
const DELIVERY_PAUSE: Duration = Duration::from_millis(500);

/// One message on the channel.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Message {
    /// The instance that sent it.
    from: String,
    #[serde(flatten)]
    event: Event,
}

/// What happened.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Key {
        id: String,
    },
    User {
        id: String,
    },
    Team {
        id: String,
    },
    /// An end user (customer) changed.
    EndUser {
        id: String,
    },
    /// A budget changed, and with it its end users.
    Budget {
        id: String,
    },
    AllKeys,
    Cooldown {
        deployment: String,
        fingerprint: String,
        ms: u64,
    },
    /// A runtime model kept in the store was registered or deleted.
    RuntimeModel {
        model_name: String,
    },
}

/// A cooldown in force, as its key's value holds it.
#[derive(Debug, Serialize, Deserialize)]
struct CoolingDeployment {
    deployment: String,
    fingerprint: String,
}

/// Announces this instance's changes; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    link: Link,
    namespace: Arc<str>,
    instance: Arc<str>,
}

impl Bus {
    /// A bus under `namespace` sending as `instance`.
    pub fn new(link: Link, namespace: &str, instance: &str) -> Self {
        Self {
            link,
            namespace: namespace.into(),
            instance: instance.into(),
        }
    }

    fn channel(&self) -> String {
        format!("{}:events", self.namespace)
    }

    fn cooldown_key(&self, fingerprint: &str, id: &str) -> String {
        format!("{}:cooldown:{fingerprint}:{id}", self.namespace)
    }

    /// The `PUBLISH` of `event` on the channel.
    fn publish(&self, event: Event) -> redis::Cmd {
        let message = Message {
            from: self.instance.to_string(),
            event,
        };
        let payload = serde_json::to_string(&message).unwrap_or_default();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.channel()).arg(payload);
        cmd
    }

    /// Sends `cmds` in order on their own task, each again after a failure
    /// (a few times).
    fn deliver(&self, cmds: Vec<redis::Cmd>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let link = self.link.clone();
        runtime.spawn(async move {
            for cmd in cmds {
                for attempt in 1..=DELIVERY_ATTEMPTS {
                    if link.call_command(cmd.clone()).await.is_ok() {
                        break;
                    }
                    if attempt == DELIVERY_ATTEMPTS {
                        return;
                    }
                    tokio::time::sleep(DELIVERY_PAUSE).await;
                }
            }
        });
    }
}

impl ChangeFeed for Bus {
    fn announce(&self, change: &Change) {
        let publish = self.publish(match change {
            Change::Key(id) => Event::Key { id: id.clone() },
            Change::User(id) => Event::User { id: id.clone() },
            Change::Team(id) => Event::Team { id: id.clone() },
            Change::EndUser(id) => Event::EndUser { id: id.clone() },
            Change::Budget(id) => Event::Budget { id: id.clone() },
            Change::All => Event::AllKeys,
        });
        self.deliver(vec![publish]);
    }
}

impl ModelFeed for Bus {
    fn models_changed(&self, model_name: &str) {
        let publish = self.publish(Event::RuntimeModel {
            model_name: model_name.to_owned(),
        });
        self.deliver(vec![publish]);
    }
}

impl CooldownFeed for Bus {
    fn cooled(&self, id: &str, fingerprint: &str, time: Duration) {
        let ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX).max(1);
        let value = CoolingDeployment {
            deployment: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
        };
        // The key first: an instance subscribing after the message went by
        // reads it.
        let mut set = redis::cmd("SET");
        set.arg(self.cooldown_key(fingerprint, id))
            .arg(serde_json::to_string(&value).unwrap_or_default())
            .arg("PX")
            .arg(ms);
        let publish = self.publish(Event::Cooldown {
            deployment: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
            ms,
        });
        self.deliver(vec![set, publish]);
    }
}

/// What a received message acts on.
struct Targets {
    keys: Option<Keys>,
    gateways: Arc<ArcSwap<Gateway>>,
    /// Set when runtime models are kept in the store.
    models: Option<Arc<Control>>,
}

impl Targets {
    /// Reads the runtime models from the store again, on a task of its own
    /// (a rebuild must not hold up the messages behind it).
    fn refresh_models(&self, trigger: &'static str) {
        if let Some(control) = &self.models {
            let control = control.clone();
            tokio::spawn(async move { control.refresh_models(trigger).await });
        }
    }

    fn apply(&self, event: Event) {
        let change = match event {
            Event::Key { id } => Change::Key(id),
            Event::User { id } => Change::User(id),
            Event::Team { id } => Change::Team(id),
            Event::EndUser { id } => Change::EndUser(id),
            Event::Budget { id } => Change::Budget(id),
            Event::AllKeys => Change::All,
            Event::Cooldown {
                deployment,
                fingerprint,
                ms,
            } => {
                self.cool(&deployment, &fingerprint, Duration::from_millis(ms));
                return;
            }
            Event::RuntimeModel { model_name } => {
                tracing::debug!(model_name = %model_name, "runtime model changed on another instance");
                self.refresh_models("another instance");
                return;
            }
        };
        if let Some(keys) = &self.keys {
            keys.forget(&change);
        }
    }

    /// Cools the deployment with this id and fingerprint, in whichever
    /// group serves it, for `time` from now.
    fn cool(&self, id: &str, fingerprint: &str, time: Duration) {
        let Some(until) = Instant::now().checked_add(time) else {
            return;
        };
        let gateway = self.gateways.load();
        for group in gateway.router.groups() {
            for d in &group.deployments {
                if *d.id == *id && d.fingerprint() == fingerprint {
                    d.cool_until(until);
                    tracing::info!(
                        deployment = %d.id,
                        cooldown_s = time.as_secs_f64(),
                        "deployment cooling down (cooled by another instance)"
                    );
                }
            }
        }
    }
}

/// Subscribes in the background, for as long as the process runs; the
/// answer is told once the first subscription is made and the cooldowns in
/// force are applied.
pub fn listen(
    bus: Bus,
    keys: Option<Keys>,
    gateways: Arc<ArcSwap<Gateway>>,
    models: Option<Arc<Control>>,
) -> tokio::sync::oneshot::Receiver<()> {
    let client = bus.link.connection().client().clone();
    let targets = Targets {
        keys,
        gateways,
        models,
    };
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        let warnings = Throttle::new(Duration::from_secs(60));
        let mut backoff = MIN_BACKOFF;
        loop {
            match subscribe(&client, &bus.channel()).await {
                Ok(pubsub) => {
                    // Changes may have gone by while nobody listened (before
                    // the first subscription, the cache is all but empty).
                    if let Some(keys) = &targets.keys {
                        keys.forget(&Change::All);
                    }
                    // Nothing changes when the store says what is served.
                    targets.refresh_models("redis subscription");
                    backoff = MIN_BACKOFF;
                    if let Err(e) = read_cooldowns(&client, &bus, &targets).await
                        && warnings.allow()
                    {
                        tracing::warn!(error = %e, "shared state: cannot read the cooldowns in force");
                    }
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    let why = receive(pubsub, &bus, &targets).await;
                    if warnings.allow() {
                        tracing::warn!(reason = %why, "shared state: redis subscription lost; subscribing again");
                    }
                }
                Err(e) => {
                    if warnings.allow() {
                        tracing::warn!(error = %e, "shared state: cannot subscribe to redis; retrying");
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    ready
}

async fn subscribe(client: &redis::Client, channel: &str) -> Result<redis::aio::PubSub, String> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(OP_BUDGET, connect).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OP_BUDGET:?}")),
    }
}

/// Applies messages until the subscription is lost; why it was.
async fn receive(pubsub: redis::aio::PubSub, bus: &Bus, targets: &Targets) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return "the connection closed".into();
                };
                match serde_json::from_slice::<Message>(message.get_payload_bytes()) {
                    Ok(m) if *m.from != *bus.instance => targets.apply(m.event),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "shared state: unreadable message ignored"),
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(OP_BUDGET, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return format!("no answer to a ping within {OP_BUDGET:?}"),
                }
            }
        }
    }
}

/// Applies every cooldown in force (the keys other instances wrote).
async fn read_cooldowns(
    client: &redis::Client,
    bus: &Bus,
    targets: &Targets,
) -> Result<(), String> {
    let read = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{}:cooldown:*", glob_escape(&bus.namespace));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await?;
            for key in keys {
                let (value, left): (Option<String>, i64) = redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                let (Some(value), Ok(left)) = (value, u64::try_from(left)) else {
                    continue;
                };
                if let Ok(c) = serde_json::from_str::<CoolingDeployment>(&value) {
                    targets.cool(&c.deployment, &c.fingerprint, Duration::from_millis(left));
                }
            }
            if next == 0 {
                return Ok::<_, redis::RedisError>(());
            }
            cursor = next;
        }
    };
    match tokio::time::timeout(OP_BUDGET, read).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OP_BUDGET:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_shape_on_the_wire() {
        let m = Message {
            from: "a1".into(),
            event: Event::Cooldown {
                deployment: "gpt-a.0".into(),
                fingerprint: "f00d".into(),
                ms: 5000,
            },
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"from":"a1","event":"cooldown","deployment":"gpt-a.0","fingerprint":"f00d","ms":5000}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
        let key: Message =
            serde_json::from_str(r#"{"from":"b","event":"key","id":"ab12"}"#).unwrap();
        assert_eq!(key.event, Event::Key { id: "ab12".into() });
        let all: Message = serde_json::from_str(r#"{"from":"b","event":"all_keys"}"#).unwrap();
        assert_eq!(all.event, Event::AllKeys);
        let model: Message =
            serde_json::from_str(r#"{"from":"b","event":"runtime_model","model_name":"m"}"#)
                .unwrap();
        assert_eq!(
            model.event,
            Event::RuntimeModel {
                model_name: "m".into()
            }
        );
    }
}
