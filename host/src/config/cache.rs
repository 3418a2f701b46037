//! `litellm_settings.cache` and `litellm_settings.cache_params`: the response
//! cache, in LiteLLM's names so existing files load unchanged. Values are
//! checked here as far as one key goes (an unknown `type` is refused naming
//! its key path); checks across keys live with the cache that uses them.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::Secret;

/// `litellm_settings.cache_params`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheParams {
    /// Where entries live and how they are matched ([`Self::served_type`]).
    #[serde(rename = "type")]
    pub kind: Option<WrittenCacheType>,
    /// Seconds an entry lives (default: until evicted for memory, 24 h for Redis).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub ttl: Option<f64>,
    /// Prefix of every key: caches sharing a Redis with different
    /// namespaces never see each other's entries.
    pub namespace: Option<String>,
    pub host: Option<String>,
    #[serde(deserialize_with = "port")]
    pub port: Option<u16>,
    pub password: Option<Secret>,
    /// The Redis database number (0 when unset).
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub db: Option<u64>,
    /// Connect over TLS (`rediss://`), as a managed Redis needs; also
    /// `REDIS_SSL` in the environment.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub ssl: Option<bool>,
    /// A whole Redis URL (`redis://[:password@]host:port[/db]`, or
    /// `rediss://` over TLS).
    #[serde(rename = "REDIS_URL", alias = "redis_url", alias = "url")]
    pub redis_url: Option<Secret>,
    /// LiteLLM call types the cache serves (default: all conclave serves).
    pub supported_call_types: Option<Vec<CallType>>,
    pub mode: Option<CacheMode>,
    /// Whose answers a request may read: everyone's, its team's or its key's.
    pub scope: Option<CacheScope>,
    /// Most MiB the in-memory cache holds (entries are evicted past it).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_size_mb: Option<f64>,
    /// Answers larger than this many KiB are not stored.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_entry_kb: Option<f64>,
    /// Lets a composite strategy's model calls read and fill the cache.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub composite_subcalls: Option<bool>,
    /// Milliseconds a Redis lookup may take before it counts as a miss.
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub redis_timeout_ms: Option<u64>,
    /// Semantic modes: lowest cosine similarity that counts as the same question.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub similarity_threshold: Option<f64>,
    /// Semantic modes: the model group that embeds questions (LiteLLM's
    /// Redis and Qdrant semantic caches name it with keys of their own).
    #[serde(
        alias = "redis_semantic_cache_embedding_model",
        alias = "qdrant_semantic_cache_embedding_model"
    )]
    pub embedding_model: Option<String>,
    /// LiteLLM's Redis Cluster nodes; read only to say they are not used.
    pub redis_startup_nodes: Option<serde_yaml::Value>,
    /// LiteLLM's Redis Sentinel nodes; read only to say they are not used.
    pub sentinel_nodes: Option<serde_yaml::Value>,
    /// The Sentinel's primary name, beside `sentinel_nodes`.
    pub service_name: Option<String>,
}

impl CacheParams {
    /// The key naming a Redis Cluster or Sentinel, which this gateway does
    /// not connect to: such a cache is served from memory rather than from
    /// one Redis the other keys (or the environment) may name.
    pub fn unsupported_redis_topology(&self) -> Option<&'static str> {
        if self
            .redis_startup_nodes
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            Some("redis_startup_nodes")
        } else if self.sentinel_nodes.as_ref().is_some_and(|v| !v.is_null()) {
            Some("sentinel_nodes")
        } else {
            None
        }
    }

    /// The cache that serves this config: the type written, or for one of
    /// LiteLLM's stores this gateway does not have, memory: the semantic
    /// index when an embedding model is named, else exact matches.
    pub fn served_type(&self) -> Option<CacheType> {
        let written = self.kind?;
        if written.served == CacheType::Redis && self.unsupported_redis_topology().is_some() {
            return Some(CacheType::Local);
        }
        let embeds = self
            .embedding_model
            .as_deref()
            .is_some_and(|m| !m.is_empty());
        Some(match written.litellm_only {
            None => written.served,
            Some(_) if written.served == CacheType::LocalSemantic && embeds => {
                CacheType::LocalSemantic
            }
            Some(_) => CacheType::Local,
        })
    }
}

/// `cache_params.type` as written: the type that serves it, and for one of
/// LiteLLM's stores this gateway does not have (`disk`, `s3`, `gcs`,
/// `azure-blob`, `redis-semantic`, `qdrant-semantic`), its name, so that
/// the config loads and says where its answers are cached instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenCacheType {
    pub served: CacheType,
    pub litellm_only: Option<&'static str>,
}

impl<'de> Deserialize<'de> for WrittenCacheType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let served = |served| WrittenCacheType {
            served,
            litellm_only: None,
        };
        let elsewhere = |served, name| WrittenCacheType {
            served,
            litellm_only: Some(name),
        };
        Ok(match name.as_str() {
            "local" | "in-memory" | "memory" => served(CacheType::Local),
            "redis" => served(CacheType::Redis),
            "local-semantic" => served(CacheType::LocalSemantic),
            "disk" => elsewhere(CacheType::Local, "disk"),
            "s3" => elsewhere(CacheType::Local, "s3"),
            "gcs" => elsewhere(CacheType::Local, "gcs"),
            "azure-blob" => elsewhere(CacheType::Local, "azure-blob"),
            "redis-semantic" => elsewhere(CacheType::LocalSemantic, "redis-semantic"),
            "qdrant-semantic" => elsewhere(CacheType::LocalSemantic, "qdrant-semantic"),
            other => {
                return Err(de::Error::custom(format_args!(
                    "unknown cache type {other:?}: expected local, redis or local-semantic \
                     (LiteLLM's disk, s3, gcs, azure-blob, redis-semantic and qdrant-semantic \
                     are served from memory)"
                )));
            }
        })
    }
}

/// `cache_params.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheType {
    Local,
    Redis,
    LocalSemantic,
}

impl CacheType {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::Local => "local",
            CacheType::Redis => "redis",
            CacheType::LocalSemantic => "local-semantic",
        }
    }
}

/// `cache_params.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Every cacheable request uses the cache unless it opts out.
    DefaultOn,
    /// Only requests with `cache: {use-cache: true}` use the cache.
    DefaultOff,
}

/// `cache_params.scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// One cache for every caller.
    Global,
    /// Callers share entries only within their team.
    Team,
    /// Each key has its own entries.
    Key,
}

/// One of LiteLLM's `supported_call_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    /// `completion`, `acompletion`: chat completions.
    Chat,
    /// `text_completion`, `atext_completion`: legacy completions.
    TextCompletion,
    /// `embedding`, `aembedding`.
    Embedding,
    /// A LiteLLM call type conclave has no endpoint for (transcription,
    /// rerank, ...): accepted and unused.
    Unserved,
}

impl<'de> Deserialize<'de> for CallType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "completion" | "acompletion" => Ok(CallType::Chat),
            "text_completion" | "atext_completion" => Ok(CallType::TextCompletion),
            "embedding" | "aembedding" => Ok(CallType::Embedding),
            "transcription" | "atranscription" | "rerank" | "arerank" | "image_generation"
            | "aimage_generation" | "speech" | "aspeech" | "responses" | "aresponses" => {
                Ok(CallType::Unserved)
            }
            other => Err(de::Error::custom(format_args!(
                "unknown call type {other:?}: expected completion, acompletion, \
                 text_completion, atext_completion, embedding or aembedding"
            ))),
        }
    }
}

/// A port as a number or, after environment substitution, as digits.
pub(super) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    struct PortVisitor;
    impl de::Visitor<'_> for PortVisitor {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a port number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            u16::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format_args!("port {v} is out of range")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format_args!("port {v} is out of range")))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.trim().is_empty() {
                return Ok(None);
            }
            v.trim()
                .parse::<u16>()
                .map(Some)
                .map_err(|_| E::custom(format_args!("port {v:?} is not a port number")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(PortVisitor)
}
