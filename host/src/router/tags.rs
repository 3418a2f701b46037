//! `router_settings.enable_tag_filtering`, LiteLLM's tag routing: a request
//! with tags (`tags`, `metadata.tags`, `x-litellm-tags`) goes only to the
//! deployments whose own `tags` match them (free and paid tiers, one
//! team's deployment), and a request without tags to the deployments
//! tagged `default` when there are any.

use super::ModelGroup;
use super::error::RouteError;

/// The tag every request without a matching tag may use.
const DEFAULT_TAG: &str = "default";

/// How a deployment's tags must match a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMatch {
    /// One tag in common is enough (LiteLLM's default).
    Any,
    /// Every tag of the request must be the deployment's
    /// (`tag_filtering_match_any: false`).
    All,
}

impl TagMatch {
    fn admits(self, deployment: &[String], request: &[String]) -> bool {
        match self {
            Self::Any => request.iter().any(|t| deployment.contains(t)),
            Self::All => request.iter().all(|t| deployment.contains(t)),
        }
    }
}

/// Which of `group`'s deployments a request with `request` tags may use,
/// by index; `None` when every one may. A request whose tags match no
/// deployment goes to the `default` ones, unless one of its tags is a
/// deployment's of this group (it asked for those and they do not serve
/// it) or there is no `default` one: then it is refused, naming the tags.
pub(super) fn allowed(
    group: &ModelGroup,
    request: &[String],
    how: TagMatch,
) -> Result<Option<Vec<bool>>, RouteError> {
    let tagged = |pick: &dyn Fn(&[String]) -> bool| -> Vec<bool> {
        group.deployments.iter().map(|d| pick(&d.tags)).collect()
    };
    let defaults = tagged(&|tags| tags.iter().any(|t| t == DEFAULT_TAG));
    let has_default = defaults.contains(&true);
    if request.is_empty() {
        return Ok(has_default.then_some(defaults));
    }
    let matching = tagged(&|tags| how.admits(tags, request));
    if matching.contains(&true) {
        return Ok(Some(matching));
    }
    let known = group
        .deployments
        .iter()
        .any(|d| request.iter().any(|t| d.tags.contains(t)));
    if has_default && !known {
        return Ok(Some(defaults));
    }
    Err(RouteError::NoDeploymentForTags {
        group: group.name.to_string(),
        tags: request.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(tags: &[&[&str]]) -> ModelGroup {
        let deployments = tags
            .iter()
            .enumerate()
            .map(|(i, tags)| crate::router::Deployment::for_test(&format!("d{i}"), tags))
            .collect();
        ModelGroup {
            name: "g".into(),
            deployments,
        }
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_tagged_request_goes_to_the_matching_deployments() {
        let g = group(&[&["free"], &["paid"], &["free", "eu"], &["default"]]);
        let pool = allowed(&g, &tags(&["free"]), TagMatch::Any).unwrap();
        assert_eq!(pool, Some(vec![true, false, true, false]));
        let pool = allowed(&g, &tags(&["free", "eu"]), TagMatch::All).unwrap();
        assert_eq!(pool, Some(vec![false, false, true, false]));
    }

    #[test]
    fn untagged_requests_and_unknown_tags_go_to_the_default_deployments() {
        let g = group(&[&["paid"], &["default"], &[]]);
        assert_eq!(
            allowed(&g, &[], TagMatch::Any).unwrap(),
            Some(vec![false, true, false])
        );
        assert_eq!(
            allowed(&g, &tags(&["other"]), TagMatch::Any).unwrap(),
            Some(vec![false, true, false])
        );
        let untagged = group(&[&["paid"], &[]]);
        assert_eq!(allowed(&untagged, &[], TagMatch::Any).unwrap(), None);
    }

    #[test]
    fn tags_nothing_serves_are_refused_by_name() {
        let no_default = group(&[&["paid"]]);
        let e = allowed(&no_default, &tags(&["free"]), TagMatch::Any).unwrap_err();
        assert!(e.to_string().contains("free"), "{e}");
        // Asked for a tag the group has, but no deployment has all of them:
        // not handed to the default ones.
        let g = group(&[&["paid"], &["default"]]);
        assert!(allowed(&g, &tags(&["paid", "eu"]), TagMatch::All).is_err());
    }
}
