//! `hostile`: the release gateway under every attack class of
//! docs/security.md, one after another, while a steady plain load runs.
//! Exits non-zero when any check fails. From the repository root:
//!
//! ```sh
//! cargo build --release -p conclave
//! cargo run -p conclave-bench --bin hostile
//! ```
//!
//! See `conclave_bench::hostile` for what runs and what is checked.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use conclave_bench::hostile::{self, Options};
use conclave_bench::{Result, fail};

#[derive(Parser)]
#[command(
    name = "hostile",
    about = "Attacks the release conclave while a plain load runs, and checks it survives"
)]
struct Args {
    /// The conclave binary (default: <target>/release/conclave).
    #[arg(long)]
    conclave: Option<PathBuf>,
    /// The hostile strategy component (default:
    /// <target>/wasm-strategies/wasm32-wasip2/release/hostile.wasm).
    #[arg(long)]
    strategy: Option<PathBuf>,
    /// Working directory for the config and the gateway's log (default:
    /// <target>/hostile-work).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Run `cargo build --release -p conclave` first.
    #[arg(long)]
    build: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hostile: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `$CARGO_TARGET_DIR`, else the directory this binary was built into.
fn target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .filter(|d| d.join("CACHEDIR.TAG").is_file() || d.join("release").is_dir())
        .unwrap_or_else(|| root.join("target"))
}

fn run(args: Args) -> Result<bool> {
    let root = workspace_root();
    let target = target_dir(&root);
    if args.build {
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        eprintln!("hostile: cargo build --release -p conclave");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "conclave", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .status()?;
        if !status.success() {
            return Err(fail(format!(
                "cargo build --release -p conclave failed ({status})"
            )));
        }
    }
    let opts = Options {
        conclave: args
            .conclave
            .unwrap_or_else(|| target.join("release").join("conclave")),
        strategy: args
            .strategy
            .unwrap_or_else(|| target.join("wasm-strategies/wasm32-wasip2/release/hostile.wasm")),
        work: args.work.unwrap_or_else(|| target.join("hostile-work")),
    };
    for (what, path) in [
        ("conclave", &opts.conclave),
        ("the hostile strategy", &opts.strategy),
    ] {
        if !path.is_file() {
            return Err(fail(format!(
                "{what}: {} does not exist; build it (cargo build --release -p conclave) or pass its path",
                path.display()
            )));
        }
    }
    eprintln!(
        "hostile: {} with {}; {} attacks",
        opts.conclave.display(),
        opts.strategy.display(),
        hostile::ATTACKS.len()
    );
    let summary = hostile::run(&opts)?;
    println!("{}", hostile::report(&summary));
    Ok(summary.problems().is_empty())
}
