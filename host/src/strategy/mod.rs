//! The strategy host: composite profiles run as sandboxed WebAssembly
//! components (wasm32-wasip2) whose every model call goes through the router.
//!
//! Flow of one composite request: [`StrategyHost::execute_answer`] (or
//! [`StrategyHost::execute_stream`]) merges request
//! settings into the profile's, builds the invocation, and [`run::run`]
//! instantiates the pre-instantiated component in a fresh store and calls its
//! `run`. Host imports ([`run`]'s `Host` impl) route each model call; a
//! streaming client gets the trace as `reasoning_content` and the final
//! stage's tokens as they arrive.

pub mod bindings;
mod builtin;
pub mod convert;
pub mod engine;
mod epoch;
pub mod error;
pub mod limits;
mod members;
pub mod profiles;
pub mod run;
mod stderr_tail;
pub mod trace;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::config::Problem;
use crate::openai::response;
use crate::openai::{ProxyRequest, unix_now};
use crate::ops::admission::AccessGroups;
use crate::ops::sinks::CompositeRun;
use crate::ops::{CallContext, OutcomeHandle, Usage};
use crate::router::Router;
use bindings::{ChatResponse, Invocation};
pub use engine::{SharedEngine, StrategyEngine};
pub use error::StrategyError;
use profiles::{Plan, ProfilePlan, Source};
pub use run::CompiledStrategy;
use run::{RunInput, RunSummary, Sink, SinkItem};
use tracing::Instrument;

/// Key a request may use to override profile settings explicitly.
const SETTINGS_KEY: &str = "composite_settings";
/// The setting that turns the stage trace in `reasoning_content` on or off.
const TRACE_SETTING: &str = "include_stage_summaries_in_reasoning";

/// OpenAI chat request fields: in the direct form every other request field
/// is a strategy setting (as the seed's `optional_params` were).
const OPENAI_CHAT_FIELDS: &[&str] = &[
    "messages",
    "model",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "service_tier",
    "store",
    "metadata",
    "modalities",
    "audio",
    "prediction",
    "functions",
    "function_call",
    "thinking",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
];

/// A profile ready to run.
pub struct LoadedProfile {
    pub plan: ProfilePlan,
    /// The compiled component, shared by every profile of the same source.
    pub strategy: Arc<CompiledStrategy>,
    topology_json: String,
    /// The models its topology names, which its runs call whoever asks
    /// (none in the direct form, whose members the request names).
    own_models: Arc<HashSet<String>>,
}

/// Every profile of one gateway version.
pub struct StrategyHost {
    profiles: HashMap<String, Arc<LoadedProfile>>,
    /// Public model name to profile name.
    public: HashMap<String, String>,
    observability_log: Option<PathBuf>,
    /// Every model call a strategy makes goes through this router.
    router: Arc<Router>,
    /// The config's access groups, which a key's model lists may name: a
    /// member a request chooses must be one the key may use.
    access_groups: Arc<AccessGroups>,
}

/// A finished non-streamed composite answer.
pub struct CompositeAnswer {
    /// The chat.completion body.
    pub body: Bytes,
    /// The `model` of the response the strategy returned: the model that
    /// gave the final answer (a strategy may set it, e.g. cascade's
    /// accepted tier); empty when unknown.
    pub final_model: String,
}

impl StrategyHost {
    /// A host with no profiles.
    pub fn empty(router: Arc<Router>) -> Self {
        Self {
            profiles: HashMap::new(),
            public: HashMap::new(),
            observability_log: None,
            router,
            access_groups: Arc::default(),
        }
    }

    /// Compiles every strategy the plan uses (once per source) and checks each
    /// profile's topology with its strategy's `validate`.
    pub async fn build(
        plan: Plan,
        router: Arc<Router>,
        access_groups: Arc<AccessGroups>,
        engine: &SharedEngine,
    ) -> Result<(Self, Vec<String>), Vec<Problem>> {
        if plan.profiles.is_empty() {
            return Ok((Self::empty(router), Vec::new()));
        }
        let engine = engine
            .get()
            .map_err(|e| vec![Problem::new("general_settings.composite_llm", e)])?;
        let mut problems = Vec::new();
        let warnings = Vec::new();
        let mut compiled = HashMap::new();
        let mut profiles = HashMap::new();
        for (name, plan_profile) in plan.profiles {
            match load_profile(&engine, &mut compiled, plan_profile, &router).await {
                Ok(profile) => {
                    profiles.insert(name, Arc::new(profile));
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let public = plan
            .public
            .into_iter()
            .map(|p| (p.model_name, p.profile))
            .collect();
        Ok((
            Self {
                profiles,
                public,
                observability_log: plan.observability_log,
                router,
                access_groups,
            },
            warnings,
        ))
    }

    /// The refusal of a request to `profile` whose settings (its
    /// `composite_settings` and the fields that override a setting) name a
    /// composite model, or a public model `caller` may not call itself, as
    /// a `fallbacks` entry would be refused: before the run makes any call,
    /// and before a cached answer could reach this caller.
    pub fn settings_refusal(
        &self,
        profile: &LoadedProfile,
        request: &ProxyRequest,
        caller: &crate::ops::Caller,
    ) -> Option<crate::ops::admission::Refusal> {
        // A body that cannot be read is the run's own error to report.
        let mut body = request.rest.to_map().ok()?;
        let mut overrides = take_overrides(profile, &mut body).ok()?;
        // A translated request's own body rides along for native upstreams;
        // it names no member.
        overrides.retain(|k, _| !crate::translate::is_native_carrier(k));
        let overrides = Value::Object(overrides);
        // Every caller's: a composite as a member (itself included) fails
        // when the run gets to it, after its earlier calls were paid for.
        let is_composite = |n: &str| self.public.contains_key(n);
        if let Some(name) = members::composite_named(&overrides, &profile.own_models, is_composite)
        {
            return Some(crate::ops::admission::Refusal {
                status: 400,
                kind: "invalid_request_error",
                code: "composite_member",
                message: format!(
                    "model {name:?} is a composite model: a composite's members must be models \
                     the router serves, not another composite"
                ),
                retry_after: None,
                headers: Vec::new(),
            });
        }
        let principal = caller.principal()?;
        members::Members::new(profile.own_models.clone(), self.access_groups.clone()).refused_in(
            &overrides,
            &self.router,
            principal,
        )
    }

    /// The profile a public model name runs, if it is a composite.
    pub fn profile_for(&self, model: &str) -> Option<&Arc<LoadedProfile>> {
        self.public.get(model).and_then(|p| self.profiles.get(p))
    }

    /// Public composite model names.
    pub fn public_names(&self) -> impl Iterator<Item = &String> {
        self.public.keys()
    }

    /// Loaded profiles, by name.
    pub fn profiles(&self) -> &HashMap<String, Arc<LoadedProfile>> {
        &self.profiles
    }

    /// Runs a composite request to one JSON answer, with the model that
    /// gave the final answer. The run's usage and trace go into `outcome`.
    pub async fn execute_answer(
        &self,
        profile: &Arc<LoadedProfile>,
        public_model: &str,
        request: &ProxyRequest,
        ctx: &CallContext,
        outcome: &OutcomeHandle,
    ) -> Result<CompositeAnswer, StrategyError> {
        let prepared = prepare(profile, request)?;
        let strategy = profile.strategy.clone();
        let (result, state) = self
            .run_recorded(&strategy, profile, prepared, None, ctx, outcome)
            .await;
        let response = result?;
        Ok(CompositeAnswer {
            body: completion_body(public_model, &response, &state),
            final_model: response.model,
        })
    }

    /// Runs a composite request as a stream of chunk payloads. The run is
    /// aborted when the returned guard is dropped.
    pub fn execute_stream(
        self: &Arc<Self>,
        profile: &Arc<LoadedProfile>,
        public_model: &str,
        request: &ProxyRequest,
        ctx: &CallContext,
        outcome: &OutcomeHandle,
    ) -> Result<(mpsc::Receiver<SinkItem>, AbortOnDrop), StrategyError> {
        let prepared = prepare(profile, request)?;
        let strategy = profile.strategy.clone();
        let include_usage = request
            .rest
            .value("stream_options")
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let (tx, rx) = mpsc::channel::<SinkItem>(64);
        let sink = Sink {
            tx: tx.clone(),
            id: response::completion_id(None),
            model: public_model.to_owned(),
            created: unix_now(),
        };
        let host = self.clone();
        let profile = profile.clone();
        let ctx = ctx.clone();
        let outcome = outcome.clone();
        let span = ctx.request.span.clone();
        let handle = tokio::spawn(
            async move {
                let (id, model, created) = (sink.id.clone(), sink.model.clone(), sink.created);
                let (result, state) = host
                    .run_recorded(&strategy, &profile, prepared, Some(sink), &ctx, &outcome)
                    .await;
                let sink = Sink {
                    tx,
                    id,
                    model,
                    created,
                };
                match result {
                    Ok(response) => finish_stream(&sink, &response, &state, include_usage).await,
                    Err(e) => {
                        let _ = sink.tx.send(Err(e)).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok((rx, AbortOnDrop(handle)))
    }

    /// Runs the strategy and records its usage and trace in the request's
    /// outcome (the composite log is one of that outcome's sinks).
    async fn run_recorded(
        &self,
        strategy: &CompiledStrategy,
        profile: &LoadedProfile,
        prepared: Prepared,
        sink: Option<Sink>,
        ctx: &CallContext,
        outcome: &OutcomeHandle,
    ) -> (Result<ChatResponse, StrategyError>, RunSummary) {
        let (result, state) = run::run(
            strategy,
            RunInput {
                profile: profile.plan.name.clone(),
                invocation: prepared.invocation,
                limits: profile.plan.limits.within(ctx.limits.timeout),
                include_trace: prepared.include_trace,
                router: self.router.clone(),
                sink,
                ctx: ctx.sub_call(&profile.plan.name),
                members: members::Members::new(
                    profile.own_models.clone(),
                    self.access_groups.clone(),
                ),
            },
        )
        .await;
        let error = result.as_ref().err().map(ToString::to_string);
        let run = CompositeRun {
            log_path: self.observability_log.clone(),
            trace: trace::to_json(&state.trace.snapshot(error.clone())),
            error,
        };
        outcome.update(|o| {
            o.usage = Some(Usage {
                prompt_tokens: state.prompt_tokens,
                completion_tokens: state.completion_tokens,
            });
            // The model that answered last, as spend rows name a deployment;
            // not one longer than a request's model may be.
            if let Ok(response) = &result
                && response.model.len() <= crate::openai::MAX_MODEL_NAME_BYTES
            {
                o.deployment = Some(response.model.as_str().into());
            }
            o.composite = Some(Arc::new(run));
        });
        (result, state)
    }
}

/// Aborts a spawned run when the client's stream is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Compiles a profile's strategy (once per source: `compiled` holds what
/// this build compiled so far) and checks its topology with `validate`.
async fn load_profile(
    engine: &Arc<StrategyEngine>,
    compiled: &mut HashMap<Source, Arc<CompiledStrategy>>,
    plan: ProfilePlan,
    router: &Arc<Router>,
) -> Result<LoadedProfile, Problem> {
    let strategy = match compiled.get(&plan.source) {
        Some(strategy) => strategy.clone(),
        None => {
            let strategy = compile(engine, &plan.source)
                .await
                .map(Arc::new)
                .map_err(|e| Problem::new(format!("{}.strategy", plan.path), e))?;
            compiled.insert(plan.source.clone(), strategy.clone());
            strategy
        }
    };
    let topology_json = plan.topology.to_string();
    validate_profile(&strategy, &plan, &topology_json, router).await?;
    // The direct form's model is its author's choice as much as a
    // profile's topology is: any caller of the entry may have it called.
    let own_models = members::named_in(&plan.topology);
    Ok(LoadedProfile {
        plan,
        strategy,
        topology_json,
        own_models: Arc::new(own_models),
    })
}

/// Asks the strategy's `validate` export whether it accepts the profile.
async fn validate_profile(
    strategy: &CompiledStrategy,
    plan: &ProfilePlan,
    topology_json: &str,
    router: &Arc<Router>,
) -> Result<(), Problem> {
    let settings_json = Value::Object(plan.settings.clone()).to_string();
    let verdict = run::validate(
        strategy,
        router.clone(),
        &plan.name,
        plan.limits,
        topology_json,
        &settings_json,
    )
    .await;
    match verdict {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Problem::new(
            format!("{}.topology", plan.path),
            error::bounded(format!(
                "rejected by the {:?} strategy: {reason}",
                plan.strategy
            )),
        )),
        Err(e) => Err(Problem::new(plan.path.clone(), error::bounded(e))),
    }
}

/// Reads a strategy's component and compiles it off the async threads.
async fn compile(
    engine: &Arc<StrategyEngine>,
    source: &Source,
) -> Result<CompiledStrategy, String> {
    let (label, bytes): (String, Vec<u8>) = match source {
        Source::Builtin(name) => {
            let bytes = builtin::bytes(name)
                .ok_or_else(|| format!("no built-in strategy named {name:?}"))?;
            (format!("builtin:{name}"), bytes.to_vec())
        }
        Source::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read component {}: {e}", path.display()))?;
            (path.display().to_string(), bytes)
        }
    };
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.compile(&label, &bytes))
        .await
        .map_err(|e| format!("compilation task failed: {e}"))?
}

struct Prepared {
    invocation: Invocation,
    include_trace: bool,
}

/// Splits the request into the client's chat request and settings overrides.
fn prepare(profile: &LoadedProfile, request: &ProxyRequest) -> Result<Prepared, StrategyError> {
    let mut body = request
        .rest
        .to_map()
        .map_err(|e| StrategyError::InvalidRequest {
            profile: profile.plan.name.clone(),
            message: format!("the request body cannot be read: {e}"),
        })?;
    let mut settings: Map<String, Value> = profile.plan.settings.clone();
    settings.extend(take_overrides(profile, &mut body)?);
    let include_trace = settings
        .get(TRACE_SETTING)
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let chat = convert::request_from_client(&request.model, &body).map_err(|message| {
        StrategyError::InvalidRequest {
            profile: profile.plan.name.clone(),
            message,
        }
    })?;
    Ok(Prepared {
        invocation: Invocation {
            request: chat,
            topology_json: profile.topology_json.clone(),
            settings_json: Value::Object(settings).to_string(),
        },
        include_trace,
    })
}

/// Takes out of a request `body` the settings it brings to `profile`: its
/// `composite_settings` object, then its top-level fields that name one of
/// the profile's settings or are not OpenAI chat fields.
fn take_overrides(
    profile: &LoadedProfile,
    body: &mut Map<String, Value>,
) -> Result<Map<String, Value>, StrategyError> {
    let mut overrides = match body.remove(SETTINGS_KEY) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(overrides)) => overrides,
        Some(_) => {
            return Err(StrategyError::InvalidRequest {
                profile: profile.plan.name.clone(),
                message: format!("{SETTINGS_KEY} must be an object"),
            });
        }
    };
    // A field named like one of the profile's settings (even an OpenAI one
    // such as `temperature`) overrides it; every other field that is not
    // OpenAI's is a setting too, for a profile as for the direct form: a
    // strategy option (`council_models`, `chairman_model`) then reaches the
    // strategy, and never an upstream that would refuse an argument it
    // does not know.
    let is_setting = |k: &str| {
        profile.plan.settings.contains_key(k)
            || k == TRACE_SETTING
            || !OPENAI_CHAT_FIELDS.contains(&k)
    };
    let keys: Vec<String> = body.keys().filter(|k| is_setting(k)).cloned().collect();
    for k in keys {
        if let Some(v) = body.remove(&k) {
            overrides.insert(k, v);
        }
    }
    Ok(overrides)
}

/// The tool calls of a strategy's answer, when it made any.
fn tool_calls(response: &ChatResponse) -> Option<Vec<Value>> {
    response
        .tool_calls_json
        .as_deref()
        .and_then(|t| serde_json::from_str::<Vec<Value>>(t).ok())
        .filter(|calls| !calls.is_empty())
}

fn usage_value(state: &RunSummary) -> Value {
    response::usage(state.prompt_tokens, state.completion_tokens)
}

/// The chat.completion body of a finished composite request.
fn completion_body(public_model: &str, answer: &ChatResponse, state: &RunSummary) -> Bytes {
    let message = response::assistant_message(
        &answer.content,
        Some(&state.reasoning),
        tool_calls(answer).map(Value::Array),
    );
    let id = response::completion_id(None);
    let body = response::completion(
        response::Head::now(&id, public_model),
        message,
        &answer.finish_reason,
        usage_value(state),
    );
    response::to_bytes(&body)
}

/// Sends what is left after the run: the answer (if `respond` did not stream
/// it), the finish reason and, when asked, the summed usage.
async fn finish_stream(
    sink: &Sink,
    answer: &ChatResponse,
    state: &RunSummary,
    include_usage: bool,
) {
    if !state.streamed_answer {
        let delta = response::assistant_delta(&answer.content, tool_calls(answer));
        if !sink.delta(delta, None).await {
            return;
        }
    }
    if !sink.delta(json!({}), Some(&answer.finish_reason)).await {
        return;
    }
    if include_usage {
        sink.send(response::usage_chunk(sink.head(), usage_value(state)))
            .await;
    }
}
