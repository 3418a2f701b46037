//! Records as LiteLLM's API shows them: the same field names, times as
//! RFC 3339 strings, key hashes as `token`.

use serde_json::{Value, json};

use crate::keys::model::{
    BudgetRecord, EndUserRecord, KeyRecord, Limits, SpendRow, TeamRecord, UserRecord,
};
use crate::keys::time::rfc3339;

/// A time as the management API writes it: RFC 3339 in UTC, or null.
pub(super) fn time(t: Option<std::time::SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// The limit fields of one level, merged into `out`.
fn limits(out: &mut serde_json::Map<String, Value>, l: &Limits) {
    out.insert("max_budget".into(), json!(l.max_budget));
    out.insert("budget_duration".into(), json!(l.budget_duration));
    out.insert("rpm_limit".into(), json!(l.rpm_limit));
    out.insert("tpm_limit".into(), json!(l.tpm_limit));
    out.insert(
        "max_parallel_requests".into(),
        json!(l.max_parallel_requests),
    );
    out.insert("model_rpm_limit".into(), json!(l.model_rpm_limit));
    out.insert("model_tpm_limit".into(), json!(l.model_tpm_limit));
    out.insert("model_max_budget".into(), json!(l.model_max_budget));
}

/// A budget as `/budget/*` shows it (LiteLLM's budget table); `reset_at`
/// is an end user's own end of period, when shown with one.
pub fn budget(b: &BudgetRecord, reset_at: Option<std::time::SystemTime>) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("budget_id".into(), json!(b.budget_id));
    limits(&mut out, &b.limits);
    out.insert("soft_budget".into(), json!(b.soft_budget));
    out.insert("budget_reset_at".into(), time(reset_at));
    out.insert("created_at".into(), time(Some(b.created_at)));
    out.insert("updated_at".into(), time(Some(b.updated_at)));
    Value::Object(out)
}

/// An end user as `/customer/*` shows it, with its budget as
/// `litellm_budget_table` (null without one).
pub fn customer(e: &EndUserRecord) -> Value {
    json!({
        "user_id": e.user_id,
        "alias": e.alias,
        "blocked": e.blocked,
        "spend": e.spend,
        "budget_id": e.budget_id,
        "budget_reset_at": time(e.budget_reset_at),
        "default_model": e.default_model,
        "allowed_model_region": e.allowed_model_region,
        "litellm_budget_table": e.budget.as_ref().map(|b| budget(b, e.budget_reset_at)),
        "created_at": time(Some(e.created_at)),
        "updated_at": time(Some(e.updated_at)),
    })
}

/// A key (never its value: `token` is the hash).
pub fn key(k: &KeyRecord) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("token".into(), json!(k.token_hash));
    out.insert("key_name".into(), json!(k.key_name));
    out.insert("key_alias".into(), json!(k.key_alias));
    out.insert("spend".into(), json!(k.spend));
    out.insert("model_spend".into(), json!(k.model_spend));
    out.insert("expires".into(), time(k.expires));
    out.insert("models".into(), json!(k.models));
    out.insert("aliases".into(), json!(k.aliases));
    out.insert("config".into(), json!({}));
    out.insert("user_id".into(), json!(k.user_id));
    out.insert("team_id".into(), json!(k.team_id));
    limits(&mut out, &k.limits);
    out.insert("budget_reset_at".into(), time(k.budget_reset_at));
    out.insert("metadata".into(), k.metadata.clone());
    out.insert("tags".into(), json!(k.tags));
    out.insert("allowed_routes".into(), json!(k.allowed_routes));
    out.insert("blocked".into(), json!(k.blocked));
    out.insert("created_at".into(), time(Some(k.created_at)));
    out.insert("updated_at".into(), time(Some(k.updated_at)));
    Value::Object(out)
}

/// A key as `/key/generate` and `/key/regenerate` answer: every field, the
/// full key (shown this once) and `token_id`.
pub fn generated(k: &KeyRecord, full_key: &str) -> Value {
    let mut v = key(k);
    if let Some(o) = v.as_object_mut() {
        o.insert("key".into(), json!(full_key));
        o.insert("token_id".into(), json!(k.token_hash));
    }
    v
}

/// An update's answer in LiteLLM's shape: the record, with a copy under
/// `data` (where LiteLLM's `/user/update` and `/team/update` put it), so
/// scripts reading either place find it.
pub fn with_data(mut record: Value) -> Value {
    let copy = record.clone();
    if let Some(fields) = record.as_object_mut() {
        fields.insert("data".into(), copy);
    }
    record
}

/// A user.
pub fn user(u: &UserRecord) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("user_id".into(), json!(u.user_id));
    out.insert("user_role".into(), json!(u.user_role));
    out.insert("user_email".into(), json!(u.user_email));
    out.insert("models".into(), json!(u.models));
    out.insert("spend".into(), json!(u.spend));
    limits(&mut out, &u.limits);
    out.insert("budget_reset_at".into(), time(u.budget_reset_at));
    out.insert("metadata".into(), u.metadata.clone());
    out.insert("teams".into(), json!(u.teams));
    out.insert("created_at".into(), time(Some(u.created_at)));
    out.insert("updated_at".into(), time(Some(u.updated_at)));
    Value::Object(out)
}

/// A team, with its members in LiteLLM's `members_with_roles` form too
/// (`roles`: user id and role; members missing from it are `user`).
pub fn team(t: &TeamRecord, roles: &[(String, String)]) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("team_id".into(), json!(t.team_id));
    out.insert("team_alias".into(), json!(t.team_alias));
    out.insert("models".into(), json!(t.models));
    out.insert("spend".into(), json!(t.spend));
    limits(&mut out, &t.limits);
    out.insert("budget_reset_at".into(), time(t.budget_reset_at));
    out.insert("blocked".into(), json!(t.blocked));
    out.insert("members".into(), json!(t.members));
    out.insert(
        "members_with_roles".into(),
        Value::Array(
            t.members
                .iter()
                .map(|m| {
                    let role = roles
                        .iter()
                        .find(|(u, _)| u == m)
                        .map_or("user", |(_, r)| r.as_str());
                    json!({"user_id": m, "role": role})
                })
                .collect(),
        ),
    );
    out.insert("metadata".into(), t.metadata.clone());
    out.insert("created_at".into(), time(Some(t.created_at)));
    out.insert("updated_at".into(), time(Some(t.updated_at)));
    Value::Object(out)
}

/// A spend-log row with LiteLLM's `SpendLogs` names (`api_key` is the key's
/// hash, `startTime`/`endTime` as LiteLLM spells them).
pub fn spend_row(r: &SpendRow) -> Value {
    let end = r
        .started_at
        .checked_add(std::time::Duration::from_millis(r.latency_ms));
    json!({
        "request_id": r.request_id,
        "parent_request_id": r.parent_request_id,
        "response_id": r.response_id,
        "call_type": if r.parent_request_id.is_some() { "sub_call" } else { "completion" },
        "api_key": r.token_hash.clone().unwrap_or_default(),
        "user": r.user_id.clone().unwrap_or_default(),
        "team_id": r.team_id,
        "model": r.model,
        "model_group": r.model_group,
        "model_id": r.deployment,
        "profile": r.profile,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens.saturating_add(r.completion_tokens),
        "spend": r.spend,
        "status": if r.status < 400 { "success" } else { "failure" },
        "status_code": r.status,
        "cache_hit": if r.cache_hit { "True" } else { "False" },
        "startTime": time(Some(r.started_at)),
        "endTime": time(end),
        "latency_ms": r.latency_ms,
        "request_tags": r.tags,
        "end_user": r.end_user.clone().unwrap_or_default(),
        "metadata": {},
    })
}
