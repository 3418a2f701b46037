//! Request parsing and the outbound body: what every plain request pays
//! before and after routing, on a realistic chat body (four messages, two
//! tools, about 1.9 KB).
//!
//! Run: `cargo bench -p conclave-bench --bench codec`.

use std::hint::black_box;

use conclave::openai::ProxyRequest;
use conclave::providers::encode_outbound_body;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};

/// The allocator the `conclave` binary uses, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fatal(message: &str) -> ! {
    eprintln!("codec bench: {message}");
    std::process::exit(1)
}

fn codec(c: &mut Criterion) {
    let body = conclave_bench::body::chat_body("gpt-4o-mini", false).into_bytes();
    let req: ProxyRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => fatal(&format!("the body does not parse: {e}")),
    };
    let defaults = Map::<String, Value>::new();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_proxy_request", |b| {
        b.iter(|| {
            let r: Result<ProxyRequest, _> = serde_json::from_slice(black_box(&body));
            black_box(r.map(|r| r.rest.len()).unwrap_or(0))
        })
    });
    // For comparison: the same bytes built into a JSON tree, as a gateway that
    // parses every field would.
    group.bench_function("parse_json_map_reference", |b| {
        b.iter(|| {
            let r: Result<Map<String, Value>, _> = serde_json::from_slice(black_box(&body));
            black_box(r.map(|m| m.len()).unwrap_or(0))
        })
    });
    group.bench_function("encode_outbound_body", |b| {
        b.iter(|| {
            let out = encode_outbound_body(
                black_box("gpt-4o-mini-2024-07-18"),
                false,
                black_box(&req.rest),
                &defaults,
                false,
            );
            black_box(out.map(|v| v.len()).unwrap_or(0))
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
