//! The outside services some tests need: PostgreSQL and Redis. A test asks
//! for one and gets a fresh, private place in it (its own database, its own
//! key prefix), or `None` when the service is not reachable here — printed
//! with the reason, so a skipped test is never silent. Under `CI=true` an
//! unreachable service fails the test instead: CI machines must have them.

use std::time::Duration;

/// Where the machine's PostgreSQL is when `DATABASE_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Where the machine's Redis is when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A Redis server a test may use, and the key prefix that is its own.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub url: String,
    /// Unique per call: every key the test (or the gateway under test)
    /// writes should start with it.
    pub prefix: String,
}

/// Whether the run is CI, where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing service: a skip with its reason, or a failure under CI.
pub fn unavailable(test: &str, reason: &str) {
    assert!(!in_ci(), "{test}: {reason} (required when CI=true)");
    eprintln!("SKIPPED {test}: {reason}");
}

/// The Redis to use, with a fresh key prefix; `None` (after printing why)
/// when it cannot be reached.
pub async fn redis(test: &str) -> Option<RedisTarget> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into());
    let Some(addr) = host_port(&url, 6379) else {
        unavailable(test, &format!("REDIS_URL {url:?} has no host"));
        return None;
    };
    if let Err(reason) = reachable(&addr).await {
        unavailable(test, &format!("Redis at {addr} is not reachable: {reason}"));
        return None;
    }
    let prefix = format!("conclave-test-{test}-{:016x}", fastrand_u64());
    Some(RedisTarget { url, prefix })
}

/// A new, empty PostgreSQL database for this test; its URL, or `None`
/// (after printing why) when PostgreSQL cannot be reached or `psql` is
/// missing.
pub async fn postgres_database(test: &str) -> Option<String> {
    let base = postgres_server(test).await?;
    let name = format!("conclave_test_{:016x}", fastrand_u64());
    let created = tokio::process::Command::new("psql")
        .arg(&base)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .await;
    match created {
        Ok(out) if out.status.success() => Some(with_database(&base, &name)),
        Ok(out) => {
            unavailable(
                test,
                &format!(
                    "cannot create a database: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            );
            None
        }
        Err(e) => {
            unavailable(test, &format!("cannot run psql: {e}"));
            None
        }
    }
}

/// The URL of a PostgreSQL database that does not exist yet (a new name on
/// the test server), or `None` (after printing why) when PostgreSQL cannot
/// be reached.
pub async fn missing_postgres_database(test: &str) -> Option<String> {
    let base = postgres_server(test).await?;
    Some(with_database(
        &base,
        &format!("conclave_test_new_{:016x}", fastrand_u64()),
    ))
}

/// The test server's URL (`DATABASE_URL`, else the machine's own), or
/// `None` (after printing why) when it cannot be reached.
async fn postgres_server(test: &str) -> Option<String> {
    let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let Some(addr) = host_port(&base, 5432) else {
        unavailable(test, &format!("DATABASE_URL {base:?} has no host"));
        return None;
    };
    if let Err(reason) = reachable(&addr).await {
        unavailable(
            test,
            &format!("PostgreSQL at {addr} is not reachable: {reason}"),
        );
        return None;
    }
    Some(base)
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(h, q)| (h, Some(q)));
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// `host:port` of a service URL (`scheme://[user[:pass]@]host[:port][/...]`).
fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some(host_port.to_string())
    } else {
        Some(format!("{host_port}:{default_port}"))
    }
}

async fn reachable(addr: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_are_split_into_host_and_port() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/test", 5432).as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            host_port("redis://:secret@localhost", 6379).as_deref(),
            Some("localhost:6379")
        );
        assert_eq!(host_port("redis://", 6379), None);
    }

    #[test]
    fn a_database_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
