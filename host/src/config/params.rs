//! What a model_list entry says before anything is built from it: its
//! provider prefix, whether conclave serves that provider, which of the keys
//! without a field of their own the provider reads, and whether the entry is
//! a composite profile rather than a deployment.
//!
//! The config owns this vocabulary so that loading can tell read keys from
//! ignored ones on its own; the providers and the router build on it.

use super::{LitellmParams, ModelEntry};

/// Providers served over OpenAI's wire format. `providers::table` holds each
/// one's api_base, key variables and dialect, one entry per name here.
pub const HTTP_PROVIDERS: &[&str] = &[
    "openai",
    "azure",
    "anthropic",
    "anthropic_openai",
    "gemini",
    "groq",
    "cerebras",
    "openrouter",
    "together_ai",
    "fireworks_ai",
    "deepseek",
    "mistral",
    "xai",
    "perplexity",
    "chutes",
    "voyage",
    "hosted_vllm",
    "vllm",
    "ollama",
    "ollama_chat",
    "lm_studio",
    "text-completion-openai",
    "custom_openai",
    "litellm_proxy",
    "nvidia_nim",
    "deepinfra",
    "sambanova",
    "nebius",
    "novita",
    "hyperbolic",
    "lambda_ai",
    "featherless_ai",
    "nscale",
    "friendliai",
    "github",
    "dashscope",
    "moonshot",
    "zai",
    "volcengine",
    "codestral",
    "meta_llama",
    "wandb",
    "databricks",
    "llamafile",
];

/// The in-process provider that answers without a network (demos, tests).
pub const MOCK_PROVIDER: &str = "mock";

/// The provider that answers by running a program per request.
pub const EXEC_PROVIDER: &str = "exec";

/// litellm_params keys that are OpenAI request fields: every deployment
/// sends them as per-request defaults.
const REQUEST_DEFAULT_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "n",
    "reasoning_effort",
    "response_format",
    "user",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "thinking",
];

/// litellm_params keys a mock deployment reads (canned answers, injected failures).
const MOCK_KEYS: &[&str] = &[
    "mock_response",
    "mock_latency_ms",
    "mock_chunks",
    "mock_chunk_delay_ms",
    "mock_error_status",
    "mock_error_count",
    "mock_error_message",
    "mock_break_after_chunks",
];

/// litellm_params keys an exec deployment reads (the program and its limits).
const EXEC_KEYS: &[&str] = &[
    "command",
    "args",
    "prompt_via",
    "max_output_bytes",
    "io_log_path",
    "env",
];

impl LitellmParams {
    /// Splits `provider/model`; a bare name is taken as OpenAI's (or
    /// `custom_llm_provider`'s), as LiteLLM does.
    pub fn provider_and_model(&self) -> (&str, &str) {
        match self.model.split_once('/') {
            Some((provider, model)) => (provider, model),
            None => (
                self.custom_llm_provider.as_deref().unwrap_or("openai"),
                self.model.as_str(),
            ),
        }
    }

    /// The provider prefix of `model`.
    pub fn provider(&self) -> &str {
        self.provider_and_model().0
    }
}

impl ModelEntry {
    /// Whether this entry is a composite profile rather than a deployment.
    pub fn is_composite(&self) -> bool {
        let p = &self.litellm_params;
        p.model.starts_with("composite/")
            || p.model.starts_with("profile/")
            || p.custom_llm_provider.as_deref() == Some("composite")
    }
}

/// Whether conclave can serve deployments of `provider` (an HTTP provider,
/// `mock` or `exec`).
pub fn is_supported_provider(provider: &str) -> bool {
    provider == MOCK_PROVIDER || provider == EXEC_PROVIDER || HTTP_PROVIDERS.contains(&provider)
}

/// Whether `key` in litellm_params is a request default conclave forwards.
pub fn is_request_default(key: &str) -> bool {
    REQUEST_DEFAULT_KEYS.contains(&key)
}

/// Per-token prices a deployment may set in litellm_params as well as in
/// model_info (LiteLLM accepts both); read by the pricing, never forwarded.
pub const PRICE_KEYS: &[&str] = &["input_cost_per_token", "output_cost_per_token"];

/// The keys saying an `openai/` deployment serves the Responses API itself:
/// `supports_responses: true`, or LiteLLM's `supported_endpoints` listing
/// `/v1/responses`; read from model_info and litellm_params alike.
pub const RESPONSES_KEYS: &[&str] = &["supports_responses", "supported_endpoints"];

/// Whether `settings` (a deployment's model_info or litellm_params) say it
/// serves `POST /responses` natively (see [`RESPONSES_KEYS`]).
pub fn declares_responses(
    settings: &std::collections::BTreeMap<String, serde_yaml::Value>,
) -> bool {
    let flag = settings
        .get("supports_responses")
        .and_then(serde_yaml::Value::as_bool)
        .unwrap_or(false);
    let listed = settings
        .get("supported_endpoints")
        .and_then(serde_yaml::Value::as_sequence)
        .is_some_and(|list| {
            list.iter()
                .any(|e| matches!(e.as_str(), Some("/v1/responses" | "/responses")))
        });
    flag || listed
}

/// Whether a deployment of `provider` reads `key` from the litellm_params
/// that have no field of their own (request defaults, prices, mock and exec
/// settings, the Responses switch of `openai/`).
pub fn provider_reads(provider: &str, key: &str) -> bool {
    is_request_default(key)
        || PRICE_KEYS.contains(&key)
        || provider == "openai" && RESPONSES_KEYS.contains(&key)
        || provider == MOCK_PROVIDER && MOCK_KEYS.contains(&key)
        || provider == EXEC_PROVIDER && EXEC_KEYS.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(model: &str, custom: Option<&str>) -> LitellmParams {
        LitellmParams {
            model: model.into(),
            custom_llm_provider: custom.map(str::to_owned),
            ..LitellmParams::default()
        }
    }

    #[test]
    fn provider_prefix_defaults_to_openai_or_custom_provider() {
        assert_eq!(
            params("groq/llama", None).provider_and_model(),
            ("groq", "llama")
        );
        assert_eq!(
            params("gpt-4o", None).provider_and_model(),
            ("openai", "gpt-4o")
        );
        assert_eq!(params("m", Some("mock")).provider(), "mock");
    }

    #[test]
    fn composite_entries_are_told_apart_from_deployments() {
        let entry = |model: &str, custom: Option<&str>| ModelEntry {
            litellm_params: params(model, custom),
            ..ModelEntry::default()
        };
        assert!(entry("composite/moa", None).is_composite());
        assert!(entry("profile/x", None).is_composite());
        assert!(entry("x", Some("composite")).is_composite());
        assert!(!entry("mock/echo", None).is_composite());
    }

    #[test]
    fn providers_read_their_own_keys_and_request_defaults() {
        assert!(is_supported_provider("mock") && is_supported_provider("exec"));
        assert!(is_supported_provider("azure") && !is_supported_provider("bedrock"));
        assert!(provider_reads("openai", "temperature"));
        assert!(provider_reads("mock", "mock_response"));
        assert!(!provider_reads("openai", "mock_response"));
        assert!(provider_reads("exec", "command"));
        assert!(provider_reads("openai", "supports_responses"));
        assert!(!provider_reads("groq", "supported_endpoints"));
    }
}
