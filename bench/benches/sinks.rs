//! The per-outcome cost of the observability sinks, paid on the outcome
//! dispatcher thread (never on the response path): the metrics update, the
//! access log line (formatted as JSON into a discarding writer), a text
//! request log file, and the dashboard's ring of recent requests and time
//! buckets (full, so every record also drops the oldest entry).
//!
//! Run: `cargo bench -p conclave-bench --bench sinks`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use conclave::observe::metrics::{Metrics, Resolved};
use conclave::observe::request_log::{Format, Settings, Writer};
use conclave::ops::sinks::AccessLog;
use conclave::ops::{CacheStatus, Caller, Outcome, OutcomeKind, OutcomeSink, RequestId};
use criterion::{Criterion, criterion_group, criterion_main};

/// The allocator the `conclave` binary uses, so the numbers are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn outcome() -> Outcome {
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
    Outcome {
        kind: OutcomeKind::Request,
        request_id: RequestId::generate(),
        parent_request_id: None,
        caller: Caller::Master,
        tags: None,
        end_user: None,
        route: Arc::from("/v1/chat/completions"),
        model: "gpt-4o-mini".into(),
        model_group: Some("gpt-4o-mini".into()),
        deployment: Some("gpt-4o-mini.0".into()),
        profile: None,
        stream: false,
        status: 200,
        error: None,
        usage: None,
        response_model: None,
        response_id: None,
        answer_read: false,
        cost: None,
        budget_model: None,
        started_at: SystemTime::now(),
        latency: Duration::from_millis(420),
        time_to_first_token: Some(Duration::from_millis(420)),
        attempts: 1,
        upstream_time: Some(Duration::from_millis(419)),
        overhead: Some(Duration::from_micros(180)),
        fallback: None,
        cache: CacheStatus::None,
        body: vec![Bytes::from_static(body)],
        body_is_json: true,
        composite: None,
        trace: None,
        logged: None,
    }
}

fn sinks(c: &mut Criterion) {
    let o = outcome();
    let mut group = c.benchmark_group("sinks");
    let metrics = Metrics::new();
    group.bench_function("metrics_record", |b| {
        b.iter(|| {
            metrics.record(black_box(&Resolved {
                outcome: &o,
                model_group: o.model_group.as_deref(),
                provider: "openai",
                response_model: Some("gpt-4o-mini"),
            }))
        })
    });
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("access_log_json", |b| {
            b.iter(|| AccessLog.record(black_box(&o)))
        });
    });
    let dashboard = conclave::dashboard::Dashboard::new(1000, false);
    for _ in 0..1000 {
        dashboard.record(&o);
    }
    group.bench_function("dashboard_record", |b| {
        b.iter(|| dashboard.record(black_box(&o)))
    });
    let dir = std::env::temp_dir().join(format!("conclave-bench-sinks-{}", std::process::id()));
    let writer = Writer::open(Settings {
        dir: dir.clone(),
        format: Format::Text,
        max_files: 1000,
        max_bytes: 64 * 1024 * 1024,
    });
    if let Ok(mut writer) = writer {
        group.bench_function("request_log_text_file", |b| {
            b.iter(|| {
                let mut o = o.clone();
                o.request_id = RequestId::generate();
                writer.record(black_box(&o));
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, sinks);
criterion_main!(benches);
