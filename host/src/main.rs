//! The `conclave` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conclave::cli;
use conclave::logging::{self, LogFormat};

mod scaffold;

/// mimalloc instead of the system allocator: a proxy allocates and frees
/// small buffers on every request from every worker thread, where glibc's
/// malloc spends a sixth of the CPU and contends on its arena locks (see
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "An OpenAI-compatible LLM gateway with WebAssembly composite strategies"
)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "CONCLAVE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (default: $CONCLAVE_CONFIG, $LITELLM_CONFIG, $CONFIG_FILE_PATH, ./config/conclave.yaml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "0.0.0.0", env = "CONCLAVE_HOST")]
        host: String,
        #[arg(long, short, default_value_t = 4000, env = "CONCLAVE_PORT")]
        port: u16,
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
    /// Create or build a strategy component (Rust, Python or JavaScript).
    Strategy {
        #[command(subcommand)]
        command: scaffold::StrategyCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve {
                config,
                host,
                port,
                watch,
                no_compile_cache,
                persist_admin_changes,
            } => {
                conclave::server::serve(conclave::server::ServeOptions {
                    config_path: config.unwrap_or_else(conclave::config::default_config_path),
                    host,
                    port,
                    watch,
                    no_compile_cache,
                    persist_admin_changes,
                })
                .await
            }
            Command::Check { config } => {
                cli::check(&config.unwrap_or_else(conclave::config::default_config_path)).await
            }
            Command::Models { config } => {
                cli::models(&config.unwrap_or_else(conclave::config::default_config_path)).await
            }
            Command::Compare {
                base_url,
                models,
                api_key,
                prompt,
            } => cli::compare(&base_url, &models, api_key.as_deref(), &prompt).await,
            Command::Chat {
                base_url,
                model,
                api_key,
                no_reasoning,
                no_stream,
                prompt,
            } => {
                cli::chat(cli::ChatArgs {
                    base_url,
                    model,
                    api_key,
                    show_reasoning: !no_reasoning,
                    stream: !no_stream,
                    prompt,
                })
                .await
            }
            Command::Strategy { command } => scaffold::run(command),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
