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

/// LiteLLM's other provider prefixes: a deployment naming one is skipped
/// with a warning (the config still loads); a name that is neither this nor
/// a served provider, but a near miss of one, is a typo and refused.
pub const LITELLM_ONLY_PROVIDERS: &[&str] = &[
    "openai_like",
    "jina_ai",
    "chatgpt",
    "cohere",
    "cohere_chat",
    "clarifai",
    "anthropic_text",
    "bytez",
    "replicate",
    "runwayml",
    "aws_polly",
    "huggingface",
    "datarobot",
    "vertex_ai",
    "vertex_ai_beta",
    "palm",
    "ai21",
    "ai21_chat",
    "baseten",
    "black_forest_labs",
    "azure_text",
    "azure_ai",
    "sagemaker",
    "sagemaker_chat",
    "sagemaker_nova",
    "bedrock",
    "nlp_cloud",
    "petals",
    "oobabooga",
    "ollama_chat2",
    "anyscale",
    "milvus",
    "text-completion-codestral",
    "v0",
    "morph",
    "maritalk",
    "cloudflare",
    "xinference",
    "watsonx",
    "watsonx_text",
    "triton",
    "predibase",
    "empower",
    "compactifai",
    "docker_model_runner",
    "custom",
    "galadriel",
    "infinity",
    "deepgram",
    "elevenlabs",
    "aiohttp_openai",
    "langfuse",
    "humanloop",
    "topaz",
    "assemblyai",
    "github_copilot",
    "snowflake",
    "gradient_ai",
    "pg_vector",
    "recraft",
    "fal_ai",
    "heroku",
    "aiml",
    "cometapi",
    "oci",
    "auto_router",
    "vercel_ai_gateway",
    "dotprompt",
    "ovhcloud",
    "lemonade",
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

/// The canned answer, which every provider's deployments read (see
/// [`LitellmParams::mock_answer`]).
pub const MOCK_RESPONSE: &str = "mock_response";

/// litellm_params keys a mock deployment reads (canned answers, injected failures).
const MOCK_KEYS: &[&str] = &[
    MOCK_RESPONSE,
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
    /// Splits `provider/model`; a bare name is `custom_llm_provider`'s, else
    /// the provider LiteLLM reads it as ([`provider_of_bare_name`]).
    pub fn provider_and_model(&self) -> (&str, &str) {
        match self.model.split_once('/') {
            Some((provider, model)) => (provider, model),
            None => (
                self.custom_llm_provider
                    .as_deref()
                    .unwrap_or_else(|| provider_of_bare_name(&self.model, self.api_base.is_some())),
                self.model.as_str(),
            ),
        }
    }

    /// The provider prefix of `model`.
    pub fn provider(&self) -> &str {
        self.provider_and_model().0
    }

    /// LiteLLM's `mock_response` on a deployment of any other provider than
    /// `mock` and `exec`: such a deployment answers with it and never calls
    /// its provider, as LiteLLM's does (the stand-ins of load tests and
    /// demos), whether or not this gateway speaks that provider.
    pub fn mock_answer(&self) -> Option<&serde_yaml::Value> {
        if matches!(self.provider(), MOCK_PROVIDER | EXEC_PROVIDER) {
            return None;
        }
        self.extra
            .get(MOCK_RESPONSE)
            .filter(|value| !value.is_null())
    }

    /// Whether the gateway serves this deployment: its provider is one it
    /// speaks, or it answers with a mock answer ([`Self::mock_answer`]).
    pub fn is_served(&self) -> bool {
        is_supported_provider(self.provider()) || self.mock_answer().is_some()
    }
}

/// The provider of a model named without a prefix, as LiteLLM reads its
/// model families: `claude-*` is Anthropic's; without an api_base,
/// `gemini-*` is Vertex AI's and `command-*` Cohere's (providers this
/// gateway does not speak, so such a deployment is skipped with a warning
/// rather than sent, with its key, to OpenAI); anything else is OpenAI's,
/// or an OpenAI-compatible server's at the given api_base.
pub fn provider_of_bare_name(model: &str, has_api_base: bool) -> &'static str {
    if model.starts_with("claude") {
        "anthropic"
    } else if !has_api_base && model.starts_with("gemini") {
        "vertex_ai"
    } else if !has_api_base && model.starts_with("command") {
        "cohere"
    } else {
        "openai"
    }
}

/// The variable naming the environment a gateway runs in, and the
/// environments LiteLLM knows.
pub const ENVIRONMENT_VARIABLE: &str = "LITELLM_ENVIRONMENT";
pub const ENVIRONMENTS: &[&str] = &["development", "staging", "production"];

impl ModelEntry {
    /// Whether the entry is loaded in the environment `env` names: LiteLLM's
    /// `model_info.supported_environments` lists where it is, and with
    /// [`ENVIRONMENT_VARIABLE`] set, an entry listing others is left out.
    /// Without the variable, or without the list, it is loaded.
    pub fn in_environment(&self, env: &super::Env) -> bool {
        let Some(listed) = self
            .model_info
            .as_ref()
            .and_then(|info| info.get("supported_environments"))
            .and_then(serde_yaml::Value::as_sequence)
        else {
            return true;
        };
        env.get(ENVIRONMENT_VARIABLE)
            .is_none_or(|current| listed.iter().any(|e| e.as_str() == Some(current.trim())))
    }

    /// The entry's own `model_info.id`, a string or a number: the name its
    /// deployment goes by in headers, logs and listings.
    pub fn written_id(&self) -> Option<String> {
        let id = self.model_info.as_ref()?.get("id")?;
        id.as_str()
            .map(str::to_owned)
            .or_else(|| id.as_u64().map(|n| n.to_string()))
    }

    /// This entry once per organization when it lists several (LiteLLM's
    /// `organization: [org-1, org-2]` is a deployment of each), else as it
    /// is. A written `model_info.id` gets `:<organization>` after it.
    pub fn per_organization(&self) -> Vec<std::borrow::Cow<'_, ModelEntry>> {
        use std::borrow::Cow;
        if self.litellm_params.organizations.is_empty() {
            return vec![Cow::Borrowed(self)];
        }
        let id = self.written_id();
        self.litellm_params
            .organizations
            .iter()
            .map(|org| {
                let mut one = self.clone();
                one.litellm_params.organization = Some(org.clone());
                one.litellm_params.organizations.clear();
                if let (Some(id), Some(info)) = (&id, &mut one.model_info) {
                    info.insert(
                        "id".into(),
                        serde_yaml::Value::String(format!("{id}:{org}")),
                    );
                }
                Cow::Owned(one)
            })
            .collect()
    }

    /// Gathers settings LiteLLM reads from more than one place into the
    /// field the router reads: `base_url` (which wins) into `api_base`, and
    /// rpm and tpm from litellm_params, else the entry itself, else
    /// model_info.
    pub fn gather_settings(&mut self) {
        if let Some(base_url) = self.litellm_params.base_url.take() {
            self.litellm_params.api_base = Some(base_url);
        }
        let info = |key: &str| {
            self.model_info
                .as_ref()
                .and_then(|i| i.get(key))
                .and_then(serde_yaml::Value::as_u64)
        };
        let rpm = self.litellm_params.rpm.or(self.rpm).or_else(|| info("rpm"));
        let tpm = self.litellm_params.tpm.or(self.tpm).or_else(|| info("tpm"));
        self.litellm_params.rpm = rpm;
        self.litellm_params.tpm = tpm;
    }

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

/// Every litellm_params key conclave reads, for some provider.
pub fn known_param_keys() -> impl Iterator<Item = &'static str> {
    [
        super::TYPED_PARAM_KEYS,
        REQUEST_DEFAULT_KEYS,
        MOCK_KEYS,
        EXEC_KEYS,
        PRICE_KEYS,
        RESPONSES_KEYS,
        &[EXTRA_BODY],
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// Whether `key` in litellm_params is a request default conclave forwards.
pub fn is_request_default(key: &str) -> bool {
    REQUEST_DEFAULT_KEYS.contains(&key)
}

/// LiteLLM's `extra_body`: fields added to every request body the
/// deployment sends, as request defaults (a client's own value wins).
pub const EXTRA_BODY: &str = "extra_body";

/// Request fields `extra_body` may not set: the gateway sets them on every
/// call, and no model answers without `messages`.
pub const GATEWAY_FIELDS: &[&str] = &["model", "stream", "stream_options", "messages"];

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
        || key == MOCK_RESPONSE && provider != EXEC_PROVIDER
        || key == EXTRA_BODY && provider != MOCK_PROVIDER && provider != EXEC_PROVIDER
        || PRICE_KEYS.contains(&key)
        || provider == "openai" && RESPONSES_KEYS.contains(&key)
        || provider == MOCK_PROVIDER && MOCK_KEYS.contains(&key)
        || provider == EXEC_PROVIDER && EXEC_KEYS.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed keys listed for hints are the struct's own fields, all of
    /// them (its Debug output names every field).
    #[test]
    fn the_typed_param_keys_are_the_fields_of_litellm_params() {
        let debug = format!("{:?}", LitellmParams::default());
        let mut fields: Vec<&str> = debug
            .split([',', '{'])
            .filter_map(|part| part.split_once(':').map(|(name, _)| name.trim()))
            .filter(|name| !["organizations", "no_env_key", "extra"].contains(name))
            .collect();
        let mut listed = crate::config::TYPED_PARAM_KEYS.to_vec();
        fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }

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
    fn a_bare_name_of_another_providers_family_is_that_providers() {
        assert_eq!(
            params("claude-3-5-sonnet-20240620", None).provider_and_model(),
            ("anthropic", "claude-3-5-sonnet-20240620")
        );
        assert_eq!(params("gemini-1.5-flash", None).provider(), "vertex_ai");
        assert_eq!(params("command-r-plus", None).provider(), "cohere");
        assert_eq!(params("o3-mini", None).provider(), "openai");
        let mut served = params("gemini-1.5-flash", None);
        served.api_base = Some("http://127.0.0.1:8000/v1".into());
        assert_eq!(served.provider(), "openai");
        assert_eq!(params("claude-3", Some("openai")).provider(), "openai");
    }

    #[test]
    fn base_url_is_read_as_api_base_and_wins_over_it() {
        let mut entry: ModelEntry = serde_yaml::from_str(
            "{model_name: m, litellm_params: {model: hosted_vllm/x, base_url: \"http://127.0.0.1:8000/v1\"}}",
        )
        .unwrap();
        entry.gather_settings();
        assert_eq!(
            entry.litellm_params.api_base.as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
        assert!(entry.litellm_params.extra.is_empty());
        let mut both: ModelEntry = serde_yaml::from_str(
            "{model_name: m, litellm_params: {model: openai/x, api_base: \"http://a/v1\", base_url: \"http://b/v1\"}}",
        )
        .unwrap();
        both.gather_settings();
        assert_eq!(both.litellm_params.api_base.as_deref(), Some("http://b/v1"));
    }

    #[test]
    fn rpm_and_tpm_are_read_from_the_entry_and_model_info_too() {
        let mut entry: ModelEntry = serde_yaml::from_str(
            "{model_name: m, litellm_params: {model: openai/x, tpm: 5}, rpm: 10, \
             model_info: {rpm: 99, tpm: 99}}",
        )
        .unwrap();
        entry.gather_settings();
        assert_eq!(entry.litellm_params.rpm, Some(10));
        assert_eq!(entry.litellm_params.tpm, Some(5));
        let mut entry: ModelEntry = serde_yaml::from_str(
            "{model_name: m, litellm_params: {model: openai/x}, model_info: {tpm: 7}}",
        )
        .unwrap();
        entry.gather_settings();
        assert_eq!(entry.litellm_params.tpm, Some(7));
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
        assert!(provider_reads("openai", "mock_response"));
        assert!(!provider_reads("openai", "mock_latency_ms"));
        assert!(!provider_reads("exec", "mock_response"));
        assert!(provider_reads("exec", "command"));
        assert!(provider_reads("openai", "supports_responses"));
        assert!(!provider_reads("groq", "supported_endpoints"));
    }
}
