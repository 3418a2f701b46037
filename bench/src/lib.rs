//! conclave's benchmarks. The runner (`src/main.rs`) builds the release
//! binary, starts a fast mock OpenAI upstream in-process ([`mock`]), drives
//! load with `oha` ([`oha`]) and a small timing client ([`client`]), and
//! writes `latest.json` and `latest.md` ([`report`]). The criterion
//! micro-benchmarks live in `benches/` and share [`body`] with the runner.
//! The optional features (cache hits, full observability) are measured
//! beside the plain run by [`features`].
//! The hostile run (`src/bin/hostile.rs`, [`hostile`]) attacks the release
//! binary while a plain load runs and checks that it survives.

pub mod body;
pub mod client;
pub mod counted;
pub mod features;
pub mod hostile;
pub mod keyed;
pub mod micro;
pub mod mock;
pub mod oha;
pub mod procs;
pub mod report;
pub mod stats;
pub mod suite;
pub mod team;

/// Every fallible step of the runner ends in this error: a message that says
/// what was being done.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result with [`BoxError`].
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// An error with a message.
pub fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}
