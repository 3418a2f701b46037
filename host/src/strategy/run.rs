//! One strategy run: a fresh store, the host imports the guest calls, the
//! limits that stop it, and the trace it leaves.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    ChatRequest, ChatResponse, Error, Host, Invocation, StrategyPre, TypesHost, Usage,
};
use super::convert::{
    ChunkDelta, StreamAccumulator, body_from_request, check_answer, request_bytes,
    response_from_json,
};
use super::epoch::{EpochClock, Ticking};
use super::error::StrategyError;
use super::limits::{EPOCH_TICK, Limits};
use super::members::Members;
use super::stderr_tail::StderrTail;
use super::trace::{Trace, TraceNode};
use crate::byte_budget::{ByteBudget, HeldBytes};
use crate::observe::otel::{WorkflowInfo, WorkflowSpans};
use crate::openai::Endpoint;
use crate::openai::response::{self, Head};
use crate::ops::{CallContext, Caller, PendingOutcome, Usage as OutcomeUsage};
use crate::providers::{UpstreamError, UpstreamReply};
use crate::router::{FailedRoute, RouteError, RouteMeta, RouteRequest, Router};

/// Lines of the guest's stderr quoted in a crash message (a traceback's tail).
const GUEST_STDERR_LINES: usize = 12;
/// How much of the guest's stderr (its last bytes) is kept for crash messages.
const STDERR_CAPTURE: usize = 16 * 1024;
/// Wall-clock cap of a profile's `validate` (its CPU limit usually ends a
/// runaway one sooner).
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A compiled, pre-instantiated strategy component: what a run
/// instantiates. The engine makes them; runs only read them.
pub struct CompiledStrategy {
    /// Where it came from: `builtin:<name>` or a file path.
    pub source: String,
    /// Content hash (SHA-256, hex), for status pages and caches.
    pub hash: String,
    /// When this version was compiled or loaded.
    pub loaded_at: SystemTime,
    /// Whether its native code came from the compile cache.
    pub from_cache: bool,
    /// How long compiling (or loading from the cache) took.
    pub load_time: Duration,
    pub(super) pre: StrategyPre<RunState>,
    /// The engine's epoch clock, kept ticking by every run's store.
    pub(super) clock: Arc<EpochClock>,
    /// The engine's memory pool, which every run's memory counts against.
    pub(super) memory: Arc<ByteBudget>,
}

/// Where streamed output goes: chunk payloads (JSON text) for the client.
pub type SinkItem = Result<Bytes, StrategyError>;

/// The client-facing stream of a composite request.
pub struct Sink {
    pub tx: mpsc::Sender<SinkItem>,
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl Sink {
    /// Sends one chunk with `delta`; false when the client has gone.
    pub async fn delta(&self, delta: Value, finish_reason: Option<&str>) -> bool {
        self.send(response::chunk(self.head(), delta, finish_reason))
            .await
    }

    /// What every chunk of this stream shares.
    pub fn head(&self) -> Head<'_> {
        Head {
            id: &self.id,
            created: self.created,
            model: &self.model,
        }
    }

    /// Sends a chunk object.
    pub async fn send(&self, chunk: Value) -> bool {
        self.tx.send(Ok(response::to_bytes(&chunk))).await.is_ok()
    }
}

/// Per-run state: the store's data.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: StderrTail,
    limits: Limits,
    calls_made: u32,
    /// The first call refused to the guest because its model is not one
    /// the run may call: a run that failed having reached no model at all
    /// failed for what its request named.
    first_refusal: Option<String>,
    cpu_ticks: u64,
    cpu_exceeded: bool,
    memory_exceeded: bool,
    /// Its share of the engine's guest memory (set with its store).
    memory: Option<HeldBytes>,
    /// Whether growing its memory was refused because the running guests
    /// together held the pool.
    memory_pool_full: bool,
    /// Why a host import ended the run (a host-side limit), if one did.
    stopped: Option<String>,
    /// Bytes of stage names and texts traced so far.
    trace_bytes: usize,
    /// Trace events so far.
    trace_events: u32,
    /// Bytes of requests the guest handed over so far.
    run_bytes: usize,
    /// Whether `respond` was called already (it answers once per run).
    responded: bool,
    /// Whether this store runs `validate`, which may not call models.
    validating: bool,
    router: Arc<Router>,
    ctx: CallContext,
    sink: Option<Sink>,
    include_trace: bool,
    /// Stage trace text, for `reasoning_content` of a non-streamed answer.
    pub reasoning: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub trace: Trace,
    /// Whether `respond` already streamed the answer's content.
    pub streamed_answer: bool,
    /// The run's OpenTelemetry spans, when the request is traced.
    spans: Option<WorkflowSpans>,
    /// Keeps the epoch clock ticking (the CPU limit) while the store lives.
    ticking: Option<Ticking>,
    /// The models the run may call; `None` while validating, which calls none.
    members: Option<Members>,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for RunState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        // Growth past the memory's own maximum fails anyway: nothing to count.
        if maximum.is_some_and(|most| desired > most) {
            return Ok(true);
        }
        if let Some(share) = &self.memory
            // What this memory grows by: a component's memories (a guest
            // language's runtime may bring several) add up in the share.
            && !share.add(desired.saturating_sub(current))
        {
            self.memory_pool_full = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// What a run leaves behind besides its answer (plain data, safe to hold
/// across awaits).
pub struct RunSummary {
    pub reasoning: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub trace: Trace,
    pub streamed_answer: bool,
}

impl RunState {
    fn into_summary(self) -> RunSummary {
        RunSummary {
            reasoning: self.reasoning,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            trace: self.trace,
            streamed_answer: self.streamed_answer,
        }
    }
}

/// Everything a run needs besides the component.
pub struct RunInput {
    pub profile: String,
    pub invocation: Invocation,
    pub limits: Limits,
    pub include_trace: bool,
    pub router: Arc<Router>,
    pub sink: Option<Sink>,
    /// The sub-call context every model call of the run is made under.
    pub ctx: CallContext,
    /// The models the run may call.
    pub members: Members,
}

fn sandbox() -> (WasiCtx, StderrTail) {
    let stderr = StderrTail::new(STDERR_CAPTURE);
    let mut builder = WasiCtx::builder();
    builder
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    (builder.build(), stderr)
}

impl RunState {
    /// Fresh state for one run: an empty sandbox and no usage yet.
    fn new(
        limits: Limits,
        router: Arc<Router>,
        ctx: CallContext,
        sink: Option<Sink>,
        include_trace: bool,
        profile: &str,
    ) -> Self {
        let (wasi, stderr) = sandbox();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limits,
            calls_made: 0,
            first_refusal: None,
            cpu_ticks: 0,
            cpu_exceeded: false,
            memory_exceeded: false,
            memory: None,
            memory_pool_full: false,
            stopped: None,
            trace_bytes: 0,
            trace_events: 0,
            run_bytes: 0,
            responded: false,
            validating: false,
            router,
            ctx,
            sink,
            include_trace,
            reasoning: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            trace: Trace::new(profile),
            streamed_answer: false,
            spans: None,
            ticking: None,
            members: None,
        }
    }
}

fn new_store(strategy: &CompiledStrategy, mut state: RunState) -> Store<RunState> {
    state.ticking = Some(strategy.clock.run_started());
    state.memory = Some(HeldBytes::of(Arc::clone(&strategy.memory)));
    let mut store = Store::new(strategy.pre.engine(), state);
    store.limiter(|s| s as &mut dyn ResourceLimiter);
    let max_ticks = (state_ticks(&store.data().limits)).max(1);
    store.epoch_deadline_callback(move |mut ctx| {
        let s = ctx.data_mut();
        s.cpu_ticks += 1;
        if s.cpu_ticks > max_ticks {
            s.cpu_exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        // To the back of the runtime's queue (a plain waker would put the
        // run in the worker's next slot, ahead of the requests waiting).
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    store.set_epoch_deadline(1);
    store
}

fn state_ticks(limits: &Limits) -> u64 {
    (limits.cpu_time.as_millis() / EPOCH_TICK.as_millis().max(1)) as u64
}

/// Runs `strategy` once in a fresh store; the deadline covers everything.
/// The run's state (usage, trace, reasoning) comes back even on failure.
pub async fn run(
    strategy: &CompiledStrategy,
    input: RunInput,
) -> (Result<ChatResponse, StrategyError>, RunSummary) {
    let profile = input.profile.clone();
    let deadline = input.limits.deadline;
    let mut state = RunState::new(
        input.limits,
        input.router,
        input.ctx,
        input.sink,
        input.include_trace,
        &profile,
    );
    state.members = Some(input.members);
    state.spans = WorkflowSpans::start(
        &state.ctx,
        WorkflowInfo {
            profile: &profile,
            strategy: &strategy.source,
            hash: &strategy.hash,
        },
    );
    let mut store = new_store(strategy, state);
    let invocation = input.invocation;
    let outcome = tokio::time::timeout(deadline, async {
        let instance = strategy.pre.instantiate_async(&mut store).await?;
        instance.call_run(&mut store, &invocation).await
    })
    .await;
    let result = match outcome {
        Err(_) => Err(StrategyError::Deadline {
            profile: profile.clone(),
            seconds: deadline.as_secs_f64(),
        }),
        Ok(Ok(Ok(response))) => match check_answer(&response, store.data().limits.max_answer_bytes)
        {
            Ok(()) => Ok(response),
            Err(fault) => Err(StrategyError::InvalidResponse {
                profile: profile.clone(),
                field: fault.field.to_owned(),
                message: fault.message,
            }),
        },
        Ok(Ok(Err(guest_error))) => {
            let state = store.data();
            match (&state.first_refusal, state.calls_made) {
                // Every model the run tried was one the request may not
                // name: the request's mistake, not an upstream's (a 400, not
                // a 502 that clients would retry).
                (Some(why), 0) => Err(StrategyError::InvalidRequest {
                    profile: profile.clone(),
                    message: format!("the run reached no model: {why}"),
                }),
                _ => Err(StrategyError::from_guest(&profile, guest_error)),
            }
        }
        Ok(Err(trap)) => Err(explain_trap(&profile, store.data(), &trap)),
    };
    let mut state = store.into_data();
    if let Some(spans) = state.spans.take() {
        let error = result.as_ref().err().map(ToString::to_string);
        spans.end(
            state.prompt_tokens,
            state.completion_tokens,
            error.as_deref(),
        );
    }
    (result, state.into_summary())
}

/// Calls the component's `validate` export for `profile`, under the
/// profile's CPU and memory limits; it may not call models. The outer error
/// (the export trapped or ran too long) names the profile.
pub async fn validate(
    strategy: &CompiledStrategy,
    router: Arc<Router>,
    profile: &str,
    limits: Limits,
    topology_json: &str,
    settings_json: &str,
) -> Result<Result<(), String>, String> {
    let mut state = RunState::new(
        limits,
        router,
        CallContext::detached(Caller::Master, "validate").sub_call("validate"),
        None,
        false,
        profile,
    );
    state.validating = true;
    let timeout = limits.deadline.min(VALIDATE_TIMEOUT);
    let mut store = new_store(strategy, state);
    let work = async {
        let instance = strategy.pre.instantiate_async(&mut store).await?;
        instance
            .call_validate(&mut store, topology_json, settings_json)
            .await
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!(
            "profile {profile:?}: validate did not finish within {:.1} s",
            timeout.as_secs_f64()
        )),
        Ok(Ok(r)) => Ok(r),
        Ok(Err(trap)) => Err(format!(
            "validate failed: {}",
            explain_trap(profile, store.data(), &trap)
        )),
    }
}

fn explain_trap(profile: &str, state: &RunState, trap: &wasmtime::Error) -> StrategyError {
    let profile = profile.to_owned();
    if let Some(message) = &state.stopped {
        return StrategyError::LimitExceeded {
            profile,
            message: message.clone(),
        };
    }
    if state.cpu_exceeded {
        return StrategyError::LimitExceeded {
            profile,
            message: format!(
                "the strategy used more than its CPU limit of {} ms",
                state.limits.cpu_time.as_millis()
            ),
        };
    }
    if state.memory_pool_full {
        return StrategyError::Busy {
            profile,
            message: format!(
                "the running strategies together hold the gateway's {} MiB for guest memory; \
                 try again shortly",
                state.memory.as_ref().map_or(0, |s| s.budget().limit_mb())
            ),
        };
    }
    if state.memory_exceeded {
        return StrategyError::LimitExceeded {
            profile,
            message: format!(
                "the strategy tried to use more than its memory limit of {} MiB",
                state.limits.memory_bytes >> 20
            ),
        };
    }
    let stderr = String::from_utf8_lossy(&state.stderr.contents())
        .trim()
        .to_owned();
    let reason = trap
        .downcast_ref::<wasmtime::Trap>()
        .map_or_else(|| format!("{trap:#}"), |t| t.to_string());
    let message = if stderr.is_empty() {
        reason
    } else {
        let last: Vec<&str> = stderr
            .lines()
            .rev()
            .take(GUEST_STDERR_LINES)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{reason}; guest stderr: {}", last.join(" | "))
    };
    StrategyError::Trap { profile, message }
}

fn guest_error(error: RouteError) -> Error {
    match error {
        RouteError::ModelNotFound { model } => Error::ModelNotFound(model),
        RouteError::InvalidRequest { message, .. } => Error::InvalidRequest(message),
        RouteError::Upstream { error, .. }
            if matches!(
                *error,
                UpstreamError::Timeout(_) | UpstreamError::StreamTooLong(_)
            ) =>
        {
            Error::Timeout
        }
        other => Error::Upstream(other.to_string()),
    }
}

impl RunState {
    fn charge(&mut self, calls: u32) -> Result<(), Error> {
        if self.calls_made.saturating_add(calls) > self.limits.max_calls {
            return Err(Error::LimitExceeded(format!(
                "the profile allows {} model calls per request",
                self.limits.max_calls
            )));
        }
        self.calls_made += calls;
        Ok(())
    }

    fn count(&mut self, usage: &Usage) {
        self.prompt_tokens += u64::from(usage.prompt_tokens);
        self.completion_tokens += u64::from(usage.completion_tokens);
    }

    /// Adds a finished call to the trace: it began at `started` and took `took`.
    fn record(
        &mut self,
        model: &str,
        started: Instant,
        took: Duration,
        result: &Result<ChatResponse, Error>,
    ) {
        let node = match result {
            Ok(r) => TraceNode::call(model, took, Some(&r.usage), Some(&r.content), None),
            Err(e) => TraceNode::call(model, took, None, None, Some(&format!("{e:?}"))),
        };
        self.trace.push_call(node, started);
    }
}

/// One non-streaming completion through the router, leaving one sub-call
/// outcome linked to the client's request.
async fn complete_via(
    router: &Router,
    ctx: &CallContext,
    req: &ChatRequest,
) -> Result<ChatResponse, Error> {
    // Calls of one run may go at once: each records its own attempts.
    let ctx = &*ctx.for_call();
    let mut outcome = PendingOutcome::sub_call(ctx, &req.model, false);
    admit_sub_call(ctx, &req.model, &mut outcome).await?;
    let body = body_from_request(req)?;
    keep_sent(ctx, &mut outcome, &req.model, false, &body);
    let cached = match &ctx.cache {
        Some(cache) => cache.key(&req.model, &body).map(|key| (cache, key)),
        None => None,
    };
    if let Some((cache, key)) = &cached
        && let Some(entry) = cache.get(key).await
        && let Ok(response) = response_from_json(&entry.body)
    {
        if let Some(o) = outcome.get_mut() {
            o.cache = crate::ops::CacheStatus::Hit;
            o.model_group = Some(req.model.as_str().into());
        }
        finish_sub_call(&mut outcome, &Ok(response.clone()));
        return Ok(response);
    }
    let abandoned = InFlightSubCall::new(&mut outcome, ctx, router, &req.model, &body);
    let routed = router
        .route_counted(RouteRequest {
            endpoint: Endpoint::ChatCompletions,
            model: &req.model,
            stream: false,
            body: &body,
            fallbacks: None,
            disable_fallbacks: false,
            may_fall_back_to: None,
            limits: ctx.limits,
            ctx,
        })
        .await;
    abandoned.answered();
    let routed = match routed {
        Ok(routed) => routed,
        Err(failed) => return Err(route_failed(&mut outcome, failed)),
    };
    record_route(&mut outcome, &routed.meta);
    let result = match routed.reply {
        UpstreamReply::Json(bytes) => {
            let result = response_from_json(&bytes);
            if let (Ok(_), Some((cache, key))) = (&result, &cached)
                && cache.store(key, bytes)
                && let Some(o) = outcome.get_mut()
            {
                o.cache = crate::ops::CacheStatus::Stored;
            }
            result
        }
        UpstreamReply::Stream(_) => Err(Error::Upstream("unexpected stream".into())),
    };
    finish_sub_call(&mut outcome, &result);
    charge_sub_call(ctx, &mut outcome, &req.model, &result);
    result
}

/// A sub-call under way at its upstream. Dropped armed (the run was
/// cancelled: the client left, or the run's deadline passed; or a stream
/// ended without usage), it charges an estimate: its prompt, and the text
/// it streamed so far, priced at the dearest deployment of its group; and
/// marks its outcome as having reached a model, as a plain request the
/// client leaves is: the upstream has read the prompt.
struct InFlightSubCall<'a> {
    outcome: &'a mut PendingOutcome,
    ctx: &'a CallContext,
    router: &'a Router,
    model: &'a str,
    body: &'a crate::openai::RawFields,
    /// What a streamed sub-call has passed on so far.
    sent: crate::ops::estimate::SentText,
    armed: bool,
}

impl<'a> InFlightSubCall<'a> {
    /// Armed for a call of `model` sending `body`.
    fn new(
        outcome: &'a mut PendingOutcome,
        ctx: &'a CallContext,
        router: &'a Router,
        model: &'a str,
        body: &'a crate::openai::RawFields,
    ) -> Self {
        Self {
            outcome,
            ctx,
            router,
            model,
            body,
            sent: Default::default(),
            armed: true,
        }
    }

    /// The router answered (or failed): the answer prices the call.
    fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for InFlightSubCall<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let usage = OutcomeUsage {
            prompt_tokens: crate::ops::estimate::prompt_tokens(self.body),
            completion_tokens: self.sent.tokens(),
        };
        let request = &self.ctx.request;
        let meter = &request.meter;
        let deployment = self
            .router
            .dearest_deployment(self.model, |id| meter.price(Some(id), self.model, usage));
        let cost = meter.charge(&request.caller, self.model, deployment, usage);
        if let Some(o) = self.outcome.get_mut() {
            o.attempts = o.attempts.max(1);
            o.usage = Some(usage);
            o.cost = Some(cost);
        }
    }
}

/// A sub-call the router could not answer: its outcome notes the attempts
/// and the error; the guest gets the error.
fn route_failed(outcome: &mut PendingOutcome, failed: FailedRoute) -> Error {
    if let Some(o) = outcome.get_mut() {
        o.failed_after(failed.attempts, failed.group);
    }
    outcome.finish(failed.error.status(), Some(failed.error.code()));
    guest_error(failed.error)
}

/// Refuses a sub-call its caller may not make now (a spent budget, a rate
/// limit reached) with the guest's `limit-exceeded`, naming the limit; an
/// admitted one counts in the caller's per-minute windows like a request.
async fn admit_sub_call(
    ctx: &CallContext,
    model: &str,
    outcome: &mut PendingOutcome,
) -> Result<(), Error> {
    let request = &ctx.request;
    let Some(limiter) = request.meter.limiter() else {
        return Ok(());
    };
    let scopes = request.meter.scopes(&request.caller, model);
    if scopes.is_empty() {
        return Ok(());
    }
    match limiter.admit(&scopes, false).await {
        Ok(_) => Ok(()),
        Err(refused) => {
            let refusal = crate::ops::admission::limit_refusal(&refused);
            outcome.finish(refusal.status, Some(refusal.code));
            request.meter.note_refusal(&refusal);
            Err(Error::LimitExceeded(refusal.message))
        }
    }
}

/// Prices an answered sub-call and charges it to the caller at once, so
/// the run's next call already sees it.
fn charge_sub_call(
    ctx: &CallContext,
    outcome: &mut PendingOutcome,
    model: &str,
    result: &Result<ChatResponse, Error>,
) {
    let (Ok(response), Some(o)) = (result, outcome.get_mut()) else {
        return;
    };
    let usage = OutcomeUsage {
        prompt_tokens: u64::from(response.usage.prompt_tokens),
        completion_tokens: u64::from(response.usage.completion_tokens),
    };
    let request = &ctx.request;
    let cost = request
        .meter
        .charge(&request.caller, model, o.deployment.as_deref(), usage);
    o.cost = Some(cost);
}

/// Keeps the body a sub-call sends (model, stream and the fields the
/// strategy set) for the request log, when request logs are on.
fn keep_sent(
    ctx: &CallContext,
    outcome: &mut PendingOutcome,
    model: &str,
    stream: bool,
    body: &crate::openai::RawFields,
) {
    if !ctx.is_logged() {
        return;
    }
    let (Ok(mut sent), Ok(rest)) = (
        serde_json::to_vec(&json!({"model": model, "stream": stream})),
        serde_json::to_vec(body),
    ) else {
        return;
    };
    // `{"model":..,"stream":..}` and `{..rest..}` joined into one object.
    if rest.len() > 2 {
        sent.pop();
        sent.push(b',');
        sent.extend_from_slice(rest.get(1..).unwrap_or_default());
    }
    if let Some(o) = outcome.get_mut() {
        o.keep_request_body(Bytes::from(sent), true);
    }
}

/// Where a sub-call went, for its outcome.
fn record_route(outcome: &mut PendingOutcome, meta: &RouteMeta) {
    if let Some(o) = outcome.get_mut() {
        o.model_group = Some(meta.group.clone());
        o.deployment = Some(meta.deployment.clone());
        o.attempts = meta.attempts;
        o.fallback.clone_from(&meta.fallback);
        o.upstream_time = Some(meta.upstream_time);
    }
}

/// Sets a routed sub-call's status and usage from what the guest receives.
fn finish_sub_call(outcome: &mut PendingOutcome, result: &Result<ChatResponse, Error>) {
    match result {
        Ok(response) => {
            if let Some(o) = outcome.get_mut() {
                o.usage = Some(OutcomeUsage {
                    prompt_tokens: u64::from(response.usage.prompt_tokens),
                    completion_tokens: u64::from(response.usage.completion_tokens),
                });
            }
            outcome.finish(200, None);
        }
        Err(_) => outcome.finish(502, Some("invalid_upstream_answer")),
    }
}

impl TypesHost for RunState {}

impl RunState {
    /// Ends the run from a host import: the reason is kept for the error
    /// the client gets, the returned error traps the guest.
    fn stop(&mut self, message: String) -> wasmtime::Error {
        let error = wasmtime::Error::msg(message.clone());
        self.stopped = Some(message);
        error
    }

    /// Counts the requests a guest hands over in one import call. Past the
    /// run's total the run ends; a request past the per-call cap, or any
    /// request during `validate`, is refused to the guest.
    fn admit(&mut self, reqs: &[ChatRequest]) -> wasmtime::Result<Result<(), Error>> {
        let sizes: Vec<usize> = reqs.iter().map(request_bytes).collect();
        let total = sizes.iter().fold(0usize, |a, b| a.saturating_add(*b));
        self.run_bytes = self.run_bytes.saturating_add(total);
        if self.run_bytes > self.limits.max_run_bytes {
            return Err(self.stop(format!(
                "the strategy handed the host more than {} bytes of requests in one run \
                 (limits.max_run_bytes)",
                self.limits.max_run_bytes
            )));
        }
        if self.validating {
            return Ok(Err(Error::InvalidRequest(
                "validate cannot call models".into(),
            )));
        }
        if let Some(big) = sizes.iter().find(|n| **n > self.limits.max_call_bytes) {
            return Ok(Err(Error::LimitExceeded(format!(
                "a request of {big} bytes exceeds the profile's limit of {} bytes per call \
                 (limits.max_call_bytes)",
                self.limits.max_call_bytes
            ))));
        }
        Ok(Ok(()))
    }

    /// Why this run may not call `req`'s model, if it may not (see
    /// [`super::members`]).
    fn member_refusal(&mut self, req: &ChatRequest) -> Option<Error> {
        let members = self.members.as_ref()?;
        let why = members.refusal(&req.model, &self.router, &self.ctx.request.caller)?;
        self.first_refusal.get_or_insert_with(|| why.clone());
        Some(Error::InvalidRequest(why))
    }

    /// Counts one trace event; past the run's trace limits the run ends.
    fn admit_trace(&mut self, stage: &str, text: &str) -> wasmtime::Result<()> {
        self.trace_events = self.trace_events.saturating_add(1);
        self.trace_bytes = self
            .trace_bytes
            .saturating_add(stage.len().saturating_add(text.len()));
        if self.trace_events > self.limits.max_trace_events {
            return Err(self.stop(format!(
                "the strategy traced more than {} events (limits.max_trace_events)",
                self.limits.max_trace_events
            )));
        }
        if self.trace_bytes > self.limits.max_trace_bytes {
            return Err(self.stop(format!(
                "the strategy traced more than {} bytes (limits.max_trace_bytes)",
                self.limits.max_trace_bytes
            )));
        }
        Ok(())
    }

    /// One counted, recorded completion.
    async fn complete_one(&mut self, req: &ChatRequest) -> Result<ChatResponse, Error> {
        self.charge(1)?;
        let started = Instant::now();
        let result = complete_via(&self.router, &self.ctx, req).await;
        if let Ok(r) = &result {
            self.count(&r.usage);
        }
        self.record(&req.model, started, started.elapsed(), &result);
        result
    }

    /// A concurrent fan-out within the profile's width and call limits.
    async fn complete_many(&mut self, reqs: &[ChatRequest]) -> Vec<Result<ChatResponse, Error>> {
        let width = reqs.len();
        if width > self.limits.max_fanout as usize {
            return refused(
                width,
                Error::LimitExceeded(format!(
                    "complete-all with {width} requests exceeds the profile's max fan-out of {}",
                    self.limits.max_fanout
                )),
            );
        }
        if let Err(e) = self.charge(width as u32) {
            return refused(width, e);
        }
        let started = Instant::now();
        let router = self.router.clone();
        let ctx = self.ctx.clone();
        // Each call timed on its own: they start together, end apart.
        let timed = reqs.iter().map(|r| async {
            let result = complete_via(&router, &ctx, r).await;
            (result, started.elapsed())
        });
        let timed: Vec<(Result<ChatResponse, Error>, Duration)> =
            futures_util::future::join_all(timed).await;
        let mut results = Vec::with_capacity(timed.len());
        for (req, (result, took)) in reqs.iter().zip(timed) {
            if let Ok(r) = &result {
                self.count(&r.usage);
            }
            self.record(&req.model, started, took, &result);
            results.push(result);
        }
        results
    }

    /// The final answer: streamed to the client when it asked for a stream.
    async fn respond_once(&mut self, req: &ChatRequest) -> Result<ChatResponse, Error> {
        if self.sink.is_none() {
            return self.complete_one(req).await;
        }
        self.charge(1)?;
        let started = Instant::now();
        let result = self.respond_streamed(req).await;
        if let Ok(r) = &result {
            self.count(&r.usage);
        }
        self.record(&req.model, started, started.elapsed(), &result);
        result
    }

    /// Routes the final answer as a stream and forwards its chunks.
    async fn respond_streamed(&mut self, req: &ChatRequest) -> Result<ChatResponse, Error> {
        let Some(sink) = self.sink.as_ref() else {
            return Err(Error::InvalidRequest("no client stream".into()));
        };
        let mut body = body_from_request(req)?;
        body.insert_value("stream_options", &json!({"include_usage": true}))
            .map_err(|e| Error::InvalidRequest(format!("stream_options cannot be encoded: {e}")))?;
        let router = self.router.clone();
        let ctx = self.ctx.for_call().into_owned();
        let mut call = PendingOutcome::sub_call(&ctx, &req.model, true);
        admit_sub_call(&ctx, &req.model, &mut call).await?;
        keep_sent(&ctx, &mut call, &req.model, true, &body);
        let mut in_flight = InFlightSubCall::new(&mut call, &ctx, &router, &req.model, &body);
        let routed = router
            .route_counted(RouteRequest {
                endpoint: Endpoint::ChatCompletions,
                model: &req.model,
                stream: true,
                body: &body,
                fallbacks: None,
                disable_fallbacks: false,
                may_fall_back_to: None,
                limits: ctx.limits,
                ctx: &ctx,
            })
            .await;
        let mut chunks = match routed {
            Ok(r) => {
                record_route(in_flight.outcome, &r.meta);
                match r.reply {
                    UpstreamReply::Stream(s) => s,
                    UpstreamReply::Json(bytes) => {
                        in_flight.answered();
                        let result = response_from_json(&bytes);
                        finish_sub_call(&mut call, &result);
                        charge_sub_call(&self.ctx, &mut call, &req.model, &result);
                        return result;
                    }
                }
            }
            Err(failed) => {
                in_flight.answered();
                return Err(route_failed(&mut call, failed));
            }
        };
        let mut acc = StreamAccumulator::default();
        let mut outcome = Ok(());
        let mut broken = false;
        while let Some(item) = chunks.next().await {
            match item {
                Ok(payload) => {
                    in_flight.outcome.first_token();
                    in_flight.sent.add(&payload);
                    let delta = match acc.push(&payload) {
                        Ok(delta) => forwarded(delta, self.include_trace),
                        Err(unreadable) => {
                            in_flight.outcome.finish(502, Some("stream_broken"));
                            broken = true;
                            outcome = Err(Error::Upstream(unreadable));
                            break;
                        }
                    };
                    if let Some(delta) = delta
                        && !sink.delta(delta, None).await
                    {
                        outcome = Err(Error::Upstream("the client disconnected".into()));
                        break;
                    }
                }
                Err(e) => {
                    let status = crate::router::upstream_status(&e);
                    in_flight.outcome.finish(status, Some("stream_broken"));
                    broken = true;
                    outcome = Err(Error::Upstream(e.to_string()));
                    break;
                }
            }
        }
        let result = outcome.and_then(|()| acc.finish());
        match &result {
            // A stream that failed costs nothing, as a failed call does.
            Err(_) if broken => in_flight.answered(),
            Ok(response)
                if response.usage.prompt_tokens > 0 || response.usage.completion_tokens > 0 =>
            {
                in_flight.answered();
                finish_sub_call(&mut call, &result);
                charge_sub_call(&self.ctx, &mut call, &req.model, &result);
            }
            // No usage came, or the client left: the estimate, on drop.
            Ok(_) => {
                finish_sub_call(in_flight.outcome, &result);
                drop(in_flight);
            }
            Err(_) => drop(in_flight),
        }
        self.streamed_answer = true;
        result
    }
}

/// The same refusal for every request of a fan-out.
fn refused(width: usize, error: Error) -> Vec<Result<ChatResponse, Error>> {
    (0..width).map(|_| Err(error.clone())).collect()
}

/// The client-facing delta of one upstream chunk, if it carries anything.
fn forwarded(delta: ChunkDelta, include_trace: bool) -> Option<Value> {
    let mut out = serde_json::Map::new();
    if let Some(c) = delta.content {
        out.insert("content".into(), Value::String(c));
    }
    if let Some(r) = delta.reasoning.filter(|_| include_trace) {
        out.insert("reasoning_content".into(), Value::String(r));
    }
    if let Some(t) = delta.tool_calls {
        out.insert("tool_calls".into(), t);
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

impl Host for RunState {
    async fn complete(
        &mut self,
        req: ChatRequest,
    ) -> wasmtime::Result<Result<ChatResponse, Error>> {
        if let Err(e) = self.admit(std::slice::from_ref(&req))? {
            return Ok(Err(e));
        }
        if let Some(e) = self.member_refusal(&req) {
            return Ok(Err(e));
        }
        Ok(self.complete_one(&req).await)
    }

    async fn complete_all(
        &mut self,
        reqs: Vec<ChatRequest>,
    ) -> wasmtime::Result<Vec<Result<ChatResponse, Error>>> {
        if let Err(e) = self.admit(&reqs)? {
            return Ok(refused(reqs.len(), e));
        }
        // A member the run may not call is refused on its own: the others
        // still answer, as when one of them fails upstream.
        let refusals: Vec<Option<Error>> = reqs.iter().map(|r| self.member_refusal(r)).collect();
        if refusals.iter().all(Option::is_none) {
            return Ok(self.complete_many(&reqs).await);
        }
        let allowed: Vec<ChatRequest> = reqs
            .into_iter()
            .zip(&refusals)
            .filter(|(_, refusal)| refusal.is_none())
            .map(|(req, _)| req)
            .collect();
        let mut answers = self.complete_many(&allowed).await.into_iter();
        Ok(refusals
            .into_iter()
            .map(|refusal| match refusal {
                Some(e) => Err(e),
                None => answers
                    .next()
                    .unwrap_or_else(|| Err(Error::InvalidRequest("the call was not made".into()))),
            })
            .collect())
    }

    async fn respond(&mut self, req: ChatRequest) -> wasmtime::Result<Result<ChatResponse, Error>> {
        if let Err(e) = self.admit(std::slice::from_ref(&req))? {
            return Ok(Err(e));
        }
        if let Some(e) = self.member_refusal(&req) {
            return Ok(Err(e));
        }
        if self.responded {
            return Ok(Err(Error::InvalidRequest(
                "respond was already called: a strategy answers once per run".into(),
            )));
        }
        self.responded = true;
        Ok(self.respond_once(&req).await)
    }

    async fn trace(&mut self, stage: String, text: String) -> wasmtime::Result<()> {
        self.admit_trace(&stage, &text)?;
        self.trace.push_stage(&stage, &text);
        if let Some(spans) = &mut self.spans {
            spans.stage(&stage, &text);
        }
        if !self.include_trace {
            return Ok(());
        }
        let line = format!("[{stage}] {text}\n");
        match &self.sink {
            Some(sink) => {
                sink.delta(json!({"reasoning_content": line}), None).await;
            }
            None => self.reasoning.push_str(&line),
        }
        Ok(())
    }
}
