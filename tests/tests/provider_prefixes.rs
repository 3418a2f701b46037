//! LiteLLM's OpenAI-compatible provider prefixes through the real binary:
//! each entry loads (no deployment skipped), its calls carry the key from
//! the provider's own variable, and the model after the prefix goes upstream
//! as written.
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
