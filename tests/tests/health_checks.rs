//! Background health checks through the real binary: with
//! `background_health_checks` on, a dead deployment is marked in `/health`
//! and the metrics within two intervals, without any user traffic, and is
//! seen to recover once it answers again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use conclave_e2e::proxy::Proxy;
use conclave_e2e::{Behavior, FakeUpstream, deployments};
use prometheus_parse::Scrape;
use serde_json::Value;

const INTERVAL: Duration = Duration::from_millis(500);

async fn start(up: &FakeUpstream) -> Proxy {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(up, &[("alive", &[][..]), ("dead", &[][..])]));
    yaml.push_str(&format!(
        "general_settings:\n  background_health_checks: true\n  health_check_interval: {}\n",
        INTERVAL.as_secs_f64()
    ));
    Proxy::start(&yaml).await
}

async fn health(proxy: &Proxy) -> Value {
    let r = proxy.client.get(proxy.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn deployment<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {body}"))
}

/// Polls `/health` until `done` holds; returns the body and how long it took.
async fn wait_for(
    proxy: &Proxy,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let body = health(proxy).await;
        if done(&body) {
            return (body, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "not reached within {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The sum of `name`'s samples for `deployment` whose `label` is `value`.
async fn metric(proxy: &Proxy, name: &str, deployment: &str, (label, value): (&str, &str)) -> f64 {
    let text = proxy.metrics(None).await;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.get("deployment") == Some(deployment)
                && s.labels.get(label) == Some(value)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn a_dead_deployment_is_marked_within_two_intervals_and_seen_to_recover() {
    let up = FakeUpstream::start().await;
    up.set("alive", Behavior::ok("pong"));
    up.set("dead", Behavior::status(500, "the model server is down"));
    let proxy = start(&up).await;

    let (body, took) = wait_for(&proxy, INTERVAL * 2 + Duration::from_millis(400), |b| {
        deployment(b, "dead.0")["health_check"]["status"] == "failed"
    })
    .await;
    assert!(
        took <= INTERVAL * 2 + Duration::from_millis(400),
        "{took:?}"
    );
    let dead = deployment(&body, "dead.0");
    assert_eq!(dead["healthy"], false, "{body}");
    let error = dead["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("500"), "{error}");
    assert!(!error.contains("sk-test-key"), "{error}");
    assert_eq!(body["status"], "degraded");
    assert!(
        body["unhealthy_deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["model_id"] == "dead.0"),
        "{body}"
    );
    let (body, _) = wait_for(&proxy, INTERVAL * 2 + Duration::from_millis(400), |b| {
        deployment(b, "alive.0")["health_check"]["status"] == "ok"
    })
    .await;
    let alive = deployment(&body, "alive.0");
    assert_eq!(alive["healthy"], true, "{body}");
    assert!(alive["health_check"]["latency_ms"].as_f64().unwrap() >= 0.0);

    assert_eq!(
        metric(
            &proxy,
            "conclave_deployment_state",
            "dead.0",
            ("state", "unhealthy")
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &proxy,
            "conclave_deployment_state",
            "alive.0",
            ("state", "healthy")
        )
        .await,
        1.0
    );
    assert!(
        metric(
            &proxy,
            "conclave_health_checks_total",
            "dead.0",
            ("result", "failed")
        )
        .await
            >= 1.0
    );

    // The checks were one-token requests, and nobody else called.
    let sent = up.recorded();
    assert!(sent.iter().any(|r| r.deployment == "dead"));
    for r in &sent {
        assert_eq!(r.body["max_tokens"], 1, "{:?}", r.body);
    }

    up.set("dead", Behavior::ok("pong"));
    let (body, took) = wait_for(&proxy, INTERVAL * 2 + Duration::from_millis(400), |b| {
        deployment(b, "dead.0")["healthy"] == true
    })
    .await;
    assert!(
        took <= INTERVAL * 2 + Duration::from_millis(400),
        "{took:?}"
    );
    assert_eq!(deployment(&body, "dead.0")["health_check"]["status"], "ok");
    assert_eq!(body["status"], "healthy");
    // The last error stays on record after the recovery.
    assert!(deployment(&body, "dead.0")["last_error"]["message"].is_string());
    assert_eq!(
        metric(
            &proxy,
            "conclave_deployment_state",
            "dead.0",
            ("state", "healthy")
        )
        .await,
        1.0
    );
}
