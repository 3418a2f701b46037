//! LiteLLM's guardrails: checks a request or an answer must pass (PII
//! masking, blocked words, prompt-injection detection, moderation). conclave
//! runs none of them. A config that asks for one is refused rather than
//! loaded with a warning: served without them, every request they were meant
//! to stop would reach the model, which is worse than not starting.

use serde_yaml::Value;

use super::load::Problem;
use super::{Callbacks, Config};

/// LiteLLM's callbacks that are guardrails rather than loggers.
const GUARDRAIL_CALLBACKS: &[&str] = &[
    "detect_prompt_injection",
    "presidio",
    "hide_secrets",
    "lakera_prompt_injection",
    "llamaguard_moderations",
    "llmguard_moderations",
    "google_text_moderation",
    "openai_moderations",
    "aporia_prompt_injection",
    "azure_content_safety",
    "secret_detection",
    "bedrock_guardrails",
    "banned_keywords",
    "blocked_user_check",
    "lakera",
    "aporia",
];

/// Why each guardrail setting of the raw config `tree` is refused.
pub fn in_tree(tree: &Value) -> Vec<Problem> {
    [
        ("guardrails", tree.get("guardrails")),
        (
            "litellm_settings.guardrails",
            tree.get("litellm_settings")
                .and_then(|s| s.get("guardrails")),
        ),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_some_and(names_any))
    .map(|(path, _)| refused(path, "its guardrails"))
    .collect()
}

/// Why each deployment that names guardrails of its own is refused.
pub fn in_deployments(config: &Config) -> Vec<Problem> {
    config
        .model_list
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.litellm_params
                .extra
                .get("guardrails")
                .is_some_and(names_any)
        })
        .map(|(i, _)| {
            refused(
                &format!("model_list[{i}].litellm_params.guardrails"),
                "its guardrails",
            )
        })
        .collect()
}

/// Why each guardrail named in the callback lists is refused.
pub fn in_callbacks(config: &Config) -> Vec<Problem> {
    let ls = &config.litellm_settings;
    [
        ("litellm_settings.success_callback", &ls.success_callback),
        ("litellm_settings.failure_callback", &ls.failure_callback),
        ("litellm_settings.callbacks", &ls.callbacks),
    ]
    .into_iter()
    .filter_map(|(path, list)| Some((path, list.as_ref().map(Callbacks::names)?)))
    .flat_map(|(path, names)| {
        names
            .into_iter()
            .filter(|name| GUARDRAIL_CALLBACKS.contains(name))
            .map(move |name| refused(path, &format!("the guardrail callback {name:?}")))
    })
    .collect()
}

fn names_any(value: &Value) -> bool {
    match value {
        Value::Sequence(list) => !list.is_empty(),
        Value::Mapping(map) => !map.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

fn refused(path: &str, what: &str) -> Problem {
    Problem::new(
        path,
        format!(
            "conclave runs no guardrails, and serving without {what} would let through every \
             request they should stop; remove the setting to serve without them"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, Env, load_str};

    fn refused_paths(yaml: &str) -> Vec<String> {
        match load_str(yaml, Path::new("t.yaml"), Env::default()) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.path).collect()
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_guardrails_section_is_refused_naming_it() {
        let yaml = "model_list: []\nguardrails:\n  - guardrail_name: pii\n    litellm_params: {guardrail: presidio, mode: pre_call, default_on: true}\n";
        assert_eq!(refused_paths(yaml), ["guardrails"]);
    }

    #[test]
    fn guardrail_callbacks_are_refused_and_loggers_are_not() {
        let yaml = "model_list: []\nlitellm_settings:\n  callbacks: [langfuse, detect_prompt_injection]\n  guardrails: [{prompt_injection: {callbacks: [lakera_prompt_injection]}}]\n";
        assert_eq!(
            refused_paths(yaml),
            ["litellm_settings.guardrails", "litellm_settings.callbacks"]
        );
    }

    #[test]
    fn a_deployments_own_guardrails_are_refused() {
        let yaml = "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, guardrails: [pii]}\n";
        assert_eq!(
            refused_paths(yaml),
            ["model_list[0].litellm_params.guardrails"]
        );
    }

    #[test]
    fn an_empty_guardrails_list_loads() {
        let loaded = load_str(
            "model_list: []\nguardrails: []\n",
            Path::new("t.yaml"),
            Env::default(),
        );
        assert!(loaded.is_ok(), "{loaded:?}");
    }
}
