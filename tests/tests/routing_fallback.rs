//! Fallbacks between model groups, driven over HTTP: chain order, limits,
//! loops, the default and context-window lists, the request-body switches,
//! and the headers that say where a request ended up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body};
use routing_support::{ask, attempts, chat, config, deployment, header, model_id};

/// Groups ga, gb (two failing deployments each) and gc (one working one).
fn chain_deployments(up: &FakeUpstream) -> Vec<String> {
    for d in ["a1", "a2", "b1", "b2"] {
        up.set(d, Behavior::status(500, &format!("{d} down")));
    }
    vec![
        deployment(up, "ga", "a1", &[]),
        deployment(up, "ga", "a2", &[]),
        deployment(up, "gb", "b1", &[]),
        deployment(up, "gb", "b2", &[]),
        deployment(up, "gc", "c", &[]),
    ]
}

/// ga -> gb -> gc, each group with one retry of its own (which goes to the
/// group's other deployment, so there is no backoff).
#[tokio::test]
async fn fallbacks_follow_the_chain_in_order_with_each_groups_retries() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &chain_deployments(&up),
        "num_retries: 1\nallowed_fails: 1000\nfallbacks: [{ga: [gb]}, {gb: [gc]}]",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    for d in ["a1", "a2", "b1", "b2", "c"] {
        assert_eq!(up.calls(d), 1, "calls to {d}");
    }
    let order: Vec<String> = up.recorded().iter().map(|r| r.deployment.clone()).collect();
    let pos = |d: &str| order.iter().position(|x| x == d).unwrap();
    assert!(
        pos("a1").max(pos("a2")) < pos("b1").min(pos("b2")),
        "{order:?}"
    );
    assert!(pos("b1").max(pos("b2")) < pos("c"), "{order:?}");
    assert_eq!(attempts(&headers), 5);
    assert_eq!(header(&headers, "x-conclave-fallback"), "gc");
    assert_eq!(header(&headers, "x-conclave-model-group"), "gc");
    assert_eq!(model_id(&headers), "c");
}

#[tokio::test]
async fn max_fallbacks_cuts_the_chain() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &chain_deployments(&up),
        "num_retries: 1\nallowed_fails: 1000\nmax_fallbacks: 1\nfallbacks: [{ga: [gb]}, {gb: [gc]}]",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "ga").await;
    // The last failure (gb's 500) is what the client hears.
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"gb\""),
        "{body}"
    );
    assert_eq!(up.calls("a1") + up.calls("a2"), 2);
    assert_eq!(up.calls("b1") + up.calls("b2"), 2);
    assert_eq!(up.calls("c"), 0);
}

#[tokio::test]
async fn fallback_chains_never_loop() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    up.set("b", Behavior::status(500, "b down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "ga", "a", &[]), deployment(&up, "gb", "b", &[])],
        "num_retries: 0\nallowed_fails: 1000\nfallbacks: [{ga: [gb]}, {gb: [ga]}]\ndefault_fallbacks: [ga, gb]",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);
}

/// A fallback that names the failed group through an alias is the same
/// group: it is not tried again.
#[tokio::test]
async fn a_fallback_to_an_alias_of_a_group_already_tried_is_skipped() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[deployment(&up, "ga", "a", &[]), deployment(&up, "gb", "b", &[])],
        "num_retries: 0\nallowed_fails: 1000\nmodel_group_alias: {ga-alias: ga, gb-alias: gb}\nfallbacks: [{ga: [ga-alias, gb, gb-alias]}]",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gb");
    assert_eq!(attempts(&headers), 2);
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 1);

    // Asked for by its alias, the group is just as much "already tried".
    up.set("b", Behavior::status(500, "b down"));
    let (status, _, body) = ask(&proxy, "ga-alias").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.calls("a"), 2);
    assert_eq!(up.calls("b"), 2);
}

/// Fallbacks listed under an alias are the ones a request made by that
/// alias takes, before the default list.
#[tokio::test]
async fn fallbacks_listed_under_the_alias_asked_for_win_over_the_default_list() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(
        &chain_deployments(&up),
        "num_retries: 0\nallowed_fails: 1000\nmodel_group_alias: {pb: ga}\nfallbacks: [{pb: [gc]}]\ndefault_fallbacks: [gb]",
    ))
    .await;
    let (status, _, body) = ask(&proxy, "pb").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((up.calls("b1") + up.calls("b2"), up.calls("c")), (0, 1));
}

#[tokio::test]
async fn default_fallbacks_serve_a_group_without_its_own_list() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(503, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "a", &[]),
            deployment(&up, "gb", "b", &[]),
            deployment(&up, "gd", "d", &[]),
        ],
        "num_retries: 0\nfallbacks: [{gb: [ga]}]\ndefault_fallbacks: [gd]",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gd");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("d"), 1);
    assert_eq!(up.calls("b"), 0);
}

/// A fallback may name one deployment by its `model_info.id` (LiteLLM's
/// fallback to a specific model id): only that deployment of its group
/// is tried, with the group's retries.
#[tokio::test]
async fn a_fallback_to_a_deployment_id_calls_that_deployment_only() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(503, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "a", &[]),
            deployment(&up, "gh", "east", &[]),
            deployment(&up, "gh", "west", &[]),
        ],
        "num_retries: 0\nfallbacks: [{ga: [east]}]",
    ))
    .await;
    for _ in 0..4 {
        let (status, headers, body) = ask(&proxy, "ga").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "east");
        assert_eq!(header(&headers, "x-conclave-fallback"), "east");
    }
    assert_eq!(up.calls("west"), 0);
    assert!(!proxy.logs().contains("no model_list entry serves"));
}

/// A context-length 400 takes the context-window list, not the generic one,
/// and is not retried on the same group.
#[tokio::test]
async fn a_context_length_error_uses_context_window_fallbacks() {
    let up = FakeUpstream::start().await;
    up.set(
        "small",
        Behavior::status(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
        ),
    );
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "small", &[]),
            deployment(&up, "gbig", "big", &[]),
            deployment(&up, "gother", "other", &[]),
        ],
        "num_retries: 3\ncontext_window_fallbacks: [{ga: [gbig]}]\nfallbacks: [{ga: [gother]}]",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gbig");
    assert_eq!(up.calls("small"), 1);
    assert_eq!(up.calls("big"), 1);
    assert_eq!(up.calls("other"), 0);
    assert_eq!(attempts(&headers), 2);
}

/// Without a context-window list the error falls back like any other.
#[tokio::test]
async fn a_context_length_error_without_its_own_list_takes_the_generic_fallbacks() {
    let up = FakeUpstream::start().await;
    up.set(
        "small",
        Behavior::status(400, "This model's maximum context length is 8192 tokens"),
    );
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "small", &[]),
            deployment(&up, "gother", "other", &[]),
        ],
        "fallbacks: [{ga: [gother]}]",
    ))
    .await;
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gother");
    assert_eq!(up.calls("small"), 1);
    assert_eq!(up.calls("other"), 1);
}

#[tokio::test]
async fn request_body_fallbacks_replace_the_configured_ones() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "a", &[]),
            deployment(&up, "gx", "x", &[]),
            deployment(&up, "gy", "y", &[]),
        ],
        "num_retries: 0\nfallbacks: [{ga: [gy]}]",
    ))
    .await;
    let mut body = chat_body("ga", "hi");
    body["fallbacks"] = serde_json::json!(["gx"]);
    let (status, headers, resp) = chat(&proxy, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gx");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("x"), 1);
    assert_eq!(up.calls("y"), 0);
    // The switch is the gateway's, never the upstream's.
    let sent = up.last_body("a").unwrap();
    assert!(sent.get("fallbacks").is_none(), "{sent}");
}

#[tokio::test]
async fn disable_fallbacks_in_the_body_turns_every_fallback_off() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    let proxy = Proxy::start(&config(
        &[
            deployment(&up, "ga", "a", &[]),
            deployment(&up, "gb", "b", &[]),
        ],
        "num_retries: 0\nfallbacks: [{ga: [gb]}]\ndefault_fallbacks: [gb]",
    ))
    .await;
    let mut body = chat_body("ga", "hi");
    body["disable_fallbacks"] = serde_json::json!(true);
    let (status, _, resp) = chat(&proxy, &body).await;
    assert_eq!(status, 502, "{resp}");
    assert_eq!(up.calls("a"), 1);
    assert_eq!(up.calls("b"), 0);
    // The same request without the switch falls back.
    let (status, headers, _) = ask(&proxy, "ga").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-conclave-fallback"), "gb");
    assert_eq!(up.calls("b"), 1);
}

/// The headers name the deployment (its model_info.id, else `<group>.<n>`),
/// the group that answered, every upstream call, and the fallback used.
#[tokio::test]
async fn route_headers_name_deployment_group_attempts_and_fallback() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "a down"));
    let yaml = format!(
        "model_list:\n{}  - model_name: gb\n    litellm_params:\n      model: openai/b-model\n      api_base: {}\n      api_key: sk-test\n  - model_name: gb\n    litellm_params:\n      model: openai/b2-model\n      api_base: {}\n      api_key: sk-test\n      order: 9\n\
         router_settings:\n  num_retries: 1\n  allowed_fails: 1000\n  fallbacks: [{{ga: [gb]}}]\n",
        deployment(&up, "ga", "a", &[]),
        up.api_base("b"),
        up.api_base("b2"),
    );
    let proxy = Proxy::start(&yaml).await;

    // Straight to gb: its first deployment (order unset sorts after order 9,
    // so b2 is first); no fallback header.
    let (status, headers, body) = ask(&proxy, "gb").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "gb.1");
    assert_eq!(header(&headers, "x-conclave-model-group"), "gb");
    assert_eq!(attempts(&headers), 1);
    assert!(headers.get("x-conclave-fallback").is_none());

    // ga fails twice (a, then a again after backoff), then gb answers.
    let (status, headers, body) = ask(&proxy, "ga").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "gb.1");
    assert_eq!(header(&headers, "x-conclave-model-group"), "gb");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gb");
    assert_eq!(attempts(&headers), 3);
    assert_eq!(up.calls("a"), 2);
    assert_eq!(up.calls("b2"), 2);
    assert_eq!(up.calls("b"), 0);

    // Plain success on ga names ga's deployment by its id.
    up.set("a", Behavior::ok("fine"));
    let (status, headers, _) = ask(&proxy, "ga").await;
    assert_eq!(status, 200);
    assert_eq!(model_id(&headers), "a");
    assert_eq!(header(&headers, "x-conclave-model-group"), "ga");
    assert_eq!(attempts(&headers), 1);
    assert!(headers.get("x-conclave-fallback").is_none());
}

/// A name only a wildcard serves has its own fallbacks: they are listed
/// under the name the client sends, as LiteLLM looks them up.
#[tokio::test]
async fn fallbacks_listed_under_a_wildcard_served_name_are_used() {
    let up = FakeUpstream::start().await;
    up.set("bad", Behavior::status(500, "bad down"));
    let wildcard = |group: &str, dep: &str| {
        format!(
            "  - model_name: \"{group}\"\n    litellm_params:\n      model: openai/*\n      api_base: {}\n      api_key: sk-test\n    model_info:\n      id: {dep}\n",
            up.api_base(dep)
        )
    };
    let proxy = Proxy::start(&config(
        &[wildcard("bad/*", "bad"), wildcard("good/*", "good")],
        "num_retries: 0\nallowed_fails: 1000\nfallbacks: [{bad/x: [bad/y]}, {bad/y: [good/z]}]",
    ))
    .await;
    // bad/x, then bad/y (the same wildcard, another name), then good/z.
    let (status, headers, body) = ask(&proxy, "bad/x").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((up.calls("bad"), up.calls("good")), (2, 1));
    assert_eq!(header(&headers, "x-conclave-fallback"), "good/*");
}
