//! Who is asking. Resolved once by the auth layer and carried by every model
//! call the request causes, so limits and logs can name the same caller.

use std::sync::Arc;

use crate::keys::Principal;

/// The identity behind a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The holder of the master key: may do everything.
    Master,
    /// No key is configured: the gateway is open to anyone who reaches it.
    Open,
    /// A virtual key, with its user and team as the store last read them:
    /// its limits and model lists govern every call the request causes.
    Key(Arc<Principal>),
    /// Not known: the request was refused before a key was accepted (a
    /// wrong or missing key, or the gateway at its limit of requests). Its
    /// outcome still reaches the access log and metrics.
    Unknown,
}

impl PartialEq for Caller {
    /// Two key callers are the same caller when they present the same key;
    /// an unknown caller is the same as none.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Caller::Master, Caller::Master) | (Caller::Open, Caller::Open) => true,
            (Caller::Key(a), Caller::Key(b)) => a.key.token_hash == b.key.token_hash,
            _ => false,
        }
    }
}

impl Eq for Caller {}

impl Caller {
    /// A short label for logs and outcomes; never a secret (a key shows as
    /// its `sk-...abcd` name).
    pub fn label(&self) -> &str {
        match self {
            Caller::Master => "master",
            Caller::Open => "open",
            Caller::Key(p) => &p.key.key_name,
            Caller::Unknown => "unknown",
        }
    }

    /// [`Self::label`], borrowed for the gateway's own labels and copied for
    /// a key's name, for records that outlive the caller.
    pub fn label_cow(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Caller::Master => "master".into(),
            Caller::Open => "open".into(),
            Caller::Key(p) => p.key.key_name.clone().into(),
            Caller::Unknown => "unknown".into(),
        }
    }

    /// The virtual key's records, when the caller used one.
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Caller::Key(p) => Some(p),
            Caller::Master | Caller::Open | Caller::Unknown => None,
        }
    }

    /// The SHA-256 (hex) of the caller's virtual key: its unique id.
    pub fn token_hash(&self) -> Option<&str> {
        self.principal().map(|p| p.key.token_hash.as_str())
    }

    /// The user the caller's key belongs to.
    pub fn user_id(&self) -> Option<&str> {
        self.principal().and_then(|p| p.key.user_id.as_deref())
    }

    /// The team the caller's key belongs to.
    pub fn team_id(&self) -> Option<&str> {
        self.principal().and_then(|p| p.key.team_id.as_deref())
    }
}
