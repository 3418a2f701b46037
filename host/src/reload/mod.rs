//! Hot reload and the admin control plane.
//!
//! Every change (the config file, its `.env` or a strategy component edited;
//! SIGHUP; `POST /admin/reload`; a runtime model registered or deleted)
//! builds a whole new [`Gateway`](crate::gateway::Gateway) in the background
//! from the config file and the runtime overlay, then swaps it in
//! atomically. Requests hold the version they started with until they
//! finish; new requests get the new one. A version that fails to parse,
//! compile or validate is refused, and the old one keeps serving. Builds are
//! serialized by one lock that no request ever takes.
//!
//! `control` builds and swaps versions, `watch` notices changed files
//! and signals, `status` reports what is in service.

mod control;
mod status;
mod watch;

pub use control::{AdminError, Control, ControlOptions, build, build_usable};
pub use status::ReloadOutcome;
pub use watch::{Baseline, baseline};
