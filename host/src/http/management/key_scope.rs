//! Whose keys a caller of the key routes may manage. An administrator (the
//! master key, or a `proxy_admin` user's key) manages every key; as in
//! LiteLLM, the key of an `internal_user` manages that user's own keys:
//! it may make, read, list, change, regenerate and delete them, on the
//! user's own teams, and never hand a key to anyone else.

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
    let (keys, manager) = authenticate(state, headers).await?;
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

fn not_own() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        "an internal_user may manage only its own keys",
        Some("user_id"),
        Some("not_own_key"),
    )
}
