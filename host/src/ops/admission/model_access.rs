//! Which models a virtual key may call. A key, its user and its team may
//! each list model names or access groups (`model_info.access_groups` of
//! the model_list); an empty list allows every model, and a call must be
//! allowed at every level that lists any. A composite profile is a model
//! like any other here: its own sub-calls are then made on the caller's
//! behalf through the profile and are not checked against these lists.

use std::collections::{HashMap, HashSet};

use super::{AdmissionCheck, Candidate, Refusal, Verdict};
use crate::config::Config;
use crate::keys::Principal;

/// Names in a `models` list that allow every model (LiteLLM's).
const ALL_MODELS: &[&str] = &["*", "all-proxy-models"];
/// In a key's list: whatever its team's list allows.
const TEAM_MODELS: &str = "all-team-models";

/// Access group -> the public model names in it, for one config version.
#[derive(Debug, Default)]
pub struct AccessGroups(HashMap<String, HashSet<String>>);

impl AccessGroups {
    /// Reads `model_info.access_groups` of every model_list entry.
    pub fn from_config(cfg: &Config) -> Self {
        let mut groups: HashMap<String, HashSet<String>> = HashMap::new();
        for entry in &cfg.model_list {
            let Some(listed) = entry
                .model_info
                .as_ref()
                .and_then(|i| i.get("access_groups"))
                .and_then(|v| v.as_sequence())
            else {
                continue;
            };
            for group in listed.iter().filter_map(|g| g.as_str()) {
                groups
                    .entry(group.to_owned())
                    .or_default()
                    .insert(entry.model_name.clone());
            }
        }
        Self(groups)
    }

    /// Whether `list` allows `model`: empty, an all-models name, the model
    /// itself, a `prefix/*` pattern it matches, or an access group holding it.
    pub fn allows(&self, list: &[String], model: &str) -> bool {
        list.is_empty()
            || list.iter().any(|name| {
                ALL_MODELS.contains(&name.as_str())
                    || name == model
                    || name
                        .strip_suffix('*')
                        .is_some_and(|prefix| !prefix.is_empty() && model.starts_with(prefix))
                    || self
                        .0
                        .get(name)
                        .is_some_and(|models| models.contains(model))
            })
    }
}

/// The level whose list refuses `model`, if one does.
pub fn denied_by(principal: &Principal, model: &str, groups: &AccessGroups) -> Option<Level> {
    let key = &principal.key.models;
    let team = principal.team.as_ref().map(|t| t.models.as_slice());
    let key_allows = if key.iter().any(|m| m == TEAM_MODELS) {
        team.is_none_or(|t| groups.allows(t, model))
    } else {
        groups.allows(key, model)
    };
    if !key_allows {
        return Some(Level::Key);
    }
    if let Some(team) = team
        && !groups.allows(team, model)
    {
        return Some(Level::Team);
    }
    if let Some(user) = &principal.user
        && !groups.allows(&user.models, model)
    {
        return Some(Level::User);
    }
    None
}

/// The level of a `models` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Key,
    User,
    Team,
}

impl Level {
    /// The error code naming the refusal (LiteLLM's names for it).
    pub fn code(self) -> &'static str {
        match self {
            Level::Key => "key_model_access_denied",
            Level::User => "user_model_access_denied",
            Level::Team => "team_model_access_denied",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::User => "user",
            Level::Team => "team",
        }
    }
}

/// The refusal of a call to `model` by `level`'s list.
pub fn refusal(principal: &Principal, level: Level, model: &str) -> Refusal {
    let who = match level {
        Level::Key => principal.key.key_name.clone(),
        Level::User => principal.key.user_id.clone().unwrap_or_default(),
        Level::Team => principal.key.team_id.clone().unwrap_or_default(),
    };
    Refusal {
        status: 403,
        kind: "permission_error",
        code: level.code(),
        message: format!(
            "{} {who} may not use model {model:?}: it is not in the {}'s models list",
            level.name(),
            level.name()
        ),
        retry_after: None,
        headers: Vec::new(),
    }
}

/// Refuses a virtual key's call to a model its key, user or team does not
/// list.
pub struct ModelAccess;

impl AdmissionCheck for ModelAccess {
    fn name(&self) -> &'static str {
        "model-access"
    }

    fn check<'a>(&'a self, candidate: &'a Candidate<'a>) -> Verdict<'a> {
        Verdict::Now(decide(candidate))
    }
}

/// Access is decided from the principal alone, without waiting.
fn decide(candidate: &Candidate<'_>) -> super::Decision {
    let Some(principal) = candidate.ctx.request.caller.principal() else {
        return Ok(None);
    };
    if let Some(level) = denied_by(principal, candidate.model, candidate.access)
        && (candidate.asked == candidate.model
            || denied_by(principal, candidate.asked, candidate.access).is_some())
    {
        return Err(refusal(principal, level, candidate.asked));
    }
    // A fallback the client names is a model it asks for too.
    for fallback in candidate.fallbacks {
        if let Some(level) = denied_by(principal, fallback, candidate.access) {
            let mut refused = refusal(principal, level, fallback);
            refused.message.push_str(" (named in `fallbacks`)");
            return Err(refused);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> AccessGroups {
        let cfg: Config = serde_yaml::from_str(
            r#"
model_list:
  - model_name: beta-model
    litellm_params: {model: openai/x}
    model_info: {access_groups: [beta]}
"#,
        )
        .unwrap();
        AccessGroups::from_config(&cfg)
    }

    #[test]
    fn lists_allow_names_groups_patterns_and_everything_when_empty() {
        let g = groups();
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(g.allows(&[], "anything"));
        assert!(g.allows(&list(&["gpt-4o"]), "gpt-4o"));
        assert!(!g.allows(&list(&["gpt-4o"]), "gpt-4o-mini"));
        assert!(g.allows(&list(&["beta"]), "beta-model"));
        assert!(!g.allows(&list(&["beta"]), "other"));
        assert!(g.allows(&list(&["openai/*"]), "openai/gpt-4o"));
        assert!(g.allows(&list(&["all-proxy-models"]), "x"));
    }
}
