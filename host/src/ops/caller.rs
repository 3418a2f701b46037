//! Who is asking. Resolved once by the auth layer and carried by every model
//! call the request causes, so limits and logs can name the same caller.

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The holder of the master key: may do everything.
    Master,
    /// No key is configured: the gateway is open to anyone who reaches it.
    Open,
}

impl Caller {
    /// A short label for logs and outcomes; never a secret.
    pub fn label(&self) -> &'static str {
        match self {
            Caller::Master => "master",
            Caller::Open => "open",
        }
    }
}
