//! Resolving `general_settings.composite_llm` into runnable profiles: which
//! component each profile runs, its topology as JSON with every node's model
//! made routable, its settings and its limits.
//!
//! The work goes in four steps, one section each below: the strategy
//! registry (component files, or Python import paths naming a strategy
//! conclave provides), the profiles, the model_list entries that expose
//! them, and the topology nodes' models.
//!
//! A topology node is any object with a `model` key. Its model resolves first
//! against model_list names; a node with a `provider` (a bundle under
//! `composite_llm.providers`), or a `provider/model` name nothing in
//! model_list serves, becomes a hidden deployment that the router serves
//! under a name the node is rewritten to.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::builtin;
use super::limits::Limits;
use crate::config::{CompositeSettings, LitellmParams, LoadedConfig, ModelEntry, Problem};

/// The seed project's coding-agent CLI strategy: served by an `exec/`
/// deployment behind the built-in passthrough (guests never spawn processes).
pub const COMPOSER_CLI: &str = "composer-cli";
/// Where every key this module reads lives.
const ROOT: &str = "general_settings.composite_llm";

/// Where a strategy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Builtin(String),
    File(PathBuf),
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

/// What a strategy name stands for.
#[derive(Debug, Clone)]
enum Provided {
    /// A WebAssembly component run by the strategy host.
    Component(Source),
    /// The host-side coding-agent CLI (see [`COMPOSER_CLI`]).
    ComposerCli,
}

/// Resolves the composite section of `loaded`.
pub fn plan(loaded: &LoadedConfig) -> Result<(Plan, Vec<String>), Vec<Problem>> {
    let default_composite = CompositeSettings::default();
    let composite = loaded
        .config
        .general_settings
        .composite_llm
        .as_ref()
        .unwrap_or(&default_composite);
    let mut planner = Planner::new(loaded, composite);
    planner.registry();
    planner.profiles();
    planner.public_models();
    planner.observability();
    planner.finish()
}

/// The state of one resolution: what is resolved so far and what went wrong.
struct Planner<'a> {
    loaded: &'a LoadedConfig,
    composite: &'a CompositeSettings,
    /// The config file, for warnings.
    file: String,
    /// Relative component and log paths start here.
    base_dir: PathBuf,
    /// model_list names that route to deployments.
    served: Vec<&'a str>,
    registry: BTreeMap<String, Provided>,
    /// `composite_llm.limits`: every profile's starting point.
    defaults: Limits,
    plan: Plan,
    hidden_names: HashSet<String>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(loaded: &'a LoadedConfig, composite: &'a CompositeSettings) -> Self {
        let served = loaded
            .config
            .model_list
            .iter()
            .filter(|e| {
                !e.is_composite()
                    && e.litellm_params.is_served()
                    && e.in_environment(&loaded.config.env)
            })
            .map(|e| e.model_name.as_str())
            .collect();
        let mut planner = Self {
            loaded,
            composite,
            file: loaded.path.display().to_string(),
            base_dir: loaded
                .path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .to_path_buf(),
            served,
            registry: BTreeMap::new(),
            defaults: Limits::default(),
            plan: Plan::default(),
            hidden_names: HashSet::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        planner.defaults = planner.limits(
            Limits::default(),
            composite.limits.as_ref(),
            &format!("{ROOT}.limits"),
        );
        planner
    }

    fn finish(self) -> Result<(Plan, Vec<String>), Vec<Problem>> {
        if self.problems.is_empty() {
            Ok((self.plan, self.warnings))
        } else {
            Err(self.problems)
        }
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// `base` with the YAML `overrides` applied; `base` if they are invalid.
    fn limits(&mut self, base: Limits, overrides: Option<&serde_yaml::Value>, at: &str) -> Limits {
        base.apply_yaml(overrides).unwrap_or_else(|e| {
            self.problem(at, e);
            base
        })
    }

    fn observability(&mut self) {
        let observability = &self.composite.observability;
        if observability.enabled {
            let log = observability
                .log_file
                .as_deref()
                .unwrap_or("llm_logs.jsonl");
            self.plan.observability_log = Some(self.base_dir.join(log));
        }
    }
}

// --- The strategy registry -------------------------------------------------

/// The strategy conclave provides under `name`, if any.
fn provided(name: &str) -> Option<Provided> {
    if name == COMPOSER_CLI {
        Some(Provided::ComposerCli)
    } else if builtin::is_builtin(name) {
        Some(Provided::Component(Source::Builtin(name.to_owned())))
    } else {
        None
    }
}

/// Every strategy name conclave provides, for messages.
fn provided_names() -> String {
    builtin::names()
        .chain([COMPOSER_CLI])
        .collect::<Vec<_>>()
        .join(", ")
}

/// A name compared loosely: lowercase, without `-`, `_` or a `Strategy`
/// suffix, so `MoAStrategy`, `self_consistency` and `composer-cli` match
/// conclave's names.
fn loose(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    match name.strip_suffix("strategy") {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    }
}

/// The strategy a Python import path (`package.module:Class`) registered as
/// `entry` stands for: its module, then its class, then the entry's name.
fn python_strategy(entry: &str, target: &str) -> Option<&'static str> {
    let (module, class) = target.split_once(':').unwrap_or((target, ""));
    let module = module.rsplit('.').next().unwrap_or(module);
    let known: Vec<&'static str> = builtin::names().chain([COMPOSER_CLI]).collect();
    [module, class, entry]
        .into_iter()
        .filter(|candidate| !candidate.is_empty())
        .find_map(|candidate| {
            let candidate = loose(candidate);
            known.iter().copied().find(|name| loose(name) == candidate)
        })
}

impl Planner<'_> {
    /// Reads `strategy_registry`: component files, or Python import paths
    /// that name a strategy conclave provides.
    fn registry(&mut self) {
        let composite = self.composite;
        for (name, target) in &composite.strategy_registry {
            if let Some(provided) = self.registry_entry(name, target) {
                self.registry.insert(name.clone(), provided);
            }
        }
    }

    fn registry_entry(&mut self, name: &str, target: &str) -> Option<Provided> {
        let at = format!("{ROOT}.strategy_registry.{name}");
        if target.ends_with(".wasm") {
            let path = self.base_dir.join(target);
            // Only a profile that uses the entry compiles it; one that no
            // profile uses yet would fail the edit that first does.
            if !path.is_file() {
                self.warnings.push(format!(
                    "{}: {at}: {} is not a file; a profile that uses {name:?} will be refused",
                    self.file,
                    path.display()
                ));
            }
            return Some(Provided::Component(Source::File(path)));
        }
        let Some(strategy) = python_strategy(name, target) else {
            self.problem(
                at,
                format!(
                    "{target:?} is neither a .wasm component nor a Python import path naming a strategy conclave provides ({})",
                    provided_names()
                ),
            );
            return None;
        };
        let kind = if strategy == COMPOSER_CLI {
            "host-side"
        } else {
            "built-in"
        };
        self.warnings.push(format!(
            "{}: {at}: {target:?} is a Python import path; using conclave's {kind} {strategy:?} strategy",
            self.file
        ));
        provided(strategy)
    }

    /// What a profile's or a direct model's strategy name resolves to.
    fn strategy(&self, name: &str) -> Option<Provided> {
        self.registry.get(name).cloned().or_else(|| provided(name))
    }
}

// --- Profiles --------------------------------------------------------------

impl Planner<'_> {
    /// Resolves every profile under `composite_llm.profiles`.
    fn profiles(&mut self) {
        let composite = self.composite;
        for (name, profile) in &composite.profiles {
            let at = format!("{ROOT}.profiles.{name}");
            if let Some(plan) = self.profile(name, profile, &at) {
                self.plan.profiles.insert(name.clone(), plan);
            }
        }
    }

    fn profile(
        &mut self,
        name: &str,
        profile: &crate::config::Profile,
        at: &str,
    ) -> Option<ProfilePlan> {
        let Some(provided) = self.strategy(&profile.strategy) else {
            self.problem(
                format!("{at}.strategy"),
                format!(
                    "unknown strategy {:?}; conclave provides: {}; others must be listed in strategy_registry",
                    profile.strategy,
                    provided_names()
                ),
            );
            return None;
        };
        let mut topology = self.topology(&profile.topology, at)?;
        let source = match provided {
            Provided::ComposerCli => return self.composer_cli(name, &topology, at),
            Provided::Component(source) => source,
        };
        self.resolve_nodes(&mut topology, &format!("{at}.topology"));
        let settings = topology
            .get("settings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let limits = self.limits(
            self.defaults,
            profile.limits.as_ref(),
            &format!("{at}.limits"),
        );
        Some(ProfilePlan {
            name: name.to_owned(),
            strategy: profile.strategy.clone(),
            source,
            topology,
            settings,
            limits,
            path: at.to_owned(),
            direct: false,
        })
    }

    /// A profile's topology as a JSON object (absent: empty).
    fn topology(&mut self, yaml: &serde_yaml::Value, at: &str) -> Option<Value> {
        match serde_json::to_value(yaml) {
            Ok(Value::Null) => Some(Value::Object(Map::new())),
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(_) => {
                self.problem(format!("{at}.topology"), "must be a mapping");
                None
            }
            Err(e) => {
                self.problem(format!("{at}.topology"), e.to_string());
                None
            }
        }
    }

    /// Maps a `composer-cli` profile (topology `{model, settings:
    /// {cli_command, timeout_seconds, max_output_bytes, io_log_path}}`) onto a
    /// hidden `exec/` deployment served through the built-in passthrough.
    fn composer_cli(&mut self, name: &str, topology: &Value, at: &str) -> Option<ProfilePlan> {
        match composer_cli_deployment(name, topology, at) {
            Ok(entry) => {
                let plan = ProfilePlan {
                    name: name.to_owned(),
                    strategy: COMPOSER_CLI.to_owned(),
                    source: Source::Builtin("passthrough".into()),
                    topology: json!({"model": entry.model_name}),
                    settings: Map::new(),
                    limits: self.defaults,
                    path: at.to_owned(),
                    direct: false,
                };
                self.plan.hidden.push(entry);
                Some(plan)
            }
            Err(problem) => {
                self.problems.push(problem);
                None
            }
        }
    }
}

/// The hidden `exec/` deployment of a composer-cli profile.
fn composer_cli_deployment(name: &str, topology: &Value, at: &str) -> Result<ModelEntry, Problem> {
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
        yaml(&json!([
            "-p",
            "{prompt}",
            "--model",
            "{model}",
            "--mode=ask"
        ])),
    );
    for key in ["max_output_bytes", "io_log_path"] {
        if let Some(v) = setting(key) {
            params.extra.insert(key.into(), yaml(v));
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
    Ok(ModelEntry {
        model_name: format!("{COMPOSER_CLI}/{name}"),
        litellm_params: params,
        ..ModelEntry::default()
    })
}

// --- Public models ---------------------------------------------------------

/// What a composite model_list entry's `model` names.
enum Exposed<'m> {
    /// `composite/profile/<name>`, or a bare profile name.
    Profile(&'m str),
    /// `composite/<strategy>/<target>`: a profile made up on the spot.
    Direct { strategy: &'m str, target: &'m str },
}

fn exposed(model: &str) -> Exposed<'_> {
    let rest = model.strip_prefix("composite/").unwrap_or(model);
    if let Some(profile) = rest.strip_prefix("profile/") {
        return Exposed::Profile(profile);
    }
    match rest.split_once('/') {
        Some((strategy, target)) => Exposed::Direct { strategy, target },
        // A bare profile name when custom_llm_provider: composite.
        None => Exposed::Profile(rest),
    }
}

impl Planner<'_> {
    /// Exposes profiles under the model_list names of composite entries.
    fn public_models(&mut self) {
        let loaded = self.loaded;
        let entries = &loaded.config.model_list;
        for (i, entry) in entries.iter().enumerate().filter(|(_, e)| e.is_composite()) {
            let at = format!("model_list[{i}].litellm_params.model");
            let Some(profile) = self.public_model(entry, &at) else {
                continue;
            };
            // A name serves one composite profile, and nothing beside it.
            let same_name = |e: &&ModelEntry| e.model_name == entry.model_name;
            if let Some(k) = entries[..i]
                .iter()
                .position(|e| same_name(&e) && e.is_composite())
            {
                self.warnings.push(format!(
                    "{}: model_list[{i}]: {:?} is served by the composite model of \
                     model_list[{k}]; this entry is not used",
                    self.file, entry.model_name
                ));
                continue;
            }
            for (j, other) in entries.iter().enumerate() {
                if j != i && same_name(&other) && !other.is_composite() {
                    self.warnings.push(format!(
                        "{}: model_list[{j}]: {:?} is a composite model (model_list[{i}]), \
                         which its profile alone serves; this entry is not used",
                        self.file, entry.model_name
                    ));
                }
            }
            self.plan.public.push(PublicComposite {
                model_name: entry.model_name.clone(),
                profile,
            });
        }
    }

    /// The profile `entry` exposes, made up for the direct form.
    fn public_model(&mut self, entry: &ModelEntry, at: &str) -> Option<String> {
        match exposed(&entry.litellm_params.model) {
            Exposed::Profile(name) if self.plan.profiles.contains_key(name) => {
                Some(name.to_owned())
            }
            Exposed::Profile(name) => {
                self.problem(
                    at,
                    format!("no profile named {name:?} under {ROOT}.profiles"),
                );
                None
            }
            Exposed::Direct { strategy, target } => {
                let name = format!("{}#direct", entry.model_name);
                let plan = self.direct(&name, strategy, target, entry, at)?;
                self.plan.profiles.insert(name.clone(), plan);
                Some(name)
            }
        }
    }

    /// The direct form: `composite/<strategy>/<provider>/<model>`, or the
    /// seed's `composite/composer-cli/<model>`.
    fn direct(
        &mut self,
        name: &str,
        strategy: &str,
        target: &str,
        entry: &ModelEntry,
        at: &str,
    ) -> Option<ProfilePlan> {
        let source = match self.strategy(strategy) {
            Some(Provided::Component(source)) => source,
            Some(Provided::ComposerCli) => {
                return self.composer_cli(name, &json!({"model": target}), at);
            }
            None => {
                self.problem(at, format!("unknown strategy {strategy:?}"));
                return None;
            }
        };
        let model = match self.direct_model(target, entry, at) {
            Ok(model) => model,
            Err(problem) => {
                self.problems.push(problem);
                return None;
            }
        };
        let topology = json!({ "model": model });
        Some(ProfilePlan {
            name: name.to_owned(),
            strategy: strategy.to_owned(),
            source,
            topology,
            settings: Map::new(),
            limits: self.defaults,
            path: at.to_owned(),
            direct: true,
        })
    }
}

// --- Topology nodes --------------------------------------------------------

/// Whether a direct entry's `litellm_params` say more than its model: an
/// address, a key, headers or provider fields (`mock_response`, ...) that
/// its model must be called with.
fn carries_own_settings(params: &LitellmParams) -> bool {
    params.api_base.is_some()
        || params.api_key.is_some()
        || params.api_version.is_some()
        || params.organization.is_some()
        || !params.extra_headers.is_empty()
        || !params.extra.is_empty()
}

fn wildcard_serves(served: &[&str], model: &str) -> bool {
    served.iter().any(|s| {
        s.strip_suffix('*')
            .is_some_and(|prefix| model.starts_with(prefix) && model.len() > prefix.len())
    })
}

impl Planner<'_> {
    /// Walks the topology and makes every node's model routable.
    fn resolve_nodes(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(model)) = map.get("model").cloned() {
                    let provider = map
                        .get("provider")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match self.routable_name(&model, provider.as_deref(), path) {
                        Ok(name) => {
                            map.insert("model".into(), Value::String(name));
                        }
                        Err(problem) => self.problems.push(problem),
                    }
                }
                for (k, v) in map.iter_mut() {
                    if k != "model" && k != "params" {
                        self.resolve_nodes(v, &format!("{path}.{k}"));
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.resolve_nodes(item, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }

    /// The name a node's model routes under: a model_list name as is, else a
    /// hidden deployment (added once) named after the model and its bundle.
    fn routable_name(
        &mut self,
        model: &str,
        provider: Option<&str>,
        path: &str,
    ) -> Result<String, Problem> {
        let served = self.served.contains(&model) || wildcard_serves(&self.served, model);
        if provider.is_none() && served {
            return Ok(model.to_owned());
        }
        if provider.is_none() && self.skipped(model) {
            return Err(Problem::new(
                format!("{path}.model"),
                format!(
                    "{model:?} names model_list entries that are all skipped (a provider \
                     conclave does not speak, or another environment; see the warnings): \
                     nothing would answer it"
                ),
            ));
        }
        let params = self.node_params(model, provider, path)?;
        let name = match provider {
            Some(bundle) => format!("{model}@{bundle}"),
            None => model.to_owned(),
        };
        Ok(self.hidden(name, params))
    }

    /// Whether `model` is a model_list name all of whose entries are
    /// skipped (none served).
    fn skipped(&self, model: &str) -> bool {
        self.loaded
            .config
            .model_list
            .iter()
            .any(|e| e.model_name == model && !e.is_composite())
    }

    /// `name`, served by a hidden deployment with `params` (added once).
    fn hidden(&mut self, name: String, params: LitellmParams) -> String {
        if self.hidden_names.insert(name.clone()) {
            self.plan.hidden.push(ModelEntry {
                model_name: name.clone(),
                litellm_params: params,
                ..ModelEntry::default()
            });
        }
        name
    }

    /// The name the direct form's model routes under. The entry's own
    /// `litellm_params` (its key, address, ...) are the model's: a hidden
    /// deployment named after the model carries them, so a request naming
    /// the model (as chairman, aggregator, ...) reaches it. A model a public
    /// name already serves keeps that name unless the entry says more; then
    /// its deployment is `<model>@<entry name>`.
    fn direct_model(
        &mut self,
        target: &str,
        entry: &ModelEntry,
        path: &str,
    ) -> Result<String, Problem> {
        let public = self.served.contains(&target) || wildcard_serves(&self.served, target);
        let own = carries_own_settings(&entry.litellm_params);
        if !own {
            return self.routable_name(target, None, path);
        }
        let name = if public || self.hidden_names.contains(target) {
            format!("{target}@{}", entry.model_name)
        } else {
            target.to_owned()
        };
        let mut params = entry.litellm_params.clone();
        params.model = target.to_owned();
        params.custom_llm_provider = None;
        provider_model(&params, path)?;
        Ok(self.hidden(name, params))
    }

    /// The litellm_params of a hidden deployment: the node's provider bundle
    /// (if any) with the node's model.
    fn node_params(
        &self,
        model: &str,
        provider: Option<&str>,
        path: &str,
    ) -> Result<LitellmParams, Problem> {
        let mut params = match provider {
            Some(bundle) => self
                .composite
                .providers
                .get(bundle)
                .map(|b| b.litellm_params.clone())
                .ok_or_else(|| {
                    Problem::new(
                        format!("{path}.provider"),
                        format!("no provider bundle named {bundle:?} under {ROOT}.providers"),
                    )
                })?,
            None => LitellmParams::default(),
        };
        params.model = model.to_owned();
        provider_model(&params, path)?;
        Ok(params)
    }
}

/// Refuses a hidden deployment whose model is not `<provider>/<model>` of
/// a supported provider.
fn provider_model(params: &LitellmParams, path: &str) -> Result<(), Problem> {
    let model = &params.model;
    if !model.contains('/') || !params.is_served() {
        return Err(Problem::new(
            format!("{path}.model"),
            format!("{model:?} is not a model_list name and not a supported provider/model"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_import_paths_name_the_strategies_conclave_provides() {
        for (entry, target, expected) in [
            (
                "moa",
                "composite_llm.strategies.moa:MoAStrategy",
                Some("moa"),
            ),
            ("x", "pkg.council:CouncilStrategy", Some("council")),
            (
                "composer-cli",
                "composite_llm.strategies.composer_cli:ComposerCliStrategy",
                Some(COMPOSER_CLI),
            ),
            (
                "sc",
                "my.pkg:SelfConsistencyStrategy",
                Some("self-consistency"),
            ),
            ("best-of-n", "my.pkg:Mine", Some("best-of-n")),
            ("mine", "my.pkg:Unknown", None),
        ] {
            assert_eq!(python_strategy(entry, target), expected, "{target}");
        }
    }

    #[test]
    fn entries_beside_a_composite_model_of_their_name_are_reported_unused() {
        let yaml = "model_list:\n\
            \x20 - {model_name: p, litellm_params: {model: mock/plain}}\n\
            \x20 - {model_name: p, litellm_params: {model: composite/profile/one}}\n\
            \x20 - {model_name: p, litellm_params: {model: composite/profile/two}}\n\
            \x20 - {model_name: a, litellm_params: {model: mock/a}}\n\
            general_settings:\n  composite_llm:\n    profiles:\n\
            \x20     one: {strategy: passthrough, topology: {model: a}}\n\
            \x20     two: {strategy: passthrough, topology: {model: a}}\n";
        let loaded = crate::config::load_str(
            yaml,
            std::path::Path::new("c.yaml"),
            crate::config::Env::default(),
        )
        .unwrap();
        let (plan, warnings) = plan(&loaded).unwrap();
        let served: Vec<&str> = plan.public.iter().map(|p| p.profile.as_str()).collect();
        assert_eq!(served, ["one"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("model_list[0]") && warnings[0].contains("not used"));
        assert!(warnings[1].contains("model_list[2]") && warnings[1].contains("not used"));
    }
}
