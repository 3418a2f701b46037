//! What routing can end in, and how upstream failures are classified. The
//! HTTP layer maps these to statuses; the strategy host maps them to WIT errors.

use std::time::Duration;

use crate::providers::UpstreamError;

/// LiteLLM's error classes, which `retry_policy` and fallbacks are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 400 other than the two below: the request itself is wrong.
    BadRequest,
    /// 400 because the prompt is longer than the model's context window.
    ContextWindow,
    /// 400 because the provider's content filter refused.
    ContentPolicy,
    /// 401 / 403.
    Authentication,
    /// 404: the upstream does not know the model.
    NotFound,
    /// 408 or no answer in time.
    Timeout,
    /// 429.
    RateLimit,
    /// 409, 5xx, broken streams, malformed bodies.
    InternalServer,
    /// The upstream could not be reached.
    Connection,
}

impl ErrorClass {
    /// The class as logs name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::ContextWindow => "context_window",
            Self::ContentPolicy => "content_policy",
            Self::Authentication => "authentication",
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::RateLimit => "rate_limit",
            Self::InternalServer => "internal_server",
            Self::Connection => "connection",
        }
    }

    /// Whether a retry could help without changing the request.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::RateLimit | Self::InternalServer | Self::Connection
        )
    }

    /// Whether the failure says something about the deployment's health
    /// (and so counts toward its cooldown), rather than about the request.
    pub fn counts_against_deployment(self) -> bool {
        !matches!(
            self,
            Self::BadRequest | Self::ContextWindow | Self::ContentPolicy
        )
    }
}

/// Classifies an upstream failure.
pub fn classify(error: &UpstreamError) -> ErrorClass {
    match error {
        UpstreamError::Connect(_) => ErrorClass::Connection,
        UpstreamError::Timeout(_) => ErrorClass::Timeout,
        // The gateway's limit on the request: another deployment or model
        // would run as long, so nothing is retried and nobody cools down.
        UpstreamError::StreamTooLong(_) => ErrorClass::BadRequest,
        // The gateway's own memory, full of other answers: no deployment
        // is to blame, and another call would only add to it.
        UpstreamError::AnswerRoomFull(_) => ErrorClass::BadRequest,
        UpstreamError::Protocol(_) | UpstreamError::StreamBroken(_) => ErrorClass::InternalServer,
        UpstreamError::Unsendable { .. } => ErrorClass::BadRequest,
        UpstreamError::Status {
            status,
            message,
            code,
            ..
        } => match status {
            400 | 413 | 422 => {
                let text =
                    format!("{} {}", code.as_deref().unwrap_or(""), message).to_ascii_lowercase();
                if [
                    "context_length",
                    "context length",
                    "context window",
                    "maximum context",
                    "too many tokens",
                    // Anthropic's, Bedrock's and Gemini's wordings, and
                    // OpenAI-compatible servers' without a code.
                    "prompt is too long",
                    "input is too long",
                    "exceeds the maximum number of tokens",
                    "reduce the length of the messages",
                    "exceed context limit",
                    "too many input tokens",
                    "max_new_tokens",
                ]
                .iter()
                .any(|p| text.contains(p))
                {
                    ErrorClass::ContextWindow
                } else if [
                    "content_policy",
                    "content policy",
                    "content_filter",
                    "content management",
                    "safety",
                ]
                .iter()
                .any(|p| text.contains(p))
                {
                    ErrorClass::ContentPolicy
                } else {
                    ErrorClass::BadRequest
                }
            }
            401 | 403 => ErrorClass::Authentication,
            404 => ErrorClass::NotFound,
            408 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimit,
            _ => ErrorClass::InternalServer,
        },
    }
}

/// Why a request could not be routed to a successful answer.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("model {model:?} is not served here; GET /v1/models lists the models")]
    ModelNotFound { model: String },
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error(
        "every deployment of model group {group:?} is cooling down after failures; it recovers in {:.1} s{}",
        retry_in.as_secs_f64(),
        last_error.as_ref().map_or_else(String::new, |e| format!(" (last error: {e})"))
    )]
    GroupCooling {
        group: String,
        retry_in: Duration,
        /// The group's most recent failure, already free of credentials.
        last_error: Option<String>,
    },
    #[error(
        "every deployment of model group {group:?} is at its rpm/tpm limit for this minute; retry in {:.1} s",
        retry_in.as_secs_f64()
    )]
    GroupRateLimited { group: String, retry_in: Duration },
    #[error(
        "no deployment of model group {group:?} may be called: the spend caps they are held to \
         are used up ({spent}){}",
        retry_in.map_or_else(String::new, |r| format!("; the first of them renews in {:.0} s", r.as_secs_f64().ceil()))
    )]
    GroupOverBudget {
        group: String,
        /// Until the first spent cap renews, when one does.
        retry_in: Option<Duration>,
        /// The spent caps, one clause each.
        spent: String,
    },
    #[error(
        "the prompt (about {prompt_tokens} tokens, estimated) is longer than the context window \
         of every deployment of model group {group:?} (the largest takes {largest_window} tokens); \
         router_settings.context_window_fallbacks name where such prompts may go"
    )]
    ContextWindowExceeded {
        group: String,
        prompt_tokens: u64,
        largest_window: u64,
    },
    #[error(
        "no deployment of model group {group:?} serves the request's tags {tags:?} \
         (router_settings.enable_tag_filtering: a deployment's litellm_params.tags must match them)"
    )]
    NoDeploymentForTags { group: String, tags: Vec<String> },
    #[error(
        "model group {group:?}, deployment {deployment:?}: at its max_parallel_requests \
         ({limit} calls in flight) and none ended within {:.1} s; retry shortly",
        waited.as_secs_f64()
    )]
    DeploymentBusy {
        group: String,
        deployment: String,
        limit: u32,
        waited: Duration,
    },
    #[error("model group {group:?}, deployment {deployment:?}: {error}")]
    Upstream {
        group: String,
        deployment: String,
        /// Boxed: the error is large, and `RouteError` travels in every
        /// `Result` of the router.
        error: Box<UpstreamError>,
    },
    #[error("{0}")]
    Unavailable(String),
}

/// Which fallback list applies after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackKind {
    Generic,
    ContextWindow,
    ContentPolicy,
}

impl RouteError {
    /// The error class, for retry policy and fallback choice.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Self::Upstream { error, .. } => Some(classify(error)),
            Self::ContextWindowExceeded { .. } => Some(ErrorClass::ContextWindow),
            _ => None,
        }
    }

    /// Which fallbacks may follow this failure; `None` when the request itself
    /// is at fault and another model would fail the same way.
    pub fn fallback_kind(&self) -> Option<FallbackKind> {
        match self {
            Self::InvalidRequest { .. } => None,
            Self::Upstream { error, .. } => match classify(error) {
                ErrorClass::BadRequest => None,
                ErrorClass::ContextWindow => Some(FallbackKind::ContextWindow),
                ErrorClass::ContentPolicy => Some(FallbackKind::ContentPolicy),
                _ => Some(FallbackKind::Generic),
            },
            Self::ContextWindowExceeded { .. } => Some(FallbackKind::ContextWindow),
            Self::ModelNotFound { .. }
            | Self::NoDeploymentForTags { .. }
            | Self::GroupCooling { .. }
            | Self::GroupRateLimited { .. }
            | Self::GroupOverBudget { .. }
            | Self::DeploymentBusy { .. }
            | Self::Unavailable(_) => Some(FallbackKind::Generic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, message: &str) -> UpstreamError {
        UpstreamError::Status {
            status,
            message: message.into(),
            code: None,
            param: None,
            retry_after: None,
        }
    }

    #[test]
    fn statuses_map_to_litellm_classes() {
        assert_eq!(classify(&status(400, "bad")), ErrorClass::BadRequest);
        assert_eq!(
            classify(&status(
                400,
                "This model's maximum context length is 8192 tokens"
            )),
            ErrorClass::ContextWindow
        );
        for wording in [
            "prompt is too long: 210000 tokens > 200000 maximum",
            "Input is too long for requested model.",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            "Please reduce the length of the messages or completion.",
            "input length and `max_tokens` exceed context limit: 190000 + 20000 > 200000",
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
        ] {
            assert_eq!(
                classify(&status(400, wording)),
                ErrorClass::ContextWindow,
                "{wording}"
            );
        }
        assert_eq!(classify(&status(401, "")), ErrorClass::Authentication);
        assert_eq!(classify(&status(404, "")), ErrorClass::NotFound);
        assert_eq!(classify(&status(408, "")), ErrorClass::Timeout);
        assert_eq!(classify(&status(409, "")), ErrorClass::InternalServer);
        assert_eq!(classify(&status(429, "")), ErrorClass::RateLimit);
        assert_eq!(classify(&status(503, "")), ErrorClass::InternalServer);
    }

    #[test]
    fn a_timeout_names_the_configured_timeout() {
        let error = RouteError::Upstream {
            group: "g".into(),
            deployment: "g.0".into(),
            error: Box::new(UpstreamError::Timeout(Duration::from_millis(1500))),
        };
        assert_eq!(
            error.to_string(),
            "model group \"g\", deployment \"g.0\": the upstream did not answer within 1.5s"
        );
        assert_eq!(error.class(), Some(ErrorClass::Timeout));
    }

    #[test]
    fn only_transient_classes_are_retryable() {
        assert!(ErrorClass::InternalServer.is_retryable());
        assert!(ErrorClass::RateLimit.is_retryable());
        assert!(!ErrorClass::BadRequest.is_retryable());
        assert!(!ErrorClass::Authentication.is_retryable());
        assert!(!ErrorClass::ContextWindow.is_retryable());
    }
}
