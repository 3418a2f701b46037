//! Where the shared state's Redis is, read once at start-up. The same
//! places LiteLLM reads, in this order: `router_settings.redis_url` or
//! `redis_host` / `redis_port` / `redis_password`; the response cache's
//! Redis (`litellm_settings.cache: true` with `cache_params.type: redis`);
//! the environment (`REDIS_URL`, or `REDIS_HOST` / `REDIS_PORT` /
//! `REDIS_PASSWORD`).

use std::time::Duration;

use crate::config::{CacheParams, CacheType, Config, Env};

/// Prefix of every key and channel when `redis_namespace` is unset; not a
/// cache namespace, so flushing a cache never drops the counters.
pub const DEFAULT_NAMESPACE: &str = "conclave-shared";
/// How long a limit check waits for Redis before counting in this instance.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(100);

/// The shared state's Redis, resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// May hold a password: never printed (see [`Settings::location`]).
    pub url: String,
    /// Prefix of every key and channel, so gateways (or tests) sharing one
    /// Redis stay apart.
    pub namespace: String,
    /// Longest wait for a limit check (`router_settings.redis_timeout_ms`).
    pub budget: Duration,
    /// Where the URL came from, for messages about it.
    pub source: &'static str,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.location())
            .field("namespace", &self.namespace)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Settings {
    /// The settings `config` (and the environment) give, or `None` when no
    /// Redis is named anywhere: every instance then counts on its own.
    pub fn from_config(config: &Config) -> Option<Self> {
        let rs = &config.router_settings;
        let from_router = rs
            .redis_url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .filter(|u| !u.is_empty())
            .map(|u| (u, "router_settings.redis_url"))
            .or_else(|| {
                rs.redis_host
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .and_then(|host| {
                        redis_url_from_parts(
                            RedisParts {
                                host: Some(host),
                                port: rs.redis_port,
                                password: rs.redis_password.as_ref().map(|p| p.expose()),
                                ..RedisParts::default()
                            },
                            &config.env,
                        )
                    })
                    .map(|u| (u, "router_settings.redis_host"))
            });
        let ls = &config.litellm_settings;
        let from_cache = || {
            let p = ls.cache_params.as_ref()?;
            (ls.cache == Some(true) && p.served_type() == Some(CacheType::Redis))
                .then(|| redis_url(p, &config.env))
                .flatten()
                .map(|u| (u, "litellm_settings.cache_params"))
        };
        let (url, source) = from_router.or_else(from_cache).or_else(|| {
            redis_url_from_parts(RedisParts::default(), &config.env)
                .map(|u| (u, "the environment's REDIS_URL or REDIS_HOST"))
        })?;
        Some(Self {
            url,
            namespace: rs
                .redis_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            budget: rs
                .redis_timeout_ms
                .filter(|ms| *ms > 0)
                .map_or(DEFAULT_BUDGET, Duration::from_millis),
            source,
        })
    }

    /// The URL refused when the Redis client cannot use it, naming where
    /// it came from (and never quoting it: it may hold a password).
    pub fn check(&self) -> Result<(), String> {
        match url_problem(&self.url) {
            Some(problem) => Err(format!(
                "{}: the shared state's Redis URL {problem}",
                self.source
            )),
            None => Ok(()),
        }
    }

    /// Where Redis is, without its password: for `conclave check` and logs.
    pub fn location(&self) -> String {
        redact_url(&self.url)
    }
}

/// The Redis URL from `REDIS_URL` or host/port/password, the config first,
/// then the environment (LiteLLM's `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
/// `REDIS_PASSWORD`).
pub(crate) fn redis_url(p: &CacheParams, env: &Env) -> Option<String> {
    if let Some(url) = p.redis_url.as_ref().filter(|u| !u.expose().is_empty()) {
        return Some(url.expose().to_owned());
    }
    redis_url_from_parts(
        RedisParts {
            host: p.host.as_deref(),
            port: p.port,
            password: p.password.as_ref().map(|s| s.expose()),
            ssl: p.ssl,
            db: p.db,
        },
        env,
    )
}

/// Why `url` is no Redis URL the client can use, without quoting it.
pub fn url_problem(url: &str) -> Option<String> {
    redis::Client::open(url).err().map(|e| {
        format!(
            "is not usable ({:?}): check its scheme (redis:// or rediss://), host, port and database",
            e.kind()
        )
    })
}

/// A Redis written as its parts, any of them left to the environment.
#[derive(Default)]
pub(crate) struct RedisParts<'a> {
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub password: Option<&'a str>,
    /// TLS (`rediss://`).
    pub ssl: Option<bool>,
    /// The database number (LiteLLM's `cache_params.db`).
    pub db: Option<u64>,
}

/// The Redis URL from a host, port, password and TLS switch, each falling
/// back to the environment (`REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`,
/// `REDIS_SSL`); without a host anywhere, `REDIS_URL`.
pub(crate) fn redis_url_from_parts(parts: RedisParts<'_>, env: &Env) -> Option<String> {
    let env = |name: &str| env.get(name).filter(|v| !v.is_empty());
    let host = parts
        .host
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| env("REDIS_HOST"));
    let Some(host) = host else {
        return env("REDIS_URL");
    };
    let port = parts
        .port
        .or_else(|| env("REDIS_PORT").and_then(|v| v.parse().ok()))
        .unwrap_or(6379);
    let password = parts
        .password
        .map(str::to_owned)
        .or_else(|| env("REDIS_PASSWORD"))
        .filter(|s| !s.is_empty());
    let ssl = parts
        .ssl
        .or_else(|| env("REDIS_SSL").and_then(|v| crate::config::lenient::parse_switch(&v)))
        .unwrap_or(false);
    let scheme = if ssl { "rediss" } else { "redis" };
    let db = parts.db.map(|db| format!("/{db}")).unwrap_or_default();
    Some(match password {
        Some(pw) => format!("{scheme}://:{}@{host}:{port}{db}", percent_encode(&pw)),
        None => format!("{scheme}://{host}:{port}{db}"),
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A URL with any `user:password@` removed.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(redis url)".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Option<Settings> {
        let config: Config = serde_yaml::from_str(yaml).unwrap();
        Settings::from_config(&config)
    }

    #[test]
    fn router_settings_name_the_redis_and_the_password_is_never_printed() {
        let s = settings(
            "router_settings: {redis_host: r.local, redis_port: '6380', redis_password: 'p@ss', redis_namespace: team-a, redis_timeout_ms: 250}",
        )
        .unwrap();
        assert_eq!(s.url, "redis://:p%40ss@r.local:6380");
        assert_eq!(s.location(), "redis://r.local:6380");
        assert!(!format!("{s:?}").contains("p@ss"));
        assert_eq!(s.namespace, "team-a");
        assert_eq!(s.budget, Duration::from_millis(250));
    }

    #[test]
    fn a_cache_with_ssl_connects_over_tls() {
        let s = settings(
            "litellm_settings: {cache: true, cache_params: {type: redis, host: r.cloud, port: 6380, password: pw, ssl: true}}",
        )
        .unwrap();
        assert_eq!(s.url, "rediss://:pw@r.cloud:6380");
        assert_eq!(s.location(), "rediss://r.cloud:6380");
    }

    #[test]
    fn the_caches_redis_serves_when_the_router_names_none() {
        let s = settings(
            "litellm_settings: {cache: true, cache_params: {type: redis, REDIS_URL: 'redis://c:1/2'}}",
        )
        .unwrap();
        assert_eq!(s.url, "redis://c:1/2");
        assert_eq!(s.namespace, DEFAULT_NAMESPACE);
        assert_eq!(s.budget, DEFAULT_BUDGET);
        // A cache that is off names no Redis for anyone.
        let off = "litellm_settings: {cache: false, cache_params: {type: redis, REDIS_URL: 'redis://c:1'}}";
        if std::env::var_os("REDIS_URL").is_none() && std::env::var_os("REDIS_HOST").is_none() {
            assert!(settings(off).is_none());
        }
    }
}
