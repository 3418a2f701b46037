//! Which models a composite run may call. The models its profile's author
//! named in the topology are the profile's own: its runs call them whoever
//! asks (a key's model lists name the profile, not its members, and the
//! hidden deployments of topology nodes exist only for it). Any other
//! model, such as one a request names in `composite_settings` or in the
//! direct form's settings, is the caller's choice: it must be a public
//! model the caller could call itself. A request whose settings name a
//! public model its caller may not call is refused before its run starts
//! ([`Members::refused_in`]); any call a run makes is checked when it is
//! made ([`Members::refusal`]).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::keys::Principal;
use crate::ops::Caller;
use crate::ops::admission::{AccessGroups, Refusal, access_refusal, denied_by};
use crate::router::Router;

/// The profile's own models and the rules for every other one.
#[derive(Clone)]
pub struct Members {
    own: Arc<HashSet<String>>,
    access_groups: Arc<AccessGroups>,
}

impl Members {
    /// The members of a profile with `own` models, under one config's
    /// access groups.
    pub fn new(own: Arc<HashSet<String>>, access_groups: Arc<AccessGroups>) -> Self {
        Self { own, access_groups }
    }

    /// Why `caller`'s run may not call `model`, if it may not.
    pub fn refusal(&self, model: &str, router: &Router, caller: &Caller) -> Option<String> {
        if self.own.contains(model) {
            return None;
        }
        if !router.serves(model) {
            return Some(format!(
                "model {model:?} is not one of this profile's models, and the router serves no \
                 model of that name (a composite model cannot be another's member): a request \
                 may name only models its caller could call itself"
            ));
        }
        let principal = caller.principal()?;
        denied_by(principal, model, &self.access_groups).map(|_| {
            format!(
                "model {model:?} is not one of this profile's models, and the caller's key \
                 may not use it"
            )
        })
    }
}

impl Members {
    /// The refusal of a run whose request's `settings` name a public model
    /// `principal` may not call: strings that name no public model are not
    /// models, and the profile's own are always callable.
    pub fn refused_in(
        &self,
        settings: &Value,
        router: &Router,
        principal: &Principal,
    ) -> Option<Refusal> {
        let mut names = HashSet::new();
        strings(settings, &mut names);
        let mut names: Vec<String> = names.into_iter().collect();
        // The first in name order, so that the same request is always
        // refused for the same model.
        names.sort_unstable();
        names.into_iter().find_map(|name| {
            if self.own.contains(&name) || !router.serves(&name) {
                return None;
            }
            let level = denied_by(principal, &name, &self.access_groups)?;
            let mut refused = access_refusal(principal, level, &name);
            refused.message = format!(
                "model {name:?} is not one of this profile's models, and the request's \
                 settings name it: {}",
                refused.message
            );
            Some(refused)
        })
    }
}

/// The models a topology names, which are its profile's own: every node's
/// `model` (as the planner resolved it; a node's `params` are not nodes),
/// and every string of its `settings`, where the author may list models
/// (`council_models`, `chairman_model`, ...).
pub fn named_in(topology: &Value) -> HashSet<String> {
    let mut names = HashSet::new();
    nodes(topology, &mut names);
    names
}

fn nodes(value: &Value, names: &mut HashSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("model", Value::String(name)) => {
                        names.insert(name.clone());
                    }
                    ("params", _) => {}
                    ("settings", settings) => strings(settings, names),
                    _ => nodes(v, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| nodes(v, names)),
        _ => {}
    }
}

/// The first (in name order) string of `settings` that names a composite
/// model (`is_composite`) other than the profile's own models.
pub fn composite_named(
    settings: &Value,
    own: &HashSet<String>,
    is_composite: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut names = HashSet::new();
    strings(settings, &mut names);
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| !own.contains(n) && is_composite(n))
        .collect();
    names.sort_unstable();
    names.into_iter().next()
}

fn strings(value: &Value, names: &mut HashSet<String>) {
    match value {
        Value::String(s) => {
            names.insert(s.clone());
        }
        Value::Object(map) => map.values().for_each(|v| strings(v, names)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_model_of_a_topology_is_named() {
        let topology = serde_json::json!({
            "chairman": {"model": "ok-a"},
            "council": [{"model": "ok-a"}, {"model": "mock/x@bundle", "params": {"model": "not-a-node"}}],
            "settings": {"rounds": 2, "chairman_model": "ok-b", "council_models": ["ok-c"]},
        });
        let names = named_in(&topology);
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["mock/x@bundle", "ok-a", "ok-b", "ok-c"]);
    }
}
