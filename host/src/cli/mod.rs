//! The `conclave` command line: the clap definitions and one module per
//! command family. `serve` is the library's server; `check` and `models`
//! load a config offline; `chat` and `compare` are HTTP clients of a
//! running proxy; `strategy` creates and builds strategy components.

mod chat;
mod check;
mod compare;
mod keys;
mod serve;
mod strategy;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use conclave::logging::LogFormat;
pub use serve::ServeArgs;

/// The parsed command line ([`parse`] reads one without a command as
/// `serve`).
#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "An OpenAI-compatible LLM gateway with WebAssembly composite strategies"
)]
pub struct Cli {
    /// Log line format: pretty or json.
    #[arg(
        long,
        global = true,
        default_value = "pretty",
        env = "CONCLAVE_LOG_FORMAT",
        value_parser = log_format
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
        serve.worker_threads()
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
        Command::Serve(args) => serve::serve(args).await,
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

/// The key a LiteLLM setup already exports, for the client commands:
/// `LITELLM_API_KEY`, else `LITELLM_MASTER_KEY`.
fn litellm_key() -> Option<String> {
    ["LITELLM_API_KEY", "LITELLM_MASTER_KEY"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|k| !k.is_empty()))
}

/// A log format from `--log-format` or `CONCLAVE_LOG_FORMAT`, its error
/// naming both (clap's names only the flag).
fn log_format(text: &str) -> Result<LogFormat, String> {
    <LogFormat as clap::ValueEnum>::from_str(text, true).map_err(|_| {
        "not a log format: pretty or json (set by --log-format or CONCLAVE_LOG_FORMAT)".to_owned()
    })
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
                "--telemetry",
                "False",
                "--run_gunicorn",
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
