//! The offline commands `check` and `models`: load a config and build the
//! gateway from it, as `serve` would, without serving.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use conclave::config::LoadedConfig;
use conclave::gateway::Gateway;
use conclave::router::SystemClock;
use conclave::strategy::SharedEngine;

/// Loads the config at `path` and builds its gateway; returns both and the
/// warnings.
async fn build(path: &Path) -> Result<(LoadedConfig, Gateway, Vec<String>), String> {
    let loaded = conclave::config::load(path).map_err(|e| e.to_string())?;
    let tls = conclave::upstream_tls::UpstreamTls::from_config(&loaded.config);
    let client = conclave::server::http_client(&tls)?;
    // check compiles every component afresh: no compile cache.
    let engine = SharedEngine::new(None);
    let (gateway, warnings) = Gateway::build(&loaded, client, Arc::new(SystemClock), &engine, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok((loaded, gateway, warnings))
}

/// Validates a config; prints what it serves and every warning.
pub async fn check(path: &Path) -> Result<(), String> {
    let (loaded, gateway, mut warnings) = build(path).await?;
    // The key store's settings, as `serve` reads them: a store it could not
    // open fails the check too.
    let keys = conclave::keys::KeysSettings::from_config(
        &loaded.config,
        path,
        gateway.master_key.is_some(),
    )?;
    // A database named but unusable fails the check even without a master
    // key: the Responses API's store would fail on its first request.
    if loaded.config.general_settings.database_url.is_some()
        || loaded.config.env.get("DATABASE_URL").is_some()
    {
        conclave::keys::database_url(&loaded.config, path)?;
    }
    let shared = conclave::cluster::Settings::from_config(&loaded.config);
    if let Some(shared) = &shared {
        shared
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    warnings.extend(per_instance_warning(keys.as_ref(), shared.as_ref()));
    if conclave::admin::store_model_in_db(&loaded.config) && gateway.master_key.is_none() {
        warnings.push(conclave::admin::NO_KEY_STORE.to_owned());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "config: {}  (ok)", path.display());
    print_groups(&mut out, &gateway);
    print_profiles(&mut out, &gateway);
    print_bundles(&mut out, &loaded);
    print_providers(&mut out, &gateway);
    print_cache(&mut out, &gateway);
    print_key_store(&mut out, keys.as_ref());
    print_shared_state(&mut out, shared.as_ref());
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    Ok(())
}

/// The model groups with their deployments, then the aliases.
fn print_groups(out: &mut impl Write, gateway: &Gateway) {
    let _ = writeln!(out, "\nmodel groups:");
    for group in gateway.router.groups() {
        let _ = writeln!(out, "  {}", group.name);
        for d in &group.deployments {
            let _ = writeln!(
                out,
                "    - {}  provider={} model={}",
                d.id,
                d.target.provider(),
                d.target.upstream_model()
            );
        }
    }
    for (alias, target) in gateway.router.aliases() {
        let _ = writeln!(out, "  {alias} -> {target} (alias)");
    }
}

/// The composite profiles with their strategies, then the composite models.
fn print_profiles(out: &mut impl Write, gateway: &Gateway) {
    let mut profiles: Vec<_> = gateway.strategies.profiles().values().collect();
    profiles.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    if !profiles.is_empty() {
        let _ = writeln!(out, "\nprofiles:");
        for p in profiles {
            let s = &p.strategy;
            let _ = writeln!(
                out,
                "  {}: {} ({}, {})",
                p.plan.name, p.plan.strategy, s.source, s.hash
            );
        }
    }
    let mut public: Vec<_> = gateway.strategies.public_names().collect();
    public.sort();
    if !public.is_empty() {
        let _ = writeln!(
            out,
            "\ncomposite models: {}",
            public
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The provider bundles of `composite_llm`, if any.
fn print_bundles(out: &mut impl Write, loaded: &LoadedConfig) {
    if let Some(composite) = &loaded.config.general_settings.composite_llm
        && !composite.providers.is_empty()
    {
        let _ = writeln!(out, "\nprovider bundles:");
        for name in composite.providers.keys() {
            let _ = writeln!(out, "  {name}");
        }
    }
}

/// The providers the deployments use, each once.
fn print_providers(out: &mut impl Write, gateway: &Gateway) {
    let mut providers: Vec<&str> = gateway
        .router
        .groups()
        .iter()
        .flat_map(|g| g.deployments.iter().map(|d| d.target.provider()))
        .collect();
    providers.sort();
    providers.dedup();
    let _ = writeln!(out, "\nproviders: {}", providers.join(", "));
}

/// The response cache's settings (never the Redis password).
fn print_cache(out: &mut impl Write, gateway: &Gateway) {
    let Some(c) = &gateway.cache else {
        let _ = writeln!(out, "\ncache: off");
        return;
    };
    // Redis entries always expire (a day unless `ttl` says); memory ones
    // only when evicted.
    let ttl = match (c.ttl, &c.backend) {
        (Some(t), _) => format!("{}s", t.as_secs_f64()),
        (None, conclave::cache::Backend::Redis { .. }) => format!(
            "{}s (default)",
            conclave::cache::settings::DEFAULT_REDIS_TTL.as_secs()
        ),
        (None, conclave::cache::Backend::Memory) => "none".to_owned(),
    };
    let _ = writeln!(
        out,
        "\ncache: {}  namespace={} ttl={ttl} mode={} scope={} max_size_mb={} max_entry_kb={} composite_subcalls={}",
        c.type_name(),
        c.namespace,
        if c.default_on {
            "default_on"
        } else {
            "default_off"
        },
        match c.scope {
            conclave::config::CacheScope::Global => "global",
            conclave::config::CacheScope::Team => "team",
            conclave::config::CacheScope::Key => "key",
        },
        c.max_bytes / (1024 * 1024),
        c.max_entry_bytes / 1024,
        c.composite_subcalls,
    );
    let types = [
        (c.call_types.chat, "completion"),
        (c.call_types.text_completion, "text_completion"),
        (c.call_types.embedding, "embedding"),
    ];
    let served: Vec<&str> = types.iter().filter(|t| t.0).map(|t| t.1).collect();
    let _ = writeln!(out, "  call types: {}", served.join(", "));
    if let Some(location) = c.redis_location() {
        let _ = writeln!(
            out,
            "  redis: {location}  lookup budget={} ms",
            c.budget.as_millis()
        );
    }
    if let Some(s) = &c.semantic {
        let _ = writeln!(
            out,
            "  semantic: embedding_model={} similarity_threshold={}",
            s.embedding_model, s.threshold
        );
    }
}

/// Where instances share limits, key changes and cooldowns (never the
/// Redis password).
fn print_shared_state(out: &mut impl Write, shared: Option<&conclave::cluster::Settings>) {
    match shared {
        Some(s) => {
            let _ = writeln!(
                out,
                "\nshared state: redis {}  namespace={} budget={} ms (limits, key changes, cooldowns)",
                s.location(),
                s.namespace,
                s.budget.as_millis()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nshared state: none (each instance counts on its own)"
            );
        }
    }
}

/// Where virtual keys are kept, without any password the URL holds.
fn print_key_store(out: &mut impl Write, keys: Option<&conclave::keys::KeysSettings>) {
    if let Some(keys) = keys {
        // Neither `user:password@` nor a query (which may hold `password=`).
        let url = &keys.database_url;
        let url = url.split_once('?').map_or(url.as_str(), |(base, _)| base);
        let shown = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            conclave::cluster::settings::redact_url(url)
        };
        let _ = writeln!(out, "\nkey store: {shown}");
    }
}

/// The warning for a store several instances can share (PostgreSQL) with
/// no Redis to share their counters: each would enforce limits alone.
fn per_instance_warning(
    keys: Option<&conclave::keys::KeysSettings>,
    shared: Option<&conclave::cluster::Settings>,
) -> Option<String> {
    if shared.is_some() {
        return None;
    }
    let url = &keys?.database_url;
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    postgres.then(|| {
        "general_settings.database_url is PostgreSQL but no Redis is configured: several \
         instances share keys and spend, but rate limits, parallel limits, current-period \
         budgets and cooldowns are counted per instance (set REDIS_URL or \
         router_settings.redis_host)"
            .to_owned()
    })
}

/// Prints the public model names, one per line.
pub async fn models(path: &Path) -> Result<(), String> {
    let (_, gateway, _) = build(path).await?;
    let mut out = std::io::stdout().lock();
    for name in &gateway.model_names {
        let _ = writeln!(out, "{name}");
    }
    Ok(())
}
