//! Running a request through the pipeline, whatever dialect it arrived in:
//! admission, then the router (plain model group) or the strategy host
//! (composite profile). The answer comes back unframed — a JSON body or a
//! stream of OpenAI chunk payloads — with the `x-conclave-*` headers, so each
//! dialect's routes frame it their own way (OpenAI JSON/SSE here; other APIs
//! translate it first).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::error::{ATTEMPTS, ApiError};
use super::tracked::Tracked;
use super::{AppState, Scope};
use crate::openai::{Endpoint, ProxyRequest};
use crate::ops::admission::{Admitted, Candidate, KeyAdmission, rate_headers};
use crate::ops::{CallContext, OutcomeHandle};
use crate::providers::UpstreamReply;
use crate::router::{RouteMeta, RouteRequest};

/// A stream of OpenAI chunk payloads that records the request's outcome
/// when it ends and holds what must live as long as it does.
pub type PayloadStream = Tracked<Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>>;

/// An answer before framing.
pub enum Answer {
    /// A whole OpenAI JSON body (chat.completion, text_completion, embeddings).
    Json(Bytes),
    /// OpenAI `chat.completion.chunk` (or completion) payloads as they come.
    Stream(PayloadStream),
}

/// What executing a request produced.
pub struct Executed {
    pub answer: Answer,
    /// `x-conclave-*` headers describing where the request went.
    pub headers: HeaderMap,
}

const MODEL_ID: HeaderName = HeaderName::from_static("x-conclave-model-id");
const MODEL_GROUP: HeaderName = HeaderName::from_static("x-conclave-model-group");
const FALLBACK: HeaderName = HeaderName::from_static("x-conclave-fallback");
const OVERHEAD_MS: HeaderName = HeaderName::from_static("x-conclave-overhead-ms");
const STRATEGY: HeaderName = HeaderName::from_static("x-conclave-strategy");
const FINAL_MODEL: HeaderName = HeaderName::from_static("x-conclave-final-model");

/// Room for the headers a plain answer collects (route, cost, cache and a
/// key's rate limits), so that adding them never regrows the map.
const ANSWER_HEADERS: usize = 10;

/// Admits `req` and runs it: the one path every model endpoint shares.
pub async fn execute(
    state: &AppState,
    scope: &Scope,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    endpoint: Endpoint,
    req: &ProxyRequest,
) -> Result<Executed, ApiError> {
    let gateway = &scope.gateway;
    // OpenAI's newer name for the end user counts as one.
    if gateway.enforce_user_param
        && req.end_user.is_none()
        && ctx.end_user.is_none()
        && !req.rest.contains_key("safety_identifier")
    {
        return Err(ApiError::invalid(
            "`user` is required: general_settings.enforce_user_param is on, so every \
             request names its end user",
            Some("user"),
        ));
    }
    // The body's tags join the header's, its end user is named and its
    // timeout and retries hold, for this call and its sub-calls.
    let labelled = ctx.with_body_settings(req);
    let ctx = labelled.as_ref().unwrap_or(ctx);
    outcome.update(|o| {
        o.model.clone_from(&req.model);
        o.stream = req.stream;
        if labelled.is_some() {
            o.tags.clone_from(&ctx.tags);
        }
        if ctx.end_user.is_some() {
            o.end_user.clone_from(&ctx.end_user);
        }
    });
    // A key's alias for the model name stands for the model it names.
    let aliased = super::metered::aliased(ctx, req);
    let req = aliased.as_ref().unwrap_or(req);
    // So does a router alias (`model_group_alias`): limits and spend count
    // the model it names, and access may be given to either name.
    let asked = req.model.as_str();
    let routed = super::metered::router_aliased(gateway, req);
    let req = routed.as_ref().unwrap_or(req);
    let profile = gateway.strategies.profile_for(&req.model).cloned();
    if profile.is_some() {
        ctx.request.meter.count_composite(&req.model);
    }
    if profile.is_some() && endpoint != Endpoint::ChatCompletions {
        return Err(ApiError::invalid(
            format!(
                "model {:?} is a composite profile and serves only chat requests",
                req.model
            ),
            Some("model"),
        ));
    }
    if let Some(refused) = profile
        .as_ref()
        .and_then(|p| (gateway.strategies).settings_refusal(p, req, &ctx.request.caller))
    {
        return Err(refused.into());
    }
    let (mut cache, sub_ctx) =
        super::cached::plan(state, gateway, endpoint, req, ctx, profile.as_deref())?;
    let admitted = state
        .ops
        .admission
        .run(&Candidate {
            ctx,
            model: &req.model,
            asked,
            composite: profile.is_some(),
            fallbacks: req.fallbacks.as_deref().unwrap_or_default(),
            access: &gateway.access_groups,
            end_user_defaults: &gateway.end_user_defaults,
            proxy_budget: gateway.proxy_budget.as_ref(),
        })
        .await
        .map_err(|r| refused(gateway.budget_exceeded_status, r))?;
    // What is left of a key's per-minute limits, in LiteLLM's headers.
    let rate = admitted
        .guard::<KeyAdmission>()
        .map(|k| rate_headers(&k.figures))
        .unwrap_or_default();
    let admitted = match &mut cache {
        Some(plan) => {
            match super::cached::lookup(state, gateway, ctx, outcome, admitted, req, plan).await {
                Ok(hit) => return Ok(with_headers(hit, rate)),
                Err(admitted) => admitted,
            }
        }
        None => admitted,
    };
    let run = Run {
        state,
        gateway,
        ctx: sub_ctx.as_ref().unwrap_or(ctx),
        outcome,
        admitted,
        req,
        asked,
        cache,
    };
    let executed = match profile {
        // Boxed: a strategy run's future is large, and inline it would make
        // every plain request's future as large, copied at each move.
        Some(profile) => Box::pin(composite(run, &profile)).await,
        None => plain(run, endpoint).await,
    };
    executed.map(|e| with_headers(e, rate))
}

/// `executed` with `extra` headers added.
fn with_headers(mut executed: Executed, extra: Vec<(HeaderName, HeaderValue)>) -> Executed {
    for (name, value) in extra {
        executed.headers.insert(name, value);
    }
    executed
}

/// What both kinds of execution need.
struct Run<'a> {
    state: &'a AppState,
    gateway: &'a crate::gateway::Gateway,
    ctx: &'a CallContext,
    outcome: &'a OutcomeHandle,
    admitted: Admitted,
    req: &'a ProxyRequest,
    /// The model name the client asked for, before a `model_group_alias`
    /// named its group: fallbacks listed under it come first.
    asked: &'a str,
    /// What the response cache does with the answer.
    cache: Option<crate::cache::Plan>,
}

impl Run<'_> {
    /// Tracks a payload stream: its outcome, the admission guards (and
    /// `also`, e.g. the running strategy), the shutdown cutoff.
    fn track(
        self,
        payloads: impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static,
        also: Option<Box<dyn std::any::Any + Send>>,
    ) -> PayloadStream {
        Tracked::new(
            Box::pin(payloads),
            self.outcome.clone(),
            Box::new((self.admitted, also)),
            self.state.stream_cutoff(),
        )
    }
}

/// A plain model group: the router picks, retries and falls back.
async fn plain(mut run: Run<'_>, endpoint: Endpoint) -> Result<Executed, ApiError> {
    let (ctx, outcome, req) = (run.ctx, run.outcome, run.req);
    // A stream is priced from its usage chunk: ask for one on the client's
    // behalf (and keep it from the client) when the client did not.
    let with_usage = req
        .stream
        .then(|| super::metered::with_usage(req))
        .flatten();
    let strip_usage = with_usage.is_some();
    let abandoned = super::metered::AbandonCharge::new((ctx, outcome), run.gateway, req);
    // With `enforce_fallback_model_access`, a virtual key falls back only
    // to models it may call.
    let principal = ctx.request.caller.principal();
    let access = &run.gateway.access_groups;
    let may_use = |model: &str| {
        principal.is_none_or(|p| crate::ops::admission::denied_by(p, model, access).is_none())
    };
    let may_fall_back_to: Option<&(dyn Fn(&str) -> bool + Sync)> =
        (run.gateway.enforce_fallback_model_access && principal.is_some()).then_some(&may_use);
    // Boxed: the router's future (retries, the upstream client's request)
    // is about 10 KB, and inline it would be copied with every future that
    // holds it, several times per request.
    let routed = Box::pin(run.gateway.router.route_counted(RouteRequest {
        endpoint,
        // The router resolves the alias itself, and looks fallbacks up
        // under the name asked for first.
        model: run.asked,
        stream: req.stream,
        body: &with_usage.as_ref().unwrap_or(req).rest,
        fallbacks: req.fallbacks.as_deref(),
        disable_fallbacks: req.disable_fallbacks,
        may_fall_back_to,
        limits: req.limits,
        ctx,
    }))
    .await;
    abandoned.answered();
    let routed = match routed {
        Ok(routed) => routed,
        Err(failed) => {
            outcome.update(|o| o.failed_after(failed.attempts, failed.group));
            return Err(ApiError::from(failed.error).after_attempts(failed.attempts));
        }
    };
    let meta = &routed.meta;
    // A client's own fallbacks are part of the key; the config's are not.
    if meta.fallback.is_some()
        && req.fallbacks.is_none()
        && let Some(plan) = run.cache.as_mut()
    {
        plan.forgo_write();
    }
    let overhead = ctx
        .request
        .started
        .elapsed()
        .saturating_sub(meta.upstream_time);
    outcome.update(|o| {
        o.model_group = Some(meta.group.clone());
        o.deployment = Some(meta.deployment.clone());
        o.attempts = meta.attempts;
        o.fallback.clone_from(&meta.fallback);
        o.upstream_time = Some(meta.upstream_time);
        o.overhead = Some(overhead);
    });
    if routed
        .reported
        .as_ref()
        .is_some_and(crate::ops::Reported::unfinished)
        && let Some(plan) = run.cache.as_mut()
    {
        plan.forgo_write();
    }
    let mut headers = HeaderMap::with_capacity(ANSWER_HEADERS);
    route_headers(&mut headers, meta, overhead);
    let answer = match routed.reply {
        UpstreamReply::Json(body) => {
            outcome.first_token();
            outcome.finish(200, None);
            let cost = super::metered::charge_json(
                ctx,
                outcome,
                (charged_model(req, meta), &meta.deployment),
                &body,
                (
                    routed.reported,
                    matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
                        .then_some(&req.rest),
                ),
            );
            super::metered::cost_header(&mut headers, cost);
            super::cached::fill_json(run.cache.as_ref(), &body, outcome, &mut headers);
            Answer::Json(body)
        }
        UpstreamReply::Stream(payloads) => {
            let payloads = payloads.map(|item| item.map_err(ApiError::from));
            // The cache stores the answer with its usage chunk, before the
            // meter keeps that chunk from a client that did not ask for it.
            let payloads =
                super::cached::fill_stream(run.cache.take(), payloads, outcome, &mut headers);
            let payloads = super::metered::Metered::new(
                payloads,
                (ctx, outcome),
                (charged_model(req, meta), &meta.deployment),
                req,
                strip_usage,
            );
            Answer::Stream(run.track(payloads, None))
        }
    };
    Ok(Executed { answer, headers })
}

/// A composite profile: the strategy host runs it and fills in the
/// outcome's usage and trace; the status is set here (JSON) or by the stream.
async fn composite(
    mut run: Run<'_>,
    profile: &std::sync::Arc<crate::strategy::LoadedProfile>,
) -> Result<Executed, ApiError> {
    let (ctx, outcome, req) = (run.ctx, run.outcome, run.req);
    let strategies = &run.gateway.strategies;
    outcome.update(|o| {
        o.profile = Some(profile.plan.name.as_str().into());
        o.model_group = Some(req.model.as_str().into());
    });
    outcome.cost_of_run(&ctx.request);
    let mut headers = HeaderMap::new();
    put(&mut headers, STRATEGY, &profile.plan.name);
    put(&mut headers, MODEL_GROUP, &req.model);
    let answer = if req.stream {
        let (rx, abort) = strategies.execute_stream(profile, &req.model, req, ctx, outcome)?;
        let request = ctx.request.clone();
        let budget_status = run.gateway.budget_exceeded_status;
        let mut payloads = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(move |item| item.map_err(|e| run_error(&request, budget_status, e)));
        // A run that fails before its first event (no room for it, its
        // first call refused) answers with its own status and headers, as
        // a plain stream whose upstream refuses does, not with a 200
        // carrying the error.
        let first = payloads.next().await;
        if let Some(Err(error)) = first {
            return Err(error);
        }
        let payloads = futures_util::stream::iter(first).chain(payloads);
        let payloads =
            super::cached::fill_stream(run.cache.take(), payloads, outcome, &mut headers);
        // The abort guard lives in the stream: a client that goes away stops the run.
        Answer::Stream(run.track(payloads, Some(Box::new(abort))))
    } else {
        let answer = strategies
            .execute_answer(profile, &req.model, req, ctx, outcome)
            .await
            .map_err(|e| run_error(&ctx.request, run.gateway.budget_exceeded_status, e))?;
        drop(run.admitted);
        outcome.first_token();
        outcome.finish(200, None);
        // Streams start before the final model is known: there only the
        // trace names it. A name longer than a request's may be (an
        // upstream's, relayed) is left out: a header that long breaks clients.
        if !answer.final_model.is_empty()
            && answer.final_model.len() <= crate::openai::MAX_MODEL_NAME_BYTES
        {
            put(&mut headers, FINAL_MODEL, &answer.final_model);
        }
        // Each sub-call was priced and charged as it ended.
        let cost = ctx.request.meter.total();
        outcome.update(|o| {
            o.cost = Some(cost);
            // The answer itself, as a plain request's is kept, for the logs.
            o.body = vec![answer.body.clone()];
            o.body_is_json = true;
        });
        super::metered::cost_header(&mut headers, cost);
        super::cached::fill_json(run.cache.as_ref(), &answer.body, outcome, &mut headers);
        Answer::Json(answer.body)
    };
    Ok(Executed { answer, headers })
}

/// The model whose per-model limits a routed call counts against: the
/// requested one, or the group that answered when the client named that
/// group in its own `fallbacks` (admission checked that group's limits).
fn charged_model<'a>(req: &'a ProxyRequest, meta: &'a RouteMeta) -> &'a str {
    meta.fallback
        .as_deref()
        .filter(|served| {
            req.fallbacks
                .as_deref()
                .is_some_and(|own| own.iter().any(|g| g == served))
        })
        .unwrap_or(&req.model)
}

/// A failed composite run's answer: when the caller's own limits refused
/// one of its sub-calls, that refusal (429 with `Retry-After`, or the spent
/// budget), naming the profile; otherwise the run's error. A client then
/// sees why it was stopped, and does not retry a limit as a server fault.
fn run_error(
    request: &crate::ops::RequestContext,
    budget_status: Option<u16>,
    error: crate::strategy::StrategyError,
) -> ApiError {
    let Some(refusal) = request.meter.refusal() else {
        return error.into();
    };
    let mut refusal = refusal.clone();
    refusal.message = format!("profile {:?} stopped: {}", error.profile(), refusal.message);
    refused(budget_status, refusal)
}

/// A refusal as the client sees it: a spent budget answers with
/// `litellm_settings.budget_exceeded_status_code` (`budget_status`) when
/// the config sets one.
fn refused(budget_status: Option<u16>, mut refusal: crate::ops::admission::Refusal) -> ApiError {
    if let Some(status) = budget_status
        && refusal.kind == "budget_exceeded"
    {
        refusal.status = status;
    }
    refusal.into()
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The route's `x-conclave-*` headers; `overhead` is the time spent here
/// rather than upstream.
fn route_headers(h: &mut HeaderMap, meta: &RouteMeta, overhead: Duration) {
    put(h, MODEL_ID, &meta.deployment);
    put(h, MODEL_GROUP, &meta.group);
    if let Some(fallback) = &meta.fallback {
        put(h, FALLBACK, fallback);
    }
    let millis = crate::millis::Millis::fixed(overhead);
    if let Ok(value) = HeaderValue::from_bytes(millis.as_bytes()) {
        h.insert(OVERHEAD_MS, value);
    }
    h.insert(ATTEMPTS, HeaderValue::from(meta.attempts));
}
