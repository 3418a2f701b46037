//! LiteLLM's OpenAI-compatible provider prefixes through the real binary:
//! each entry loads (no deployment skipped), its calls carry the key from
//! the provider's own variable, and the model after the prefix goes upstream
//! as written. A model named without a prefix goes where LiteLLM would
//! send it, never with another provider's key to OpenAI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body};

/// (prefix, the variable its key is read from), one deployment each.
const PROVIDERS: &[(&str, &str)] = &[
    ("deepinfra", "DEEPINFRA_API_KEY"),
    ("sambanova", "SAMBANOVA_API_KEY"),
    ("nebius", "NEBIUS_API_KEY"),
    ("novita", "NOVITA_API_KEY"),
    ("hyperbolic", "HYPERBOLIC_API_KEY"),
    ("lambda_ai", "LAMBDA_API_KEY"),
    ("featherless_ai", "FEATHERLESS_AI_API_KEY"),
    ("nscale", "NSCALE_API_KEY"),
    ("friendliai", "FRIENDLIAI_API_KEY"),
    ("github", "GITHUB_API_KEY"),
    ("dashscope", "DASHSCOPE_API_KEY"),
    ("moonshot", "MOONSHOT_API_KEY"),
    ("zai", "ZAI_API_KEY"),
    ("volcengine", "VOLCENGINE_API_KEY"),
    ("codestral", "CODESTRAL_API_KEY"),
    ("meta_llama", "LLAMA_API_KEY"),
    ("wandb", "WANDB_API_KEY"),
    ("databricks", "DATABRICKS_API_KEY"),
];

#[tokio::test]
async fn each_openai_compatible_prefix_sends_its_own_key_and_model() {
    let up = FakeUpstream::start().await;
    let mut yaml = String::from("model_list:\n");
    let mut env = Vec::new();
    for (prefix, variable) in PROVIDERS {
        up.set(prefix, Behavior::ok(&format!("from {prefix}")));
        yaml.push_str(&format!(
            "  - model_name: {prefix}-model\n    litellm_params:\n      model: {prefix}/org/{prefix}-7b\n      api_base: {}\n",
            up.api_base(prefix)
        ));
        env.push((*variable, format!("sk-{prefix}")));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = Proxy::start_with(&yaml, &env, &[]).await;
    assert!(
        !proxy.logs().contains("not supported"),
        "a deployment was skipped:\n{}",
        proxy.logs()
    );
    for (prefix, _) in PROVIDERS {
        let (status, _, body) = proxy
            .chat(&chat_body(&format!("{prefix}-model"), "hi"))
            .await;
        assert_eq!(status, 200, "{prefix}: {body}");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("from {prefix}")
        );
        let sent = up.last_body(prefix).unwrap();
        assert_eq!(sent["model"], format!("org/{prefix}-7b"), "{prefix}");
        let call = up
            .recorded()
            .into_iter()
            .rfind(|r| r.deployment == *prefix)
            .unwrap();
        assert_eq!(
            call.headers["authorization"],
            format!("Bearer sk-{prefix}"),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn a_bare_claude_name_is_anthropics_and_a_bare_gemini_name_is_not_sent_to_openai() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n  \
         - model_name: sonnet\n    litellm_params:\n      model: claude-3-5-sonnet-20240620\n      \
         api_base: {}\n      api_key: sk-ant-test\n  \
         - model_name: flash\n    litellm_params:\n      model: gemini-1.5-flash\n      \
         api_key: google-test-key\n",
        up.api_base("anthropic")
    );
    let proxy = Proxy::start(&yaml).await;
    let _ = proxy.chat(&chat_body("sonnet", "hi")).await;
    let call = up.recorded().into_iter().next().unwrap();
    assert_eq!(call.path, "/v1/messages");
    assert_eq!(call.headers["x-api-key"], "sk-ant-test");
    assert_eq!(call.body["model"], "claude-3-5-sonnet-20240620");

    assert!(
        proxy.logs().contains(
            "model_list[1].litellm_params.model: provider \\\"vertex_ai\\\" is not supported"
        ),
        "{}",
        proxy.logs()
    );
    let before = up.recorded().len();
    let (status, _, body) = proxy.chat(&chat_body("flash", "hi")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(up.recorded().len(), before, "nothing was sent anywhere");
}

#[tokio::test]
async fn an_organization_list_serves_from_a_deployment_per_organization() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-x\n      \
         api_base: {}\n      api_key: sk-x\n      organization: [org-one, org-two]\n",
        up.api_base("a")
    );
    let proxy = Proxy::start(&yaml).await;
    for _ in 0..20 {
        let (status, _, body) = proxy.chat(&chat_body("m", "hi")).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut organizations: Vec<String> = up
        .recorded()
        .iter()
        .map(|r| {
            r.headers["openai-organization"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    organizations.sort();
    organizations.dedup();
    assert_eq!(organizations, ["org-one", "org-two"]);

    let info = proxy.get_json("/v1/model/info").await;
    let listed: Vec<(String, String)> = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["model_info"]["id"].as_str().unwrap().to_owned(),
                d["litellm_params"]["organization"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("m.0".to_owned(), "org-one".to_owned()),
            ("m.1".to_owned(), "org-two".to_owned())
        ]
    );
}

/// LiteLLM's `mock_response` on a deployment of a real provider (its load
/// tests' and demos' stand-in): the deployment answers with it and never
/// calls the provider, even one this gateway does not speak; a
/// `litellm.<Error>` answer fails with that error, and fallbacks follow.
#[tokio::test]
async fn a_mock_response_answers_without_calling_the_provider() {
    let up = FakeUpstream::start().await;
    let yaml = format!(
        "model_list:\n\
         \x20 - model_name: stand-in\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {}\n      api_key: sk-unused\n      mock_response: ok from A\n\
         \x20 - model_name: elsewhere\n    litellm_params:\n      model: bedrock/anthropic.claude-3\n      mock_response: ok from bedrock\n\
         \x20 - model_name: limited\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-unused\n      mock_response: litellm.RateLimitError\n\
         \x20 - model_name: backup\n    litellm_params:\n      model: openai/backup\n      api_base: {}\n\
         router_settings:\n  num_retries: 0\n  fallbacks: [{{limited: [backup]}}]\n",
        up.api_base("stand-in"),
        up.api_base("backup"),
    );
    up.set("backup", Behavior::ok("from backup"));
    let proxy = Proxy::start(&yaml).await;

    let (status, _, body) = proxy.chat(&chat_body("stand-in", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "ok from A");
    assert_eq!(up.calls("stand-in"), 0, "the provider was not called");

    let (status, _, body) = proxy.chat(&chat_body("elsewhere", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "ok from bedrock");

    let (status, headers, body) = proxy.chat(&chat_body("limited", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from backup");
    assert_eq!(
        headers
            .get("x-conclave-fallback")
            .and_then(|v| v.to_str().ok()),
        Some("backup")
    );
    assert!(
        !proxy.logs().contains("deployment skipped"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn a_login_in_the_api_base_is_sent_as_basic_auth() {
    // A server behind basic auth is configured as LiteLLM users write it:
    // the login in the URL, which never reaches the server by itself.
    let up = FakeUpstream::start().await;
    up.set("login", Behavior::ok("behind a login"));
    let base = up
        .api_base("login")
        .replacen("://", "://team:pa55%40word@", 1);
    let yaml = format!(
        "model_list:\n  - model_name: local\n    litellm_params:\n      model: openai/m\n      \
         api_base: {base}\n      api_key: sk-local\n"
    );
    let proxy = Proxy::start(&yaml).await;
    let (status, _, body) = proxy.chat(&chat_body("local", "hi")).await;
    assert_eq!(status, 200, "{body}");
    let call = up.recorded().pop().unwrap();
    // base64 of "team:pa55@word"
    assert_eq!(call.headers["authorization"], "Basic dGVhbTpwYTU1QHdvcmQ=");
    assert!(!proxy.logs().contains("pa55"), "the login reached the log");
}
