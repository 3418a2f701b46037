//! The in-memory cache stays within `max_size_mb` under a flood of distinct
//! large answers: measured as the entries' bytes and as the process's
//! resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployments};
use serde_json::{Value, json};

const GROUP: &str = "gpt-flood";
const MAX_MB: u64 = 8;
/// Distinct answers of about 200 KB each: 150 MB offered to an 8 MB cache,
/// so a cache that kept what it is offered would grow far past the
/// allocator's slack.
const ANSWERS: usize = 750;
const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn the_memory_cache_stays_within_max_size_mb_under_a_flood_of_large_answers() {
    let up = FakeUpstream::start().await;
    up.set(GROUP, Behavior::ok(&"cached words ".repeat(15_500)));
    let proxy = Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n  \
         cache_params: {{max_size_mb: {MAX_MB}, max_entry_kb: 1024}}\n\
         general_settings:\n  admin_without_key_on_loopback: true\n",
        deployments(&up, &[(GROUP, &[])])
    ))
    .await;
    let ask = |prompt: String, store: bool| {
        let mut body = chat_body(GROUP, &prompt);
        if !store {
            body["cache"] = json!({"no-store": true});
        }
        proxy
            .client
            .post(proxy.url("/v1/chat/completions"))
            .json(&body)
            .send()
    };
    // The same traffic without storing: what serving such answers costs.
    for i in 0..40 {
        let r = ask(format!("warm-up {i}"), false).await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let baseline = proxy.rss_bytes();
    let started = Instant::now();
    let mut offered = 0u64;
    for i in 0..ANSWERS {
        let r = ask(format!("question number {i}"), true).await.unwrap();
        assert_eq!(r.status(), 200);
        offered += r.bytes().await.unwrap().len() as u64;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "flood too slow"
        );
    }
    assert!(offered > 140 * MIB, "the flood offered {offered} bytes");
    let ping: Value = proxy
        .client
        .get(proxy.url("/cache/ping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let held = ping["bytes"].as_u64().unwrap();
    assert!(held <= MAX_MB * MIB, "entries hold {held} bytes: {ping}");
    assert!(held > MAX_MB * MIB / 2, "the cache is in use: {ping}");
    let grown = proxy.rss_bytes().saturating_sub(baseline);
    println!(
        "offered {} MiB; cache holds {} MiB; RSS grew {} MiB (baseline {} MiB, peak {} MiB)",
        offered / MIB,
        held / MIB,
        grown / MIB,
        baseline / MIB,
        proxy.peak_rss_bytes() / MIB
    );
    // The cache's bytes plus allocator slack (answers in flight on several
    // threads, each allocator heap keeping some of what it freed), far below
    // what was offered.
    assert!(
        grown < MAX_MB * MIB + 32 * MIB,
        "RSS grew {} MiB for a {MAX_MB} MiB cache",
        grown / MIB
    );
}
