//! What a deployment leaves out of, or renames in, the fields it sends:
//! LiteLLM's `drop_params` and `additional_drop_params`, and the parameter
//! names of OpenAI's reasoning models.
//!
//! OpenAI's o-series and gpt-5 models refuse `max_tokens` (they take
//! `max_completion_tokens`) and several sampling fields. Clients written for
//! other models send them anyway; LiteLLM renames the first always and drops
//! the others when told to, and its users configure gateways expecting the
//! same. Nothing here runs for a deployment without such a model or list:
//! its target holds no rules at all.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::openai::{Endpoint, RawFields};

/// The name OpenAI's reasoning models take for `max_tokens`.
const MAX_COMPLETION_TOKENS: &str = "max_completion_tokens";

/// The parameter rules of one deployment.
#[derive(Debug, Clone, Default)]
pub struct ParamRules {
    /// `additional_drop_params`: fields this deployment never sends.
    always_dropped: Box<[Box<str>]>,
    /// `drop_params` (the deployment's, else `litellm_settings`'): drop the
    /// fields the model is known to refuse instead of sending them.
    drop_unsupported: bool,
    /// The model family of a deployment whose model is fixed.
    family: Option<Family>,
    /// A wildcard deployment (`openai/*`) of an OpenAI dialect: its family
    /// is read from each call's model.
    family_per_call: bool,
}

/// A family of models with parameter rules of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// o1, o3, o4-mini, ...: sampling fixed at the defaults.
    OSeries,
    /// gpt-5 and its versions (not gpt-5-chat); `sampling_without_reasoning`
    /// for the versions (gpt-5.1 and later) that take sampling fields when
    /// `reasoning_effort` is `none` or unset.
    Gpt5 { sampling_without_reasoning: bool },
}

impl Family {
    /// The family of upstream model `model`, if it has rules.
    pub fn of(model: &str) -> Option<Self> {
        let name = model.rsplit('/').next().unwrap_or(model);
        // A fine-tuned model (`ft:o4-mini-2025-04-16:org::id`) is its base's.
        let name = name.strip_prefix("ft:").unwrap_or(name);
        let o_series = ["o1", "o3", "o4"].iter().any(|prefix| {
            strip_prefix_ignoring_case(name, prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        });
        if o_series {
            return Some(Self::OSeries);
        }
        let rest = strip_prefix_ignoring_case(name, "gpt-5")?;
        if !(rest.is_empty() || rest.starts_with(['-', '.'])) {
            return None;
        }
        let rest = rest.to_ascii_lowercase();
        if rest.contains("-chat") {
            return None;
        }
        Some(Self::Gpt5 {
            sampling_without_reasoning: rest.starts_with('.') && !rest.contains("codex"),
        })
    }

    /// Whether the family refuses field `name` holding `value` in a request
    /// whose reasoning is off (`reasoning_effort` unset or `none`) when
    /// `reasoning_off`.
    fn refuses(self, name: &str, value: &RawValue, reasoning_off: bool) -> bool {
        if SAMPLING.contains(&name) {
            let free = reasoning_off
                && self
                    == Self::Gpt5 {
                        sampling_without_reasoning: true,
                    };
            return !(free || name == "temperature" && is_one(value));
        }
        NOT_OPENAI.contains(&name) || self != Self::OSeries && GPT5_REFUSED.contains(&name)
    }
}

/// An Azure deployment name as LiteLLM's `azure/o_series/<name>` and
/// `azure/gpt5_series/<name>` give it (Azure names deployments freely, so
/// the family is said in the model path): the name alone, and the family.
pub fn azure_series(model: &str) -> (&str, Option<Family>) {
    if let Some(name) = model.strip_prefix("o_series/") {
        return (name, Some(Family::OSeries));
    }
    if let Some(name) = model.strip_prefix("gpt5_series/") {
        let family = Family::Gpt5 {
            sampling_without_reasoning: false,
        };
        return (name, Some(family));
    }
    (model, None)
}

/// `name` after an ASCII `prefix` matched in any case.
fn strip_prefix_ignoring_case<'n>(name: &'n str, prefix: &str) -> Option<&'n str> {
    let (head, rest) = (name.get(..prefix.len())?, name.get(prefix.len()..)?);
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The sampling fields: a reasoning model takes none (temperature only at
/// 1), but for gpt-5.1 and later with reasoning off.
const SAMPLING: [&str; 4] = ["temperature", "top_p", "logprobs", "top_logprobs"];

/// What no reasoning model takes: the penalties, and `top_k` (an
/// Anthropic field other clients send too).
const NOT_OPENAI: [&str; 3] = ["presence_penalty", "frequency_penalty", "top_k"];

/// What gpt-5 models refuse besides the penalties and sampling.
const GPT5_REFUSED: [&str; 6] = [
    "stop",
    "logit_bias",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
];

/// Whether raw JSON `value` is the number 1 (the only temperature the
/// reasoning models take).
fn is_one(value: &RawValue) -> bool {
    value.get().trim().parse::<f64>() == Ok(1.0)
}

/// Whether a request's `reasoning_effort` leaves reasoning off.
fn reasoning_off(body: &RawFields) -> bool {
    match body.get("reasoning_effort") {
        None => true,
        Some(raw) => matches!(raw.get().trim(), "null" | "\"none\""),
    }
}

impl ParamRules {
    /// The rules of a deployment of upstream model `model`; `None` when it
    /// has none (no list, no known family, no wildcard whose calls may name
    /// one), which is nearly every deployment. `openai_dialect` says whether
    /// the deployment serves OpenAI's models (the families are OpenAI's);
    /// `declared` is a family its config names ([`azure_series`]).
    pub fn new(
        model: &str,
        openai_dialect: bool,
        declared: Option<Family>,
        always_dropped: &[String],
        drop_unsupported: bool,
    ) -> Option<Self> {
        let family = declared.or_else(|| openai_dialect.then(|| Family::of(model)).flatten());
        let family_per_call = openai_dialect && model.contains('*');
        if family.is_none() && !family_per_call && always_dropped.is_empty() {
            return None;
        }
        Some(Self {
            always_dropped: always_dropped.iter().map(|f| f.as_str().into()).collect(),
            drop_unsupported,
            family,
            family_per_call,
        })
    }

    /// `body` as sent to `model` (the call's model, a wildcard's included):
    /// `max_tokens` renamed for a reasoning model's chat call (unless the
    /// body names `max_completion_tokens` too, which then wins), the
    /// deployment's dropped fields left out, and, when the deployment or
    /// the request (`request_drops`) asks, the fields the model refuses.
    /// A wildcard deployment's `defaults` (fixed deployments had theirs
    /// edited once, [`Self::apply_to_defaults`]) are merged in first when
    /// the call's model has rules, and the answer says so. Borrowed when
    /// nothing changes.
    pub fn apply<'b>(
        &self,
        body: &'b RawFields,
        defaults: &Map<String, Value>,
        model: &str,
        endpoint: Endpoint,
        request_drops: bool,
    ) -> Applied<'b> {
        let per_call = match self.family {
            None if self.family_per_call => Family::of(model),
            _ => None,
        };
        let family = self.family.or(per_call);
        let with_defaults = per_call.is_some() && !defaults.is_empty();
        let source = if with_defaults {
            let mut merged = body.clone();
            for (name, value) in defaults {
                if !merged.contains_key(name) {
                    // A default that does not serialize is left out, as
                    // the encoder would fail on it anyway.
                    let _ = merged.insert_value(name, value);
                }
            }
            Cow::Owned(merged)
        } else {
            Cow::Borrowed(body)
        };
        let drop_refused = (self.drop_unsupported || request_drops) && family.is_some();
        let rename = family.is_some() && endpoint == Endpoint::ChatCompletions;
        let reasoning_off = reasoning_off(&source);
        let has_new_name = source.contains_key(MAX_COMPLETION_TOKENS);
        let listed = |name: &str| self.always_dropped.iter().any(|d| &**d == name);
        let edit = |name: &str, value: &RawValue| -> Edit {
            let renamed = rename && name == "max_tokens";
            if renamed && has_new_name {
                return Edit::Drop;
            }
            if listed(name) || renamed && listed(MAX_COMPLETION_TOKENS) {
                return Edit::Drop;
            }
            if let Some(family) = family.filter(|_| drop_refused)
                && family.refuses(name, value, reasoning_off)
            {
                return Edit::Drop;
            }
            if renamed {
                Edit::Rename(MAX_COMPLETION_TOKENS)
            } else {
                Edit::Keep
            }
        };
        let unchanged = source
            .iter()
            .all(|(name, value)| edit(name, value) == Edit::Keep);
        let body = if unchanged {
            source
        } else {
            Cow::Owned(source.edited(|name, value| match edit(name, value) {
                Edit::Keep => Some(name.clone()),
                Edit::Rename(to) => Some(to.into()),
                Edit::Drop => None,
            }))
        };
        Applied {
            body,
            with_defaults,
        }
    }

    /// The deployment's request defaults (`litellm_params` temperature,
    /// max_tokens, ...) under the same rules as a chat call's fields ([`Self::apply`]),
    /// for a deployment whose model is fixed: applied once, when the
    /// deployment is built (a wildcard's family is not known yet: only its
    /// dropped fields go).
    pub fn apply_to_defaults(&self, defaults: &mut Map<String, Value>) {
        let Ok(fields) = RawFields::from_map(defaults) else {
            return;
        };
        let applied = self.apply(&fields, &Map::new(), "", Endpoint::ChatCompletions, false);
        if let Cow::Owned(edited) = applied.body
            && let Ok(edited) = edited.to_map()
        {
            *defaults = edited;
        }
    }
}

/// A body with a deployment's rules applied.
pub struct Applied<'b> {
    pub body: Cow<'b, RawFields>,
    /// The deployment's request defaults are in `body` already.
    pub with_defaults: bool,
}

/// What a field becomes on its way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep,
    Drop,
    Rename(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> RawFields {
        serde_json::from_str(json).unwrap()
    }

    fn sent(rules: &ParamRules, model: &str, body: &str, request_drops: bool) -> String {
        let body = fields(body);
        let out = rules.apply(
            &body,
            &Map::new(),
            model,
            Endpoint::ChatCompletions,
            request_drops,
        );
        serde_json::to_string(&*out.body).unwrap()
    }

    #[test]
    fn families_are_read_from_the_models_last_name() {
        assert_eq!(Family::of("o3-mini"), Some(Family::OSeries));
        assert_eq!(Family::of("o1"), Some(Family::OSeries));
        assert_eq!(
            Family::of("azure/O4-mini-2025-04-16"),
            Some(Family::OSeries)
        );
        assert_eq!(Family::of("o10x"), None);
        assert_eq!(Family::of("gpt-4o"), None);
        assert_eq!(Family::of("gpt-5-chat-latest"), None);
        assert_eq!(Family::of("gpt-50"), None);
        assert_eq!(
            Family::of("gpt-5-mini"),
            Some(Family::Gpt5 {
                sampling_without_reasoning: false
            })
        );
        assert_eq!(
            Family::of("gpt-5.1"),
            Some(Family::Gpt5 {
                sampling_without_reasoning: true
            })
        );
        assert_eq!(
            Family::of("gpt-5.1-codex"),
            Some(Family::Gpt5 {
                sampling_without_reasoning: false
            })
        );
    }

    #[test]
    fn azure_names_the_family_in_the_model_path() {
        assert_eq!(
            azure_series("o_series/reasoner"),
            ("reasoner", Some(Family::OSeries))
        );
        assert_eq!(azure_series("my-gpt4o"), ("my-gpt4o", None));
        let (name, family) = azure_series("gpt5_series/prod");
        assert_eq!(name, "prod");
        let rules = ParamRules::new(name, true, family, &[], false).unwrap();
        assert_eq!(
            sent(&rules, name, r#"{"max_tokens":2}"#, false),
            r#"{"max_completion_tokens":2}"#
        );
    }

    #[test]
    fn ordinary_deployments_have_no_rules() {
        assert!(ParamRules::new("gpt-4o", true, None, &[], true).is_none());
        assert!(ParamRules::new("claude-sonnet-4", false, None, &[], true).is_none());
        assert!(ParamRules::new("o3", false, None, &[], true).is_none());
        assert!(ParamRules::new("*", true, None, &[], false).is_some());
    }

    #[test]
    fn max_tokens_is_renamed_for_reasoning_models_in_place() {
        let rules = ParamRules::new("o3-mini", true, None, &[], false).unwrap();
        assert_eq!(
            sent(
                &rules,
                "o3-mini",
                r#"{"messages":[],"max_tokens":9,"seed":1}"#,
                false
            ),
            r#"{"messages":[],"max_completion_tokens":9,"seed":1}"#
        );
        // Both given: the new name wins, the old one is not sent twice.
        assert_eq!(
            sent(
                &rules,
                "o3-mini",
                r#"{"max_tokens":9,"max_completion_tokens":5}"#,
                false
            ),
            r#"{"max_completion_tokens":5}"#
        );
    }

    #[test]
    fn refused_fields_are_sent_unless_dropping_is_asked() {
        let rules = ParamRules::new("o3", true, None, &[], false).unwrap();
        let body = r#"{"temperature":0.2,"top_p":0.5,"seed":1}"#;
        assert_eq!(sent(&rules, "o3", body, false), body);
        assert_eq!(sent(&rules, "o3", body, true), r#"{"seed":1}"#);
        // The one temperature the model takes stays.
        assert_eq!(
            sent(&rules, "o3", r#"{"temperature":1.0}"#, true),
            r#"{"temperature":1.0}"#
        );
        let dropping = ParamRules::new("o3", true, None, &[], true).unwrap();
        assert_eq!(sent(&dropping, "o3", body, false), r#"{"seed":1}"#);
    }

    #[test]
    fn later_gpt5_versions_take_sampling_without_reasoning() {
        let rules = ParamRules::new("gpt-5.1", true, None, &[], true).unwrap();
        let body = r#"{"temperature":0.2,"stop":["x"]}"#;
        assert_eq!(
            sent(&rules, "gpt-5.1", body, false),
            r#"{"temperature":0.2}"#
        );
        let reasoning = r#"{"temperature":0.2,"reasoning_effort":"high"}"#;
        assert_eq!(
            sent(&rules, "gpt-5.1", reasoning, false),
            r#"{"reasoning_effort":"high"}"#
        );
        let gpt5 = ParamRules::new("gpt-5", true, None, &[], true).unwrap();
        assert_eq!(sent(&gpt5, "gpt-5", body, false), "{}");
    }

    #[test]
    fn a_wildcard_reads_the_family_of_each_calls_model() {
        let rules = ParamRules::new("*", true, None, &[], false).unwrap();
        let body = r#"{"max_tokens":3}"#;
        assert_eq!(sent(&rules, "gpt-4o", body, false), body);
        assert_eq!(
            sent(&rules, "o4-mini", body, false),
            r#"{"max_completion_tokens":3}"#
        );
    }

    #[test]
    fn listed_fields_are_never_sent_and_other_endpoints_keep_their_names() {
        let rules = ParamRules::new("llama", true, None, &["logit_bias".into()], false).unwrap();
        let body = fields(r#"{"logit_bias":{"1":2},"max_tokens":4}"#);
        let out = rules.apply(&body, &Map::new(), "llama", Endpoint::Completions, false);
        assert_eq!(
            serde_json::to_string(&*out.body).unwrap(),
            r#"{"max_tokens":4}"#
        );
        let untouched = fields(r#"{"max_tokens":4}"#);
        let defaults = Map::new();
        let out = rules.apply(
            &untouched,
            &defaults,
            "llama",
            Endpoint::ChatCompletions,
            true,
        );
        assert!(matches!(out.body, Cow::Borrowed(_)));
    }

    #[test]
    fn a_dropped_new_name_drops_the_renamed_field_too() {
        let rules = ParamRules::new("o3", true, None, &["max_completion_tokens".into()], false);
        let body = r#"{"max_tokens":9,"seed":1}"#;
        assert_eq!(sent(&rules.unwrap(), "o3", body, false), r#"{"seed":1}"#);
        let tuned = ParamRules::new("ft:o4-mini-2025-04-16:acme::x1", true, None, &[], true);
        assert_eq!(
            sent(
                &tuned.unwrap(),
                "ft:o4-mini",
                r#"{"top_k":5,"max_tokens":2}"#,
                false
            ),
            r#"{"max_completion_tokens":2}"#
        );
    }

    #[test]
    fn a_wildcards_defaults_follow_the_rules_of_each_calls_model() {
        let rules = ParamRules::new("*", true, None, &[], true).unwrap();
        let defaults: Map<String, Value> =
            serde_json::from_str(r#"{"max_tokens":64,"temperature":0.3}"#).unwrap();
        let body = fields(r#"{"messages":[]}"#);
        let out = rules.apply(
            &body,
            &defaults,
            "o3-mini",
            Endpoint::ChatCompletions,
            false,
        );
        assert!(out.with_defaults);
        assert_eq!(
            serde_json::to_string(&*out.body).unwrap(),
            r#"{"messages":[],"max_completion_tokens":64}"#
        );
        // A model without rules gets the defaults from the encoder, as before.
        let out = rules.apply(&body, &defaults, "gpt-4o", Endpoint::ChatCompletions, false);
        assert!(!out.with_defaults);
        assert!(matches!(out.body, Cow::Borrowed(_)));
    }

    #[test]
    fn defaults_follow_the_same_rules() {
        let rules = ParamRules::new("o3", true, None, &["seed".into()], true).unwrap();
        let mut defaults: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"max_tokens":7,"temperature":0.3,"seed":2,"n":1}"#).unwrap();
        rules.apply_to_defaults(&mut defaults);
        assert_eq!(
            serde_json::Value::Object(defaults),
            serde_json::json!({"max_completion_tokens": 7, "n": 1})
        );
    }
}
