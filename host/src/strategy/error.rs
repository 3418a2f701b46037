//! Why a strategy run failed. The HTTP layer maps these to statuses: 504 for
//! the deadline, the guest's own error class where it returned one, else 500
//! (an answer the host refuses to pass on included).

use super::bindings::Error as GuestError;

/// A failed strategy run; every variant names the profile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StrategyError {
    #[error("profile {profile:?}: {message}")]
    InvalidRequest { profile: String, message: String },
    #[error("profile {profile:?}: model not found: {message}")]
    ModelNotFound { profile: String, message: String },
    #[error("profile {profile:?}: a model call failed: {message}")]
    Upstream { profile: String, message: String },
    #[error("profile {profile:?}: the strategy ran past its deadline of {seconds:.1} s")]
    Deadline { profile: String, seconds: f64 },
    #[error("profile {profile:?}: {message}")]
    LimitExceeded { profile: String, message: String },
    #[error("profile {profile:?}: the strategy crashed: {message}")]
    Trap { profile: String, message: String },
    /// The strategy returned an answer the host will not pass on: `field`
    /// is the part of its `chat-response` that is wrong.
    #[error("profile {profile:?}: the strategy returned an invalid answer: {field}: {message}")]
    InvalidResponse {
        profile: String,
        field: String,
        message: String,
    },
}

impl StrategyError {
    /// The profile whose run failed.
    pub fn profile(&self) -> &str {
        match self {
            Self::InvalidRequest { profile, .. }
            | Self::ModelNotFound { profile, .. }
            | Self::Upstream { profile, .. }
            | Self::Deadline { profile, .. }
            | Self::LimitExceeded { profile, .. }
            | Self::Trap { profile, .. }
            | Self::InvalidResponse { profile, .. } => profile,
        }
    }

    /// The error a guest returned from `run`.
    pub fn from_guest(profile: &str, error: GuestError) -> Self {
        let profile = profile.to_owned();
        match error {
            GuestError::InvalidRequest(message) => Self::InvalidRequest { profile, message },
            GuestError::ModelNotFound(message) => Self::ModelNotFound { profile, message },
            GuestError::Upstream(message) => Self::Upstream { profile, message },
            GuestError::Timeout => Self::Upstream {
                profile,
                message: "a model call timed out".into(),
            },
            GuestError::LimitExceeded(message) => Self::LimitExceeded { profile, message },
        }
    }
}
