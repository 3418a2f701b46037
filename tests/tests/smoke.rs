//! The quickest whole-path check: a chat completion through conclave to the fake upstream.

use conclave_e2e::{FakeUpstream, Proxy, chat_body};

#[tokio::test]
async fn chat_completion_reaches_the_upstream_and_comes_back() {
    let up = FakeUpstream::start().await;
    up.set("a", conclave_e2e::Behavior::ok("hello back"));
    let proxy = Proxy::start(&format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-up\n      api_base: {}\n      api_key: sk-test\n",
        up.api_base("a")
    ))
    .await;
    let (status, headers, body) = proxy.chat(&chat_body("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "hello back");
    assert_eq!(headers["x-conclave-model-group"], "m");
    assert_eq!(up.calls("a"), 1);
    let sent = up.last_body("a").unwrap();
    assert_eq!(sent["model"], "gpt-up");
    let rec = &up.recorded()[0];
    assert_eq!(rec.headers["authorization"], "Bearer sk-test");
}
