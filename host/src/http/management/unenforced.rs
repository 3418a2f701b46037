//! LiteLLM fields that would restrict a key, user or team in ways conclave
//! does not enforce (guardrails, required parameters, budgets per team
//! member, ...).
//! Most unknown fields are accepted and ignored, so a LiteLLM script's
//! extras do not break it; these are refused by name instead, because
//! ignoring them would leave a caller freer, or able to spend more, than
//! the administrator asked. A value that restricts nothing (`null`,
//! `false`, `""`, `[]`, `{}`) is accepted: scripts send those as defaults.

use serde_json::Value;

use super::{ApiError, invalid};

/// A field, and what it would have done.
pub type Restriction = (&'static str, &'static str);

/// A management body with fields of [`Restriction`]s to refuse.
pub trait Restricting {
    const UNENFORCED: &'static [Restriction];
}

/// On `/key/generate` and `/key/update`.
pub const ON_KEYS: &[Restriction] = &[
    ("enforced_params", "require parameters in every request"),
    ("guardrails", "run guardrails on the key's requests"),
    ("permissions", "switch off what the key may otherwise do"),
    (
        "allowed_cache_controls",
        "limit the cache controls the key may send",
    ),
    ("budget_id", "apply a budget made with /budget/new"),
    ("organization_id", "count the key against an organization"),
    (
        "object_permission",
        "limit the MCP servers and vector stores the key may use",
    ),
    ("auto_rotate", "rotate the key on a schedule"),
    ("rotation_interval", "rotate the key on a schedule"),
    (
        "max_budget_per_session",
        "limit what one session of the key may spend",
    ),
    (
        "allowed_passthrough_routes",
        "limit the pass-through routes the key may call",
    ),
    (
        "access_group_ids",
        "limit the key to the models of access groups made in a database",
    ),
    ("router_settings", "route the key's requests its own way"),
];

/// On `/user/new` and `/user/update`.
pub const ON_USERS: &[Restriction] = &[
    ("guardrails", "run guardrails on the user's requests"),
    ("permissions", "switch off what the user may otherwise do"),
    (
        "allowed_cache_controls",
        "limit the cache controls the user may send",
    ),
    ("budget_id", "apply a budget made with /budget/new"),
    ("organizations", "count the user against organizations"),
    (
        "object_permission",
        "limit the MCP servers and vector stores the user may use",
    ),
];

/// On `/customer/new` and `/customer/update`.
pub const ON_CUSTOMERS: &[Restriction] = &[
    (
        "allowed_model_region",
        "send the end user's requests only to deployments in that region",
    ),
    (
        "object_permission",
        "limit the MCP servers and vector stores the end user may use",
    ),
];

/// On `/budget/new` and `/budget/update`.
pub const ON_BUDGETS: &[Restriction] = &[(
    "allowed_models",
    "limit the models the budget's end users may call",
)];

/// On `/team/new` and `/team/update`.
pub const ON_TEAMS: &[Restriction] = &[
    (
        "team_member_budget",
        "give each member a budget in the team",
    ),
    (
        "team_member_rpm_limit",
        "limit each member's requests per minute",
    ),
    (
        "team_member_tpm_limit",
        "limit each member's tokens per minute",
    ),
    ("team_member_key_duration", "make members' keys expire"),
    ("team_member_permissions", "limit what members may manage"),
    ("guardrails", "run guardrails on the team's requests"),
    ("budget_id", "apply a budget made with /budget/new"),
    ("organization_id", "count the team against an organization"),
    (
        "object_permission",
        "limit the MCP servers and vector stores the team may use",
    ),
];

/// On `/team/member_add`.
pub const ON_MEMBERS: &[Restriction] = &[(
    "max_budget_in_team",
    "give the new members a budget in the team",
)];

/// Refuses the first field of `fields` that `body` sets to a value that
/// restricts something.
pub fn refuse(body: &Value, fields: &[Restriction]) -> Result<(), ApiError> {
    for (field, would) in fields {
        if body.get(field).is_some_and(|v| restricts_as(field, v)) {
            return Err(invalid(
                field,
                format!(
                    "is not supported: it would {would}, and conclave does not enforce it; \
                     leave it out (docs/keys.md lists what conclave enforces)"
                ),
            ));
        }
    }
    Ok(())
}

/// The fields that are objects of switches: a switch restricts whichever
/// way it is set (`"get_spend_routes": false` takes a right away).
const SWITCHES: &[&str] = &["permissions", "team_member_permissions"];

/// Whether `field`'s value asks for anything; in an object of
/// [`SWITCHES`], any entry does.
fn restricts_as(field: &str, v: &Value) -> bool {
    match v {
        Value::Object(o) if SWITCHES.contains(&field) => !o.is_empty(),
        _ => restricts(v),
    }
}

/// Whether a value asks for anything: not null, false, empty, or an
/// object of such values (an `object_permission` of empty lists names
/// nothing to limit).
fn restricts(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(restricts),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_restriction_that_asks_for_something_is_refused_by_name() {
        let e = refuse(&json!({"enforced_params": ["user"]}), ON_KEYS).unwrap_err();
        assert_eq!(e.body.error.param.as_deref(), Some("enforced_params"));
        assert!(
            e.body.error.message.contains("require parameters"),
            "{}",
            e.body.error.message
        );
        let nested = json!({"object_permission": {"mcp_servers": ["github"]}});
        assert!(refuse(&nested, ON_KEYS).is_err());
        let switch_off = json!({"permissions": {"get_spend_routes": false}});
        assert!(refuse(&switch_off, ON_USERS).is_err());
        let e = refuse(&json!({"team_member_budget": 5}), ON_TEAMS).unwrap_err();
        assert_eq!(e.body.error.param.as_deref(), Some("team_member_budget"));
    }

    #[test]
    fn defaults_that_restrict_nothing_are_accepted() {
        let body = json!({
            "allowed_routes": [], "guardrails": null, "permissions": {},
            "budget_id": "", "enforced_params": [], "organization_id": null,
            "object_permission": {"mcp_servers": [], "vector_stores": []},
        });
        assert!(refuse(&body, ON_KEYS).is_ok());
        assert!(refuse(&json!({"team_member_budget": null}), ON_TEAMS).is_ok());
    }

    #[test]
    fn fields_of_other_bodies_are_left_alone() {
        assert!(refuse(&json!({"team_member_budget": 5}), ON_KEYS).is_ok());
    }
}
