//! The dashboard's own JavaScript tests (the trace-to-timeline layout and
//! the parsing of strategy stage texts), run with Node's built-in test
//! runner. Skipped with a printed reason where `node` is missing; required
//! under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use conclave_e2e::services::unavailable;

#[test]
fn the_timeline_layout_passes_its_javascript_tests() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/ui/tests");
    let version = Command::new("node").arg("--version").output();
    let Some(version) = version.ok().filter(|v| v.status.success()) else {
        unavailable(
            "dashboard_js",
            "node is not installed (the dashboard's JavaScript tests need Node.js 18 or newer)",
        );
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        unavailable("dashboard_js", &format!("node {version} is older than 18"));
        return;
    }
    let mut files: Vec<_> = std::fs::read_dir(&tests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no JavaScript tests in {}",
        tests.display()
    );
    let run = Command::new("node")
        .arg("--test")
        .args(&files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the dashboard's JavaScript tests failed:\n{report}"
    );
    assert!(report.contains("# fail 0"), "{report}");
}
