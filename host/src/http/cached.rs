//! The response cache at the HTTP edge: the plan made before a request
//! runs, a hit answered as JSON or SSE without calling a model, and the fill
//! of a miss (a JSON answer at once, a stream when it ends cleanly). The
//! `x-conclave-cache` and `x-conclave-cache-key` headers say what happened;
//! the outcome records it, so a hit costs nothing in spend logs.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::Either;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::AppState;
use super::error::ApiError;
use super::execute::{Answer, Executed};
use super::tracked::Tracked;
use crate::cache::{Filling, Plan, Request, SubCalls};
use crate::gateway::Gateway;
use crate::openai::{Endpoint, ProxyRequest};
use crate::ops::admission::Admitted;
use crate::ops::{CacheStatus, CallContext, OutcomeHandle};
use crate::strategy::LoadedProfile;

const CACHE: HeaderName = HeaderName::from_static("x-conclave-cache");
const CACHE_KEY: HeaderName = HeaderName::from_static("x-conclave-cache-key");

/// The model a request's key names: the group behind an alias, or the
/// composite profile.
fn keyed_model<'a>(
    gateway: &'a Gateway,
    req: &'a ProxyRequest,
    profile: Option<&LoadedProfile>,
) -> String {
    match profile {
        Some(p) => format!("composite/{}", p.plan.name),
        None => gateway
            .router
            .aliases()
            .get(&req.model)
            .unwrap_or(&req.model)
            .clone(),
    }
}

/// What the cache will do for this request, and for a composite the
/// context its sub-calls carry. Malformed `cache` controls are a 400.
pub(super) fn plan(
    state: &AppState,
    gateway: &Gateway,
    endpoint: Endpoint,
    req: &ProxyRequest,
    ctx: &CallContext,
    profile: Option<&LoadedProfile>,
) -> Result<(Option<Plan>, Option<CallContext>), ApiError> {
    let Some(cache) = state.cache.for_settings(gateway.cache.as_ref()) else {
        return Ok((None, None));
    };
    let model = keyed_model(gateway, req, profile);
    let request = Request {
        endpoint,
        req,
        model: &model,
        composite: profile.is_some(),
        caller: &ctx.request.caller,
        tags: match gateway.router.filters_by_tags() {
            true => ctx.tags.as_deref().unwrap_or_default(),
            false => &[],
        },
        end_user: ctx.end_user.as_deref().or(req.end_user.as_deref()),
    };
    let plan = crate::cache::plan(Some(cache.clone()), &request)
        .map_err(|message| ApiError::invalid(message, Some("cache")))?;
    let sub_ctx = profile
        .and_then(|_| SubCalls::for_request(Some(&cache), &request))
        .map(|sub| {
            let mut ctx = ctx.clone();
            ctx.cache = Some(sub);
            ctx
        });
    Ok((plan, sub_ctx))
}

/// Looks `plan` up; a hit becomes the whole answer, replayed as JSON or as
/// SSE chunks, with the outcome marked as a hit (usage as stored, read by
/// the outcome dispatcher; no cost).
pub(super) async fn lookup(
    state: &AppState,
    gateway: &Gateway,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    admitted: Admitted,
    req: &ProxyRequest,
    plan: &mut Plan,
) -> Result<Executed, Admitted> {
    let Some(entry) = plan.lookup(&gateway.router, ctx).await else {
        return Err(admitted);
    };
    let answer = if req.stream {
        let include_usage = req
            .rest
            .value("stream_options")
            .and_then(|o| o.get("include_usage").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        let replay = plan
            .shape()
            .and_then(|shape| crate::cache::replay_chunks(&entry, shape, include_usage));
        let Some(chunks) = replay else {
            return Err(admitted);
        };
        outcome.update(|o| o.body = entry_body(&entry.body));
        let payloads = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, ApiError>));
        let stream: Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>> =
            Box::pin(payloads);
        Answer::Stream(Tracked::new(
            stream,
            outcome.clone(),
            Box::new(admitted),
            state.stream_cutoff(),
        ))
    } else {
        let body = crate::cache::replay_json(&entry);
        outcome.first_token();
        outcome.update(|o| o.body = vec![body.clone()]);
        outcome.finish(200, None);
        Answer::Json(body)
    };
    // A wildcard's group is named by its pattern, as on a miss: the names
    // a client makes up must not each become a group in metrics and spend.
    let group = match gateway.router.client_group(&req.model) {
        Some((group, _)) => Arc::clone(&group.name),
        None => Arc::from(keyed_model(gateway, req, None)),
    };
    let reports = entry.reports();
    outcome.update(|o| {
        o.cache = CacheStatus::Hit;
        o.usage = reports.usage;
        o.response_model.clone_from(&reports.model);
        o.body_is_json = reports.json;
        o.model_group = Some(Arc::clone(&group));
        o.overhead = Some(ctx.request.started.elapsed());
    });
    let mut headers = HeaderMap::new();
    set_headers(&mut headers, plan, CacheStatus::Hit);
    put(&mut headers, "x-conclave-model-group", &group);
    Ok(Executed { answer, headers })
}

/// The stored body, kept in the outcome so sinks read its usage.
fn entry_body(body: &Bytes) -> Vec<Bytes> {
    vec![body.clone()]
}

/// Stores a JSON answer; sets the outcome's status and the headers.
pub(super) fn fill_json(
    plan: Option<&Plan>,
    body: &Bytes,
    outcome: &OutcomeHandle,
    headers: &mut HeaderMap,
) {
    let Some(plan) = plan else { return };
    let status = if plan.store(body.clone()) {
        CacheStatus::Stored
    } else {
        plan.initial_status()
    };
    outcome.update(|o| o.cache = status);
    set_headers(headers, plan, status);
}

/// Wraps a payload stream so that its answer is stored when it ends
/// cleanly; the headers (sent first) say `miss` or `bypass`.
pub(super) fn fill_stream<S>(
    plan: Option<Plan>,
    payloads: S,
    outcome: &OutcomeHandle,
    headers: &mut HeaderMap,
) -> Either<S, Filling<S>>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static,
{
    let Some(plan) = plan else {
        return Either::Left(payloads);
    };
    let status = plan.initial_status();
    outcome.update(|o| o.cache = status);
    set_headers(headers, &plan, status);
    let (true, Some(shape)) = (plan.writes(), plan.shape()) else {
        return Either::Left(payloads);
    };
    let max = plan.max_entry_bytes();
    let on_complete = {
        let outcome = outcome.clone();
        let plan = Arc::new(plan);
        Box::new(move |body: Bytes| {
            if plan.store(body) {
                outcome.update(|o| o.cache = CacheStatus::Stored);
            }
        })
    };
    Either::Right(Filling::new(payloads, shape, max, on_complete))
}

fn set_headers(headers: &mut HeaderMap, plan: &Plan, status: CacheStatus) {
    headers.insert(CACHE, HeaderValue::from_static(status.label()));
    if let Ok(v) = HeaderValue::from_str(&plan.key) {
        headers.insert(CACHE_KEY, v);
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}
