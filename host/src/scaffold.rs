//! `conclave strategy new` and `conclave strategy build`: create a strategy
//! project in Rust, Python or JavaScript that builds and runs as it is, and
//! build any such project into a component checked against the strategy
//! world this binary serves.
//!
//! A project carries its own copy of the WIT (`wit/strategy.wit`, embedded in
//! the binary), so it needs nothing from conclave's repository. Building
//! installs what the language needs: the `wasm32-wasip2` target through
//! rustup, componentize-py in a venv under the user cache directory, or the
//! project's npm packages (componentize-js). The result is `<dir>/<name>.wasm`,
//! compiled once with the host's engine so a component that does not match
//! the world is refused at build time, and so `conclave serve` later loads it
//! from the compile cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::{Subcommand, ValueEnum};
use conclave::strategy::StrategyEngine;
use serde_json::Value;

/// The strategy contract, as served by this binary.
pub const WIT: &str = include_str!("../../wit/strategy.wit");
/// The world a strategy targets.
const WORLD: &str = "strategy";
/// The package the world belongs to, for messages.
const PACKAGE: &str = "conclave:strategy@0.1.0";
const RUST_TARGET: &str = "wasm32-wasip2";
/// The componentize-py release the Python template is written for.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The componentize-js release the JavaScript template is written for.
const COMPONENTIZE_JS: &str = "0.23.0";
/// Environment variable that moves the tool installs (default: the user cache dir).
const TOOLS_ENV: &str = "CONCLAVE_TOOLS_DIR";
/// Prefix of errors about installing a language's tools (not the strategy's own).
pub const TOOL_SETUP: &str = "tool setup failed";

/// `conclave strategy ...`.
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Create a strategy project that builds and runs as it is.
    New {
        /// The strategy's name: lowercase letters, digits and `-`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The directory to create (default: ./<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a strategy project (Rust, Python or JavaScript, detected from
    /// its files) into <dir>/<name>.wasm, installing the tools it needs, and
    /// check the component against the strategy world. Prints its path.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Build even when the component is newer than every source file
        /// (Python and JavaScript; cargo decides for Rust).
        #[arg(long)]
        force: bool,
    },
}

/// A strategy language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// Runs a `conclave strategy` command.
pub fn run(command: StrategyCommand) -> Result<(), String> {
    match command {
        StrategyCommand::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            create(&name, lang, &dir)?;
            eprintln!(
                "created the {} strategy {name:?} in {}\n\nnext:\n  conclave strategy build {}\n\nthen register {name}.wasm in a config (see {}).",
                lang.label(),
                dir.display(),
                shell_path(&dir),
                dir.join("README.md").display()
            );
            Ok(())
        }
        StrategyCommand::Build { dir, force } => {
            let out = build(&dir, force)?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

fn shell_path(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(' ') { format!("{s:?}") } else { s }
}

// ---------------------------------------------------------------------------
// strategy new

/// Writes a new project for `name` in `lang` into `dir` (created; must be
/// empty if it exists). Returns the files written, relative to `dir`.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<&'static str>, String> {
    check_name(name)?;
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} already exists and is not empty; choose another --dir",
                dir.display()
            ));
        }
    }
    let files = template(lang);
    for (path, content) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, render(content, name))
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    Ok(files.iter().map(|(p, _)| *p).collect())
}

/// A strategy name must work as a crate, npm package and file name.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "invalid strategy name {name:?}: use lowercase letters, digits and `-`, starting with a letter (e.g. `my-strategy`)"
        ));
    }
    if [
        "test",
        "core",
        "std",
        "alloc",
        "proc-macro",
        "self",
        "crate",
    ]
    .contains(&name)
    {
        return Err(format!(
            "{name:?} is reserved by Rust's build tools; choose another name"
        ));
    }
    Ok(())
}

fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{componentize_py}}", COMPONENTIZE_PY)
        .replace("{{componentize_js}}", COMPONENTIZE_JS)
}

/// The files of a new project: path and template.
fn template(lang: Lang) -> Vec<(&'static str, String)> {
    let mut files = vec![("wit/strategy.wit", WIT.to_owned())];
    let readme = |build: &str, layout: &str| [README_HEAD, layout, build, README_TAIL].concat();
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml", RUST_CARGO.to_owned()));
            files.push(("src/lib.rs", RUST_LIB.to_owned()));
            files.push((".gitignore", "/target/\n*.wasm\nCargo.lock\n".to_owned()));
            files.push(("README.md", readme(RUST_BUILD, RUST_LAYOUT)));
        }
        Lang::Python => {
            files.push(("app.py", PYTHON_APP.to_owned()));
            files.push(("pyproject.toml", PYTHON_PROJECT.to_owned()));
            files.push((
                ".gitignore",
                "*.wasm\n__pycache__/\n.venv/\n# componentize-py bindings (for editors)\nwit_world/\ncomponentize_py_*\npoll_loop.py\n"
                    .to_owned(),
            ));
            files.push(("README.md", readme(PYTHON_BUILD, PYTHON_LAYOUT)));
        }
        Lang::Js => {
            files.push(("package.json", JS_PACKAGE.to_owned()));
            files.push(("strategy.js", JS_STRATEGY.to_owned()));
            files.push(("build.mjs", JS_BUILD.to_owned()));
            files.push((".gitignore", "node_modules/\n*.wasm\n".to_owned()));
            files.push(("README.md", readme(JS_BUILD_DOC, JS_LAYOUT)));
        }
    }
    files
}

// ---------------------------------------------------------------------------
// strategy build

/// Builds the project in `dir` into `<dir>/<name>.wasm` and checks it
/// against the strategy world. Returns the component's path. Unless `force`,
/// a Python or JavaScript component newer than all its inputs is kept.
pub fn build(dir: &Path, force: bool) -> Result<PathBuf, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot open the strategy directory {}: {e}", dir.display()))?;
    let lang = detect(&dir)?;
    eprintln!(
        "building the {} strategy in {}",
        lang.label(),
        dir.display()
    );
    let started = Instant::now();
    let (out, rebuilt) = match lang {
        Lang::Rust => (build_rust(&dir)?, true),
        Lang::Python => build_python(&dir, force)?,
        Lang::Js => build_js(&dir, force)?,
    };
    let bytes = std::fs::read(&out)
        .map_err(|e| format!("the build did not leave {}: {e}", out.display()))?;
    if rebuilt {
        eprintln!(
            "built {} ({:.1} MB) in {:.1} s",
            out.display(),
            bytes.len() as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "{} is up to date (newer than every source file; --force rebuilds it)",
            out.display()
        );
    }
    let (took, cached) = check(&out, &bytes)?;
    eprintln!(
        "checked: it implements {PACKAGE} world `{WORLD}` ({} in {:.1} s{})",
        if cached {
            "loaded from the compile cache"
        } else {
            "compiled"
        },
        took.as_secs_f64(),
        if cached {
            ""
        } else {
            "; cached for `conclave serve`"
        }
    );
    Ok(out)
}

/// Which language a project is written in, from its files.
fn detect(dir: &Path) -> Result<Lang, String> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Js)
    } else if dir.join("app.py").is_file() || dir.join("pyproject.toml").is_file() {
        Ok(Lang::Python)
    } else {
        Err(format!(
            "{} is not a strategy project: expected Cargo.toml (Rust), app.py or pyproject.toml (Python) or package.json (JavaScript); `conclave strategy new` creates one",
            dir.display()
        ))
    }
}

/// Compiles the component with the host's engine (and its compile cache, as
/// `conclave serve` would). Returns how long it took and whether the
/// compiled code came from the cache.
fn check(out: &Path, bytes: &[u8]) -> Result<(Duration, bool), String> {
    let cache = conclave::compile_cache::resolve_dir(false, None, out);
    StrategyEngine::use_compile_cache(cache)?;
    let engine = StrategyEngine::shared()?;
    let compiled = engine
        .compile(&out.display().to_string(), bytes)
        .map_err(|e| {
            format!("the build wrote {}, but conclave cannot run it as a strategy ({PACKAGE}, world `{WORLD}`): {e}", out.display())
        })?;
    Ok((compiled.load_time, compiled.from_cache))
}

/// Removes a previous build's output so a build that writes nothing fails.
fn remove_stale(out: &Path) -> Result<(), String> {
    match std::fs::remove_file(out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot replace {}: {e}", out.display())),
    }
}

/// Whether `out` exists and is newer than `inputs` and every file of the
/// project (installed packages, build output and caches left out).
fn up_to_date(dir: &Path, out: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    let mut newest: Option<SystemTime> = None;
    for input in inputs {
        match modified(input) {
            Some(t) => newest = newest.max(Some(t)),
            None => return false,
        }
    }
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((at, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            return false;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                return false;
            };
            if kind.is_dir() {
                let skipped = name.starts_with('.')
                    || ["node_modules", "target", "__pycache__", "venv"].contains(&name.as_ref());
                if !skipped && depth < 8 {
                    pending.push((path, depth + 1));
                }
            } else if !name.ends_with(".wasm") {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest.is_some_and(|n| n < built)
}

/// Runs `cmd` with its output on stderr (stdout is for the component's path).
fn run_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs `cmd` and returns its stdout.
fn capture(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether `program` runs (`program --version` succeeds).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where language tools are installed: `$CONCLAVE_TOOLS_DIR`, else
/// `tools/` in the user cache directory (`~/.cache/conclave/tools`).
fn tools_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(TOOLS_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    conclave::compile_cache::default_dir()
        .map(|d| d.join("tools"))
        .ok_or_else(|| {
            format!("{TOOL_SETUP}: no user cache directory (HOME is not set); set {TOOLS_ENV}")
        })
}

/// The WIT directory to build against: the project's own `wit/` when it has
/// one, else this binary's copy written under the tools directory.
fn wit_dir(dir: &Path) -> Result<PathBuf, String> {
    let own = dir.join("wit");
    let has_wit = std::fs::read_dir(&own).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "wit"))
    });
    if has_wit {
        return Ok(own);
    }
    let base = tools_dir().unwrap_or_else(|_| std::env::temp_dir().join("conclave-tools"));
    let at = base
        .join("wit")
        .join(conclave::strategy::engine::content_hash(WIT.as_bytes()));
    let file = at.join("strategy.wit");
    if std::fs::read_to_string(&file).is_ok_and(|t| t == WIT) {
        return Ok(at);
    }
    std::fs::create_dir_all(&at).map_err(|e| format!("cannot create {}: {e}", at.display()))?;
    // Written whole, then renamed, so a concurrent build never reads half of it.
    let partial = at.join(format!(".strategy.wit.{}", std::process::id()));
    std::fs::write(&partial, WIT)
        .and_then(|()| std::fs::rename(&partial, &file))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(at)
}

/// A lock directory held while tools are installed, so concurrent builds do
/// not install into the same place at once. Removed on drop.
struct InstallLock(PathBuf);

impl InstallLock {
    /// Waits (up to ten minutes) for `path`; a lock older than that is stale.
    fn acquire(path: PathBuf) -> Result<Self, String> {
        let started = Instant::now();
        let mut told = false;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > Duration::from_secs(600)) {
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                    if started.elapsed() > Duration::from_secs(600) {
                        return Err(format!(
                            "{TOOL_SETUP}: {} is held by another build; remove it if none is running",
                            path.display()
                        ));
                    }
                    if !told {
                        eprintln!(
                            "waiting for another build to finish installing tools ({})",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    return Err(format!(
                        "{TOOL_SETUP}: cannot create {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

// Rust -----------------------------------------------------------------------

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn build_rust(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    let metadata = capture(
        Command::new(cargo())
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
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
    ensure_rust_target(dir)?;
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

/// Adds the wasm32-wasip2 standard library through rustup when the
/// toolchain `dir` builds with lacks it.
fn ensure_rust_target(dir: &Path) -> Result<(), String> {
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

// Python ---------------------------------------------------------------------

/// Builds `app.py`; the flag tells whether it was (re)built.
fn build_python(dir: &Path, force: bool) -> Result<(PathBuf, bool), String> {
    if !dir.join("app.py").is_file() {
        return Err(format!(
            "{}: a Python strategy is the module `app` (app.py) defining class WitWorld",
            dir.display()
        ));
    }
    let name = match pyproject_name(dir) {
        Some(name) => name,
        None => dir_name(dir)?,
    };
    let tool = componentize_py()?;
    let wit = wit_dir(dir)?;
    let out = dir.join(format!("{name}.wasm"));
    if !force && up_to_date(dir, &out, &[tool.clone(), wit.join("strategy.wit")]) {
        return Ok((out, false));
    }
    remove_stale(&out)?;
    run_step(
        Command::new(&tool)
            .arg("-d")
            .arg(&wit)
            .args(["-w", WORLD, "componentize", "app", "-o"])
            .arg(&out)
            .current_dir(dir),
        "componentize-py",
    )?;
    Ok((out, true))
}

/// `[project] name` of the project's pyproject.toml, if it has one.
fn pyproject_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml")).ok()?;
    let mut in_project = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_project = line == "[project]";
        } else if in_project
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            let name = value.trim().trim_matches(|c| c == '"' || c == '\'');
            return (!name.is_empty()).then(|| name.to_owned());
        }
    }
    None
}

/// The project's name for its output file: its directory's name.
fn dir_name(dir: &Path) -> Result<String, String> {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{} has no name", dir.display()))
}

fn venv_bin(venv: &Path, program: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{program}.exe"))
    } else {
        venv.join("bin").join(program)
    }
}

/// componentize-py from the tools venv, installed on first use.
fn componentize_py() -> Result<PathBuf, String> {
    let tools = tools_dir()?;
    let venv = tools.join("py");
    let tool = venv_bin(&venv, "componentize-py");
    if tool.is_file() {
        return Ok(tool);
    }
    std::fs::create_dir_all(&tools)
        .map_err(|e| format!("{TOOL_SETUP}: cannot create {}: {e}", tools.display()))?;
    let _lock = InstallLock::acquire(tools.join("py.lock"))?;
    if tool.is_file() {
        return Ok(tool);
    }
    let python = venv_bin(&venv, "python");
    if !python.is_file() {
        let system = ["python3", "python"]
            .into_iter()
            .find(|p| runs(p))
            .ok_or_else(|| {
                format!("{TOOL_SETUP}: Python 3 is not installed (python3 was not found); Python strategies need it to run componentize-py")
            })?;
        eprintln!(
            "creating a Python venv for componentize-py in {}",
            venv.display()
        );
        run_step(
            Command::new(system).args(["-m", "venv"]).arg(&venv),
            &format!("{system} -m venv"),
        )
        .map_err(|e| format!("{TOOL_SETUP}: {e} (on Debian/Ubuntu: apt install python3-venv)"))?;
    }
    eprintln!("installing {COMPONENTIZE_PY} into {}", venv.display());
    run_step(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
        ]),
        &format!("pip install {COMPONENTIZE_PY}"),
    )
    .map_err(|e| format!("{TOOL_SETUP}: {e}"))?;
    if tool.is_file() {
        Ok(tool)
    } else {
        Err(format!(
            "{TOOL_SETUP}: pip installed componentize-py but {} is missing",
            tool.display()
        ))
    }
}

// JavaScript -----------------------------------------------------------------

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

/// Runs `npm run build`; the flag tells whether it was (re)built.
fn build_js(dir: &Path, force: bool) -> Result<(PathBuf, bool), String> {
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

// ---------------------------------------------------------------------------
// Templates. `{{name}}` is the strategy's name, `{{crate}}` the same with `_`.

const README_HEAD: &str = r#"# {{name}}

A conclave composite strategy: a WebAssembly component
implementing the `strategy` world of `wit/strategy.wit` (package
`conclave:strategy@0.1.0`). conclave calls its `validate` export when a config
loads and its `run` export for each request; every model call goes back
through conclave's router via the `host` imports (`complete`, `complete-all`,
`respond`, `trace`).

As generated, it answers with one model: topology `{model, params?}`, and an
optional `system_prompt` setting that is put before the conversation. Change
it into your own strategy; the contract and its rules are in conclave's
docs/strategies.md.

"#;

const README_TAIL: &str = r#"
## Register and call it

List the component in a config's `strategy_registry` (a path relative to the
config file) and give it a profile. This config needs no network: its model
is conclave's built-in mock provider.

```yaml
model_list:
  - model_name: answerer
    litellm_params:
      model: mock/answerer
      mock_response: "Mock answer to: {prompt}"
  - model_name: {{name}}
    litellm_params:
      model: composite/profile/{{name}}

general_settings:
  composite_llm:
    strategy_registry:
      {{name}}: path/to/{{name}}/{{name}}.wasm
    profiles:
      {{name}}:
        strategy: {{name}}
        topology:
          model: answerer
          settings:
            system_prompt: "Answer in one sentence."
        limits: {timeout_s: 60}
```

```sh
conclave serve --config config.yaml --port 4000
curl -s localhost:4000/v1/chat/completions -H 'content-type: application/json' \
  -d '{"model": "{{name}}", "messages": [{"role": "user", "content": "hello"}]}'
# settings can be overridden per request:
curl -s localhost:4000/v1/chat/completions -H 'content-type: application/json' \
  -d '{"model": "{{name}}", "composite_settings": {"system_prompt": "Be brief."},
       "messages": [{"role": "user", "content": "hello"}]}'
```

`trace` events appear as the answer's `reasoning_content` (streamed first
with `"stream": true`) and, with `composite_llm.observability.enabled`, in
the JSONL trace log. If the strategy crashes, the error names the profile and
quotes the last lines it wrote to stderr.
"#;

const RUST_LAYOUT: &str = r#"## Files

- `src/lib.rs`: the strategy (bindings generated by `wit-bindgen` from `wit/`)
- `Cargo.toml`: a standalone `cdylib` crate depending on `wit-bindgen` and `serde_json`
- `wit/strategy.wit`: the contract, as served by the conclave that created this project

"#;

const RUST_BUILD: &str = r#"## Build

```sh
conclave strategy build .
```

It adds the `wasm32-wasip2` target through rustup if it is missing, runs
`cargo build --release --target wasm32-wasip2`, copies the component to
`{{name}}.wasm` and checks it against the strategy world. By hand:

```sh
rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp target/wasm32-wasip2/release/{{crate}}.wasm {{name}}.wasm
```
"#;

const PYTHON_LAYOUT: &str = r#"## Files

- `app.py`: the strategy, class `WitWorld` of module `app`
- `pyproject.toml`: its name (the component is `<name>.wasm`)
- `wit/strategy.wit`: the contract, as served by the conclave that created this project

"#;

const PYTHON_BUILD: &str = r#"## Build

```sh
conclave strategy build .
```

It installs {{componentize_py}} into a venv under the user cache directory
(`~/.cache/conclave/tools/py`, or `$CONCLAVE_TOOLS_DIR/py`) on first use,
builds `{{name}}.wasm` (about 18 MB: the Python interpreter is inside) and
checks it against the strategy world. By hand:

```sh
python3 -m venv .venv && .venv/bin/pip install {{componentize_py}}
.venv/bin/componentize-py -d wit -w strategy componentize app -o {{name}}.wasm
```

For editor completion, generate the bindings the build uses (git ignores them):
`componentize-py -d wit -w strategy bindings .`

A strategy's memory limit must fit the interpreter: give its profile
`limits: {memory_mb: 128}` if a run stops at the memory limit.
"#;

const JS_LAYOUT: &str = r#"## Files

- `strategy.js`: the strategy (exports `run` and `validate`)
- `build.mjs`: builds it with componentize-js; `package.json` pins componentize-js
- `wit/strategy.wit`: the contract, as served by the conclave that created this project

"#;

const JS_BUILD_DOC: &str = r#"## Build

```sh
conclave strategy build .
```

It runs `npm install` (componentize-js, about 150 packages) when
`package.json` changed, then `npm run build`, which writes `{{name}}.wasm`
(about 12 MB: the JavaScript engine is inside), and checks it against the
strategy world. By hand: `npm install && npm run build`.
"#;

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.61"
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
strip = true

# A project of its own, not a member of an enclosing workspace.
[workspace]
"#;

const RUST_LIB: &str = r#"//! {{name}}: a conclave composite strategy.
//!
//! Topology: `{model, params?}`, the model that answers and request params of
//! its own. Settings: `system_prompt` (optional), put before the conversation.

// Some generated binding functions take many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "strategy", path: "wit" });

// The world's `use` brings ChatResponse, Error and Invocation to the crate root.
use conclave::strategy::host;
use conclave::strategy::types::{ChatRequest, Message};
use serde_json::{Map, Value};

/// What the profile configures.
struct Config {
    model: String,
    params: Map<String, Value>,
    system_prompt: Option<String>,
}

/// Reads the topology and settings; errors name the offending key.
fn parse(topology_json: &str, settings_json: &str) -> Result<Config, String> {
    let topology: Value =
        serde_json::from_str(topology_json).map_err(|e| format!("topology: not JSON: {e}"))?;
    let model = match topology.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                "model: missing (the model that answers, e.g. {model: gpt-4o-mini})".into(),
            );
        }
    };
    let params = match topology.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err("params: must be an object".into()),
    };
    let settings: Value = if settings_json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(settings_json).map_err(|e| format!("settings: not JSON: {e}"))?
    };
    let system_prompt = match settings.get("system_prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("settings.system_prompt: must be a string".into()),
    };
    Ok(Config {
        model,
        params,
        system_prompt,
    })
}

struct Component;

impl Guest for Component {
    fn validate(topology_json: String, settings_json: String) -> Result<(), String> {
        parse(&topology_json, &settings_json).map(|_| ())
    }

    fn run(inv: Invocation) -> Result<ChatResponse, Error> {
        let config =
            parse(&inv.topology_json, &inv.settings_json).map_err(Error::InvalidRequest)?;
        let mut messages = inv.request.messages.clone();
        if let Some(prompt) = config.system_prompt {
            host::trace("prepare", "adding the system prompt from the settings");
            let at = messages.iter().take_while(|m| m.role == "system").count();
            messages.insert(
                at,
                Message {
                    role: "system".into(),
                    content: prompt,
                    name: None,
                    tool_call_id: None,
                    tool_calls_json: None,
                },
            );
        }
        // The client's params (tools included), then the node's own.
        let mut params: Map<String, Value> = inv
            .request
            .params_json
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        params.extend(config.params);
        host::trace("answer", &format!("asking {}", config.model));
        // `respond` streams the answer to the client when it asked for a
        // stream; a failed call's error fails the run with it.
        host::respond(&ChatRequest {
            model: config.model,
            messages,
            params_json: (!params.is_empty()).then(|| Value::Object(params).to_string()),
        })
    }
}

export!(Component);
"#;

const PYTHON_APP: &str = r#""""{{name}}: a conclave composite strategy.

Topology: {model, params?}, the model that answers and request params of its
own. Settings: system_prompt (optional), put before the conversation.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    ChatRequest,
    ChatResponse,
    Error_InvalidRequest,
    Invocation,
    Message,
)


def parse(topology_json: str, settings_json: str):
    """(model, params, system_prompt); raises ValueError naming the offending key."""
    try:
        topology = json.loads(topology_json or "{}")
        settings = json.loads(settings_json or "{}")
    except ValueError as e:
        raise ValueError(f"topology: not JSON: {e}")
    model = topology.get("model") if isinstance(topology, dict) else None
    if not isinstance(model, str) or not model:
        raise ValueError("model: missing (the model that answers, e.g. {model: gpt-4o-mini})")
    params = topology.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params: must be an object")
    system_prompt = settings.get("system_prompt") if isinstance(settings, dict) else None
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError("settings.system_prompt: must be a string")
    return model, params, system_prompt


class WitWorld(wit_world.WitWorld):
    def validate(self, topology_json: str, settings_json: str) -> None:
        try:
            parse(topology_json, settings_json)
        except ValueError as e:
            raise Err(str(e))

    def run(self, inv: Invocation) -> ChatResponse:
        try:
            model, node_params, system_prompt = parse(inv.topology_json, inv.settings_json)
        except ValueError as e:
            raise Err(Error_InvalidRequest(str(e)))
        messages = list(inv.request.messages)
        if system_prompt is not None:
            host.trace("prepare", "adding the system prompt from the settings")
            at = 0
            while at < len(messages) and messages[at].role == "system":
                at += 1
            messages.insert(at, Message("system", system_prompt, None, None, None))
        # The client's params (tools included), then the node's own.
        params = json.loads(inv.request.params_json) if inv.request.params_json else {}
        params.update(node_params)
        host.trace("answer", f"asking {model}")
        # respond() streams the answer to the client when it asked for a
        # stream; a failed call raises Err(error), which fails the run with it.
        return host.respond(ChatRequest(model, messages, json.dumps(params) if params else None))
"#;

const PYTHON_PROJECT: &str = r#"[project]
name = "{{name}}"
version = "0.1.0"
description = "A conclave composite strategy, built with componentize-py"
requires-python = ">=3.10"
"#;

const JS_PACKAGE: &str = r#"{
  "name": "{{name}}",
  "version": "0.1.0",
  "private": true,
  "description": "A conclave composite strategy",
  "type": "module",
  "scripts": {
    "build": "node build.mjs"
  },
  "devDependencies": {
    "@bytecodealliance/componentize-js": "{{componentize_js}}"
  }
}
"#;

const JS_BUILD: &str = r#"// Builds strategy.js into <package name>.wasm, a component of conclave's
// `strategy` world: `npm install && npm run build`.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const { name } = JSON.parse(await readFile(join(here, 'package.json'), 'utf8'));
const witPath = resolve(process.env.CONCLAVE_WIT_DIR ?? join(here, 'wit'));
const out = join(here, `${name.split('/').pop()}.wasm`);

const { component } = await componentize({
  sourcePath: join(here, 'strategy.js'),
  witPath,
  worldName: 'strategy',
  // conclave's strategy sandbox has no network: no fetch, no HTTP handler.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${(component.length / 1e6).toFixed(1)} MB)`);
"#;

const JS_STRATEGY: &str = r#"// {{name}}: a conclave composite strategy.
//
// Topology: {model, params?}, the model that answers and request params of
// its own. Settings: system_prompt (optional), put before the conversation.
//
// WIT names are camelCase in JS (params-json -> paramsJson), an `option` is a
// value or undefined, and a `result` is a return value or a thrown error.

import { respond, trace } from 'conclave:strategy/host@0.1.0';

// {model, params, systemPrompt}; throws a string naming the offending key.
function parse(topologyJson, settingsJson) {
  let topology, settings;
  try {
    topology = JSON.parse(topologyJson || '{}');
    settings = JSON.parse(settingsJson || '{}');
  } catch (e) {
    throw `topology: not JSON: ${e.message}`;
  }
  const model = topology?.model;
  if (typeof model !== 'string' || model === '') {
    throw 'model: missing (the model that answers, e.g. {model: gpt-4o-mini})';
  }
  const params = topology.params ?? {};
  if (typeof params !== 'object' || Array.isArray(params)) throw 'params: must be an object';
  const systemPrompt = settings?.system_prompt;
  if (systemPrompt != null && typeof systemPrompt !== 'string') {
    throw 'settings.system_prompt: must be a string';
  }
  return { model, params, systemPrompt };
}

// `validate -> result<_, string>`: return for ok, throw the string for err.
export function validate(topologyJson, settingsJson) {
  parse(topologyJson, settingsJson);
}

// `run -> result<chat-response, error>`: return the response, or throw an
// `error` variant such as {tag: 'invalid-request', val: '...'}.
export function run(inv) {
  let config;
  try {
    config = parse(inv.topologyJson, inv.settingsJson);
  } catch (message) {
    throw { tag: 'invalid-request', val: String(message) };
  }
  const messages = [...inv.request.messages];
  if (config.systemPrompt != null) {
    trace('prepare', 'adding the system prompt from the settings');
    let at = 0;
    while (at < messages.length && messages[at].role === 'system') at++;
    messages.splice(at, 0, {
      role: 'system',
      content: config.systemPrompt,
      name: undefined,
      toolCallId: undefined,
      toolCallsJson: undefined,
    });
  }
  // The client's params (tools included), then the node's own.
  const params = { ...(inv.request.paramsJson ? JSON.parse(inv.request.paramsJson) : {}), ...config.params };
  trace('answer', `asking ${config.model}`);
  // respond() streams the answer to the client when it asked for a stream. A
  // failed call throws its error variant (as `e.payload`); rethrown, it fails
  // the run with that error.
  try {
    return respond({
      model: config.model,
      messages,
      paramsJson: Object.keys(params).length ? JSON.stringify(params) : undefined,
    });
  } catch (e) {
    throw e?.payload ?? e;
  }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_language() {
        assert!(check_name("critic").is_ok());
        assert!(check_name("my-strategy2").is_ok());
        for bad in ["", "Critic", "2x", "a_b", "a-", "a b", "test", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_template_has_the_wit_and_no_placeholder_left() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = template(lang);
            assert!(
                files
                    .iter()
                    .any(|(p, c)| *p == "wit/strategy.wit" && c == WIT)
            );
            for (path, content) in files {
                let text = render(&content, "my-strat");
                assert!(!text.contains("{{"), "{lang:?} {path}");
            }
        }
    }

    #[test]
    fn the_python_name_comes_from_pyproject() {
        let dir = std::env::temp_dir().join(format!("conclave-pyproject-{}", std::process::id()));
        create("named-one", Lang::Python, &dir).unwrap();
        assert_eq!(pyproject_name(&dir).as_deref(), Some("named-one"));
        std::fs::write(dir.join("pyproject.toml"), "[tool.x]\nname = 'no'\n").unwrap();
        assert_eq!(pyproject_name(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn new_refuses_a_non_empty_directory_and_build_detects_the_language() {
        let dir =
            std::env::temp_dir().join(format!("conclave-scaffold-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (lang, sub) in [(Lang::Rust, "r"), (Lang::Python, "p"), (Lang::Js, "j")] {
            let at = dir.join(sub);
            create("demo", lang, &at).unwrap();
            assert_eq!(detect(&at).unwrap(), lang);
            assert!(create("demo", lang, &at).unwrap_err().contains("not empty"));
        }
        assert!(detect(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
