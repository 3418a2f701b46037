//! JavaScript strategies: the project template and the npm build
//! (componentize-js, pinned in the template's package.json).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::TOOL_SETUP;
use super::build::{dir_name, remove_stale, up_to_date};
use super::tools::{run_step, runs, wit_dir};

/// The componentize-js release the JavaScript template is written for.
pub(super) const COMPONENTIZE_JS: &str = "0.23.0";

/// The files of a new JavaScript project (besides the WIT): path, template.
pub(super) const TEMPLATE: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../templates/js/package.json"),
    ),
    (
        "strategy.js",
        include_str!("../../../templates/js/strategy.js"),
    ),
    ("build.mjs", include_str!("../../../templates/js/build.mjs")),
    // Stored without its dot so it is not this repository's own.
    (
        ".gitignore",
        include_str!("../../../templates/js/gitignore"),
    ),
    ("README.md", include_str!("../../../templates/js/README.md")),
];

/// The npm command of this platform.
fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

/// Runs `npm run build`; the flag tells whether it was (re)built.
pub(super) fn build(dir: &Path, force: bool) -> Result<(PathBuf, bool), String> {
    let manifest = dir.join("package.json");
    let package: Value = std::fs::read(&manifest)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let name = match package["name"].as_str() {
        // A scoped package `@scope/name` builds `name.wasm`.
        Some(n) if !n.is_empty() => n.rsplit('/').next().unwrap_or(n).to_owned(),
        _ => dir_name(dir)?,
    };
    if package["scripts"]["build"].as_str().is_none() {
        return Err(format!(
            "{}: no `build` script; conclave runs `npm run build`, which must write {name}.wasm beside package.json (see build.mjs of `conclave strategy new --lang js`)",
            manifest.display()
        ));
    }
    if !runs("node") || !runs(npm()) {
        return Err(format!(
            "{TOOL_SETUP}: Node.js and npm are needed to build JavaScript strategies (node or npm was not found)"
        ));
    }
    if needs_npm_install(dir) {
        eprintln!("installing npm packages: npm install");
        run_step(
            Command::new(npm())
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(dir),
            &format!("npm install in {}", dir.display()),
        )
        .map_err(|e| format!("{TOOL_SETUP}: {e}"))?;
    }
    let wit = wit_dir(dir)?;
    let out = dir.join(format!("{name}.wasm"));
    let installed = dir.join("node_modules/.package-lock.json");
    if !force && up_to_date(dir, &out, &[installed, wit.join("strategy.wit")]) {
        return Ok((out, false));
    }
    remove_stale(&out)?;
    run_step(
        Command::new(npm())
            .args(["run", "--silent", "build"])
            .current_dir(dir)
            .env("CONCLAVE_WIT_DIR", &wit),
        "npm run build",
    )?;
    // The previous output was removed above: whatever is there is new.
    if !out.is_file() {
        return Err(format!(
            "`npm run build` succeeded but did not write {}; the build script must write <package name>.wasm beside package.json",
            out.display()
        ));
    }
    Ok((out, true))
}

/// Whether `npm install` has not run since package.json last changed.
fn needs_npm_install(dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&dir.join("node_modules/.package-lock.json")),
        modified(&dir.join("package.json")),
    ) {
        (Some(installed), Some(manifest)) => manifest > installed,
        _ => true,
    }
}
