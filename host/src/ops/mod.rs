//! The operations layer: what happens around every request, plain or
//! composite, streamed or not. Who is asking ([`Caller`]), the context every
//! model call carries ([`CallContext`]), the checks that may refuse a request
//! before it runs ([`admission`]), and the one [`Outcome`] each request and
//! each composite sub-call leaves behind, delivered to [`sinks`] off the
//! response path.
//!
//! Adding a capability around requests means one new file: an admission check
//! under `admission/` or an outcome sink under `sinks/`, plus one line where
//! the list is assembled.

pub mod admission;
mod attempts;
mod caller;
mod context;
pub mod estimate;
mod meter;
mod outcome;
mod reported;
pub mod sinks;

pub use attempts::{Attempt, AttemptLog, MAX_ATTEMPTS};
pub use caller::Caller;
pub use context::{CallContext, RequestContext, RequestId};
pub use meter::Meter;
pub use outcome::{
    CLIENT_CLOSED, CacheStatus, Logged, Outcome, OutcomeHandle, OutcomeKind, PendingOutcome, Usage,
};
pub use reported::{Choices, Reported, is_object_text, reported_in_body, usage_in_body};
pub use sinks::{OutcomeSink, Outcomes};
