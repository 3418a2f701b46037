//! Environment references in config values: `os.environ/VAR`, `${VAR}`,
//! `${VAR:-default}` and `$VAR`, resolved from the process environment, then a
//! `.env` file beside the config, then the config's own `environment_variables`.
//! The gateway's own variables (`DATABASE_URL`, `REDIS_HOST`, the master
//! key, ...) are read through the same lookup, so any of the three sets them.

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
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
            let vars =
                super::dotenv::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            dotenv.extend(vars);
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

    /// Replaces every environment reference in `value`. A value that is
    /// nothing but a reference to an unset variable without a default
    /// (`${name}`, or `$NAME` in upper case) is an error naming it: a
    /// silently empty API key is much harder to debug than a refusal to
    /// start. Any other `$NAME` that names no set variable, and a `$` or
    /// `${` that starts no reference, are kept as written: keys and
    /// passwords hold `$`, and LiteLLM reads them as they are. `$$` is one `$`.
    pub fn substitute(&self, value: &str) -> Result<Resolved, String> {
        if let Some(name) = value.strip_prefix("os.environ/") {
            let name = name.trim();
            if name.is_empty() {
                return Err("`os.environ/` names no environment variable".into());
            }
            return self
                .get(name)
                .map(Resolved::text)
                .ok_or_else(|| format!("environment variable {name} is not set"));
        }
        if !value.contains('$') {
            return Ok(Resolved::text(value.to_owned()));
        }
        // `${name}`, or `$NAME` in the variables' own upper case: a value
        // that is nothing but a reference must resolve. (`$ecretKey` is a
        // secret starting with `$`, not a reference.)
        let whole = value
            .strip_prefix('$')
            .and_then(|v| match v.strip_prefix('{') {
                Some(braced) => braced.strip_suffix('}'),
                None => Some(v).filter(|n| is_upper_var_name(n)),
            });
        if let Some(name) = whole.filter(|n| is_var_name(n))
            && self.get(name).is_none()
        {
            return Err(format!("environment variable {name} is not set"));
        }
        let mut resolved = Resolved::text(String::with_capacity(value.len()));
        let out = &mut resolved.text;
        let mut rest = value;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some((expr, tail)) = after
                .strip_prefix('{')
                .and_then(|inner| inner.split_once('}'))
                .filter(|(expr, _)| is_var_name(expr.split_once(":-").map_or(expr, |(n, _)| n)))
            {
                let (name, default) = match expr.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (expr, None),
                };
                match (self.get(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return Err(format!("environment variable {name} is not set")),
                }
                rest = tail;
            } else {
                let len = after
                    .char_indices()
                    .take_while(|(i, c)| {
                        c.is_ascii_alphanumeric() && !(*i == 0 && c.is_ascii_digit()) || *c == '_'
                    })
                    .count();
                match self.get(&after[..len]).filter(|_| len > 0) {
                    Some(v) => out.push_str(&v),
                    None => {
                        resolved.kept_literal |= len > 0;
                        out.push('$');
                        out.push_str(&after[..len]);
                    }
                }
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(resolved)
    }
}

/// A value with its environment references replaced.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub text: String,
    /// Whether a `$NAME` naming no set variable was kept as written (worth
    /// a warning: it may be a reference whose variable is missing).
    pub kept_literal: bool,
}

impl Resolved {
    fn text(text: String) -> Self {
        Self {
            text,
            kept_literal: false,
        }
    }
}

/// A variable name in the usual upper case (`OPENAI_API_KEY`).
fn is_upper_var_name(name: &str) -> bool {
    is_var_name(name) && !name.bytes().any(|b| b.is_ascii_lowercase())
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
        assert_eq!(
            e.substitute("os.environ/CONCLAVE_T_KEY").unwrap().text,
            "sk-1"
        );
    }

    #[test]
    fn braces_and_bare_forms_substitute_inside_strings() {
        let e = env(&[("CONCLAVE_T_HOST", "h"), ("CONCLAVE_T_PORT", "9")]);
        assert_eq!(
            e.substitute("http://${CONCLAVE_T_HOST}:$CONCLAVE_T_PORT/v1")
                .unwrap()
                .text,
            "http://h:9/v1"
        );
    }

    #[test]
    fn default_applies_only_when_unset() {
        let e = env(&[("CONCLAVE_T_SET", "x")]);
        assert_eq!(e.substitute("${CONCLAVE_T_SET:-d}").unwrap().text, "x");
        assert_eq!(e.substitute("${CONCLAVE_T_UNSET_1:-d}").unwrap().text, "d");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        for value in [
            "$CONCLAVE_T_UNSET_2",
            "${CONCLAVE_T_UNSET_2}",
            "key-${CONCLAVE_T_UNSET_2}",
        ] {
            let err = env(&[]).substitute(value).unwrap_err();
            assert!(err.contains("CONCLAVE_T_UNSET_2"), "{err}");
        }
    }

    #[test]
    fn dollar_escapes_and_lone_dollars_stay_literal() {
        let e = env(&[]);
        assert_eq!(
            e.substitute("cost $$5 or $5").unwrap().text,
            "cost $5 or $5"
        );
    }

    #[test]
    fn a_dollar_inside_a_secret_is_kept_as_written() {
        let e = env(&[]);
        for secret in [
            "sk-proj-Ab$Xy9zTail",
            "pa${ss",
            "p${not a name}w",
            "x$",
            "$ecretMasterKey",
        ] {
            let resolved = e.substitute(secret).unwrap();
            assert_eq!(resolved.text, secret);
        }
        assert!(e.substitute("sk-proj-Ab$Xy9zTail").unwrap().kept_literal);
        assert!(e.substitute("$uperSecretRedis").unwrap().kept_literal);
        assert!(!e.substitute("pa${ss").unwrap().kept_literal);
    }
}
