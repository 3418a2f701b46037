//! A wildcard deployment lets the client choose part of the upstream model
//! name; for Azure that part is a URL path segment. Whatever the client
//! sends, it stays one segment: no `..`, `?`, `#` or `/` can change the
//! upstream's path or query.

use conclave_e2e::{FakeUpstream, Proxy, chat_body};

fn config(up: &FakeUpstream) -> String {
    format!(
        "model_list:\n  - model_name: azure/*\n    litellm_params:\n      model: azure/*\n      \
         api_base: {}\n      api_key: sk-azure-test\n      api_version: 2024-10-21\n\
         router_settings:\n  num_retries: 0\n",
        up.api_base("az")
    )
}

#[tokio::test]
async fn a_captured_model_name_is_one_encoded_path_segment() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    for (model, segment) in [
        ("azure/gpt-4o", "gpt-4o"),
        ("azure/x?y=1#z", "x?y=1#z"),
        ("azure/a/b", "a/b"),
        ("azure/a%2Fb c", "a%2Fb c"),
    ] {
        up.clear();
        let (status, _, body) = proxy.chat(&chat_body(model, "hi")).await;
        assert_eq!(status, 200, "{model}: {body}");
        let recorded = up.recorded();
        assert_eq!(recorded.len(), 1, "{model}");
        assert_eq!(recorded[0].deployment, "az", "{model}");
        assert_eq!(
            recorded[0].path,
            format!("/v1/openai/deployments/{segment}/chat/completions"),
            "{model}"
        );
    }
}

#[tokio::test]
async fn dot_segments_in_a_captured_name_are_refused() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    for model in [
        "azure/..",
        "azure/x/../../../other/v1/chat/completions",
        "azure/./x",
    ] {
        let (status, _, body) = proxy.chat(&chat_body(model, "hi")).await;
        assert_eq!(status, 400, "{model}: {body}");
        assert_eq!(body["error"]["param"], "model", "{model}");
    }
    assert!(up.recorded().is_empty(), "{:?}", up.recorded());
}

#[tokio::test]
async fn a_name_the_wildcard_would_refuse_is_not_listed_as_a_model() {
    let up = FakeUpstream::start().await;
    let proxy = Proxy::start(&config(&up)).await;
    let status = |path: String| {
        let proxy = &proxy;
        async move {
            let r = proxy.client.get(proxy.url(&path)).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(status("/v1/models/azure/gpt-4o".into()).await, 200);
    // `/health?model=` reports on the group a wildcard serves the name by.
    assert_eq!(status("/health?model=azure/gpt-4o".into()).await, 200);
    assert_eq!(status("/health?model=other/gpt-4o".into()).await, 404);
    let long = format!("/v1/models/azure/{}", "m".repeat(600));
    // `%2F` keeps the client's URL from folding the `..` away before it is sent.
    for path in [
        "/v1/models/azure/x%2F..%2Fadmin".to_owned(),
        "/v1/models/azure/x%00y".into(),
        long,
    ] {
        assert_eq!(status(path.clone()).await, 404, "{path}");
    }
}
