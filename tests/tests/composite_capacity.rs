//! Composite runs are bounded by the strategy engine's instance pool (256).
//! A burst past it queues for a bounded time and is then refused with 503
//! and `Retry-After` — never a crashed strategy — while plain requests keep
//! flowing.

use std::time::{Duration, Instant};

use conclave_e2e::{Proxy, chat_body};
use futures_util::future::join_all;

const BURST: usize = 300;
const POOL: usize = 256;

/// `slow-moa`: a one-proposer mixture whose members answer after `latency_ms`;
/// `fast`: a plain mock model.
fn config(latency_ms: u64, general: &str) -> String {
    format!(
        "model_list:\n\
         - model_name: fast\n    litellm_params: {{model: mock/fast}}\n\
         - model_name: member\n    litellm_params: {{model: mock/member, mock_latency_ms: {latency_ms}}}\n\
         - model_name: slow-moa\n    litellm_params: {{model: composite/profile/slow}}\n\
         general_settings:\n{general}  composite_llm:\n    profiles:\n      slow:\n        strategy: moa\n        \
         topology:\n          aggregator: {{model: member}}\n          proposers: [{{model: member}}]\n          settings: {{}}\n"
    )
    .replace("\n- model_name", "\n  - model_name")
}

async fn burst(proxy: &Proxy) -> (Vec<(u16, bool)>, Vec<u16>) {
    let composites = join_all((0..BURST).map(|i| async move {
        let r = proxy
            .post(
                "/v1/chat/completions",
                &chat_body("slow-moa", &format!("q{i}")),
            )
            .await;
        (r.status().as_u16(), r.headers().contains_key("retry-after"))
    }));
    let plain = async {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(proxy.chat(&chat_body("fast", "still there?")).await.0);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        statuses
    };
    tokio::join!(composites, plain)
}

#[tokio::test]
async fn a_burst_past_the_pool_waits_for_a_slot_and_every_run_ends_cleanly() {
    let proxy = Proxy::start(&config(400, "")).await;
    let started = Instant::now();
    let (composites, plain) = burst(&proxy).await;
    let ok = composites.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, BURST, "{composites:?}");
    assert!(plain.iter().all(|s| *s == 200), "{plain:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn past_the_queue_timeout_the_rest_get_503_with_retry_after() {
    let proxy = Proxy::start(&config(3000, "  composite_queue_timeout: 0.3\n")).await;
    let (composites, plain) = burst(&proxy).await;
    let ok = composites.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = composites.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok, POOL, "{composites:?}");
    assert_eq!(refused.len(), BURST - POOL, "{composites:?}");
    assert!(refused.iter().all(|(_, retry_after)| *retry_after));
    assert!(plain.iter().all(|s| *s == 200), "{plain:?}");
    let (status, _, _) = proxy.chat(&chat_body("slow-moa", "after the burst")).await;
    assert_eq!(status, 200);
}
