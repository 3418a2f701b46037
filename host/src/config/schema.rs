//! The typed shape of a config file. Names and meanings follow LiteLLM's proxy
//! config so that existing files load unchanged. Every numeric and boolean
//! field reads through `config::lenient`, so `"30"` and an environment
//! reference holding `30` load as LiteLLM's pydantic models read them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

/// A whole config file after environment substitution.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Deployments; entries sharing a `model_name` form one model group.
    pub model_list: Vec<ModelEntry>,
    /// Proxy-wide settings (auth, limits, composite profiles).
    pub general_settings: GeneralSettings,
    /// LiteLLM library settings that also apply to the proxy.
    pub litellm_settings: LitellmSettings,
    /// Balancing, retries, fallbacks and cooldowns.
    pub router_settings: RouterSettings,
    /// Variables made available to `os.environ/` references and to the
    /// gateway's own variables (lowest priority).
    #[serde(deserialize_with = "super::lenient::scalar_text_map")]
    pub environment_variables: HashMap<String, String>,
    /// Where environment references and the gateway's own variables
    /// (`DATABASE_URL`, `REDIS_HOST`, the master key, ...) are looked up:
    /// the process, a `.env` beside the file, then `environment_variables`,
    /// as LiteLLM sets them. Filled by the loader.
    #[serde(skip)]
    pub env: super::Env,
}

/// One deployment of a model group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelEntry {
    /// The public name clients send as `model`; `*` and `prefix/*` are wildcards.
    pub model_name: String,
    /// How to reach the deployment.
    pub litellm_params: LitellmParams,
    /// Free-form metadata; `id` names the deployment in headers and logs.
    pub model_info: Option<BTreeMap<String, serde_yaml::Value>>,
    /// LiteLLM's entry-level `rpm` and `tpm`, beside litellm_params (its
    /// own example configs write them here); read as litellm_params'.
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub rpm: Option<u64>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub tpm: Option<u64>,
}

/// A secret string (API or master key) that never prints itself. A number
/// reads as its digits (`redis_password: 90210555`), so that no type
/// error quotes it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "super::lenient::scalar_text")] String);

impl Secret {
    /// Wraps a value read from the environment or the config.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `litellm_params` keys [`LitellmParams`] reads into fields of its
/// own (the rest land in its `extra`): what a misspelt key is compared with.
pub const TYPED_PARAM_KEYS: &[&str] = &[
    "model",
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "organization",
    "extra_headers",
    "headers",
    "tags",
    "timeout",
    "request_timeout",
    "stream_timeout",
    "max_retries",
    "num_retries",
    "cooldown_time",
    "rpm",
    "tpm",
    "max_parallel_requests",
    "weight",
    "order",
    "max_budget",
    "budget_duration",
    "target_model",
    "supports_reasoning",
    "drop_params",
    "additional_drop_params",
    "custom_llm_provider",
];

/// Per-deployment parameters, LiteLLM's `litellm_params`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LitellmParams {
    /// `provider/model`, e.g. `openai/gpt-4o` or `mock/echo`.
    pub model: String,
    /// Where the provider is reached.
    pub api_base: Option<String>,
    /// LiteLLM's other name for `api_base`, which wins when both are set;
    /// loading moves it into `api_base`.
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub api_version: Option<String>,
    pub organization: Option<String>,
    /// LiteLLM's `organization: [org-1, org-2]`: the router makes one
    /// deployment per organization. Set by loading; not a YAML key.
    #[serde(skip)]
    pub organizations: Vec<String>,
    pub extra_headers: BTreeMap<String, String>,
    /// LiteLLM's other name for headers sent with every call; the loader
    /// merges them into `extra_headers` (which wins on a name in both).
    pub headers: BTreeMap<String, String>,
    /// Tags a request's own must match for it to be sent here, when
    /// `router_settings.enable_tag_filtering` is on (`default`: requests
    /// without tags, or whose tags no deployment has).
    pub tags: Vec<String>,
    /// Whole-request timeout in seconds.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub timeout: Option<f64>,
    /// LiteLLM's other name for `timeout`, used when `timeout` is unset.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub request_timeout: Option<f64>,
    /// Seconds to the first chunk of a stream, and between chunks.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub stream_timeout: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub max_retries: Option<u32>,
    /// LiteLLM's per-deployment retries; wins over `max_retries`.
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub num_retries: Option<u32>,
    /// Seconds this deployment stays out of rotation once cooled down,
    /// instead of the router's `cooldown_time` (0: it is never cooled).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub cooldown_time: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub rpm: Option<u64>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub tpm: Option<u64>,
    /// Calls this deployment may have in flight at once (LiteLLM's
    /// per-deployment semaphore): a call past it waits for a slot, so an
    /// upstream with a concurrency quota is never sent more than it takes.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub max_parallel_requests: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub weight: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub order: Option<u32>,
    /// USD this deployment may spend per `budget_duration`; once spent it
    /// is passed over until its window ends (LiteLLM's deployment budget).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_budget: Option<f64>,
    /// How long each window of `max_budget` lasts (`1d`, `30d`, ...).
    pub budget_duration: Option<String>,
    /// Upstream model name, when it differs from the one after the provider prefix.
    pub target_model: Option<String>,
    /// Injects the provider's reasoning switch when a request carries none.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub supports_reasoning: Option<bool>,
    /// LiteLLM's `drop_params` for this deployment: fields its model is
    /// known to refuse are left out rather than sent (unset: as
    /// `litellm_settings.drop_params` says).
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub drop_params: Option<bool>,
    /// LiteLLM's `additional_drop_params`: request fields this deployment
    /// never sends, whatever the client put in them.
    pub additional_drop_params: Vec<String>,
    /// Accepted for LiteLLM compatibility: the provider when `model` has no prefix.
    pub custom_llm_provider: Option<String>,
    /// Never borrow the provider's key from the environment (set for runtime
    /// registrations that name their own api_base); not a YAML key.
    #[serde(skip)]
    pub no_env_key: bool,
    /// Everything else: request defaults (temperature, ...) and mock settings.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

/// `general_settings.max_request_size_mb` when unset.
pub const DEFAULT_MAX_REQUEST_SIZE_MB: f64 = 32.0;

/// `general_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GeneralSettings {
    /// Clients must send this as `Authorization: Bearer <key>`.
    pub master_key: Option<Secret>,
    /// Largest request body accepted, in MiB.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_request_size_mb: Option<f64>,
    /// Largest upstream response body (and stream event) read, in MiB;
    /// 64 when unset.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_response_size_mb: Option<f64>,
    /// Composite profiles and strategies.
    pub composite_llm: Option<CompositeSettings>,
    /// Serves `POST /v1/responses` (on by default; false turns it off).
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enable_responses_endpoint: Option<bool>,
    /// Watch the config and strategy files and reload on change.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub hot_reload: Option<bool>,
    /// Directory of the compiled-component cache (relative to the config file).
    pub compile_cache_dir: Option<String>,
    /// Requests served at once (LiteLLM's name); past it new requests get
    /// 503 with `Retry-After`. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub global_max_parallel_requests: Option<u32>,
    /// MiB of request bodies the gateway holds at once, over all requests
    /// (1024 when unset); a request whose body would pass it gets 503 with
    /// `Retry-After`. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_request_bodies_mb: Option<f64>,
    /// MiB of upstream answers the gateway reads at once, over all calls
    /// (1024 when unset; each answer's first 256 KiB are not counted); an
    /// answer that would pass it fails with 503. Streams count what they
    /// hold of an unfinished event.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_response_bodies_mb: Option<f64>,
    /// Seconds a client has to send a request's head (its request line and
    /// headers); the connection is closed after. 30 when unset. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub header_read_timeout: Option<f64>,
    /// Seconds a write to a client may wait for the client to read (a
    /// stream it stopped reading); the connection is closed after. 60 when
    /// unset. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub client_write_timeout: Option<f64>,
    /// Connections open at once; past it new connections wait in the listen
    /// backlog until one closes. 10000 when unset. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub max_connections: Option<u32>,
    /// Seconds an upstream stream may last from the call's start, however
    /// steadily it sends; it then ends with a timeout error. 3600 when unset.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_stream_duration: Option<f64>,
    /// Seconds a client may take to send its whole request body (408 after).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub request_body_timeout: Option<f64>,
    /// Seconds a composite request waits for a free strategy slot (503 after).
    /// Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub composite_queue_timeout: Option<f64>,
    /// Lets loopback clients use the admin API without the master key when
    /// none is configured. Off by default: behind a local reverse proxy every
    /// client looks like loopback.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub admin_without_key_on_loopback: Option<bool>,
    /// LiteLLM's switch: a fallback from the config is tried for a virtual
    /// key only when the key (its user and team) may call that model
    /// itself; otherwise it is skipped. Off by default, as in LiteLLM.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enforce_fallback_model_access: Option<bool>,
    /// LiteLLM's switch: every model request must name its end user
    /// (`user`), so that spend is always kept per end user.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enforce_user_param: Option<bool>,
    /// A header naming the request's end user (LiteLLM's older setting,
    /// e.g. Open WebUI's `X-OpenWebUI-User-Id`).
    pub user_header_name: Option<String>,
    /// Headers naming who a request is for; those with
    /// `litellm_user_role: customer` name its end user.
    pub user_header_mappings: Option<Vec<UserHeaderMapping>>,
    /// Environment variables a runtime registration (`POST /admin/models`)
    /// may name as `os.environ/NAME`; none by default.
    pub admin_env_allowlist: Vec<String>,
    /// Serves `GET /metrics` without the master key (for a Prometheus that
    /// cannot send one). Off by default.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub public_metrics: Option<bool>,
    /// Serves the API docs (`/`, `/openapi.json`) without the master key.
    /// On by default (they hold no secrets); false requires the master key
    /// when one is configured.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub public_docs: Option<bool>,
    /// Origins whose web pages may call the gateway from a browser (CORS):
    /// `["*"]` (any, the default, as LiteLLM allows) or a list of
    /// `scheme://host[:port]`; an empty list turns cross-origin answers off.
    /// No cookie or other ambient credential is ever allowed: a page must
    /// send a key itself. Read at start-up.
    pub cors_allow_origins: Option<Vec<String>>,
    /// The only client addresses served (LiteLLM's name): IP addresses or
    /// CIDR ranges; every other client is answered 403 on every route.
    /// Unset serves every address. Read at start-up.
    pub allowed_ips: Option<Vec<String>>,
    /// The only routes served (LiteLLM's name): paths, `/prefix/*`, or
    /// LiteLLM's route groups; every other path is answered 403. Read at
    /// start-up.
    pub allowed_routes: Option<Vec<String>>,
    /// Model routes (and `/metrics`, the API docs) served without a key
    /// (LiteLLM's name). Read at start-up.
    pub public_routes: Option<Vec<String>>,
    /// Routes only the master key and `proxy_admin` users' keys may call
    /// (LiteLLM's name). Read at start-up.
    pub admin_only_routes: Option<Vec<String>>,
    /// Judges a client by the last address in its `X-Forwarded-For` (the
    /// one the reverse proxy in front of the gateway added) rather than by
    /// the connection's address (LiteLLM's name). Only for a gateway that is
    /// reachable through that proxy alone: a client reaching it directly
    /// could name any address. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub use_x_forwarded_for: Option<bool>,
    /// Serves the web dashboard at `/ui` and keeps the recent requests it
    /// shows. On by default. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub ui: Option<bool>,
    /// Requests the dashboard keeps in memory for its live table and
    /// request pages (default 1000). Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub ui_recent_requests: Option<u32>,
    /// Directory of the per-request log files; off when unset (the
    /// `CONCLAVE_REQUEST_LOG_DIR` environment variable sets it too). Read at
    /// start-up.
    pub request_log_dir: Option<String>,
    /// `text` (one file per request, the default) or `jsonl` (one line per
    /// request in one rotating file).
    pub request_log_format: Option<String>,
    /// Most request log files kept; the oldest are deleted first.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub request_log_max_files: Option<u32>,
    /// Most MiB of request log files kept; the oldest are deleted first.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub request_log_max_mb: Option<f64>,
    /// The virtual-key store: `sqlite://file.db` (relative to the config
    /// file; `sqlite://conclave.db` when unset) or `postgres://...`
    /// (`DATABASE_URL` when this is unset). Opened at start-up with a master
    /// key; without one, only when a Responses API answer is first stored.
    pub database_url: Option<String>,
    /// Most connections the key store's pool opens (LiteLLM's name; 10 for
    /// PostgreSQL, 4 for SQLite when unset).
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub database_connection_pool_limit: Option<u32>,
    /// Seconds a statement waits for a pooled connection before the store
    /// counts as unreachable (LiteLLM's name; 5 when unset).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub database_connection_timeout: Option<f64>,
    /// LiteLLM's switch for bodies in spend-log rows: read so that it is
    /// answered with a warning (bodies go to the request logs here).
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub store_prompts_in_spend_logs: Option<bool>,
    /// Spend-log rows older than this (`30d`, `12h`) are deleted.
    pub maximum_spend_logs_retention_period: Option<String>,
    /// Keep spend totals but write no per-request spend-log rows.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub disable_spend_logs: Option<bool>,
    /// Seconds between the spend writer's batches (LiteLLM's name; 1 when
    /// unset, where LiteLLM waits 10). Longer means fewer store writes and a
    /// later `/spend/logs`; budgets and limits count each call at once
    /// either way. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub proxy_batch_write_at: Option<f64>,
    /// Keeps runtime model registrations (`POST /admin/models`) in the key
    /// store instead of a file, shared by every instance on that store
    /// (LiteLLM's key; `STORE_MODEL_IN_DB` when unset). Needs a master key.
    /// Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub store_model_in_db: Option<bool>,
    /// Keeps Responses API answers for `previous_response_id` and
    /// `GET /v1/responses/{id}` (on by default, as OpenAI's `store`); false
    /// stores nothing. Read at start-up.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub store_responses: Option<bool>,
    /// Stored responses older than this (`30d`, `12h`) are deleted; `30d`
    /// when unset. Read at start-up.
    pub responses_retention_period: Option<String>,
    /// Largest stored response (its object and conversation), in MiB;
    /// larger answers are served but not stored. 4 when unset.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_stored_response_mb: Option<f64>,
    /// OpenTelemetry trace export over OTLP/HTTP; the standard `OTEL_*`
    /// environment variables win over it. Read at start-up. LiteLLM's
    /// `otel: true` reads as `{enabled: true}`.
    #[serde(deserialize_with = "super::lenient::otel_settings")]
    pub otel: Option<OtelSettings>,
    /// Probe every deployment periodically with a one-token request
    /// (LiteLLM's name); failures show in `/health` and the metrics.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub background_health_checks: Option<bool>,
    /// Seconds between background health checks (LiteLLM's name); 300 when unset.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub health_check_interval: Option<f64>,
}

/// `general_settings.otel`: where and how traces are exported. Any key
/// turns export on unless `enabled: false`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OtelSettings {
    /// `false` keeps export off even when the environment configures it.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enabled: Option<bool>,
    /// The collector's base URL (over HTTP `/v1/traces` is added), like
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Headers sent with every export (e.g. an API key); never logged.
    pub headers: BTreeMap<String, Secret>,
    /// `http/protobuf` (the default) or `grpc`, as `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    /// The `service.name` resource attribute (`conclave` when unset).
    pub service_name: Option<String>,
    /// `OTEL_TRACES_SAMPLER`'s values: `parentbased_always_on` (default),
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_traceidratio`, ...
    pub sampler: Option<String>,
    /// The ratio for the `traceidratio` samplers (0 to 1).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub sampler_arg: Option<f64>,
    /// Record prompts and answers on model-call spans
    /// (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`). Off by default.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub capture_message_content: Option<bool>,
}

/// `litellm_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LitellmSettings {
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub drop_params: Option<bool>,
    /// LiteLLM's switch for a key on `/metrics`: `false` makes it public
    /// when `general_settings.public_metrics` is unset.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub require_auth_for_metrics_endpoint: Option<bool>,
    /// Default whole-request timeout in seconds.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub request_timeout: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub num_retries: Option<u32>,
    /// LiteLLM's Python custom providers; composite profiles replace them.
    pub custom_provider_map: Option<serde_yaml::Value>,
    pub fallbacks: Option<FallbackList>,
    pub context_window_fallbacks: Option<FallbackList>,
    pub content_policy_fallbacks: Option<FallbackList>,
    pub default_fallbacks: Option<Vec<String>>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub allowed_fails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub cooldown_time: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub set_verbose: Option<bool>,
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub json_logs: Option<bool>,
    /// LiteLLM's callback lists: `prometheus` is built in (`/metrics`);
    /// other names are accepted with a warning.
    pub success_callback: Option<Callbacks>,
    pub failure_callback: Option<Callbacks>,
    pub callbacks: Option<Callbacks>,
    /// Turns the response cache on (`cache_params` says how).
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub cache: Option<bool>,
    pub cache_params: Option<super::CacheParams>,
    /// The zone whose clock ends budget periods of a day or longer (UTC
    /// when unset).
    pub timezone: Option<super::ResetZone>,
    /// The time of day on that clock those periods end at (midnight when
    /// unset).
    pub budget_reset_time: Option<super::ResetTime>,
    /// Whether changes through the management and admin APIs are written to
    /// the audit log (on when unset; the log lives in the key store).
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub store_audit_logs: Option<bool>,
    /// What `/key/generate` gives a key whose body leaves a field out.
    pub default_key_generate_params: Option<KeyGenerateDefaults>,
    /// The most `/key/generate` may give a key; also the value of a field
    /// the body leaves out.
    pub upperbound_key_generate_params: Option<KeyGenerateBounds>,
    /// The most an end user with no budget of its own may spend, in all
    /// (USD).
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_end_user_budget: Option<f64>,
    /// The budget (made with `/budget/new`) an end user with none of its
    /// own is linked to when first seen.
    pub max_end_user_budget_id: Option<String>,
    /// The most every model call through the gateway together may spend
    /// per `budget_duration` (USD), whoever makes them; 0 sets no cap.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_budget: Option<f64>,
    /// How often the gateway's `max_budget` renews (`30d`, `1mo`, ...).
    pub budget_duration: Option<String>,
    /// The status a spent budget's refusal answers with (400 unless set;
    /// LiteLLM's newest releases answer 422, older ones 400 or 429).
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub budget_exceeded_status_code: Option<u32>,
    /// Upstream certificate checks: `false` turns them off; a path names
    /// PEM CA certificates trusted besides the built-in roots
    /// ([`crate::upstream_tls`]). Read at start-up.
    #[serde(deserialize_with = "super::lenient::ssl_verify")]
    pub ssl_verify: Option<SslVerify>,
    /// A PEM file holding the client certificate and private key shown to
    /// upstreams that ask for one. Read at start-up.
    pub ssl_certificate: Option<String>,
    /// OpenSSL's security level, which has no meaning for this gateway's
    /// TLS (rustls, modern ciphers only): read to be answered with a warning.
    pub ssl_security_level: Option<serde_yaml::Value>,
    /// LiteLLM's promise that no message content is logged: the gateway
    /// keeps content only in request logs and in traces that capture it,
    /// and refuses a config that turns this on beside either.
    pub turn_off_message_logging: Option<bool>,
}

/// `litellm_settings.ssl_verify`: a switch, or the path of a CA bundle.
#[derive(Debug, Clone, PartialEq)]
pub enum SslVerify {
    Switch(bool),
    CaBundle(String),
}

impl SslVerify {
    /// A written value, in the config or `SSL_VERIFY`: a switch as pydantic
    /// reads one (`False`, `no`, `0`), else the path of a CA bundle.
    pub fn read(text: &str) -> Self {
        match super::lenient::parse_switch(text) {
            Some(verify) => Self::Switch(verify),
            None => Self::CaBundle(text.to_owned()),
        }
    }
}

/// One of `general_settings.user_header_mappings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserHeaderMapping {
    pub header_name: String,
    /// `customer` names the end user; LiteLLM's `internal_user` maps the
    /// header to a user of its own, which conclave does not do.
    pub litellm_user_role: String,
}

impl UserHeaderMapping {
    /// Whether the header names the request's end user.
    pub fn names_end_user(&self) -> bool {
        self.litellm_user_role == "customer"
    }
}

/// `litellm_settings.default_key_generate_params`, LiteLLM's fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyGenerateDefaults {
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    /// How long a key lives when the body sets no `duration`.
    pub duration: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub max_parallel_requests: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub tpm_limit: Option<u64>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub rpm_limit: Option<u64>,
    /// Given when the body's list is absent or empty.
    pub models: Option<Vec<String>>,
    /// Given when the body's metadata is absent or empty.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `litellm_settings.upperbound_key_generate_params`, LiteLLM's fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyGenerateBounds {
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    /// How long a key may live at most.
    pub duration: Option<String>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub max_parallel_requests: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub tpm_limit: Option<u64>,
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub rpm_limit: Option<u64>,
}

/// A LiteLLM callback list: a list of names, or one name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Callbacks {
    One(String),
    Many(Vec<serde_yaml::Value>),
    /// Anything else is kept (and ignored) rather than refused.
    Other(serde_yaml::Value),
}

impl Callbacks {
    /// The callback names (entries that are not strings are skipped).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Callbacks::One(name) => vec![name.as_str()],
            Callbacks::Many(list) => list.iter().filter_map(serde_yaml::Value::as_str).collect(),
            Callbacks::Other(_) => Vec::new(),
        }
    }
}

/// LiteLLM's fallback form: a list of `{group: [fallback, ...]}` maps.
pub type FallbackList = Vec<BTreeMap<String, Vec<String>>>;

/// `router_settings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouterSettings {
    pub routing_strategy: Option<String>,
    pub routing_strategy_args: RoutingStrategyArgs,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub num_retries: Option<u32>,
    pub retry_policy: Option<RetryPolicyConfig>,
    /// Minimum seconds to wait before a retry.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub retry_after: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub allowed_fails: Option<u32>,
    /// Failures tolerated per error class; setting it selects the count rule.
    pub allowed_fails_policy: Option<AllowedFailsPolicyConfig>,
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub cooldown_time: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub disable_cooldowns: Option<bool>,
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub timeout: Option<f64>,
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub stream_timeout: Option<f64>,
    pub fallbacks: Option<FallbackList>,
    pub default_fallbacks: Option<Vec<String>>,
    pub context_window_fallbacks: Option<FallbackList>,
    pub content_policy_fallbacks: Option<FallbackList>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub max_fallbacks: Option<u32>,
    /// `max_parallel_requests` of every deployment that sets none.
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub default_max_parallel_requests: Option<u32>,
    /// Alias to group, or to `{model: group, hidden: bool}`.
    pub model_group_alias: BTreeMap<String, serde_yaml::Value>,
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enable_pre_call_checks: Option<bool>,
    /// Send a request with tags only to deployments whose `tags` match them.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub enable_tag_filtering: Option<bool>,
    /// Whether one of a request's tags is enough (the default), or all must match.
    #[serde(deserialize_with = "super::lenient::opt_bool")]
    pub tag_filtering_match_any: Option<bool>,
    /// Spend caps per provider (`openai: {budget_limit: 100, time_period:
    /// 1d}`): a provider whose cap is spent gets no calls until its
    /// window ends.
    pub provider_budget_config: Option<BTreeMap<String, ProviderBudget>>,
    /// The Redis instances share limits, key changes and cooldowns through
    /// (LiteLLM's names; `REDIS_URL` and the cache's Redis also serve).
    pub redis_url: Option<Secret>,
    pub redis_host: Option<String>,
    #[serde(deserialize_with = "super::cache::port")]
    pub redis_port: Option<u16>,
    pub redis_password: Option<Secret>,
    /// Prefix of every shared-state key and channel (`conclave-shared`).
    pub redis_namespace: Option<String>,
    /// Milliseconds a shared-limit check may wait for Redis (100).
    #[serde(deserialize_with = "super::lenient::opt_u64")]
    pub redis_timeout_ms: Option<u64>,
}

/// One provider's entry in `router_settings.provider_budget_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderBudget {
    /// USD per window.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub budget_limit: Option<f64>,
    /// How long a window lasts (`1d`, `30d`, `1mo`).
    pub time_period: Option<String>,
}

/// `router_settings.routing_strategy_args`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoutingStrategyArgs {
    /// Deployments within this fraction of the fastest count as equally fast.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub lowest_latency_buffer: Option<f64>,
    /// Seconds of history the latency average should favour.
    #[serde(deserialize_with = "super::lenient::opt_f64")]
    pub ttl: Option<f64>,
}

/// `router_settings.retry_policy`: retries per error class.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[allow(non_snake_case)]
pub struct RetryPolicyConfig {
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub BadRequestErrorRetries: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub AuthenticationErrorRetries: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub TimeoutErrorRetries: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub RateLimitErrorRetries: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub ContentPolicyViolationErrorRetries: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_retries")]
    pub InternalServerErrorRetries: Option<u32>,
}

/// `router_settings.allowed_fails_policy`: failures tolerated in a minute per
/// error class before a deployment cools down.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[allow(non_snake_case)]
pub struct AllowedFailsPolicyConfig {
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub BadRequestErrorAllowedFails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub AuthenticationErrorAllowedFails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub TimeoutErrorAllowedFails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub RateLimitErrorAllowedFails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub ContentPolicyViolationErrorAllowedFails: Option<u32>,
    #[serde(deserialize_with = "super::lenient::opt_u32")]
    pub InternalServerErrorAllowedFails: Option<u32>,
}

/// `general_settings.composite_llm`: composite profiles and their strategies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CompositeSettings {
    /// Named parameter bundles (api_key, api_base, ...) shared by topology nodes.
    pub providers: BTreeMap<String, ProviderBundle>,
    /// Named profiles: a strategy and its topology.
    pub profiles: BTreeMap<String, Profile>,
    /// Strategy name to a component path (relative to the config file).
    pub strategy_registry: BTreeMap<String, String>,
    /// Per-request JSONL trace log.
    pub observability: Observability,
    /// Sandbox limits applied to every profile unless it sets its own.
    pub limits: Option<serde_yaml::Value>,
}

/// A named bundle of `litellm_params` for topology nodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderBundle {
    pub litellm_params: LitellmParams,
}

/// A composite profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Name of a built-in or registered strategy.
    pub strategy: String,
    /// Strategy-specific topology, validated by the strategy itself.
    pub topology: serde_yaml::Value,
    /// Per-profile sandbox limits.
    pub limits: Option<serde_yaml::Value>,
}

/// `general_settings.composite_llm.observability`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Observability {
    #[serde(deserialize_with = "super::lenient::bool_or_false")]
    pub enabled: bool,
    pub log_file: Option<String>,
}
