//! The response cache: a repeated question answered without calling a
//! model. LiteLLM's config keys and per-request controls; an in-memory
//! backend bounded by bytes, or Redis shared by instances; exact keys
//! ([`key`]) and, opt-in, semantic matching ([`semantic`]).
//!
//! The HTTP edge asks for a [`Plan`] once it knows the model and the caller,
//! looks the plan up after admission, and on a miss wraps the answer so it
//! is stored when it is whole: at once for a JSON answer, when a stream ends
//! cleanly with a finish reason for a streamed one. A composite profile's
//! final answer is one entry with its trace; with `composite_subcalls` the
//! strategy's own model calls use the cache too.
//!
//! The cache lives beside the gateway versions ([`CacheSlot`]): a reload
//! whose cache settings are unchanged keeps every entry.

mod assemble;
mod controls;
mod entry;
mod key;
mod memory;
mod redis;
mod replay;
pub mod semantic;
pub mod settings;
mod shape;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

pub use assemble::{Assembler, Filling};
pub use controls::Controls;
pub use entry::Entry;
pub use key::KeyParts;
pub use settings::{Backend, Settings};
pub use shape::Shape;

use self::memory::MemoryStore;
use self::redis::RedisStore;
use crate::config::CacheScope;
use crate::openai::{Endpoint, ProxyRequest, RawFields};
use crate::ops::{CacheStatus, CallContext, Caller};
use crate::router::Router;

/// Share of `max_size_mb` the semantic index may use; entries get the rest.
const SEMANTIC_SHARE: u64 = 4;

/// Where entries are kept. The Redis store (its client, with TLS settings)
/// is boxed: it is several times the memory store's size.
enum Store {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

/// One cache, built from one [`Settings`].
pub struct Cache {
    pub settings: Arc<Settings>,
    store: Store,
    semantic: Option<semantic::Index>,
}

impl Cache {
    /// Builds the cache `settings` describe; Redis connects in the background.
    pub fn build(settings: Arc<Settings>) -> Result<Self, String> {
        let semantic = settings.semantic.as_ref().map(|s| {
            semantic::Index::new(
                s.threshold,
                s.embedding_model.clone(),
                (settings.max_bytes / SEMANTIC_SHARE) as usize,
            )
        });
        let entry_bytes = if semantic.is_some() {
            settings.max_bytes - settings.max_bytes / SEMANTIC_SHARE
        } else {
            settings.max_bytes
        };
        let store = match &settings.backend {
            Backend::Memory => Store::Memory(MemoryStore::new(entry_bytes)),
            Backend::Redis { url } => Store::Redis(Box::new(RedisStore::new(
                url,
                &settings.namespace,
                settings.budget,
                settings.max_entry_bytes,
            )?)),
        };
        Ok(Self {
            settings,
            store,
            semantic,
        })
    }

    /// The entry under `key`; any backend failure is a miss.
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        match &self.store {
            Store::Memory(m) => m.get(key),
            Store::Redis(r) => match r.get(key).await {
                Ok(found) => {
                    r.health.succeeded();
                    found.map(Arc::new)
                }
                Err(e) => {
                    r.health.failed("lookup", &e);
                    None
                }
            },
        }
    }

    /// Stores `entry` under `key` unless it is larger than `max_entry_kb`,
    /// Redis is not connected or down, or the writes waiting for it hold
    /// their bound already (the answer then says `miss`, not `stored`). A
    /// Redis write runs on its own task. Whether it was accepted.
    pub fn put(&self, key: &str, entry: Entry, ttl: Option<Duration>) -> bool {
        if entry.body.len() > self.settings.max_entry_bytes {
            return false;
        }
        let ttl = ttl.or(self.settings.ttl);
        match &self.store {
            Store::Memory(m) => m.put(key.to_owned(), Arc::new(entry), ttl),
            Store::Redis(r) => {
                if !r.is_connected()
                    || r.health.is_down()
                    || !r.health.reserve_write(entry.body.len())
                {
                    return false;
                }
                let ttl = ttl.unwrap_or(settings::DEFAULT_REDIS_TTL);
                let write = r.put_task(key.to_owned(), entry, ttl);
                tokio::spawn(write);
            }
        }
        true
    }

    /// Deletes one entry; whether it existed.
    pub async fn remove(&self, key: &str) -> Result<bool, String> {
        match &self.store {
            Store::Memory(m) => Ok(m.remove(key)),
            Store::Redis(r) => r.remove(key).await.map_err(|e| e.to_string()),
        }
    }

    /// Deletes every entry (of this namespace, for Redis) and the semantic index.
    pub async fn clear(&self) -> Result<(), String> {
        if let Some(index) = &self.semantic {
            index.clear();
        }
        match &self.store {
            Store::Memory(m) => {
                m.clear();
                Ok(())
            }
            Store::Redis(r) => r.clear().await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    /// Health for `GET /cache/ping`: backend, round trip, failures so far.
    pub async fn ping(&self) -> Result<serde_json::Value, String> {
        let kind = self.settings.type_name();
        match &self.store {
            Store::Memory(m) => {
                let (entries, bytes) = m.size();
                Ok(serde_json::json!({
                    "status": "healthy", "cache_type": kind,
                    "entries": entries, "bytes": bytes, "max_bytes": self.settings.max_bytes,
                }))
            }
            Store::Redis(r) => {
                let errors = r.health.errors.load(std::sync::atomic::Ordering::Relaxed);
                match r.ping().await {
                    Ok(rtt) => Ok(serde_json::json!({
                        "status": "healthy", "cache_type": kind,
                        "ping_ms": rtt.as_secs_f64() * 1000.0, "failures": errors,
                        "location": self.settings.redis_location(),
                    })),
                    Err(e) => Err(format!(
                        "redis is not reachable: {e} ({errors} failures so far)"
                    )),
                }
            }
        }
    }
}

impl RedisStore {
    /// The write of one entry as a task; a failure is counted and logged.
    fn put_task(
        &self,
        key: String,
        entry: Entry,
        ttl: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static + use<> {
        let write = self.clone();
        async move {
            match write.put(&key, &entry, ttl).await {
                Ok(()) => write.health.succeeded(),
                Err(e) => write.health.failed("write", &e),
            }
            write.health.release_write(entry.body.len());
        }
    }
}

/// The current cache, kept across gateway versions while its settings stay
/// the same.
#[derive(Default)]
pub struct CacheSlot {
    current: ArcSwapOption<Cache>,
    build: Mutex<()>,
}

impl CacheSlot {
    /// The cache for `settings` (the current version's): the one already
    /// built when the settings are equal, else a new one. `None` when the
    /// cache is off or cannot be built (logged).
    pub fn for_settings(&self, settings: Option<&Arc<Settings>>) -> Option<Arc<Cache>> {
        let settings = settings?;
        if let Some(cache) = self.current.load_full()
            && (Arc::ptr_eq(&cache.settings, settings) || *cache.settings == **settings)
        {
            return Some(cache);
        }
        let _building = self.build.lock().ok()?;
        if let Some(cache) = self.current.load_full()
            && *cache.settings == **settings
        {
            return Some(cache);
        }
        match Cache::build(settings.clone()) {
            Ok(cache) => {
                let cache = Arc::new(cache);
                self.current.store(Some(cache.clone()));
                tracing::info!(
                    cache_type = cache.settings.type_name(),
                    "response cache ready"
                );
                Some(cache)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the response cache cannot be built; serving without it");
                None
            }
        }
    }
}

/// What the cache does for one request, decided before it runs.
pub struct Plan {
    cache: Arc<Cache>,
    /// The visible key (SHA-256 hex).
    pub key: String,
    read: bool,
    write: bool,
    ttl: Option<Duration>,
    s_maxage: Option<Duration>,
    /// Semantic mode: the bucket and the question to embed.
    semantic: Option<(String, String)>,
    /// The question's embedding, once computed by the lookup.
    unit: Option<Arc<[f32]>>,
    composite: bool,
    /// What a streamed answer is folded into and a hit replayed as.
    shape: Option<Shape>,
}

/// What the request asks, for [`plan`].
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub req: &'a ProxyRequest,
    /// The model group after aliases, or the composite model.
    pub model: &'a str,
    pub composite: bool,
    pub caller: &'a Caller,
    /// The request's tags when they choose the deployment
    /// ([`KeyParts::tags`]).
    pub tags: &'a [String],
    /// The end user the request names ([`KeyParts::end_user`]).
    pub end_user: Option<&'a str>,
}

/// The cache's decision before running a request: `Ok(None)` when the
/// cache does not apply (off, an endpoint it does not serve), a plan
/// otherwise (which may read, write, both or
/// neither: a bypass). Malformed controls are the client's error.
pub fn plan(cache: Option<Arc<Cache>>, r: &Request<'_>) -> Result<Option<Plan>, String> {
    let Some(cache) = cache else { return Ok(None) };
    let s = &cache.settings;
    let served = match r.endpoint {
        Endpoint::ChatCompletions => s.call_types.chat,
        Endpoint::Completions => s.call_types.text_completion,
        Endpoint::Embeddings => s.call_types.embedding,
        // Answers the cache does not keep: a moderation verdict follows
        // the policy of the day, images are large and meant to differ.
        Endpoint::Moderations | Endpoint::ImageGenerations | Endpoint::Rerank => false,
    };
    if !served {
        return Ok(None);
    }
    let controls = Controls::parse(r.req.cache.as_deref())?;
    let on = controls.use_cache.unwrap_or(s.default_on);
    let namespace = controls.namespace.as_deref().unwrap_or(&s.namespace);
    let tenant = tenant(s.scope, r.caller);
    let parts = KeyParts {
        endpoint: r.endpoint,
        model: r.model,
        namespace,
        tenant: tenant.as_deref(),
        fallbacks: r.req.fallbacks.as_deref().unwrap_or_default(),
        tags: r.tags,
        end_user: r.end_user,
    };
    let Some(key) = key::key(&parts, &r.req.rest) else {
        return Ok(None);
    };
    let semantic = match (&cache.semantic, on && !controls.no_cache) {
        (Some(_), true) => semantic::question(r.endpoint, &r.req.rest)
            .and_then(|q| bucket(&parts, &r.req.rest).map(|b| (b, q))),
        _ => None,
    };
    Ok(Some(Plan {
        key,
        read: on && !controls.no_cache,
        write: on && !controls.no_store,
        ttl: controls.ttl,
        s_maxage: controls.s_maxage,
        semantic,
        unit: None,
        composite: r.composite,
        shape: Shape::of(r.endpoint),
        cache,
    }))
}

/// The part of a request's identity a scope adds to its key.
/// With `team`, a key without a team is a tenant of its own; the master
/// key and an open gateway (no keys) are one tenant each.
fn tenant(scope: CacheScope, caller: &Caller) -> Option<String> {
    let own = || match caller.token_hash() {
        Some(hash) => format!("key:{hash}"),
        None => format!("caller:{}", caller.label()),
    };
    match scope {
        CacheScope::Global => None,
        CacheScope::Team => Some(
            caller
                .team_id()
                .map_or_else(own, |team| format!("team:{team}")),
        ),
        CacheScope::Key => Some(own()),
    }
}

/// The semantic bucket: the key of everything but the question itself.
fn bucket(parts: &KeyParts<'_>, body: &RawFields) -> Option<String> {
    let mut rest = body.clone();
    for field in ["messages", "prompt", "input"] {
        rest.remove(field);
    }
    key::key(parts, &rest)
}

impl Plan {
    /// Whether the answer may be stored.
    pub fn writes(&self) -> bool {
        self.write
    }

    /// Keeps this request's answer out of the cache (it came from one of
    /// the config's fallback groups: stored under the group asked for, a
    /// hit would name the wrong group and serve requests that disable
    /// fallbacks).
    pub fn forgo_write(&mut self) {
        self.write = false;
    }

    /// The shape of the endpoint's answers; `None` for one that never
    /// streams.
    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// Bytes a streamed answer may grow to and still be stored.
    pub fn max_entry_bytes(&self) -> usize {
        self.cache.settings.max_entry_bytes
    }

    /// The status when nothing was read and nothing is stored yet.
    pub fn initial_status(&self) -> CacheStatus {
        if self.read || self.write {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        }
    }

    /// Looks the request up: exact key first, then (semantic mode) the
    /// nearest earlier question. An entry older than the request's
    /// `s-maxage` is not used.
    pub async fn lookup(&mut self, router: &Router, ctx: &CallContext) -> Option<Arc<Entry>> {
        if !self.read {
            return None;
        }
        if let Some(entry) = self.fresh(self.cache.get(&self.key).await) {
            return Some(entry);
        }
        if self.cache.semantic.is_none() || self.semantic.is_none() {
            return None;
        }
        // Boxed: the embedding call's future holds the router's, and inline
        // it would make every exact lookup's future as large.
        Box::pin(self.nearest(router, ctx)).await
    }

    /// The entry of the nearest earlier question (semantic mode).
    async fn nearest(&mut self, router: &Router, ctx: &CallContext) -> Option<Arc<Entry>> {
        let (Some(index), Some((bucket, question))) = (&self.cache.semantic, &self.semantic) else {
            return None;
        };
        let unit = index.embed(router, ctx, question).await?;
        self.unit = Some(unit.clone());
        let near = index.nearest(bucket, &unit)?;
        let entry = self.fresh(self.cache.get(&near).await)?;
        self.key = near;
        Some(entry)
    }

    fn fresh(&self, entry: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
        let entry = entry?;
        match self.s_maxage {
            Some(max) if entry.age() > max => None,
            _ => Some(entry),
        }
    }

    /// Stores a whole answer; whether it was stored.
    pub fn store(&self, body: Bytes) -> bool {
        if !self.write || !answer_is_cacheable(&body) {
            return false;
        }
        let stored = self
            .cache
            .put(&self.key, Entry::new(body, self.composite), self.ttl);
        if stored
            && let (Some(index), Some((bucket, _)), Some(unit)) =
                (&self.cache.semantic, &self.semantic, &self.unit)
        {
            index.insert(bucket, unit.clone(), self.key.clone());
        }
        stored
    }
}

/// Whether a JSON answer is worth storing: one with choices (a chat or
/// text completion), data (embeddings), content (a Messages answer) or
/// output (a Responses answer), never an error body or an answer shaped
/// otherwise.
fn answer_is_cacheable(body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Probe {
        error: Option<IgnoredAny>,
        choices: Option<Vec<IgnoredAny>>,
        data: Option<Vec<IgnoredAny>>,
        content: Option<Vec<IgnoredAny>>,
        output: Option<Vec<IgnoredAny>>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|p| {
        p.error.is_none()
            && [p.choices, p.data, p.content, p.output]
                .iter()
                .any(|list| list.as_ref().is_some_and(|l| !l.is_empty()))
    })
}

/// Replaying a hit.
pub use replay::{chunks as replay_chunks, json_body as replay_json};

/// A strategy's sub-call through the cache (`composite_subcalls`): the
/// cache and the parent request's tenant and controls.
#[derive(Clone)]
pub struct SubCalls {
    cache: Arc<Cache>,
    namespace: String,
    tenant: Option<String>,
    /// The composite request's tags when they choose deployments: its
    /// sub-calls are routed by them too.
    tags: Arc<[String]>,
    /// The composite request's end user: its sub-calls answer that user.
    end_user: Option<Arc<str>>,
    read: bool,
    /// The keys the run has asked for already: a run asking the same
    /// question again (a sampling strategy's draws) wants another answer,
    /// not a copy of the first one, so a repeat is never read here.
    asked: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for SubCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubCalls").finish_non_exhaustive()
    }
}

impl SubCalls {
    /// Sub-call caching for a composite request, when the config allows it.
    /// A request's `no-cache` applies to its sub-calls too; its `no-store`
    /// does not (their answers are the members', not the final one).
    pub fn for_request(cache: Option<&Arc<Cache>>, r: &Request<'_>) -> Option<Self> {
        let cache = cache?;
        let s = &cache.settings;
        if !s.composite_subcalls {
            return None;
        }
        let controls = Controls::parse(r.req.cache.as_deref()).ok()?;
        Some(Self {
            cache: cache.clone(),
            namespace: controls.namespace.unwrap_or_else(|| s.namespace.clone()),
            tenant: tenant(s.scope, r.caller),
            tags: r.tags.into(),
            end_user: r.end_user.map(Arc::from),
            read: !controls.no_cache,
            asked: Arc::default(),
        })
    }

    /// The key of a sub-call to `model` with `body`.
    pub fn key(&self, model: &str, body: &RawFields) -> Option<String> {
        key::key(
            &KeyParts {
                endpoint: Endpoint::ChatCompletions,
                model,
                namespace: &self.namespace,
                tenant: self.tenant.as_deref(),
                fallbacks: &[],
                tags: &self.tags,
                end_user: self.end_user.as_deref(),
            },
            body,
        )
    }

    /// A stored answer for `key`, unless the run has asked for it before.
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let first = self
            .asked
            .lock()
            .is_ok_and(|mut asked| asked.insert(key.to_owned()));
        if !self.read || !first {
            return None;
        }
        self.cache.get(key).await
    }

    /// Stores a sub-call's answer.
    pub fn store(&self, key: &str, body: Bytes) -> bool {
        answer_is_cacheable(&body) && self.cache.put(key, Entry::new(body, false), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_with_something_in_them_are_stored() {
        assert!(!answer_is_cacheable(br#"{"error":{"message":"x"}}"#));
        assert!(answer_is_cacheable(
            br#"{"id":"x","choices":[{"index":0}]}"#
        ));
        assert!(answer_is_cacheable(
            br#"{"object":"list","data":[{"embedding":[]}]}"#
        ));
        assert!(answer_is_cacheable(
            br#"{"type":"message","content":[{"type":"text"}]}"#
        ));
        assert!(!answer_is_cacheable(br#"{"id":"x","choices":[]}"#));
        assert!(!answer_is_cacheable(br#"{"id":"x","choices":"nope"}"#));
        assert!(!answer_is_cacheable(b"not json"));
    }
}
