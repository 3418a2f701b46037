//! Builds the strategy components in strategies/ for wasm32-wasip2 (adding
//! the target through rustup when it is missing) and places them in OUT_DIR,
//! where the built-ins are embedded from.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Components the host embeds (the one list of built-in strategies: the
/// host's table is generated from it); the rest of the workspace (test
/// probes) is built too, for the end-to-end tests to load from disk.
const EMBEDDED: &[&str] = &[
    "passthrough",
    "moa",
    "council",
    "self-consistency",
    "best-of-n",
    "cascade",
];
const TARGET: &str = "wasm32-wasip2";

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return fail("CARGO_MANIFEST_DIR is not set");
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return fail("OUT_DIR is not set");
    };
    let root = manifest_dir.join("..");
    let strategies = root.join("strategies");
    println!(
        "cargo:rerun-if-changed={}",
        strategies.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        strategies.join("Cargo.lock").display()
    );
    for dir in ["sdk", "testing"].iter().chain(EMBEDDED) {
        println!("cargo:rerun-if-changed={}", strategies.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=CONCLAVE_WASM_TARGET_DIR");

    if let Err(e) = ensure_target() {
        return fail(&e);
    }
    let target_dir = wasm_target_dir(&root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(strategies.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The host's own flags and target must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return fail(&format!("building the strategy components failed ({s})")),
        Err(e) => {
            return fail(&format!(
                "cannot run cargo to build the strategy components: {e}"
            ));
        }
    }
    let built = target_dir.join(TARGET).join("release");
    let dest = out_dir.join("strategies");
    if let Err(e) = std::fs::create_dir_all(&dest) {
        return fail(&format!("cannot create {}: {e}", dest.display()));
    }
    for name in EMBEDDED {
        // Cargo names a cdylib after its lib target: `-` becomes `_`.
        let from = built.join(format!("{}.wasm", name.replace('-', "_")));
        if let Err(e) = std::fs::copy(&from, dest.join(format!("{name}.wasm"))) {
            return fail(&format!("cannot copy {}: {e}", from.display()));
        }
    }
    let table = out_dir.join("builtins.rs");
    if let Err(e) = std::fs::write(&table, builtin_table(&dest)) {
        return fail(&format!("cannot write {}: {e}", table.display()));
    }
    ExitCode::SUCCESS
}

/// The Rust table `strategy::builtin` includes: every embedded component by
/// name, so the list of built-ins is the one above.
fn builtin_table(dir: &Path) -> String {
    let mut out = String::from(
        "/// Every built-in strategy: its name and its embedded component.\n\
         pub const BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for name in EMBEDDED {
        let path = dir.join(format!("{name}.wasm")).display().to_string();
        out.push_str(&format!("    ({name:?}, include_bytes!({path:?})),\n"));
    }
    out.push_str("];\n");
    out
}

/// Where the strategy workspace builds: beside the host's target directory,
/// so `cargo clean` clears it and tests can find the test components.
fn wasm_target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCLAVE_WASM_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm-strategies")
}

/// Adds the wasm32-wasip2 standard library through rustup when it is missing.
fn ensure_target() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map_err(|e| {
            format!("the {TARGET} target is missing and rustup could not be run to add it: {e}")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {TARGET}` failed ({status})"))
    }
}
