//! `serve`'s options and how they become the server's: the config (or
//! LiteLLM's one-model quick start), the listen address and the worker
//! threads, each also read from the variables LiteLLM's image sets.

use std::path::PathBuf;

/// Options of `serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Config file (default: $CONCLAVE_CONFIG, $LITELLM_CONFIG, $CONFIG_FILE_PATH, ./config/conclave.yaml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// LiteLLM's quick start: serve this one model (`provider/model`)
    /// without a config file.
    #[arg(long, short, conflicts_with = "config")]
    model: Option<String>,
    /// The api_base of `--model`.
    #[arg(long = "api_base", visible_alias = "api-base", requires = "model")]
    api_base: Option<String>,
    /// The name clients ask `--model` by (default: the model as written).
    #[arg(long, requires = "model")]
    alias: Option<String>,
    /// Address to listen on (default 0.0.0.0; also $HOST, as LiteLLM's image reads it).
    #[arg(long, env = "CONCLAVE_HOST")]
    host: Option<String>,
    /// Port (default 4000; also $PORT, as LiteLLM's image and most platforms set it).
    #[arg(long, short, env = "CONCLAVE_PORT", value_parser = port_number)]
    port: Option<u16>,
    /// Request worker threads (default: one per core; also $NUM_WORKERS).
    /// LiteLLM's flag starts worker processes; one conclave process uses
    /// every core through its threads.
    #[arg(
        long = "num_workers",
        visible_alias = "num-workers",
        env = "CONCLAVE_NUM_WORKERS",
        value_parser = worker_count
    )]
    num_workers: Option<u16>,
    /// Reload when the config, its .env or a strategy component changes
    /// (also general_settings.hot_reload: true). SIGHUP and POST
    /// /admin/reload always reload.
    #[arg(long)]
    watch: bool,
    /// Compile strategy components on every start instead of caching them
    /// on disk (also CONCLAVE_NO_COMPILE_CACHE=1).
    #[arg(long)]
    no_compile_cache: bool,
    /// Keep models registered through /admin/models in FILE across
    /// restarts (loaded at start, rewritten after each change).
    #[arg(long, value_name = "FILE")]
    persist_admin_changes: Option<PathBuf>,
    /// LiteLLM's usage telemetry switch (`--telemetry False`), accepted
    /// so LiteLLM command lines run unchanged: conclave sends no telemetry.
    #[arg(long = "telemetry", hide = true, value_name = "BOOL", value_parser = litellm_bool)]
    _telemetry: Option<bool>,
    /// LiteLLM's choice of Python server (`--run_gunicorn`,
    /// `--run_hypercorn`), accepted so LiteLLM command lines run
    /// unchanged: conclave is its own server.
    #[arg(long = "run_gunicorn", alias = "run_hypercorn", hide = true)]
    _run_gunicorn: bool,
    /// On SIGINT/SIGTERM, open streams may go on this long before they
    /// end with a `server_shutting_down` error event and the process exits.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = conclave::server::DEFAULT_SHUTDOWN_GRACE.as_secs(),
        env = "CONCLAVE_SHUTDOWN_GRACE",
        value_parser = grace_seconds
    )]
    shutdown_grace: u64,
}

/// A port from `--port` or `CONCLAVE_PORT`, its error naming both (clap's
/// names only the flag, though the value may come from the variable).
fn port_number(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| "not a port from 0 to 65535 (set by --port or CONCLAVE_PORT)".to_owned())
}

/// Seconds from `--shutdown-grace` or `CONCLAVE_SHUTDOWN_GRACE`, its error
/// naming both.
fn grace_seconds(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        "not a whole number of seconds (set by --shutdown-grace or CONCLAVE_SHUTDOWN_GRACE)"
            .to_owned()
    })
}

/// A boolean as LiteLLM's command line writes it (`True`, `False`, any case).
fn litellm_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("not a boolean: True or False".to_owned()),
    }
}

/// The most worker threads `--num_workers` may ask for.
const MAX_WORKERS: i64 = 1024;

/// A worker count from `--num_workers` or `CONCLAVE_NUM_WORKERS`, its
/// error naming both.
fn worker_count(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|n| (1..=MAX_WORKERS).contains(&i64::from(*n)))
        .ok_or_else(|| {
            format!(
                "not a worker count from 1 to {MAX_WORKERS} \
                 (set by --num_workers or CONCLAVE_NUM_WORKERS)"
            )
        })
}

impl ServeArgs {
    /// The worker threads asked for: `--num_workers` (or
    /// `CONCLAVE_NUM_WORKERS`), else LiteLLM's `NUM_WORKERS`.
    pub fn worker_threads(&self) -> Result<Option<usize>, String> {
        match self.num_workers {
            Some(workers) => Ok(Some(usize::from(workers))),
            None => workers_from_env(),
        }
    }
}

/// Runs the proxy with `args`.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    // Kept until the server stops, when its folder is removed.
    let one_model = match &args.model {
        Some(model) => Some(one_model_config(
            model,
            args.api_base.as_deref(),
            args.alias.as_deref(),
        )?),
        None => None,
    };
    let config_path = match &one_model {
        Some(written) => written.file.clone(),
        None => args
            .config
            .unwrap_or_else(conclave::config::default_config_path),
    };
    conclave::server::serve(conclave::server::ServeOptions {
        config_path,
        host: args.host.unwrap_or_else(|| fallback_env("HOST", "0.0.0.0")),
        port: match args.port {
            Some(port) => port,
            None => port_from_env()?,
        },
        watch: args.watch,
        no_compile_cache: args.no_compile_cache,
        persist_admin_changes: args.persist_admin_changes,
        extra_sinks: Vec::new(),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace),
    })
    .await
}

/// The config `--model` wrote, in a folder of its own that is removed
/// when this is dropped.
struct OneModelConfig {
    folder: PathBuf,
    file: PathBuf,
}

impl Drop for OneModelConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Writes the config of `--model` (one deployment, named `alias` or as
/// written), which the server then loads (and reloads) like any config.
/// The temporary directory is shared: the file goes in a new folder only
/// this user can enter, made under an unguessable name (never one that
/// exists, which could be a link to another file).
fn one_model_config(
    model: &str,
    api_base: Option<&str>,
    alias: Option<&str>,
) -> Result<OneModelConfig, String> {
    let mut params = serde_yaml::Mapping::new();
    params.insert("model".into(), model.into());
    if let Some(api_base) = api_base {
        params.insert("api_base".into(), api_base.into());
    }
    // A config file may list a deployment conclave skips; the one model of
    // `--model` must be served, or the gateway would start with none.
    let parsed = serde_yaml::from_value::<conclave::config::LitellmParams>(params.clone().into());
    if let Ok(parsed) = parsed
        && !parsed.is_served()
    {
        return Err(format!(
            "--model {model}: provider {:?} is not supported (supported: {}; any \
             OpenAI-compatible server works as openai/<model> with --api_base)",
            parsed.provider(),
            conclave::providers::table::names()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut entry = serde_yaml::Mapping::new();
    entry.insert("model_name".into(), alias.unwrap_or(model).into());
    entry.insert("litellm_params".into(), params.into());
    let mut config = serde_yaml::Mapping::new();
    config.insert(
        "model_list".into(),
        serde_yaml::Value::Sequence(vec![entry.into()]),
    );
    let text = serde_yaml::to_string(&config).map_err(|e| e.to_string())?;
    let folder = std::env::temp_dir().join(format!(
        "conclave-model-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&folder).map_err(|e| {
        format!(
            "cannot make a folder for the --model config at {}: {e}",
            folder.display()
        )
    })?;
    let written = OneModelConfig {
        file: folder.join("config.yaml"),
        folder,
    };
    std::fs::write(&written.file, text).map_err(|e| {
        format!(
            "cannot write the --model config to {}: {e}",
            written.file.display()
        )
    })?;
    Ok(written)
}

/// The worker count `$NUM_WORKERS` names (LiteLLM's variable), if any; a
/// value that is not a count is an error naming it.
fn workers_from_env() -> Result<Option<usize>, String> {
    let Some(text) = std::env::var("NUM_WORKERS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(usize::try_from(n).ok()),
        _ => Err(format!(
            "NUM_WORKERS={text:?} is not a worker count (1 to {MAX_WORKERS}); \
             set --num_workers or CONCLAVE_NUM_WORKERS"
        )),
    }
}

/// `name` from the environment when set and not empty, else `default`.
fn fallback_env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The port `$PORT` names, else 4000; a `$PORT` that is not a port is an
/// error naming it rather than a silent default.
fn port_from_env() -> Result<u16, String> {
    match std::env::var("PORT").ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(4000),
        Some(text) => text.trim().parse().map_err(|_| {
            format!(
                "PORT={text:?} is not a port number (0 to 65535, 0 for any free port); \
                 set --port or CONCLAVE_PORT"
            )
        }),
    }
}
