//! The `conclave` command line: the clap definitions and one module per
//! command family. `serve` is the library's server; `check` and `models`
//! load a config offline; `chat` and `compare` are HTTP clients of a
//! running proxy; `strategy` creates and builds strategy components.

mod chat;
mod check;
mod compare;
mod keys;
mod strategy;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use conclave::logging::LogFormat;

/// The parsed command line ([`parse`] reads one without a command as
/// `serve`).
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
    /// Log conclave's debug lines too (LiteLLM's flag; also
    /// LITELLM_LOG=DEBUG). RUST_LOG, when set, decides instead.
    #[arg(
        long = "detailed_debug",
        visible_alias = "detailed-debug",
        global = true
    )]
    pub detailed_debug: bool,
    /// LiteLLM's `--debug`: info lines (conclave's default; it outranks LITELLM_LOG).
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the process's command line. One without a command serves, so a
/// LiteLLM command line (`litellm --config F --port P --detailed_debug`)
/// runs unchanged with `conclave` in its place.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `conclave` alone, with no config where the default path points, asks
    // for the commands rather than to serve nothing.
    if args.len() == 1 && !conclave::config::default_config_path().exists() {
        return Cli::parse_from(args);
    }
    Cli::parse_from(with_default_command(args))
}

/// `args` with `serve` put where the command belongs when the first
/// argument after the global options is an option (or there is none);
/// `--help` and `--version` stay the program's own.
fn with_default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut at = 1;
    while let Some(arg) = args.get(at).map(|a| a.to_string_lossy().into_owned()) {
        match arg.as_str() {
            // Without its value, clap says so (rather than reading `serve` as one).
            "--log-format" if at + 1 >= args.len() => return args,
            "--log-format" => at += 2,
            "--detailed_debug" | "--detailed-debug" | "--debug" => at += 1,
            a if a.starts_with("--log-format=") => at += 1,
            "-h" | "--help" | "-V" | "--version" => return args,
            a if a.starts_with('-') => break,
            _ => return args,
        }
    }
    args.insert(at.min(args.len()), OsString::from("serve"));
    args
}

impl Cli {
    /// Worker threads for the runtime when the command serves and a number
    /// was asked for (`--num_workers`, `CONCLAVE_NUM_WORKERS`, else LiteLLM's
    /// `NUM_WORKERS`); `None` leaves tokio's default of one per core.
    pub fn worker_threads(&self) -> Result<Option<usize>, String> {
        let Command::Serve(serve) = &self.command else {
            return Ok(None);
        };
        match serve.num_workers {
            Some(workers) => Ok(Some(usize::from(workers))),
            None => workers_from_env(),
        }
    }

    /// The log filter to use when `RUST_LOG` is not set, and a warning to
    /// log once logging runs (an unknown `LITELLM_LOG` level).
    pub fn default_log_filter(&self) -> (&'static str, Option<String>) {
        if self.detailed_debug {
            return (DEBUG_FILTER, None);
        }
        if self.debug {
            return ("info", None);
        }
        let Some(level) = std::env::var("LITELLM_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
        else {
            return ("info", None);
        };
        match level.trim().to_ascii_uppercase().as_str() {
            "DEBUG" => (DEBUG_FILTER, None),
            "INFO" => ("info", None),
            "WARN" | "WARNING" => ("warn", None),
            "ERROR" | "CRITICAL" => ("error", None),
            _ => (
                "info",
                Some(format!(
                    "LITELLM_LOG={level:?} is not a level (DEBUG, INFO, WARNING, ERROR); logging at info"
                )),
            ),
        }
    }
}

/// `--detailed_debug`: conclave's own debug lines, not its libraries'.
const DEBUG_FILTER: &str = "info,conclave=debug";

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
    #[arg(long, short, env = "CONCLAVE_PORT")]
    port: Option<u16>,
    /// Request worker threads (default: one per core; also $NUM_WORKERS).
    /// LiteLLM's flag starts worker processes; one conclave process uses
    /// every core through its threads.
    #[arg(
        long = "num_workers",
        visible_alias = "num-workers",
        env = "CONCLAVE_NUM_WORKERS",
        value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS)
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
    /// On SIGINT/SIGTERM, open streams may go on this long before they
    /// end with a `server_shutting_down` error event and the process exits.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = conclave::server::DEFAULT_SHUTDOWN_GRACE.as_secs(),
        env = "CONCLAVE_SHUTDOWN_GRACE"
    )]
    shutdown_grace: u64,
}

/// The most worker threads `--num_workers` may ask for.
const MAX_WORKERS: i64 = 1024;

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy (also what `conclave` does with no command).
    Serve(ServeArgs),
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
        Command::Serve(args) => serve(args).await,
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

/// Runs the proxy with `args`.
async fn serve(args: ServeArgs) -> Result<(), String> {
    let config_path = match &args.model {
        Some(model) => one_model_config(model, args.api_base.as_deref(), args.alias.as_deref())?,
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

/// Writes the config of `--model` (one deployment, named `alias` or as
/// written) to a file of this process's own in the temporary directory,
/// which the server then loads (and reloads) like any config.
fn one_model_config(
    model: &str,
    api_base: Option<&str>,
    alias: Option<&str>,
) -> Result<PathBuf, String> {
    let mut params = serde_yaml::Mapping::new();
    params.insert("model".into(), model.into());
    if let Some(api_base) = api_base {
        params.insert("api_base".into(), api_base.into());
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
    let path = std::env::temp_dir().join(format!("conclave-model-{}.yaml", std::process::id()));
    std::fs::write(&path, text)
        .map_err(|e| format!("cannot write the --model config to {}: {e}", path.display()))?;
    Ok(path)
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

/// The key a LiteLLM setup already exports, for the client commands:
/// `LITELLM_API_KEY`, else `LITELLM_MASTER_KEY`.
fn litellm_key() -> Option<String> {
    ["LITELLM_API_KEY", "LITELLM_MASTER_KEY"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|k| !k.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        with_default_command(args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_command_line_without_a_command_serves() {
        assert_eq!(
            read(&["conclave", "--config", "c.yaml", "--port", "4000"]),
            ["conclave", "serve", "--config", "c.yaml", "--port", "4000"]
        );
        assert_eq!(
            read(&[
                "conclave",
                "--log-format",
                "json",
                "--detailed_debug",
                "-c",
                "c.yaml"
            ]),
            [
                "conclave",
                "--log-format",
                "json",
                "--detailed_debug",
                "serve",
                "-c",
                "c.yaml"
            ]
        );
        assert_eq!(read(&["conclave"]), ["conclave", "serve"]);
        assert_eq!(
            read(&["conclave", "--log-format"]),
            ["conclave", "--log-format"]
        );
        assert_eq!(
            read(&["conclave", "--debug"]),
            ["conclave", "--debug", "serve"]
        );
    }

    #[test]
    fn commands_help_and_version_are_left_as_they_are() {
        for args in [
            &["conclave", "--log-format=json", "check", "-c", "c.yaml"][..],
            &["conclave", "serve", "--port", "1"],
            &["conclave", "--help"],
            &["conclave", "-V"],
            &["conclave", "chekc"],
        ] {
            assert_eq!(read(args), args);
        }
    }

    #[test]
    fn a_litellm_command_line_parses_as_serve() {
        let cli = Cli::try_parse_from(with_default_command(
            [
                "conclave",
                "--config",
                "c.yaml",
                "--num_workers",
                "3",
                "--detailed_debug",
            ]
            .into_iter()
            .map(OsString::from)
            .collect(),
        ))
        .unwrap();
        assert!(cli.detailed_debug);
        assert!(matches!(cli.command, Command::Serve(_)));
        assert_eq!(cli.worker_threads().unwrap(), Some(3));
    }
}
