//! The binary's offline commands. Having an integration test here also makes
//! `cargo test --workspace` build the `conclave` binary that the end-to-end
//! tests in tests/ drive.

use std::process::Command;

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_the_demo_config() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/demo.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["check", "--config", demo])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo-fast"), "{stdout}");
}
