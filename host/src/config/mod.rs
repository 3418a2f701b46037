//! Configuration: the LiteLLM-style YAML file, resolved into typed settings.
//!
//! Loading happens in three passes so every problem can name the file and the
//! key path: the YAML is parsed into a tree, environment references in it are
//! substituted, and the tree is deserialized into [`Config`] while every key
//! conclave does not use is collected as a warning rather than an error.

mod cache;
pub mod callbacks;
mod credentials;
mod dotenv;
mod env;
mod guardrails;
mod include;
pub(crate) mod lenient;
mod litellm_only;
mod load;
mod near_miss;
mod params;
mod repeated;
mod schema;
mod seconds;
mod timezone;
mod yaml;

pub use cache::{CacheMode, CacheParams, CacheScope, CacheType, CallType};
pub use env::Env;
pub use include::Origins;
pub use load::{
    ConfigError, LoadedConfig, MASTER_KEY_VARIABLES, MAX_RETRY_AFTER_SECS, Problem,
    default_config_path, load, load_str,
};
pub use near_miss::{param_hint, provider_hint};
pub use params::{
    ENVIRONMENT_VARIABLE, ENVIRONMENTS, EXEC_PROVIDER, EXTRA_BODY, GATEWAY_FIELDS, HTTP_PROVIDERS,
    MOCK_PROVIDER, declares_responses, is_request_default, is_supported_provider, known_param_keys,
    provider_of_bare_name, provider_reads,
};
pub use repeated::fold_repeated;
pub use schema::*;
pub use seconds::{MAX_SECONDS, invalid_seconds, seconds};
pub use timezone::{ResetTime, ResetZone};
