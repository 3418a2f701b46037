//! The operations layer's outcome pipeline, seen by a sink of the test's own:
//! every request leaves exactly one outcome whatever way it ends, and each
//! model call a composite strategy makes leaves one more, linked to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave::ops::{CLIENT_CLOSED, CacheStatus, Outcome, OutcomeKind, OutcomeSink};
use conclave::server::{ServeOptions, bind};
use conclave_e2e::proxy::TempDir;
use conclave_e2e::{Behavior, FakeUpstream, SseReader, chat_body, composite_config};
use serde_json::json;

/// A sink that keeps every outcome it is given.
#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Outcome>>>);

impl OutcomeSink for Collector {
    fn name(&self) -> &'static str {
        "test-collector"
    }

    fn record(&self, outcome: &Outcome) {
        self.0.lock().unwrap().push(outcome.clone());
    }
}

impl Collector {
    fn all(&self) -> Vec<Outcome> {
        self.0.lock().unwrap().clone()
    }

    /// Outcomes whose own request id is `id`.
    fn of(&self, id: &str) -> Vec<Outcome> {
        self.all()
            .into_iter()
            .filter(|o| o.request_id.as_str() == id)
            .collect()
    }

    /// Sub-call outcomes made for the request `id`.
    fn children_of(&self, id: &str) -> Vec<Outcome> {
        self.all()
            .into_iter()
            .filter(|o| {
                o.parent_request_id
                    .as_ref()
                    .is_some_and(|p| p.as_str() == id)
            })
            .collect()
    }

    async fn wait_for(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.all().len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Anything emitted twice would arrive right behind the first.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An in-process gateway whose outcomes also go to `sink`.
struct Gateway {
    base: String,
    _dir: TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(yaml: &str, sink: Collector) -> Gateway {
    let dir = TempDir::new();
    let config_path = dir.write("config.yaml", yaml);
    let bound = bind(ServeOptions {
        config_path,
        host: "127.0.0.1".into(),
        port: 0,
        watch: false,
        no_compile_cache: true,
        persist_admin_changes: None,
        extra_sinks: vec![Arc::new(sink)],
        shutdown_grace: Duration::from_secs(1),
    })
    .await
    .expect("gateway starts");
    let base = format!("http://{}", bound.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    Gateway {
        base,
        _dir: dir,
        _stop: stop,
    }
}

fn config(up: &FakeUpstream) -> String {
    composite_config(
        up,
        &["plain", "broken", "slow", "p1", "p2", "agg"],
        &[("moa-test", "moa_test")],
        "      moa_test:\n        strategy: moa\n        topology:\n          aggregator: {model: agg}\n          \
         proposers: [{model: p1}, {model: p2}]\n          settings: {}\n",
    )
}

async fn post(gw: &Gateway, id: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn only(outcomes: Vec<Outcome>, what: &str) -> Outcome {
    assert_eq!(outcomes.len(), 1, "{what}: {outcomes:#?}");
    outcomes.into_iter().next().unwrap()
}

#[tokio::test]
async fn every_request_leaves_exactly_one_outcome_and_sub_calls_link_to_their_parent() {
    let up = FakeUpstream::start().await;
    up.set("broken", Behavior::status(500, "upstream broke"));
    up.set(
        "slow",
        Behavior::ok("slow answer").chunked(20, Duration::from_millis(100)),
    );
    let sink = Collector::default();
    let gw = start(&config(&up), sink.clone()).await;

    let plain = post(&gw, "t-plain", chat_body("plain", "hi")).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["x-conclave-request-id"], "t-plain");
    plain.text().await.unwrap();

    let mut streamed = chat_body("plain", "hi");
    streamed["stream"] = json!(true);
    let streamed = post(&gw, "t-stream", streamed).await;
    assert_eq!(streamed.status(), 200);
    streamed.text().await.unwrap();

    let failed = post(&gw, "t-failed", chat_body("broken", "hi")).await;
    assert_eq!(failed.status(), 502);

    let mut slow = chat_body("slow", "hi");
    slow["stream"] = json!(true);
    let mut reader = SseReader::new(post(&gw, "t-cancelled", slow).await);
    assert!(reader.next(Duration::from_secs(5)).await.is_some());
    drop(reader);

    let composite = post(&gw, "t-composite", chat_body("moa-test", "question")).await;
    assert_eq!(composite.status(), 200);

    sink.wait_for(5 + 3).await;

    let o = only(sink.of("t-plain"), "plain");
    assert_eq!(
        (o.kind, o.status, o.stream),
        (OutcomeKind::Request, 200, false)
    );
    assert_eq!(o.model_group.as_deref(), Some("plain"));
    assert_eq!(o.usage().map(|u| u.completion_tokens), Some(7));

    let o = only(sink.of("t-stream"), "streamed");
    assert_eq!((o.status, o.stream), (200, true));
    assert!(o.time_to_first_token.is_some());

    let o = only(sink.of("t-failed"), "failed");
    assert_eq!(o.status, 502);
    assert!(o.error.is_some());

    let o = only(sink.of("t-cancelled"), "cancelled");
    assert_eq!(o.status, CLIENT_CLOSED);

    let o = only(sink.of("t-composite"), "composite");
    assert_eq!(o.status, 200);
    assert_eq!(o.profile.as_deref(), Some("moa_test"));
    let children = sink.children_of("t-composite");
    assert_eq!(children.len(), 3, "{children:#?}");
    assert!(children.iter().all(|c| c.kind == OutcomeKind::SubCall
        && c.status == 200
        && c.profile.as_deref() == Some("moa_test")));
    let mut models: Vec<&str> = children.iter().map(|c| c.model.as_str()).collect();
    models.sort_unstable();
    assert_eq!(models, ["agg", "p1", "p2"]);

    assert_eq!(
        sink.all().len(),
        8,
        "no outcome beyond those: {:#?}",
        sink.all()
    );
}

#[tokio::test]
async fn a_cache_hit_outcome_carries_the_stored_answers_usage_and_model() {
    let up = FakeUpstream::start().await;
    let sink = Collector::default();
    let yaml = format!(
        "{}litellm_settings:\n  cache: true\n  cache_params:\n    type: local\n",
        config(&up)
    );
    let gw = start(&yaml, sink.clone()).await;
    for id in ["t-fill", "t-hit"] {
        let answer = post(&gw, id, chat_body("plain", "the same question")).await;
        assert_eq!(answer.status(), 200);
        answer.text().await.unwrap();
    }
    sink.wait_for(2).await;

    let hit = only(sink.of("t-hit"), "hit");
    assert_eq!(hit.cache, CacheStatus::Hit);
    // Set on the outcome itself: sinks take it as it is instead of each
    // parsing the stored answer again.
    assert_eq!(hit.usage.map(|u| u.completion_tokens), Some(7));
    assert!(hit.response_model.is_some() && hit.body_is_json, "{hit:#?}");
    assert_eq!(
        up.calls("plain"),
        1,
        "the second request was answered from the cache"
    );
}
