//! The "team" scenario: a gateway shared through virtual keys. conclave runs
//! with a master key and its key store (SQLite beside the config), 1,000
//! keys each with an rpm limit, and priced deployments, so every request is
//! resolved to its key, admitted against its limit, charged, and written to
//! the spend log. The load spreads over all the keys ([`crate::keyed`]).
//!
//! Compared in the same run, with the same generator: the mock directly
//! (for the overhead; each team's fixed-rate load alternates with it), the benchmark config without keys, the team on
//! SQLite, and the team with Redis shared counters as well (when a Redis
//! answers on the machine's port). The key store's statement counter
//! (`/metrics`) before and after saturation gives statements per request.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::body::chat_body;
use crate::features::{FEATURE_RATE, REDIS_ADDR, write_variant};
use crate::keyed::{self, KeyedLoad};
use crate::oha::LoadResult;
use crate::procs::Server;
use crate::suite::{
    FIXED_RATE_CONNECTIONS, SATURATION_CONNECTIONS, Setup, measured, merge_loads, paired,
    start_conclave_with,
};
use crate::{Result, fail};

/// Virtual keys the load spreads over.
pub const TEAM_KEYS: usize = 1000;
/// Each key's limit: enforced on every request, never reached by the load.
const RPM_LIMIT: u64 = 1_000_000;
const MASTER_KEY: &str = "sk-bench-master";
/// Key creations in flight at once while the team is set up.
const CREATE_CONCURRENCY: usize = 8;
/// Cycles of no keys, keys, keys, no keys in the saturation comparison. On
/// two shared cores one six-second phase pair moves the ratio by about
/// ±0.07 from run to run (two identical gateways compared so read 0.90 to
/// 1.07); three cycles in a run average out most of the stalls that a
/// single one catches, at 48 s more a storage set-up.
const SATURATION_CYCLES: usize = 3;

/// A load at 1000 req/s and at saturation, as the keyed generator measured it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyedLoads {
    /// Requests of the warm-up before the measured phases.
    pub warmup_requests: f64,
    pub at_rate: LoadResult,
    pub saturation: LoadResult,
    pub cpu_us_per_request: f64,
}

/// The team on one storage set-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeamRun {
    pub loads: KeyedLoads,
    /// p99 at 1000 req/s over the direct p99 of the same generator,
    /// measured beside it (direct, team, team, direct) so that the
    /// machine's drift between phases minutes apart does not count (ms).
    pub overhead_p99_ms: f64,
    pub overhead_p50_ms: f64,
    /// The direct loads at 1000 req/s paired with this run's (merged).
    #[serde(default)]
    pub paired_direct_at_rate: LoadResult,
    /// Saturation over that of the no-keys conclave, measured beside it
    /// ([`SATURATION_CYCLES`] cycles of no keys, keys, keys, no keys; see
    /// [`paired`]).
    pub saturation_over_no_keys: f64,
    /// The same ratio in each cycle, in the order measured.
    #[serde(default)]
    pub saturation_cycle_ratios: Vec<f64>,
    /// The no-keys conclave's saturation in those phases (req/s).
    #[serde(default)]
    pub paired_no_keys_rps: f64,
    /// The no-keys conclave's CPU per request in those phases (µs): beside
    /// [`KeyedLoads::cpu_us_per_request`], what a keyed request costs the
    /// gateway, which the throughput ratio shows only through the noise of
    /// a machine shared with the generator.
    #[serde(default)]
    pub paired_no_keys_cpu_us: f64,
    /// Key store statements per request over the warm-up and both measured
    /// phases (read from `/metrics` before and after them).
    pub store_statements_per_request: f64,
}

/// The whole scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Team {
    pub keys: usize,
    /// The mock directly at 1000 req/s.
    pub direct_at_rate: LoadResult,
    /// The benchmark config, no master key and no keys.
    pub no_keys: KeyedLoads,
    pub sqlite: TeamRun,
    /// With `router_settings.redis_url` as well; `None` without a Redis.
    pub redis: Option<TeamRun>,
}

/// Runs the scenario.
pub fn run(setup: &Setup, say: &dyn Fn(&str)) -> Result<Team> {
    let keys = Arc::new(Vec::new());
    say("team: the mock directly, 1000 req/s (keyed generator)");
    let direct_at_rate = keyed::run(load(setup, setup.mock.addr(), &keys, Some(FEATURE_RATE)))?;
    say("team: no keys (keyed generator)");
    let (plain, _) = start_conclave_with(setup, &setup.config, "team-no-keys")?;
    let no_keys = loads(setup, &plain, &keys)?;
    let plain = (&plain, &keys);
    say("team: 1000 keys, SQLite");
    let sqlite = team_run(setup, "team-sqlite", "", plain)?;
    let redis = if TcpStream::connect(REDIS_ADDR).is_ok() {
        say("team: 1000 keys, SQLite and Redis shared counters");
        let extra = format!("router_settings:\n  redis_url: redis://{REDIS_ADDR}\n");
        Some(team_run(setup, "team-redis", &extra, plain)?)
    } else {
        eprintln!("bench: no Redis on {REDIS_ADDR}: the team scenario with Redis is skipped");
        None
    };
    Ok(Team {
        keys: TEAM_KEYS,
        direct_at_rate,
        no_keys,
        sqlite,
        redis,
    })
}

fn load(
    setup: &Setup,
    addr: SocketAddr,
    keys: &Arc<Vec<HeaderValue>>,
    rate: Option<f64>,
) -> KeyedLoad {
    KeyedLoad {
        addr,
        path: "/v1/chat/completions",
        body: Bytes::from(chat_body("bench", false)),
        keys: keys.clone(),
        connections: if rate.is_some() {
            FIXED_RATE_CONNECTIONS
        } else {
            SATURATION_CONNECTIONS
        },
        duration: setup.plan.phase,
        rate,
        threads: setup.oha.threads,
    }
}

/// A warm-up, 1000 req/s, then saturation (with the server's CPU time).
fn loads(setup: &Setup, server: &Server, keys: &Arc<Vec<HeaderValue>>) -> Result<KeyedLoads> {
    let (warmup_requests, at_rate) = warm_up_and_rate(setup, server, keys)?;
    let saturation = measured(setup, server, saturate(setup, server, keys))?;
    Ok(KeyedLoads {
        warmup_requests,
        at_rate,
        cpu_us_per_request: saturation.server_us,
        saturation: saturation.load,
    })
}

/// A warm-up (its request count) and the load at 1000 req/s.
fn warm_up_and_rate(
    setup: &Setup,
    server: &Server,
    keys: &Arc<Vec<HeaderValue>>,
) -> Result<(f64, LoadResult)> {
    let warmup_requests = warm_up(setup, server, keys)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let at_rate = keyed::run(load(setup, addr, keys, Some(FEATURE_RATE)))?;
    Ok((warmup_requests, at_rate))
}

/// A short saturation load before measuring; its request count.
fn warm_up(setup: &Setup, server: &Server, keys: &Arc<Vec<HeaderValue>>) -> Result<f64> {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut warmup = load(setup, addr, keys, None);
    warmup.duration = setup.plan.warmup;
    Ok(keyed::run(warmup)?.requests)
}

/// One saturation load of `server` over `keys`, as many times as it is called.
fn saturate<'a>(
    setup: &'a Setup,
    server: &Server,
    keys: &'a Arc<Vec<HeaderValue>>,
) -> impl Fn() -> Result<LoadResult> + 'a {
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    move || keyed::run(load(setup, addr, keys, None))
}

/// Starts a team gateway (`extra` appended to its config), makes the keys,
/// and measures it.
fn team_run(
    setup: &Setup,
    name: &str,
    extra: &str,
    (plain, no_keys): (&Server, &Arc<Vec<HeaderValue>>),
) -> Result<TeamRun> {
    let db = setup.work.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let mut file = db.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
    let yaml = format!(
        "  master_key: {MASTER_KEY}\n  database_url: sqlite://{}\n{extra}",
        db.display()
    );
    let config = write_variant(setup, name, &yaml)?;
    let priced = std::fs::read_to_string(&config)?.replacen(
        "      api_key: sk-bench\n",
        "      api_key: sk-bench\n      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002\n",
        1,
    );
    std::fs::write(&config, priced)?;
    let (server, _) = start_conclave_with(setup, &config, name)?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keys = Arc::new(rt.block_on(make_keys(&base))?);
    let statements_before = rt.block_on(store_statements(&base))?;
    warm_up(setup, plain, no_keys)?;
    let warmup_requests = warm_up(setup, &server, &keys)?;
    let team_addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let (direct, at_rate) = paired_at_rate(
        &|| {
            keyed::run(load(
                setup,
                setup.mock.addr(),
                &Arc::new(Vec::new()),
                Some(FEATURE_RATE),
            ))
        },
        &|| keyed::run(load(setup, team_addr, &keys, Some(FEATURE_RATE))),
    )?;
    let pair = paired(
        setup,
        (plain, &saturate(setup, plain, no_keys)),
        (&server, &saturate(setup, &server, &keys)),
        SATURATION_CYCLES,
    )?;
    let saturation_over_no_keys = pair.b_over_a();
    let loads = KeyedLoads {
        warmup_requests,
        at_rate,
        cpu_us_per_request: pair.b.server_us,
        saturation: pair.b.load,
    };
    // The spend writer writes at least every second: let the last batch land.
    std::thread::sleep(Duration::from_secs(2));
    let statements = rt.block_on(store_statements(&base))? - statements_before;
    let measured = loads.warmup_requests + loads.at_rate.requests + loads.saturation.requests;
    Ok(TeamRun {
        overhead_p99_ms: loads.at_rate.p99_ms - direct.p99_ms,
        overhead_p50_ms: loads.at_rate.p50_ms - direct.p50_ms,
        paired_direct_at_rate: direct,
        saturation_over_no_keys,
        saturation_cycle_ratios: pair.cycle_ratios,
        paired_no_keys_rps: pair.a.load.rps,
        paired_no_keys_cpu_us: pair.a.server_us,
        store_statements_per_request: if measured > 0.0 {
            statements / measured
        } else {
            f64::NAN
        },
        loads,
    })
}

/// Two fixed-rate loads in the order A, B, B, A, each side's two merged
/// (percentiles averaged), as [`crate::suite::paired`] does for saturation.
fn paired_at_rate(
    a: &dyn Fn() -> Result<LoadResult>,
    b: &dyn Fn() -> Result<LoadResult>,
) -> Result<(LoadResult, LoadResult)> {
    let (a1, b1, b2, a2) = (a()?, b()?, b()?, a()?);
    Ok((merge_loads(&[&a1, &a2]), merge_loads(&[&b1, &b2])))
}

/// Makes [`TEAM_KEYS`] keys through `/key/generate`; their `Authorization`
/// values.
async fn make_keys(base: &str) -> Result<Vec<HeaderValue>> {
    let client = reqwest::Client::new();
    let mut keys = Vec::with_capacity(TEAM_KEYS);
    for wave in 0..TEAM_KEYS.div_ceil(CREATE_CONCURRENCY) {
        let made = (0..CREATE_CONCURRENCY)
            .map(|i| wave * CREATE_CONCURRENCY + i)
            .filter(|n| *n < TEAM_KEYS)
            .map(|n| generate(&client, base, n));
        for key in futures_util::future::join_all(made).await {
            keys.push(HeaderValue::from_str(&format!("Bearer {}", key?))?);
        }
    }
    Ok(keys)
}

async fn generate(client: &reqwest::Client, base: &str, n: usize) -> Result<String> {
    let answer: Value = client
        .post(format!("{base}/key/generate"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"key_alias": format!("bench-member-{n}"), "rpm_limit": RPM_LIMIT}))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| fail(format!("/key/generate answered without a key: {answer}")))
}

/// `conclave_key_store_statements_total`, read from `/metrics`.
async fn store_statements(base: &str) -> Result<f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(MASTER_KEY)
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("conclave_key_store_statements_total "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| fail("/metrics has no conclave_key_store_statements_total"))
}
