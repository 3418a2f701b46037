//! Streaming through the router, over HTTP: a stream that fails before its
//! first chunk is retried or falls back without the client noticing; one that
//! fails after it started ends with an error event and is never retried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, sse_content, sse_payloads};
use routing_support::{attempts, config, deployment, header, model_id, stream_chat};

#[tokio::test]
async fn a_stream_failing_with_an_error_status_falls_back_invisibly() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    up.set("b", Behavior::ok("from the fallback"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "a", &[]),
            deployment(&up, "gb", "b", &[]),
        ],
        "num_retries: 0\nfallbacks: [{ga: [gb]}]",
    ))
    .await;
    let (status, headers, text) = stream_chat(&proxy, "ga").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(header(&headers, "content-type"), "text/event-stream");
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    assert!(!text.contains("\"error\""), "{text}");
    assert_eq!(sse_content(&payloads), "from the fallback");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gb");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// The connection to `a` drops before any chunk: the retry goes to `b` and
/// the client sees one clean stream.
#[tokio::test]
async fn a_stream_dropped_before_its_first_chunk_is_retried_invisibly() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior {
            drop_after_chunks: Some(0),
            ..Behavior::ok("never sent")
        },
    );
    up.set("b", Behavior::ok("whole answer"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
        ],
        "num_retries: 1\nallowed_fails: 0",
    ))
    .await;
    let (status, headers, text) = stream_chat(&proxy, "g").await;
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert_eq!(
        payloads.last().map(String::as_str),
        Some("[DONE]"),
        "{text}"
    );
    assert_eq!(payloads.iter().filter(|p| *p == "[DONE]").count(), 1);
    assert!(!text.contains("\"error\""), "{text}");
    assert_eq!(sse_content(&payloads), "whole answer");
    assert_eq!(model_id(&headers), "b");
    assert_eq!(attempts(&headers), 2);
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// Two chunks arrive, then the connection drops: the client keeps those
/// chunks, gets one `data: {"error": ...}` event and no `[DONE]`, and the
/// router neither retries nor falls back (`b` and `c` are never called).
#[tokio::test]
async fn a_stream_failing_mid_way_ends_with_an_error_event_and_is_not_retried() {
    let up = FakeUpstream::start().await;
    up.set(
        "a",
        Behavior {
            drop_after_chunks: Some(2),
            chunks: 4,
            ..Behavior::ok("one two three four")
        },
    );
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "g", "a", &[("order", "1")]),
            deployment(&up, "g", "b", &[("order", "2")]),
            deployment(&up, "g2", "c", &[]),
        ],
        "num_retries: 3\nfallbacks: [{g: [g2]}]",
    ))
    .await;
    let (status, _, text) = stream_chat(&proxy, "g").await;
    assert_eq!(status, 200, "{text}");
    let payloads = sse_payloads(&text);
    assert!(!payloads.iter().any(|p| p == "[DONE]"), "{text}");
    assert_eq!(payloads.len(), 3, "{text}");
    assert_eq!(sse_content(&payloads[..2]), "one two ");
    let last: serde_json::Value = serde_json::from_str(&payloads[2]).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 0);
    assert_eq!(up.calls("c"), 0);
    // The break is a failed call of `a` for whoever watches the deployments.
    let metrics = proxy.metrics(None).await;
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("conclave_deployment_failed_calls_total{"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(failed.len(), 1, "{metrics}");
    assert!(failed[0].contains("model_group=\"g\""), "{metrics}");
    assert!(failed[0].ends_with(" 1"), "{metrics}");
}
