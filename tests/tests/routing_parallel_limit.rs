//! A deployment's `max_parallel_requests` (and the router's
//! `default_max_parallel_requests`), driven over HTTP: calls past the cap
//! wait for a slot, go to a sibling with one free, or are refused with 429
//! when none frees in time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use std::time::{Duration, Instant};

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body};
use futures_util::StreamExt;
use routing_support::{ask, config, deployment, error_message, header, model_id};

/// Waits until the fake has received `n` calls in all.
async fn until_calls(up: &FakeUpstream, n: usize) {
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.recorded().len() >= n)
            .await,
        "the upstream never received {n} calls"
    );
}

/// Six requests at once through a deployment that takes two: all answer,
/// and the upstream never sees a third call before one of two has ended.
#[tokio::test]
async fn a_deployment_never_has_more_calls_in_flight_than_its_cap() {
    let up = FakeUpstream::start().await;
    let delay = Duration::from_millis(400);
    up.set("a", Behavior::ok("a").delayed(delay));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[("max_parallel_requests", "2")])],
        "",
    ))
    .await;
    let statuses: Vec<u16> = futures_util::stream::iter(0..6)
        .map(|_| async { ask(&proxy, "g").await.0 })
        .buffer_unordered(6)
        .collect()
        .await;
    assert_eq!(statuses, [200; 6]);
    let mut arrivals: Vec<Instant> = up.recorded().iter().map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 6);
    // Call k+2 can only start once call k (one of the two before it) ended.
    for k in 0..4 {
        let gap = arrivals[k + 2] - arrivals[k];
        assert!(
            gap >= delay - Duration::from_millis(50),
            "calls {k} and {} overlapped: {gap:?} apart",
            k + 2
        );
    }
}

/// With one deployment at its cap, the next call goes to the sibling that
/// has a slot free rather than queueing behind the busy one.
#[tokio::test]
async fn a_full_deployment_leaves_the_next_call_to_a_free_sibling() {
    let up = FakeUpstream::start().await;
    let slow = Duration::from_millis(1500);
    up.set("a", Behavior::ok("a").delayed(slow));
    up.set("b", Behavior::ok("b").delayed(slow));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("max_parallel_requests", "1")]),
            deployment(&up, "g", "b", &[("max_parallel_requests", "1")]),
        ],
        "routing_strategy: simple-shuffle",
    ))
    .await;
    let first = {
        let (client, url) = (proxy.client.clone(), proxy.url("/v1/chat/completions"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&chat_body("g", "1"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), model_id(r.headers()))
        })
    };
    until_calls(&up, 1).await;
    let started = Instant::now();
    let (status, headers, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    let (first_status, first_id) = first.await.unwrap();
    assert_eq!(first_status, 200);
    assert_ne!(
        model_id(&headers),
        first_id,
        "both calls went to one deployment"
    );
    assert!(
        started.elapsed() < slow + slow / 2,
        "the second call waited for the first: {:?}",
        started.elapsed()
    );
    assert_eq!((up.calls("a"), up.calls("b")), (1, 1));
}

/// The router's default cap holds a stream's slot until the stream ends; a
/// request that cannot wait that long (its own `timeout`) is refused with a
/// 429 that names the deployment and its cap, and never reaches it.
#[tokio::test]
async fn a_call_that_gets_no_slot_in_time_is_refused_with_429() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior::ok("a b c d e f").chunked(6, Duration::from_millis(300)),
    );
    let proxy = Proxy::start(&config(
        &[deployment(&up, "g", "a", &[])],
        "default_max_parallel_requests: 1",
    ))
    .await;
    let stream = {
        let (client, url) = (proxy.client.clone(), proxy.url("/v1/chat/completions"));
        tokio::spawn(async move {
            let mut body = chat_body("g", "stream");
            body["stream"] = true.into();
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        })
    };
    until_calls(&up, 1).await;
    let mut impatient = chat_body("g", "now");
    impatient["timeout"] = 0.3.into();
    let (status, headers, body) = routing_support::chat(&proxy, &impatient).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "deployment_parallel_limit", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    let message = error_message(&body);
    assert!(
        message.contains("\"a\"") && message.contains("max_parallel_requests"),
        "{message}"
    );
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(up.calls("a"), 1, "the refused call reached the upstream");

    // A patient request waits for the stream to end, then gets the slot.
    let (status, _, body) = ask(&proxy, "g").await;
    assert_eq!(status, 200, "{body}");
    let (stream_status, text) = stream.await.unwrap();
    assert_eq!(stream_status, 200);
    assert!(text.contains("[DONE]"), "{text}");
    let recorded = up.recorded();
    let stream_started = recorded[0].at;
    let second_started = recorded[1].at;
    assert!(
        second_started - stream_started >= Duration::from_millis(1500),
        "the second call started while the stream still held the slot"
    );
}
