//! The provider table: each prefix's default api_base, key variables and
//! dialect. Every entry speaks OpenAI's wire format at its api_base, but
//! `anthropic`, which speaks Anthropic's Messages API natively.

/// How a provider addresses deployments and sends its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{api_base}/chat/completions`, `Authorization: Bearer`.
    OpenAi,
    /// `{api_base}/openai/deployments/{model}/chat/completions?api-version=`, `api-key` header.
    Azure,
    /// `{api_base}/v1/messages`, `x-api-key` and `anthropic-version` headers;
    /// chat requests and answers translated ([`super::anthropic`]).
    Anthropic,
}

/// One provider prefix.
#[derive(Debug)]
pub struct ProviderSpec {
    pub name: &'static str,
    /// Used when the deployment sets no api_base; `None` means api_base is required.
    pub api_base: Option<&'static str>,
    /// Environment variables that may hold the key, tried in order.
    pub key_env: &'static [&'static str],
    /// Environment variable that may hold the api_base.
    pub base_env: Option<&'static str>,
    /// The path an api_base given as a bare address (no path) gets: Ollama
    /// serves OpenAI's API under `/v1`, and LiteLLM configs name its bare
    /// address, since LiteLLM speaks its native API.
    pub bare_base_path: Option<&'static str>,
    /// Whether the provider refuses requests without a key.
    pub key_required: bool,
    pub dialect: Dialect,
    /// Whether it serves only OpenAI's completions endpoint, so that a chat
    /// request is sent there as a prompt ([`super::text_completion`]).
    pub completions_only: bool,
}

const fn spec(
    name: &'static str,
    api_base: Option<&'static str>,
    key_env: &'static [&'static str],
    key_required: bool,
) -> ProviderSpec {
    ProviderSpec {
        name,
        api_base,
        key_env,
        base_env: None,
        bare_base_path: None,
        key_required,
        dialect: Dialect::OpenAi,
        completions_only: false,
    }
}

static PROVIDERS: &[ProviderSpec] = &[
    ProviderSpec {
        base_env: Some("OPENAI_API_BASE"),
        ..spec(
            "openai",
            Some("https://api.openai.com/v1"),
            &["OPENAI_API_KEY"],
            false,
        )
    },
    ProviderSpec {
        base_env: Some("AZURE_API_BASE"),
        dialect: Dialect::Azure,
        ..spec(
            "azure",
            None,
            &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        dialect: Dialect::Anthropic,
        ..spec(
            "anthropic",
            Some("https://api.anthropic.com"),
            &["ANTHROPIC_API_KEY"],
            true,
        )
    },
    // Anthropic's OpenAI-compatible endpoint (no prompt caching, no thinking blocks).
    spec(
        "anthropic_openai",
        Some("https://api.anthropic.com/v1"),
        &["ANTHROPIC_API_KEY"],
        true,
    ),
    spec(
        "gemini",
        Some("https://generativelanguage.googleapis.com/v1beta/openai"),
        &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        true,
    ),
    spec(
        "groq",
        Some("https://api.groq.com/openai/v1"),
        &["GROQ_API_KEY"],
        true,
    ),
    spec(
        "cerebras",
        Some("https://api.cerebras.ai/v1"),
        &["CEREBRAS_API_KEY"],
        true,
    ),
    spec(
        "openrouter",
        Some("https://openrouter.ai/api/v1"),
        &["OPENROUTER_API_KEY"],
        true,
    ),
    spec(
        "together_ai",
        Some("https://api.together.xyz/v1"),
        &[
            "TOGETHERAI_API_KEY",
            "TOGETHER_API_KEY",
            "TOGETHER_AI_API_KEY",
        ],
        true,
    ),
    spec(
        "fireworks_ai",
        Some("https://api.fireworks.ai/inference/v1"),
        &["FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"],
        true,
    ),
    spec(
        "deepseek",
        Some("https://api.deepseek.com/v1"),
        &["DEEPSEEK_API_KEY"],
        true,
    ),
    spec(
        "mistral",
        Some("https://api.mistral.ai/v1"),
        &["MISTRAL_API_KEY"],
        true,
    ),
    spec("xai", Some("https://api.x.ai/v1"), &["XAI_API_KEY"], true),
    spec(
        "perplexity",
        Some("https://api.perplexity.ai"),
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        true,
    ),
    spec(
        "chutes",
        Some("https://llm.chutes.ai/v1"),
        &["CHUTES_API_KEY"],
        true,
    ),
    // Voyage AI: embeddings only (`/v1/embeddings` in OpenAI's shape).
    spec(
        "voyage",
        Some("https://api.voyageai.com/v1"),
        &["VOYAGE_API_KEY"],
        true,
    ),
    ProviderSpec {
        base_env: Some("HOSTED_VLLM_API_BASE"),
        ..spec("hosted_vllm", None, &["HOSTED_VLLM_API_KEY"], false)
    },
    ProviderSpec {
        base_env: Some("HOSTED_VLLM_API_BASE"),
        ..spec(
            "vllm",
            None,
            &["HOSTED_VLLM_API_KEY", "VLLM_API_KEY"],
            false,
        )
    },
    ProviderSpec {
        base_env: Some("OLLAMA_API_BASE"),
        bare_base_path: Some("/v1"),
        ..spec(
            "ollama",
            Some("http://localhost:11434/v1"),
            &["OLLAMA_API_KEY"],
            false,
        )
    },
    ProviderSpec {
        base_env: Some("OLLAMA_API_BASE"),
        bare_base_path: Some("/v1"),
        ..spec(
            "ollama_chat",
            Some("http://localhost:11434/v1"),
            &["OLLAMA_API_KEY"],
            false,
        )
    },
    ProviderSpec {
        base_env: Some("LM_STUDIO_API_BASE"),
        ..spec(
            "lm_studio",
            Some("http://localhost:1234/v1"),
            &["LM_STUDIO_API_KEY"],
            false,
        )
    },
    // LiteLLM's names for OpenAI-compatible servers: OpenAI's completions
    // endpoint, any OpenAI-compatible server, another LiteLLM-style proxy,
    // and NVIDIA's hosted models.
    ProviderSpec {
        base_env: Some("OPENAI_API_BASE"),
        completions_only: true,
        ..spec(
            "text-completion-openai",
            Some("https://api.openai.com/v1"),
            &["OPENAI_API_KEY"],
            false,
        )
    },
    spec("custom_openai", None, &["OPENAI_API_KEY"], false),
    ProviderSpec {
        base_env: Some("LITELLM_PROXY_API_BASE"),
        ..spec("litellm_proxy", None, &["LITELLM_PROXY_API_KEY"], false)
    },
    ProviderSpec {
        base_env: Some("NVIDIA_NIM_API_BASE"),
        ..spec(
            "nvidia_nim",
            Some("https://integrate.api.nvidia.com/v1"),
            &["NVIDIA_NIM_API_KEY"],
            true,
        )
    },
    // More of LiteLLM's OpenAI-compatible providers, with its default
    // api_base and key variables; `databricks` needs its workspace's
    // `.../serving-endpoints` as api_base (or DATABRICKS_API_BASE).
    ProviderSpec {
        base_env: Some("DEEPINFRA_API_BASE"),
        ..spec(
            "deepinfra",
            Some("https://api.deepinfra.com/v1/openai"),
            &["DEEPINFRA_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("SAMBANOVA_API_BASE"),
        ..spec(
            "sambanova",
            Some("https://api.sambanova.ai/v1"),
            &["SAMBANOVA_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("NEBIUS_API_BASE"),
        ..spec(
            "nebius",
            Some("https://api.studio.nebius.ai/v1"),
            &["NEBIUS_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("NOVITA_API_BASE"),
        ..spec(
            "novita",
            Some("https://api.novita.ai/v3/openai"),
            &["NOVITA_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("HYPERBOLIC_API_BASE"),
        ..spec(
            "hyperbolic",
            Some("https://api.hyperbolic.xyz/v1"),
            &["HYPERBOLIC_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("LAMBDA_API_BASE"),
        ..spec(
            "lambda_ai",
            Some("https://api.lambda.ai/v1"),
            &["LAMBDA_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("FEATHERLESS_API_BASE"),
        ..spec(
            "featherless_ai",
            Some("https://api.featherless.ai/v1"),
            &["FEATHERLESS_AI_API_KEY", "FEATHERLESS_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("NSCALE_API_BASE"),
        ..spec(
            "nscale",
            Some("https://inference.api.nscale.com/v1"),
            &["NSCALE_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("FRIENDLI_API_BASE"),
        ..spec(
            "friendliai",
            Some("https://api.friendli.ai/serverless/v1"),
            &["FRIENDLIAI_API_KEY", "FRIENDLI_TOKEN"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("GITHUB_API_BASE"),
        ..spec(
            "github",
            Some("https://models.inference.ai.azure.com"),
            &["GITHUB_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("DASHSCOPE_API_BASE"),
        ..spec(
            "dashscope",
            Some("https://dashscope.aliyuncs.com/compatible-mode/v1"),
            &["DASHSCOPE_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("MOONSHOT_API_BASE"),
        ..spec(
            "moonshot",
            Some("https://api.moonshot.ai/v1"),
            &["MOONSHOT_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("ZAI_API_BASE"),
        ..spec(
            "zai",
            Some("https://api.z.ai/api/paas/v4"),
            &["ZAI_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("VOLCENGINE_API_BASE"),
        ..spec(
            "volcengine",
            Some("https://ark.cn-beijing.volces.com/api/v3"),
            &["VOLCENGINE_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("CODESTRAL_API_BASE"),
        ..spec(
            "codestral",
            Some("https://codestral.mistral.ai/v1"),
            &["CODESTRAL_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("LLAMA_API_BASE"),
        ..spec(
            "meta_llama",
            Some("https://api.llama.com/compat/v1"),
            &["LLAMA_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("WANDB_API_BASE"),
        ..spec(
            "wandb",
            Some("https://api.inference.wandb.ai/v1"),
            &["WANDB_API_KEY"],
            true,
        )
    },
    ProviderSpec {
        base_env: Some("DATABRICKS_API_BASE"),
        ..spec("databricks", None, &["DATABRICKS_API_KEY"], true)
    },
    ProviderSpec {
        base_env: Some("LLAMAFILE_API_BASE"),
        ..spec(
            "llamafile",
            Some("http://127.0.0.1:8080/v1"),
            &["LLAMAFILE_API_KEY"],
            false,
        )
    },
];

/// Every provider's spec.
pub fn specs() -> impl Iterator<Item = &'static ProviderSpec> {
    PROVIDERS.iter()
}

/// The spec for a prefix.
pub fn lookup(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Every supported prefix (plus `mock`), for messages and listings.
pub fn names() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().map(|p| p.name).chain(["mock"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_provider_the_config_accepts_has_one_spec() {
        let specs: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
        assert_eq!(specs, crate::config::HTTP_PROVIDERS);
    }
}
