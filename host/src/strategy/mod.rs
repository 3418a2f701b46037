//! The strategy host: composite profiles run as sandboxed WebAssembly
//! components (wasm32-wasip2) whose every model call goes through the router.
//!
//! Flow of one composite request: [`StrategyHost::execute`] merges request
//! settings into the profile's, builds the invocation, and [`run::run`]
//! instantiates the pre-instantiated component in a fresh store and calls its
//! `run`. Host imports ([`run`]'s `Host` impl) route each model call; a
//! streaming client gets the trace as `reasoning_content` and the final
//! stage's tokens as they arrive.

pub mod bindings;
mod builtin;
pub mod convert;
pub mod engine;
pub mod error;
pub mod limits;
pub mod profiles;
pub mod run;
pub mod trace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::config::Problem;
use crate::openai::{ProxyRequest, unix_now};
use crate::router::Router;
use bindings::{ChatResponse, Invocation};
pub use engine::{CompiledStrategy, StrategyEngine};
pub use error::StrategyError;
use profiles::{Plan, ProfilePlan, Source};
use run::{RunInput, RunSummary, Sink, SinkItem};

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
];

/// A profile ready to run.
pub struct LoadedProfile {
    pub plan: ProfilePlan,
    /// `None` when the strategy is not in this build.
    pub strategy: Option<Arc<CompiledStrategy>>,
    topology_json: String,
}

/// Every profile of one gateway version.
pub struct StrategyHost {
    profiles: HashMap<String, Arc<LoadedProfile>>,
    /// Public model name to profile name.
    public: HashMap<String, String>,
    observability_log: Option<PathBuf>,
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

/// What a composite request produced besides its body.
pub struct CompositeMeta {
    pub profile: String,
}

impl StrategyHost {
    /// A host with no profiles.
    pub fn empty() -> Self {
        Self {
            profiles: HashMap::new(),
            public: HashMap::new(),
            observability_log: None,
        }
    }

    /// Compiles every strategy the plan uses (once per source) and checks each
    /// profile's topology with its strategy's `validate`.
    pub async fn build(
        plan: Plan,
        router: Arc<Router>,
    ) -> Result<(Self, Vec<String>), Vec<Problem>> {
        if plan.profiles.is_empty() {
            return Ok((Self::empty(), Vec::new()));
        }
        let engine = StrategyEngine::shared()
            .map_err(|e| vec![Problem::new("general_settings.composite_llm", e)])?;
        let mut problems = Vec::new();
        let warnings = Vec::new();
        let mut compiled: HashMap<Source, Arc<CompiledStrategy>> = HashMap::new();
        let mut profiles = HashMap::new();
        for (name, plan_profile) in plan.profiles {
            let strategy = match &plan_profile.source {
                Source::Missing(_) => None,
                source => match compiled.get(source) {
                    Some(c) => Some(c.clone()),
                    None => match compile(&engine, source).await {
                        Ok(c) => {
                            let c = Arc::new(c);
                            compiled.insert(source.clone(), c.clone());
                            Some(c)
                        }
                        Err(e) => {
                            problems
                                .push(Problem::new(format!("{}.strategy", plan_profile.path), e));
                            continue;
                        }
                    },
                },
            };
            let topology_json = plan_profile.topology.to_string();
            if let Some(strategy) = &strategy {
                let settings_json = Value::Object(plan_profile.settings.clone()).to_string();
                match run::validate(
                    strategy,
                    router.clone(),
                    plan_profile.limits,
                    &topology_json,
                    &settings_json,
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => problems.push(Problem::new(
                        format!("{}.topology", plan_profile.path),
                        format!(
                            "rejected by the {:?} strategy: {reason}",
                            plan_profile.strategy
                        ),
                    )),
                    Err(e) => problems.push(Problem::new(plan_profile.path.clone(), e)),
                }
            }
            profiles.insert(
                name,
                Arc::new(LoadedProfile {
                    plan: plan_profile,
                    strategy,
                    topology_json,
                }),
            );
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
            },
            warnings,
        ))
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

    /// Runs a composite request to one JSON answer.
    pub async fn execute(
        &self,
        profile: &Arc<LoadedProfile>,
        public_model: &str,
        request: &ProxyRequest,
        router: Arc<Router>,
    ) -> Result<Bytes, StrategyError> {
        self.execute_answer(profile, public_model, request, router)
            .await
            .map(|a| a.body)
    }

    /// Runs a composite request to one JSON answer, with the model that
    /// gave the final answer.
    pub async fn execute_answer(
        &self,
        profile: &Arc<LoadedProfile>,
        public_model: &str,
        request: &ProxyRequest,
        router: Arc<Router>,
    ) -> Result<CompositeAnswer, StrategyError> {
        let prepared = prepare(profile, request)?;
        let strategy = strategy_of(profile)?;
        let (result, state) = self
            .run_logged(&strategy, profile, prepared, router, None, public_model)
            .await;
        let response = result?;
        Ok(CompositeAnswer {
            body: completion_body(public_model, &response, &state),
            final_model: response.model,
        })
    }

    /// Runs a composite request as a stream of chunk payloads. The run is
    /// aborted when the returned receiver is dropped.
    pub fn execute_stream(
        self: &Arc<Self>,
        profile: &Arc<LoadedProfile>,
        public_model: &str,
        request: &ProxyRequest,
        router: Arc<Router>,
    ) -> Result<(mpsc::Receiver<SinkItem>, AbortOnDrop), StrategyError> {
        let prepared = prepare(profile, request)?;
        let strategy = strategy_of(profile)?;
        let include_usage = request
            .rest
            .value("stream_options")
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let (tx, rx) = mpsc::channel::<SinkItem>(64);
        let sink = Sink {
            tx: tx.clone(),
            id: format!("chatcmpl-{:016x}", fastrand::u64(..)),
            model: public_model.to_owned(),
            created: unix_now(),
        };
        let host = self.clone();
        let profile = profile.clone();
        let public_model = public_model.to_owned();
        let handle = tokio::spawn(async move {
            let (id, model, created) = (sink.id.clone(), sink.model.clone(), sink.created);
            let (result, state) = host
                .run_logged(
                    &strategy,
                    &profile,
                    prepared,
                    router,
                    Some(sink),
                    &public_model,
                )
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
        });
        Ok((rx, AbortOnDrop(handle)))
    }

    /// Runs the strategy and writes the observability line for it.
    async fn run_logged(
        &self,
        strategy: &CompiledStrategy,
        profile: &LoadedProfile,
        prepared: Prepared,
        router: Arc<Router>,
        sink: Option<Sink>,
        public_model: &str,
    ) -> (Result<ChatResponse, StrategyError>, RunSummary) {
        let started = Instant::now();
        let (result, state) = run::run(
            strategy,
            RunInput {
                profile: profile.plan.name.clone(),
                invocation: prepared.invocation,
                limits: profile.plan.limits,
                include_trace: prepared.include_trace,
                router,
                sink,
            },
        )
        .await;
        self.log_run(public_model, &profile.plan.name, started, &result, &state)
            .await;
        (result, state)
    }

    async fn log_run(
        &self,
        public_model: &str,
        profile: &str,
        started: Instant,
        result: &Result<ChatResponse, StrategyError>,
        state: &RunSummary,
    ) {
        let Some(path) = &self.observability_log else {
            return;
        };
        let error = result.as_ref().err().map(ToString::to_string);
        let line = json!({
            "timestamp": unix_now(),
            "status": if result.is_ok() { "success" } else { "error" },
            "model": public_model,
            "profile": profile,
            "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
            "prompt_tokens": state.prompt_tokens,
            "completion_tokens": state.completion_tokens,
            "error": error,
            "trace": trace::to_json(&state.trace.snapshot(error.clone())),
        });
        crate::observe::append_json_line(path, &line, "composite trace log").await;
    }
}

/// Aborts a spawned run when the client's stream is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
        Source::Missing(name) => return Err(format!("the {name:?} strategy is not in this build")),
    };
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.compile(&label, &bytes))
        .await
        .map_err(|e| format!("compilation task failed: {e}"))?
}

fn strategy_of(profile: &LoadedProfile) -> Result<Arc<CompiledStrategy>, StrategyError> {
    profile
        .strategy
        .clone()
        .ok_or_else(|| StrategyError::Unavailable {
            profile: profile.plan.name.clone(),
            message: format!(
                "the {:?} strategy is not in this build yet",
                profile.plan.strategy
            ),
        })
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
    match body.remove(SETTINGS_KEY) {
        None | Some(Value::Null) => {}
        Some(Value::Object(overrides)) => settings.extend(overrides),
        Some(_) => {
            return Err(StrategyError::InvalidRequest {
                profile: profile.plan.name.clone(),
                message: format!("{SETTINGS_KEY} must be an object"),
            });
        }
    }
    let is_setting = |k: &str| {
        profile.plan.settings.contains_key(k)
            || k == TRACE_SETTING
            || (profile.plan.direct && !OPENAI_CHAT_FIELDS.contains(&k))
    };
    let keys: Vec<String> = body.keys().filter(|k| is_setting(k)).cloned().collect();
    for k in keys {
        if let Some(v) = body.remove(&k) {
            settings.insert(k, v);
        }
    }
    let include_trace = settings
        .get(TRACE_SETTING)
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let chat = convert::request_from_client(&request.model, &body);
    Ok(Prepared {
        invocation: Invocation {
            request: chat,
            topology_json: profile.topology_json.clone(),
            settings_json: Value::Object(settings).to_string(),
        },
        include_trace,
    })
}

fn tool_calls_value(response: &ChatResponse) -> Option<Value> {
    response
        .tool_calls_json
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
}

fn usage_value(state: &RunSummary) -> Value {
    json!({
        "prompt_tokens": state.prompt_tokens,
        "completion_tokens": state.completion_tokens,
        "total_tokens": state.prompt_tokens + state.completion_tokens,
    })
}

/// The chat.completion body of a finished composite request.
fn completion_body(public_model: &str, response: &ChatResponse, state: &RunSummary) -> Bytes {
    let mut message = json!({"role": "assistant", "content": response.content});
    if !state.reasoning.is_empty() {
        message["reasoning_content"] = Value::String(state.reasoning.clone());
    }
    if let Some(calls) = tool_calls_value(response) {
        message["tool_calls"] = calls;
        if response.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    let body = json!({
        "id": format!("chatcmpl-{:016x}", fastrand::u64(..)),
        "object": "chat.completion",
        "created": unix_now(),
        "model": public_model,
        "choices": [{"index": 0, "message": message, "finish_reason": response.finish_reason}],
        "usage": usage_value(state),
    });
    Bytes::from(body.to_string())
}

/// Sends what is left after the run: the answer (if `respond` did not stream
/// it), the finish reason and, when asked, the summed usage.
async fn finish_stream(
    sink: &Sink,
    response: &ChatResponse,
    state: &RunSummary,
    include_usage: bool,
) {
    if !state.streamed_answer {
        let mut delta = json!({"role": "assistant", "content": response.content});
        if let Some(Value::Array(calls)) = tool_calls_value(response) {
            let indexed: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c["index"] = json!(i);
                    c
                })
                .collect();
            delta["tool_calls"] = Value::Array(indexed);
        }
        if !sink.delta(delta, None).await {
            return;
        }
    }
    if !sink.delta(json!({}), Some(&response.finish_reason)).await {
        return;
    }
    if include_usage {
        sink.send(json!({
            "id": sink.id, "object": "chat.completion.chunk", "created": sink.created, "model": sink.model,
            "choices": [], "usage": usage_value(state),
        }))
        .await;
    }
}
