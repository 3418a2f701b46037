//! LiteLLM's rules for new keys from the config: defaults for the fields a
//! `/key/generate` body leaves out (`default_key_generate_params`), and
//! ceilings on what it may ask (`upperbound_key_generate_params`), so that
//! self-service keys get a budget and a lifetime without every script
//! having to say so. A ceiling also fills a field left out, as in LiteLLM;
//! a value above it is refused, naming the field.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::model::budget_period;
use crate::config::{Config, KeyGenerateBounds, KeyGenerateDefaults, Problem};

/// One ceiling on a number: as a field's value, and to compare with.
#[derive(Debug, Clone, PartialEq)]
struct NumberBound {
    field: &'static str,
    written: Value,
    max: f64,
}

/// One ceiling on a duration: as written, and as a length.
#[derive(Debug, Clone, PartialEq)]
struct DurationBound {
    field: &'static str,
    written: String,
    length: Duration,
}

/// The config's rules for new keys; empty when it sets none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyGenerateParams {
    /// Fields to fill in, by name, with the values the config gives.
    defaults: Map<String, Value>,
    numbers: Vec<NumberBound>,
    durations: Vec<DurationBound>,
}

/// Why a body breaks a ceiling: the field and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBound {
    pub field: &'static str,
    pub message: String,
}

const DEFAULTS_KEY: &str = "litellm_settings.default_key_generate_params";
const BOUNDS_KEY: &str = "litellm_settings.upperbound_key_generate_params";

impl KeyGenerateParams {
    /// The rules `config` sets; a duration that does not parse, or a
    /// negative budget, is a problem at its key.
    pub fn from_config(config: &Config) -> Result<Self, Problem> {
        let ls = &config.litellm_settings;
        let mut params = Self::default();
        if let Some(d) = &ls.default_key_generate_params {
            params.defaults = defaults(d)?;
        }
        if let Some(b) = &ls.upperbound_key_generate_params {
            params.bounds(b)?;
        }
        // A default over its ceiling would refuse every key that relies on it.
        if let Err(over) = params.check(&params.defaults) {
            return Err(Problem::new(
                format!("{DEFAULTS_KEY}.{}", over.field),
                over.message,
            ));
        }
        Ok(params)
    }

    fn bounds(&mut self, b: &KeyGenerateBounds) -> Result<(), Problem> {
        // Counts stay integers: a key's limits are read as such.
        let numbers = [
            ("max_budget", b.max_budget.map(|v| json!(v))),
            (
                "max_parallel_requests",
                b.max_parallel_requests.map(|v| json!(v)),
            ),
            ("tpm_limit", b.tpm_limit.map(|v| json!(v))),
            ("rpm_limit", b.rpm_limit.map(|v| json!(v))),
        ];
        for (field, written) in numbers {
            let Some(written) = written else { continue };
            let max = written.as_f64().unwrap_or(f64::NAN);
            if max < 0.0 || !max.is_finite() {
                return Err(Problem::new(
                    format!("{BOUNDS_KEY}.{field}"),
                    "must be a number of at least 0",
                ));
            }
            self.numbers.push(NumberBound {
                field,
                written,
                max,
            });
        }
        for (field, written) in [
            ("budget_duration", &b.budget_duration),
            ("duration", &b.duration),
        ] {
            let Some(written) = written else { continue };
            let length = budget_period(written)
                .map_err(|e| Problem::new(format!("{BOUNDS_KEY}.{field}"), e.to_string()))?;
            self.durations.push(DurationBound {
                field,
                written: written.clone(),
                length,
            });
        }
        Ok(())
    }

    /// Whether the config sets no rule (the common case: nothing to do).
    pub fn is_empty(&self) -> bool {
        self.defaults.is_empty() && self.numbers.is_empty() && self.durations.is_empty()
    }

    /// A `/key/generate` body with the defaults and ceilings applied: a
    /// field left out (or `null`; an empty `models` or `metadata`) takes
    /// its default, else its ceiling; a value above a ceiling is refused.
    pub fn apply(&self, body: &mut Map<String, Value>) -> Result<(), OverBound> {
        for (field, value) in &self.defaults {
            let unset = match body.get(field) {
                None | Some(Value::Null) => true,
                Some(Value::Array(items)) => field == "models" && items.is_empty(),
                Some(Value::Object(entries)) => field == "metadata" && entries.is_empty(),
                Some(_) => false,
            };
            if unset {
                body.insert(field.clone(), value.clone());
            }
        }
        for bound in &self.numbers {
            if unset(body, bound.field) {
                body.insert(bound.field.to_owned(), bound.written.clone());
            }
        }
        for bound in &self.durations {
            if unset(body, bound.field) {
                body.insert(bound.field.to_owned(), json!(bound.written));
            }
        }
        self.check(body)
    }

    /// Refuses a body (of `/key/generate`, or the changes of
    /// `/key/regenerate`) asking more than a ceiling allows; fields it
    /// leaves out are not looked at.
    pub fn check(&self, body: &Map<String, Value>) -> Result<(), OverBound> {
        for bound in &self.numbers {
            let asked = match body.get(bound.field) {
                Some(Value::Number(n)) => n.as_f64(),
                // Limits may be written as strings ("5"), as LiteLLM reads them.
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                // `null` clears a limit: no limit is over any ceiling.
                Some(Value::Null) => Some(f64::INFINITY),
                _ => None,
            };
            if let Some(asked) = asked.filter(|a| *a > bound.max) {
                return Err(OverBound {
                    field: bound.field,
                    message: format!(
                        "{asked} is over the most the config allows a new key \
                         ({BOUNDS_KEY}.{}: {})",
                        bound.field, bound.written
                    ),
                });
            }
        }
        for bound in &self.durations {
            // `null` and words such as "permanent" mean no end at all.
            let asked = match body.get(bound.field) {
                Some(Value::String(asked)) => asked.clone(),
                Some(Value::Null) => "null".to_owned(),
                _ => continue,
            };
            if !budget_period(&asked).is_ok_and(|length| length <= bound.length) {
                return Err(OverBound {
                    field: bound.field,
                    message: format!(
                        "{asked:?} is not a duration within what the config allows a new key \
                         ({BOUNDS_KEY}.{}: {:?})",
                        bound.field, bound.written
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether `field` is left out of `body` (or `null`).
fn unset(body: &Map<String, Value>, field: &str) -> bool {
    matches!(body.get(field), None | Some(Value::Null))
}

/// The defaults as body fields, checked as the key routes would check them.
fn defaults(d: &KeyGenerateDefaults) -> Result<Map<String, Value>, Problem> {
    let mut out = Map::new();
    if let Some(budget) = d.max_budget {
        if budget < 0.0 || !budget.is_finite() {
            return Err(Problem::new(
                format!("{DEFAULTS_KEY}.max_budget"),
                "must be a number of at least 0",
            ));
        }
        out.insert("max_budget".into(), json!(budget));
    }
    for (field, period) in [
        ("budget_duration", &d.budget_duration),
        ("duration", &d.duration),
    ] {
        if let Some(period) = period {
            budget_period(period)
                .map_err(|e| Problem::new(format!("{DEFAULTS_KEY}.{field}"), e.to_string()))?;
            out.insert(field.into(), json!(period));
        }
    }
    let texts = [("user_id", &d.user_id), ("team_id", &d.team_id)];
    for (field, value) in texts {
        if let Some(v) = value {
            out.insert(field.into(), json!(v));
        }
    }
    if let Some(v) = d.max_parallel_requests {
        out.insert("max_parallel_requests".into(), json!(v));
    }
    for (field, value) in [("tpm_limit", d.tpm_limit), ("rpm_limit", d.rpm_limit)] {
        if let Some(v) = value {
            out.insert(field.into(), json!(v));
        }
    }
    if let Some(models) = &d.models {
        out.insert("models".into(), json!(models));
    }
    if let Some(metadata) = &d.metadata {
        out.insert("metadata".into(), Value::Object(metadata.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn params(yaml: &str) -> Result<KeyGenerateParams, Problem> {
        let text = format!("model_list: []\nlitellm_settings:\n{yaml}");
        let loaded =
            crate::config::load_str(&text, Path::new("t.yaml"), crate::config::Env::default())
                .unwrap();
        KeyGenerateParams::from_config(&loaded.config)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_fill_what_a_body_leaves_out_and_nothing_else() {
        let p = params(
            "  default_key_generate_params:\n    max_budget: 5\n    models: [a]\n    budget_duration: 30d\n    duration: 7d\n    metadata: {tier: free}\n",
        )
        .unwrap();
        let mut b = body(json!({"models": [], "budget_duration": "1d", "metadata": {}}));
        p.apply(&mut b).unwrap();
        assert_eq!(
            Value::Object(b),
            json!({"max_budget": 5.0, "models": ["a"], "budget_duration": "1d", "duration": "7d", "metadata": {"tier": "free"}})
        );
        let mut b = body(json!({"duration": "1h"}));
        p.apply(&mut b).unwrap();
        assert_eq!(b["duration"], "1h");
    }

    #[test]
    fn ceilings_fill_left_out_fields_and_refuse_larger_ones() {
        let p = params(
            "  upperbound_key_generate_params:\n    max_budget: 100\n    rpm_limit: 60\n    duration: 30d\n",
        )
        .unwrap();
        let mut b = body(json!({"rpm_limit": "10"}));
        p.apply(&mut b).unwrap();
        assert_eq!(
            Value::Object(b),
            json!({"rpm_limit": "10", "max_budget": 100.0, "duration": "30d"})
        );
        let mut b = body(json!({}));
        p.apply(&mut b).unwrap();
        assert_eq!(b["rpm_limit"], json!(60));
        let over = p
            .apply(&mut body(json!({"max_budget": 100.5})))
            .unwrap_err();
        assert_eq!(over.field, "max_budget");
        for unbounded in [
            json!({"duration": "31d"}),
            json!({"duration": "permanent"}),
            json!({"duration": null}),
        ] {
            assert_eq!(p.check(&body(unbounded)).unwrap_err().field, "duration");
        }
        assert_eq!(
            p.check(&body(json!({"max_budget": null})))
                .unwrap_err()
                .field,
            "max_budget"
        );
        assert!(
            p.check(&body(json!({"duration": "4w", "rpm_limit": 60})))
                .is_ok()
        );
    }

    #[test]
    fn a_ceiling_that_is_not_a_duration_is_a_problem_at_its_key() {
        let problem =
            params("  upperbound_key_generate_params:\n    duration: forever\n").unwrap_err();
        assert_eq!(
            problem.path,
            "litellm_settings.upperbound_key_generate_params.duration"
        );
        assert!(params("").unwrap().is_empty());
        let problem = params(
            "  default_key_generate_params: {max_budget: 500}\n  upperbound_key_generate_params: {max_budget: 100}\n",
        )
        .unwrap_err();
        assert_eq!(
            problem.path,
            "litellm_settings.default_key_generate_params.max_budget"
        );
    }
}
