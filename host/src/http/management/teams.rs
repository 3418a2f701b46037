//! `/team/*`: teams, their shared limits and their members.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::body::{Member, TeamBody, check_id, metadata};
use super::keys::page_of;
use super::users::{named_user, new_id, user_by_email};
use super::{
    ApiError, AppState, Manager, admin, authenticate, invalid, key_error, read_json, read_object,
    read_with_limits, reader, shape, typed, unenforced,
};
use crate::keys::reset::ResetClock;
use crate::keys::store::{KeyFilter, ListPage, Owner, SpendOwner, TeamFilter};
use crate::keys::{KeyError, Keys, Limits, TeamRecord, UserRecord};

async fn existing(keys: &Keys, team_id: &str) -> Result<TeamRecord, ApiError> {
    keys.store()
        .team(team_id)
        .await
        .map_err(key_error)?
        .ok_or_else(|| {
            key_error(KeyError::NotFound {
                entity: "team",
                id: team_id.into(),
            })
        })
}

/// A team as the API shows it, with its members' roles.
pub(super) async fn shown(keys: &Keys, t: &TeamRecord) -> Result<serde_json::Value, ApiError> {
    let roles = keys
        .store()
        .member_roles(&t.team_id)
        .await
        .map_err(key_error)?;
    Ok(shape::team(t, &roles))
}

fn apply(
    t: &mut TeamRecord,
    b: &TeamBody,
    now: SystemTime,
    clock: &ResetClock,
) -> Result<(), ApiError> {
    if let Some(alias) = &b.team_alias {
        if let Some(alias) = alias {
            check_id("team_alias", alias)?;
        }
        t.team_alias = alias.clone();
    }
    // `null` clears the list, as it clears the other fields.
    if let Some(models) = &b.models {
        t.models = models.clone().unwrap_or_default();
        super::body::check_entries("models", t.models.iter())?;
    }
    if let Some(m) = &b.metadata {
        t.metadata = metadata(m.clone().unwrap_or_default())?;
    }
    if let Some(blocked) = b.blocked {
        t.blocked = blocked;
    }
    if let Some(spend) = b.limits.spend()? {
        t.spend = spend;
    }
    b.limits
        .apply(&mut t.limits, &mut t.budget_reset_at, now, clock)?;
    t.updated_at = now;
    Ok(())
}

/// A member checked before anything is written: its user id (found by
/// email, or made, when only an email named it) and role.
struct NewMember<'a> {
    user_id: String,
    user_email: Option<&'a String>,
    role: &'a str,
}

/// Checks every member of a request, so that a bad one refuses the whole
/// request before the first is added: an id or an email, a valid id, and
/// LiteLLM's roles (`admin`, `user`).
async fn check_members<'a>(
    keys: &Keys,
    members: &'a [Member],
    current: &[String],
) -> Result<Vec<NewMember<'a>>, ApiError> {
    at_most_bulk("member", members.len())?;
    let mut checked: Vec<NewMember<'a>> = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let user_id = match (&m.user_id, &m.user_email) {
            (Some(id), _) => id.clone(),
            (None, Some(email)) => user_by_email(keys, email, &format!("member[{i}].user_email"))
                .await?
                .map_or_else(|| new_id("user"), Ok)?,
            (None, None) => {
                return Err(invalid(
                    &format!("member[{i}]"),
                    "needs a user_id or a user_email",
                ));
            }
        };
        check_id(&format!("member[{i}].user_id"), &user_id)?;
        if current.contains(&user_id) || checked.iter().any(|c| c.user_id == user_id) {
            return Err(invalid(
                &format!("member[{i}]"),
                format!("user {user_id:?} is already a member of the team"),
            ));
        }
        if !matches!(m.role.as_str(), "admin" | "user") {
            return Err(invalid(
                &format!("member[{i}].role"),
                format!("must be admin or user, not {:?}", m.role),
            ));
        }
        checked.push(NewMember {
            user_id,
            user_email: m.user_email.as_ref(),
            role: &m.role,
        });
    }
    Ok(checked)
}

/// Adds checked members, creating users that do not exist yet (as LiteLLM
/// does).
async fn add_members(
    keys: &Keys,
    team_id: &str,
    members: &[NewMember<'_>],
) -> Result<Vec<String>, ApiError> {
    let mut added = Vec::new();
    for m in members {
        let user_id = &m.user_id;
        if keys
            .store()
            .user(user_id)
            .await
            .map_err(key_error)?
            .is_none()
        {
            let now = SystemTime::now();
            let user = UserRecord {
                user_id: user_id.clone(),
                user_role: None,
                user_email: m.user_email.cloned(),
                models: Vec::new(),
                limits: Limits::default(),
                spend: 0.0,
                budget_reset_at: None,
                metadata: json!({}),
                teams: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            match keys.store().insert_user(&user).await {
                Ok(()) | Err(KeyError::Invalid { .. }) => {}
                Err(e) => return Err(key_error(e)),
            }
        }
        keys.store()
            .add_member(team_id, user_id, m.role)
            .await
            .map_err(key_error)?;
        keys.invalidate_user(user_id);
        added.push(user_id.clone());
    }
    Ok(added)
}

#[utoipa::path(
    post,
    path = "/team/new",
    operation_id = "team_new",
    tag = "teams",
    summary = "Create a team",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Create a team: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/new`.
pub async fn new(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (mut body, limits): (TeamBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    let team_id = match &body.team_id {
        Some(id) => {
            check_id("team_id", id)?;
            id.clone()
        }
        None => new_id("team")?,
    };
    let now = SystemTime::now();
    let mut team = TeamRecord::new(team_id.clone(), now);
    apply(&mut team, &body, now, &keys.settings().reset_clock)?;
    let members = check_members(
        &keys,
        body.members_with_roles.as_deref().unwrap_or_default(),
        &[],
    )
    .await?;
    keys.store().insert_team(&team).await.map_err(key_error)?;
    team.members = add_members(&keys, &team_id, &members).await?;
    Ok(Json(shown(&keys, &team).await?).into_response())
}

#[utoipa::path(
    post,
    path = "/team/update",
    operation_id = "team_update",
    tag = "teams",
    summary = "Change a team",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Change a team: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/update`: changes the fields the body names (`team_id` says which).
pub async fn update(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let (mut body, limits): (TeamBody, _) = read_with_limits(&state, request).await?;
    body.limits = limits;
    let team_id = body
        .team_id
        .clone()
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let mut team = existing(&keys, &team_id).await?;
    let read_at = team.updated_at;
    apply(
        &mut team,
        &body,
        SystemTime::now(),
        &keys.settings().reset_clock,
    )?;
    super::written(keys.store().update_team(&team, Some(read_at)).await, "team")?;
    super::set_spend(
        &state,
        &keys,
        SpendOwner::Team,
        &team_id,
        body.limits.spend()?,
    )
    .await?;
    keys.invalidate_team(&team_id);
    Ok(Json(shape::with_data(shown(&keys, &team).await?)).into_response())
}

#[derive(Deserialize)]
struct TeamOnly {
    team_id: Option<String>,
}

/// Blocks or unblocks a team: its keys are refused (401) while it is blocked.
async fn set_blocked(
    state: AppState,
    request: Request,
    blocked: bool,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: TeamOnly = read_json(&state, request).await?;
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let mut team = existing(&keys, &team_id).await?;
    let read_at = team.updated_at;
    team.blocked = blocked;
    team.updated_at = SystemTime::now();
    super::written(keys.store().update_team(&team, Some(read_at)).await, "team")?;
    keys.invalidate_team(&team_id);
    Ok(Json(shown(&keys, &team).await?).into_response())
}

#[utoipa::path(
    post,
    path = "/team/block",
    operation_id = "team_block",
    tag = "teams",
    summary = "Block a team",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Block a team: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/block`: `{"team_id"}`.
pub async fn block(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    set_blocked(state, request, true).await
}

#[utoipa::path(
    post,
    path = "/team/unblock",
    operation_id = "team_unblock",
    tag = "teams",
    summary = "Unblock a team",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Unblock a team: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/unblock`: `{"team_id"}`.
pub async fn unblock(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    set_blocked(state, request, false).await
}

#[derive(Deserialize)]
struct DeleteBody {
    team_ids: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/team/delete",
    operation_id = "team_delete",
    tag = "teams",
    summary = "Delete teams",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Delete teams: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/delete` with `{"team_ids": [...]}`: the teams, their
/// memberships and their keys.
pub async fn delete(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: DeleteBody = read_json(&state, request).await?;
    let ids = body
        .team_ids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("team_ids", "name at least one team"))?;
    let ids = super::bounded_list("team_ids", ids)?;
    let mut deleted = Vec::new();
    for id in &ids {
        let hashes = keys
            .store()
            .key_hashes_of(Owner::Team, id)
            .await
            .map_err(key_error)?;
        let members = keys
            .store()
            .team(id)
            .await
            .map_err(key_error)?
            .map(|t| t.members)
            .unwrap_or_default();
        if keys.store().delete_team(id).await.map_err(key_error)? {
            deleted.push(id.clone());
        }
        for h in &hashes {
            keys.invalidate(h);
        }
        for m in &members {
            keys.invalidate_user(m);
        }
        keys.invalidate_team(id);
        super::forget_spend(&state, crate::limits::Level::Key, &hashes).await;
    }
    super::forget_spend(&state, crate::limits::Level::Team, &deleted).await;
    if deleted.is_empty() {
        return Err(key_error(KeyError::NotFound {
            entity: "team",
            id: ids.join(", "),
        }));
    }
    Ok(Json(json!({"deleted_teams": deleted})).into_response())
}

/// One member or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Members {
    One(Member),
    Many(Vec<Member>),
}

#[derive(Deserialize)]
struct MemberAddBody {
    team_id: Option<String>,
    member: Option<Members>,
}

#[utoipa::path(
    post,
    path = "/team/member_add",
    operation_id = "team_member_add",
    tag = "teams",
    summary = "Add team members",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Add team members: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/member_add` with `{"team_id", "member": {"user_id", "role"}}`
/// (or a list of members). A member named by `user_email` alone is the user
/// with that email, made when there is none, as LiteLLM does. A budget per
/// member (`max_budget_in_team`) is refused by name, as on `member_update`.
pub async fn member_add(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let value = read_object(&state, request).await?;
    unenforced::refuse(&value, unenforced::ON_MEMBERS)?;
    let body: MemberAddBody = typed(value)?;
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let current = existing(&keys, &team_id).await?.members;
    let members = match body
        .member
        .ok_or_else(|| invalid("member", "is required"))?
    {
        Members::One(m) => vec![m],
        Members::Many(v) => v,
    };
    let members = check_members(&keys, &members, &current).await?;
    let added = add_members(&keys, &team_id, &members).await?;
    keys.invalidate_team(&team_id);
    let team = existing(&keys, &team_id).await?;
    let mut out = shown(&keys, &team).await?;
    if let Some(o) = out.as_object_mut() {
        o.insert("updated_users".into(), json!(added));
    }
    Ok(Json(out).into_response())
}

/// Most members one request adds: `/team/new`, `/team/member_add`, or
/// `/team/bulk_member_add` (`all_users` included).
const MAX_BULK_MEMBERS: usize = 1000;

/// 400 naming `field` when one request would add more than
/// [`MAX_BULK_MEMBERS`].
fn at_most_bulk(field: &str, asked: usize) -> Result<(), ApiError> {
    if asked > MAX_BULK_MEMBERS {
        return Err(invalid(
            field,
            format!("{asked} members asked for; one request adds at most {MAX_BULK_MEMBERS}"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct BulkMemberAddBody {
    team_id: Option<String>,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    all_users: bool,
}

#[utoipa::path(
    post,
    path = "/team/bulk_member_add",
    operation_id = "team_bulk_member_add",
    tag = "teams",
    summary = "Add many team members, each on its own",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Each member's result, and the team", body = super::super::openapi::JsonObject),
        (status = 400, description = "No team_id, no members, or too many", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/bulk_member_add` with `{"team_id", "members": [...]}` or
/// `"all_users": true` (every user in the store). Unlike `member_add`, a
/// member that cannot be added (already in the team, a bad role) does not
/// stop the others: each has its own result, as LiteLLM answers.
pub async fn bulk_member_add(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let value = read_object(&state, request).await?;
    unenforced::refuse(&value, unenforced::ON_MEMBERS)?;
    let body: BulkMemberAddBody = typed(value)?;
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let mut current = existing(&keys, &team_id).await?.members;
    let mut members = body.members;
    if body.all_users {
        members.extend(every_user(&keys).await?);
    }
    if members.is_empty() {
        return Err(invalid(
            "members",
            "name at least one member, or set all_users: true",
        ));
    }
    at_most_bulk("members", members.len())?;
    let mut results = Vec::with_capacity(members.len());
    for member in &members {
        let added = async {
            let checked = check_members(&keys, std::slice::from_ref(member), &current).await?;
            add_members(&keys, &team_id, &checked).await
        }
        .await;
        let mut result = json!({"user_id": member.user_id, "user_email": member.user_email});
        match added {
            Ok(ids) => {
                result["user_id"] = json!(ids.first());
                result["success"] = json!(true);
                current.extend(ids);
            }
            Err(e) => {
                result["success"] = json!(false);
                result["error"] = json!(e.body.error.message);
            }
        }
        results.push(result);
    }
    keys.invalidate_team(&team_id);
    let added = results.iter().filter(|r| r["success"] == true).count();
    let team = existing(&keys, &team_id).await?;
    Ok(Json(json!({
        "team_id": team_id,
        "results": results,
        "total_requested": members.len(),
        "successful_additions": added,
        "failed_additions": members.len() - added,
        "updated_team": shown(&keys, &team).await?,
    }))
    .into_response())
}

/// Every user in the store as a member to add (role `user`), up to one
/// more than a bulk request may add, so that too many is refused.
async fn every_user(keys: &Keys) -> Result<Vec<Member>, ApiError> {
    let page = ListPage {
        page: 1,
        size: u32::try_from(MAX_BULK_MEMBERS + 1).unwrap_or(u32::MAX),
    };
    let (users, _) = keys
        .store()
        .list_users(&Default::default(), page)
        .await
        .map_err(key_error)?;
    Ok(users
        .into_iter()
        .map(|u| Member {
            user_id: Some(u.user_id),
            user_email: None,
            role: "user".into(),
        })
        .collect())
}

#[derive(Deserialize)]
struct MemberDeleteBody {
    team_id: Option<String>,
    user_id: Option<String>,
    user_email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/team/member_delete",
    operation_id = "team_member_delete",
    tag = "teams",
    summary = "Remove team members",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "Remove team members: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/member_delete` with `{"team_id", "user_id"}` (or
/// `user_email` instead of `user_id`).
pub async fn member_delete(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: MemberDeleteBody = read_json(&state, request).await?;
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let user_id = named_user(&keys, body.user_id, body.user_email).await?;
    existing(&keys, &team_id).await?;
    if !keys
        .store()
        .remove_member(&team_id, &user_id)
        .await
        .map_err(key_error)?
    {
        return Err(key_error(KeyError::NotFound {
            entity: "member",
            id: format!("{user_id} in team {team_id}"),
        }));
    }
    keys.invalidate_user(&user_id);
    keys.invalidate_team(&team_id);
    Ok(Json(shown(&keys, &existing(&keys, &team_id).await?).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamModelsBody {
    team_id: Option<String>,
    models: Option<Vec<String>>,
}

/// Adds models to a team's list, or takes them off it.
async fn change_models(state: AppState, request: Request, add: bool) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: TeamModelsBody = read_json(&state, request).await?;
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let models = body
        .models
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("models", "name at least one model"))?;
    // Names are matched exactly against the names requests give, so one
    // with a space around it could never match.
    for (i, m) in models.iter().enumerate() {
        let field = format!("models[{i}]");
        check_id(&field, m)?;
        if m.trim() != m {
            return Err(invalid(&field, "must not start or end with a space"));
        }
    }
    let mut team = existing(&keys, &team_id).await?;
    let read_at = team.updated_at;
    if add {
        for m in models {
            if !team.models.contains(&m) {
                team.models.push(m);
            }
        }
    } else {
        team.models.retain(|m| !models.contains(m));
    }
    team.updated_at = SystemTime::now();
    super::written(keys.store().update_team(&team, Some(read_at)).await, "team")?;
    keys.invalidate_team(&team_id);
    Ok(Json(shown(&keys, &team).await?).into_response())
}

#[utoipa::path(
    post,
    path = "/team/model/add",
    operation_id = "team_model_add",
    tag = "teams",
    summary = "Let a team use more models",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "The team as it now is", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/model/add` with `{"team_id", "models": [...]}`: the models
/// join the team's list (each once). A team whose list was empty (every
/// model) is limited to these from then on, as in LiteLLM.
pub async fn model_add(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    change_models(state, request, true).await
}

#[utoipa::path(
    post,
    path = "/team/model/delete",
    operation_id = "team_model_delete",
    tag = "teams",
    summary = "Take models off a team's list",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "The team as it now is", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/model/delete` with `{"team_id", "models": [...]}`. A list
/// left empty means every model, as an empty list always does.
pub async fn model_delete(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    change_models(state, request, false).await
}

#[derive(Deserialize)]
struct MemberUpdateBody {
    team_id: Option<String>,
    user_id: Option<String>,
    user_email: Option<String>,
    role: Option<String>,
    max_budget_in_team: Option<serde_json::Value>,
    rpm_limit: Option<serde_json::Value>,
    tpm_limit: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/team/member_update",
    operation_id = "team_member_update",
    tag = "teams",
    summary = "Change a team member's role",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "The member as it now is", body = super::super::openapi::JsonObject),
        (status = 400, description = "No such member, a bad role, or a per-member limit (not supported)", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse),
        (status = 404, description = "No such team", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /team/member_update` with `{"team_id", "user_id" (or
/// "user_email"), "role"}`. Limits per member within a team
/// (`max_budget_in_team`, `rpm_limit`, `tpm_limit`) are refused by name:
/// conclave has none, and a budget that looked set but was not would spend
/// unchecked.
pub async fn member_update(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = admin(&state, request.headers()).await?;
    let body: MemberUpdateBody = read_json(&state, request).await?;
    for (field, value) in [
        ("max_budget_in_team", &body.max_budget_in_team),
        ("rpm_limit", &body.rpm_limit),
        ("tpm_limit", &body.tpm_limit),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                field,
                format!(
                    "{field} is not supported: conclave has no limits per team member; \
                     set them on the user (/user/update) or on the member's keys"
                ),
            ));
        }
    }
    let team_id = body
        .team_id
        .ok_or_else(|| invalid("team_id", "is required"))?;
    let user_id = named_user(&keys, body.user_id, body.user_email).await?;
    existing(&keys, &team_id).await?;
    let roles = keys
        .store()
        .member_roles(&team_id)
        .await
        .map_err(key_error)?;
    let Some((_, current)) = roles.into_iter().find(|(id, _)| *id == user_id) else {
        return Err(invalid(
            "user_id",
            format!("user {user_id:?} is not a member of team {team_id:?}"),
        ));
    };
    let role = body.role.unwrap_or(current);
    if !matches!(role.as_str(), "admin" | "user") {
        return Err(invalid(
            "role",
            format!("must be admin or user, not {role:?}"),
        ));
    }
    keys.store()
        .add_member(&team_id, &user_id, &role)
        .await
        .map_err(key_error)?;
    keys.invalidate_user(&user_id);
    keys.invalidate_team(&team_id);
    let user_email = keys
        .store()
        .user(&user_id)
        .await
        .map_err(key_error)?
        .and_then(|u| u.user_email);
    Ok(Json(json!({
        "team_id": team_id,
        "user_id": user_id,
        "user_email": user_email,
        "role": role,
        "max_budget_in_team": null,
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/team/info",
    operation_id = "team_info",
    tag = "teams",
    summary = "A team with its members and spend",
    responses(
        (status = 200, description = "A team with its members and spend: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /team/info?team_id=`: the team, its keys and memberships. A key of
/// the team may read it, with only the keys it may read itself.
pub async fn info(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (keys, manager) = authenticate(&state, request.headers()).await?;
    let team_id = q
        .get("team_id")
        .cloned()
        .ok_or_else(|| invalid("team_id", "is required"))?;
    if let Manager::Key { principal, .. } = &manager
        && !manager.reads_all()
        && principal.key.team_id.as_deref() != Some(team_id.as_str())
    {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "permission_error",
            "a key may read only its own team",
            Some("team_id"),
            Some("not_own_team"),
        ));
    }
    let team = existing(&keys, &team_id).await?;
    let filter = KeyFilter {
        team_id: Some(team_id.clone()),
        ..KeyFilter::default()
    };
    let (owned, _) = keys
        .store()
        .list_keys(
            &filter,
            ListPage {
                page: 1,
                size: 1000,
            },
        )
        .await
        .map_err(key_error)?;
    Ok(Json(json!({
        "team_id": team_id,
        "team_info": shown(&keys, &team).await?,
        // A member's key lists only the keys it may read (its own and its
        // user's), as `/key/info` answers.
        "keys": owned
            .iter()
            .filter(|k| super::keys::may_read(&manager, k))
            .map(shape::key)
            .collect::<Vec<_>>(),
        "team_memberships": team.members.iter().map(|m| json!({"user_id": m, "team_id": team_id})).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/team/list",
    operation_id = "team_list",
    tag = "teams",
    summary = "List teams",
    responses(
        (status = 200, description = "List teams: done", body = super::super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse),
        (status = 403, description = "Not allowed, or the key store is off (no master key)", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `GET /team/list`: every team (a JSON array, as LiteLLM answers).
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let keys = reader(&state, request.headers()).await?;
    let page = if q.contains_key("page") || q.contains_key("page_size") || q.contains_key("size") {
        page_of(&q, 100)?
    } else {
        ListPage {
            page: 1,
            size: 1000,
        }
    };
    let filter = TeamFilter {
        user_id: q.get("user_id").cloned(),
    };
    let (teams, _) = keys
        .store()
        .list_teams(&filter, page)
        .await
        .map_err(key_error)?;
    let mut out = Vec::with_capacity(teams.len());
    for t in &teams {
        out.push(shown(&keys, t).await?);
    }
    Ok(Json(out).into_response())
}
