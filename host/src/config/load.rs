//! Reading a config file: YAML tree, environment substitution, typed
//! deserialization with key paths, and warnings for keys conclave ignores.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::include::Origins;
use super::seconds::invalid_seconds;
use super::{Config, Env, provider_reads};

/// A config that loaded, with what the operator should hear about it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file it came from (for messages and reloads).
    pub path: PathBuf,
    pub config: Config,
    /// Keys that were accepted but are not used, each naming its path.
    pub warnings: Vec<String>,
    /// Which included file each merged piece came from, for messages.
    pub origins: Origins,
}

impl LoadedConfig {
    /// The config error for `problems` found after loading (by the router,
    /// the profile planner, ...), each naming the file that holds its key.
    pub fn invalid(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::invalid(&self.path, problems).placed(&self.origins)
    }
}

/// One thing wrong in a config, at a key path such as `model_list[2].litellm_params.model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    /// The included file holding `path`, when it is not the config's own
    /// (and `path` is then the key's path in that file).
    pub file: Option<String>,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            file: None,
        }
    }
}

/// Why a config could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: invalid YAML: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{}", format_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Builds the error for problems found after parsing (e.g. by the router).
    pub fn invalid(file: &Path, problems: Vec<Problem>) -> Self {
        Self::Invalid {
            file: file.display().to_string(),
            problems,
        }
    }

    /// This error with each problem whose key an included file holds
    /// naming that file and its path there.
    pub fn placed(mut self, origins: &Origins) -> Self {
        if let Self::Invalid { problems, .. } = &mut self {
            for problem in problems.iter_mut() {
                if let Some((file, path)) = origins.locate(&problem.path) {
                    problem.file = Some(file.display().to_string());
                    problem.path = path;
                }
            }
        }
        self
    }
}

fn format_problems(file: &str, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}: {p}", p.file.as_deref().unwrap_or(file)));
    }
    out
}

/// The config path when none is given: `CONCLAVE_CONFIG`, then LiteLLM's
/// `LITELLM_CONFIG` and `CONFIG_FILE_PATH`, then `./config/conclave.yaml`.
pub fn default_config_path() -> PathBuf {
    ["CONCLAVE_CONFIG", "LITELLM_CONFIG", "CONFIG_FILE_PATH"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config/conclave.yaml"))
}

/// Where the master key is read when the config has none: conclave's own
/// variable, then LiteLLM's (its Docker and Helm deployments set that one).
pub const MASTER_KEY_VARIABLES: [&str; 2] = ["CONCLAVE_MASTER_KEY", "LITELLM_MASTER_KEY"];

/// Loads and checks the config at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let env = Env::beside(path).map_err(|reason| ConfigError::Read {
        file: file.clone(),
        reason,
    })?;
    load_str(&text, path, env)
}

/// Loads a config from text; `path` is only used in messages and to resolve
/// relative paths later.
pub fn load_str(text: &str, path: &Path, env: Env) -> Result<LoadedConfig, ConfigError> {
    let file = path.display().to_string();
    let (mut tree, repeated) = super::yaml::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    // LiteLLM refuses an empty config too; on a reload, a file caught
    // half-written would otherwise take every model away.
    if tree.is_null() {
        return Err(ConfigError::invalid(
            path,
            vec![Problem::new(
                ".",
                "the config is empty; write at least `model_list: []`",
            )],
        ));
    }
    // Merge keys (`<<: *defaults`), which LiteLLM's YAML reader applies.
    tree.apply_merge().map_err(|e| ConfigError::Syntax {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    if !tree.is_mapping() {
        return Err(ConfigError::invalid(
            path,
            vec![Problem::new(
                ".",
                "the config must be a mapping of sections",
            )],
        ));
    }
    let origins = super::include::merge(&mut tree, path)?;
    let mut loaded = load_tree(tree, path, env, &origins).map_err(|e| e.placed(&origins))?;
    loaded.warnings.extend(repeated.iter().map(|key| {
        format!(
            "{file}: {key}: written more than once; the last one is used, as LiteLLM's \
             YAML reader does"
        )
    }));
    loaded.warnings.extend(origins.repeated().iter().cloned());
    Ok(loaded)
}

/// Reads the merged tree of the config at `path` into checked settings.
fn load_tree(
    mut tree: Value,
    path: &Path,
    env: Env,
    origins: &Origins,
) -> Result<LoadedConfig, ConfigError> {
    let file = path.display().to_string();
    // `master_key:` with no value reads as no key: said aloud, since the
    // gateway then serves anyone.
    let null_master_key = tree
        .get("general_settings")
        .and_then(|g| g.get("master_key"))
        .is_some_and(Value::is_null);
    let credential_problems = super::credentials::apply(&mut tree);
    if !credential_problems.is_empty() {
        return Err(ConfigError::invalid(path, credential_problems));
    }
    let env = env.with_config_vars(config_vars(&tree));
    let unset_config_vars = empty_config_vars(&tree);
    let mut env_problems = Vec::new();
    let mut substituted = Substituted::default();
    substitute_tree(
        &mut tree,
        &mut String::new(),
        &env,
        (&mut env_problems, &mut substituted),
    );

    let listed_drop_params = unset_listed_drop_params(&mut tree);
    let organization_lists = take_organization_lists(&mut tree);
    let guardrails = super::guardrails::in_tree(&tree);
    // Each ignored key's path, and the hint its warning gives.
    let mut ignored: Vec<(String, String)> = Vec::new();
    let mut config: Config = {
        let mut on_ignored = |p: serde_ignored::Path<'_>| {
            let hint = match &p {
                serde_ignored::Path::Map { parent, key } => {
                    super::near_miss::hint(&format_ignored_path(parent), key)
                }
                _ => String::new(),
            };
            ignored.push((format_ignored_path(&p), hint));
        };
        let de = serde_ignored::Deserializer::new(tree, &mut on_ignored);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // A key that cannot be left unset: its variable is the problem.
            let problem = match env_problems.iter().find(|p| p.path == path) {
                Some(unset) => unset.clone(),
                None => {
                    let message = substituted.hide(&path, e.into_inner().to_string());
                    Problem::new(path, message)
                }
            };
            ConfigError::invalid(Path::new(&file), vec![problem])
        })?
    };
    for (i, organizations) in organization_lists {
        if let Some(entry) = config.model_list.get_mut(i) {
            entry.litellm_params.organizations = organizations;
        }
    }
    for entry in &mut config.model_list {
        let params = &mut entry.litellm_params;
        for (name, value) in std::mem::take(&mut params.headers) {
            params.extra_headers.entry(name).or_insert(value);
        }
    }
    // Free-form keys read as numbers get them even when written as strings
    // (typed fields already read them through `lenient`).
    super::lenient::type_free_form(&mut config);

    // A missing variable only matters where conclave reads the value: not in
    // ignored keys, litellm_params nothing reads, or deployments of providers
    // that are skipped.
    let unread = unread_params(&config);
    let read = |path: &str| {
        !ignored
            .iter()
            .map(|(p, _)| p)
            .chain(&unread)
            .any(|i| is_within(path, i))
    };
    env_problems.retain(|p| read(&p.path));
    // LiteLLM reads an unset variable as a key not written: the file loads,
    // and a deployment without its key fails when called. So here, with a
    // warning; except where leaving a key unset would open the gateway,
    // lose its records or send prompts elsewhere.
    let (required, optional): (Vec<Problem>, Vec<Problem>) =
        env_problems.into_iter().partition(|p| must_be_set(&p.path));
    if !required.is_empty() {
        return Err(ConfigError::invalid(path, required));
    }

    let mut warnings: Vec<String> = ignored
        .iter()
        .map(|(p, hint)| match super::litellm_only::instead(p) {
            Some(instead) => format!(
                "{}: LiteLLM feature not supported, ignored: {instead}",
                origins.show(&file, p)
            ),
            None => format!("{}: unknown key, ignored{hint}", origins.show(&file, p)),
        })
        .collect();
    warnings.extend(unset_config_vars.iter().map(|p| {
        format!(
            "{}: no value, so the variable is not set",
            origins.show(&file, p)
        )
    }));
    warnings.extend(optional.iter().map(|p| {
        format!(
            "{}: {}; left unset",
            origins.show(&file, &p.path),
            p.message
        )
    }));
    warnings.extend(listed_drop_params.iter().map(|p| {
        format!(
            "{}: a list is not a switch, so it is left unset, as LiteLLM does; \
             additional_drop_params lists the request fields a deployment never sends",
            origins.show(&file, p)
        )
    }));
    // Only where conclave reads the value, as for unset references; the
    // value itself is never shown (it may be a secret holding a `$`).
    warnings.extend(
        substituted
            .kept_literal
            .iter()
            .filter(|p| read(p))
            .map(|p| {
                format!(
                    "{}: a `$` followed by a name no environment variable has is kept as \
                     written (write `${{NAME}}` for a reference that must be set)",
                    origins.show(&file, p)
                )
            }),
    );
    let master_key_variable = MASTER_KEY_VARIABLES
        .iter()
        .any(|name| env.get(name).is_some_and(|v| !v.is_empty()));
    if null_master_key && !master_key_variable {
        warnings.push(format!(
            "{file}: general_settings.master_key: has no value, so there is no master key \
             and the gateway serves anyone"
        ));
    }
    let master_key_set = master_key_variable
        || config
            .general_settings
            .master_key
            .as_ref()
            .is_some_and(|k| !k.expose().is_empty());
    let ls = &config.litellm_settings;
    if !master_key_set && (ls.max_end_user_budget.is_some() || ls.max_end_user_budget_id.is_some())
    {
        warnings.push(format!(
            "{file}: litellm_settings.max_end_user_budget: end users are recorded and limited \
             in the key store, which needs a master key; without one no end user is limited"
        ));
    }
    let gs = &config.general_settings;
    if !master_key_set && (gs.public_routes.is_some() || gs.admin_only_routes.is_some()) {
        warnings.push(format!(
            "{file}: general_settings.public_routes / admin_only_routes: without a master key \
             every route is served without a key, so they change nothing"
        ));
    }
    if gs.allowed_routes.as_ref().is_some_and(Vec::is_empty) {
        warnings.push(format!(
            "{file}: general_settings.allowed_routes: is empty, so every route is refused (403); \
             remove the key to serve every route"
        ));
    }
    if ls.budget_duration.is_some() && ls.max_budget.is_none_or(|max| max == 0.0) {
        warnings.push(format!(
            "{file}: litellm_settings.budget_duration: max_budget is unset or 0 (which sets no \
             cap), so there is no gateway budget for it to renew"
        ));
    }
    let mut problems = guardrails;
    problems.extend(super::guardrails::in_callbacks(&config));
    problems.extend(super::guardrails::in_deployments(&config));
    problems.extend(environment_problems(&config, &env));
    problems.extend(message_logging_problem(&config, &env));
    problems.extend(empty_master_key_variable(&config, &env));
    warnings.extend(overridden_master_key_variable(&config, &env, &file));
    check(&config, &file, &mut problems, &mut warnings);
    warnings.extend(super::callbacks::warnings(&config, &file));
    if !problems.is_empty() {
        // A misspelt key often causes the problem (`litelm_params` leaves
        // the model unset): the keys with a hint are said beside it.
        problems.extend(
            ignored
                .iter()
                .filter(|(_, hint)| !hint.is_empty())
                .map(|(p, hint)| Problem::new(p.clone(), format!("unknown key{hint}"))),
        );
        return Err(ConfigError::invalid(path, problems));
    }
    config.env = env;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
        warnings,
        origins: origins.clone(),
    })
}

/// The key paths of `environment_variables` written with no value (a
/// placeholder in LiteLLM's own examples): they set nothing.
fn empty_config_vars(tree: &Value) -> Vec<String> {
    let Some(Value::Mapping(map)) = tree.get("environment_variables") else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| v.is_null())
        .filter_map(|(k, _)| k.as_str())
        .map(|k| format!("environment_variables.{k}"))
        .collect()
}

fn config_vars(tree: &Value) -> std::collections::HashMap<String, String> {
    let mut vars = std::collections::HashMap::new();
    if let Some(Value::Mapping(map)) = tree.get("environment_variables") {
        for (k, v) in map {
            if let (Some(k), Some(v)) = (k.as_str(), scalar_to_string(v)) {
                vars.insert(k.to_owned(), v);
            }
        }
    }
    vars
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The values the environment gave, by key path, with the reference that
/// named them: an error about such a value names the reference, never the
/// value, which may be a secret (`timeout: os.environ/API_KEY` by mistake).
#[derive(Default)]
struct Substituted {
    /// Key path -> (the reference as written, the value it gave).
    values: std::collections::HashMap<String, (String, String)>,
    /// Key paths holding a `$NAME` that named no set variable, kept as written.
    kept_literal: Vec<String>,
}

impl Substituted {
    /// `message` about the value at `path`, with a value the environment
    /// gave there replaced by its reference.
    fn hide(&self, path: &str, message: String) -> String {
        match self.values.get(path) {
            Some((reference, value)) if !value.is_empty() => {
                message.replace(value.as_str(), &format!("(the value of {reference})"))
            }
            _ => message,
        }
    }
}

fn substitute_tree(
    value: &mut Value,
    path: &mut String,
    env: &Env,
    (problems, substituted): (&mut Vec<Problem>, &mut Substituted),
) {
    match value {
        Value::String(s) => match env.substitute(s) {
            Ok(resolved) => {
                if resolved.kept_literal {
                    substituted.kept_literal.push(path.clone());
                }
                if resolved.text != *s {
                    let reference = std::mem::replace(s, resolved.text);
                    substituted
                        .values
                        .insert(path.clone(), (reference, s.clone()));
                }
            }
            // Read as not written, as LiteLLM reads an unset variable.
            Err(message) => {
                problems.push(Problem::new(path.clone(), message));
                *value = Value::Null;
            }
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                substitute_tree(item, path, env, (problems, substituted));
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k.as_str() {
                    Some(key) => path.push_str(key),
                    None => path.push_str(&format!("{k:?}")),
                }
                substitute_tree(v, path, env, (problems, substituted));
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => {
            substitute_tree(&mut tagged.value, path, env, (problems, substituted))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `litellm_settings.turn_off_message_logging` beside a setting that logs
/// message content (request logs, or traces capturing it): the two cannot
/// both hold, and keeping either silently would break the other's promise.
fn message_logging_problem(config: &Config, env: &Env) -> Option<Problem> {
    if config.litellm_settings.turn_off_message_logging != Some(true) {
        return None;
    }
    let gs = &config.general_settings;
    let logs = gs.request_log_dir.is_some() || env.get("CONCLAVE_REQUEST_LOG_DIR").is_some();
    let traces = gs.otel.as_ref().and_then(|o| o.capture_message_content) == Some(true)
        || env
            .get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let keeper = match (logs, traces) {
        (true, _) => "request logs (general_settings.request_log_dir, CONCLAVE_REQUEST_LOG_DIR)",
        (false, true) => "traces that capture message content (capture_message_content)",
        (false, false) => return None,
    };
    Some(Problem::new(
        "litellm_settings.turn_off_message_logging",
        format!("{keeper} keep message content; turn one of the two off"),
    ))
}

/// How answers are cached when a Redis store the config names is not
/// used: by the in-memory store of the kind served.
fn memory_cache(served: super::CacheType) -> &'static str {
    match served {
        super::CacheType::LocalSemantic => "by the in-memory semantic index of embedding_model",
        _ => "in memory, exact matches only",
    }
}

/// LiteLLM's environments: `LITELLM_ENVIRONMENT` and every entry's
/// `model_info.supported_environments` name one of [`super::ENVIRONMENTS`]
/// (a misspelt one would leave a deployment out, or in, unnoticed).
fn environment_problems(config: &Config, env: &Env) -> Vec<Problem> {
    let known = |name: &str| super::ENVIRONMENTS.contains(&name.trim());
    let expected = super::ENVIRONMENTS.join(", ");
    let mut problems = Vec::new();
    if let Some(current) = env.get(super::ENVIRONMENT_VARIABLE).filter(|v| !known(v)) {
        problems.push(Problem::new(
            super::ENVIRONMENT_VARIABLE,
            format!("{current:?} is not an environment; expected one of {expected}"),
        ));
    }
    for (i, entry) in config.model_list.iter().enumerate() {
        let Some(listed) = entry
            .model_info
            .as_ref()
            .and_then(|info| info.get("supported_environments"))
        else {
            continue;
        };
        let names: Option<Vec<&str>> = listed
            .as_sequence()
            .and_then(|list| list.iter().map(Value::as_str).collect());
        if !names.is_some_and(|names| names.iter().all(|n| known(n))) {
            problems.push(Problem::new(
                format!("model_list[{i}].model_info.supported_environments"),
                format!("must be a list of environments ({expected})"),
            ));
        }
    }
    problems
}

fn format_ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", format_ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = format_ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            format_ignored_path(parent)
        }
    }
}

/// Whether the key at `path` must not be left unset when its environment
/// variable is: the master key (the gateway would serve anyone), the
/// database (spend would go to another one) and a deployment's `api_base`
/// (its prompts would go to the provider's public endpoint instead).
fn must_be_set(path: &str) -> bool {
    [
        "general_settings.master_key",
        "general_settings.database_url",
    ]
    .contains(&path)
        || path.ends_with(".api_base")
        || path.ends_with(".base_url")
}

/// Key paths of `model_list` that no deployment reads: whole entries of
/// unsupported providers (skipped with a warning when the router is built) and
/// extra `litellm_params` keys that are neither request defaults nor mock
/// settings (warned about as unknown).
fn unread_params(config: &Config) -> Vec<String> {
    let mut unread = Vec::new();
    for (i, entry) in config.model_list.iter().enumerate() {
        if entry.is_composite() {
            continue;
        }
        let provider = entry.litellm_params.provider();
        if !entry.litellm_params.is_served() {
            unread.push(format!("model_list[{i}]"));
            continue;
        }
        for key in entry.litellm_params.extra.keys() {
            if !provider_reads(provider, key) {
                unread.push(format!("model_list[{i}].litellm_params.{key}"));
            }
        }
    }
    unread
}

/// Removes each deployment's `drop_params` written as a list (meant as
/// `additional_drop_params`; LiteLLM treats it as unset) and returns the
/// key paths it removed.
fn unset_listed_drop_params(tree: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    for (i, params) in litellm_params_of(tree) {
        if params.get("drop_params").is_some_and(Value::is_sequence) {
            params.remove("drop_params");
            removed.push(format!("model_list[{i}].litellm_params.drop_params"));
        }
    }
    removed
}

/// Each model_list entry's `litellm_params` mapping in the tree, with the
/// entry's index.
fn litellm_params_of(tree: &mut Value) -> impl Iterator<Item = (usize, &mut serde_yaml::Mapping)> {
    tree.get_mut("model_list")
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, entry)| match entry.get_mut("litellm_params") {
            Some(Value::Mapping(params)) => Some((i, params)),
            _ => None,
        })
}

/// Takes each deployment's `organization` written as a list of names
/// (LiteLLM's form for one deployment per organization) out of the tree,
/// by entry index, for [`LitellmParams::organizations`](super::LitellmParams).
fn take_organization_lists(tree: &mut Value) -> Vec<(usize, Vec<String>)> {
    let mut lists = Vec::new();
    for (i, params) in litellm_params_of(tree) {
        let names: Option<Vec<String>> = params
            .get("organization")
            .and_then(Value::as_sequence)
            .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect());
        if let Some(names) = names.filter(|n| !n.is_empty()) {
            params.remove("organization");
            lists.push((i, names));
        }
    }
    lists
}

/// Whether `path` is `prefix` itself or a key below it.
fn is_within(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// A master key variable that is set but empty (as `export
/// CONCLAVE_MASTER_KEY=$UNSET` leaves it) where the config names no key:
/// refused, as an empty `master_key` is, rather than serving anyone.
fn empty_master_key_variable(config: &Config, env: &Env) -> Option<Problem> {
    if config.general_settings.master_key.is_some() {
        return None;
    }
    let values = MASTER_KEY_VARIABLES.map(|name| (name, env.get(name)));
    if values
        .iter()
        .any(|(_, v)| v.as_ref().is_some_and(|v| !v.trim().is_empty()))
    {
        return None;
    }
    let (name, _) = values.iter().find(|(_, v)| v.is_some())?;
    Some(Problem::new(
        *name,
        "is set but empty: an empty master key would leave the gateway open to anyone; \
         give it a value, or unset it to run without a key",
    ))
}

/// A master key variable holding another key than the config's, which
/// wins: clients sent the variable's key would be refused without a word.
fn overridden_master_key_variable(config: &Config, env: &Env, file: &str) -> Option<String> {
    let configured = config.general_settings.master_key.as_ref()?.expose();
    let name = MASTER_KEY_VARIABLES.iter().find(|name| {
        env.get(name)
            .is_some_and(|v| !v.trim().is_empty() && v != configured)
    })?;
    Some(format!(
        "{file}: general_settings.master_key: is used; {name}, which holds another key, is not"
    ))
}

/// Checks that need more than the types: required keys, ranges, known names.
fn check(config: &Config, file: &str, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    check_model_list(config, problems);
    check_general(config, problems);
    check_waits(config, problems);
    check_sizes(&config.general_settings, problems);
    warn_inert_settings(config, file, warnings);
    warn_zero_limits(config, file, warnings);
}

/// A deployment's `rpm` or `tpm` of 0, which LiteLLM's users may write for
/// "no limit": the router reads it as no room at all (usage-based routing
/// never picks the deployment, and the shuffle weighs it at 0).
fn warn_zero_limits(config: &Config, file: &str, warnings: &mut Vec<String>) {
    for (i, entry) in config.model_list.iter().enumerate() {
        let params = &entry.litellm_params;
        for (key, value) in [("rpm", params.rpm), ("tpm", params.tpm)] {
            if value == Some(0) {
                warnings.push(format!(
                    "{file}: model_list[{i}] ({}): {key} is 0, which leaves this deployment no \
                     room: usage-based routing never calls it and the shuffle gives it no \
                     weight; leave {key} out for no limit",
                    entry.model_name
                ));
            }
        }
    }
}

/// Each `model_list` entry: its names, timeouts, dropped fields and weight.
fn check_model_list(config: &Config, problems: &mut Vec<Problem>) {
    for (i, entry) in config.model_list.iter().enumerate() {
        let at = format!("model_list[{i}]");
        if entry.model_name.trim().is_empty() {
            problems.push(Problem::new(format!("{at}.model_name"), "is required"));
        }
        let params = &entry.litellm_params;
        if params.model.trim().is_empty() {
            problems.push(Problem::new(
                format!("{at}.litellm_params.model"),
                "is required (e.g. openai/gpt-4o-mini or mock/echo)",
            ));
        }
        for (key, value) in [
            ("timeout", params.timeout),
            ("request_timeout", params.request_timeout),
            ("stream_timeout", params.stream_timeout),
        ] {
            if let Some(why) = value.and_then(|v| invalid_seconds(v, true)) {
                problems.push(Problem::new(format!("{at}.litellm_params.{key}"), why));
            }
        }
        if let Some(why) = params.cooldown_time.and_then(|v| invalid_seconds(v, false)) {
            problems.push(Problem::new(
                format!("{at}.litellm_params.cooldown_time"),
                why,
            ));
        }
        check_extra_body(params.extra.get(super::EXTRA_BODY), &at, problems);
        for key in ["rpm", "tpm"] {
            let written = entry.model_info.as_ref().and_then(|info| info.get(key));
            if written.is_some_and(|v| !v.is_null() && v.as_u64().is_none()) {
                problems.push(Problem::new(
                    format!("{at}.model_info.{key}"),
                    "must be a whole number of at least 0",
                ));
            }
        }
        check_model_info(entry, &at, problems);
        for (j, name) in params.additional_drop_params.iter().enumerate() {
            let why = match name.trim() {
                "" => "is empty; name a request field to leave out",
                "model" | "stream" => "cannot be dropped: the gateway sets it on every call",
                "messages" => "cannot be dropped: no model answers a request without it",
                _ => continue,
            };
            problems.push(Problem::new(
                format!("{at}.litellm_params.additional_drop_params[{j}]"),
                why,
            ));
        }
        if params.max_parallel_requests == Some(0) {
            problems.push(Problem::new(
                format!("{at}.litellm_params.max_parallel_requests"),
                "must be at least 1: 0 would hold every call to this deployment forever",
            ));
        }
        // A weight of 0 drains a deployment, as in LiteLLM: it is picked
        // only when every deployment of its group weighs 0.
        if let Some(v) = params.weight
            && !(v.is_finite() && v >= 0.0)
        {
            problems.push(Problem::new(
                format!("{at}.litellm_params.weight"),
                format!("must be a number of 0 or more, got {v}"),
            ));
        }
    }
}

/// The values of an entry the gateway reads from `model_info` (and its
/// prices from `litellm_params` too) that would otherwise be passed over
/// where they cannot be read: a price that is not a number would price
/// calls at 0, a context window that is not one would check nothing, and
/// access groups that are not a list would give a key nothing.
fn check_model_info(entry: &super::ModelEntry, at: &str, problems: &mut Vec<Problem>) {
    let info = entry.model_info.as_ref();
    for key in super::params::PRICE_KEYS {
        let placed = [
            ("model_info", info.and_then(|i| i.get(*key))),
            ("litellm_params", entry.litellm_params.extra.get(*key)),
        ];
        for (section, value) in placed {
            if value.is_some_and(|v| !v.is_null() && !is_price(v)) {
                problems.push(Problem::new(
                    format!("{at}.{section}.{key}"),
                    "must be a number of USD of at least 0 (e.g. 0.0000025)",
                ));
            }
        }
    }
    for key in ["max_input_tokens", "max_output_tokens", "max_tokens"] {
        if let Some(v) = info.and_then(|i| i.get(key))
            && !v.is_null()
            && v.as_u64().is_none_or(|n| n == 0)
        {
            problems.push(Problem::new(
                format!("{at}.model_info.{key}"),
                "must be a whole number of tokens of at least 1",
            ));
        }
    }
    if let Some(v) = info.and_then(|i| i.get("access_groups"))
        && !v.is_null()
        && !v
            .as_sequence()
            .is_some_and(|groups| groups.iter().all(Value::is_string))
    {
        problems.push(Problem::new(
            format!("{at}.model_info.access_groups"),
            "must be a list of group names (e.g. [beta])",
        ));
    }
}

/// A price as the price book reads it: a non-negative number, or a string
/// holding one.
fn is_price(v: &Value) -> bool {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .is_some_and(|n: f64| n.is_finite() && n >= 0.0)
}

/// A deployment's `extra_body`: a mapping of request fields, none of them
/// one the gateway sets itself.
fn check_extra_body(extra: Option<&Value>, at: &str, problems: &mut Vec<Problem>) {
    let path = format!("{at}.litellm_params.{}", super::EXTRA_BODY);
    match extra {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(fields)) => {
            for (key, value) in fields {
                let Some(key) = key.as_str() else { continue };
                if super::GATEWAY_FIELDS.contains(&key) {
                    problems.push(Problem::new(
                        format!("{path}.{key}"),
                        "cannot be set here: the gateway sets it on every call",
                    ));
                } else if holds_non_finite(value) {
                    problems.push(Problem::new(
                        format!("{path}.{key}"),
                        "holds .inf or .nan, which JSON cannot carry",
                    ));
                }
            }
        }
        Some(_) => problems.push(Problem::new(path, "must be a mapping of request fields")),
    }
}

/// Whether `value` holds a number JSON has no form for, at any depth.
fn holds_non_finite(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| !f.is_finite()),
        Value::Sequence(items) => items.iter().any(holds_non_finite),
        Value::Mapping(map) => map.values().any(holds_non_finite),
        Value::Tagged(tagged) => holds_non_finite(&tagged.value),
        _ => false,
    }
}

/// The database pool, the master key, CORS origins and the parallel cap.
fn check_general(config: &Config, problems: &mut Vec<Problem>) {
    let gs = &config.general_settings;
    check_user_headers(gs, problems);
    // A zero wait would fail every statement: positive, unlike the others.
    if let Some(why) = gs
        .database_connection_timeout
        .and_then(|v| invalid_seconds(v, true))
    {
        problems.push(Problem::new(
            "general_settings.database_connection_timeout",
            why,
        ));
    }
    if gs.database_connection_pool_limit == Some(0) {
        problems.push(Problem::new(
            "general_settings.database_connection_pool_limit",
            "must be at least 1",
        ));
    }
    if let Some(format) = gs
        .request_log_format
        .as_deref()
        .filter(|f| !matches!(*f, "text" | "jsonl"))
    {
        problems.push(Problem::new(
            "general_settings.request_log_format",
            format!("{format:?}: must be text or jsonl"),
        ));
    }
    if gs
        .master_key
        .as_ref()
        .is_some_and(|k| k.expose().trim().is_empty())
    {
        problems.push(Problem::new(
            "general_settings.master_key",
            "is empty: an empty master key would leave the gateway open to anyone; \
             set a key, or remove the line to run without one",
        ));
    }
    for (i, origin) in gs.cors_allow_origins.iter().flatten().enumerate() {
        if let Some(why) = crate::http::cors::origin_problem(origin) {
            problems.push(Problem::new(
                format!("general_settings.cors_allow_origins[{i}]"),
                why,
            ));
        }
    }
    if let Some((key, why)) = crate::http::route_rules::problem(gs) {
        problems.push(Problem::new(key, why));
    }
    for (i, entry) in gs.allowed_ips.iter().flatten().enumerate() {
        if let Some(why) = crate::http::client_ip::entry_problem(entry) {
            problems.push(Problem::new(
                format!("general_settings.allowed_ips[{i}]"),
                why,
            ));
        }
    }
    if config.router_settings.default_max_parallel_requests == Some(0) {
        problems.push(Problem::new(
            "router_settings.default_max_parallel_requests",
            "must be at least 1: 0 would hold every call forever",
        ));
    }
    if gs.global_max_parallel_requests == Some(0) {
        problems.push(Problem::new(
            "general_settings.global_max_parallel_requests",
            "must be at least 1: 0 would refuse every request",
        ));
    }
}

/// The longest `router_settings.retry_after`, in seconds, and the longest
/// upstream `retry-after` hint a retry waits for: either is waited before
/// every retry, however long the request may take.
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Timeouts and intervals in seconds across the sections.
fn check_waits(config: &Config, problems: &mut Vec<Problem>) {
    let rs = &config.router_settings;
    let ls = &config.litellm_settings;
    let gs = &config.general_settings;
    for (key, value) in [
        ("router_settings.cooldown_time", rs.cooldown_time),
        ("router_settings.retry_after", rs.retry_after),
        ("litellm_settings.cooldown_time", ls.cooldown_time),
        (
            "routing_strategy_args.lowest_latency_buffer",
            rs.routing_strategy_args.lowest_latency_buffer,
        ),
        (
            "general_settings.health_check_interval",
            gs.health_check_interval,
        ),
        (
            "general_settings.client_write_timeout",
            gs.client_write_timeout,
        ),
        (
            "general_settings.composite_queue_timeout",
            gs.composite_queue_timeout,
        ),
    ] {
        if let Some(why) = value.and_then(|v| invalid_seconds(v, false)) {
            problems.push(Problem::new(key, why));
        }
    }
    if let Some(wait) = rs.retry_after
        && wait > MAX_RETRY_AFTER_SECS as f64
    {
        problems.push(Problem::new(
            "router_settings.retry_after",
            format!(
                "must be at most {MAX_RETRY_AFTER_SECS} seconds, got {wait}: it is waited before \
                 every retry, however long the request may take"
            ),
        ));
    }
    // Waits that zero would turn into "refuse at once" (a call given no
    // time at all fails every attempt).
    for (key, value) in [
        ("router_settings.timeout", rs.timeout),
        ("router_settings.stream_timeout", rs.stream_timeout),
        ("litellm_settings.request_timeout", ls.request_timeout),
        (
            "general_settings.proxy_batch_write_at",
            gs.proxy_batch_write_at,
        ),
        (
            "general_settings.header_read_timeout",
            gs.header_read_timeout,
        ),
        (
            "general_settings.request_body_timeout",
            gs.request_body_timeout,
        ),
        (
            "general_settings.max_stream_duration",
            gs.max_stream_duration,
        ),
    ] {
        if let Some(why) = value.and_then(|v| invalid_seconds(v, true)) {
            problems.push(Problem::new(key, why));
        }
    }
    if let Some(max) = ls.max_end_user_budget
        && !(max.is_finite() && max >= 0.0)
    {
        problems.push(Problem::new(
            "litellm_settings.max_end_user_budget",
            format!("must be a non-negative number of USD, not {max}"),
        ));
    }
    if let Some(status) = ls.budget_exceeded_status_code
        && !(400..=599).contains(&status)
    {
        problems.push(Problem::new(
            "litellm_settings.budget_exceeded_status_code",
            format!("must be an HTTP error status, 400 to 599, not {status}"),
        ));
    }
    if let Some(max) = ls.max_budget
        && !(max.is_finite() && max >= 0.0)
    {
        problems.push(Problem::new(
            "litellm_settings.max_budget",
            format!("must be a finite, non-negative number of USD (0 sets no cap), not {max}"),
        ));
    }
    if ls
        .max_end_user_budget_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        problems.push(Problem::new(
            "litellm_settings.max_end_user_budget_id",
            "must name a budget made with /budget/new",
        ));
    }
}

/// Sizes in megabytes: each positive, and the in-flight bodies' total room
/// for at least one body of the largest size.
fn check_sizes(gs: &super::schema::GeneralSettings, problems: &mut Vec<Problem>) {
    for (key, value) in [
        ("general_settings.request_log_max_mb", gs.request_log_max_mb),
        (
            "general_settings.max_request_size_mb",
            gs.max_request_size_mb,
        ),
        (
            "general_settings.max_stored_response_mb",
            gs.max_stored_response_mb,
        ),
        (
            "general_settings.max_response_size_mb",
            gs.max_response_size_mb,
        ),
    ] {
        if let Some(mb) = value
            && !(mb.is_finite() && mb > 0.0)
        {
            problems.push(Problem::new(
                key,
                format!("must be a positive number, got {mb}"),
            ));
        }
    }
    if let Some(mb) = gs.max_response_bodies_mb {
        let one_answer = gs
            .max_response_size_mb
            .unwrap_or(crate::providers::DEFAULT_MAX_RESPONSE_BYTES as f64 / (1024.0 * 1024.0));
        if !(mb.is_finite() && mb >= 1.0 && mb >= one_answer) {
            problems.push(Problem::new(
                "general_settings.max_response_bodies_mb",
                format!(
                    "must be a number of at least 1 and at least max_response_size_mb ({one_answer}), got {mb}"
                ),
            ));
        }
    }
    if let Some(mb) = gs.max_request_bodies_mb {
        let one_body = gs
            .max_request_size_mb
            .unwrap_or(super::DEFAULT_MAX_REQUEST_SIZE_MB);
        if !(mb.is_finite() && mb >= 1.0 && mb >= one_body) {
            problems.push(Problem::new(
                "general_settings.max_request_bodies_mb",
                format!(
                    "must be a number of at least 1 and at least max_request_size_mb ({one_body}), got {mb}"
                ),
            ));
        }
    }
}

/// `user_header_name` and each `user_header_mappings` entry name a valid
/// HTTP header, and each mapping a role LiteLLM knows.
fn check_user_headers(gs: &super::schema::GeneralSettings, problems: &mut Vec<Problem>) {
    let named = gs
        .user_header_name
        .iter()
        .map(|name| ("general_settings.user_header_name".to_owned(), name));
    let mapped = gs
        .user_header_mappings
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| {
            (
                format!("general_settings.user_header_mappings[{i}].header_name"),
                &m.header_name,
            )
        });
    for (path, name) in named.chain(mapped) {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(Problem::new(
                path,
                format!("{name:?} is not an HTTP header name"),
            ));
        }
    }
    for (i, m) in gs.user_header_mappings.iter().flatten().enumerate() {
        if !["customer", "internal_user"].contains(&m.litellm_user_role.as_str()) {
            problems.push(Problem::new(
                format!("general_settings.user_header_mappings[{i}].litellm_user_role"),
                format!(
                    "{:?} is not a role a header may name: customer (the end user) or internal_user",
                    m.litellm_user_role
                ),
            ));
        }
    }
}

/// LiteLLM settings that load but do nothing here (or something else):
/// said, so nobody relies on them.
fn warn_inert_settings(config: &Config, file: &str, warnings: &mut Vec<String>) {
    if config.litellm_settings.custom_provider_map.is_some() {
        warnings.push(format!(
            "{file}: litellm_settings.custom_provider_map: Python custom providers are not loaded; \
             composite profiles are served natively"
        ));
    }
    let ls = &config.litellm_settings;
    for (key, set, what) in [
        (
            "json_logs",
            ls.json_logs == Some(true),
            "the log format is chosen with --log-format json (or CONCLAVE_LOG_FORMAT=json)",
        ),
        (
            "set_verbose",
            ls.set_verbose == Some(true),
            "log levels are chosen with --detailed_debug or RUST_LOG (RUST_LOG=debug)",
        ),
    ] {
        if set {
            warnings.push(format!("{file}: litellm_settings.{key}: accepted; {what}"));
        }
    }
    if config.litellm_settings.cache == Some(true)
        && let Some(params) = &config.litellm_settings.cache_params
        && let (Some(written), Some(served)) = (params.kind, params.served_type())
        && let Some(name) = written.litellm_only
    {
        let how = memory_cache(served);
        warnings.push(format!(
            "{file}: litellm_settings.cache_params.type: {name} is a LiteLLM store this \
             gateway does not have; answers are cached {how}, bounded by max_size_mb, and \
             not kept across restarts"
        ));
    }
    if config.router_settings.enable_tag_filtering != Some(true)
        && let Some(i) = config
            .model_list
            .iter()
            .position(|e| !e.litellm_params.tags.is_empty())
    {
        warnings.push(format!(
            "{file}: model_list[{i}].litellm_params.tags: deployments' tags pick nothing \
             unless router_settings.enable_tag_filtering is true"
        ));
    }
    if config.litellm_settings.cache == Some(true)
        && let Some(params) = &config.litellm_settings.cache_params
        && let Some(key) = params.unsupported_redis_topology()
    {
        let how = params
            .served_type()
            .map_or("in memory, exact matches only", memory_cache);
        warnings.push(format!(
            "{file}: litellm_settings.cache_params.{key}: Redis Cluster and Sentinel are \
             not supported; answers are cached {how}, bounded by max_size_mb, per instance \
             and not kept across restarts"
        ));
    }
    if config
        .general_settings
        .user_header_mappings
        .iter()
        .flatten()
        .any(|m| !m.names_end_user())
    {
        warnings.push(format!(
            "{file}: general_settings.user_header_mappings: only headers with \
             litellm_user_role: customer are read (they name the end user); an \
             internal_user header names no one here"
        ));
    }
    if config
        .general_settings
        .allowed_ips
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        warnings.push(format!(
            "{file}: general_settings.allowed_ips: is empty, so every client is refused              (403); remove the key to serve every address"
        ));
    }
    if config.general_settings.use_x_forwarded_for == Some(true)
        && config.general_settings.allowed_ips.is_none()
    {
        warnings.push(format!(
            "{file}: general_settings.use_x_forwarded_for: reads nothing without              general_settings.allowed_ips"
        ));
    }
    if config.litellm_settings.ssl_security_level.is_some() {
        warnings.push(format!(
            "{file}: litellm_settings.ssl_security_level: accepted; it is OpenSSL's, and \
             upstream TLS here (rustls) offers only modern protocols and ciphers"
        ));
    }
    if config.general_settings.store_prompts_in_spend_logs == Some(true) {
        warnings.push(format!(
            "{file}: general_settings.store_prompts_in_spend_logs: accepted; spend-log rows \
             hold no bodies: request and response bodies are kept by the request logs \
             (general_settings.request_log_dir, or CONCLAVE_REQUEST_LOG_DIR)"
        ));
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn load_text(text: &str) -> Result<LoadedConfig, ConfigError> {
        load_str(text, Path::new("test.yaml"), Env::default())
    }

    #[test]
    fn extra_body_may_not_set_what_the_gateway_sets_nor_be_a_scalar() {
        let err = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: k, extra_body: {stream: true, top_k: 2, x: [.inf]}}\n    model_info: {rpm: -5}\n  - model_name: b\n    litellm_params: {model: openai/b, api_key: k, extra_body: 3, cooldown_time: -1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("model_list[0].litellm_params.extra_body.stream: cannot be set here"),
            "{err}"
        );
        assert!(!err.contains("top_k"), "{err}");
        assert!(
            err.contains("model_list[0].litellm_params.extra_body.x: holds .inf"),
            "{err}"
        );
        assert!(
            err.contains("model_list[0].model_info.rpm: must be a whole number"),
            "{err}"
        );
        assert!(
            err.contains("model_list[1].litellm_params.extra_body: must be a mapping"),
            "{err}"
        );
        assert!(
            err.contains("model_list[1].litellm_params.cooldown_time: must be a non-negative"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_weight_drains_a_deployment_and_a_negative_one_is_refused() {
        let two = |weight: &str| {
            load_text(&format!(
                "model_list:\n  - model_name: m\n    litellm_params: {{model: mock/a, weight: {weight}}}\n  \
                 - model_name: m\n    litellm_params: {{model: mock/b}}\n"
            ))
        };
        assert!(two("0").is_ok());
        let err = two("-1").unwrap_err().to_string();
        assert!(
            err.contains("model_list[0].litellm_params.weight: must be a number of 0 or more"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_rpm_or_tpm_is_named_in_a_warning() {
        let loaded = load_text(
            "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, rpm: 0}\n  \
             - model_name: n\n    litellm_params: {model: mock/n}\n    model_info: {tpm: 0}\n",
        )
        .unwrap();
        let zero: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.contains("is 0"))
            .collect();
        assert_eq!(zero.len(), 2, "{:?}", loaded.warnings);
        assert!(zero[0].contains("model_list[0] (m): rpm is 0"), "{zero:?}");
        assert!(zero[1].contains("model_list[1] (n): tpm is 0"), "{zero:?}");
    }

    #[test]
    fn type_error_names_file_and_key_path() {
        let err = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n  - model_name: b\n    litellm_params: {model: [1]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("test.yaml: model_list[1].litellm_params.model"),
            "{err}"
        );
    }

    #[test]
    fn a_deployments_request_timeout_is_its_timeout() {
        let loaded = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, request_timeout: 3}\n",
        )
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!((params.timeout, params.request_timeout), (None, Some(3.0)));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn yaml_merge_keys_are_applied_as_litellm_reads_them() {
        let loaded = load_text(
            "x-base: &base {api_base: 'http://127.0.0.1:9/v1', rpm: 100}\nmodel_list:\n  - model_name: a\n    litellm_params:\n      <<: *base\n      model: openai/a\n",
        )
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!(params.api_base.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(params.rpm, Some(100));
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("<<")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn secrets_variables_and_underscored_numbers_read_as_litellm_reads_them() {
        let loaded = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: 8675309123, tpm: 20_000}\nrouter_settings: {redis_host: h, redis_password: 90210555}\nenvironment_variables: {CONCLAVE_T_PORT: 6379, CONCLAVE_T_ON: true}\n",
        )
        .unwrap();
        let config = &loaded.config;
        let params = &config.model_list[0].litellm_params;
        assert_eq!(
            params.api_key.as_ref().map(Secret::expose),
            Some("8675309123")
        );
        assert_eq!(params.tpm, Some(20_000));
        let password = config.router_settings.redis_password.as_ref();
        assert_eq!(password.map(Secret::expose), Some("90210555"));
        assert_eq!(config.env.get("CONCLAVE_T_PORT").as_deref(), Some("6379"));
        assert_eq!(config.env.get("CONCLAVE_T_ON").as_deref(), Some("true"));
        for bad in ["2__0", "_20", "20_", "2_0.5_"] {
            let err = load_text(&format!(
                "model_list:\n  - model_name: a\n    litellm_params: {{model: openai/a, tpm: '{bad}'}}\n"
            ));
            assert!(err.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dollar_inside_a_secret_is_kept_and_the_warning_does_not_show_it() {
        let loaded = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: 'sk-proj-Ab$Xy9zSECRETtail'}\n",
        )
        .unwrap();
        let key = loaded.config.model_list[0].litellm_params.api_key.as_ref();
        assert_eq!(key.map(Secret::expose), Some("sk-proj-Ab$Xy9zSECRETtail"));
        let warning = loaded
            .warnings
            .iter()
            .find(|w| w.contains("model_list[0].litellm_params.api_key"))
            .expect("a warning for the kept `$`");
        assert!(!warning.contains("Xy9z"), "{warning}");
    }

    #[test]
    fn the_body_budget_must_hold_one_body_of_the_largest_size() {
        let err = load_text("general_settings:\n  max_request_bodies_mb: 16\nmodel_list: []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("general_settings.max_request_bodies_mb") && err.contains("(32)"),
            "{err}"
        );
        assert!(load_text(
            "general_settings:\n  max_request_bodies_mb: 16\n  max_request_size_mb: 8\nmodel_list: []\n"
        )
        .is_ok());
        let err = load_text("general_settings:\n  max_response_bodies_mb: 16\nmodel_list: []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("general_settings.max_response_bodies_mb") && err.contains("(64)"),
            "{err}"
        );
    }

    #[test]
    fn a_spend_batch_interval_must_be_a_positive_number_of_seconds() {
        for bad in ["0", "-1", ".nan"] {
            let err = load_text(&format!(
                "general_settings:\n  proxy_batch_write_at: {bad}\nmodel_list: []\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("test.yaml: general_settings.proxy_batch_write_at: must be a positive number of seconds"),
                "{bad}: {err}"
            );
        }
        assert!(
            load_text("general_settings:\n  proxy_batch_write_at: 10\nmodel_list: []\n").is_ok()
        );
    }

    #[test]
    fn an_empty_master_key_variable_is_refused_rather_than_leaving_the_gateway_open() {
        let err = load_text("environment_variables:\n  LITELLM_MASTER_KEY: ''\nmodel_list: []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LITELLM_MASTER_KEY: is set but empty"),
            "{err}"
        );
        let keyed = "environment_variables:\n  LITELLM_MASTER_KEY: ''\n\
                     general_settings:\n  master_key: sk-1\nmodel_list: []\n";
        assert!(load_text(keyed).is_ok(), "the config's key is the one used");
        let both = "environment_variables:\n  LITELLM_MASTER_KEY: sk-env\n\
                    general_settings:\n  master_key: sk-file\nmodel_list: []\n";
        let warnings = load_text(both).unwrap().warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("master_key: is used; LITELLM_MASTER_KEY")),
            "{warnings:?}"
        );
        assert!(!format!("{warnings:?}").contains("sk-"), "{warnings:?}");
    }

    #[test]
    fn prices_context_windows_and_access_groups_that_cannot_be_read_are_refused() {
        let err = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_key: k, input_cost_per_token: abc}\n    model_info: {input_cost_per_token: '0.001 ', output_cost_per_token: '$0.002', max_input_tokens: 1k, access_groups: beta}\n  - model_name: b\n    litellm_params: {model: openai/b, api_key: k}\n    model_info: {input_cost_per_token: -0.001, output_cost_per_token: .nan}\n",
        )
        .unwrap_err()
        .to_string();
        for path in [
            "model_list[0].litellm_params.input_cost_per_token",
            "model_list[0].model_info.output_cost_per_token",
            "model_list[0].model_info.max_input_tokens",
            "model_list[0].model_info.access_groups",
            "model_list[1].model_info.input_cost_per_token",
            "model_list[1].model_info.output_cost_per_token",
        ] {
            assert!(err.contains(path), "{path}: {err}");
        }
        assert!(
            !err.contains("model_list[0].model_info.input_cost_per_token"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_config_is_refused() {
        for empty in ["", "# only a comment\n", "~\n"] {
            let err = load_text(empty).unwrap_err().to_string();
            assert!(err.contains("the config is empty"), "{empty:?}: {err}");
        }
    }

    #[test]
    fn a_timeout_of_zero_is_refused_where_it_is_written() {
        for (section, key) in [
            ("router_settings", "timeout"),
            ("router_settings", "stream_timeout"),
            ("litellm_settings", "request_timeout"),
        ] {
            let err = load_text(&format!("{section}:\n  {key}: 0\nmodel_list: []\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "{section}.{key}: must be a positive number of seconds"
                )),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn an_empty_master_key_is_refused_rather_than_leaving_the_gateway_open() {
        for empty in ["''", "'  '"] {
            let err = load_text(&format!(
                "general_settings:\n  master_key: {empty}\nmodel_list: []\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("test.yaml: general_settings.master_key: is empty"),
                "{empty}: {err}"
            );
        }
    }

    #[test]
    fn limits_that_would_refuse_everything_or_never_apply_are_config_errors() {
        for (setting, key) in [
            (
                "request_body_timeout: 0",
                "general_settings.request_body_timeout",
            ),
            (
                "header_read_timeout: -5",
                "general_settings.header_read_timeout",
            ),
            (
                "header_read_timeout: 1e12",
                "general_settings.header_read_timeout",
            ),
            (
                "composite_queue_timeout: -1",
                "general_settings.composite_queue_timeout",
            ),
            (
                "global_max_parallel_requests: 0",
                "general_settings.global_max_parallel_requests",
            ),
            (
                "request_log_max_mb: -3",
                "general_settings.request_log_max_mb",
            ),
        ] {
            let err = load_text(&format!("general_settings:\n  {setting}\nmodel_list: []\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("test.yaml: {key}: must be")),
                "{setting}: {err}"
            );
        }
        assert!(
            load_text("general_settings:\n  composite_queue_timeout: 0\nmodel_list: []\n").is_ok()
        );
    }

    #[test]
    fn a_retry_after_longer_than_a_minute_is_refused() {
        let err = load_text("model_list: []\nrouter_settings:\n  retry_after: 3600\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "test.yaml: router_settings.retry_after: must be at most 60 seconds, got 3600"
            ),
            "{err}"
        );
        assert!(load_text("model_list: []\nrouter_settings:\n  retry_after: 60\n").is_ok());
    }

    #[test]
    fn a_max_parallel_requests_of_zero_is_refused_where_it_is_written() {
        let deployment = "model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo, max_parallel_requests: 0}\n";
        let err = load_text(deployment).unwrap_err().to_string();
        assert!(
            err.contains(
                "test.yaml: model_list[0].litellm_params.max_parallel_requests: must be at least 1"
            ),
            "{err}"
        );
        let default = "model_list: []\nrouter_settings:\n  default_max_parallel_requests: 0\n";
        let err = load_text(default).unwrap_err().to_string();
        assert!(
            err.contains(
                "test.yaml: router_settings.default_max_parallel_requests: must be at least 1"
            ),
            "{err}"
        );
        let loaded = load_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo, max_parallel_requests: '3'}\n").unwrap();
        assert_eq!(
            loaded.config.model_list[0]
                .litellm_params
                .max_parallel_requests,
            Some(3)
        );
        assert!(
            loaded
                .warnings
                .iter()
                .all(|w| !w.contains("max_parallel_requests")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn a_cors_origin_no_browser_sends_is_named_at_its_key_path() {
        let err = load_text(
            "general_settings:\n  cors_allow_origins: ['https://ok.example', 'https://app.example/']\nmodel_list: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "test.yaml: general_settings.cors_allow_origins[1]: \"https://app.example/\""
            ),
            "{err}"
        );
        assert!(load_text("general_settings:\n  cors_allow_origins: []\nmodel_list: []\n").is_ok());
    }

    #[test]
    fn allowed_ips_entries_that_are_not_addresses_are_named() {
        let err = load_text(
            "general_settings:\n  allowed_ips: ['127.0.0.1', '10.0.0.0/8', 'office-router']\nmodel_list: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("test.yaml: general_settings.allowed_ips[2]: \"office-router\""),
            "{err}"
        );
        let empty = load_text("general_settings:\n  allowed_ips: []\nmodel_list: []\n").unwrap();
        assert!(
            empty
                .warnings
                .iter()
                .any(|w| w.contains("allowed_ips: is empty")),
            "{:?}",
            empty.warnings
        );
    }

    #[test]
    fn an_error_about_a_value_from_the_environment_names_the_reference_not_the_value() {
        let err = load_text(
            "environment_variables: {SECRET_T: sk-upstream-SECRET-abc}\nmodel_list:\n  \
             - model_name: m\n    litellm_params: {model: openai/x, timeout: os.environ/SECRET_T}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("SECRET-abc"), "{err}");
        assert!(
            err.contains("model_list[0].litellm_params.timeout")
                && err.contains("os.environ/SECRET_T"),
            "{err}"
        );
    }

    #[test]
    fn a_master_key_without_a_value_loads_with_a_warning() {
        let loaded = load_text("general_settings:\n  master_key:\nmodel_list: []\n").unwrap();
        assert!(loaded.config.general_settings.master_key.is_none());
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains("general_settings.master_key: has no value"),
            "{w}"
        );
    }

    #[test]
    fn user_headers_must_be_header_names_with_a_known_role() {
        let bad = "model_list: []\ngeneral_settings:\n  user_header_name: \"bad header\"\n  \
                   user_header_mappings:\n    - {header_name: x-ok, litellm_user_role: admin}\n";
        let err = load_text(bad).unwrap_err().to_string();
        assert!(err.contains("general_settings.user_header_name"), "{err}");
        assert!(
            err.contains("general_settings.user_header_mappings[0].litellm_user_role"),
            "{err}"
        );
        let internal = "model_list: []\ngeneral_settings:\n  user_header_mappings:\n    \
                        - {header_name: x-user, litellm_user_role: internal_user}\n";
        let w = load_text(internal).unwrap().warnings.join("\n");
        assert!(w.contains("user_header_mappings"), "{w}");
    }

    #[test]
    fn end_user_budgets_without_a_master_key_warn_that_they_limit_nothing() {
        let text = "litellm_settings:\n  max_end_user_budget: 1\nmodel_list: []\n";
        let w = load_text(text).unwrap().warnings.join("\n");
        assert!(w.contains("litellm_settings.max_end_user_budget"), "{w}");
        let keyed = format!("{text}general_settings:\n  master_key: sk-k\n");
        let w = load_text(&keyed).unwrap().warnings.join("\n");
        assert!(!w.contains("max_end_user_budget"), "{w}");
    }

    #[test]
    fn unknown_keys_warn_with_their_path() {
        let loaded = load_text(
            "general_settings:\n  alerting_threshold: x\n  master_key: k\nmodel_list: []\nsurprise: 1\n",
        )
        .unwrap();
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains("general_settings.alerting_threshold: unknown key"),
            "{w}"
        );
        assert!(w.contains("surprise: unknown key"), "{w}");
    }

    #[test]
    fn an_unset_variable_in_the_routers_redis_keys_leaves_them_unset() {
        let loaded = load_text(
            "model_list: []\nrouter_settings:\n  redis_host: os.environ/CONCLAVE_TEST_UNSET_HOST\n  redis_port: os.environ/CONCLAVE_TEST_UNSET_PORT\n",
        )
        .unwrap();
        let rs = &loaded.config.router_settings;
        assert_eq!(rs.redis_host, None);
        assert_eq!(rs.redis_port, None);
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains("router_settings.redis_host: environment variable CONCLAVE_TEST_UNSET_HOST is not set; left unset"),
            "{w}"
        );
    }

    #[test]
    fn unset_env_in_an_ignored_key_is_not_an_error() {
        let loaded = load_text(
            "general_settings:\n  alerting_threshold: os.environ/CONCLAVE_T_NO_SUCH_VALUE\nmodel_list: []\n",
        );
        assert!(loaded.is_ok());
    }

    #[test]
    fn unset_env_in_a_skipped_deployment_or_unread_param_is_not_an_error() {
        let loaded = load_text(
            "model_list:\n  - model_name: b\n    litellm_params:\n      model: bedrock/x\n      aws_secret_access_key: os.environ/CONCLAVE_T_NO_SUCH_AWS\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: k\n      aws_region_name: os.environ/CONCLAVE_T_NO_SUCH_REGION\n",
        );
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    #[test]
    fn unset_env_in_a_used_key_leaves_it_unset_with_a_warning_naming_variable_and_path() {
        let loaded = load_text(
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/CONCLAVE_T_NO_SUCH_KEY\n      temperature: os.environ/CONCLAVE_T_NO_SUCH_TEMP\n      rpm: ${CONCLAVE_T_NO_SUCH_RPM}\n",
        )
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert!(params.api_key.is_none());
        assert!(params.rpm.is_none());
        assert!(!params.extra.contains_key("temperature") || params.extra["temperature"].is_null());
        let w = loaded.warnings.join("\n");
        for (path, var) in [
            ("api_key", "CONCLAVE_T_NO_SUCH_KEY"),
            ("temperature", "CONCLAVE_T_NO_SUCH_TEMP"),
            ("rpm", "CONCLAVE_T_NO_SUCH_RPM"),
        ] {
            assert!(
                w.contains(&format!(
                    "model_list[0].litellm_params.{path}: environment variable {var} is not set; left unset"
                )),
                "{w}"
            );
        }
    }

    #[test]
    fn unset_env_where_leaving_a_key_unset_is_unsafe_refuses_the_file() {
        for text in [
            "general_settings:\n  master_key: os.environ/CONCLAVE_T_NO_SUCH_MASTER\nmodel_list: []\n",
            "general_settings:\n  master_key: sk-m\n  database_url: os.environ/CONCLAVE_T_NO_SUCH_DB\nmodel_list: []\n",
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: k\n      api_base: os.environ/CONCLAVE_T_NO_SUCH_BASE\n",
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: os.environ/CONCLAVE_T_NO_SUCH_MODEL\n",
        ] {
            let err = load_text(text).unwrap_err().to_string();
            assert!(err.contains("CONCLAVE_T_NO_SUCH_"), "{err}");
            assert!(err.contains("is not set"), "{err}");
        }
    }

    #[test]
    fn litellms_headers_join_extra_headers_which_win_on_a_name_in_both() {
        let loaded = load_text(
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: k\n      headers: {X-One: h1, X-Both: from-headers}\n      extra_headers: {X-Both: from-extra}\n",
        )
        .unwrap();
        let params = &loaded.config.model_list[0].litellm_params;
        assert_eq!(params.extra_headers["X-One"], "h1");
        assert_eq!(params.extra_headers["X-Both"], "from-extra");
        assert!(params.headers.is_empty());
        assert!(
            !loaded.warnings.join("\n").contains("headers"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn deployment_tags_without_tag_filtering_are_said_to_pick_nothing() {
        let text =
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, tags: [free]}\n";
        let w = load_text(text).unwrap().warnings.join("\n");
        assert!(
            w.contains("model_list[0].litellm_params.tags: deployments' tags pick nothing"),
            "{w}"
        );
        let on = format!("{text}router_settings:\n  enable_tag_filtering: true\n");
        let w = load_text(&on).unwrap().warnings.join("\n");
        assert!(!w.contains("tags"), "{w}");
    }

    #[test]
    fn an_unknown_request_log_format_is_refused_naming_it() {
        let err = load_text("model_list: []\ngeneral_settings:\n  request_log_format: json\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("general_settings.request_log_format: \"json\": must be text or jsonl"),
            "{err}"
        );
    }

    #[test]
    fn message_logging_turned_off_beside_request_logs_is_refused() {
        let base = "model_list: []\nlitellm_settings:\n  turn_off_message_logging: true\n";
        assert!(load_text(base).is_ok());
        let err = load_text(&format!(
            "{base}general_settings:\n  request_log_dir: logs\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("litellm_settings.turn_off_message_logging: request logs"),
            "{err}"
        );
    }

    #[test]
    fn a_redis_cluster_or_sentinel_cache_is_served_from_memory_and_said_so() {
        for (key, value) in [
            ("redis_startup_nodes", "[{host: 127.0.0.1, port: 7001}]"),
            ("sentinel_nodes", "[[localhost, 26379]]"),
        ] {
            let loaded = load_text(&format!(
                "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params: {{type: redis, host: r.local, {key}: {value}, service_name: m}}\n"
            ))
            .unwrap();
            let params = loaded
                .config
                .litellm_settings
                .cache_params
                .as_ref()
                .unwrap();
            assert_eq!(params.served_type(), Some(crate::config::CacheType::Local));
            let w = loaded.warnings.join("\n");
            assert!(
                w.contains(&format!("litellm_settings.cache_params.{key}: Redis Cluster and Sentinel are not supported")),
                "{w}"
            );
            assert!(!w.contains("unknown key"), "{w}");
        }
        // A semantic cache on a cluster is served by the semantic index:
        // both warnings say so.
        let loaded = load_text(
            "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params: {type: redis-semantic, redis_semantic_cache_embedding_model: emb, redis_startup_nodes: [{host: h, port: 7001}]}\n",
        )
        .unwrap();
        let w = loaded.warnings.join("\n");
        assert!(!w.contains("exact matches only"), "{w}");
        assert!(w.contains("semantic index"), "{w}");
    }

    #[test]
    fn an_environment_variable_written_without_a_value_sets_nothing() {
        let loaded = load_text(
            "environment_variables:\n  CONCLAVE_T_EMPTY_VAR:\n  CONCLAVE_T_SET_VAR: x\nmodel_list: []\n",
        )
        .unwrap();
        assert!(
            !loaded
                .config
                .environment_variables
                .contains_key("CONCLAVE_T_EMPTY_VAR")
        );
        assert_eq!(
            loaded.config.env.get("CONCLAVE_T_SET_VAR").as_deref(),
            Some("x")
        );
        let w = loaded.warnings.join("\n");
        assert!(
            w.contains(
                "environment_variables.CONCLAVE_T_EMPTY_VAR: no value, so the variable is not set"
            ),
            "{w}"
        );
    }

    #[test]
    fn config_environment_variables_feed_substitution() {
        let loaded = load_text(
            "environment_variables:\n  CONCLAVE_T_BASE: http://h\nmodel_list:\n  - model_name: a\n    litellm_params: {model: openai/x, api_base: $CONCLAVE_T_BASE/v1}\n",
        )
        .unwrap();
        assert_eq!(
            loaded.config.model_list[0]
                .litellm_params
                .api_base
                .as_deref(),
            Some("http://h/v1")
        );
    }

    #[test]
    fn missing_model_is_reported_at_its_path() {
        let err = load_text("model_list:\n  - model_name: a\n    litellm_params: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model_list[0].litellm_params.model: is required"),
            "{err}"
        );
    }

    #[test]
    fn additional_drop_params_may_not_name_the_gateways_own_fields() {
        let err = load_text(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, additional_drop_params: [seed, model, '']}\n",
        )
        .unwrap_err()
        .to_string();
        for (at, why) in [
            ("additional_drop_params[1]", "cannot be dropped"),
            ("additional_drop_params[2]", "is empty"),
        ] {
            assert!(
                err.contains(&format!("model_list[0].litellm_params.{at}: {why}")),
                "{err}"
            );
        }
        assert!(!err.contains("additional_drop_params[0]"), "{err}");
    }
}
