//! Python strategies: the project template and the componentize-py build.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::build::{dir_name, remove_stale, up_to_date};
use super::tools::{InstallLock, run_step, runs, tools_dir, wit_dir};
use super::{TOOL_SETUP, WORLD};

/// The componentize-py release the Python template is written for.
pub(super) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The files of a new Python project (besides the WIT): path, template.
pub(super) const TEMPLATE: &[(&str, &str)] = &[
    ("app.py", include_str!("../../../templates/python/app.py")),
    (
        "pyproject.toml",
        include_str!("../../../templates/python/pyproject.toml"),
    ),
    // Stored without its dot so it is not this repository's own.
    (
        ".gitignore",
        include_str!("../../../templates/python/gitignore"),
    ),
    (
        "README.md",
        include_str!("../../../templates/python/README.md"),
    ),
];

/// Builds `app.py`; the flag tells whether it was (re)built.
pub(super) fn build(dir: &Path, force: bool) -> Result<(PathBuf, bool), String> {
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

/// A program of the venv at `venv`.
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

#[cfg(test)]
mod tests {
    use super::super::{Lang, new};
    use super::*;

    #[test]
    fn the_python_name_comes_from_pyproject() {
        let dir = std::env::temp_dir().join(format!("conclave-pyproject-{}", std::process::id()));
        new::create("named-one", Lang::Python, &dir).unwrap();
        assert_eq!(pyproject_name(&dir).as_deref(), Some("named-one"));
        std::fs::write(dir.join("pyproject.toml"), "[tool.x]\nname = 'no'\n").unwrap();
        assert_eq!(pyproject_name(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
