//! The `conclave` binary: parses the command line and runs the command on a
//! multi-threaded tokio runtime.

use std::process::ExitCode;

use conclave::logging;

mod cli;

/// mimalloc instead of the system allocator: a proxy allocates and frees
/// small buffers on every request from every worker thread, where glibc's
/// malloc spends a sixth of the CPU and contends on its arena locks (see
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::parse();
    let (log_filter, log_warning) = cli.default_log_filter();
    logging::init(cli.log_format, log_filter);
    if let Some(warning) = log_warning {
        tracing::warn!("{warning}");
    }
    let workers = match cli.worker_threads() {
        Ok(workers) => workers,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
