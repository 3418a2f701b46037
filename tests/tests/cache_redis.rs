//! The Redis backend of the response cache: instances sharing one Redis
//! share hits, and a Redis that goes away turns lookups into misses within
//! the budget (never an error) until it is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployments, services};

const GROUP: &str = "gpt-redis-cache";

fn config(up: &FakeUpstream, url: &str, namespace: &str) -> String {
    format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n  \
         cache_params:\n    type: redis\n    REDIS_URL: {url}\n    namespace: {namespace}\n    ttl: 600\n",
        deployments(up, &[(GROUP, &[])])
    )
}

fn cache_of(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("x-conclave-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asks `proxy` until the answer is a hit (Redis writes are asynchronous
/// and the connection is made in the background), at most `limit`.
async fn until_hit(proxy: &Proxy, prompt: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        let (status, headers, body) = proxy.chat(&chat_body(GROUP, prompt)).await;
        assert_eq!(status, 200, "{body}");
        if cache_of(&headers) == "hit" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn two_instances_sharing_redis_share_hits() {
    let Some(redis) = services::redis("two_instances_sharing_redis_share_hits").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("shared through redis"));
    let yaml = config(&up, &redis.url, &redis.prefix);
    let a = Proxy::start(&yaml).await;
    let b = Proxy::start(&yaml).await;
    // Both instances connected (a hit proves a write and a read went through).
    for (name, proxy) in [("a", &a), ("b", &b)] {
        assert!(
            until_hit(proxy, &format!("warm-up {name}"), Duration::from_secs(10)).await,
            "instance {name} never hit its own entry: {}",
            proxy.logs()
        );
    }
    let before = up.calls(GROUP);
    // Stored through a, read through b.
    let (_, headers, first) = a.chat(&chat_body(GROUP, "one question")).await;
    assert_eq!(cache_of(&headers), "stored");
    // The write is asynchronous; it lands within milliseconds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, headers, second) = b.chat(&chat_body(GROUP, "one question")).await;
    assert_eq!(cache_of(&headers), "hit");
    assert_eq!(up.calls(GROUP), before + 1, "b answered from a's entry");
    assert_eq!(headers["x-conclave-cache-key"].to_str().unwrap().len(), 64);
    assert_eq!(second["choices"], first["choices"]);
}

#[tokio::test]
async fn a_new_instance_hits_on_its_first_request_and_a_down_redis_stores_nothing() {
    let Some(redis) = services::redis("a_new_instance_hits_on_its_first_request").await else {
        return;
    };
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("kept in redis"));
    let yaml = config(&up, &redis.url, &redis.prefix);
    let first = Proxy::start(&yaml).await;
    assert!(
        until_hit(&first, "asked before", Duration::from_secs(10)).await,
        "{}",
        first.logs()
    );
    drop(first);
    // A new instance (a restart): its very first request finds the entry.
    let calls = up.calls(GROUP);
    let second = Proxy::start(&yaml).await;
    let (status, headers, body) = second.chat(&chat_body(GROUP, "asked before")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_of(&headers), "hit", "{}", second.logs());
    assert_eq!(up.calls(GROUP), calls);

    // Nothing listens on this port: nothing can be stored, and no answer
    // says it was.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = Proxy::start(&config(&up, &format!("redis://127.0.0.1:{port}"), "down")).await;
    for _ in 0..2 {
        let (status, headers, body) = down.chat(&chat_body(GROUP, "no redis")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(cache_of(&headers), "miss");
    }
}

/// A private `redis-server` on an ephemeral port, killed on drop.
struct OwnRedis {
    child: Option<tokio::process::Child>,
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    async fn start(test: &str, port: Option<u16>, dir: Option<PathBuf>) -> Option<Self> {
        let Ok(binary) = which("redis-server") else {
            services::unavailable(test, "redis-server is not installed");
            return None;
        };
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        };
        let dir = dir.unwrap_or_else(|| {
            let d =
                std::env::temp_dir().join(format!("conclave-redis-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            d
        });
        let child = tokio::process::Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            child: Some(child),
            port,
            dir,
        })
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
            let _ = child.wait().await;
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[tokio::test]
async fn a_redis_outage_is_a_miss_within_the_budget_and_hits_resume_when_it_is_back() {
    const TEST: &str = "a_redis_outage_is_a_miss_within_the_budget";
    let Some(mut redis) = OwnRedis::start(TEST, None, None).await else {
        return;
    };
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok("survives redis"));
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let proxy = Proxy::start(&config(&up, &url, "outage")).await;
    assert!(
        until_hit(&proxy, "before", Duration::from_secs(10)).await,
        "{}",
        proxy.logs()
    );

    redis.stop().await;
    let calls = up.calls(GROUP);
    for i in 0..5 {
        let started = Instant::now();
        let (status, headers, body) = proxy.chat(&chat_body(GROUP, "before")).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert_ne!(cache_of(&headers), "hit", "request {i}");
        // The fake answers at once: the time is the gateway's plus the
        // lookup budget (20 ms); a stalled lookup would show here.
        assert!(
            took < Duration::from_millis(500),
            "request {i} took {took:?}"
        );
    }
    assert_eq!(
        up.calls(GROUP),
        calls + 5,
        "every request during the outage was a miss"
    );

    let port = redis.port;
    let dir = redis.dir.clone();
    let _back = OwnRedis::start(TEST, Some(port), Some(dir)).await.unwrap();
    assert!(
        until_hit(&proxy, "after", Duration::from_secs(20)).await,
        "hits did not resume: {}",
        proxy.logs()
    );
    assert!(
        proxy.logs().contains("redis cache"),
        "the outage was logged: {}",
        proxy.logs()
    );
}
