//! LiteLLM features this gateway does not have, by the key that turns them
//! on: the warning for such a key says what happens instead, where an
//! unknown key's would only say it is ignored, so that an operator moving a
//! LiteLLM config over learns what no longer runs.

/// Key path, and what the gateway does instead.
const FEATURES: &[(&str, &str)] = &[
    (
        "general_settings.pass_through_endpoints",
        "LiteLLM's pass-through routes are not served (404); expose the upstream as a model instead",
    ),
    (
        "general_settings.custom_auth",
        "no custom auth function runs; requests present the master key or a virtual key",
    ),
    (
        "general_settings.enable_jwt_auth",
        "JWTs are not accepted; requests present the master key or a virtual key",
    ),
    (
        "general_settings.litellm_jwtauth",
        "JWTs are not accepted; requests present the master key or a virtual key",
    ),
    (
        "general_settings.alerting",
        "no alerts are sent (Slack, webhooks, email); watch /metrics and the logs",
    ),
    (
        "general_settings.alert_to_webhook_url",
        "no alerts are sent; watch /metrics and the logs",
    ),
    (
        "general_settings.alert_types",
        "no alerts are sent; watch /metrics and the logs",
    ),
    (
        "general_settings.ui_access_mode",
        "the dashboard at /ui admits keys as docs/dashboard.md says",
    ),
    (
        "general_settings.key_generation_settings",
        "not enforced: who may make keys is as docs/keys.md says (administrators, and internal users for their own keys)",
    ),
    (
        "litellm_settings.key_generation_settings",
        "not enforced: who may make keys is as docs/keys.md says (administrators, and internal users for their own keys)",
    ),
    (
        "litellm_settings.default_internal_user_params",
        "not applied: a new user gets only the fields its /user/new body sets",
    ),
    (
        "general_settings.apply_user_budget_to_team_keys",
        "not applied: a team's key is held to its own and its team's budgets, not its user's personal one (LiteLLM's default)",
    ),
    (
        "litellm_settings.max_internal_user_budget",
        "not enforced: set max_budget on each user (or key) instead",
    ),
    (
        "litellm_settings.default_team_settings",
        "per-team logging settings are not read: callbacks other than prometheus and otel do not run",
    ),
    (
        "general_settings.finetune_settings",
        "fine-tuning routes are not served",
    ),
    (
        "general_settings.files_settings",
        "file routes are not served",
    ),
    (
        "litellm_settings.s3_callback_params",
        "callbacks other than prometheus and otel do not run",
    ),
    (
        "litellm_settings.callback_settings",
        "callbacks other than prometheus and otel do not run",
    ),
    (
        "general_settings.use_redis_transaction_buffer",
        "spend is written by the gateway's own batch writer",
    ),
    (
        "general_settings.max_parallel_requests",
        "not read: set max_parallel_requests on keys or deployments, or general_settings.global_max_parallel_requests for the whole gateway",
    ),
    (
        "general_settings.enable_oauth2_auth",
        "OAuth2 tokens are not accepted; requests present the master key or a virtual key",
    ),
    ("mcp_servers", "MCP servers are not served"),
    (
        "router_settings.model_group_retry_policy",
        "retries per model group are not read: router_settings.retry_policy and num_retries apply to every group",
    ),
    (
        "router_settings.cache_responses",
        "not read: answers are cached when litellm_settings.cache is true",
    ),
    (
        "router_settings.default_litellm_params",
        "not applied: write these litellm_params on each model_list entry",
    ),
    (
        "general_settings.allow_requests_on_db_unavailable",
        "a key the gateway has not cached is refused (503) while the key store cannot be reached",
    ),
];

/// What the gateway does instead of the LiteLLM feature the ignored key at
/// `path` turns on, when it is one.
pub fn instead(path: &str) -> Option<&'static str> {
    FEATURES
        .iter()
        .find(|(key, _)| *key == path)
        .map(|(_, instead)| *instead)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Env, load_str};

    #[test]
    fn a_litellm_feature_key_says_what_happens_instead() {
        let loaded = load_str(
            "model_list: []\ngeneral_settings:\n  pass_through_endpoints: [{path: /x, target: http://up}]\n  routing_stratgy: x\n",
            Path::new("t.yaml"),
            Env::default(),
        )
        .unwrap();
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains("general_settings.pass_through_endpoints: LiteLLM feature not supported, ignored: LiteLLM's pass-through routes are not served"),
            "{w}"
        );
        assert!(w.contains("routing_stratgy: unknown key, ignored"), "{w}");
    }
}
