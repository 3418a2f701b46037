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
    /// Where entries live and how they are matched.
    #[serde(rename = "type")]
    pub kind: Option<CacheType>,
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
    /// A whole Redis URL (`redis://[:password@]host:port[/db]`).
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
    /// Semantic modes: the model group that embeds questions.
    pub embedding_model: Option<String>,
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

impl<'de> Deserialize<'de> for CacheType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "local" | "in-memory" | "memory" => Ok(CacheType::Local),
            "redis" => Ok(CacheType::Redis),
            "local-semantic" => Ok(CacheType::LocalSemantic),
            "redis-semantic" => Err(de::Error::custom(
                "cache type \"redis-semantic\" needs Redis with the search module \
                 (RediSearch), which conclave does not use; use \"local-semantic\" \
                 (semantic index in memory) or \"redis\" (exact matches shared by instances)",
            )),
            other => Err(de::Error::custom(format_args!(
                "unknown cache type {other:?}: expected local, redis or local-semantic"
            ))),
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
