//! LiteLLM's `include:`: a config may name other YAML files (one name or a
//! list, relative to the config's folder) whose sections join it before
//! anything is read. A list section (`model_list`) the config has already
//! is extended by the file's; any other section the file has replaces the
//! config's, as LiteLLM merges them. Included files are read once, when the
//! config is loaded or reloaded: a change to one alone is not watched.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::{ConfigError, Problem};

/// The config key naming the files to include.
const INCLUDE: &str = "include";

/// Merges the files `tree`'s `include:` names into it and removes the key.
/// `path` is the config's own file.
pub fn merge(tree: &mut Value, path: &Path) -> Result<(), ConfigError> {
    let Some(sections) = tree.as_mapping_mut() else {
        return Ok(());
    };
    let Some(include) = sections.remove(INCLUDE) else {
        return Ok(());
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
        let included = read(&folder.join(&name)).map_err(|message| refuse(key, message))?;
        extend(sections, included);
    }
    Ok(())
}

/// The sections of one included file.
fn read(file: &Path) -> Result<Mapping, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let sections = match serde_yaml::from_str::<Value>(&text) {
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
    Ok(sections)
}

/// Adds `included`'s sections to `sections`: lists extend lists, anything
/// else replaces what was there.
fn extend(sections: &mut Mapping, included: Mapping) {
    for (key, value) in included {
        match (sections.get_mut(&key), value) {
            (Some(Value::Sequence(mine)), Value::Sequence(theirs)) => mine.extend(theirs),
            (_, value) => {
                sections.insert(key, value);
            }
        }
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
