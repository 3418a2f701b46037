//! The router: picks a deployment for a model group, retries, falls back and
//! cools failing deployments down. It is a library service with no HTTP types
//! in its interface, so the HTTP layer and the strategy host both call it.
//!
//! One request flows: [`Router::route`] resolves the model to a group (exact
//! name, alias, or wildcard), runs [`retry::run_group`] on it, and on failure
//! walks the fallback groups in order, each with its own retries.

mod attempt;
pub mod balance;
pub mod budgets;
mod build;
pub mod checks;
pub mod clock;
pub mod context_window;
pub mod cooldown;
pub mod deployment;
pub mod error;
pub mod fallback;
mod pass_through;
mod preamble;
pub mod retry;
pub mod states;
mod status;
pub mod stream_lifetime;
pub mod tags;
pub use status::upstream_status;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ConfigError, LoadedConfig, ModelEntry};
use crate::openai::{CallLimits, Endpoint, RawFields};
use crate::ops::{CallContext, Reported};
use crate::providers::UpstreamReply;

pub use clock::{Clock, ManualClock, SystemClock};
pub use deployment::{Deployment, DeploymentSpec};
pub use error::{ErrorClass, FallbackKind, RouteError};

use balance::Balancer;
use cooldown::CooldownPolicy;
use fallback::Fallbacks;
use retry::RetryPolicy;

/// Deployments sharing one public model name.
pub struct ModelGroup {
    pub name: Arc<str>,
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
    /// Whether the caller may be answered by a configured fallback group;
    /// `None` allows every one. (The request's own fallbacks were checked
    /// when it was admitted.)
    pub may_fall_back_to: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// The client's own `timeout` and `num_retries` for this call.
    pub limits: CallLimits,
    /// Who the call is for: the client's request, or a composite sub-call.
    pub ctx: &'a CallContext,
}

/// A successful route.
pub struct Routed {
    pub reply: UpstreamReply,
    pub meta: RouteMeta,
    /// What a JSON answer says about itself (usage, model, ...), read once
    /// where it arrived; `None` for a stream or an answer that is not a
    /// JSON object.
    pub reported: Option<Reported>,
}

/// A route that failed, with how far it got.
#[derive(Debug)]
pub struct FailedRoute {
    pub error: RouteError,
    /// Upstream calls made, counting retries and fallbacks.
    pub attempts: u32,
    /// The last group tried, when any was.
    pub group: Option<Arc<str>>,
}

/// Where a request went, for response headers and traces.
#[derive(Debug, Clone)]
pub struct RouteMeta {
    pub deployment: Arc<str>,
    pub group: Arc<str>,
    /// Upstream calls made, counting retries and fallbacks.
    pub attempts: u32,
    /// The fallback group that answered, when it was not the requested one.
    pub fallback: Option<Arc<str>>,
    /// Time spent on upstreams: the successful call's (to its first chunk
    /// for streams), every failed call's, and the waits before retries.
    /// What is left of a request's time is the gateway's own.
    pub upstream_time: Duration,
}

/// Routing over every model group of a config.
pub struct Router {
    groups: build::Groups,
    /// `prefix*` patterns, longest prefix first; a bare `*` has prefix "".
    wildcards: Vec<(String, Arc<ModelGroup>)>,
    aliases: HashMap<String, String>,
    /// Aliases marked `hidden: true`: they route, but are not listed.
    hidden_aliases: HashSet<String>,
    balancer: Box<dyn Balancer>,
    retry: RetryPolicy,
    cooldown: CooldownPolicy,
    fallbacks: Fallbacks,
    clock: Arc<dyn Clock>,
    origin: Instant,
    client: reqwest::Client,
    /// Largest upstream body read by one call.
    max_response_bytes: usize,
    /// The memory every answer being read shares (`max_response_bodies_mb`),
    /// kept across reloads that leave its size alone.
    answer_room: Arc<crate::providers::answer_room::AnswerRoom>,
    /// Longest an upstream stream may last (`max_stream_duration`).
    max_stream_duration: Duration,
    /// Groups that exist only because a composite topology names them.
    internal: HashSet<String>,
    /// Fallback targets that name one deployment by its id.
    deployment_targets: HashMap<String, Arc<ModelGroup>>,
    /// Some deployment serves the Responses API natively.
    native_responses: bool,
    /// `enable_pre_call_checks`: prompts are held to the deployments'
    /// context windows before a call.
    fit_context_windows: bool,
    /// `enable_tag_filtering`: how a request's tags pick deployments.
    tag_filtering: Option<tags::TagMatch>,
    /// Provider and deployment spend caps, when any is set.
    caps: Option<Arc<budgets::SpendCaps>>,
}

/// What one request asks of the deployments of the group it runs on,
/// worked out once per group: the endpoint they must serve, the prompt
/// their context window must take, the ones its tags allow.
pub(crate) struct Needs {
    endpoint: Endpoint,
    prompt_tokens: Option<u64>,
    /// By deployment index; `None` when every deployment is allowed.
    allowed: Option<Vec<bool>>,
}

/// Longest model name part a wildcard may capture.
const MAX_CAPTURE_LEN: usize = 256;

/// What a wildcard captures becomes the upstream's model name (and, for
/// Azure, a URL path segment): printable, bounded, and never a dot segment.
fn check_capture(model: &str, capture: &str) -> Result<(), RouteError> {
    let refuse = |why: &str| RouteError::InvalidRequest {
        message: format!("model {model:?} cannot be routed: {why}"),
        param: Some("model".into()),
    };
    if capture.len() > MAX_CAPTURE_LEN {
        return Err(refuse("the name is too long"));
    }
    if capture.chars().any(char::is_control) {
        return Err(refuse("the name contains control characters"));
    }
    if capture.split('/').any(|part| part == "." || part == "..") {
        return Err(refuse("`.` and `..` are not model names"));
    }
    Ok(())
}

/// The most recent failure of any of `group`'s deployments, for an error
/// that would otherwise say only that the group is cooling down.
fn latest_failure(group: &ModelGroup) -> Option<String> {
    group
        .deployments
        .iter()
        .filter_map(|d| d.with_checks(|c| c.last_error.clone()))
        .max_by_key(|f| f.at)
        .map(|f| f.message)
}

/// Names of the implied deployments (`extra`) that no model_list entry
/// serves: only strategies may call them.
fn internal_groups(model_list: &[ModelEntry], extra: &[ModelEntry]) -> HashSet<String> {
    extra
        .iter()
        .map(|e| e.model_name.clone())
        .filter(|name| !model_list.iter().any(|e| e.model_name == *name))
        .collect()
}

/// What building a router from a config produced besides the router.
pub struct RouterBuild {
    pub router: Router,
    pub warnings: Vec<String>,
}

impl Router {
    /// Builds the router for `loaded`. Problems name their key paths; entries
    /// for providers conclave does not speak are skipped with a warning.
    /// `extra` are deployments the config implies but does not list (composite
    /// topology nodes); they are routed like model_list entries.
    ///
    /// When the router replaces `previous`, every deployment whose id and
    /// target did not change carries on its live numbers (cooldown, rpm/tpm
    /// window, latency, in-flight count), and the minute windows keep their
    /// origin. Changed or new deployments start fresh.
    pub fn from_config(
        loaded: &LoadedConfig,
        extra: &[ModelEntry],
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
        previous: Option<&Router>,
    ) -> Result<RouterBuild, ConfigError> {
        let rs = &loaded.config.router_settings;
        let ls = &loaded.config.litellm_settings;
        let mut found = build::Findings::new(loaded);
        let balancer = build::balancer(rs, &mut found);
        let carried = build::carried(previous);
        let grouped = build::deployments(loaded, extra, carried, &mut found);
        let (aliases, hidden_aliases) = build::aliases(rs, &mut found);
        let (groups, wildcards) = build::index_groups(grouped);
        let caps = budgets::SpendCaps::build(
            &loaded.config,
            &groups,
            &wildcards,
            previous.and_then(|p| p.caps.as_deref()),
            &mut found,
        );
        let balancer = found.refuse_problems(&loaded.path, balancer)?;
        let fallbacks = build::fallbacks(rs, ls);
        let deployment_targets = build::deployment_targets(&groups, &fallbacks);
        let native_responses = groups
            .values()
            .chain(wildcards.iter().map(|(_, g)| g))
            .flat_map(|g| &g.deployments)
            .any(|d| d.target.serves_responses());
        let router = Router {
            groups,
            wildcards,
            aliases,
            hidden_aliases,
            balancer,
            retry: build::retry_policy(rs, ls),
            cooldown: build::cooldown_policy(rs, ls),
            fallbacks,
            origin: previous.map_or_else(|| clock.now(), |p| p.origin),
            clock,
            client,
            max_response_bytes: attempt::response_limit(&loaded.config.general_settings),
            answer_room: attempt::answer_room(&loaded.config.general_settings, previous),
            max_stream_duration: stream_lifetime::limit(&loaded.config.general_settings),
            internal: internal_groups(&loaded.config.model_list, extra),
            deployment_targets,
            native_responses,
            fit_context_windows: rs.enable_pre_call_checks == Some(true),
            tag_filtering: (rs.enable_tag_filtering == Some(true)).then_some(
                if rs.tag_filtering_match_any == Some(false) {
                    tags::TagMatch::All
                } else {
                    tags::TagMatch::Any
                },
            ),
            caps,
        };
        build::warn_unknown_fallbacks(&router, &loaded.config, &mut found);
        Ok(RouterBuild {
            router,
            warnings: found.warnings,
        })
    }

    /// The provider and deployment spend caps, when any is set: the meter
    /// charges answered calls to them.
    pub fn spend_caps(&self) -> Option<&Arc<budgets::SpendCaps>> {
        self.caps.as_ref()
    }

    /// Routes one request: its group, then fallbacks, each with retries.
    pub async fn route(&self, req: RouteRequest<'_>) -> Result<Routed, RouteError> {
        self.route_counted(req).await.map_err(|failed| failed.error)
    }

    /// [`Router::route`], telling on failure how many upstream calls were
    /// made, so a failed request that reached a model is recorded as one.
    pub async fn route_counted(&self, req: RouteRequest<'_>) -> Result<Routed, FailedRoute> {
        let (primary, primary_capture) =
            self.resolve(req.model, req.ctx)
                .map_err(|error| FailedRoute {
                    error,
                    attempts: 0,
                    group: None,
                })?;
        let mut attempts = 0u32;
        let mut waited = Duration::ZERO;
        // Groups are told apart by what they resolve to (group and wildcard
        // capture), not by the name a list used: an alias of a group already
        // tried is that group. The fallbacks' list and queue allocate only
        // when a request falls back: most are answered by their first group.
        let mut visited: Vec<(Arc<str>, Option<String>)> = Vec::new();
        // Each group with its wildcard capture and the name that reached it:
        // its own fallbacks may be listed under that name.
        let mut queue: VecDeque<(Arc<ModelGroup>, Option<String>, &str)> = VecDeque::new();
        let mut current = Some((Arc::clone(&primary), primary_capture.clone(), req.model));
        let mut fallbacks_left = self.fallbacks.max;
        let mut last_error = None;
        let mut first = true;
        while let Some((group, capture, asked)) = current.take().or_else(|| queue.pop_front()) {
            let is_primary = std::mem::replace(&mut first, false);
            let calls_before = attempts;
            let tried = retry::run_group(
                self,
                &group,
                &req,
                capture.as_deref(),
                &mut attempts,
                &mut waited,
            );
            match tried.await {
                Ok((answer, deployment)) => {
                    return Ok(Routed {
                        reply: answer.reply,
                        reported: answer.reported,
                        meta: RouteMeta {
                            deployment: deployment.id.clone(),
                            group: group.name.clone(),
                            attempts,
                            fallback: (!is_primary).then(|| group.name.clone()),
                            upstream_time: answer.upstream_time + waited,
                        },
                    });
                }
                Err(error) => {
                    if !req.disable_fallbacks
                        && let Some(kind) = error.fallback_kind()
                    {
                        let (next, configured): (&[String], bool) =
                            match (is_primary, req.fallbacks) {
                                (true, Some(list)) => (list, false),
                                _ => (self.fallbacks.after(Some(asked), &group.name, kind), true),
                            };
                        for name in next {
                            if fallbacks_left == 0 {
                                break;
                            }
                            if configured && req.may_fall_back_to.is_some_and(|may| !may(name)) {
                                tracing::debug!(fallback = %name, "the caller may not use this fallback; skipped");
                                continue;
                            }
                            match self.resolve_fallback(name, req.ctx) {
                                Ok((target, capture)) => {
                                    let key = (Arc::clone(&target.name), capture.clone());
                                    let tried_first =
                                        key.0 == primary.name && key.1 == primary_capture;
                                    if tried_first || visited.contains(&key) {
                                        continue;
                                    }
                                    visited.push(key);
                                    fallbacks_left -= 1;
                                    queue.push_back((target, capture, name.as_str()));
                                }
                                Err(_) => {
                                    tracing::warn!(fallback = %name, "fallback group does not exist, skipped")
                                }
                            }
                        }
                        if let Some((next, _, _)) = queue.front() {
                            tracing::warn!(request_id = %req.ctx.request.id, group = %group.name, fallback = %next.name, error = %error, "falling back");
                        }
                    }
                    // A group that refused without calling upstream (cooling
                    // down, at its rpm/tpm limit) says less about the request
                    // than an earlier group's failure: that one is answered.
                    if attempts > calls_before || last_error.is_none() {
                        last_error = Some((error, group.name.clone()));
                    }
                }
            }
        }
        let (error, group) = match last_error {
            Some((error, group)) => (error, Some(group)),
            None => (
                RouteError::Unavailable(format!("no route for {:?}", req.model)),
                None,
            ),
        };
        Err(FailedRoute {
            error,
            attempts,
            group,
        })
    }

    /// A fallback target: the group [`Self::resolve`] finds, else one
    /// deployment named by its `model_info.id`, as a group of its own.
    fn resolve_fallback(
        &self,
        name: &str,
        ctx: &CallContext,
    ) -> Result<(Arc<ModelGroup>, Option<String>), RouteError> {
        self.resolve(name, ctx).or_else(|missing| {
            self.deployment_targets
                .get(name)
                .map(|group| (Arc::clone(group), None))
                .ok_or(missing)
        })
    }

    /// The group serving `model` (alias, exact name, then longest wildcard),
    /// with the part a wildcard matched.
    /// Groups that exist only for composite topologies answer only a
    /// strategy's sub-calls: to a client they do not exist.
    fn resolve(
        &self,
        model: &str,
        ctx: &CallContext,
    ) -> Result<(Arc<ModelGroup>, Option<String>), RouteError> {
        match self.lookup(model, ctx.is_sub_call()) {
            Some((g, None)) => Ok((g.clone(), None)),
            Some((g, Some(rest))) => {
                check_capture(model, rest)?;
                Ok((g.clone(), Some(rest.to_owned())))
            }
            None => Err(RouteError::ModelNotFound {
                model: model.to_owned(),
            }),
        }
    }

    /// The group serving `model` (alias, exact name, then longest
    /// wildcard) and the part a wildcard matched; internal groups only for
    /// a strategy's sub-calls.
    fn lookup<'a>(
        &'a self,
        model: &'a str,
        sub_call: bool,
    ) -> Option<(&'a Arc<ModelGroup>, Option<&'a str>)> {
        let name = self.aliases.get(model).map_or(model, String::as_str);
        if let Some(g) = self.groups.get(name)
            && (sub_call || !self.internal.contains(name))
        {
            return Some((g, None));
        }
        self.wildcards.iter().find_map(|(prefix, g)| {
            name.strip_prefix(prefix.as_str())
                .filter(|rest| !rest.is_empty())
                .map(|rest| (g, Some(rest)))
        })
    }

    /// The group a client's `model` reaches, as a request would route it
    /// (a wildcard's included), and the name its deployments call upstream
    /// for it when a wildcard rewrote it: for questions a route asks about
    /// a model before calling it (is it served natively? where are tokens
    /// counted?).
    pub fn client_group(&self, model: &str) -> Option<(Arc<ModelGroup>, Option<String>)> {
        let (group, rest) = self.lookup(model, false)?;
        let upstream = rest.and_then(|rest| {
            let m = group.deployments.first()?.target.upstream_model();
            m.contains('*').then(|| m.replace('*', rest))
        });
        Some((group.clone(), upstream))
    }

    /// The group `model` names exactly (after aliases; wildcards are not
    /// expanded): one map lookup, for per-request questions about a group.
    pub fn group_named(&self, model: &str) -> Option<&Arc<ModelGroup>> {
        self.groups
            .get(self.aliases.get(model).map_or(model, String::as_str))
    }

    /// Tells the balancer what each deployment's tokens cost (`per_token`
    /// gives input and output price together, `None` when unknown), once
    /// the config version's prices are known: cost-based routing reads it.
    pub fn learn_prices(&self, per_token: impl Fn(&str) -> Option<f64>) {
        let known = self
            .groups()
            .iter()
            .flat_map(|g| g.deployments.iter())
            .filter_map(|d| per_token(&d.id).map(|p| (Arc::clone(&d.id), p)))
            .collect();
        self.balancer.learn_prices(known);
    }

    /// The deployment of the group `model` names that `price` finds
    /// dearest: what a call is charged when which deployment served it is
    /// not known (a client left while it ran).
    pub fn dearest_deployment(&self, model: &str, price: impl Fn(&str) -> f64) -> Option<&str> {
        self.group_named(model)?
            .deployments
            .iter()
            .map(|d| &*d.id)
            .max_by(|a, b| price(a).total_cmp(&price(b)))
    }

    /// The largest answer one call may bring (`max_response_size_mb`):
    /// what a translation that keeps the whole answer may keep.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Whether a request's tags choose among a group's deployments
    /// (`enable_tag_filtering`): then they are part of what it asks.
    pub fn filters_by_tags(&self) -> bool {
        self.tag_filtering.is_some()
    }

    /// Whether any deployment serves the Responses API natively: when none
    /// does, a Responses request need not carry its own body along.
    pub fn serves_native_responses(&self) -> bool {
        self.native_responses
    }

    /// Whether a client asking for `model` has a group to go to (an alias,
    /// a public group's name or a wildcard's match whose capture could be
    /// routed, see [`check_capture`]); composite profiles are the strategy
    /// host's to answer for.
    pub fn serves(&self, model: &str) -> bool {
        let name = self.aliases.get(model).map_or(model, String::as_str);
        (self.groups.contains_key(name) && !self.internal.contains(name))
            || self.wildcards.iter().any(|(prefix, _)| {
                name.strip_prefix(prefix.as_str()).is_some_and(|capture| {
                    !capture.is_empty() && check_capture(name, capture).is_ok()
                })
            })
    }

    /// What `req` asks of `group`'s deployments: the estimated prompt length
    /// when their context windows must hold it (pre-call checks on, and a
    /// window known), the ones its tags allow (tag filtering on); refused
    /// when its tags allow none.
    pub(crate) fn needs(
        &self,
        group: &ModelGroup,
        req: &RouteRequest<'_>,
    ) -> Result<Needs, RouteError> {
        let prompt_tokens = self
            .fit_context_windows
            .then(|| context_window::prompt_to_fit(group, req.endpoint, req.body))
            .flatten();
        let allowed = match self.tag_filtering {
            Some(how) => tags::allowed(group, req.ctx.tags.as_deref().unwrap_or_default(), how)?,
            None => None,
        };
        Ok(Needs {
            endpoint: req.endpoint,
            prompt_tokens,
            allowed,
        })
    }

    /// Index of the deployment to call next: one that meets `needs`
    /// (serves the endpoint, its tags allow, takes the prompt when it must
    /// fit), healthy, within limits, with a free call slot if any has one,
    /// lowest `order`, untried within that order if possible, then the
    /// balancer's choice.
    fn select(
        &self,
        group: &ModelGroup,
        tried: &[usize],
        needs: &Needs,
    ) -> Result<usize, RouteError> {
        let now = self.clock.now();
        let minute = self.minute();
        let mut candidates: Vec<usize> = Vec::with_capacity(group.deployments.len());
        let mut soonest: Option<Instant> = None;
        let mut limited = false;
        let mut unserved = false;
        // Passed over for a spent cap, and when the first of them renews.
        let mut over_budget: Option<Option<SystemTime>> = None;
        let wall = self.caps.as_ref().map(|_| SystemTime::now());
        // The largest context window too small for the prompt, and whether
        // any deployment took it.
        let mut too_small: Option<u64> = None;
        let mut fits = false;
        // At their max_parallel_requests: chosen only when every other
        // deployment is too, and then the call waits for a slot.
        let mut full: Vec<usize> = Vec::new();
        for (i, d) in group.deployments.iter().enumerate() {
            if needs
                .allowed
                .as_ref()
                .is_some_and(|a| a.get(i) != Some(&true))
            {
                continue;
            }
            if !d.target.serves(needs.endpoint) {
                unserved = true;
                continue;
            }
            if let (Some(tokens), Some(window)) = (needs.prompt_tokens, d.max_input_tokens)
                && tokens > window
            {
                too_small = too_small.max(Some(window));
                continue;
            }
            fits = true;
            if let Some(until) = d.cooling_until(now) {
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
                continue;
            }
            if let (Some(caps), Some(wall)) = (&self.caps, wall)
                && let Some(renews) = caps.spent(&d.id, wall)
            {
                over_budget = Some(over_budget.map_or(renews, |r| budgets::sooner(r, renews)));
                continue;
            }
            if !self.balancer.admits(d, minute) {
                limited = true;
                continue;
            }
            if !d.has_free_slot() {
                full.push(i);
                continue;
            }
            candidates.push(i);
        }
        if candidates.is_empty() {
            candidates = full;
        }
        if candidates.is_empty() {
            return Err(
                if let (false, Some(largest_window), Some(prompt_tokens)) =
                    (fits, too_small, needs.prompt_tokens)
                {
                    RouteError::ContextWindowExceeded {
                        group: group.name.to_string(),
                        prompt_tokens,
                        largest_window,
                    }
                } else if limited {
                    let into_minute = now.duration_since(self.origin).as_secs_f64() % 60.0;
                    RouteError::GroupRateLimited {
                        group: group.name.to_string(),
                        retry_in: Duration::from_secs_f64(60.0 - into_minute),
                    }
                } else if let Some(until) = soonest {
                    RouteError::GroupCooling {
                        group: group.name.to_string(),
                        retry_in: until.duration_since(now),
                        last_error: latest_failure(group),
                    }
                } else if let (Some(renews), Some(caps), Some(wall)) =
                    (over_budget, &self.caps, wall)
                {
                    RouteError::GroupOverBudget {
                        group: group.name.to_string(),
                        retry_in: renews.and_then(|r| r.duration_since(wall).ok()),
                        spent: group
                            .deployments
                            .iter()
                            .flat_map(|d| caps.describe_spent(&d.id, wall))
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join("; "),
                    }
                } else if unserved {
                    RouteError::InvalidRequest {
                        message: format!(
                            "model group {:?} has no deployment that serves {} \
                         (anthropic/ and exec/ deployments serve chat completions only)",
                            group.name,
                            needs.endpoint.path()
                        ),
                        param: Some("model".into()),
                    }
                } else {
                    RouteError::Unavailable(format!(
                        "model group {:?} has no deployments",
                        group.name
                    ))
                },
            );
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
        let policy = match d.cooldown_time {
            Some(time) if time.is_zero() => return None,
            Some(cooldown_time) => CooldownPolicy {
                cooldown_time,
                ..self.cooldown
            },
            None => self.cooldown,
        };
        let now = self.clock.now();
        let minute = self.minute();
        let alone = self.group_size(&d.group) <= 1;
        let cooled =
            d.with_health(|h| h.record_failure(&policy, class, retry_after, alone, now, minute));
        if let Some(time) = cooled {
            tracing::warn!(deployment = %d.id, ?class, cooldown_s = time.as_secs_f64(), "deployment cooling down");
        }
        cooled
    }

    /// How many deployments the group named `name` has (exact or wildcard).
    fn group_size(&self, name: &str) -> usize {
        self.group(name).map_or(0, |g| g.deployments.len())
    }

    /// The group `name` names, directly or through an alias (exact or
    /// wildcard group): what a report about one model shows.
    pub fn group_or_alias(&self, name: &str) -> Option<&Arc<ModelGroup>> {
        self.group(self.aliases.get(name).map_or(name, String::as_str))
    }

    /// The group named `name` (exact or wildcard), by lookup rather than by
    /// building the whole list as [`Router::groups`] does.
    pub fn group(&self, name: &str) -> Option<&Arc<ModelGroup>> {
        self.groups.get(name).or_else(|| {
            self.wildcards
                .iter()
                .map(|(_, g)| g)
                .find(|g| *g.name == *name)
        })
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
                    .map(|u| (d.id.to_string(), u.duration_since(now)))
            })
            .collect()
    }

    /// The pooled HTTP client every upstream call uses (for the few calls
    /// made outside [`Router::route`], such as Anthropic's token counts).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Aliases a model listing shows: all but the hidden ones.
    pub fn listed_aliases(&self) -> impl Iterator<Item = &String> {
        self.aliases
            .keys()
            .filter(|a| !self.hidden_aliases.contains(*a))
    }

    /// Model aliases.
    pub fn aliases(&self) -> &HashMap<String, String> {
        &self.aliases
    }
}
