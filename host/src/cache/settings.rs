//! The cache's settings, resolved once per config version from
//! `litellm_settings.cache_params`: defaults filled in, keys checked against
//! each other. Two versions with equal settings share one cache, so a reload
//! that does not touch the cache keeps its entries.

use std::time::Duration;

use crate::cluster::settings::{redact_url, redis_url};
use crate::config::{CacheMode, CacheParams, CacheScope, CacheType, CallType, Config, Problem};

/// In-memory cache size when `max_size_mb` is unset.
pub const DEFAULT_MAX_SIZE_MB: f64 = 256.0;
/// Largest stored answer when `max_entry_kb` is unset.
pub const DEFAULT_MAX_ENTRY_KB: f64 = 1024.0;
/// How long a Redis lookup may take before it counts as a miss.
pub const DEFAULT_REDIS_BUDGET: Duration = Duration::from_millis(20);
/// Entry lifetime in Redis when no `ttl` is set: Redis must not fill up
/// with entries nothing expires.
pub const DEFAULT_REDIS_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default similarity for the semantic modes.
pub const DEFAULT_SIMILARITY: f32 = 0.95;
/// The namespace when none is configured (LiteLLM's Redis key prefix).
pub const DEFAULT_NAMESPACE: &str = "litellm_caching";

const PATH: &str = "litellm_settings.cache_params";

/// Where entries are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// This process's memory, bounded by bytes.
    Memory,
    /// A Redis server shared by instances; the URL may hold a password and
    /// is never printed.
    Redis { url: String },
}

/// Which endpoints the cache serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTypes {
    pub chat: bool,
    pub text_completion: bool,
    pub embedding: bool,
}

/// Semantic matching: questions compared by embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Semantic {
    pub threshold: f32,
    pub embedding_model: String,
}

/// Everything the cache does, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub backend: Backend,
    pub semantic: Option<Semantic>,
    /// Entry lifetime; `None` keeps memory entries until evicted.
    pub ttl: Option<Duration>,
    pub namespace: String,
    pub call_types: CallTypes,
    pub default_on: bool,
    pub scope: CacheScope,
    /// Bound of the in-memory store (entries and semantic index).
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub composite_subcalls: bool,
    /// Redis lookup budget.
    pub budget: Duration,
}

impl Settings {
    /// The settings `config` asks for: `None` when the cache is off, the
    /// problems (with key paths) when its keys do not fit together.
    pub fn from_config(config: &Config) -> Result<Option<Self>, Vec<Problem>> {
        let ls = &config.litellm_settings;
        if ls.cache != Some(true) {
            return Ok(None);
        }
        let default = CacheParams::default();
        let p = ls.cache_params.as_ref().unwrap_or(&default);
        let mut problems = Vec::new();
        // LiteLLM's proxy caches in Redis unless told otherwise; without a
        // Redis named anywhere the cache is in memory.
        let kind = p
            .served_type()
            .unwrap_or_else(|| match redis_url(p, &config.env) {
                Some(_) => CacheType::Redis,
                None => CacheType::Local,
            });
        let backend = match kind {
            CacheType::Local | CacheType::LocalSemantic => Backend::Memory,
            CacheType::Redis => match redis_url(p, &config.env) {
                Some(url) => {
                    if p.db.is_some() && p.redis_url.is_some() {
                        problems.push(Problem::new(
                            format!("{PATH}.db"),
                            "is not read beside a whole REDIS_URL: end the URL with the \
                             database (redis://host:6379/14) instead",
                        ));
                    }
                    if let Some(problem) = crate::cluster::url_problem(&url) {
                        let key = if p.redis_url.is_some() {
                            "REDIS_URL"
                        } else {
                            "host"
                        };
                        problems.push(Problem::new(
                            format!("{PATH}.{key}"),
                            format!("the Redis URL {problem}"),
                        ));
                    }
                    Backend::Redis { url }
                }
                None => {
                    problems.push(Problem::new(
                        format!("{PATH}.host"),
                        "type redis needs host (and port, password) or REDIS_URL, \
                         here or in the environment (REDIS_URL, REDIS_HOST)",
                    ));
                    Backend::Memory
                }
            },
        };
        let semantic = match kind {
            CacheType::LocalSemantic => semantic(p, &mut problems),
            _ => None,
        };
        let ttl = seconds(p.ttl, "ttl", &mut problems);
        let max_mb = p.max_size_mb.unwrap_or(DEFAULT_MAX_SIZE_MB);
        if !(max_mb.is_finite() && max_mb > 0.0) {
            problems.push(Problem::new(
                format!("{PATH}.max_size_mb"),
                "must be a positive number of MiB",
            ));
        }
        let max_kb = p.max_entry_kb.unwrap_or(DEFAULT_MAX_ENTRY_KB);
        if !(max_kb.is_finite() && max_kb > 0.0) {
            problems.push(Problem::new(
                format!("{PATH}.max_entry_kb"),
                "must be a positive number of KiB",
            ));
        }
        let namespace = p
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        // Compared whatever the two Redis URLs say: one server is easily
        // written two ways, and a flush deletes `<namespace>:*`.
        if let Backend::Redis { .. } = &backend
            && let Some(shared) = crate::cluster::Settings::from_config(config)
            && namespaces_overlap(&namespace, &shared.namespace)
        {
            problems.push(Problem::new(
                format!("{PATH}.namespace"),
                format!(
                    "{namespace:?} overlaps the shared state's namespace {:?} \
                     (router_settings.redis_namespace): flushing the cache would delete \
                     every instance's limit counters; give the cache a namespace of its own",
                    shared.namespace
                ),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Some(Self {
            backend,
            semantic,
            ttl,
            namespace,
            call_types: call_types(p.supported_call_types.as_deref()),
            default_on: p.mode != Some(CacheMode::DefaultOff),
            scope: p.scope.unwrap_or(CacheScope::Global),
            max_bytes: (max_mb * 1024.0 * 1024.0) as u64,
            max_entry_bytes: (max_kb * 1024.0) as usize,
            composite_subcalls: p.composite_subcalls.unwrap_or(false),
            budget: p
                .redis_timeout_ms
                .filter(|ms| *ms > 0)
                .map_or(DEFAULT_REDIS_BUDGET, Duration::from_millis),
        }))
    }

    /// The backend's name as `type` spells it.
    pub fn type_name(&self) -> &'static str {
        match (&self.backend, &self.semantic) {
            (Backend::Memory, None) => "local",
            (Backend::Memory, Some(_)) => "local-semantic",
            (Backend::Redis { .. }, _) => "redis",
        }
    }

    /// Where Redis is, without its password: for `conclave check` and logs.
    pub fn redis_location(&self) -> Option<String> {
        match &self.backend {
            Backend::Redis { url } => Some(redact_url(url)),
            Backend::Memory => None,
        }
    }
}

fn semantic(p: &CacheParams, problems: &mut Vec<Problem>) -> Option<Semantic> {
    let Some(model) = p.embedding_model.clone().filter(|m| !m.is_empty()) else {
        problems.push(Problem::new(
            format!("{PATH}.embedding_model"),
            "type local-semantic needs the model group that embeds questions",
        ));
        return None;
    };
    let threshold = p
        .similarity_threshold
        .map_or(DEFAULT_SIMILARITY, |t| t as f32);
    if !(threshold > 0.0 && threshold <= 1.0) {
        problems.push(Problem::new(
            format!("{PATH}.similarity_threshold"),
            "must be above 0 and at most 1",
        ));
        return None;
    }
    Some(Semantic {
        threshold,
        embedding_model: model,
    })
}

fn seconds(value: Option<f64>, key: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
    let s = value?;
    match Duration::try_from_secs_f64(s) {
        Ok(d) if s > 0.0 => Some(d),
        _ => {
            problems.push(Problem::new(
                format!("{PATH}.{key}"),
                "must be a positive number of seconds",
            ));
            None
        }
    }
}

/// Whether the keys under one namespace (`<a>:...`) can be under the
/// other's too.
fn namespaces_overlap(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    };
    within(a, b) || within(b, a)
}

fn call_types(list: Option<&[CallType]>) -> CallTypes {
    match list {
        None => CallTypes {
            chat: true,
            text_completion: true,
            embedding: true,
        },
        Some(list) => CallTypes {
            chat: list.contains(&CallType::Chat),
            text_completion: list.contains(&CallType::TextCompletion),
            embedding: list.contains(&CallType::Embedding),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<Option<Settings>, Vec<Problem>> {
        let config: Config = serde_yaml::from_str(yaml).unwrap();
        Settings::from_config(&config)
    }

    #[test]
    fn the_cache_is_off_unless_cache_is_true() {
        assert_eq!(settings("litellm_settings: {}").unwrap(), None);
        let s = settings("litellm_settings: {cache: true}")
            .unwrap()
            .unwrap();
        assert_eq!(s.backend, Backend::Memory);
        assert_eq!(s.max_bytes, 256 * 1024 * 1024);
        assert_eq!(s.namespace, DEFAULT_NAMESPACE);
        assert!(s.default_on);
        assert_eq!(s.scope, CacheScope::Global);
    }

    #[test]
    fn a_redis_cache_may_not_share_the_shared_states_namespace() {
        let yaml = |ns: &str| {
            format!(
                "router_settings: {{redis_host: r.local, redis_port: 6379, redis_namespace: team}}\n\
                 litellm_settings: {{cache: true, cache_params: {{type: redis, host: r.local, port: 6379, namespace: {ns}}}}}"
            )
        };
        for overlapping in ["team", "team:limits"] {
            let problems = settings(&yaml(overlapping)).unwrap_err();
            let path = format!("{PATH}.namespace");
            assert_eq!(problems[0].path, path, "{problems:?}");
        }
        assert!(settings(&yaml("team-cache")).unwrap().is_some());
        assert!(namespaces_overlap("a", "a:b") && !namespaces_overlap("ab", "a"));
    }

    #[test]
    fn redis_settings_make_a_url_and_never_print_the_password() {
        let s = settings(
            "litellm_settings: {cache: true, cache_params: {type: redis, host: r.local, port: '6380', password: 'p@ss'}}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.backend,
            Backend::Redis {
                url: "redis://:p%40ss@r.local:6380".into()
            }
        );
        assert_eq!(s.redis_location().unwrap(), "redis://r.local:6380");
    }

    #[test]
    fn litellms_db_picks_the_redis_database_and_an_unusable_url_is_named() {
        let s = settings(
            "litellm_settings: {cache: true, cache_params: {type: redis, host: r.local, db: 11}}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.backend,
            Backend::Redis {
                url: "redis://r.local:6379/11".into()
            }
        );
        let bad = "litellm_settings: {cache: true, cache_params: {type: redis, url: 'redis://:pw@r.local:notport/0'}}";
        let problems = settings(bad).unwrap_err();
        assert!(
            problems[0].path.ends_with("cache_params.REDIS_URL"),
            "{problems:?}"
        );
        assert!(!format!("{problems:?}").contains("pw"), "{problems:?}");
    }

    #[test]
    fn without_a_type_a_named_redis_is_used_as_litellms_proxy_does() {
        let s = settings("litellm_settings: {cache: true, cache_params: {host: r.local}}")
            .unwrap()
            .unwrap();
        assert_eq!(s.type_name(), "redis");
        let s =
            settings("litellm_settings: {cache: true, cache_params: {host: r.local, type: local}}")
                .unwrap()
                .unwrap();
        assert_eq!(s.type_name(), "local");
    }

    #[test]
    fn semantic_mode_needs_an_embedding_model() {
        let problems =
            settings("litellm_settings: {cache: true, cache_params: {type: local-semantic}}")
                .unwrap_err();
        assert_eq!(
            problems[0].path,
            "litellm_settings.cache_params.embedding_model"
        );
    }

    #[test]
    fn unknown_types_are_refused() {
        let e = serde_yaml::from_str::<Config>(
            "litellm_settings: {cache: true, cache_params: {type: dsik}}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown cache type \"dsik\""), "{e}");
    }

    #[test]
    fn litellm_stores_this_gateway_lacks_are_served_from_memory() {
        let kind = |yaml: &str| settings(yaml).unwrap().unwrap();
        let disk = kind("litellm_settings: {cache: true, cache_params: {type: disk}}");
        assert!(matches!(disk.backend, Backend::Memory));
        assert!(disk.semantic.is_none());
        let semantic = kind(
            "litellm_settings: {cache: true, cache_params: {type: redis-semantic, \
             redis_semantic_cache_embedding_model: embed, similarity_threshold: 0.9}}",
        );
        assert!(matches!(semantic.backend, Backend::Memory));
        assert_eq!(semantic.semantic.unwrap().embedding_model, "embed");
        let exact = kind("litellm_settings: {cache: true, cache_params: {type: qdrant-semantic}}");
        assert!(exact.semantic.is_none());
    }
}
