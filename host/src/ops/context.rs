//! The per-request context. It is created by the HTTP edge and travels with
//! every model call the request causes: into the router for a plain request
//! and into each `complete()` a strategy makes for a composite one, so a
//! sub-call is governed and recorded like a request of the same caller.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::attempts::AttemptLog;
use super::caller::Caller;
use super::meter::Meter;
use super::sinks::Outcomes;

/// Longest client-supplied request id that is kept as is.
const MAX_CLIENT_ID_LEN: usize = 128;

/// A request's id: the client's `x-request-id` when it is short and printable,
/// otherwise one made here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id: 48 bits of Unix milliseconds, then 48 random bits (24
    /// hex digits in all). Ids made later sort later, so they go to the end
    /// of the spend log's request-id index instead of a random page of it,
    /// and a directory of request logs lists in order.
    pub fn generate() -> Self {
        let ms = u64::try_from(crate::keys::time::to_ms(SystemTime::now())).unwrap_or(0);
        // The low 48 bits of each, 12 hex digits each, written in place so
        // the id is allocated once, as the `Arc` it is kept in.
        let mut id = *b"req-000000000000000000000000";
        let (time, random) = id[4..].split_at_mut(12);
        crate::digest::write_hex(time, &ms.to_be_bytes()[2..]);
        crate::digest::write_hex(random, &fastrand::u64(..).to_be_bytes()[2..]);
        // Hex digits are ASCII, so this never fails.
        Self(Arc::from(std::str::from_utf8(&id).unwrap_or("req-")))
    }

    /// Uses `proposed` when it is a safe id (visible ASCII, bounded length),
    /// else generates one: a client's id ends up in logs and headers.
    pub fn from_client(proposed: Option<&str>) -> Self {
        match proposed {
            Some(id)
                if !id.is_empty()
                    && id.len() <= MAX_CLIENT_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Self(id.into())
            }
            _ => Self::generate(),
        }
    }

    /// The id as shared text, for records that outlive the request.
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is known about a request from the moment it arrives.
#[derive(Debug)]
pub struct RequestContext {
    pub id: RequestId,
    pub caller: Caller,
    /// The matched route, e.g. `/v1/chat/completions`.
    pub route: Arc<str>,
    pub started: Instant,
    pub started_at: SystemTime,
    /// The span every log line of this request is recorded in.
    pub span: tracing::Span,
    /// Where this request's outcomes (and its sub-calls') go.
    pub outcomes: Outcomes,
    /// Prices its model calls, charges them to the caller's limits and
    /// keeps the request's total cost.
    pub meter: Meter,
    /// The request's OpenTelemetry trace, when export is on and the sampler
    /// kept it.
    pub trace: Option<Arc<crate::observe::otel::RequestTrace>>,
    /// Tags from the `x-litellm-tags` header, for spend logs.
    pub tags: Option<Arc<[String]>>,
    /// The end user LiteLLM's customer headers name, ahead of the body's.
    pub end_user: Option<Arc<str>>,
}

impl RequestContext {
    /// A context for a request that starts now.
    pub fn new(id: RequestId, caller: Caller, route: &str, outcomes: Outcomes) -> Self {
        // At debug: an info span per request costs a formatted field set on
        // every request; the access log line names the request instead.
        let span = tracing::debug_span!("request", request_id = %id, route = %route);
        Self {
            id,
            caller,
            route: route.into(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            span,
            outcomes,
            meter: Meter::default(),
            trace: None,
            tags: None,
            end_user: None,
        }
    }
}

/// The context of one model call: the request it belongs to and, for a
/// composite sub-call, the profile that made it.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request: Arc<RequestContext>,
    /// The composite profile that made this call; `None` for a client's own call.
    pub profile: Option<Arc<str>>,
    /// The response cache a composite's sub-calls may use
    /// (`cache_params.composite_subcalls`).
    pub cache: Option<crate::cache::SubCalls>,
    /// Where the router records each upstream call of this model call, for
    /// its outcome; `None` unless request logs or the dashboard are on.
    pub attempts: Option<Arc<AttemptLog>>,
    /// The request's tags (header and body), which its sub-calls' spend
    /// rows carry too; `None` when it has none.
    pub tags: Option<Arc<[String]>>,
    /// The request body's `user` (LiteLLM's end user), which its sub-calls'
    /// spend rows carry too.
    pub end_user: Option<Arc<str>>,
    /// The request's own `timeout` and `num_retries`, which bound a
    /// composite's run and its sub-calls too.
    pub limits: crate::openai::CallLimits,
}

impl CallContext {
    /// The context of the client's own call.
    pub fn client(request: Arc<RequestContext>) -> Self {
        Self {
            tags: request.tags.clone(),
            end_user: request.end_user.clone(),
            limits: crate::openai::CallLimits::default(),
            request,
            profile: None,
            cache: None,
            attempts: crate::observe::attempts_recorded().then(Arc::default),
        }
    }

    /// The context of a call a composite profile makes on the client's behalf.
    pub fn sub_call(&self, profile: &str) -> Self {
        Self {
            request: self.request.clone(),
            profile: Some(profile.into()),
            cache: self.cache.clone(),
            attempts: self.attempts.as_ref().map(|_| Arc::default()),
            tags: self.tags.clone(),
            end_user: self.end_user.clone(),
            limits: self.limits,
        }
    }

    /// The context for one of several model calls made under this one: a
    /// copy with an attempt log of its own when attempts are recorded (so
    /// each call's outcome holds its own even when they run at once), this
    /// context itself otherwise.
    pub fn for_call(&self) -> Cow<'_, Self> {
        match &self.attempts {
            Some(_) => Cow::Owned(Self {
                attempts: Some(Arc::default()),
                ..self.clone()
            }),
            None => Cow::Borrowed(self),
        }
    }

    /// This context with what the request body says for itself and its
    /// sub-calls, when it says anything: its `tags` added to the header's,
    /// its end user, its `timeout` and `num_retries`.
    pub fn with_body_settings(&self, req: &crate::openai::ProxyRequest) -> Option<Self> {
        if req.tags.is_empty()
            && req.end_user.is_none()
            && req.limits == crate::openai::CallLimits::default()
        {
            return None;
        }
        let tags = if req.tags.is_empty() {
            self.tags.clone()
        } else {
            let merged =
                crate::openai::merged_tags(self.tags.as_deref().unwrap_or_default(), &req.tags);
            Some(merged.into())
        };
        Some(Self {
            tags,
            // A customer header names the end user ahead of the body.
            end_user: self.end_user.clone().or_else(|| req.end_user.clone()),
            limits: req.limits,
            ..self.clone()
        })
    }

    /// Whether this call keeps the body it sent, for request logs.
    pub fn is_logged(&self) -> bool {
        self.attempts.is_some() && crate::observe::request_logs_on()
    }

    /// Whether a composite strategy made this call (it may then use the
    /// deployments that exist only for its topology).
    pub fn is_sub_call(&self) -> bool {
        self.profile.is_some()
    }

    /// A context for calls made outside any served request (start-up
    /// validation, benchmarks): its outcomes go nowhere.
    pub fn detached(caller: Caller, label: &str) -> Self {
        Self {
            attempts: None,
            ..Self::client(Arc::new(RequestContext::new(
                RequestId::generate(),
                caller,
                label,
                Outcomes::disabled(),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_24_hex_digits_and_later_ones_sort_later() {
        let first = RequestId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = RequestId::generate();
        for id in [&first, &second] {
            let hex = id.as_str().strip_prefix("req-").unwrap();
            assert_eq!(hex.len(), 24, "{id}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert!(first.as_str() < second.as_str(), "{first} then {second}");
    }
}
