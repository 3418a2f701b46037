//! The scopes a virtual-key caller is counted in, read from its records:
//! its key, its user and its team (each where it sets a limit), and each of
//! those levels' limits for the model being called (a key's per-model spend
//! starts from the store's `model_spend`; a user's or team's from zero).

use std::time::Duration;

use super::{Budget, Level, Recorded, Scope};
use crate::keys::model::{Limits, Principal, budget_period};

/// The scopes of a call by `principal` to `model` (the name it asked for,
/// after the key's aliases). Levels that limit nothing are left out.
pub fn scopes(principal: &Principal, model: &str) -> Vec<Scope> {
    let key = &principal.key;
    let mut out = Vec::with_capacity(4);
    let key_label = format!("key {}", key.key_name);
    let levels = [
        Some((
            Level::Key,
            "key",
            key.token_hash.as_str(),
            key_label.clone(),
            &key.limits,
            key.spend,
            key.budget_reset_at,
        )),
        principal.user.as_ref().map(|u| {
            (
                Level::User,
                "user",
                u.user_id.as_str(),
                format!("user {}", u.user_id),
                &u.limits,
                u.spend,
                u.budget_reset_at,
            )
        }),
        principal.team.as_ref().map(|t| {
            (
                Level::Team,
                "team",
                t.team_id.as_str(),
                format!("team {}", t.team_id),
                &t.limits,
                t.spend,
                t.budget_reset_at,
            )
        }),
    ];
    let key_model_spend = key.model_spend.get(model).copied().unwrap_or(0.0);
    for (level, prefix, id, label, limits, spend, reset_at) in levels.into_iter().flatten() {
        if limits.is_unlimited() {
            continue;
        }
        let period = period_of(limits);
        let own = Scope {
            level,
            name: format!("{prefix}:{id}"),
            label: label.clone(),
            rpm: limits.rpm_limit,
            tpm: limits.tpm_limit,
            parallel: limits.max_parallel_requests,
            budget: limits.max_budget.map(|max| Budget {
                max,
                recorded: Recorded {
                    spend,
                    reset_at,
                    period,
                },
            }),
        };
        if own.rpm.is_some() || own.tpm.is_some() || own.parallel.is_some() || own.budget.is_some()
        {
            out.push(own);
        }
        let model_spend = if level == Level::Key {
            key_model_spend
        } else {
            0.0
        };
        let recorded = Recorded {
            spend: model_spend,
            reset_at,
            period,
        };
        if let Some(scope) = model_scope(limits, prefix, id, &label, model, recorded) {
            out.push(scope);
        }
    }
    out
}

/// A level's limits for one model, as their own scope.
fn model_scope(
    limits: &Limits,
    prefix: &str,
    id: &str,
    label: &str,
    model: &str,
    recorded: Recorded,
) -> Option<Scope> {
    let rpm = limits.model_rpm_limit.get(model).copied();
    let tpm = limits.model_tpm_limit.get(model).copied();
    let budget = limits.model_max_budget.get(model).map(|max| Budget {
        max: *max,
        recorded,
    });
    if rpm.is_none() && tpm.is_none() && budget.is_none() {
        return None;
    }
    Some(Scope {
        level: Level::Model,
        name: format!("{prefix}-model:{id}:{model}"),
        label: format!("model {model} of {label}"),
        rpm,
        tpm,
        parallel: None,
        budget,
    })
}

/// The budget period, when `budget_duration` is set and readable (the
/// management API refuses unreadable ones, so none is expected here).
fn period_of(limits: &Limits) -> Option<Duration> {
    limits
        .budget_duration
        .as_deref()
        .and_then(|d| budget_period(d).ok())
}
