//! LiteLLM's `include:`: a config may name other YAML files (one name or a
//! list, relative to the config's folder) whose sections join it before
//! anything is read. A list section (`model_list`) the config has already
//! is extended by the file's; any other section the file has replaces the
//! config's, as LiteLLM merges them. Included files are read once, when the
//! config is loaded or reloaded: a change to one alone is not watched.
//! [`Origins`] remembers which file each merged piece came from, so that
//! a problem in an included file names that file and its own key path.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::{ConfigError, Problem};

/// The config key naming the files to include.
const INCLUDE: &str = "include";

/// Which included file each merged piece of a config came from (empty
/// for a config without `include:`), and the keys an included file
/// wrote more than once.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<Origin>, Vec<String>);

/// One included file's share of a section: the whole section, or the
/// items `start..start + len` of a list section.
#[derive(Debug, Clone)]
struct Origin {
    section: String,
    items: Option<(usize, usize)>,
    file: PathBuf,
}

impl Origins {
    /// One warning per key an included file wrote more than once, naming
    /// the file.
    pub fn repeated(&self) -> &[String] {
        &self.1
    }

    /// The included file holding the key at `path` of the merged config,
    /// and the key's path within that file; `None` when the config's own
    /// file holds it.
    pub fn locate(&self, path: &str) -> Option<(&Path, String)> {
        let end = path.find(['.', '[']).unwrap_or(path.len());
        let (section, rest) = path.split_at(end);
        let origin = self.0.iter().rev().find(|o| {
            o.section == section
                && match o.items {
                    None => true,
                    Some((start, len)) => {
                        index(rest).is_some_and(|i| (start..start + len).contains(&i))
                    }
                }
        })?;
        let path = match (origin.items, index(rest)) {
            (Some((start, _)), Some(i)) => {
                let after = rest.find(']').map_or("", |at| &rest[at + 1..]);
                format!("{section}[{}]{after}", i - start)
            }
            _ => path.to_owned(),
        };
        Some((&origin.file, path))
    }

    /// A warning line `file: path: message` about the merged config, naming
    /// the included file and its own path when one holds `path`.
    pub fn relocate(&self, file: &str, line: String) -> String {
        let Some((path, message)) = line
            .strip_prefix(file)
            .and_then(|rest| rest.strip_prefix(": "))
            .and_then(|rest| rest.split_once(": "))
        else {
            return line;
        };
        match self.locate(path) {
            Some((included, path)) => format!("{}: {path}: {message}", included.display()),
            None => line,
        }
    }

    /// `file: path`, naming the included file that holds `path` if one does.
    pub fn show(&self, file: &str, path: &str) -> String {
        match self.locate(path) {
            Some((included, path)) => format!("{}: {path}", included.display()),
            None => format!("{file}: {path}"),
        }
    }
}

/// The list index a key path's rest starts with (`[3].model` gives 3).
fn index(rest: &str) -> Option<usize> {
    rest.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Merges the files `tree`'s `include:` names into it and removes the key.
/// `path` is the config's own file.
pub fn merge(tree: &mut Value, path: &Path) -> Result<Origins, ConfigError> {
    let mut origins = Origins::default();
    let Some(sections) = tree.as_mapping_mut() else {
        return Ok(origins);
    };
    let Some(include) = sections.remove(INCLUDE) else {
        return Ok(origins);
    };
    let refuse =
        |key: String, message: String| ConfigError::invalid(path, vec![Problem::new(key, message)]);
    let names: Vec<(String, String)> = match include {
        Value::Null => Vec::new(),
        Value::String(name) => vec![(INCLUDE.to_owned(), name)],
        Value::Sequence(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(name) => Ok((format!("{INCLUDE}[{i}]"), name)),
                _ => Err(refuse(
                    format!("{INCLUDE}[{i}]"),
                    "must be a file name".into(),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(refuse(
                INCLUDE.into(),
                "must be a file name or a list of file names".into(),
            ));
        }
    };
    let folder = path.parent().unwrap_or_else(|| Path::new("."));
    for (key, name) in names {
        let file = folder.join(&name);
        let (included, repeated) = read(&file).map_err(|message| refuse(key, message))?;
        origins.1.extend(repeated.iter().map(|key| {
            format!(
                "{}: {key}: written more than once; the last one is used, as LiteLLM's \
                 YAML reader does",
                file.display()
            )
        }));
        extend(sections, included, &file, &mut origins);
    }
    Ok(origins)
}

/// The sections of one included file, and the keys it writes more than
/// once (the last is used, as in the config's own file).
fn read(file: &Path) -> Result<(Mapping, Vec<String>), String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut repeated = Vec::new();
    let parsed = super::yaml::parse(&text).and_then(|(mut tree, keys)| {
        repeated = keys;
        tree.apply_merge()?;
        Ok(tree)
    });
    let sections = match parsed {
        Ok(Value::Mapping(sections)) => sections,
        Ok(Value::Null) => Mapping::new(),
        Ok(_) => return Err(format!("{shown} must hold a mapping of sections")),
        Err(e) => return Err(format!("{shown} is not valid YAML: {e}")),
    };
    if sections.contains_key(INCLUDE) {
        return Err(format!(
            "{shown} has an include of its own; an included file cannot include others"
        ));
    }
    Ok((sections, repeated))
}

/// Adds `included`'s sections (from `file`) to `sections`: lists extend
/// lists, anything else replaces what was there; `origins` notes which.
fn extend(sections: &mut Mapping, included: Mapping, file: &Path, origins: &mut Origins) {
    for (key, value) in included {
        let section = key.as_str().unwrap_or_default().to_owned();
        let items = match (sections.get_mut(&key), value) {
            (Some(Value::Sequence(mine)), Value::Sequence(theirs)) => {
                let start = mine.len();
                let len = theirs.len();
                mine.extend(theirs);
                Some((start, len))
            }
            (_, value) => {
                // What the section held before is gone, wherever it came from.
                origins.0.retain(|o| o.section != section);
                let len = value.as_sequence().map(Vec::len);
                sections.insert(key, value);
                len.map(|len| (0, len))
            }
        };
        origins.0.push(Origin {
            section,
            items,
            file: file.to_path_buf(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with `files` in it, removed when dropped.
    struct Folder(std::path::PathBuf);

    impl Folder {
        fn with(name: &str, files: &[(&str, &str)]) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("conclave-include-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn included_models_join_the_list_and_other_sections_are_added() {
        let folder = Folder::with(
            "merge",
            &[(
                "models.yaml",
                "model_list:\n  - model_name: b\n    litellm_params: {model: mock/b}\nrouter_settings: {num_retries: 1}\n",
            )],
        );
        let mut tree: Value = serde_yaml::from_str(
            "include: [models.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n",
        )
        .unwrap();
        merge(&mut tree, &folder.0.join("config.yaml")).unwrap();
        let names: Vec<&str> = tree["model_list"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["model_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(tree["router_settings"]["num_retries"], 1);
        assert!(tree.get(INCLUDE).is_none());
    }

    #[test]
    fn a_problem_in_an_included_file_names_that_file_and_its_own_key() {
        let folder = Folder::with(
            "origins",
            &[
                (
                    "models.yaml",
                    "model_list:\n  - model_name: b\n    litellm_params: {model: mock/b}\n  - model_name: c\n    litellm_params: {model: mock/c, rpm: many}\n",
                ),
                (
                    "router.yaml",
                    "router_settings: {num_retries: 1, colour: red}\n",
                ),
            ],
        );
        let load = |text: &str| {
            crate::config::load_str(text, &folder.0.join("config.yaml"), Default::default())
        };
        let models = folder.0.join("models.yaml").display().to_string();
        let error = load("include: [models.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("{models}: model_list[1].litellm_params.rpm: ")),
            "{error}"
        );
        // A key of the config's own file keeps its file and index.
        let error = load("include: [router.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: {model: mock/a, rpm: many}\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("config.yaml: model_list[0].litellm_params.rpm: "),
            "{error}"
        );
        let loaded = load("include: [router.yaml]\n").unwrap();
        let router = folder.0.join("router.yaml").display().to_string();
        assert!(
            loaded.warnings.contains(&format!(
                "{router}: router_settings.colour: unknown key, ignored"
            )),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn origins_map_merged_list_items_back_to_their_file() {
        let mut sections = Mapping::new();
        sections.insert("model_list".into(), Value::Sequence(vec![Value::Null; 2]));
        let mut origins = Origins::default();
        let mut included = Mapping::new();
        included.insert("model_list".into(), Value::Sequence(vec![Value::Null; 3]));
        included.insert("general_settings".into(), Value::Null);
        extend(&mut sections, included, Path::new("inc.yaml"), &mut origins);
        assert!(origins.locate("model_list[1].model_name").is_none());
        let (file, path) = origins.locate("model_list[4].model_name").unwrap();
        assert_eq!(
            (file, path.as_str()),
            (Path::new("inc.yaml"), "model_list[2].model_name")
        );
        let (_, path) = origins.locate("general_settings.master_key").unwrap();
        assert_eq!(path, "general_settings.master_key");
        assert!(origins.locate("model_list[5]").is_none());
        assert!(origins.locate("router_settings").is_none());
        // Warnings made later (by the router) name the file that holds their key.
        let warning = "main.yaml: model_list[3].litellm_params.x: unknown key, ignored";
        assert_eq!(
            origins.relocate("main.yaml", warning.into()),
            "inc.yaml: model_list[1].litellm_params.x: unknown key, ignored"
        );
        let own = "main.yaml: model_list[0].litellm_params.x: unknown key, ignored";
        assert_eq!(origins.relocate("main.yaml", own.into()), own);
    }

    #[test]
    fn a_missing_or_unusable_file_is_named_with_its_key() {
        let folder = Folder::with(
            "refuse",
            &[("list.yaml", "- a\n"), ("nested.yaml", "include: x.yaml\n")],
        );
        let config = folder.0.join("config.yaml");
        for (include, key, says) in [
            ("include: missing.yaml", "include", "cannot read"),
            ("include: [list.yaml]", "include[0]", "mapping of sections"),
            (
                "include: [nested.yaml]",
                "include[0]",
                "cannot include others",
            ),
            ("include: [7]", "include[0]", "file name"),
            ("include: {a: b}", "include", "file name"),
        ] {
            let mut tree: Value = serde_yaml::from_str(include).unwrap();
            let error = merge(&mut tree, &config).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{include}: {error}"
            );
        }
    }
}
