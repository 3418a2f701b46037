//! `conclave strategy new`: writes a project from its language's template.

use std::path::Path;

use super::{Lang, WIT, js, python, rust};

/// Writes a new project for `name` in `lang` into `dir` (created; must be
/// empty if it exists). Returns the files written, relative to `dir`.
pub(super) fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<&'static str>, String> {
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

/// Fills a template's placeholders: `{{name}}` is the strategy's name,
/// `{{crate}}` the same with `_` for `-`, `{{componentize_py}}` and
/// `{{componentize_js}}` the tool releases the templates are written for.
fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{componentize_py}}", python::COMPONENTIZE_PY)
        .replace("{{componentize_js}}", js::COMPONENTIZE_JS)
}

/// The files of a new project: the WIT, then the language's template, each
/// as its path in the project and its unrendered text.
fn template(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let files = match lang {
        Lang::Rust => rust::TEMPLATE,
        Lang::Python => python::TEMPLATE,
        Lang::Js => js::TEMPLATE,
    };
    std::iter::once(("wit/strategy.wit", WIT))
        .chain(files.iter().copied())
        .collect()
}

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
                    .any(|(p, c)| *p == "wit/strategy.wit" && *c == WIT)
            );
            for (path, content) in files {
                let text = render(content, "my-strat");
                assert!(!text.contains("{{"), "{lang:?} {path}");
            }
        }
    }

    /// The READMEs differ only in their files and build sections.
    #[test]
    fn the_readmes_share_their_introduction_and_registration() {
        let readme = |files: &[(&str, &'static str)]| {
            files
                .iter()
                .find(|(p, _)| *p == "README.md")
                .map(|(_, c)| *c)
                .unwrap()
        };
        let split = |text: &'static str| {
            let intro = text.split("## Files").next().unwrap();
            let register = text.split("\n## Register and call it").nth(1).unwrap();
            (intro, register)
        };
        let rust = split(readme(rust::TEMPLATE));
        assert_eq!(split(readme(python::TEMPLATE)), rust);
        assert_eq!(split(readme(js::TEMPLATE)), rust);
    }
}
