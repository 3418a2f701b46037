//! `/v1/moderations`, `/v1/images/generations` and `/v1/rerank`: routed
//! like every model call (upstream model, retries, keys), checked at the
//! door, and read by the official `openai` package where it has them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sdk_support;

use conclave_e2e::{Behavior, FakeUpstream, Proxy, deployment};
use serde_json::{Value, json};

const MASTER_KEY: &str = "sk-e2e-more-endpoints";

const SCRIPT: &str = r#"
import json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=10)
moderation = client.moderations.create(model="moderator", input=["hello", "graphic violence"])
image = client.images.generate(model="painter", prompt="a red fox", n=2, response_format="b64_json")
print(json.dumps({
    "flagged": [r.flagged for r in moderation.results],
    "violence": moderation.results[1].categories.violence,
    "images": len(image.data),
    "b64_prefix": image.data[0].b64_json[:8],
}))
"#;

/// The SDK sends its moderation and image requests to mock groups and reads
/// their answers in its own types.
#[tokio::test]
async fn the_openai_sdk_moderates_and_generates_images_through_the_gateway() {
    let proxy = Proxy::start(&format!(
        "model_list:\n  - {{model_name: moderator, litellm_params: {{model: mock/mod}}}}\n  - {{model_name: painter, litellm_params: {{model: mock/paint}}}}\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"
    ))
    .await;
    let base_url = proxy.url("/v1");
    let Some(out) = sdk_support::run_script(
        &proxy,
        "more_endpoints.py",
        SCRIPT,
        &[&base_url, MASTER_KEY],
    )
    .await
    else {
        return;
    };
    assert_eq!(out["flagged"], json!([false, true]), "{out}");
    assert_eq!(out["violence"], true, "{out}");
    assert_eq!(out["images"], 2, "{out}");
    assert_eq!(out["b64_prefix"], "iVBORw0K", "a PNG: {out}");
}

/// Each endpoint reaches the deployment's own path with the upstream model
/// in place of the group's name and every other field as sent, and the
/// upstream's answer comes back unchanged.
#[tokio::test]
async fn each_endpoint_is_forwarded_to_its_upstream_path() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}{}",
        deployment(
            "mod",
            "openai/omni-moderation-latest",
            &up.api_base("m"),
            &[]
        ),
        deployment("img", "openai/gpt-image-1", &up.api_base("i"), &[]),
        deployment("rr", "hosted_vllm/bge-reranker", &up.api_base("r"), &[]),
    ))
    .await;
    let cases = [
        (
            "/v1/moderations",
            "m",
            json!({"model": "mod", "input": "hi"}),
            json!({"id": "modr-1", "results": [{"flagged": false}]}),
            "omni-moderation-latest",
            "/v1/moderations",
        ),
        (
            "/images/generations",
            "i",
            json!({"model": "img", "prompt": "a fox", "size": "1024x1024"}),
            json!({"created": 1, "data": [{"url": "https://images.example/1.png"}]}),
            "gpt-image-1",
            "/v1/images/generations",
        ),
        (
            "/v2/rerank",
            "r",
            json!({"model": "rr", "query": "fox", "documents": ["a fox", "a dog"], "top_n": 1}),
            json!({"id": "r-1", "results": [{"index": 0, "relevance_score": 0.9}]}),
            "bge-reranker",
            "/v1/rerank",
        ),
    ];
    for (route, fake, body, answer, upstream_model, upstream_path) in cases {
        up.set(
            fake,
            Behavior::raw_body("application/json", answer.to_string()),
        );
        let r = proxy.post(route, &body).await;
        assert_eq!(r.status(), 200, "{route}");
        let got: Value = r.json().await.unwrap();
        assert_eq!(got, answer, "{route}");
        let sent = up
            .recorded()
            .into_iter()
            .rfind(|rec| rec.deployment == fake)
            .unwrap();
        assert_eq!(sent.path, upstream_path, "{route}");
        let mut expected = body.clone();
        expected["model"] = upstream_model.into();
        assert_eq!(sent.body, expected, "{route}");
    }
}

/// A failing rerank group falls back to the next, as chat does.
#[tokio::test]
async fn a_failed_rerank_falls_back_to_the_next_group() {
    let up = FakeUpstream::start().await;
    up.set("a", Behavior::status(500, "reranker down"));
    up.set(
        "b",
        Behavior::raw_body(
            "application/json",
            r#"{"results":[{"index":1,"relevance_score":0.5}]}"#,
        ),
    );
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 0\n  fallbacks: [{{rr: [rr-backup]}}]\n",
        deployment("rr", "hosted_vllm/r-a", &up.api_base("a"), &[]),
        deployment("rr-backup", "hosted_vllm/r-b", &up.api_base("b"), &[]),
    ))
    .await;
    let r = proxy
        .post(
            "/v1/rerank",
            &json!({"model": "rr", "query": "q", "documents": ["x", "y"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-fallback"], "rr-backup");
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["results"][0]["index"], 1);
    assert_eq!((up.calls("a"), up.calls("b")), (1, 1));
}

/// What an endpoint needs is checked before any upstream call, with the
/// field at fault named.
#[tokio::test]
async fn malformed_requests_are_refused_naming_the_field() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}",
        deployment("any", "openai/x", &up.api_base("a"), &[])
    ))
    .await;
    let cases = [
        (
            "/v1/rerank",
            json!({"model": "any", "query": "q"}),
            "documents",
        ),
        (
            "/v1/rerank",
            json!({"model": "any", "query": "q", "documents": "one"}),
            "documents",
        ),
        (
            "/v1/moderations",
            json!({"model": "any", "input": "x", "stream": true}),
            "stream",
        ),
        ("/v1/images/generations", json!({"model": "any"}), "prompt"),
        (
            "/v1/images/generations",
            json!({"model": "any", "prompt": {"a": 1}}),
            "prompt",
        ),
        (
            "/v1/moderations",
            json!({"model": "any", "input": 123}),
            "input",
        ),
        (
            "/v1/moderations",
            json!({"model": "any", "input": null}),
            "input",
        ),
        (
            "/v1/rerank",
            json!({"model": "any", "query": ["q"], "documents": []}),
            "query",
        ),
        ("/v1/moderations", json!({"input": "x"}), "model"),
    ];
    for (route, body, param) in cases {
        let r = proxy.post(route, &body).await;
        assert_eq!(r.status(), 400, "{route} {body}");
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["error"]["param"], param, "{route} {body}: {got}");
        assert_eq!(got["error"]["type"], "invalid_request_error", "{got}");
    }
    assert_eq!(up.recorded().len(), 0);
}

/// A group mixing providers sends each endpoint to the deployments that
/// serve it, whatever their order: chat to the Anthropic one first,
/// moderations to the one that has them.
#[tokio::test]
async fn deployments_that_cannot_serve_an_endpoint_are_passed_over() {
    let up = FakeUpstream::start().await;
    up.set(
        "m",
        Behavior::raw_body("application/json", r#"{"id":"modr-1","results":[]}"#),
    );
    let proxy = Proxy::start(&format!(
        "model_list:\n{}{}",
        deployment(
            "mixed",
            "anthropic/claude-sonnet-4-5",
            &up.api_base("a"),
            &["order: 1"]
        ),
        deployment(
            "mixed",
            "openai/omni-moderation-latest",
            &up.api_base("m"),
            &["order: 2"]
        ),
    ))
    .await;
    let r = proxy
        .post("/v1/moderations", &json!({"model": "mixed", "input": "x"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-attempts"], "1");
    assert_eq!((up.calls("a"), up.calls("m")), (0, 1));
}

/// A group with no deployment that serves the endpoint (Anthropic's serve
/// chat only) refuses it as the client's error, before any call.
#[tokio::test]
async fn a_deployment_that_cannot_serve_the_endpoint_says_so() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "model_list:\n{}",
        deployment(
            "claude",
            "anthropic/claude-sonnet-4-5",
            &up.api_base("a"),
            &[]
        )
    ))
    .await;
    let r = proxy
        .post("/v1/moderations", &json!({"model": "claude", "input": "x"}))
        .await;
    assert_eq!(r.status(), 400);
    let got: Value = r.json().await.unwrap();
    let message = got["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/moderations") && message.contains("\"claude\""),
        "{message}"
    );
    assert_eq!(up.recorded().len(), 0);
}
