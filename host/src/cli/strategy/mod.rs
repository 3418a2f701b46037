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
//!
//! `new` and `build` hold what every language shares; `rust`, `python` and
//! `js` each hold one language's project template and toolchain.

mod build;
mod js;
mod new;
mod python;
mod rust;
mod tools;

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

/// The strategy contract, as served by this binary.
const WIT: &str = include_str!("../../../../wit/strategy.wit");
/// The world a strategy targets.
const WORLD: &str = "strategy";
/// The package the world belongs to, for messages.
const PACKAGE: &str = "conclave:strategy@0.1.0";
/// Prefix of errors about installing a language's tools (not the strategy's own).
const TOOL_SETUP: &str = "tool setup failed";

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
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

impl Lang {
    /// The language's name in messages.
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
            new::create(&name, lang, &dir)?;
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
            let out = build::build(&dir, force)?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

/// `p` as typed in a shell: quoted when it has a space.
fn shell_path(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(' ') { format!("{s:?}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_refuses_a_non_empty_directory_and_build_detects_the_language() {
        let dir =
            std::env::temp_dir().join(format!("conclave-scaffold-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (lang, sub) in [(Lang::Rust, "r"), (Lang::Python, "p"), (Lang::Js, "j")] {
            let at = dir.join(sub);
            new::create("demo", lang, &at).unwrap();
            assert_eq!(build::detect(&at).unwrap(), lang);
            assert!(
                new::create("demo", lang, &at)
                    .unwrap_err()
                    .contains("not empty")
            );
        }
        assert!(build::detect(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
