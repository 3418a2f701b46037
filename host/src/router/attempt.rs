//! One call to one deployment: in-flight accounting, latency and usage
//! samples, and for streams, waiting for the first chunk with some of the
//! answer ([`super::preamble`]) so that a stream that fails before it can
//! still be retried invisibly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deployment::{CallSlot, Deployment};
use super::{RouteRequest, Router};
use crate::config::GeneralSettings;
use crate::observe::otel::{AttemptSpan, AttemptTarget};
use crate::ops::Reported;
use crate::providers::{
    DEFAULT_MAX_RESPONSE_BYTES, Timeouts, UpstreamCall, UpstreamError, UpstreamReply, sse,
};
use futures_util::{StreamExt, stream};

/// A successful call.
pub(super) struct Answer {
    pub reply: UpstreamReply,
    /// What a JSON answer says about itself, read once here.
    pub reported: Option<Reported>,
    /// Time from sending to the whole body (or first chunk of a stream).
    pub upstream_time: Duration,
}

/// One call to `deployment`, holding `slot` (its call slot, when it limits
/// its calls in flight) until the answer or its stream ends.
pub(super) async fn attempt(
    router: &Router,
    deployment: &Arc<Deployment>,
    req: &RouteRequest<'_>,
    capture: Option<&str>,
    slot: Option<CallSlot>,
) -> Result<Answer, UpstreamError> {
    let guard = deployment.enter(slot);
    let minute = router.minute();
    deployment.with_health(|h| h.record_request(minute));
    let model_override = capture.and_then(|c| {
        let m = deployment.target.upstream_model();
        m.contains('*').then(|| m.replace('*', c))
    });
    let mut span = AttemptSpan::start(
        req.ctx,
        AttemptTarget {
            endpoint: req.endpoint,
            provider: deployment.target.provider(),
            model: model_override
                .as_deref()
                .unwrap_or(deployment.target.upstream_model()),
            deployment: &deployment.id,
            group: &deployment.group,
        },
        req.body,
    );
    let call = UpstreamCall {
        endpoint: req.endpoint,
        stream: req.stream,
        body: req.body,
        model_override: model_override.as_deref(),
        timeouts: shortened(deployment.timeouts, req.limits.timeout),
        max_response_bytes: router.max_response_bytes,
        answer_room: Some(&router.answer_room),
        traceparent: span.as_ref().map(AttemptSpan::traceparent),
        drop_params: req.limits.drop_params,
    };
    let started = Instant::now();
    let reply = deployment.target.call(&router.client, call);
    let reply = if req.stream {
        // Boxed: its timer would otherwise grow every routed call's future.
        Box::pin(super::stream_lifetime::started_within(
            reply,
            started,
            router.max_stream_duration,
        ))
        .await
    } else {
        reply.await
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            span_failed(span, deployment, &e);
            return Err(e);
        }
    };
    match reply {
        UpstreamReply::Json(body) => {
            let upstream_time = started.elapsed();
            // HTML, cut JSON, text or invalid UTF-8 with a 200: the client
            // could not read it. (Skipping a string while reading the report
            // does not check its UTF-8, hence the check of its own.)
            let reported = std::str::from_utf8(&body)
                .map_err(|_| "not UTF-8")
                .and_then(|text| answer_report(text));
            let reported = match reported {
                Ok(reported) => reported,
                Err(why) => {
                    let e = UpstreamError::Protocol(format!(
                        "the upstream answered with a body that is {why}"
                    ));
                    span_failed(span, deployment, &e);
                    return Err(e);
                }
            };
            if reported.error
                && let Some(error) = sse::answer_error(&body)
            {
                let error = redact(deployment, error);
                span_failed(span, deployment, &error);
                return Err(error);
            }
            if let Some(wanted) = reported.missing_answer(req.endpoint) {
                let e = UpstreamError::Protocol(format!(
                    "the upstream answered 200 with a JSON object without {wanted}"
                ));
                span_failed(span, deployment, &e);
                return Err(e);
            }
            let reported = Some(reported);
            deployment.record_latency(upstream_time);
            if deployment.tpm.is_some()
                && let Some(usage) = reported.as_ref().and_then(Reported::any_usage)
            {
                let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
                deployment.with_health(|h| h.record_tokens(minute, tokens));
            }
            drop(guard);
            if let Some(span) = span {
                span.answered(&body, reported.as_ref());
            }
            Ok(Answer {
                reply: UpstreamReply::Json(body),
                reported,
                upstream_time,
            })
        }
        UpstreamReply::Stream(chunks) => {
            let mut chunks =
                super::stream_lifetime::bounded(chunks, started, router.max_stream_duration);
            // Up to the first payload with some of the answer: a failure
            // before it has given the client nothing, and may be retried.
            let (mut head, mut held) = (Vec::new(), 0);
            loop {
                match chunks.next().await {
                    // Ended with nothing but openings: no content, no
                    // finish reason, no usage. A client would take that
                    // for an empty answer; it is a broken one.
                    None => {
                        let e = UpstreamError::Protocol(
                            "the upstream's stream ended without any of an answer \
                             (no content, finish reason or usage)"
                                .into(),
                        );
                        span_failed(span, deployment, &e);
                        return Err(e);
                    }
                    Some(Err(e)) => {
                        span_failed(span, deployment, &e);
                        return Err(e);
                    }
                    Some(Ok(payload)) => {
                        // Providers that do not decode SSE themselves may
                        // still pass an error object on as a chunk.
                        if let Some(error) = sse::stream_error(&payload) {
                            let error = redact(deployment, error);
                            span_failed(span, deployment, &error);
                            return Err(error);
                        }
                        if let Some(span) = &mut span {
                            span.keep(&payload);
                        }
                        held += payload.len();
                        let opening = super::preamble::may_hold(head.len(), held)
                            && super::preamble::is_preamble(&payload);
                        head.push(payload);
                        if !opening {
                            break;
                        }
                    }
                }
            }
            let upstream_time = started.elapsed();
            deployment.record_latency(upstream_time);
            let head = stream::iter(head.into_iter().map(Ok));
            // The guard lives as long as the stream, so least-busy sees it;
            // so does the attempt's span, which ends with the stream.
            let failing = deployment.clone();
            let own_timeout = req
                .limits
                .timeout
                .is_some_and(|asked| asked < deployment.timeouts.stream);
            let rest = chunks.map(move |item| {
                let _keep = &guard;
                if let Some(span) = &mut span {
                    match &item {
                        Ok(payload) => span.keep(payload),
                        Err(e) => span.stream_failed(e, &e.to_string()),
                    }
                }
                if let Err(e) = &item {
                    broke_off(&failing, e, own_timeout);
                }
                item
            });
            Ok(Answer {
                reply: UpstreamReply::Stream(Box::pin(head.chain(rest))),
                reported: None,
                upstream_time,
            })
        }
    }
}

/// The deployment's timeouts, each cut to the request's own `timeout`.
fn shortened(configured: Timeouts, requested: Option<Duration>) -> Timeouts {
    match requested {
        None => configured,
        Some(t) => Timeouts {
            request: configured.request.min(t),
            stream: configured.stream.min(t),
        },
    }
}

/// Whether `error` is the request's own deadline running out: a timeout
/// while the request's `timeout` was shorter than the deployment's. It
/// says nothing about the deployment, so it neither counts towards a
/// cooldown nor is a latency sample: otherwise any client could cool a
/// whole group down, for every caller and every instance sharing its
/// state, by asking for a few milliseconds.
pub(super) fn own_deadline(
    deployment: &Deployment,
    req: &RouteRequest<'_>,
    error: &UpstreamError,
) -> bool {
    let configured = if req.stream {
        deployment.timeouts.stream
    } else {
        deployment.timeouts.request
    };
    matches!(error, UpstreamError::Timeout(_))
        && req.limits.timeout.is_some_and(|asked| asked < configured)
}

/// Notes a stream that broke off after its first chunk as a failed call of
/// its deployment (in its health and metrics, as a failure before the
/// first chunk is): the gateway's own bounds on it excepted, and the
/// request's own shorter timeout (`own_timeout`).
fn broke_off(deployment: &Deployment, error: &UpstreamError, own_timeout: bool) {
    let own = match error {
        UpstreamError::StreamTooLong(_) | UpstreamError::AnswerRoomFull(_) => true,
        UpstreamError::Timeout(_) => own_timeout,
        _ => false,
    };
    if own {
        return;
    }
    let message = deployment.target.redact(&error.to_string());
    deployment.with_checks(|c| c.record_call_failure(message));
}

/// What a successful JSON answer says about itself, or why it is no answer
/// a client could read: empty (a 204, say), not a JSON object (HTML, cut
/// JSON, text) or nested deeper than clients' parsers go.
fn answer_report(text: &str) -> Result<Reported, &'static str> {
    if text.trim().is_empty() {
        return Err("empty");
    }
    let reported = Some(text)
        .filter(|text| crate::ops::is_object_text(text))
        .and_then(|text| serde_json::from_str::<Reported>(text).ok())
        .ok_or("not a JSON object")?;
    if crate::openai::nested_too_deep(text) {
        return Err("JSON nested deeper than 128 levels, which clients cannot read");
    }
    Ok(reported)
}

/// Ends a traced attempt's span with `error`, its message without credentials.
fn span_failed(span: Option<AttemptSpan>, deployment: &Deployment, error: &UpstreamError) {
    if let Some(span) = span {
        span.failed(error, &deployment.target.redact(&error.to_string()));
    }
}

/// `error` without the deployment's credentials in its message.
fn redact(deployment: &Deployment, error: UpstreamError) -> UpstreamError {
    error.map_text(|m| deployment.target.redact(&m))
}

/// The largest upstream body a call reads, from
/// `general_settings.max_response_size_mb` (64 MiB when unset; the loader
/// refuses values that are not positive numbers).
/// The room answers being read share, `max_response_bodies_mb` MiB: the
/// previous router's when its size is the same, so that answers read
/// across a reload count in one room.
pub(super) fn answer_room(
    settings: &GeneralSettings,
    previous: Option<&Router>,
) -> Arc<crate::providers::answer_room::AnswerRoom> {
    use crate::providers::answer_room::{AnswerRoom, DEFAULT_MAX_ANSWERS_MB};
    let room = AnswerRoom::of_mb(
        settings
            .max_response_bodies_mb
            .unwrap_or(DEFAULT_MAX_ANSWERS_MB),
    );
    match previous {
        Some(p) if p.answer_room.limit_mb() == room.limit_mb() => p.answer_room.clone(),
        _ => Arc::new(room),
    }
}

pub(super) fn response_limit(settings: &GeneralSettings) -> usize {
    settings
        .max_response_size_mb
        .filter(|mb| mb.is_finite() && *mb > 0.0)
        .map_or(DEFAULT_MAX_RESPONSE_BYTES, |mb| {
            (mb * 1024.0 * 1024.0).min(usize::MAX as f64) as usize
        })
}
