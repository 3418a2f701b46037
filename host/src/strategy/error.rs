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
    /// The gateway had no room for the run now (its guests' memory pool
    /// was full): the same request may succeed a moment later.
    #[error("profile {profile:?}: {message}")]
    Busy { profile: String, message: String },
    /// The strategy returned an answer the host will not pass on: `field`
    /// is the part of its `chat-response` that is wrong.
    #[error("profile {profile:?}: the strategy returned an invalid answer: {field}: {message}")]
    InvalidResponse {
        profile: String,
        field: String,
        message: String,
    },
}

/// Longest error message a run's failure carries, in bytes: a strategy
/// chooses its own error texts and may quote its output in them.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `message` within [`MAX_MESSAGE_BYTES`]: its first quarter and its last
/// three (where a crash's last stderr lines are), on character boundaries,
/// with a note of how much was left out between them.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut head = MAX_MESSAGE_BYTES / 4;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - (MAX_MESSAGE_BYTES - MAX_MESSAGE_BYTES / 4);
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … ({} bytes not shown) … {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
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
            | Self::Busy { profile, .. }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_keeps_its_start_and_its_end_with_a_note() {
        assert_eq!(bounded("short".into()), "short");
        let long = format!("START {} END", "é".repeat(MAX_MESSAGE_BYTES));
        let cut = bounded(long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.starts_with("START ") && cut.ends_with(" END"), "{cut}");
        assert!(cut.contains("bytes not shown"), "{cut}");
    }
}
