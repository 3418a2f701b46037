//! Whose keys a caller of the key routes may manage. An administrator (the
//! master key, or a `proxy_admin` user's key) manages every key; as in
//! LiteLLM, the key of an `internal_user` manages that user's own keys:
//! it may make, read, list, change, regenerate and delete them, on the
//! user's own teams, and never hand a key to anyone else. On a key that
//! exists it may tighten what the key allows, never loosen it: an
//! administrator's block, limits, expiry and model list stay in force.

use http::{HeaderMap, StatusCode};

use super::body::KeyBody;
use super::{ApiError, AppState, Manager, authenticate, key_error};
use crate::keys::{KeyRecord, Keys};

/// LiteLLM's role for the people who manage their own keys.
const INTERNAL_USER_ROLE: &str = "internal_user";

/// Whose keys the caller may manage.
pub(super) enum KeyScope {
    /// Any key.
    Any,
    /// Only this user's keys.
    OwnedBy(String),
}

/// The key store and the caller's [`KeyScope`]; 403 for a key that is
/// neither an administrator's nor an `internal_user`'s.
pub(super) async fn key_manager(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Keys, KeyScope), ApiError> {
    scope_of(state, headers, false).await
}

/// [`key_manager`] for listing keys, which a `proxy_admin_viewer` may do
/// for every key.
pub(super) async fn key_lister(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Keys, KeyScope), ApiError> {
    scope_of(state, headers, true).await
}

/// The caller's [`KeyScope`], to read keys (`reading`) or change them.
async fn scope_of(
    state: &AppState,
    headers: &HeaderMap,
    reading: bool,
) -> Result<(Keys, KeyScope), ApiError> {
    let (keys, manager) = authenticate(state, headers).await?;
    if reading && manager.reads_all() {
        return Ok((keys, KeyScope::Any));
    }
    let owner = match &manager {
        Manager::Master | Manager::Key { admin: true, .. } => return Ok((keys, KeyScope::Any)),
        Manager::Key { principal, .. } => principal
            .user
            .as_ref()
            .filter(|u| u.user_role.as_deref() == Some(INTERNAL_USER_ROLE))
            .map(|u| u.user_id.clone()),
    };
    match owner {
        Some(user_id) => Ok((keys, KeyScope::OwnedBy(user_id))),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "managing keys needs the master key, the key of a proxy_admin user, \
             or the key of an internal_user (for that user's own keys)",
            None,
            Some("not_admin"),
        )),
    }
}

impl KeyScope {
    /// Refuses a key the caller does not own.
    pub(super) fn check(&self, key: &KeyRecord) -> Result<(), ApiError> {
        match self {
            KeyScope::OwnedBy(user) if key.user_id.as_deref() != Some(user.as_str()) => {
                Err(not_own())
            }
            _ => Ok(()),
        }
    }

    /// Refuses, for an `internal_user`, a key that does not exist as it
    /// refuses another user's, so that its answer tells nothing of which
    /// keys exist.
    pub(super) fn check_unknown(&self) -> Result<(), ApiError> {
        match self {
            KeyScope::OwnedBy(_) => Err(not_own()),
            KeyScope::Any => Ok(()),
        }
    }

    /// The user whose keys a listing may show (`asked`, the query's
    /// `user_id`, must be the caller's own user when the scope is one).
    pub(super) fn list_user(&self, asked: Option<&String>) -> Result<Option<String>, ApiError> {
        match self {
            KeyScope::Any => Ok(asked.cloned()),
            KeyScope::OwnedBy(user) if asked.is_none_or(|a| a == user) => Ok(Some(user.clone())),
            KeyScope::OwnedBy(_) => Err(not_own()),
        }
    }

    /// Keeps a new or changed key within the scope: its user is the
    /// caller's own (filled in when the body names none), and its team one
    /// the user is a member of.
    pub(super) async fn restrict(
        &self,
        keys: &Keys,
        body: &mut KeyBody,
        creating: bool,
    ) -> Result<(), ApiError> {
        let KeyScope::OwnedBy(user) = self else {
            return Ok(());
        };
        match &body.user_id {
            None if creating => body.user_id = Some(Some(user.clone())),
            None => {}
            Some(Some(named)) if named == user => {}
            Some(_) => return Err(not_own()),
        }
        if let Some(Some(team)) = &body.team_id {
            let member = keys
                .store()
                .user(user)
                .await
                .map_err(key_error)?
                .is_some_and(|u| u.teams.contains(team));
            if !member {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    format!("an internal_user may make keys only on its own teams, not {team:?}"),
                    Some("team_id"),
                    Some("not_own_team"),
                ));
            }
        }
        Ok(())
    }
}

impl KeyScope {
    /// Refuses a change by an `internal_user` that loosens its key:
    /// `before` and `after` are the key's record either side of the change,
    /// `spend` what the body sets the spend to.
    pub(super) fn check_change(
        &self,
        before: &KeyRecord,
        after: &KeyRecord,
        spend: Option<f64>,
    ) -> Result<(), ApiError> {
        if matches!(self, KeyScope::Any) {
            return Ok(());
        }
        let loosened = if spend.is_some() {
            Some("spend")
        } else {
            loosened(before, after)
        };
        match loosened {
            None => Ok(()),
            Some(field) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                format!(
                    "an internal_user may tighten its own key, not loosen it: {field} \
                     may be changed only by an administrator"
                ),
                Some(field),
                Some("admin_only_field"),
            )),
        }
    }
}

/// The first field in which `after` allows more than `before`: unblocked,
/// out of its team, a later or no expiry, more models or routes, a higher
/// or no limit, another budget period on a budget.
fn loosened(before: &KeyRecord, after: &KeyRecord) -> Option<&'static str> {
    let (b, a) = (&before.limits, &after.limits);
    let expiry_later = before
        .expires
        .is_some_and(|was| after.expires.is_none_or(|now| now > was));
    [
        ("blocked", before.blocked && !after.blocked),
        // Out of its team, or into another, a key escapes the team's budget,
        // models and limits.
        (
            "team_id",
            before.team_id.is_some() && after.team_id != before.team_id,
        ),
        ("duration", expiry_later),
        ("models", widened(&before.models, &after.models)),
        (
            "allowed_routes",
            widened(&before.allowed_routes, &after.allowed_routes),
        ),
        ("max_budget", raised(b.max_budget, a.max_budget)),
        // A period starts a budget afresh, the key's own or its per-model ones.
        (
            "budget_duration",
            (b.max_budget.is_some() || !b.model_max_budget.is_empty())
                && b.budget_duration != a.budget_duration,
        ),
        ("rpm_limit", raised(b.rpm_limit, a.rpm_limit)),
        ("tpm_limit", raised(b.tpm_limit, a.tpm_limit)),
        (
            "max_parallel_requests",
            raised(b.max_parallel_requests, a.max_parallel_requests),
        ),
        (
            "model_rpm_limit",
            map_raised(&b.model_rpm_limit, &a.model_rpm_limit),
        ),
        (
            "model_tpm_limit",
            map_raised(&b.model_tpm_limit, &a.model_tpm_limit),
        ),
        (
            "model_max_budget",
            map_raised(&b.model_max_budget, &a.model_max_budget),
        ),
    ]
    .into_iter()
    .find_map(|(field, loose)| loose.then_some(field))
}

/// Whether an allow-list (empty: everything) lets through more than it
/// did: emptied, or given an entry it did not have.
fn widened(before: &[String], after: &[String]) -> bool {
    !before.is_empty() && (after.is_empty() || !after.iter().all(|x| before.contains(x)))
}

/// Whether a limit went up or away.
fn raised<T: PartialOrd>(before: Option<T>, after: Option<T>) -> bool {
    before.is_some_and(|b| after.is_none_or(|a| a > b))
}

/// Whether a per-model limit went up or away.
fn map_raised<T: PartialOrd + Copy>(
    before: &std::collections::BTreeMap<String, T>,
    after: &std::collections::BTreeMap<String, T>,
) -> bool {
    before
        .iter()
        .any(|(model, b)| raised(Some(*b), after.get(model).copied()))
}

fn not_own() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        "an internal_user may manage only its own keys",
        Some("user_id"),
        Some("not_own_key"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaving_its_team_loosens_a_key_and_joining_one_does_not() {
        let mut in_team = KeyRecord::for_test("h");
        in_team.team_id = Some("t".into());
        let alone = KeyRecord::for_test("h");
        assert_eq!(loosened(&in_team, &alone), Some("team_id"));
        assert_eq!(loosened(&alone, &in_team), None);
        assert_eq!(loosened(&in_team, &in_team), None);
    }

    #[test]
    fn a_shorter_route_list_tightens_and_a_longer_or_empty_one_loosens() {
        let mut two = KeyRecord::for_test("h");
        two.allowed_routes = vec!["/chat/completions".into(), "/key/info".into()];
        let mut one = KeyRecord::for_test("h");
        one.allowed_routes = vec!["/key/info".into()];
        let every = KeyRecord::for_test("h");
        assert_eq!(loosened(&two, &one), None);
        assert_eq!(loosened(&one, &two), Some("allowed_routes"));
        assert_eq!(loosened(&one, &every), Some("allowed_routes"));
        assert_eq!(loosened(&every, &one), None);
    }

    #[test]
    fn another_period_on_a_per_model_budget_loosens() {
        let mut per_model = KeyRecord::for_test("h");
        per_model.limits.model_max_budget.insert("m1".into(), 0.5);
        let mut shorter = per_model.clone();
        shorter.limits.budget_duration = Some("1s".into());
        assert_eq!(loosened(&per_model, &shorter), Some("budget_duration"));
        let unlimited = KeyRecord::for_test("h");
        let mut periodic = unlimited.clone();
        periodic.limits.budget_duration = Some("1s".into());
        assert_eq!(loosened(&unlimited, &periodic), None);
    }
}
