//! Building a [`Router`] from a config, one job per function: a deployment per
//! model_list entry, groups and wildcards, aliases, fallback tables (with a
//! warning for every name nothing serves), and the retry and cooldown
//! policies. Problems name their key paths; warnings also name the file.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::balance::{self, Balancer};
use super::cooldown::{AllowedFailsByClass, CooldownPolicy, CountRule, DEFAULT_ALLOWED_FAILS};
use super::deployment::{Deployment, DeploymentSpec, LiveState};
use super::fallback::{self, Fallbacks};
use super::retry::RetryPolicy;
use super::{ModelGroup, Router};
use crate::catalog;
use crate::config::{
    AllowedFailsPolicyConfig, Config, ConfigError, Env, LitellmParams, LitellmSettings,
    LoadedConfig, ModelEntry, Problem, RouterSettings, provider_reads,
};
use crate::providers::{Target, Timeouts, table};

/// LiteLLM's default whole-request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_NUM_RETRIES: u32 = 2;
const DEFAULT_MAX_FALLBACKS: usize = 5;

/// Model groups in config order, each with its deployments in entry order.
pub(super) type Grouped = Vec<(String, Vec<Arc<Deployment>>)>;

/// Live numbers of the previous version's deployments, by id and target
/// fingerprint; each is carried on by at most one new deployment.
pub(super) type Carried = HashMap<(String, String), Arc<LiveState>>;

/// Exact model groups by name.
/// Looked up by name on every request: foldhash, as the gateway's other
/// maps keyed by names of its own config.
pub(super) type Groups = foldhash::HashMap<String, Arc<ModelGroup>>;

/// `prefix*` groups, longest prefix first; a bare `*` has prefix "".
pub(super) type Wildcards = Vec<(String, Arc<ModelGroup>)>;

/// What a build found besides its result: problems refuse the config,
/// warnings are logged and the build goes on.
pub(super) struct Findings {
    file: String,
    problems: Vec<Problem>,
    /// Each names the file and a key path.
    pub warnings: Vec<String>,
}

impl Findings {
    /// Nothing found yet in `loaded`.
    pub fn new(loaded: &LoadedConfig) -> Self {
        Self {
            file: loaded.path.display().to_string(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(super) fn warn(&mut self, message: impl Display) {
        self.warnings.push(format!("{}: {message}", self.file));
    }

    /// `value` when nothing was wrong so far, else the config error for
    /// `path` with every problem found (a missing `value` has its own).
    pub fn refuse_problems<T>(&mut self, path: &Path, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => Err(ConfigError::invalid(
                path,
                std::mem::take(&mut self.problems),
            )),
        }
    }
}

/// The balancer `router_settings.routing_strategy` names, leaving out
/// deployments at their rpm/tpm when `enable_pre_call_checks` is on.
pub(super) fn balancer(rs: &RouterSettings, found: &mut Findings) -> Option<Box<dyn Balancer>> {
    let named = balance::from_name(rs.routing_strategy.as_deref(), &rs.routing_strategy_args)
        .map_err(|message| found.problem("router_settings.routing_strategy", message))
        .ok()?;
    Some(if rs.enable_pre_call_checks == Some(true) {
        Box::new(balance::PreCallChecked(named))
    } else {
        named
    })
}

/// Deployment timeouts and call limit where an entry sets none.
struct DeploymentDefaults {
    request: Duration,
    stream: Option<Duration>,
    max_parallel_requests: Option<u32>,
}

impl DeploymentDefaults {
    fn of(rs: &RouterSettings, ls: &LitellmSettings) -> Self {
        Self {
            request: rs
                .timeout
                .or(ls.request_timeout)
                .map_or(DEFAULT_TIMEOUT, crate::config::seconds),
            stream: rs.stream_timeout.map(crate::config::seconds),
            max_parallel_requests: rs.default_max_parallel_requests,
        }
    }

    /// The timeouts of a deployment with `params`.
    fn apply(&self, params: &LitellmParams) -> Timeouts {
        let request = params
            .timeout
            .or(params.request_timeout)
            .map_or(self.request, crate::config::seconds);
        let stream = params
            .stream_timeout
            .map(crate::config::seconds)
            .or(self.stream)
            .unwrap_or(request);
        Timeouts { request, stream }
    }
}

/// Every deployment of `loaded` and of `extra` (topology nodes the config
/// implies), grouped by model name. Composite entries are not deployments.
pub(super) fn deployments(
    loaded: &LoadedConfig,
    extra: &[ModelEntry],
    mut carried: Carried,
    found: &mut Findings,
) -> Grouped {
    let cfg = &loaded.config;
    let defaults = DeploymentDefaults::of(&cfg.router_settings, &cfg.litellm_settings);
    let drop_params = cfg.litellm_settings.drop_params == Some(true);
    let mut grouped = Grouped::new();
    let mut first_with_id: HashMap<String, String> = HashMap::new();
    let written: HashSet<&str> = cfg
        .model_list
        .iter()
        .map(|e| e.model_name.as_str())
        .collect();
    let expanded = entries(cfg, extra).flat_map(|(path, entry)| {
        super::pass_through::expand(entry, &written)
            .into_iter()
            .flat_map(|(entry, implied)| {
                let each = match entry {
                    Cow::Borrowed(entry) => entry.per_organization(),
                    Cow::Owned(entry) => entry
                        .per_organization()
                        .into_iter()
                        .map(|one| Cow::Owned(one.into_owned()))
                        .collect(),
                };
                each.into_iter().map(move |entry| (entry, implied))
            })
            .map(move |(entry, implied)| (path.clone(), entry, implied))
    });
    for (path, entry, implied) in expanded {
        if entry.is_composite() {
            continue;
        }
        if entry.model_name.trim_end_matches('*').contains('*') {
            found.warn(format_args!(
                "{path}.model_name: {:?} has a `*` before its end, which is read as a \
                 character of the name: only a trailing `*` is a wildcard here",
                entry.model_name
            ));
        }
        let env = &loaded.config.env;
        if !entry.in_environment(env) {
            found.warn(format_args!(
                "{path}.model_info.supported_environments: does not list this environment \
                 ({}), so the deployment is not loaded",
                crate::config::ENVIRONMENT_VARIABLE
            ));
            continue;
        }
        let at = format!("{path}.litellm_params");
        // An implied provider wildcard is not warned about (a missing key
        // fails when asked, with the provider's own refusal): the entry the
        // config wrote was.
        let Some(mut target) = target(
            &at,
            &entry.litellm_params,
            env,
            drop_params,
            !implied,
            found,
        ) else {
            continue;
        };
        if let Target::Http(http) = &mut target
            && entry
                .model_info
                .as_ref()
                .is_some_and(crate::config::declares_responses)
        {
            http.serve_responses_natively();
        }
        let fingerprint = fingerprint(&entry.litellm_params, &target, &loaded.config.env);
        let members = members(&mut grouped, &entry.model_name);
        let mut spec = spec(&entry, target, members.len(), &defaults, fingerprint);
        spec.budget = deployment_budget(&at, &entry.litellm_params, found);
        match first_with_id.get(&spec.id) {
            Some(first) => found.warn(format_args!(
                "{path}: deployment id {:?} is also {first}'s; the two share cooldowns, \
                 health and metrics (give one its own model_info.id)",
                spec.id
            )),
            None => {
                first_with_id.insert(spec.id.clone(), path.to_string());
            }
        }
        let live = carried
            .remove(&(spec.id.clone(), spec.fingerprint.clone()))
            .unwrap_or_default();
        members.push(Arc::new(Deployment::with_live(spec, live)));
    }
    grouped
}

/// The live numbers of every deployment of `previous`, to carry on.
pub(super) fn carried(previous: Option<&Router>) -> Carried {
    let mut carried = Carried::new();
    for group in previous.map(Router::groups).unwrap_or_default() {
        for d in &group.deployments {
            let key = (d.id.to_string(), d.fingerprint().to_owned());
            carried.insert(key, d.live().clone());
        }
    }
    carried
}

/// A hash of what a deployment calls: provider, upstream model, api_base
/// and key (the one in `params`, else the one the provider borrows from the
/// environment), plus the settings that define a mock or exec target. The
/// key goes into the hash only, never anywhere else.
fn fingerprint(params: &LitellmParams, target: &Target, env: &Env) -> String {
    let key = params
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .filter(|k| !k.is_empty())
        .or_else(|| match target {
            Target::Http(http) if !params.no_env_key => {
                http.key_env().iter().find_map(|name| env.get(name))
            }
            _ => None,
        });
    let api_base = params
        .api_base
        .as_deref()
        .map(|b| b.trim().trim_end_matches('/'));
    let settings = match target {
        Target::Http(_) => serde_json::Value::Null,
        Target::Mock(_) | Target::Exec(_) => {
            serde_json::to_value(&params.extra).unwrap_or_default()
        }
    };
    let canonical = serde_json::json!([
        target.provider(),
        target.upstream_model(),
        api_base,
        key,
        settings
    ]);
    crate::digest::sha256_hex(canonical.to_string().as_bytes())
}

/// model_list entries and then `extra`, each with the key path problems name.
fn entries<'a>(
    cfg: &'a Config,
    extra: &'a [ModelEntry],
) -> impl Iterator<Item = (String, &'a ModelEntry)> {
    let listed = cfg
        .model_list
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("model_list[{i}]"), e));
    let implied = extra.iter().map(|e| {
        (
            format!(
                "general_settings.composite_llm (topology node {:?})",
                e.model_name
            ),
            e,
        )
    });
    listed.chain(implied)
}

/// The target of the entry at `at`; `None` when it is skipped (a provider
/// conclave does not speak, with a warning) or wrong (a problem). When
/// `warn`, warns about a missing key and about extra keys the provider does
/// not read.
fn target(
    at: &str,
    params: &LitellmParams,
    env: &Env,
    drop_params: bool,
    warn: bool,
    found: &mut Findings,
) -> Option<Target> {
    let provider = params.provider();
    if !params.is_served() {
        if let Some(meant) = crate::config::provider_hint(provider) {
            found.problem(
                format!("{at}.model"),
                format!("provider {provider:?} is not known; did you mean {meant:?}?"),
            );
            return None;
        }
        found.warn(format_args!(
            "{at}.model: provider {provider:?} is not supported, deployment skipped \
             (supported: {}; any OpenAI-compatible server works as openai/<model> with api_base)",
            table::names().collect::<Vec<_>>().join(", ")
        ));
        return None;
    }
    let target = Target::from_params(params, env, drop_params)
        .map_err(|error| found.problem(format!("{at}.{}", error.key()), error.to_string()))
        .ok()?;
    if !warn {
        return Some(target);
    }
    if let Target::Http(http) = &target
        && http.key_required()
        && !http.has_key()
    {
        found.warn(format_args!(
            "{at}.api_key: no API key for provider {provider:?}; set api_key or {}",
            http.key_env().join(" / ")
        ));
    }
    for key in params.extra.keys() {
        if provider_reads(provider, key) {
            continue;
        }
        if crate::config::known_param_keys().any(|known| known == key) {
            found.warn(format_args!(
                "{at}.{key}: {provider:?} deployments do not read this key; ignored"
            ));
        } else {
            let hint = crate::config::param_hint(key);
            found.warn(format_args!("{at}.{key}: unknown key, ignored{hint}"));
        }
    }
    Some(target)
}

/// The deployments of group `name`, added at the end when it is new.
fn members<'g>(grouped: &'g mut Grouped, name: &str) -> &'g mut Vec<Arc<Deployment>> {
    let idx = match grouped.iter().position(|(n, _)| n == name) {
        Some(idx) => idx,
        None => {
            grouped.push((name.to_owned(), Vec::new()));
            grouped.len() - 1
        }
    };
    &mut grouped[idx].1
}

/// The spec of `entry`, the `index`th deployment of its group.
fn spec(
    entry: &ModelEntry,
    target: Target,
    index: usize,
    defaults: &DeploymentDefaults,
    fingerprint: String,
) -> DeploymentSpec {
    let params = &entry.litellm_params;
    let max_input_tokens = context_window(entry, &target);
    DeploymentSpec {
        id: deployment_id(entry, index),
        group: entry.model_name.clone(),
        target,
        order: params.order,
        weight: params.weight,
        rpm: params.rpm,
        tpm: params.tpm,
        max_retries: params.num_retries.or(params.max_retries),
        cooldown_time: params
            .cooldown_time
            .and_then(|s| Duration::try_from_secs_f64(s).ok()),
        timeouts: defaults.apply(params),
        max_parallel_requests: params
            .max_parallel_requests
            .or(defaults.max_parallel_requests),
        max_input_tokens,
        tags: params.tags.clone(),
        budget: None,
        fingerprint,
    }
}

/// A deployment's own spend cap (`max_budget` per `budget_duration` in its
/// `litellm_params` at `at`); a duration without a cap is warned about.
fn deployment_budget(
    at: &str,
    params: &LitellmParams,
    found: &mut Findings,
) -> Option<super::budgets::CapSpec> {
    if params.max_budget.is_none() && params.budget_duration.is_some() {
        found.warn(format_args!(
            "{at}.budget_duration: there is no max_budget for it to renew, so the \
             deployment has no budget"
        ));
    }
    super::budgets::read_cap(
        at,
        ("max_budget", params.max_budget),
        ("budget_duration", params.budget_duration.as_deref()),
        found,
    )
}

/// The longest prompt `entry`'s deployment takes, as LiteLLM's pre-call
/// checks read it: its own `model_info.max_input_tokens`, else the
/// catalog's listing of its `model_info.base_model`, else of the model it
/// calls. A wildcard deployment's is not known before a request names a
/// model, so it has none.
fn context_window(entry: &ModelEntry, target: &Target) -> Option<u64> {
    let info = entry.model_info.as_ref();
    let provider = target.provider();
    info.and_then(|i| i.get("max_input_tokens"))
        .and_then(token_count)
        .or_else(|| {
            let base = info?.get("base_model")?.as_str()?;
            catalog::find_name(base)
                .or_else(|| catalog::find(provider, base))?
                .max_input_tokens
        })
        .or_else(|| catalog::context_window(provider, target.upstream_model()))
}

/// A positive token count written as a number.
fn token_count(value: &serde_yaml::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as u64))
        .filter(|n| *n > 0)
}

/// `model_info.id` (a string or a number), else `<group>.<index>`.
fn deployment_id(entry: &ModelEntry, index: usize) -> String {
    entry
        .written_id()
        .unwrap_or_else(|| format!("{}.{index}", entry.model_name))
}

/// Exact groups by name, and the wildcard groups longest prefix first.
pub(super) fn index_groups(grouped: Grouped) -> (Groups, Wildcards) {
    let mut groups = Groups::default();
    let mut wildcards = Wildcards::new();
    for (name, deployments) in grouped {
        let group = Arc::new(ModelGroup {
            name: Arc::from(name.as_str()),
            deployments,
        });
        match name.strip_suffix('*') {
            Some(prefix) => wildcards.push((prefix.to_owned(), group)),
            None => {
                groups.insert(name, group);
            }
        }
    }
    wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
    (groups, wildcards)
}

/// The fallback targets that name a deployment by its `model_info.id`
/// rather than a model group (LiteLLM's fallback to a specific model id),
/// each as a group of that one deployment, whose live state it shares.
pub(super) fn deployment_targets(
    groups: &Groups,
    fallbacks: &Fallbacks,
) -> HashMap<String, Arc<ModelGroup>> {
    let mut targets = HashMap::new();
    for name in fallbacks.targets() {
        if groups.contains_key(name) || targets.contains_key(name) {
            continue;
        }
        let named = groups
            .values()
            .flat_map(|g| &g.deployments)
            .find(|d| *d.id == **name);
        if let Some(deployment) = named {
            let group = ModelGroup {
                name: Arc::clone(&deployment.id),
                deployments: vec![Arc::clone(deployment)],
            };
            targets.insert(name.clone(), Arc::new(group));
        }
    }
    targets
}

/// `router_settings.model_group_alias`: alias to group name, and the
/// aliases written `{model: <group>, hidden: true}`, which route but are
/// not listed, as in LiteLLM.
pub(super) fn aliases(
    rs: &RouterSettings,
    found: &mut Findings,
) -> (HashMap<String, String>, HashSet<String>) {
    let mut aliases = HashMap::new();
    let mut hidden = HashSet::new();
    for (alias, target) in &rs.model_group_alias {
        let target = match target {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Mapping(m) => {
                // A switch as written elsewhere (`true`, `"yes"`, `1`).
                let hides = m.get("hidden").and_then(|h| match h {
                    serde_yaml::Value::Bool(b) => Some(*b),
                    serde_yaml::Value::Number(n) => n.as_u64().map(|n| n != 0),
                    serde_yaml::Value::String(s) => crate::config::lenient::parse_switch(s),
                    _ => None,
                });
                match hides {
                    Some(true) => {
                        hidden.insert(alias.clone());
                    }
                    Some(false) => {}
                    None if m.contains_key("hidden") => found.problem(
                        format!("router_settings.model_group_alias.{alias}.hidden"),
                        "must be true or false",
                    ),
                    None => {}
                }
                for key in m.keys().filter_map(|k| k.as_str()) {
                    if !matches!(key, "model" | "hidden") {
                        found.warn(format_args!(
                            "router_settings.model_group_alias.{alias}.{key}: unknown key, \
                             ignored (an alias takes model and hidden)"
                        ));
                    }
                }
                m.get("model").and_then(|v| v.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        match target {
            Some(t) => {
                aliases.insert(alias.clone(), t);
            }
            None => found.problem(
                format!("router_settings.model_group_alias.{alias}"),
                "must be a model group name or {model: <group>}",
            ),
        }
    }
    (aliases, hidden)
}

/// The fallback tables, router_settings first, then litellm_settings.
pub(super) fn fallbacks(rs: &RouterSettings, ls: &LitellmSettings) -> Fallbacks {
    Fallbacks {
        generic: fallback::table(&[rs.fallbacks.as_ref(), ls.fallbacks.as_ref()]),
        context_window: fallback::table(&[
            rs.context_window_fallbacks.as_ref(),
            ls.context_window_fallbacks.as_ref(),
        ]),
        content_policy: fallback::table(&[
            rs.content_policy_fallbacks.as_ref(),
            ls.content_policy_fallbacks.as_ref(),
        ]),
        default: rs
            .default_fallbacks
            .clone()
            .or_else(|| ls.default_fallbacks.clone())
            .unwrap_or_default(),
        max: rs
            .max_fallbacks
            .map_or(DEFAULT_MAX_FALLBACKS, |m| m as usize),
    }
}

/// Warns about every fallback or alias target that neither `router` nor a
/// composite profile of `cfg` serves.
pub(super) fn warn_unknown_fallbacks(router: &Router, cfg: &Config, found: &mut Findings) {
    let composite: Vec<&str> = cfg
        .model_list
        .iter()
        .filter(|e| e.is_composite())
        .map(|e| e.model_name.as_str())
        .collect();
    let known = |t: &str| {
        router.groups.contains_key(t)
            || router.aliases.contains_key(t)
            || router
                .wildcards
                .iter()
                .any(|(p, _)| t.starts_with(p.as_str()))
    };
    let f = &router.fallbacks;
    for (group, targets) in f
        .generic
        .iter()
        .chain(&f.context_window)
        .chain(&f.content_policy)
    {
        if composite.contains(&group.as_str()) {
            found.warn(format_args!(
                "fallbacks for {group:?}: it is a composite model, whose \
                 failures the router does not fall back from; the entry is not used"
            ));
        } else if !known(group) {
            found.warn(format_args!(
                "fallbacks for {group:?}: no model_list entry serves it, so the entry is not used"
            ));
        }
        for t in targets.iter() {
            if t == group {
                found.warn(format_args!(
                    "fallbacks for {group:?} name the group itself, which has failed already; \
                     it is skipped"
                ));
            } else if composite.contains(&t.as_str()) {
                found.warn(format_args!(
                    "fallbacks for {group:?} name {t:?}, a composite model: \
                     the router falls back only to plain model groups, so it is skipped"
                ));
            } else if !known(t) && !router.deployment_targets.contains_key(t.as_str()) {
                found.warn(format_args!(
                    "fallbacks for {group:?} name {t:?}, which no model_list entry serves"
                ));
            }
        }
    }
    let mut aliases: Vec<_> = router.aliases.iter().collect();
    aliases.sort();
    for (alias, target) in aliases {
        let served = router.groups.contains_key(target)
            || composite.contains(&target.as_str())
            || router
                .wildcards
                .iter()
                .any(|(p, _)| target.starts_with(p.as_str()));
        if !served {
            found.warn(format_args!(
                "router_settings.model_group_alias.{alias}: names {target:?}, which no \
                 model_list entry serves; requests for {alias:?} get 404"
            ));
        }
    }
}

/// Retries from `num_retries`, `retry_policy` and `retry_after`.
pub(super) fn retry_policy(rs: &RouterSettings, ls: &LitellmSettings) -> RetryPolicy {
    RetryPolicy {
        num_retries: rs
            .num_retries
            .or(ls.num_retries)
            .unwrap_or(DEFAULT_NUM_RETRIES),
        per_class: rs.retry_policy.clone().unwrap_or_default(),
        min_wait: rs
            .retry_after
            .map_or(Duration::ZERO, crate::config::seconds),
    }
}

/// Cooldowns from `allowed_fails`, `allowed_fails_policy`, `cooldown_time`
/// and `disable_cooldowns`. Setting either allowed-fails key selects the
/// count rule; otherwise the failure-rate rule applies.
pub(super) fn cooldown_policy(rs: &RouterSettings, ls: &LitellmSettings) -> CooldownPolicy {
    let default = CooldownPolicy::default();
    let allowed_fails = rs.allowed_fails.or(ls.allowed_fails);
    let by_class = rs.allowed_fails_policy.as_ref();
    let count_rule = (allowed_fails.is_some() || by_class.is_some()).then(|| CountRule {
        allowed_fails: allowed_fails.unwrap_or(DEFAULT_ALLOWED_FAILS),
        by_class: by_class.map(allowed_fails_by_class).unwrap_or_default(),
    });
    CooldownPolicy {
        count_rule,
        cooldown_time: rs
            .cooldown_time
            .or(ls.cooldown_time)
            .map_or(default.cooldown_time, Duration::from_secs_f64),
        disabled: rs.disable_cooldowns.unwrap_or(false),
    }
}

/// The tolerances of `allowed_fails_policy` for the classes that count
/// against a deployment (bad requests and content-policy refusals never do).
fn allowed_fails_by_class(p: &AllowedFailsPolicyConfig) -> AllowedFailsByClass {
    AllowedFailsByClass {
        authentication: p.AuthenticationErrorAllowedFails,
        timeout: p.TimeoutErrorAllowedFails,
        rate_limit: p.RateLimitErrorAllowedFails,
        internal_server: p.InternalServerErrorAllowedFails,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::SystemClock;

    fn build(yaml: &str) -> Result<super::super::RouterBuild, ConfigError> {
        let loaded = crate::config::load_str(yaml, Path::new("t.yaml"), Env::default()).unwrap();
        Router::from_config(
            &loaded,
            &[],
            reqwest::Client::new(),
            Arc::new(SystemClock),
            None,
        )
    }

    #[test]
    fn a_star_before_the_end_of_a_name_is_said_to_be_literal() {
        let built = build(
            "model_list:\n  - {model_name: \"claude-*-latest\", litellm_params: {model: \"mock/x\"}}\n  - {model_name: \"any/*\", litellm_params: {model: \"mock/*\"}}\n",
        )
        .unwrap();
        let said = built.warnings.join("\n");
        assert!(
            said.contains(
                "t.yaml: model_list[0].model_name: \"claude-*-latest\" has a `*` before its end"
            ),
            "{said}"
        );
        assert!(!said.contains("model_list[1]"), "{said}");
    }

    #[test]
    fn an_organization_list_is_a_deployment_per_organization() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_key: k, organization: [org-1, org-2]}}\n",
        )
        .unwrap();
        let group = &built.router.groups["a"];
        let ids: Vec<&str> = group.deployments.iter().map(|d| &*d.id).collect();
        assert_eq!(ids, ["a.0", "a.1"]);
    }

    #[test]
    fn a_fallback_may_name_a_deployment_by_its_id() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: mock/x}, model_info: {id: a-east}}\n  - {model_name: a, litellm_params: {model: mock/z}}\n  - {model_name: b, litellm_params: {model: mock/y}}\nlitellm_settings: {fallbacks: [{b: [a-east, nowhere]}]}\n",
        )
        .unwrap();
        let target = &built.router.deployment_targets["a-east"];
        let ids: Vec<&str> = target.deployments.iter().map(|d| &*d.id).collect();
        assert_eq!(ids, ["a-east"]);
        assert!(Arc::ptr_eq(
            &target.deployments[0],
            &built.router.groups["a"].deployments[0]
        ));
        let said = built.warnings.join("\n");
        assert!(!said.contains("a-east"), "{said}");
        assert!(
            said.contains(
                "t.yaml: fallbacks for \"b\" name \"nowhere\", which no model_list entry serves"
            ),
            "{said}"
        );
    }

    #[test]
    fn deployments_inherit_timeouts_and_number_within_their_group() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: mock/x, timeout: 3}}\n  - {model_name: a, litellm_params: {model: mock/y}}\nrouter_settings: {timeout: 7, stream_timeout: 2}\n",
        )
        .unwrap();
        let group = &built.router.groups["a"];
        let ids: Vec<&str> = group.deployments.iter().map(|d| &*d.id).collect();
        assert_eq!(ids, ["a.0", "a.1"]);
        let t = group.deployments[0].timeouts;
        assert_eq!(
            (t.request, t.stream),
            (Duration::from_secs(3), Duration::from_secs(2))
        );
        assert_eq!(
            group.deployments[1].timeouts.request,
            Duration::from_secs(7)
        );
    }

    #[test]
    fn request_timeout_is_a_deployments_timeout_unless_timeout_says() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: mock/x, request_timeout: 4}}\n  - {model_name: a, litellm_params: {model: mock/y, request_timeout: 4, timeout: 2}}\n",
        )
        .unwrap();
        let group = &built.router.groups["a"];
        let request: Vec<Duration> = group
            .deployments
            .iter()
            .map(|d| d.timeouts.request)
            .collect();
        assert_eq!(request, [Duration::from_secs(4), Duration::from_secs(2)]);
    }

    #[test]
    fn unsupported_providers_and_unknown_fallbacks_warn() {
        let built = build(
            "model_list:\n  - {model_name: b, litellm_params: {model: bedrock/x}}\n  - {model_name: a, litellm_params: {model: mock/x}}\nrouter_settings:\n  fallbacks: [{a: [nowhere]}]\n",
        )
        .unwrap();
        assert!(!built.router.serves("b"));
        let w = built.warnings.join("\n");
        assert!(
            w.contains(
                "t.yaml: model_list[0].litellm_params.model: provider \"bedrock\" is not supported"
            ),
            "{w}"
        );
        assert!(w.contains("fallbacks for \"a\" name \"nowhere\""), "{w}");
    }

    #[test]
    fn an_alias_to_no_group_warns_naming_it() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\nrouter_settings:\n  model_group_alias: {gpt-4: nosuch, fine: a}\n",
        )
        .unwrap();
        let w = built.warnings.join("\n");
        assert!(
            w.contains("router_settings.model_group_alias.gpt-4: names \"nosuch\""),
            "{w}"
        );
        assert!(!w.contains("model_group_alias.fine"), "{w}");
    }

    #[test]
    fn a_deployment_id_given_twice_warns_naming_both_entries() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: mock/x}, model_info: {id: same}}\n  - {model_name: b, litellm_params: {model: mock/y}, model_info: {id: same}}\n  - {model_name: a, litellm_params: {model: mock/z}}\n",
        )
        .unwrap();
        let w = built.warnings.join("\n");
        assert!(
            w.contains("t.yaml: model_list[1]: deployment id \"same\" is also model_list[0]'s"),
            "{w}"
        );
        assert_eq!(w.matches("deployment id").count(), 1, "{w}");
    }

    #[test]
    fn problems_come_back_as_a_config_error_with_key_paths() {
        let err = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: azure/x}}\nrouter_settings:\n  routing_strategy: nope\n  model_group_alias: {x: [1]}\n",
        )
        .err()
        .unwrap();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{err}");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "router_settings.routing_strategy",
                // Azure needs an api_base: the key that is missing.
                "model_list[0].litellm_params.api_base",
                "router_settings.model_group_alias.x"
            ]
        );
    }

    fn rebuild(yaml: &str, previous: &Router) -> Router {
        let loaded = crate::config::load_str(yaml, Path::new("t.yaml"), Env::default()).unwrap();
        let clock = previous.clock.clone();
        Router::from_config(&loaded, &[], reqwest::Client::new(), clock, Some(previous))
            .unwrap()
            .router
    }

    #[test]
    fn unchanged_deployments_carry_their_live_numbers_into_the_next_version() {
        let first = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1', api_key: sk-one}}\n  - {model_name: b, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:2'}}\n",
        )
        .unwrap()
        .router;
        for d in [
            &first.groups["a"].deployments[0],
            &first.groups["b"].deployments[0],
        ] {
            d.record_latency(Duration::from_millis(40));
        }
        let guard = first.groups["a"].deployments[0].enter(None);
        let next = rebuild(
            "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1', api_key: sk-one}}\n  - {model_name: b, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:3'}}\n  - {model_name: c, litellm_params: {model: mock/echo}}\n",
            &first,
        );
        let a = &next.groups["a"].deployments[0];
        assert_eq!(a.latency(), Some(Duration::from_millis(40)));
        assert_eq!(a.in_flight(), 1);
        drop(guard);
        assert_eq!(
            a.in_flight(),
            0,
            "a request of the old version leaves the shared count"
        );
        assert_eq!(
            next.groups["b"].deployments[0].latency(),
            None,
            "b's api_base changed"
        );
        assert_eq!(next.origin, first.origin);
        let rekeyed = rebuild(
            "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1', api_key: sk-two}}\n",
            &next,
        );
        assert_eq!(
            rekeyed.groups["a"].deployments[0].latency(),
            None,
            "a's key changed"
        );
    }

    #[tokio::test]
    async fn a_reload_counts_the_calls_in_flight_against_a_changed_cap() {
        let config = |cap: u32| {
            format!(
                "model_list:\n  - {{model_name: a, litellm_params: {{model: mock/echo, max_parallel_requests: {cap}}}}}\n"
            )
        };
        let take = |router: &Router| {
            let d = Arc::clone(&router.groups["a"].deployments[0]);
            async move {
                let slot = d.wait_for_slot(Duration::ZERO).await?;
                Ok::<_, crate::router::deployment::NoFreeSlot>(d.enter(slot))
            }
        };
        let first = build(&config(2)).unwrap().router;
        let (one, two) = (take(&first).await.unwrap(), take(&first).await.unwrap());
        let lowered = rebuild(&config(1), &first);
        let a = &lowered.groups["a"].deployments[0];
        assert!(!a.has_free_slot());
        drop(one);
        assert!(
            !a.has_free_slot(),
            "the call still running takes the one slot"
        );
        drop(two);
        assert!(a.has_free_slot());

        let running = take(&lowered).await.unwrap();
        let raised = rebuild(&config(3), &lowered);
        let more = [take(&raised).await.unwrap(), take(&raised).await.unwrap()];
        assert_eq!(
            take(&raised).await.err(),
            Some(crate::router::deployment::NoFreeSlot { limit: 3 }),
            "three calls run: the cap of 3 is taken"
        );
        drop((running, more));
        let same = rebuild(&config(3), &raised);
        assert_eq!(same.groups["a"].deployments[0].call_limit(), Some(3));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(take(&same).await.unwrap());
        }
        assert!(take(&same).await.is_err(), "every slot came back once");
    }

    #[test]
    fn a_fingerprint_never_contains_the_key() {
        let built = build(
            "model_list:\n  - {model_name: a, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1', api_key: sk-secret-value}}\n",
        )
        .unwrap();
        let fp = built.router.groups["a"].deployments[0]
            .fingerprint()
            .to_owned();
        assert_eq!(fp.len(), 64);
        assert!(!fp.contains("sk-secret-value"));
    }

    #[test]
    fn allowed_fails_or_its_policy_selects_the_count_rule() {
        let rule = |yaml: &str| build(yaml).unwrap().router.cooldown.count_rule;
        let models = "model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\n";
        assert_eq!(rule(models), None);
        assert_eq!(
            rule(&format!("{models}litellm_settings: {{allowed_fails: 2}}\n")),
            Some(CountRule::allowing(2))
        );
        let by_policy = rule(&format!(
            "{models}router_settings:\n  allowed_fails_policy: {{RateLimitErrorAllowedFails: 9}}\n"
        ))
        .unwrap();
        assert_eq!(by_policy.allowed_fails, DEFAULT_ALLOWED_FAILS);
        assert_eq!(by_policy.by_class.rate_limit, Some(9));
    }

    /// Every plain request boxes this future (so copies it once) and awaits
    /// it through several layers; a provider's large call future inline in
    /// it once made that 10.6 KB of copying per request.
    #[test]
    fn a_routed_calls_future_stays_small() {
        use crate::openai::{CallLimits, Endpoint, RawFields};
        use crate::ops::{CallContext, Caller};
        let built =
            build("model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\n").unwrap();
        let ctx = CallContext::detached(Caller::Master, "/v1/chat/completions");
        let body = RawFields::default();
        let routed = built.router.route_counted(super::super::RouteRequest {
            endpoint: Endpoint::ChatCompletions,
            model: "a",
            stream: false,
            body: &body,
            fallbacks: None,
            disable_fallbacks: false,
            may_fall_back_to: None,
            limits: CallLimits::default(),
            ctx: &ctx,
        });
        let size = std::mem::size_of_val(&routed);
        assert!(size <= 4096, "route_counted's future is {size} bytes");
    }
}
