//! The record a request leaves behind: one per client request and one per
//! model call a composite strategy makes, emitted exactly once when it ends,
//! whether it succeeded, failed, was cut or the client left.
//!
//! A [`PendingOutcome`] is created when the work starts and emits on drop, so
//! no path (early return, panic unwinding, an aborted task, a dropped stream)
//! can lose or double the record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::attempts::{Attempt, AttemptLog};
use super::caller::Caller;
use super::context::{CallContext, RequestId};
use super::reported::{reported_in_body, usage_in_body};
use super::sinks::{CompositeRun, Outcomes};

/// Status recorded when a request ended because its client went away
/// (nginx's convention, which log readers know).
pub const CLIENT_CLOSED: u16 = 499;

/// Whether this outcome is a client's request or a strategy's model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Request,
    /// A model call a composite profile made; its parent is the client's request.
    SubCall,
}

/// What the response cache did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// No cache is configured or the request is not cacheable.
    #[default]
    None,
    /// Answered from the cache: no model was called, it costs nothing.
    Hit,
    /// Looked up, not found (or not fresh enough), and not stored.
    Miss,
    /// The request asked the cache to stay out (`no-cache` and `no-store`,
    /// or `default_off` without `use-cache`).
    Bypass,
    /// Not answered from the cache; the answer was stored.
    Stored,
}

impl CacheStatus {
    /// The status as logs, metrics and the `x-conclave-cache` header name it.
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::None => "none",
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Stored => "stored",
        }
    }
}

/// Token counts, when the answer reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One finished request or model call.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub request_id: RequestId,
    /// For a sub-call: the client's request it was made for.
    pub parent_request_id: Option<RequestId>,
    pub caller: Caller,
    pub route: Arc<str>,
    /// The model name the client (or strategy) asked for.
    pub model: String,
    /// The model group that answered (after aliases and fallbacks).
    pub model_group: Option<Arc<str>>,
    pub deployment: Option<Arc<str>>,
    /// The composite profile that ran this request, or made this sub-call.
    pub profile: Option<Arc<str>>,
    pub stream: bool,
    /// HTTP status of the answer; [`CLIENT_CLOSED`] when the client left.
    pub status: u16,
    /// OpenAI error `code` or `type` when the request failed.
    pub error: Option<String>,
    pub usage: Option<Usage>,
    /// The model the upstream named in a JSON answer, when the response
    /// path read it (so sinks need not parse the answer again).
    pub response_model: Option<String>,
    /// The answer's own id (`chatcmpl-...`, a stream's chunks' id), which
    /// LiteLLM's spend logs are looked up by.
    pub response_id: Option<String>,
    /// The request path read the whole JSON answer already (its usage,
    /// model and id are set as far as it has them), so the dispatcher need
    /// not look in it again.
    pub answer_read: bool,
    /// What the call cost in USD, once priced; a composite request's is the
    /// sum of its sub-calls'.
    pub cost: Option<f64>,
    /// The model whose per-model limits the cost was charged to, when not
    /// `model` (after a key's or the router's alias, or a client's own
    /// fallback), so the stored per-model spend matches the counters.
    pub budget_model: Option<String>,
    pub started_at: SystemTime,
    pub latency: Duration,
    /// Time to the first streamed chunk (or to the whole answer).
    pub time_to_first_token: Option<Duration>,
    /// Upstream calls made, counting retries and fallbacks.
    pub attempts: u32,
    /// Upstream time of the successful call (to the first chunk for a
    /// stream), when the router answered.
    pub upstream_time: Option<Duration>,
    /// Time the gateway itself spent before the answer started: time to the
    /// response head less the upstream time. Set for plain client requests.
    pub overhead: Option<Duration>,
    /// The fallback group that answered, when not the requested one.
    pub fallback: Option<Arc<str>>,
    /// The request's tags (`x-litellm-tags`, `tags`, `metadata.tags`).
    pub tags: Option<Arc<[String]>>,
    /// The request's `user` (LiteLLM's end user).
    pub end_user: Option<Arc<str>>,
    pub cache: CacheStatus,
    /// The JSON answer (or a stream's last chunks), kept as cheap references
    /// so sinks read usage off the response path instead of parsing it on it.
    pub body: Vec<Bytes>,
    /// Whether the request path read `body` (one JSON answer) as JSON, so
    /// logs embed it without checking it a second time.
    pub body_is_json: bool,
    /// The trace and log settings of a composite run.
    pub composite: Option<Arc<CompositeRun>>,
    /// The client request's OpenTelemetry trace (its server span is built
    /// from this outcome); `None` for sub-calls and untraced requests.
    pub trace: Option<Arc<crate::observe::otel::RequestTrace>>,
    /// What only request logs show; `None` unless they are on.
    pub logged: Option<Box<Logged>>,
}

/// What request logs show beyond the other sinks' fields: the body that was
/// sent and each upstream call. Recorded only while request logs are on.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    /// The request body as the client sent it (for a sub-call, as the
    /// strategy sent it): a reference to the bytes read, credentials still
    /// in it (the request log redacts them when it writes).
    pub request_body: Option<Bytes>,
    /// Whether the request path read `request_body` as JSON, so that logs
    /// embed it as it is instead of checking it a second time.
    pub request_body_is_json: bool,
    /// `request_body` with its credentials redacted, made by the first sink
    /// that needs it (the request log and the dashboard both do).
    pub redacted_request_body: std::sync::OnceLock<Bytes>,
    /// Each upstream call, in order, across retries and fallbacks.
    pub attempts: Vec<Attempt>,
    /// Upstream calls made past the kept ones.
    pub attempts_omitted: u32,
}

impl Outcome {
    /// Whether the request was refused before its caller was known (a
    /// wrong or missing key, the gateway busy): the access log and metrics
    /// count it, and the sinks that keep requests (request logs, the
    /// dashboard) leave it out, so a flood of wrong keys cannot push out
    /// the requests that were served.
    pub fn refused_before_auth(&self) -> bool {
        matches!(self.caller, Caller::Unknown)
    }

    /// Usage as reported, or read from the kept JSON answer.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
            .or_else(|| self.body.iter().rev().find_map(|b| usage_in_body(b)))
    }

    /// Fills in the usage, model and id the kept answer reports when the
    /// request path did not read them (a stream, a cache hit, a
    /// semantic-cache embedding call), reading each kept body at most once,
    /// so that no sink parses the answer again. Called by the outcome
    /// dispatcher, off the response path.
    pub fn read_kept_answer(&mut self) {
        if self.has_read_answer() {
            return;
        }
        let single = self.body.len() == 1;
        for body in self.body.iter().rev() {
            let Some(reported) = reported_in_body(body) else {
                continue;
            };
            self.body_is_json |= single;
            if self.usage.is_none() {
                self.usage = reported.any_usage();
            }
            if self.response_model.is_none() {
                self.response_model = reported.model.filter(|m| !m.is_empty());
            }
            if self.response_id.is_none() {
                self.response_id = reported.id.filter(|id| !id.is_empty());
            }
            if self.has_read_answer() {
                return;
            }
        }
    }

    fn has_read_answer(&self) -> bool {
        self.answer_read
            || (self.usage.is_some() && self.response_model.is_some() && self.response_id.is_some())
    }

    /// Notes what a model call that failed had done: one that reached a
    /// model (`attempts` upstream calls, the last in `group`) leaves a
    /// spend-log row saying how it failed.
    pub fn failed_after(&mut self, attempts: u32, group: Option<Arc<str>>) {
        if attempts > 0 {
            self.attempts = attempts;
            self.model_group = group;
        }
    }

    /// Keeps the request body for request logs, when they are on, saying
    /// whether it was read as JSON.
    pub fn keep_request_body(&mut self, body: Bytes, is_json: bool) {
        if let Some(logged) = &mut self.logged {
            logged.request_body = Some(body);
            logged.request_body_is_json = is_json;
        }
    }
}

/// An outcome under way: filled in as the work goes, emitted once on drop.
/// Until [`PendingOutcome::finish`] is called the status is [`CLIENT_CLOSED`]:
/// work that is dropped unfinished was abandoned by its client.
pub struct PendingOutcome {
    outcome: Option<Outcome>,
    started: Instant,
    outcomes: Outcomes,
    /// The call's attempt log, taken into the outcome when it is emitted.
    attempts: Option<Arc<AttemptLog>>,
    /// A composite request's context, whose meter's total is its cost when
    /// it is emitted, however the run ended.
    run_cost: Option<Arc<super::RequestContext>>,
}

impl PendingOutcome {
    /// An outcome for the client's request described by `ctx`.
    pub fn request(ctx: &CallContext, model: &str, stream: bool) -> Self {
        Self::start(ctx, OutcomeKind::Request, model, stream)
    }

    /// An outcome for a model call a composite strategy makes under `ctx`.
    pub fn sub_call(ctx: &CallContext, model: &str, stream: bool) -> Self {
        Self::start(ctx, OutcomeKind::SubCall, model, stream)
    }

    fn start(ctx: &CallContext, kind: OutcomeKind, model: &str, stream: bool) -> Self {
        let request = &ctx.request;
        let (request_id, parent_request_id) = match kind {
            OutcomeKind::Request => (request.id.clone(), None),
            OutcomeKind::SubCall => (RequestId::generate(), Some(request.id.clone())),
        };
        let started = match kind {
            OutcomeKind::Request => request.started,
            OutcomeKind::SubCall => Instant::now(),
        };
        Self {
            outcome: Some(Outcome {
                kind,
                request_id,
                parent_request_id,
                caller: request.caller.clone(),
                route: request.route.clone(),
                model: model.to_owned(),
                model_group: None,
                deployment: None,
                profile: ctx.profile.clone(),
                stream,
                status: CLIENT_CLOSED,
                error: None,
                usage: None,
                response_model: None,
                response_id: None,
                answer_read: false,
                cost: None,
                budget_model: None,
                started_at: SystemTime::now() - started.elapsed(),
                latency: Duration::ZERO,
                time_to_first_token: None,
                attempts: 0,
                upstream_time: None,
                overhead: None,
                fallback: None,
                tags: ctx.tags.clone(),
                end_user: ctx.end_user.clone(),
                cache: CacheStatus::None,
                body: Vec::new(),
                body_is_json: false,
                composite: None,
                trace: match kind {
                    OutcomeKind::Request => request.trace.clone(),
                    OutcomeKind::SubCall => None,
                },
                logged: ctx.attempts.as_ref().map(|_| Box::default()),
            }),
            started,
            outcomes: request.outcomes.clone(),
            attempts: ctx.attempts.clone(),
            run_cost: None,
        }
    }

    /// The record being filled in.
    pub fn get_mut(&mut self) -> Option<&mut Outcome> {
        self.outcome.as_mut()
    }

    /// Sets the final status (and the error code, for a failure).
    pub fn finish(&mut self, status: u16, error: Option<&str>) {
        if let Some(o) = &mut self.outcome {
            o.status = status;
            o.error = error.map(str::to_owned);
        }
    }

    /// Marks the time the first token (or the whole answer) arrived.
    pub fn first_token(&mut self) {
        let elapsed = self.started.elapsed();
        if let Some(o) = &mut self.outcome
            && o.time_to_first_token.is_none()
        {
            o.time_to_first_token = Some(elapsed);
        }
    }

    /// Emits the outcome now rather than at drop.
    pub fn emit(mut self) {
        self.send();
    }

    fn send(&mut self) {
        if let Some(mut outcome) = self.outcome.take() {
            outcome.latency = self.started.elapsed();
            if let Some(request) = &self.run_cost {
                outcome.cost = Some(request.meter.total());
            }
            if let (Some(log), Some(logged)) = (&self.attempts, &mut outcome.logged) {
                (logged.attempts, logged.attempts_omitted) = log.take();
                // A request the client left while the router was retrying
                // (or waiting on an attempt) never told its outcome how far
                // it got: the log did.
                let begun = log.begun();
                if begun > outcome.attempts {
                    outcome.attempts = begun;
                    if outcome.model_group.is_none() {
                        outcome.model_group = logged.attempts.last().map(|a| a.group.clone());
                    }
                }
            }
            self.outcomes.emit(outcome);
        }
    }
}

/// A request's outcome shared by the parts of the gateway that each know a
/// piece of it: the HTTP edge (status, time to first token) and, for a
/// composite stream, the task running the strategy (usage, trace). It is
/// emitted once, when the last holder lets go.
#[derive(Clone)]
pub struct OutcomeHandle(Arc<Mutex<PendingOutcome>>);

impl OutcomeHandle {
    /// The outcome of the client's request described by `ctx`.
    pub fn request(ctx: &CallContext) -> Self {
        Self(Arc::new(Mutex::new(PendingOutcome::request(
            ctx, "", false,
        ))))
    }

    /// Makes a composite request's cost, when it is emitted, what its
    /// sub-calls were charged in all (a run that failed or was left too).
    pub fn cost_of_run(&self, request: &Arc<super::RequestContext>) {
        if let Ok(mut pending) = self.0.lock() {
            pending.run_cost = Some(request.clone());
        }
    }

    /// Changes the record under the lock.
    pub fn update(&self, change: impl FnOnce(&mut Outcome)) {
        if let Ok(mut pending) = self.0.lock()
            && let Some(outcome) = pending.get_mut()
        {
            change(outcome);
        }
    }

    /// Sets the final status (and the error code, for a failure).
    pub fn finish(&self, status: u16, error: Option<&str>) {
        if let Ok(mut pending) = self.0.lock() {
            pending.finish(status, error);
        }
    }

    /// Marks the time the first token (or the whole answer) arrived.
    pub fn first_token(&self) {
        if let Ok(mut pending) = self.0.lock() {
            pending.first_token();
        }
    }
}

impl Drop for PendingOutcome {
    fn drop(&mut self) {
        self.send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Caller;

    /// A fresh request outcome keeping `bodies` as its answer.
    fn kept(bodies: &[&'static str]) -> Outcome {
        let ctx = CallContext::detached(Caller::Master, "/v1/chat/completions");
        let mut pending = PendingOutcome::request(&ctx, "m", false);
        let mut outcome = pending.outcome.take().unwrap();
        outcome.body = bodies
            .iter()
            .map(|b| Bytes::from_static(b.as_bytes()))
            .collect();
        outcome
    }

    const ANSWER: &str =
        r#"{"model":"m-2024","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;

    #[test]
    fn a_kept_answer_gives_its_usage_and_model_once_read() {
        let mut o = kept(&[ANSWER]);
        o.read_kept_answer();
        assert_eq!(
            o.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((3, 4))
        );
        assert_eq!(o.response_model.as_deref(), Some("m-2024"));
        assert!(o.body_is_json);
    }

    #[test]
    fn what_the_request_path_set_is_kept() {
        let mut o = kept(&[ANSWER]);
        o.usage = Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        });
        o.read_kept_answer();
        assert_eq!(o.usage.map(|u| u.prompt_tokens), Some(1));
        assert_eq!(o.response_model.as_deref(), Some("m-2024"));
    }

    #[test]
    fn chunks_are_read_from_the_last_and_never_marked_one_json_answer() {
        let mut o = kept(&[
            r#"{"model":"first","choices":[{"delta":{}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
            "not json",
        ]);
        o.read_kept_answer();
        assert_eq!(o.usage.map(|u| u.completion_tokens), Some(6));
        assert_eq!(o.response_model.as_deref(), Some("first"));
        assert!(!o.body_is_json);
    }
}
