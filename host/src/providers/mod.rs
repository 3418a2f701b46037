//! Upstream providers: how a deployment's `litellm_params` become a target the
//! router can call, and the errors a call can end in.
//!
//! Almost every provider speaks OpenAI's wire format, so one adapter serves
//! them all from a table of prefixes ([`table`]); `mock/` answers in-process.

pub mod exec;
mod http_adapter;
pub use http_adapter::{encode_outbound_body, is_request_default};
pub mod mock;
pub mod sse;
pub mod table;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::config::{Env, LitellmParams};
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
        /// From `retry-after` / `retry-after-ms`.
        retry_after: Option<Duration>,
    },
    #[error("the upstream sent a malformed response: {0}")]
    Protocol(String),
    #[error("the upstream stream broke off: {0}")]
    StreamBroken(String),
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
    pub fn from_params(params: &LitellmParams, env: &Env) -> Result<Self, String> {
        let (provider, model) = split_provider(params);
        match provider {
            "mock" => return MockTarget::from_params(model, params).map(Target::Mock),
            "exec" => return ExecTarget::from_params(model, params, env).map(Target::Exec),
            _ => {}
        }
        let spec = table::lookup(provider).ok_or_else(|| {
            format!(
                "provider {provider:?} is not supported; use openai/<model> with an api_base for any \
                 OpenAI-compatible server (supported: {})",
                table::names().collect::<Vec<_>>().join(", ")
            )
        })?;
        HttpTarget::new(spec, model, params, env).map(Target::Http)
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
            Self::Exec(t) => t.call(call).await,
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

    /// Provider name for listings.
    pub fn provider(&self) -> &str {
        match self {
            Self::Http(t) => t.provider(),
            Self::Mock(_) => "mock",
            Self::Exec(_) => "exec",
        }
    }

    /// Redacts this target's credentials from an upstream message.
    pub fn redact(&self, message: &str) -> String {
        match self {
            Self::Http(t) => t.redact(message),
            Self::Mock(_) | Self::Exec(_) => message.to_owned(),
        }
    }
}

/// Whether conclave can serve deployments of `provider` (a table entry, `mock` or `exec`).
pub fn is_supported(provider: &str) -> bool {
    provider == "mock" || provider == "exec" || table::lookup(provider).is_some()
}

/// Whether a deployment of `provider` reads `key` from the litellm_params
/// that have no field of their own (request defaults, mock settings).
pub fn reads_extra_param(provider: &str, key: &str) -> bool {
    is_request_default(key)
        || provider == "mock" && mock::MOCK_KEYS.contains(&key)
        || provider == "exec" && exec::EXEC_KEYS.contains(&key)
}

/// Splits `provider/model`; a bare name is taken as OpenAI's, as LiteLLM does.
pub fn split_provider(params: &LitellmParams) -> (&str, &str) {
    match params.model.split_once('/') {
        Some((provider, model)) => (provider, model),
        None => (
            params.custom_llm_provider.as_deref().unwrap_or("openai"),
            params.model.as_str(),
        ),
    }
}

/// Parses `retry-after` (seconds or an HTTP date is not supported: seconds only)
/// and `retry-after-ms` response headers.
pub fn retry_after_from(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}
