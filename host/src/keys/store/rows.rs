//! Rows to records and back: JSON columns, epoch-millisecond times and
//! integer flags, read the same way from both backends.

use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::super::model::{
    BudgetRecord, EndUserRecord, KeyRecord, Limits, SpendRow, TeamRecord, UserRecord,
};
use super::super::time::{from_ms, to_ms};
use super::store_error;
use crate::keys::KeyError;

/// The columns of `keys`, in the order [`key`] reads them.
pub const KEY_COLUMNS: &str = "token_hash, key_alias, key_name, user_id, team_id, models, aliases, \
     limits, spend, budget_reset_at, expires, blocked, metadata, tags, created_at, updated_at, \
     allowed_routes";

/// The columns of `users`, in the order [`user`] reads them.
pub const USER_COLUMNS: &str = "user_id, user_role, user_email, models, limits, spend, \
     budget_reset_at, metadata, created_at, updated_at";

/// The columns of `teams`, in the order [`team`] reads them.
pub const TEAM_COLUMNS: &str = "team_id, team_alias, models, limits, spend, budget_reset_at, \
     blocked, metadata, created_at, updated_at";

/// The columns of `spend_logs` as [`spend_row`] reads them.
pub const SPEND_COLUMNS: &str = "request_id, parent_request_id, token_hash, user_id, team_id, \
     model, model_group, deployment, profile, prompt_tokens, completion_tokens, spend, status, \
     cache_hit, started_at, latency_ms, tags, end_user, response_id";

/// A value as its JSON text column.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn from_json<T: DeserializeOwned + Default>(row: &AnyRow, column: &str) -> Result<T, KeyError> {
    let text: String = row.try_get(column).map_err(store_error)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

/// A JSON column that may be `NULL` (read as the default).
fn opt_json<T: DeserializeOwned + Default>(row: &AnyRow, column: &str) -> Result<T, KeyError> {
    let text: Option<String> = row.try_get(column).map_err(store_error)?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

fn opt_time(row: &AnyRow, column: &str) -> Result<Option<SystemTime>, KeyError> {
    let ms: Option<i64> = row.try_get(column).map_err(store_error)?;
    Ok(ms.map(from_ms))
}

fn time(row: &AnyRow, column: &str) -> Result<SystemTime, KeyError> {
    let ms: i64 = row.try_get(column).map_err(store_error)?;
    Ok(from_ms(ms))
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, KeyError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(store_error)
}

/// An optional time as its column value.
pub fn ms(t: Option<SystemTime>) -> Option<i64> {
    t.map(to_ms)
}

/// A `keys` row.
pub fn key(row: &AnyRow) -> Result<KeyRecord, KeyError> {
    Ok(KeyRecord {
        token_hash: get(row, "token_hash")?,
        key_alias: get(row, "key_alias")?,
        key_name: get(row, "key_name")?,
        user_id: get(row, "user_id")?,
        team_id: get(row, "team_id")?,
        models: from_json(row, "models")?,
        aliases: from_json(row, "aliases")?,
        limits: from_json::<Limits>(row, "limits")?,
        spend: get(row, "spend")?,
        model_spend: Default::default(),
        budget_reset_at: opt_time(row, "budget_reset_at")?,
        expires: opt_time(row, "expires")?,
        blocked: get::<i64>(row, "blocked")? != 0,
        metadata: from_json(row, "metadata")?,
        tags: from_json(row, "tags")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        allowed_routes: opt_json(row, "allowed_routes")?,
    })
}

/// A `users` row (its teams are filled in by the caller).
pub fn user(row: &AnyRow) -> Result<UserRecord, KeyError> {
    Ok(UserRecord {
        user_id: get(row, "user_id")?,
        user_role: get(row, "user_role")?,
        user_email: get(row, "user_email")?,
        models: from_json(row, "models")?,
        limits: from_json(row, "limits")?,
        spend: get(row, "spend")?,
        budget_reset_at: opt_time(row, "budget_reset_at")?,
        metadata: from_json(row, "metadata")?,
        teams: Vec::new(),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A `teams` row (its members are filled in by the caller).
pub fn team(row: &AnyRow) -> Result<TeamRecord, KeyError> {
    Ok(TeamRecord {
        team_id: get(row, "team_id")?,
        team_alias: get(row, "team_alias")?,
        models: from_json(row, "models")?,
        limits: from_json(row, "limits")?,
        spend: get(row, "spend")?,
        budget_reset_at: opt_time(row, "budget_reset_at")?,
        blocked: get::<i64>(row, "blocked")? != 0,
        members: Vec::new(),
        metadata: from_json(row, "metadata")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A budget's columns in `row`, each named `{prefix}limits`, ...: a
/// `budgets` row (no prefix), or one joined to an end user's (`b_`).
fn budget_columns(row: &AnyRow, budget_id: String, prefix: &str) -> Result<BudgetRecord, KeyError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(BudgetRecord {
        budget_id,
        limits: from_json(row, &column("limits"))?,
        soft_budget: get(row, &column("soft_budget"))?,
        created_at: time(row, &column("created_at"))?,
        updated_at: time(row, &column("updated_at"))?,
    })
}

/// A `budgets` row.
pub fn budget(row: &AnyRow) -> Result<BudgetRecord, KeyError> {
    budget_columns(row, get(row, "budget_id")?, "")
}

/// An `end_users` row joined with its budget's columns (named `b_...`;
/// null when it is linked to none, or to one since deleted).
pub fn end_user(row: &AnyRow) -> Result<EndUserRecord, KeyError> {
    let budget_id: Option<String> = get(row, "budget_id")?;
    let joined = get::<Option<String>>(row, "b_limits")?.is_some();
    let budget = match &budget_id {
        Some(id) if joined => Some(budget_columns(row, id.clone(), "b_")?),
        _ => None,
    };
    Ok(EndUserRecord {
        user_id: get(row, "user_id")?,
        alias: get(row, "alias")?,
        blocked: get::<i64>(row, "blocked")? != 0,
        budget_id,
        budget,
        spend: get(row, "spend")?,
        budget_reset_at: opt_time(row, "budget_reset_at")?,
        default_model: get(row, "default_model")?,
        allowed_model_region: get(row, "allowed_model_region")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A `spend_logs` row.
pub fn spend_row(row: &AnyRow) -> Result<SpendRow, KeyError> {
    let count =
        |c: &str| -> Result<u64, KeyError> { Ok(u64::try_from(get::<i64>(row, c)?).unwrap_or(0)) };
    Ok(SpendRow {
        request_id: get(row, "request_id")?,
        parent_request_id: get(row, "parent_request_id")?,
        token_hash: get(row, "token_hash")?,
        user_id: get(row, "user_id")?,
        team_id: get(row, "team_id")?,
        model: get(row, "model")?,
        model_group: get(row, "model_group")?,
        budget_model: None,
        deployment: get(row, "deployment")?,
        profile: get(row, "profile")?,
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
        spend: get(row, "spend")?,
        composite_cost: 0.0,
        status: u16::try_from(get::<i64>(row, "status")?).unwrap_or(0),
        cache_hit: get::<i64>(row, "cache_hit")? != 0,
        started_at: time(row, "started_at")?,
        latency_ms: count("latency_ms")?,
        tags: from_json(row, "tags")?,
        end_user: get(row, "end_user")?,
        response_id: get(row, "response_id")?,
    })
}
