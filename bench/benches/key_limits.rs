//! The per-request cost of virtual-key enforcement on the response path:
//! the scopes of a key with a user and a team, the admission (budget
//! check, parallel slot, one request in each rpm window), the model-access
//! check, and the charge of the answer's tokens and cost. A request pays
//! the scopes twice (admission and charge), `admit` and `charge` once, and
//! the access check once.
//!
//! The same admission and charge with the counters shared through Redis
//! (`request_admit_and_charge_redis`, the machine's Redis at
//! 127.0.0.1:6379 or `REDIS_URL`; skipped with a printed reason when it
//! does not answer) measure what sharing adds per keyed request: one
//! round trip for the admission script, the charge riding the next
//! pipeline.
//!
//! `key_lookup` measures what resolving a presented key costs once it is
//! cached, every keyed request's case: by its hash (the registry's hit
//! alone), the same with a second thread looking keys up at once (as two
//! request workers do), and from the full key (SHA-256 and hex as well),
//! over 1,000 keys in a real SQLite store.
//!
//! Run: `cargo bench -p conclave-bench --bench key_limits`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conclave::keys::scopes as key_scopes;
use conclave::keys::{
    KeyRecord, Keys, KeysSettings, Limits, Principal, TeamRecord, UserRecord, token,
};
use conclave::limits::Limiter;
use conclave::limits::shared::SharedCounters;
use conclave::ops::admission::{AccessGroups, denied_by};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;

/// The allocator the `conclave` binary uses, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn limits(rpm: u64) -> Limits {
    Limits {
        max_budget: Some(1_000_000.0),
        budget_duration: Some("30d".into()),
        rpm_limit: Some(rpm),
        tpm_limit: Some(u64::MAX / 2),
        max_parallel_requests: Some(1_000),
        ..Limits::default()
    }
}

/// Key `i` of a team of many keys, with its user and team.
fn principal_of(i: usize) -> Arc<Principal> {
    let now = SystemTime::now();
    let reset = now + Duration::from_secs(86_400);
    Arc::new(Principal::new(
        KeyRecord {
            token_hash: format!("{i:064x}"),
            key_alias: None,
            key_name: format!("sk-...{i:04}"),
            user_id: Some(format!("user-{i}")),
            team_id: Some("team-core".into()),
            models: vec!["gpt-4o-mini".into(), "council".into()],
            aliases: BTreeMap::new(),
            limits: limits(u64::MAX / 2),
            spend: 0.0,
            model_spend: BTreeMap::new(),
            budget_reset_at: Some(reset),
            expires: None,
            blocked: false,
            metadata: serde_json::json!({}),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            allowed_routes: Vec::new(),
        },
        Some(UserRecord {
            user_id: format!("user-{i}"),
            user_role: None,
            user_email: None,
            models: Vec::new(),
            limits: limits(u64::MAX / 2),
            spend: 0.0,
            budget_reset_at: Some(reset),
            metadata: serde_json::json!({}),
            teams: vec!["team-core".into()],
            created_at: now,
            updated_at: now,
        }),
        Some(TeamRecord {
            team_id: "team-core".into(),
            team_alias: None,
            models: Vec::new(),
            limits: limits(u64::MAX / 2),
            spend: 0.0,
            budget_reset_at: Some(reset),
            blocked: false,
            members: Vec::new(),
            metadata: serde_json::json!({}),
            created_at: now,
            updated_at: now,
        }),
    ))
}

fn key_limits(c: &mut Criterion) {
    let keys: Vec<Arc<Principal>> = (0..1000).map(principal_of).collect();
    let limiter = Limiter::new();
    let groups = AccessGroups::default();
    let mut group = c.benchmark_group("key_limits");
    let mut i = 0usize;
    group.bench_function("scopes", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(key_scopes::scopes(&keys[i], "gpt-4o-mini"))
        })
    });
    group.bench_function("model_access", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(denied_by(&keys[i], "gpt-4o-mini", &groups))
        })
    });
    group.bench_function("request_admit_and_charge", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let p = &keys[i];
            let scopes = key_scopes::scopes(p, "gpt-4o-mini");
            // The in-memory admission never waits: its future is ready.
            let admitted = limiter.admit(&scopes, true).now_or_never();
            let scopes = key_scopes::scopes(p, "gpt-4o-mini");
            limiter.charge(&scopes, 15, 0.000_004_5);
            black_box(admitted.is_some_and(|a| a.is_ok()))
        })
    });
    if let Some((runtime, shared)) = shared_limiter() {
        let keys = &keys;
        let shared = &shared;
        group.bench_function("request_admit_and_charge_redis", |b| {
            let mut i = 0usize;
            b.to_async(&runtime).iter(|| {
                i = (i + 1) % keys.len();
                let p = keys[i].clone();
                async move {
                    let scopes = key_scopes::scopes(&p, "gpt-4o-mini");
                    let admitted = shared.admit(&scopes, true).await;
                    shared.charge(&scopes, 15, 0.000_004_5);
                    black_box(admitted.is_ok())
                }
            })
        });
    }
    group.finish();
}

/// A limiter sharing its counters through the machine's Redis, under a
/// namespace of its own, with the runtime it runs on.
fn shared_limiter() -> Option<(tokio::runtime::Runtime, Limiter)> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ok()?;
    let settings = conclave::cluster::Settings {
        url,
        namespace: format!("conclave-bench-{}", std::process::id()),
        budget: Duration::from_secs(1),
        source: "the benchmark",
    };
    let limiter = runtime.block_on(async {
        let cluster = conclave::cluster::Cluster::start(settings).await.ok()?;
        let limiter = Limiter::shared(SharedCounters::of(&cluster));
        // Only a limiter that reached Redis measures Redis.
        let first = principal_of(0);
        let probe = key_scopes::scopes(&first, "gpt-4o-mini");
        let reached = cluster.answers().await;
        (reached && limiter.admit(&probe, false).await.is_ok()).then_some(limiter)
    });
    if limiter.is_none() {
        eprintln!("SKIPPED request_admit_and_charge_redis: Redis does not answer");
    }
    Some((runtime, limiter?))
}

fn key_lookup(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("SKIPPED key_lookup: no runtime");
        return;
    };
    let dir = std::env::temp_dir().join(format!("conclave-bench-lookup-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let url = format!("sqlite://{}?mode=rwc", dir.join("keys.db").display());
    let presented: Vec<String> = (0..1000)
        .map(|i| format!("sk-bench-lookup-{i:04}"))
        .collect();
    let template = principal_of(0).key.clone();
    let opened = runtime.block_on(async {
        let keys = Keys::open(KeysSettings::new(url)).await?;
        for key in &presented {
            let record = KeyRecord {
                token_hash: token::hash(key),
                ..template.clone()
            };
            keys.store().insert_key(&record).await?;
            keys.resolve(key).await?;
        }
        Ok::<_, conclave::keys::KeyError>(keys)
    });
    let keys = match opened {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("SKIPPED key_lookup: the store did not open: {e}");
            return;
        }
    };
    let hashes: Vec<String> = presented.iter().map(|k| token::hash(k)).collect();
    // Whether the `i`-th key was found in the cache, without waiting.
    let found_by_hash = |i: usize| {
        let found = keys.resolve_hash(&hashes[i % hashes.len()]).now_or_never();
        found.is_some_and(|r| r.is_ok_and(|p| p.is_some()))
    };
    let mut group = c.benchmark_group("key_lookup");
    let mut i = 0usize;
    group.bench_function("cached_by_hash", |b| {
        b.iter(|| {
            i += 1;
            black_box(found_by_hash(i))
        })
    });
    group.bench_function("cached_presented_key", |b| {
        b.iter(|| {
            i = (i + 1) % presented.len();
            let found = keys.resolve(&presented[i]).now_or_never();
            black_box(found.is_some_and(|r| r.is_ok_and(|p| p.is_some())))
        })
    });
    // Two request workers look keys up at once on a gateway: the same
    // lookups with another thread making them too, over the same cache.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut j = 500usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                j += 1;
                black_box(found_by_hash(j));
            }
        });
        group.bench_function("cached_by_hash_beside_another_thread", |b| {
            b.iter(|| {
                i += 1;
                black_box(found_by_hash(i))
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    group.finish();
    drop(keys);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, key_limits, key_lookup);
criterion_main!(benches);
