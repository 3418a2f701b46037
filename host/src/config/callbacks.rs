//! LiteLLM's `success_callback` / `failure_callback` / `callbacks` lists.
//! conclave has two of LiteLLM's callbacks built in: `prometheus`, served at
//! `GET /metrics` (on whether or not the list names it), and `otel`, which
//! turns on OpenTelemetry trace export with the same `OTEL_*` variables
//! (`observe::otel`). Every other name
//! (langfuse, datadog, a Python handler path, ...) is accepted so a LiteLLM
//! config keeps loading, with one warning naming what is not done.

use super::{Callbacks, Config};

/// The callback conclave serves itself, at `GET /metrics`.
pub const PROMETHEUS: &str = "prometheus";
/// The callback that turns on OpenTelemetry trace export.
pub const OTEL: &str = "otel";

/// One warning naming the callbacks conclave does not have, if any.
pub fn warnings(config: &Config, file: &str) -> Vec<String> {
    let ls = &config.litellm_settings;
    let mut keys = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (key, list) in [
        ("litellm_settings.success_callback", &ls.success_callback),
        ("litellm_settings.failure_callback", &ls.failure_callback),
        ("litellm_settings.callbacks", &ls.callbacks),
    ] {
        let Some(list) = list.as_ref().map(Callbacks::names) else {
            continue;
        };
        let others: Vec<&str> = list
            .into_iter()
            .filter(|n| *n != PROMETHEUS && *n != OTEL)
            .collect();
        if others.is_empty() {
            continue;
        }
        keys.push(key);
        for name in others {
            if !unknown.contains(&name) {
                unknown.push(name);
            }
        }
    }
    if unknown.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{file}: {}: callbacks conclave does not have, ignored: {} \
         (built in: prometheus, served at /metrics; otel, OTLP trace export)",
        keys.join(", "),
        unknown.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Env, load_str};

    #[test]
    fn prometheus_is_silent_and_other_callbacks_get_one_warning() {
        let yaml = "model_list: []\nlitellm_settings:\n  success_callback: [prometheus, langfuse]\n  \
                    failure_callback: [langfuse]\n  callbacks: prometheus\n";
        let loaded = load_str(yaml, Path::new("t.yaml"), Env::default()).unwrap();
        let w = super::warnings(&loaded.config, "t.yaml");
        assert_eq!(
            w,
            vec![
                "t.yaml: litellm_settings.success_callback, litellm_settings.failure_callback: \
                 callbacks conclave does not have, ignored: langfuse (built in: prometheus, served at /metrics; \
                 otel, OTLP trace export)"
                    .to_owned()
            ]
        );
        let yaml = "model_list: []\nlitellm_settings:\n  callbacks: [prometheus, otel]\n";
        let loaded = load_str(yaml, Path::new("t.yaml"), Env::default()).unwrap();
        assert!(super::warnings(&loaded.config, "t.yaml").is_empty());
    }
}
