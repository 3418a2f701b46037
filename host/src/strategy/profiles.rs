//! Resolving `general_settings.composite_llm` into runnable profiles: which
//! component each profile runs, its topology as JSON with every node's model
//! made routable, its settings and its limits.
//!
//! A topology node is any object with a `model` key. Its model resolves first
//! against model_list names; a node with a `provider` (a bundle under
//! `composite_llm.providers`), or a `provider/model` name nothing in
//! model_list serves, becomes a hidden deployment that the router serves
//! under a name the node is rewritten to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::limits::Limits;
use crate::config::{LitellmParams, LoadedConfig, ModelEntry, Problem};
use crate::providers::split_provider;
use crate::router::is_composite;

/// Strategies compiled into the binary.
pub const BUILTIN: &[&str] = &[
    "passthrough",
    "moa",
    "council",
    "self-consistency",
    "best-of-n",
    "cascade",
];
/// Strategies of the library that this build does not include yet.
pub const PLANNED: &[&str] = &[];
/// The seed project's coding-agent CLI strategy: served by an `exec/`
/// deployment behind the built-in passthrough (guests never spawn processes).
pub const COMPOSER_CLI: &str = "composer-cli";

/// Where a strategy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Builtin(String),
    File(PathBuf),
    /// Known but not in this build: requests get a clear error.
    Missing(String),
}

/// One profile ready to be compiled and served.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    pub name: String,
    pub strategy: String,
    pub source: Source,
    /// The topology with node models rewritten to routable names.
    pub topology: Value,
    /// `topology.settings`, which requests may override.
    pub settings: Map<String, Value>,
    pub limits: Limits,
    /// Key path of the profile, for messages.
    pub path: String,
    /// The direct form `composite/<strategy>/<provider>/<model>`: settings
    /// come from the request's non-OpenAI fields.
    pub direct: bool,
}

/// A model_list entry that exposes a profile as a public model.
#[derive(Debug, Clone)]
pub struct PublicComposite {
    pub model_name: String,
    pub profile: String,
}

/// Everything the composite section resolves to.
#[derive(Debug, Default)]
pub struct Plan {
    pub profiles: BTreeMap<String, ProfilePlan>,
    pub public: Vec<PublicComposite>,
    /// Deployments for topology nodes, added to the router but not listed.
    pub hidden: Vec<ModelEntry>,
    pub observability_log: Option<PathBuf>,
}

/// Resolves the composite section of `loaded`.
pub fn plan(loaded: &LoadedConfig) -> Result<(Plan, Vec<String>), Vec<Problem>> {
    let cfg = &loaded.config;
    let file = loaded.path.display().to_string();
    let base_dir = loaded
        .path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut plan = Plan::default();
    let default_composite = crate::config::CompositeSettings::default();
    let composite = cfg
        .general_settings
        .composite_llm
        .as_ref()
        .unwrap_or(&default_composite);
    let root = "general_settings.composite_llm";

    // Strategy registry: component files, or Python import paths that map to built-ins.
    let mut registry: BTreeMap<String, Source> = BTreeMap::new();
    for (name, target) in &composite.strategy_registry {
        let at = format!("{root}.strategy_registry.{name}");
        if target.ends_with(".wasm") {
            registry.insert(name.clone(), Source::File(base_dir.join(target)));
        } else if BUILTIN.contains(&name.as_str()) {
            warnings.push(format!(
                "{file}: {at}: {target:?} is a Python import path; using conclave's built-in {name:?} strategy"
            ));
            registry.insert(name.clone(), Source::Builtin(name.clone()));
        } else if PLANNED.contains(&name.as_str()) {
            warnings.push(format!(
                "{file}: {at}: {target:?} is a Python import path and the built-in {name:?} strategy is not in this build yet"
            ));
            registry.insert(name.clone(), Source::Missing(name.clone()));
        } else {
            problems.push(Problem::new(
                at,
                format!(
                    "{target:?} is neither a .wasm component nor the name of a built-in strategy"
                ),
            ));
        }
    }

    let defaults = match Limits::default().apply_yaml(composite.limits.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            problems.push(Problem::new(format!("{root}.limits"), e));
            Limits::default()
        }
    };

    let served: Vec<&str> = cfg
        .model_list
        .iter()
        .filter(|e| !is_composite(e))
        .map(|e| e.model_name.as_str())
        .collect();
    let mut hidden_names: Vec<String> = Vec::new();

    for (name, profile) in &composite.profiles {
        let at = format!("{root}.profiles.{name}");
        if profile.strategy == COMPOSER_CLI {
            let topology = serde_json::to_value(&profile.topology).unwrap_or(Value::Null);
            match composer_cli(name, &topology, &at, defaults) {
                Ok((p, entry)) => {
                    plan.hidden.push(entry);
                    plan.profiles.insert(name.clone(), p);
                }
                Err(problem) => problems.push(problem),
            }
            continue;
        }
        let source = match registry.get(&profile.strategy) {
            Some(s) => s.clone(),
            None if BUILTIN.contains(&profile.strategy.as_str()) => {
                Source::Builtin(profile.strategy.clone())
            }
            None if PLANNED.contains(&profile.strategy.as_str()) => {
                warnings.push(format!(
                    "{file}: {at}.strategy: the {:?} strategy is not in this build yet; requests to this profile will be refused",
                    profile.strategy
                ));
                Source::Missing(profile.strategy.clone())
            }
            None => {
                problems.push(Problem::new(
                    format!("{at}.strategy"),
                    format!(
                        "unknown strategy {:?}; built in: {}; others must be listed in strategy_registry",
                        profile.strategy,
                        BUILTIN.join(", ")
                    ),
                ));
                continue;
            }
        };
        let mut topology = match serde_json::to_value(&profile.topology) {
            Ok(Value::Null) => Value::Object(Map::new()),
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                problems.push(Problem::new(format!("{at}.topology"), "must be a mapping"));
                continue;
            }
            Err(e) => {
                problems.push(Problem::new(format!("{at}.topology"), e.to_string()));
                continue;
            }
        };
        let mut ctx = NodeContext {
            loaded,
            served: &served,
            hidden: &mut plan.hidden,
            hidden_names: &mut hidden_names,
            problems: &mut problems,
        };
        resolve_nodes(&mut topology, &format!("{at}.topology"), &mut ctx);
        let settings = topology
            .get("settings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let limits = match defaults.apply_yaml(profile.limits.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                problems.push(Problem::new(format!("{at}.limits"), e));
                defaults
            }
        };
        plan.profiles.insert(
            name.clone(),
            ProfilePlan {
                name: name.clone(),
                strategy: profile.strategy.clone(),
                source,
                topology,
                settings,
                limits,
                path: at,
                direct: false,
            },
        );
    }

    for (i, entry) in cfg.model_list.iter().enumerate() {
        if !is_composite(entry) {
            continue;
        }
        let at = format!("model_list[{i}].litellm_params.model");
        let model = entry.litellm_params.model.as_str();
        let rest = model.strip_prefix("composite/").unwrap_or(model);
        let profile_name = rest
            .strip_prefix("profile/")
            .map(str::to_owned)
            .or_else(|| {
                // A bare profile name when custom_llm_provider: composite.
                (!rest.contains('/')).then(|| rest.to_owned())
            });
        match profile_name {
            Some(p) if plan.profiles.contains_key(&p) => plan.public.push(PublicComposite {
                model_name: entry.model_name.clone(),
                profile: p,
            }),
            Some(p) => problems.push(Problem::new(
                at,
                format!("no profile named {p:?} under {root}.profiles"),
            )),
            None => {
                // The seed's composite/composer-cli/<model>.
                if let Some(model) = rest.strip_prefix("composer-cli/") {
                    let name = format!("{}#direct", entry.model_name);
                    match composer_cli(&name, &serde_json::json!({"model": model}), &at, defaults) {
                        Ok((p, hidden)) => {
                            plan.hidden.push(hidden);
                            plan.profiles.insert(name.clone(), p);
                            plan.public.push(PublicComposite {
                                model_name: entry.model_name.clone(),
                                profile: name,
                            });
                        }
                        Err(problem) => problems.push(problem),
                    }
                    continue;
                }
                // Direct form: composite/<strategy>/<provider>/<model>.
                let Some((strategy, target)) = rest.split_once('/') else {
                    problems.push(Problem::new(at, "expected composite/profile/<name> or composite/<strategy>/<provider>/<model>"));
                    continue;
                };
                let source = match registry.get(strategy) {
                    Some(s) => s.clone(),
                    None if BUILTIN.contains(&strategy) => Source::Builtin(strategy.to_owned()),
                    None if PLANNED.contains(&strategy) => Source::Missing(strategy.to_owned()),
                    None => {
                        problems.push(Problem::new(at, format!("unknown strategy {strategy:?}")));
                        continue;
                    }
                };
                let mut topology = serde_json::json!({"model": target});
                let mut ctx = NodeContext {
                    loaded,
                    served: &served,
                    hidden: &mut plan.hidden,
                    hidden_names: &mut hidden_names,
                    problems: &mut problems,
                };
                resolve_nodes(&mut topology, &at, &mut ctx);
                let name = format!("{}#direct", entry.model_name);
                plan.profiles.insert(
                    name.clone(),
                    ProfilePlan {
                        name: name.clone(),
                        strategy: strategy.to_owned(),
                        source,
                        topology,
                        settings: Map::new(),
                        limits: defaults,
                        path: at,
                        direct: true,
                    },
                );
                plan.public.push(PublicComposite {
                    model_name: entry.model_name.clone(),
                    profile: name,
                });
            }
        }
    }

    if composite.observability.enabled {
        let log = composite
            .observability
            .log_file
            .as_deref()
            .unwrap_or("llm_logs.jsonl");
        plan.observability_log = Some(base_dir.join(log));
    }

    if problems.is_empty() {
        Ok((plan, warnings))
    } else {
        Err(problems)
    }
}

struct NodeContext<'a> {
    loaded: &'a LoadedConfig,
    served: &'a [&'a str],
    hidden: &'a mut Vec<ModelEntry>,
    hidden_names: &'a mut Vec<String>,
    problems: &'a mut Vec<Problem>,
}

/// Walks the topology and makes every node's model routable.
fn resolve_nodes(value: &mut Value, path: &str, ctx: &mut NodeContext<'_>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(model)) = map.get("model").cloned() {
                let provider = map
                    .get("provider")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match routable_name(&model, provider.as_deref(), path, ctx) {
                    Ok(name) => {
                        map.insert("model".into(), Value::String(name));
                    }
                    Err(problem) => ctx.problems.push(problem),
                }
            }
            for (k, v) in map.iter_mut() {
                if k != "model" && k != "params" {
                    resolve_nodes(v, &format!("{path}.{k}"), ctx);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_nodes(item, &format!("{path}[{i}]"), ctx);
            }
        }
        _ => {}
    }
}

fn wildcard_serves(served: &[&str], model: &str) -> bool {
    served.iter().any(|s| {
        s.strip_suffix('*')
            .is_some_and(|prefix| model.starts_with(prefix) && model.len() > prefix.len())
    })
}

fn routable_name(
    model: &str,
    provider: Option<&str>,
    path: &str,
    ctx: &mut NodeContext<'_>,
) -> Result<String, Problem> {
    let composite = ctx.loaded.config.general_settings.composite_llm.as_ref();
    if provider.is_none() && (ctx.served.contains(&model) || wildcard_serves(ctx.served, model)) {
        return Ok(model.to_owned());
    }
    let mut params = match provider {
        Some(bundle) => composite
            .and_then(|c| c.providers.get(bundle))
            .map(|b| b.litellm_params.clone())
            .ok_or_else(|| {
                Problem::new(
                    format!("{path}.provider"),
                    format!("no provider bundle named {bundle:?} under general_settings.composite_llm.providers"),
                )
            })?,
        None => LitellmParams::default(),
    };
    params.model = model.to_owned();
    let (prefix, _) = split_provider(&params);
    if !model.contains('/') || !crate::providers::is_supported(prefix) {
        return Err(Problem::new(
            format!("{path}.model"),
            format!("{model:?} is not a model_list name and not a supported provider/model"),
        ));
    }
    let name = match provider {
        Some(bundle) => format!("{model}@{bundle}"),
        None => model.to_owned(),
    };
    if !ctx.hidden_names.contains(&name) {
        ctx.hidden_names.push(name.clone());
        ctx.hidden.push(ModelEntry {
            model_name: name.clone(),
            litellm_params: params,
            model_info: None,
        });
    }
    Ok(name)
}

/// Maps a `composer-cli` profile (topology `{model, settings: {cli_command,
/// timeout_seconds, max_output_bytes, io_log_path}}`) onto a hidden `exec/`
/// deployment served through the built-in passthrough.
fn composer_cli(
    name: &str,
    topology: &Value,
    at: &str,
    limits: Limits,
) -> Result<(ProfilePlan, ModelEntry), Problem> {
    let model = topology
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Problem::new(
                format!("{at}.topology.model"),
                "is required (the CLI's model name)",
            )
        })?;
    let settings = topology.get("settings").cloned().unwrap_or(Value::Null);
    let setting = |key: &str| settings.get(key).filter(|v| !v.is_null());
    let yaml = |v: &Value| serde_yaml::to_value(v).unwrap_or(serde_yaml::Value::Null);
    let mut params = LitellmParams {
        model: format!("exec/{model}"),
        ..LitellmParams::default()
    };
    let command = setting("cli_command")
        .and_then(Value::as_str)
        .unwrap_or("agent");
    params.extra.insert(
        "command".into(),
        serde_yaml::Value::String(command.to_owned()),
    );
    params.extra.insert(
        "args".into(),
        yaml(&serde_json::json!([
            "-p",
            "{prompt}",
            "--model",
            "{model}",
            "--mode=ask"
        ])),
    );
    for (from, to) in [
        ("max_output_bytes", "max_output_bytes"),
        ("io_log_path", "io_log_path"),
    ] {
        if let Some(v) = setting(from) {
            params.extra.insert(to.into(), yaml(v));
        }
    }
    if let Some(t) = setting("timeout_seconds") {
        let seconds = t.as_f64().filter(|s| *s > 0.0).ok_or_else(|| {
            Problem::new(
                format!("{at}.topology.settings.timeout_seconds"),
                "must be a positive number",
            )
        })?;
        params.timeout = Some(seconds);
        params.stream_timeout = Some(seconds);
    }
    let hidden = format!("composer-cli/{name}");
    Ok((
        ProfilePlan {
            name: name.to_owned(),
            strategy: COMPOSER_CLI.to_owned(),
            source: Source::Builtin("passthrough".into()),
            topology: serde_json::json!({"model": hidden}),
            settings: Map::new(),
            limits,
            path: at.to_owned(),
            direct: false,
        },
        ModelEntry {
            model_name: hidden,
            litellm_params: params,
            model_info: None,
        },
    ))
}
