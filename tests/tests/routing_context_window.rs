//! `router_settings.enable_pre_call_checks` and context windows, driven
//! over HTTP: a prompt too long for a deployment's `max_input_tokens` (its
//! own, or the catalog's for the model it calls) is not sent to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod routing_support;

use conclave_e2e::{FakeUpstream, chat_body};
use routing_support::{chat, config, deployment, error_message, header, model_id};
use serde_json::Value;

/// A deployment of `group` whose context window is `window` tokens.
fn windowed(up: &FakeUpstream, group: &str, dep: &str, window: u64) -> String {
    deployment(up, group, dep, &[]) + &format!("      max_input_tokens: {window}\n")
}

/// A chat request whose prompt is about `tokens` tokens by the gateway's
/// estimate (four bytes of text a token).
fn prompt_of(model: &str, tokens: usize) -> Value {
    chat_body(model, &"w".repeat(tokens * 4))
}

#[tokio::test]
async fn a_long_prompt_goes_only_to_the_deployment_whose_window_takes_it() {
    let up = FakeUpstream::start().await;
    let proxy = conclave_e2e::Proxy::start(&config(
        &[
            windowed(&up, "g", "small", 100),
            windowed(&up, "g", "large", 10_000),
        ],
        "enable_pre_call_checks: true",
    ))
    .await;
    for _ in 0..10 {
        let (status, headers, body) = chat(&proxy, &prompt_of("g", 1_000)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(model_id(&headers), "large");
    }
    assert_eq!(up.calls("small"), 0);
    // Short prompts still go to both (each of 30 misses `small` with
    // probability 1/2).
    for _ in 0..30 {
        assert_eq!(chat(&proxy, &prompt_of("g", 10)).await.0, 200);
    }
    assert!(up.calls("small") > 0, "a short prompt never went to small");
}

#[tokio::test]
async fn a_prompt_no_deployment_takes_goes_to_the_context_window_fallback_uncalled() {
    let up = FakeUpstream::start().await;
    let proxy = conclave_e2e::Proxy::start(&config(
        &[
            windowed(&up, "ga", "a", 100),
            windowed(&up, "gbig", "big", 100_000),
        ],
        "enable_pre_call_checks: true\ncontext_window_fallbacks: [{ga: [gbig]}]",
    ))
    .await;
    let (status, headers, body) = chat(&proxy, &prompt_of("ga", 1_000)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "big");
    assert_eq!(header(&headers, "x-conclave-fallback"), "gbig");
    assert_eq!(up.calls("a"), 0);
}

#[tokio::test]
async fn without_a_fallback_the_client_hears_context_length_exceeded_and_no_call_is_made() {
    let up = FakeUpstream::start().await;
    let proxy = conclave_e2e::Proxy::start(&config(
        &[windowed(&up, "g", "a", 100), windowed(&up, "g", "b", 200)],
        "enable_pre_call_checks: true\nfallbacks: [{g: [other]}]",
    ))
    .await;
    for stream in [false, true] {
        let mut body = prompt_of("g", 1_000);
        body["stream"] = Value::Bool(stream);
        let (status, _, body) = chat(&proxy, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        let message = error_message(&body);
        assert!(
            message.contains("\"g\"") && message.contains("200 tokens"),
            "{message}"
        );
    }
    assert_eq!(up.calls("a") + up.calls("b"), 0);
}

#[tokio::test]
async fn the_catalog_gives_the_window_of_a_known_model() {
    let up = FakeUpstream::start().await;
    let gpt4 = format!(
        "  - model_name: g\n    litellm_params:\n      model: openai/gpt-4\n      api_base: {}\n      api_key: sk-test\n    model_info:\n      id: four\n",
        up.api_base("four")
    );
    let proxy = conclave_e2e::Proxy::start(&config(&[gpt4], "enable_pre_call_checks: true")).await;
    assert_eq!(chat(&proxy, &prompt_of("g", 8_000)).await.0, 200);
    let (status, _, body) = chat(&proxy, &prompt_of("g", 8_300)).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("8192 tokens"), "{body}");
    assert_eq!(up.calls("four"), 1);
}

#[tokio::test]
async fn without_pre_call_checks_windows_are_not_checked() {
    let up = FakeUpstream::start().await;
    let proxy = conclave_e2e::Proxy::start(&config(&[windowed(&up, "g", "a", 100)], "")).await;
    let (status, headers, body) = chat(&proxy, &prompt_of("g", 1_000)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_id(&headers), "a");
}
