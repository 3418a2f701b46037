//! LiteLLM's shared credentials: `credential_list` names sets of provider
//! settings (`credential_values`: api_key, api_base, api_version, ...), and
//! a deployment's `litellm_params.litellm_credential_name` takes the values
//! of one of them that it does not set itself. Applied to the YAML tree
//! before environment references are resolved, so a credential's
//! `os.environ/` references resolve as the deployment's own would.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

use super::Problem;

const LIST: &str = "credential_list";
const NAME: &str = "litellm_credential_name";

/// Gives each deployment naming a credential that credential's values and
/// removes `credential_list` and the names from the tree; a problem for a
/// list that is not LiteLLM's shape or a name it does not hold.
pub fn apply(tree: &mut Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(sections) = tree.as_mapping_mut() else {
        return problems;
    };
    let credentials = sections
        .remove(LIST)
        .map(|list| read(list, &mut problems))
        .unwrap_or_default();
    let Some(Value::Sequence(models)) = sections.get_mut("model_list") else {
        return problems;
    };
    for (i, entry) in models.iter_mut().enumerate() {
        let Some(params) = entry
            .get_mut("litellm_params")
            .and_then(Value::as_mapping_mut)
        else {
            continue;
        };
        let Some(name) = params.remove(NAME) else {
            continue;
        };
        let at = format!("model_list[{i}].litellm_params.{NAME}");
        match name.as_str().and_then(|n| credentials.get(n)) {
            Some(values) => {
                for (key, value) in values {
                    if !params.contains_key(key) {
                        params.insert(key.clone(), value.clone());
                    }
                }
            }
            None if name.is_string() => problems.push(Problem::new(
                at,
                format!("no credential of that name in {LIST}"),
            )),
            None => problems.push(Problem::new(at, "must be a credential name")),
        }
    }
    problems
}

/// Credential name -> its values, from `credential_list`.
fn read(list: Value, problems: &mut Vec<Problem>) -> HashMap<String, Mapping> {
    let mut credentials = HashMap::new();
    let Value::Sequence(items) = list else {
        problems.push(Problem::new(LIST, "must be a list of credentials"));
        return credentials;
    };
    for (i, item) in items.into_iter().enumerate() {
        let name = item.get("credential_name").and_then(Value::as_str);
        let values = item.get("credential_values").and_then(Value::as_mapping);
        match (name, values) {
            // The first of a name wins, as LiteLLM looks credentials up.
            (Some(name), Some(values)) => {
                credentials
                    .entry(name.to_owned())
                    .or_insert_with(|| values.clone());
            }
            _ => problems.push(Problem::new(
                format!("{LIST}[{i}]"),
                "must have a credential_name and a mapping of credential_values",
            )),
        }
    }
    credentials
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_takes_the_values_it_does_not_set_from_its_credential() {
        let mut tree: Value = serde_yaml::from_str(
            "credential_list:\n  - credential_name: eu\n    credential_values: {api_key: os.environ/EU_KEY, api_base: 'https://eu', api_version: '2024-02-01'}\n    credential_info: {description: EU}\nmodel_list:\n  - model_name: a\n    litellm_params: {model: azure/a, litellm_credential_name: eu, api_version: '2025-01-01'}\n  - model_name: b\n    litellm_params: {model: azure/b, litellm_credential_name: us}\n",
        )
        .unwrap();
        let problems = apply(&mut tree);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].path,
            "model_list[1].litellm_params.litellm_credential_name"
        );
        let params = &tree["model_list"][0]["litellm_params"];
        assert_eq!(params["api_key"], "os.environ/EU_KEY");
        assert_eq!(params["api_base"], "https://eu");
        assert_eq!(
            params["api_version"], "2025-01-01",
            "the deployment's own value wins"
        );
        assert!(params.get(NAME).is_none());
        assert!(tree.get(LIST).is_none());
    }

    #[test]
    fn the_first_credential_of_a_name_wins() {
        let mut tree: Value = serde_yaml::from_str(
            "credential_list:\n  - {credential_name: c, credential_values: {api_key: sk-FIRST}}\n  - {credential_name: c, credential_values: {api_key: sk-SECOND}}\nmodel_list:\n  - {model_name: a, litellm_params: {model: openai/a, litellm_credential_name: c}}\n",
        )
        .unwrap();
        assert!(apply(&mut tree).is_empty());
        assert_eq!(
            tree["model_list"][0]["litellm_params"]["api_key"],
            "sk-FIRST"
        );
    }
}
