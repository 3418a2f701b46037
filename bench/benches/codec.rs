//! Request parsing and the outbound body: what every plain request pays
//! before and after routing, on a realistic chat body (four messages, two
//! tools, about 1.9 KB); what a stream pays per chunk to estimate its
//! output when no usage comes, and to keep a deployment's key from its
//! client; and what a deployment with parameter rules
//! (a reasoning model, `drop_params`) pays to rewrite the body's fields;
//! and what a request pays for its prompt to be held to context windows.
//!
//! Run: `cargo bench -p conclave-bench --bench codec`.

use std::hint::black_box;

use conclave::openai::{Endpoint, ProxyRequest};
use conclave::providers::encode_outbound_body;
use conclave::router::context_window::estimated_prompt_tokens;
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
    // What `enable_pre_call_checks` adds to a request whose group has a
    // known context window: the prompt's text measured.
    group.bench_function("context_window_estimate", |b| {
        b.iter(|| {
            black_box(estimated_prompt_tokens(
                Endpoint::ChatCompletions,
                black_box(&req.rest),
            ))
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
    stream_estimate(c);
    param_rules(c, &body);
}

/// The field rules of an OpenAI reasoning model on the same body with a
/// `max_tokens` and a `temperature`: a wildcard deployment's pass over a
/// body it leaves alone (every call of such a deployment pays it), and a
/// reasoning model's copy with `max_tokens` renamed and `temperature`
/// dropped. Other deployments have no rules and pay nothing.
fn param_rules(c: &mut Criterion, body: &[u8]) {
    use conclave::openai::Endpoint;
    use conclave::providers::param_rules::ParamRules;
    let mut tree: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(t) => t,
        Err(e) => fatal(&format!("the body does not parse: {e}")),
    };
    tree.insert("max_tokens".into(), Value::from(256));
    tree.insert("temperature".into(), Value::from(0.2));
    // Raw fields are read from text, not from a tree.
    let text = Value::Object(tree).to_string();
    let req: ProxyRequest = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => fatal(&format!("the body does not parse: {e}")),
    };
    let (Some(wildcard), Some(reasoning)) = (
        ParamRules::new("*", true, None, &[], true),
        ParamRules::new("o3-mini", true, None, &[], true),
    ) else {
        fatal("the rules were not built")
    };
    let mut group = c.benchmark_group("param_rules");
    group.bench_function("wildcard_pass_unchanged", |b| {
        b.iter(|| {
            let out = wildcard.apply(
                black_box(&req.rest),
                &Map::new(),
                "gpt-4o-mini",
                Endpoint::ChatCompletions,
                false,
            );
            black_box(out.body.len())
        })
    });
    group.bench_function("reasoning_model_rewrite", |b| {
        b.iter(|| {
            let out = reasoning.apply(
                black_box(&req.rest),
                &Map::new(),
                "o3-mini",
                Endpoint::ChatCompletions,
                false,
            );
            black_box(out.body.len())
        })
    });
    group.finish();
}

/// What a stream pays per chunk so that an answer without a usage chunk
/// can still be priced: the text fields' lengths, read off the raw JSON.
fn stream_estimate(c: &mut Criterion) {
    let chunk = br#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]}"#;
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("chunk_text_estimate", |b| {
        let mut sent = conclave::ops::estimate::SentText::default();
        b.iter(|| {
            sent.add(black_box(chunk));
            black_box(sent.chunks)
        })
    });
    group.finish();
    key_redaction(c, chunk);
}

/// What a stream of a deployment with a key pays per chunk to keep the key
/// from its client: the scan of a chunk whose text cannot begin a key, and
/// the parse of one whose text ends like a key's start (`" s"` for an
/// `sk-` key), which is followed into the next chunk.
fn key_redaction(c: &mut Criterion, plain: &[u8]) {
    use std::sync::Arc;

    use bytes::Bytes;
    use conclave::providers::redact::{KeyRedactor, StreamRedactor};

    let key = conclave::config::Secret::new("sk-proj-4f9a2c7e1b8d6a3f0e5c9b2d7a4f1e8c".to_owned());
    let Some(redactor) = KeyRedactor::new(Some(&key), &Default::default(), &[]) else {
        fatal("the key is not searched for");
    };
    let redactor = Arc::new(redactor);
    let ending_like_a_key = String::from_utf8_lossy(plain).replace(" world", " this");
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    // For comparison: the search for the whole key (and for escapes that
    // may spell it), nearly all a chunk paid before pieces were followed.
    let whole = Bytes::copy_from_slice(plain);
    group.bench_function("key_redaction_whole_key_only", |b| {
        b.iter(|| black_box(redactor.payload(black_box(whole.clone())).ok()))
    });
    for (name, chunk) in [
        ("key_redaction_scan", Bytes::copy_from_slice(plain)),
        ("key_redaction_followed", Bytes::from(ending_like_a_key)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = StreamRedactor::new(redactor.clone());
                black_box(stream.payload(black_box(chunk.clone())).ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
