//! LiteLLM's pass-through entry, `{model_name: "*", litellm_params:
//! {model: "*"}}`, serves any model name from the provider its prefix
//! names (`anthropic/claude-...` from Anthropic, with Anthropic's key), and
//! a name without a known prefix from OpenAI. Here it stands for one
//! wildcard deployment per provider with a default address (`anthropic/*`,
//! `groq/*`, ...), which the router prefers to `*` as longer patterns, and
//! `*` itself on OpenAI. Without them every name would go to OpenAI, the
//! prompts of other providers' models included. Names without a prefix of
//! Anthropic's family (`claude-*`) go to Anthropic, as LiteLLM reads them.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::config::ModelEntry;
use crate::providers::table;

/// Providers whose own wildcard is left to `*` itself (OpenAI's names).
const SERVED_BY_STAR: &[&str] = &["openai", "text-completion-openai"];

/// Bare-name families the pass-through sends to another provider than
/// OpenAI: (the names' start, the provider), as
/// [`crate::config::provider_of_bare_name`] reads a deployment's model.
const BARE_FAMILIES: &[(&str, &str)] = &[("claude", "anthropic")];

/// Whether `entry` is LiteLLM's pass-through.
pub(super) fn is_pass_through(entry: &ModelEntry) -> bool {
    entry.model_name == "*"
        && entry.litellm_params.model == "*"
        && entry.litellm_params.custom_llm_provider.is_none()
}

/// The entries `entry` stands for, each with whether the config implied it
/// rather than wrote it: `entry` alone unless it is the pass-through; then
/// also a `<provider>/*` entry per provider with a default address for
/// which the config (`written` holds its model names) has no such group
/// of its own. Each copies the entry's settings (its key or address, if it
/// sets them, as LiteLLM passes them to whichever provider), and a
/// `model_info.id` gets the provider's name after it.
pub(super) fn expand<'a>(
    entry: &'a ModelEntry,
    written: &HashSet<&str>,
) -> Vec<(Cow<'a, ModelEntry>, bool)> {
    let mut entries = vec![(Cow::Borrowed(entry), false)];
    if !is_pass_through(entry) {
        return entries;
    }
    for spec in table::specs() {
        let name = format!("{}/*", spec.name);
        if spec.api_base.is_none()
            || SERVED_BY_STAR.contains(&spec.name)
            || written.contains(name.as_str())
        {
            continue;
        }
        entries.push((implied(entry, name.clone(), name, spec.name), true));
    }
    for (start, provider) in BARE_FAMILIES {
        let name = format!("{start}*");
        if !written.contains(name.as_str()) {
            let model = format!("{provider}/{start}*");
            entries.push((implied(entry, name, model, start), true));
        }
    }
    entries
}

/// A copy of the pass-through `entry` serving `name` with `model`; a
/// written `model_info.id` gets `:<suffix>` after it.
fn implied<'a>(
    entry: &ModelEntry,
    name: String,
    model: String,
    suffix: &str,
) -> Cow<'a, ModelEntry> {
    let mut implied = entry.clone();
    implied.litellm_params.model = model;
    implied.model_name = name;
    if let (Some(base), Some(info)) = (entry.written_id(), &mut implied.model_info) {
        info.insert(
            "id".into(),
            serde_yaml::Value::String(format!("{base}:{suffix}")),
        );
    }
    Cow::Owned(implied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, model: &str) -> ModelEntry {
        let mut e = ModelEntry {
            model_name: name.into(),
            ..ModelEntry::default()
        };
        e.litellm_params.model = model.into();
        e
    }

    #[test]
    fn the_pass_through_stands_for_a_wildcard_per_provider_but_those_written() {
        let star = entry("*", "*");
        let written: HashSet<&str> = ["*", "groq/*"].into_iter().collect();
        let names: Vec<String> = expand(&star, &written)
            .into_iter()
            .map(|(e, _)| e.model_name.clone())
            .collect();
        assert_eq!(names[0], "*");
        assert!(names.contains(&"anthropic/*".to_owned()), "{names:?}");
        assert!(!names.contains(&"groq/*".to_owned()), "{names:?}");
        assert!(!names.contains(&"openai/*".to_owned()), "{names:?}");
        assert!(
            !names.contains(&"azure/*".to_owned()),
            "azure has no default address"
        );
        assert!(names.contains(&"claude*".to_owned()), "{names:?}");
        assert_eq!(expand(&entry("*", "openai/*"), &written).len(), 1);
        assert_eq!(expand(&entry("gpt", "*"), &written).len(), 1);
    }
}
