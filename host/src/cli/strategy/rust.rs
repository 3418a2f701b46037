//! Rust strategies: the project template and the cargo build.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::TOOL_SETUP;
use super::build::remove_stale;
use super::tools::{capture, run_step};

/// The target a Rust strategy is built for.
const RUST_TARGET: &str = "wasm32-wasip2";

/// The files of a new Rust project (besides the WIT): path, template.
pub(super) const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/rust/src/lib.rs"),
    ),
    // Stored without its dot so it is not this repository's own.
    (
        ".gitignore",
        include_str!("../../../templates/rust/gitignore"),
    ),
    (
        "README.md",
        include_str!("../../../templates/rust/README.md"),
    ),
];

/// The cargo that runs this binary's builds: `$CARGO`, else `cargo`.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Builds the crate in `dir` with cargo and copies its cdylib to
/// `<dir>/<package name>.wasm`.
pub(super) fn build(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let Crate {
        name,
        lib,
        target_dir,
    } = read_crate(dir, &manifest)?;
    ensure_target(dir)?;
    let out = dir.join(format!("{name}.wasm"));
    remove_stale(&out)?;
    run_step(
        Command::new(cargo())
            .args([
                "build",
                "--release",
                "--target",
                RUST_TARGET,
                "--manifest-path",
            ])
            .arg(&manifest)
            .current_dir(dir)
            // A target set for the host must not redirect this build.
            .env_remove("CARGO_BUILD_TARGET"),
        "cargo build",
    )?;
    let artifact = target_dir
        .join(RUST_TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    std::fs::copy(&artifact, &out).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            artifact.display(),
            out.display()
        )
    })?;
    Ok(out)
}

/// What the build needs to know of the crate, from `cargo metadata`.
struct Crate {
    /// The package name: the component is `<name>.wasm`.
    name: String,
    /// The cdylib target's name, as cargo names its artifact.
    lib: String,
    /// Where cargo puts the build.
    target_dir: PathBuf,
}

/// Reads the package of `manifest` and its cdylib target.
fn read_crate(dir: &Path, manifest: &Path) -> Result<Crate, String> {
    let metadata = capture(
        Command::new(cargo())
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(manifest)
            .current_dir(dir),
        "cargo metadata",
    )?;
    let metadata: Value = serde_json::from_slice(&metadata)
        .map_err(|e| format!("cargo metadata printed something unexpected: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let package = packages
        .iter()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest)
        })
        .or_else(|| packages.first())
        .ok_or_else(|| format!("{} has no [package]", manifest.display()))?;
    let name = package["name"].as_str().unwrap_or_default().to_owned();
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| {
            format!(
                "{}: a strategy is a library with `crate-type = [\"cdylib\"]` under [lib]",
                manifest.display()
            )
        })?
        .replace('-', "_");
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    Ok(Crate {
        name,
        lib,
        target_dir,
    })
}

/// Adds the wasm32-wasip2 standard library through rustup when the
/// toolchain `dir` builds with lacks it.
fn ensure_target(dir: &Path) -> Result<(), String> {
    let sysroot = capture(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(dir),
        "rustc",
    )
    .map_err(|e| format!("{TOOL_SETUP}: {e} (install Rust with rustup: https://rustup.rs)"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot).trim());
    if sysroot.join("lib/rustlib").join(RUST_TARGET).exists() {
        return Ok(());
    }
    eprintln!("adding the {RUST_TARGET} target: rustup target add {RUST_TARGET}");
    run_step(
        Command::new("rustup")
            .args(["target", "add", RUST_TARGET])
            .current_dir(dir),
        &format!("rustup target add {RUST_TARGET}"),
    )
    .map_err(|e| format!("{TOOL_SETUP}: {e}"))
}
