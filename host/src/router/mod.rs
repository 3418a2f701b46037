//! The router: picks a deployment for a model group, retries, falls back and
//! cools failing deployments down. It is a library service with no HTTP types
//! in its interface, so the HTTP layer and the strategy host both call it.
//!
//! One request flows: [`Router::route`] resolves the model to a group (exact
//! name, alias, or wildcard), runs [`retry::run_group`] on it, and on failure
//! walks the fallback groups in order, each with its own retries.

mod attempt;
pub mod balance;
pub mod clock;
pub mod cooldown;
pub mod deployment;
pub mod error;
pub mod fallback;
pub mod retry;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{LoadedConfig, ModelEntry, Problem};
use crate::openai::{Endpoint, RawFields};
use crate::providers::{Target, Timeouts, UpstreamReply, split_provider, table};

pub use clock::{Clock, ManualClock, SystemClock};
pub use deployment::Deployment;
pub use error::{ErrorClass, FallbackKind, RouteError};

use balance::Balancer;
use cooldown::CooldownPolicy;
use fallback::Fallbacks;
use retry::RetryPolicy;

/// LiteLLM's default whole-request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_NUM_RETRIES: u32 = 2;
const DEFAULT_MAX_FALLBACKS: usize = 5;

/// Deployments sharing one public model name.
pub struct ModelGroup {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
}

/// One request, as the router sees it.
pub struct RouteRequest<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub stream: bool,
    /// The client's fields other than `model` and `stream`.
    pub body: &'a RawFields,
    /// Request-level fallbacks, replacing the configured ones for the first group.
    pub fallbacks: Option<&'a [String]>,
    pub disable_fallbacks: bool,
}

/// A successful route.
pub struct Routed {
    pub reply: UpstreamReply,
    pub meta: RouteMeta,
}

/// Where a request went, for response headers and traces.
#[derive(Debug, Clone)]
pub struct RouteMeta {
    pub deployment: String,
    pub group: String,
    /// Upstream calls made, counting retries and fallbacks.
    pub attempts: u32,
    /// The fallback group that answered, when it was not the requested one.
    pub fallback: Option<String>,
    /// Upstream time of the successful call (to first chunk for streams).
    pub upstream_time: Duration,
}

/// Routing over every model group of a config.
pub struct Router {
    groups: HashMap<String, Arc<ModelGroup>>,
    /// `prefix*` patterns, longest prefix first; a bare `*` has prefix "".
    wildcards: Vec<(String, Arc<ModelGroup>)>,
    aliases: HashMap<String, String>,
    balancer: Box<dyn Balancer>,
    retry: RetryPolicy,
    cooldown: CooldownPolicy,
    fallbacks: Fallbacks,
    clock: Arc<dyn Clock>,
    origin: Instant,
    client: reqwest::Client,
}

/// What building a router from a config produced besides the router.
pub struct RouterBuild {
    pub router: Router,
    pub warnings: Vec<String>,
}

/// Whether a model_list entry is a composite profile rather than a deployment.
pub fn is_composite(entry: &crate::config::ModelEntry) -> bool {
    let p = &entry.litellm_params;
    p.model.starts_with("composite/")
        || p.model.starts_with("profile/")
        || p.custom_llm_provider.as_deref() == Some("composite")
}

impl Router {
    /// Builds the router for `loaded`. Problems name their key paths; entries
    /// for providers conclave does not speak are skipped with a warning.
    /// `extra` are deployments the config implies but does not list (composite
    /// topology nodes); they are routed like model_list entries.
    pub fn from_config(
        loaded: &LoadedConfig,
        extra: &[ModelEntry],
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<RouterBuild, Vec<Problem>> {
        let cfg = &loaded.config;
        let rs = &cfg.router_settings;
        let ls = &cfg.litellm_settings;
        let file = loaded.path.display().to_string();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();

        let balancer =
            match balance::from_name(rs.routing_strategy.as_deref(), &rs.routing_strategy_args) {
                Ok(b) => Some(b),
                Err(message) => {
                    problems.push(Problem::new("router_settings.routing_strategy", message));
                    None
                }
            };
        let default_timeout = rs
            .timeout
            .or(ls.request_timeout)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_TIMEOUT);
        let default_stream_timeout = rs.stream_timeout.map(Duration::from_secs_f64);

        let mut grouped: Vec<(String, Vec<Arc<Deployment>>)> = Vec::new();
        let entries = cfg
            .model_list
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("model_list[{i}]"), e))
            .chain(extra.iter().map(|e| {
                (
                    format!(
                        "general_settings.composite_llm (topology node {:?})",
                        e.model_name
                    ),
                    e,
                )
            }));
        for (entry_path, entry) in entries {
            if is_composite(entry) {
                continue;
            }
            let at = format!("{entry_path}.litellm_params");
            let params = &entry.litellm_params;
            let (provider, _) = split_provider(params);
            if !crate::providers::is_supported(provider) {
                warnings.push(format!(
                    "{file}: {at}.model: provider {provider:?} is not supported, deployment skipped \
                     (supported: {}; any OpenAI-compatible server works as openai/<model> with api_base)",
                    table::names().collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            let target = match Target::from_params(params, &loaded.env) {
                Ok(t) => t,
                Err(message) => {
                    problems.push(Problem::new(format!("{at}.model"), message));
                    continue;
                }
            };
            if let Target::Http(http) = &target
                && http.key_required()
                && !http.has_key()
            {
                warnings.push(format!(
                    "{file}: {at}.api_key: no API key for provider {provider:?}; set api_key or {}",
                    http.key_env().join(" / ")
                ));
            }
            for key in params.extra.keys() {
                if !crate::providers::reads_extra_param(provider, key) {
                    warnings.push(format!("{file}: {at}.{key}: unknown key, ignored"));
                }
            }
            let request = params
                .timeout
                .map(Duration::from_secs_f64)
                .unwrap_or(default_timeout);
            let stream = params
                .stream_timeout
                .map(Duration::from_secs_f64)
                .or(default_stream_timeout)
                .unwrap_or(request);
            let idx = match grouped
                .iter()
                .position(|(name, _)| *name == entry.model_name)
            {
                Some(idx) => idx,
                None => {
                    grouped.push((entry.model_name.clone(), Vec::new()));
                    grouped.len() - 1
                }
            };
            let id = entry
                .model_info
                .as_ref()
                .and_then(|info| info.get("id"))
                .and_then(|id| {
                    id.as_str()
                        .map(str::to_owned)
                        .or_else(|| id.as_u64().map(|n| n.to_string()))
                })
                .unwrap_or_else(|| format!("{}.{}", entry.model_name, grouped[idx].1.len()));
            grouped[idx].1.push(Arc::new(Deployment::new(
                id,
                entry.model_name.clone(),
                target,
                params.order,
                params.weight,
                params.rpm,
                params.tpm,
                params.max_retries,
                Timeouts { request, stream },
            )));
        }

        let mut groups = HashMap::new();
        let mut wildcards = Vec::new();
        for (name, deployments) in grouped {
            let group = Arc::new(ModelGroup {
                name: name.clone(),
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

        let mut aliases = HashMap::new();
        for (alias, target) in &rs.model_group_alias {
            let target = match target {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Mapping(m) => {
                    m.get("model").and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            };
            match target {
                Some(t) => {
                    aliases.insert(alias.clone(), t);
                }
                None => problems.push(Problem::new(
                    format!("router_settings.model_group_alias.{alias}"),
                    "must be a model group name or {model: <group>}",
                )),
            }
        }

        let fallbacks = Fallbacks {
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
        };
        let composite_names: Vec<&str> = cfg
            .model_list
            .iter()
            .filter(|e| is_composite(e))
            .map(|e| e.model_name.as_str())
            .collect();
        for (group, targets) in fallbacks
            .generic
            .iter()
            .chain(&fallbacks.context_window)
            .chain(&fallbacks.content_policy)
        {
            for t in targets {
                let known = groups.contains_key(t)
                    || aliases.contains_key(t)
                    || composite_names.contains(&t.as_str())
                    || wildcards.iter().any(|(p, _)| t.starts_with(p.as_str()));
                if !known {
                    warnings.push(format!(
                        "{file}: router_settings fallbacks for {group:?} name {t:?}, which no model_list entry serves"
                    ));
                }
            }
        }

        let Some(balancer) = balancer else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let origin = clock.now();
        Ok(RouterBuild {
            router: Router {
                groups,
                wildcards,
                aliases,
                balancer,
                retry: RetryPolicy {
                    num_retries: rs
                        .num_retries
                        .or(ls.num_retries)
                        .unwrap_or(DEFAULT_NUM_RETRIES),
                    per_class: rs.retry_policy.clone().unwrap_or_default(),
                    min_wait: rs
                        .retry_after
                        .map(Duration::from_secs_f64)
                        .unwrap_or(Duration::ZERO),
                },
                cooldown: CooldownPolicy {
                    allowed_fails: rs.allowed_fails.or(ls.allowed_fails).unwrap_or(3),
                    cooldown_time: rs
                        .cooldown_time
                        .or(ls.cooldown_time)
                        .map(Duration::from_secs_f64)
                        .unwrap_or(Duration::from_secs(5)),
                    disabled: rs.disable_cooldowns.unwrap_or(false),
                },
                fallbacks,
                clock,
                origin,
                client,
            },
            warnings,
        })
    }

    /// Routes one request: its group, then fallbacks, each with retries.
    pub async fn route(&self, req: RouteRequest<'_>) -> Result<Routed, RouteError> {
        let (primary, capture) = self.resolve(req.model)?;
        let mut attempts = 0u32;
        // Groups are told apart by what they resolve to (group and wildcard
        // capture), not by the name a list used: an alias of a group already
        // tried is that group.
        let mut visited: Vec<(String, Option<String>)> =
            vec![(primary.name.clone(), capture.clone())];
        let mut queue: VecDeque<(Arc<ModelGroup>, Option<String>)> =
            VecDeque::from([(primary, capture)]);
        let mut fallbacks_left = self.fallbacks.max;
        let mut last_error = None;
        let mut first = true;
        while let Some((group, capture)) = queue.pop_front() {
            let is_primary = std::mem::replace(&mut first, false);
            match retry::run_group(self, &group, &req, capture.as_deref(), &mut attempts).await {
                Ok((answer, deployment)) => {
                    return Ok(Routed {
                        reply: answer.reply,
                        meta: RouteMeta {
                            deployment: deployment.id.clone(),
                            group: group.name.clone(),
                            attempts,
                            fallback: (!is_primary).then(|| group.name.clone()),
                            upstream_time: answer.upstream_time,
                        },
                    });
                }
                Err(error) => {
                    if !req.disable_fallbacks
                        && let Some(kind) = error.fallback_kind()
                    {
                        let next: &[String] = match (is_primary, req.fallbacks) {
                            (true, Some(list)) => list,
                            _ => self.fallbacks.after(&group.name, kind),
                        };
                        for name in next {
                            if fallbacks_left == 0 {
                                break;
                            }
                            match self.resolve(name) {
                                Ok((target, capture)) => {
                                    let key = (target.name.clone(), capture.clone());
                                    if visited.contains(&key) {
                                        continue;
                                    }
                                    visited.push(key);
                                    fallbacks_left -= 1;
                                    queue.push_back((target, capture));
                                }
                                Err(_) => {
                                    tracing::warn!(fallback = %name, "fallback group does not exist, skipped")
                                }
                            }
                        }
                        if let Some((next, _)) = queue.front() {
                            tracing::warn!(group = %group.name, fallback = %next.name, error = %error, "falling back");
                        }
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| RouteError::Unavailable(format!("no route for {:?}", req.model))))
    }

    /// The group serving `model` (alias, exact name, then longest wildcard),
    /// with the part a wildcard matched.
    fn resolve(&self, model: &str) -> Result<(Arc<ModelGroup>, Option<String>), RouteError> {
        let name = self.aliases.get(model).map_or(model, String::as_str);
        if let Some(g) = self.groups.get(name) {
            return Ok((g.clone(), None));
        }
        for (prefix, g) in &self.wildcards {
            if let Some(rest) = name.strip_prefix(prefix.as_str())
                && !rest.is_empty()
            {
                return Ok((g.clone(), Some(rest.to_owned())));
            }
        }
        Err(RouteError::ModelNotFound {
            model: model.to_owned(),
        })
    }

    /// Whether `model` names something this router serves.
    pub fn serves(&self, model: &str) -> bool {
        self.resolve(model).is_ok()
    }

    /// Index of the deployment to call next: healthy, within limits, lowest
    /// `order`, untried within that order if possible, then the balancer's choice.
    fn select(&self, group: &ModelGroup, tried: &[usize]) -> Result<usize, RouteError> {
        let now = self.clock.now();
        let minute = self.minute();
        let mut candidates: Vec<usize> = Vec::with_capacity(group.deployments.len());
        let mut soonest: Option<Instant> = None;
        let mut limited = false;
        for (i, d) in group.deployments.iter().enumerate() {
            if let Some(until) = d.cooling_until(now) {
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
                continue;
            }
            if !self.balancer.admits(d, minute) {
                limited = true;
                continue;
            }
            candidates.push(i);
        }
        if candidates.is_empty() {
            return Err(if limited {
                let into_minute = now.duration_since(self.origin).as_secs_f64() % 60.0;
                RouteError::GroupRateLimited {
                    group: group.name.clone(),
                    retry_in: Duration::from_secs_f64(60.0 - into_minute),
                }
            } else if let Some(until) = soonest {
                RouteError::GroupCooling {
                    group: group.name.clone(),
                    retry_in: until.duration_since(now),
                }
            } else {
                RouteError::Unavailable(format!("model group {:?} has no deployments", group.name))
            });
        }
        let best_order = candidates
            .iter()
            .map(|&i| group.deployments[i].order)
            .min()
            .unwrap_or(u32::MAX);
        candidates.retain(|&i| group.deployments[i].order == best_order);
        if candidates.iter().any(|i| !tried.contains(i)) {
            candidates.retain(|i| !tried.contains(i));
        }
        let refs: Vec<&Arc<Deployment>> =
            candidates.iter().map(|&i| &group.deployments[i]).collect();
        Ok(candidates[self.balancer.pick(&refs, minute).min(candidates.len() - 1)])
    }

    fn record_failure(
        &self,
        d: &Deployment,
        class: ErrorClass,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let now = self.clock.now();
        let minute = self.minute();
        let cooled =
            d.with_health(|h| h.record_failure(&self.cooldown, class, retry_after, now, minute));
        if let Some(time) = cooled {
            tracing::warn!(deployment = %d.id, ?class, cooldown_s = time.as_secs_f64(), "deployment cooling down");
        }
        cooled
    }

    /// Index of the current minute window.
    fn minute(&self) -> u64 {
        self.clock.now().duration_since(self.origin).as_secs() / 60
    }

    /// Every exact model group, in name order.
    pub fn groups(&self) -> Vec<&Arc<ModelGroup>> {
        let mut all: Vec<&Arc<ModelGroup>> = self
            .groups
            .values()
            .chain(self.wildcards.iter().map(|(_, g)| g))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Deployments cooling down right now, with how long until each recovers.
    pub fn cooling(&self) -> Vec<(String, Duration)> {
        let now = self.clock.now();
        self.groups()
            .iter()
            .flat_map(|g| g.deployments.iter())
            .filter_map(|d| {
                d.cooling_until(now)
                    .map(|u| (d.id.clone(), u.duration_since(now)))
            })
            .collect()
    }

    /// Model aliases.
    pub fn aliases(&self) -> &HashMap<String, String> {
        &self.aliases
    }
}
