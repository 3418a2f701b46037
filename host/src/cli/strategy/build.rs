//! `conclave strategy build`: what building any language shares, from
//! telling the language to checking the component against the world.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use conclave::strategy::SharedEngine;

use super::{Lang, PACKAGE, WORLD, js, python, rust};

/// Builds the project in `dir` into `<dir>/<name>.wasm` and checks it
/// against the strategy world. Returns the component's path. Unless `force`,
/// a Python or JavaScript component newer than all its inputs is kept.
pub(super) fn build(dir: &Path, force: bool) -> Result<PathBuf, String> {
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
        Lang::Rust => (rust::build(&dir)?, true),
        Lang::Python => python::build(&dir, force)?,
        Lang::Js => js::build(&dir, force)?,
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
pub(super) fn detect(dir: &Path) -> Result<Lang, String> {
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
    let engine = SharedEngine::new(cache).get()?;
    let compiled = engine
        .compile(&out.display().to_string(), bytes)
        .map_err(|e| {
            format!("the build wrote {}, but conclave cannot run it as a strategy ({PACKAGE}, world `{WORLD}`): {e}", out.display())
        })?;
    Ok((compiled.load_time, compiled.from_cache))
}

/// Removes a previous build's output so a build that writes nothing fails.
pub(super) fn remove_stale(out: &Path) -> Result<(), String> {
    match std::fs::remove_file(out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot replace {}: {e}", out.display())),
    }
}

/// Whether `out` exists and is newer than `inputs` and every file of the
/// project (installed packages, build output and caches left out).
pub(super) fn up_to_date(dir: &Path, out: &Path, inputs: &[PathBuf]) -> bool {
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

/// The project's name for its output file: its directory's name.
pub(super) fn dir_name(dir: &Path) -> Result<String, String> {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{} has no name", dir.display()))
}
