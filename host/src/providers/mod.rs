//! Upstream providers: how a deployment's `litellm_params` become a target the
//! router can call, and the errors a call can end in.
//!
//! Almost every provider speaks OpenAI's wire format, so one adapter serves
//! them all from a table of prefixes ([`table`]); `mock/` answers in-process.

pub mod answer_room;
pub mod anthropic;
pub mod exec;
mod http_adapter;
pub use http_adapter::encode_outbound_body;
pub mod mock;
mod mock_answers;
pub mod param_rules;
pub mod redact;
pub mod responses;
pub mod sse;
pub mod table;
mod text_completion;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::config::{EXEC_PROVIDER, Env, LitellmParams, MOCK_PROVIDER};
use crate::openai::{Endpoint, RawFields};

pub use exec::ExecTarget;
pub use http_adapter::HttpTarget;
pub use mock::MockTarget;

/// A stream of SSE `data:` payloads (JSON text), without the `[DONE]` marker.
pub type PayloadStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// What an upstream answered.
pub enum UpstreamReply {
    /// A whole JSON body, forwarded as received.
    Json(Bytes),
    /// Chunks as they arrive.
    Stream(PayloadStream),
}

/// Why an upstream call failed. Messages never contain credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach the upstream: {0}")]
    Connect(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// OpenAI's `error.code` when the upstream sent one.
        code: Option<String>,
        /// OpenAI's `error.param` (the request field at fault) when the
        /// upstream sent one: clients read it to say which field was wrong.
        param: Option<Box<str>>,
        /// From `retry-after` / `retry-after-ms`.
        retry_after: Option<Duration>,
    },
    #[error("the upstream sent a malformed response: {0}")]
    Protocol(String),
    /// A stream still going at `general_settings.max_stream_duration`.
    #[error(
        "the upstream's stream was still going after {0:?}, the longest a stream may last \
         (general_settings.max_stream_duration)"
    )]
    StreamTooLong(Duration),
    /// The request cannot be put in this deployment's API (a part its
    /// provider has no counterpart for): refused before any call, as the
    /// client's matter.
    #[error("the request cannot be sent to this deployment: {message}")]
    Unsendable {
        message: String,
        /// The request field at fault.
        param: Option<Box<str>>,
    },
    #[error("the upstream stream broke off: {0}")]
    StreamBroken(String),
    /// The answers being read at once fill `max_response_bodies_mb` (MiB):
    /// this one is left unread rather than grow the gateway's memory.
    #[error(
        "the gateway is already reading {0} MiB of upstream answers, the most it holds at once \
         (general_settings.max_response_bodies_mb); retry shortly"
    )]
    AnswerRoomFull(usize),
}

impl UpstreamError {
    /// The same error with `clean` applied to every text in it a client
    /// may see: its message, and an upstream's `code` and `param` (used to
    /// take credentials out before an error leaves the provider or the
    /// router).
    pub fn map_text(self, clean: impl Fn(String) -> String) -> Self {
        match self {
            UpstreamError::Status {
                status,
                message,
                code,
                param,
                retry_after,
            } => UpstreamError::Status {
                status,
                message: clean(message),
                code: code.map(&clean),
                param: param.map(|p| clean(p.into()).into_boxed_str()),
                retry_after,
            },
            UpstreamError::Connect(m) => UpstreamError::Connect(clean(m)),
            UpstreamError::Protocol(m) => UpstreamError::Protocol(clean(m)),
            UpstreamError::Unsendable { message, param } => UpstreamError::Unsendable {
                message: clean(message),
                param,
            },
            UpstreamError::StreamBroken(m) => UpstreamError::StreamBroken(clean(m)),
            UpstreamError::Timeout(d) => UpstreamError::Timeout(d),
            UpstreamError::StreamTooLong(d) => UpstreamError::StreamTooLong(d),
            UpstreamError::AnswerRoomFull(mb) => UpstreamError::AnswerRoomFull(mb),
        }
    }
}

/// Timeouts for one call, already resolved from deployment and router settings.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Whole request (non-streaming).
    pub request: Duration,
    /// To the first chunk of a stream, and between chunks.
    pub stream: Duration,
}

/// One upstream call, independent of which deployment serves it.
pub struct UpstreamCall<'a> {
    pub endpoint: Endpoint,
    pub stream: bool,
    /// The client's fields other than `model` and `stream`.
    pub body: &'a RawFields,
    /// Model name from a wildcard match, replacing the deployment's own.
    pub model_override: Option<&'a str>,
    pub timeouts: Timeouts,
    /// Largest upstream body read (`general_settings.max_response_size_mb`).
    pub max_response_bytes: usize,
    /// The memory every answer being read shares (`None`: not counted, for
    /// health checks, whose answers are small and capped).
    pub answer_room: Option<&'a std::sync::Arc<answer_room::AnswerRoom>>,
    /// W3C `traceparent` to send, when the request is traced.
    pub traceparent: Option<&'a str>,
    /// The request asks (LiteLLM's `drop_params`) that fields the model is
    /// known to refuse be left out.
    pub drop_params: bool,
}

/// Upstream body size limit when `max_response_size_mb` is unset: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// ` (its scheme is "ftp")` for a short scheme of letters, else nothing.
fn shown_scheme(api_base: &str) -> String {
    match api_base.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme.len() <= 10
                && scheme.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            format!(" (its scheme is {scheme:?})")
        }
        _ => String::new(),
    }
}

impl TargetError {
    /// The litellm_params key the error is about, for its key path.
    pub fn key(&self) -> &str {
        match self {
            Self::MissingApiBase { .. } | Self::InvalidApiBase { .. } | Self::InvalidUrl { .. } => {
                "api_base"
            }
            Self::InvalidApiKey => "api_key",
            Self::InvalidOrganization => "organization",
            Self::InvalidHeaderName { .. } | Self::InvalidHeaderValue { .. } => "extra_headers",
            Self::InvalidDefault { key, .. } => key,
            Self::UnsupportedProvider { .. } | Self::Settings { .. } => "model",
            Self::MockAnswer { .. } => "mock_response",
        }
    }
}

/// Why a deployment's litellm_params cannot become a [`Target`]. Messages
/// never contain credentials; the router reports them at the entry's key path.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The prefix names no provider conclave speaks.
    #[error(
        "provider {provider:?} is not supported; use openai/<model> with an api_base for any \
         OpenAI-compatible server (supported: {})",
        table::names().collect::<Vec<_>>().join(", ")
    )]
    UnsupportedProvider { provider: String },
    /// The provider has no default api_base and none was given.
    #[error("provider {provider} needs an api_base")]
    MissingApiBase { provider: &'static str },
    /// The api_base is not an http(s) URL. Only its scheme is shown: the
    /// value may be a key put there by mistake, or hold a password.
    #[error(
        "api_base must start with http:// or https://{}",
        shown_scheme(api_base)
    )]
    InvalidApiBase { api_base: String },
    /// An endpoint URL built from the api_base does not parse (the URL
    /// itself is not shown, for the same reason).
    #[error("api_base does not make a valid URL: {reason}")]
    InvalidUrl { reason: String },
    /// The key cannot be sent in a header.
    #[error("api_key contains characters not allowed in a header")]
    InvalidApiKey,
    /// The organization cannot be sent in a header.
    #[error("organization is not a valid header value")]
    InvalidOrganization,
    /// An extra_headers name is not a header name.
    #[error("extra_headers: {name:?} is not a valid header name")]
    InvalidHeaderName { name: String },
    /// An extra_headers value cannot be sent.
    #[error("extra_headers.{name}: not a valid header value")]
    InvalidHeaderValue { name: String },
    /// A request default cannot be written as JSON.
    #[error("{key}: {source}")]
    InvalidDefault {
        key: String,
        source: serde_json::Error,
    },
    /// A mock or exec deployment's own settings are wrong.
    #[error("{message}")]
    Settings {
        provider: &'static str,
        message: String,
    },
    /// Another provider's deployment has a `mock_response` that is not a string.
    #[error("{message}")]
    MockAnswer { message: String },
}

/// Where a deployment sends its requests.
pub enum Target {
    Http(HttpTarget),
    Mock(MockTarget),
    Exec(ExecTarget),
}

impl Target {
    /// Builds the target for `params`; the error says why the deployment
    /// cannot be served (unknown provider, missing api_base, ...).
    /// `drop_params_default` is `litellm_settings.drop_params`, for a
    /// deployment that does not say.
    pub fn from_params(
        params: &LitellmParams,
        env: &Env,
        drop_params_default: bool,
    ) -> Result<Self, TargetError> {
        let (provider, model) = params.provider_and_model();
        if let Some(answer) = params.mock_answer() {
            return MockTarget::from_answer(model, answer)
                .map(Target::Mock)
                .map_err(|message| TargetError::MockAnswer { message });
        }
        match provider {
            MOCK_PROVIDER => MockTarget::from_params(model, params)
                .map(Target::Mock)
                .map_err(|message| TargetError::Settings {
                    provider: MOCK_PROVIDER,
                    message,
                }),
            EXEC_PROVIDER => ExecTarget::from_params(model, params, env)
                .map(Target::Exec)
                .map_err(|message| TargetError::Settings {
                    provider: EXEC_PROVIDER,
                    message,
                }),
            _ => {
                let spec =
                    table::lookup(provider).ok_or_else(|| TargetError::UnsupportedProvider {
                        provider: provider.to_owned(),
                    })?;
                HttpTarget::new(spec, model, params, env, drop_params_default).map(Target::Http)
            }
        }
    }

    /// Sends one call.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        call: UpstreamCall<'_>,
    ) -> Result<UpstreamReply, UpstreamError> {
        match self {
            Self::Http(t) => t.call(client, call).await,
            Self::Mock(t) => t.call(call).await,
            // Boxed: a process's call (its timeout around reading the
            // child's output) is about 9 KB, four times an HTTP call, and
            // inline it would size every attempt's future, which the router
            // moves and boxes on every request whatever its target.
            Self::Exec(t) => Box::pin(t.call(call)).await,
        }
    }

    /// The upstream model name this target sends (before any wildcard override).
    pub fn upstream_model(&self) -> &str {
        match self {
            Self::Http(t) => t.upstream_model(),
            Self::Mock(t) => t.name(),
            Self::Exec(t) => t.name(),
        }
    }

    /// The api_base an HTTP target calls, for listings (callers strip any
    /// credentials a URL may carry); `None` for in-process targets.
    pub fn api_base(&self) -> Option<&str> {
        match self {
            Self::Http(t) => Some(t.base_url()),
            Self::Mock(_) | Self::Exec(_) => None,
        }
    }

    /// Provider name for listings.
    pub fn provider(&self) -> &str {
        match self {
            Self::Http(t) => t.provider(),
            Self::Mock(_) => "mock",
            Self::Exec(_) => "exec",
        }
    }

    /// Whether this deployment can serve `endpoint` at all: Anthropic's API
    /// and exec programs answer chat only.
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ChatCompletions
            || match self {
                Self::Http(t) => !t.speaks_anthropic(),
                Self::Mock(_) => true,
                Self::Exec(_) => false,
            }
    }

    /// Whether a Responses client's request is passed through natively
    /// (an `openai/` deployment serving the Responses API).
    pub fn serves_responses(&self) -> bool {
        matches!(self, Self::Http(t) if t.serves_responses())
    }

    /// Redacts this target's credentials from an upstream message.
    pub fn redact(&self, message: &str) -> String {
        match self {
            Self::Http(t) => t.redact(message),
            Self::Mock(_) | Self::Exec(_) => message.to_owned(),
        }
    }
}

/// Parses `retry-after` / `retry-after-ms` response headers (see
/// [`http_adapter::retry_after_from`]).
pub use http_adapter::{RETRY_AFTER_CAP, retry_after_from};
