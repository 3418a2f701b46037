//! Where the key store lives, how its caches and jobs are sized and which
//! clock its budget periods follow, read from `general_settings`,
//! `litellm_settings.timezone` and `budget_reset_time` (LiteLLM's keys)
//! and `DATABASE_URL`.

use std::path::Path;
use std::time::Duration;

use super::model::budget_period;
use super::reset::ResetClock;
use crate::config::Config;

/// The store when nothing says otherwise: a SQLite file beside the config.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://conclave.db";

/// How the key store is opened.
#[derive(Debug, Clone)]
pub struct KeysSettings {
    /// `sqlite://...` (relative paths already resolved) or `postgres://...`.
    pub database_url: String,
    /// Spend-log rows older than this are deleted; kept forever when `None`.
    pub spend_log_retention: Option<Duration>,
    /// Keep totals and daily aggregates but no per-request rows.
    pub disable_spend_logs: bool,
    /// Longest a resolved key is served from memory without a store read.
    pub cache_ttl: Duration,
    /// Most keys held in memory.
    pub cache_capacity: u64,
    /// Most spend rows waiting for the writer.
    pub buffer_rows: usize,
    /// Longest a spend row waits before its batch is written.
    pub write_interval: Duration,
    /// The clock budget periods end on (`litellm_settings.timezone` and
    /// `budget_reset_time`).
    pub reset_clock: ResetClock,
    /// The store's pool size and wait (`database_connection_pool_limit`,
    /// `database_connection_timeout`).
    pub pool: super::store::PoolSettings,
}

impl KeysSettings {
    /// Defaults around one database URL (taken as it is).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            spend_log_retention: None,
            disable_spend_logs: false,
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 100_000,
            buffer_rows: 50_000,
            write_interval: super::writer::INTERVAL,
            reset_clock: ResetClock::default(),
            pool: super::store::PoolSettings::default(),
        }
    }

    /// The settings for a config, or `None` when the gateway has no master
    /// key (`has_master_key`: from the config or `CONCLAVE_MASTER_KEY`); the
    /// store is not opened then. The URL is `general_settings.database_url`,
    /// else `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`]; a relative SQLite
    /// path is taken beside the config file.
    pub fn from_config(
        config: &Config,
        config_path: &Path,
        has_master_key: bool,
    ) -> Result<Option<Self>, String> {
        if !has_master_key {
            return Ok(None);
        }
        let general = &config.general_settings;
        let mut settings = Self::new(database_url(config, config_path)?);
        settings.reset_clock = ResetClock::of(&config.litellm_settings);
        if let Some(period) = &general.maximum_spend_logs_retention_period {
            settings.spend_log_retention = Some(budget_period(period).map_err(|e| {
                format!(
                    "{}: general_settings.maximum_spend_logs_retention_period: {e}",
                    config_path.display()
                )
            })?);
        }
        settings.disable_spend_logs = general.disable_spend_logs.unwrap_or(false);
        settings.pool = super::store::PoolSettings {
            max_connections: general.database_connection_pool_limit,
            acquire_timeout: general
                .database_connection_timeout
                .map(crate::config::seconds),
        };
        if let Some(every) = general.proxy_batch_write_at {
            settings.write_interval = crate::config::seconds(every);
        }
        Ok(Some(settings))
    }
}

/// The store's URL for a config: `general_settings.database_url`, else
/// `DATABASE_URL`, else [`DEFAULT_DATABASE_URL`]; a relative SQLite path is
/// taken beside the config file.
pub fn database_url(config: &Config, config_path: &Path) -> Result<String, String> {
    let url = config
        .general_settings
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| {
            config
                .env
                .get("DATABASE_URL")
                .filter(|u| !u.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    let url = resolve_url(&url, config_path)
        .and_then(|url| usable_url(&url).map(|()| url))
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    Ok(url)
}

/// Refuses a URL the store could not open, so that `check` says so as
/// `serve` would; the message never repeats the URL (it may hold a password).
fn usable_url(url: &str) -> Result<(), String> {
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !(postgres || url.starts_with("sqlite:")) {
        return Err(
            "general_settings.database_url must start with sqlite:// or postgres:// (or be set in DATABASE_URL)"
                .into(),
        );
    }
    if postgres {
        return reqwest::Url::parse(url).map(drop).map_err(|e| {
            format!("general_settings.database_url is not a usable PostgreSQL URL: {e}")
        });
    }
    // SQLite paths need not be URLs (`sqlite:keys.db`); sqlx's own reading
    // checks the options after `?` as the store will.
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .map(drop)
        .map_err(|e| format!("general_settings.database_url is not a usable SQLite URL: {e}"))
}

/// A SQLite URL with its path made absolute (beside `config_path`) and
/// `mode=rwc` so the file is created on first start; other URLs unchanged.
pub fn resolve_url(url: &str, config_path: &Path) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(url.to_owned());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err("general_settings.database_url: an in-memory SQLite store would lose every key at restart; name a file".into());
    }
    let path = Path::new(path);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(path)
    };
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{}?{query}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings a config with a master key makes.
    fn settings_of(config: &Config) -> KeysSettings {
        KeysSettings::from_config(config, Path::new("/etc/conclave/config.yaml"), true)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_gateways_own_variables_may_come_from_environment_variables() {
        let loaded = crate::config::load_str(
            "environment_variables:\n  DATABASE_URL: postgres://db.internal/keys\n  LITELLM_MASTER_KEY: sk-from-the-config\n  STORE_MODEL_IN_DB: 'True'\n",
            Path::new("/etc/conclave/config.yaml"),
            crate::config::Env::default(),
        )
        .unwrap();
        let config = &loaded.config;
        // An exported variable wins, as it should; only check what it leaves.
        if std::env::var_os("DATABASE_URL").is_none() {
            assert_eq!(
                settings_of(config).database_url,
                "postgres://db.internal/keys"
            );
        }
        if crate::config::MASTER_KEY_VARIABLES
            .iter()
            .all(|name| std::env::var_os(name).is_none())
        {
            let key = crate::gateway::master_key(config);
            assert_eq!(key.as_ref().map(|k| k.expose()), Some("sk-from-the-config"));
        }
        if std::env::var_os("STORE_MODEL_IN_DB").is_none() {
            assert!(crate::admin::store_model_in_db(config));
        }
    }

    #[test]
    fn the_spend_batch_interval_is_litellms_key_in_seconds() {
        let mut config = Config::default();
        assert_eq!(
            settings_of(&config).write_interval,
            crate::keys::writer::INTERVAL
        );
        config.general_settings.proxy_batch_write_at = Some(0.25);
        assert_eq!(
            settings_of(&config).write_interval,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn the_pool_is_sized_by_litellms_database_keys() {
        let mut config = Config::default();
        assert_eq!(
            settings_of(&config).pool,
            super::super::store::PoolSettings::default()
        );
        config.general_settings.database_connection_pool_limit = Some(40);
        config.general_settings.database_connection_timeout = Some(60.0);
        let pool = settings_of(&config).pool;
        assert_eq!(
            (pool.max_connections, pool.acquire_timeout),
            (Some(40), Some(Duration::from_secs(60)))
        );
    }

    #[test]
    fn budgets_end_on_the_litellm_settings_clock_or_utc_midnight() {
        let mut config = Config::default();
        assert_eq!(settings_of(&config).reset_clock, ResetClock::default());
        config.litellm_settings.timezone =
            Some(crate::config::ResetZone::named("US/Eastern").unwrap());
        config.litellm_settings.budget_reset_time =
            Some(crate::config::ResetTime::parse("12:30").unwrap());
        let clock = settings_of(&config).reset_clock;
        assert_eq!(clock.zone.iana_name(), Some("US/Eastern"));
        assert_eq!(clock.time_of_day, 12 * 3600 + 30 * 60);
    }

    #[test]
    fn relative_sqlite_paths_sit_beside_the_config() {
        let url = resolve_url(
            "sqlite://conclave.db",
            Path::new("/etc/conclave/config.yaml"),
        )
        .unwrap();
        assert_eq!(url, "sqlite:///etc/conclave/conclave.db?mode=rwc");
        let url = resolve_url("sqlite:///var/lib/c.db", Path::new("config.yaml")).unwrap();
        assert_eq!(url, "sqlite:///var/lib/c.db?mode=rwc");
        assert_eq!(
            resolve_url("postgres://u@h/db", Path::new("c.yaml")).unwrap(),
            "postgres://u@h/db"
        );
        assert!(resolve_url("sqlite::memory:", Path::new("c.yaml")).is_err());
    }

    #[test]
    fn a_url_the_store_could_not_open_is_refused_before_it_tries() {
        assert!(usable_url("sqlite:///var/lib/c.db?mode=rwc").is_ok());
        assert!(usable_url("postgres://u:pw@h:5432/db").is_ok());
        for bad in [
            "sqlite:///var/lib/c.db?mode=rwc&flavour=x",
            "postgres://u:pw@h:port/db",
            "mysql://u:pw@h/db",
        ] {
            let e = usable_url(bad).unwrap_err();
            assert!(
                e.contains("database_url") && !e.contains("pw"),
                "{bad}: {e}"
            );
        }
    }
}
