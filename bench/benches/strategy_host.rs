//! The strategy host in-process: a composite request through
//! `StrategyHost::execute` (fresh store from the pre-instantiated component,
//! the guest's run, host calls through the router, the answer) against a
//! plain `Router::route` to the same in-process `mock/` deployment with zero
//! latency, so the difference is what the host adds. No network.
//!
//! Run: `cargo bench -p conclave-bench --bench strategy_host`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use conclave::config::{Env, load_str};
use conclave::gateway::Gateway;
use conclave::openai::{Endpoint, ProxyRequest};
use conclave::ops::{CallContext, Caller, OutcomeHandle};
use conclave::router::{RouteRequest, SystemClock};
use conclave::strategy::{LoadedProfile, SharedEngine};
use criterion::{Criterion, criterion_group, criterion_main};

/// The allocator the `conclave` binary uses, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
model_list:
  - model_name: bench-mock
    litellm_params:
      model: mock/bench
      mock_response: "Designing Data-Intensive Applications (cat. 4471) is in stock."
  - model_name: bench-passthrough
    litellm_params:
      model: composite/profile/bench_passthrough
  - model_name: bench-moa
    litellm_params:
      model: composite/profile/bench_moa
general_settings:
  composite_llm:
    profiles:
      bench_passthrough:
        strategy: passthrough
        topology: {model: bench-mock}
      bench_moa:
        strategy: moa
        topology:
          aggregator: {model: bench-mock}
          proposers: [{model: bench-mock}, {model: bench-mock}, {model: bench-mock}]
"#;

struct Fixture {
    gateway: Gateway,
    plain: ProxyRequest,
    passthrough: (Arc<LoadedProfile>, ProxyRequest),
    moa: (Arc<LoadedProfile>, ProxyRequest),
}

fn request(model: &str) -> Result<ProxyRequest, String> {
    serde_json::from_str(&conclave_bench::body::chat_body(model, false)).map_err(|e| e.to_string())
}

async fn fixture() -> Result<Fixture, String> {
    let loaded =
        load_str(CONFIG, Path::new("bench.yaml"), Env::default()).map_err(|e| e.to_string())?;
    let client = conclave::server::http_client(&Default::default())?;
    let engine = SharedEngine::new(None);
    let (gateway, _warnings) =
        Gateway::build(&loaded, client, Arc::new(SystemClock), &engine, None)
            .await
            .map_err(|e| e.to_string())?;
    let profile = |name: &str| {
        gateway
            .strategies
            .profile_for(name)
            .cloned()
            .ok_or_else(|| format!("{name} is not a composite model"))
    };
    let passthrough = (profile("bench-passthrough")?, request("bench-passthrough")?);
    let moa = (profile("bench-moa")?, request("bench-moa")?);
    Ok(Fixture {
        plain: request("bench-mock")?,
        passthrough,
        moa,
        gateway,
    })
}

async fn route(f: &Fixture) -> usize {
    let routed = f
        .gateway
        .router
        .route(RouteRequest {
            endpoint: Endpoint::ChatCompletions,
            model: &f.plain.model,
            stream: false,
            body: &f.plain.rest,
            fallbacks: None,
            disable_fallbacks: false,
            may_fall_back_to: None,
            limits: Default::default(),
            ctx: &CallContext::detached(Caller::Master, "bench"),
        })
        .await;
    match routed {
        Ok(r) => match r.reply {
            conclave::providers::UpstreamReply::Json(b) => b.len(),
            conclave::providers::UpstreamReply::Stream(_) => 0,
        },
        Err(e) => fatal(&format!("plain route failed: {e}")),
    }
}

async fn composite(f: &Fixture, which: &(Arc<LoadedProfile>, ProxyRequest)) -> usize {
    let (profile, req) = which;
    let ctx = CallContext::detached(Caller::Master, "bench");
    match f
        .gateway
        .strategies
        .execute_answer(
            profile,
            &req.model,
            req,
            &ctx,
            &OutcomeHandle::request(&ctx),
        )
        .await
    {
        Ok(answer) => answer.body.len(),
        Err(e) => fatal(&format!("composite request failed: {e}")),
    }
}

fn fatal(message: &str) -> ! {
    eprintln!("strategy_host bench: {message}");
    std::process::exit(1)
}

fn strategy_host(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&format!("no runtime: {e}")),
    };
    let f = match rt.block_on(fixture()) {
        Ok(f) => f,
        Err(e) => fatal(&format!("cannot build the gateway: {e}")),
    };
    let mut group = c.benchmark_group("strategy_host");
    group.bench_function("route_plain", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(route(&f).await) })
    });
    group.bench_function("passthrough", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(composite(&f, &f.passthrough).await) })
    });
    group.bench_function("moa_3_proposers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(composite(&f, &f.moa).await) })
    });
    group.finish();
}

criterion_group!(benches, strategy_host);
criterion_main!(benches);
