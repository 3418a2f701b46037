//! Everything built from one config: the router, the composite profiles,
//! auth settings, limits and the model listing. Swapped whole on reload, so a
//! request always sees one consistent version.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;

use crate::config::{ConfigError, LoadedConfig, Secret};
use crate::openai::unix_now;
use crate::router::{Clock, Router};
use crate::strategy::{SharedEngine, StrategyHost, profiles};

/// Default request body limit when `max_request_size_mb` is unset.
const DEFAULT_BODY_LIMIT: usize = crate::config::DEFAULT_MAX_REQUEST_SIZE_MB as usize * 1024 * 1024;
/// Default time a client has to send its request body.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a config version could not become a gateway: the build step that
/// refused it, with the config problems it found (file and key paths).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The runtime overlay does not fit the config.
    #[error(transparent)]
    Overlay(ConfigError),
    /// A composite profile or a topology node is wrong.
    #[error(transparent)]
    Profiles(ConfigError),
    /// A deployment, an alias or a router setting is wrong.
    #[error(transparent)]
    Router(ConfigError),
    /// A strategy did not compile or refused its profile.
    #[error(transparent)]
    Strategies(ConfigError),
    /// The response cache's settings do not fit together.
    #[error(transparent)]
    Cache(ConfigError),
    /// The rules for new virtual keys are wrong.
    #[error(transparent)]
    Keys(ConfigError),
}

/// One loaded version of the gateway.
pub struct Gateway {
    pub router: Arc<Router>,
    /// Composite profiles and the public models that expose them.
    pub strategies: Arc<StrategyHost>,
    pub master_key: Option<Secret>,
    /// Per-token prices of every deployment, for spend and cost headers.
    pub prices: Arc<crate::pricing::PriceBook>,
    /// `model_info.access_groups`: the names a key's `models` list may use.
    pub access_groups: Arc<crate::ops::admission::AccessGroups>,
    /// The response cache's settings (`litellm_settings.cache`); `None` when off.
    pub cache: Option<Arc<crate::cache::Settings>>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// Loopback clients may use the admin API without a master key.
    pub admin_without_key_on_loopback: bool,
    /// A configured fallback is tried for a virtual key only when the key
    /// may call it (`general_settings.enforce_fallback_model_access`).
    pub enforce_fallback_model_access: bool,
    /// A model request without `user` is refused
    /// (`general_settings.enforce_user_param`).
    pub enforce_user_param: bool,
    /// The budget of end users with none of their own
    /// (`litellm_settings.max_end_user_budget`, `max_end_user_budget_id`).
    pub end_user_defaults: crate::keys::EndUserDefaults,
    /// The whole gateway's budget (`litellm_settings.max_budget`,
    /// `budget_duration`), when one is set.
    pub proxy_budget: Option<crate::keys::ProxyBudgetSettings>,
    /// The status a spent budget's refusal answers with
    /// (`litellm_settings.budget_exceeded_status_code`), when set.
    pub budget_exceeded_status: Option<u16>,
    /// The headers naming a request's end user, in the order they are
    /// read: LiteLLM's two, then the config's own.
    pub end_user_headers: Vec<http::HeaderName>,
    /// Changes through the management and admin APIs leave audit log rows
    /// (`litellm_settings.store_audit_logs`, on unless set to false).
    pub audit_log: bool,
    /// Defaults and ceilings for `/key/generate`
    /// (`litellm_settings.default_key_generate_params`, `upperbound_key_generate_params`).
    pub key_generate: crate::keys::KeyGenerateParams,
    /// Public model names, sorted.
    pub model_names: Vec<String>,
    /// The `/v1/models` body, built once per version.
    pub models_json: Bytes,
    /// The `/v1/model/info` body (deployments without secrets).
    pub model_info_json: Bytes,
    /// `GET /model_group/info`, rendered once per config version.
    pub model_group_info_json: Bytes,
    pub config_path: PathBuf,
    /// When this version was built.
    pub loaded_at: SystemTime,
    /// `general_settings.hot_reload`.
    pub hot_reload: bool,
    /// `general_settings.enable_responses_endpoint` (on unless false).
    pub responses_endpoint: bool,
    /// `general_settings.public_docs` (on unless false).
    pub public_docs: bool,
}

impl Gateway {
    /// Builds a gateway: the router (with deployments for topology nodes),
    /// then the strategies, compiled off the async threads and validated
    /// against their profiles. Returns it with the warnings to log.
    /// When it replaces a version whose router is `previous`, unchanged
    /// deployments keep their live numbers.
    pub async fn build(
        loaded: &LoadedConfig,
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
        engine: &SharedEngine,
        previous: Option<&Router>,
    ) -> Result<(Self, Vec<String>), BuildError> {
        let invalid = |p| loaded.invalid(p);
        let (plan, plan_warnings) =
            profiles::plan(loaded).map_err(|p| BuildError::Profiles(invalid(p)))?;
        let built = Router::from_config(loaded, &plan.hidden, client, clock, previous)
            .map_err(|e| BuildError::Router(e.placed(&loaded.origins)))?;
        let mut warnings = loaded.warnings.clone();
        let file = loaded.path.display().to_string();
        let placed = |w: String| loaded.origins.relocate(&file, w);
        warnings.extend(built.warnings.into_iter().map(placed));
        warnings.extend(plan_warnings.into_iter().map(placed));
        let router = Arc::new(built.router);
        let hidden: HashSet<String> = plan.hidden.iter().map(|e| e.model_name.clone()).collect();
        let access_groups = Arc::new(crate::ops::admission::AccessGroups::from_config(
            &loaded.config,
        ));
        let (strategies, strategy_warnings) =
            StrategyHost::build(plan, router.clone(), access_groups.clone(), engine)
                .await
                .map_err(|p| BuildError::Strategies(invalid(p)))?;
        warnings.extend(strategy_warnings.into_iter().map(placed));
        let warnings = crate::config::fold_repeated(warnings);

        let cfg = &loaded.config;
        let prices = Arc::new(crate::pricing::PriceBook::build(loaded, &router));
        router.learn_prices(|id| prices.known(id).map(|p| p.input + p.output));
        let cache = crate::cache::Settings::from_config(cfg)
            .map_err(|p| BuildError::Cache(invalid(p)))?
            .map(Arc::new);
        let key_generate = crate::keys::KeyGenerateParams::from_config(cfg)
            .map_err(|p| BuildError::Keys(invalid(vec![p])))?;
        let proxy_budget = crate::keys::ProxyBudgetSettings::from_config(cfg)
            .map_err(|p| BuildError::Keys(invalid(vec![p])))?;
        let master_key = master_key(cfg);
        let body_limit = cfg
            .general_settings
            .max_request_size_mb
            .map_or(DEFAULT_BODY_LIMIT, |mb| (mb * 1024.0 * 1024.0) as usize);

        let model_names = public_model_names(&router, &hidden, &strategies);
        let models_json = models_listing(&model_names);
        let model_info_json = crate::admin::model_info_listing(cfg, &prices);
        let model_group_info_json = crate::admin::model_group_info_listing(cfg);
        Ok((
            Self {
                router,
                strategies: Arc::new(strategies),
                master_key,
                prices,
                access_groups,
                cache,
                body_limit,
                body_timeout: cfg
                    .general_settings
                    .request_body_timeout
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .unwrap_or(DEFAULT_BODY_TIMEOUT),
                admin_without_key_on_loopback: cfg
                    .general_settings
                    .admin_without_key_on_loopback
                    .unwrap_or(false),
                enforce_fallback_model_access: cfg
                    .general_settings
                    .enforce_fallback_model_access
                    .unwrap_or(false),
                enforce_user_param: cfg.general_settings.enforce_user_param.unwrap_or(false),
                end_user_defaults: crate::keys::EndUserDefaults::of(&cfg.litellm_settings),
                proxy_budget,
                budget_exceeded_status: cfg
                    .litellm_settings
                    .budget_exceeded_status_code
                    .and_then(|s| u16::try_from(s).ok()),
                end_user_headers: end_user_headers(&cfg.general_settings),
                audit_log: cfg.litellm_settings.store_audit_logs.unwrap_or(true),
                key_generate,
                model_names,
                models_json,
                model_info_json,
                model_group_info_json,
                config_path: loaded.path.clone(),
                loaded_at: SystemTime::now(),
                hot_reload: cfg.general_settings.hot_reload.unwrap_or(false),
                responses_endpoint: cfg
                    .general_settings
                    .enable_responses_endpoint
                    .unwrap_or(true),
                public_docs: cfg.general_settings.public_docs.unwrap_or(true),
            },
            warnings,
        ))
    }
}

/// The names `/v1/models` lists, sorted: the model groups (not wildcard
/// patterns nor topology-only groups), listed aliases and composite profiles.
fn public_model_names(
    router: &Router,
    hidden: &HashSet<String>,
    strategies: &StrategyHost,
) -> Vec<String> {
    let mut names: Vec<String> = router
        .groups()
        .iter()
        .map(|g| g.name.to_string())
        .filter(|n| !n.ends_with('*') && !hidden.contains(n))
        .chain(router.listed_aliases().cloned())
        .chain(strategies.public_names().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn models_listing(names: &[String]) -> Bytes {
    let created = unix_now();
    let data: Vec<_> = names.iter().map(|id| model_entry(id, created)).collect();
    Bytes::from(serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default())
}

/// One model of `/v1/models`, in OpenAI's shape.
pub fn model_entry(id: &str, created: u64) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "conclave"})
}

/// The headers naming a request's end user: LiteLLM's
/// `x-litellm-customer-id` and `x-litellm-end-user-id`, then
/// `user_header_mappings` with the `customer` role, then
/// `user_header_name`, as LiteLLM reads them (names the config check
/// refused are left out).
fn end_user_headers(gs: &crate::config::GeneralSettings) -> Vec<http::HeaderName> {
    let standard = [
        http::HeaderName::from_static("x-litellm-customer-id"),
        http::HeaderName::from_static("x-litellm-end-user-id"),
    ];
    let mapped = gs
        .user_header_mappings
        .iter()
        .flatten()
        .filter(|m| m.names_end_user())
        .map(|m| m.header_name.as_str());
    let configured = mapped
        .chain(gs.user_header_name.as_deref())
        .filter_map(|name| http::HeaderName::from_bytes(name.as_bytes()).ok());
    let mut out: Vec<http::HeaderName> = standard.into_iter().collect();
    for name in configured {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The master key of a config: `general_settings.master_key`, else
/// [`crate::config::MASTER_KEY_VARIABLES`]; an empty value is none. Start-up reads it before
/// the first version is built (it decides whether the key store opens).
pub fn master_key(config: &crate::config::Config) -> Option<Secret> {
    config
        .general_settings
        .master_key
        .clone()
        .filter(|k| !k.expose().is_empty())
        .or_else(|| {
            crate::config::MASTER_KEY_VARIABLES
                .iter()
                .find_map(|name| config.env.get(name).filter(|k| !k.is_empty()))
                .map(Secret::new)
        })
}
