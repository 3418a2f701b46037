//! Environment references in config values: `os.environ/VAR`, `${VAR}`,
//! `${VAR:-default}` and `$VAR`, resolved from the process environment, then a
//! `.env` file beside the config, then the config's own `environment_variables`.

use std::collections::HashMap;
use std::path::Path;

/// Where environment references are looked up. The process environment always
/// wins, so a `.env` file never overrides what the operator exported.
#[derive(Debug, Clone, Default)]
pub struct Env {
    dotenv: HashMap<String, String>,
    config_vars: HashMap<String, String>,
    /// The config file's directory, which relative paths in values resolve against.
    base_dir: Option<std::path::PathBuf>,
}

impl Env {
    /// Reads the `.env` file that sits beside `config_path`, if there is one.
    pub fn beside(config_path: &Path) -> Result<Self, String> {
        let dir = config_path.parent().unwrap_or_else(|| Path::new("."));
        let file = dir.join(".env");
        let mut dotenv = HashMap::new();
        if file.is_file() {
            let iter = dotenvy::from_path_iter(&file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
            for item in iter {
                let (key, value) = item.map_err(|e| format!("{}: {e}", file.display()))?;
                dotenv.insert(key, value);
            }
        }
        Ok(Self {
            dotenv,
            config_vars: HashMap::new(),
            base_dir: Some(dir.to_path_buf()),
        })
    }

    /// `path` resolved against the config file's directory.
    pub fn resolve_path(&self, path: &str) -> std::path::PathBuf {
        match &self.base_dir {
            Some(dir) => dir.join(path),
            None => std::path::PathBuf::from(path),
        }
    }

    /// Adds the config file's own `environment_variables` block (lowest priority).
    pub fn with_config_vars(mut self, vars: HashMap<String, String>) -> Self {
        self.config_vars = vars;
        self
    }

    /// Looks a variable up: process environment, then `.env`, then the config.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .or_else(|| self.config_vars.get(name).cloned())
    }

    /// Replaces every environment reference in `value`. An unset variable
    /// without a default is an error naming it: a silently empty API key is
    /// much harder to debug than a refusal to start.
    pub fn substitute(&self, value: &str) -> Result<String, String> {
        if let Some(name) = value.strip_prefix("os.environ/") {
            let name = name.trim();
            return self
                .get(name)
                .ok_or_else(|| format!("environment variable {name} is not set"));
        }
        if !value.contains('$') {
            return Ok(value.to_owned());
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unterminated ${{...}} in {value:?}"))?;
                let expr = &inner[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (expr, None),
                };
                if !is_var_name(name) {
                    return Err(format!("invalid variable name {name:?} in ${{...}}"));
                }
                match (self.get(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return Err(format!("environment variable {name} is not set")),
                }
                rest = &inner[end + 1..];
            } else {
                let len = after
                    .char_indices()
                    .take_while(|(i, c)| {
                        c.is_ascii_alphanumeric() && !(*i == 0 && c.is_ascii_digit()) || *c == '_'
                    })
                    .count();
                if len == 0 {
                    out.push('$');
                    rest = after;
                    continue;
                }
                let name = &after[..len];
                let v = self
                    .get(name)
                    .ok_or_else(|| format!("environment variable {name} is not set"))?;
                out.push_str(&v);
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::default().with_config_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn os_environ_form_reads_whole_value() {
        let e = env(&[("CONCLAVE_T_KEY", "sk-1")]);
        assert_eq!(e.substitute("os.environ/CONCLAVE_T_KEY").unwrap(), "sk-1");
    }

    #[test]
    fn braces_and_bare_forms_substitute_inside_strings() {
        let e = env(&[("CONCLAVE_T_HOST", "h"), ("CONCLAVE_T_PORT", "9")]);
        assert_eq!(
            e.substitute("http://${CONCLAVE_T_HOST}:$CONCLAVE_T_PORT/v1")
                .unwrap(),
            "http://h:9/v1"
        );
    }

    #[test]
    fn default_applies_only_when_unset() {
        let e = env(&[("CONCLAVE_T_SET", "x")]);
        assert_eq!(e.substitute("${CONCLAVE_T_SET:-d}").unwrap(), "x");
        assert_eq!(e.substitute("${CONCLAVE_T_UNSET_1:-d}").unwrap(), "d");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = env(&[]).substitute("key-$CONCLAVE_T_UNSET_2").unwrap_err();
        assert!(err.contains("CONCLAVE_T_UNSET_2"), "{err}");
    }

    #[test]
    fn dollar_escapes_and_lone_dollars_stay_literal() {
        let e = env(&[]);
        assert_eq!(e.substitute("cost $$5 or $5").unwrap(), "cost $5 or $5");
    }
}
