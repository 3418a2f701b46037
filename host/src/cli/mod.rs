//! The `conclave` command line: the clap definitions and one module per
//! command family. `serve` is the library's server; `check` and `models`
//! load a config offline; `chat` and `compare` are HTTP clients of a
//! running proxy; `strategy` creates and builds strategy components.

mod chat;
mod check;
mod compare;
mod keys;
mod strategy;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use conclave::logging::LogFormat;

/// The parsed command line.
#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "An OpenAI-compatible LLM gateway with WebAssembly composite strategies"
)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "CONCLAVE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (default: $CONCLAVE_CONFIG, $LITELLM_CONFIG, $CONFIG_FILE_PATH, ./config/conclave.yaml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (default 0.0.0.0; also $HOST, as LiteLLM's image reads it).
        #[arg(long, env = "CONCLAVE_HOST")]
        host: Option<String>,
        /// Port (default 4000; also $PORT, as LiteLLM's image and most platforms set it).
        #[arg(long, short, env = "CONCLAVE_PORT")]
        port: Option<u16>,
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
        /// On SIGINT/SIGTERM, open streams may go on this long before they
        /// end with a `server_shutting_down` error event and the process exits.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = conclave::server::DEFAULT_SHUTDOWN_GRACE.as_secs(),
            env = "CONCLAVE_SHUTDOWN_GRACE"
        )]
        shutdown_grace: u64,
    },
    /// Validate a config and print its models, groups, providers and profiles.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List the public model names a config serves.
    Models {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Send one chat request to a running proxy and stream the answer.
    Chat {
        /// The proxy's address.
        #[arg(
            long,
            default_value = "http://localhost:4000",
            env = "CONCLAVE_BASE_URL"
        )]
        base_url: String,
        #[arg(long, short)]
        model: String,
        /// Key for a proxy with a master key.
        #[arg(long, env = "CONCLAVE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Hide reasoning / stage traces.
        #[arg(long)]
        no_reasoning: bool,
        /// Ask for one JSON answer instead of a stream.
        #[arg(long)]
        no_stream: bool,
        /// The prompt.
        prompt: String,
    },
    /// Send one prompt to several models at once and print a summary table.
    Compare {
        #[arg(
            long,
            default_value = "http://localhost:4000",
            env = "CONCLAVE_BASE_URL"
        )]
        base_url: String,
        /// Comma-separated model names, e.g. `llama-8b,llama-70b,moa_light`.
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long, env = "CONCLAVE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// The prompt.
        prompt: String,
    },
    /// Manage virtual keys on a running gateway (master key required).
    Keys {
        #[command(flatten)]
        connection: keys::Connection,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Show spend-log rows (or, with --report, spend per day and model group).
    Spend(keys::SpendArgs),
    /// Create or build a strategy component (Rust, Python or JavaScript).
    Strategy {
        #[command(subcommand)]
        command: strategy::StrategyCommand,
    },
}

/// Runs one command; the error is the message printed before exiting with
/// a failure status.
pub async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            config,
            host,
            port,
            watch,
            no_compile_cache,
            persist_admin_changes,
            shutdown_grace,
        } => {
            conclave::server::serve(conclave::server::ServeOptions {
                config_path: config.unwrap_or_else(conclave::config::default_config_path),
                host: host.unwrap_or_else(|| fallback_env("HOST", "0.0.0.0")),
                port: match port {
                    Some(port) => port,
                    None => port_from_env()?,
                },
                watch,
                no_compile_cache,
                persist_admin_changes,
                extra_sinks: Vec::new(),
                shutdown_grace: std::time::Duration::from_secs(shutdown_grace),
            })
            .await
        }
        Command::Check { config } => {
            check::check(&config.unwrap_or_else(conclave::config::default_config_path)).await
        }
        Command::Models { config } => {
            check::models(&config.unwrap_or_else(conclave::config::default_config_path)).await
        }
        Command::Compare {
            base_url,
            models,
            api_key,
            prompt,
        } => {
            let api_key = api_key.filter(|k| !k.is_empty()).or_else(litellm_key);
            compare::compare(&base_url, &models, api_key.as_deref(), &prompt).await
        }
        Command::Chat {
            base_url,
            model,
            api_key,
            no_reasoning,
            no_stream,
            prompt,
        } => {
            chat::chat(chat::ChatArgs {
                base_url,
                model,
                api_key: api_key.filter(|k| !k.is_empty()).or_else(litellm_key),
                show_reasoning: !no_reasoning,
                stream: !no_stream,
                prompt,
            })
            .await
        }
        Command::Keys {
            connection,
            command,
        } => keys::run(connection, command).await,
        Command::Spend(args) => keys::spend(args).await,
        Command::Strategy { command } => strategy::run(command),
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

/// The key a LiteLLM setup already exports, for the client commands:
/// `LITELLM_API_KEY`, else `LITELLM_MASTER_KEY`.
fn litellm_key() -> Option<String> {
    ["LITELLM_API_KEY", "LITELLM_MASTER_KEY"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|k| !k.is_empty()))
}
