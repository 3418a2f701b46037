//! What a change's audit rows hold: the objects a request names, the
//! objects as they were and are, and the rows written for them.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Change, Changer, Kind};
use crate::http::management::keys::hash_of;
use crate::http::management::{MAX_NAMED, shape, teams, users};
use crate::keys::Keys;
use crate::keys::store::AuditRow;

/// Largest value (before or after) a row keeps; a larger one (a key with
/// megabytes of metadata) is replaced by a note of its size, so a page of
/// rows stays small.
const MAX_VALUE_BYTES: usize = 32 << 10;

/// Largest field of a too-large value that is kept as it is.
const MAX_FIELD_BYTES: usize = 4 << 10;

/// The ids of the objects a request names before it runs (keys by hash);
/// none when it names more than its route accepts ([`MAX_NAMED`]), so
/// that objects are not read for a request the route will refuse.
pub(super) async fn targets(keys: &Keys, kind: Kind, path: &str, asked: &Value) -> Vec<String> {
    let mut ids = named_targets(keys, kind, path, asked).await;
    if ids.len() > MAX_NAMED {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// [`targets`] as the request names them, repeats included.
async fn named_targets(keys: &Keys, kind: Kind, path: &str, asked: &Value) -> Vec<String> {
    let strings = |field: &str| -> Vec<String> {
        match asked.get(field) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    match kind {
        Kind::Key => {
            let mut ids: Vec<String> = strings("key")
                .into_iter()
                .chain(strings("keys"))
                .map(|k| hash_of(&k))
                .collect();
            if let Some(given) = path
                .strip_prefix("/key/")
                .and_then(|rest| {
                    rest.strip_suffix("/regenerate")
                        .or_else(|| rest.strip_suffix("/reset_spend"))
                })
                .filter(|given| !given.is_empty())
            {
                ids.push(hash_of(given));
            }
            let aliases = strings("key_aliases");
            if ids.len() + aliases.len() > MAX_NAMED {
                return Vec::new();
            }
            for alias in aliases {
                if let Ok(Some(hash)) = keys.store().key_hash_by_alias(&alias).await {
                    ids.push(hash);
                }
            }
            ids
        }
        Kind::User => {
            let ids = [strings("user_id"), strings("user_ids")].concat();
            match asked.get("user_email").and_then(Value::as_str) {
                // `/user/update` may name its user by email alone.
                Some(email) if ids.is_empty() => users::user_by_email(keys, email, "user_email")
                    .await
                    .ok()
                    .flatten()
                    .into_iter()
                    .collect(),
                _ => ids,
            }
        }
        Kind::Team => [strings("team_id"), strings("team_ids")].concat(),
        Kind::Customer => [strings("user_id"), strings("user_ids")].concat(),
        Kind::Budget => [strings("budget_id"), strings("id")].concat(),
        Kind::Model => {
            if let Some(name) = path.strip_prefix("/admin/models/") {
                // The id a registration by name has.
                vec![format!("runtime:{name}")]
            } else if let Some(id) = patched_model(path) {
                // `PATCH /model/{model_id}/update` names it in its path.
                vec![id]
            } else {
                // As `/model/update` reads it.
                crate::http::admin::update_target(asked)
                    .and_then(|(id, _)| id.as_str())
                    .map(|id| vec![id.to_owned()])
                    .unwrap_or_default()
            }
        }
        Kind::Cache => match path.strip_prefix("/cache/") {
            Some("flushall") => vec!["all".to_owned()],
            Some("delete") => strings("keys"),
            Some(key) => vec![key.to_owned()],
            None => Vec::new(),
        },
        Kind::Config => vec!["config".to_owned()],
    }
}

/// The model id in the path of `PATCH /model/{model_id}/update`, decoded
/// as the handler reads it.
fn patched_model(path: &str) -> Option<String> {
    let id = path.strip_prefix("/model/")?.strip_suffix("/update")?;
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?;
    (!id.is_empty()).then(|| id.into_owned())
}

/// The object as the API shows it (never a key's value), when it exists
/// and its kind is kept in the key store.
pub(super) async fn snapshot(keys: &Keys, kind: Kind, id: &str) -> Option<Value> {
    let store = keys.store();
    match kind {
        Kind::Key => store.key(id).await.ok()?.map(|k| shape::key(&k)),
        Kind::User => store.user(id).await.ok()?.map(|u| shape::user(&u)),
        Kind::Team => {
            let team = store.team(id).await.ok()??;
            teams::shown(keys, &team).await.ok()
        }
        Kind::Customer => store.end_user(id).await.ok()?.map(|e| shape::customer(&e)),
        Kind::Budget => store
            .budget(id)
            .await
            .ok()?
            .map(|b| shape::budget(&b, None)),
        Kind::Model | Kind::Cache | Kind::Config => None,
    }
}

/// One audit row's object and values.
pub(super) struct Entry {
    kind: Kind,
    action: &'static str,
    object_id: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// The rows a successful change leaves: one per object it named that
/// existed (or was named at all, for kinds without snapshots), or the one
/// object its answer names when it named none (a new key, user or team).
pub(super) async fn rows(
    keys: &Keys,
    change: Change,
    targets: &[String],
    before: Vec<Option<Value>>,
    asked: &Value,
    answered: &Value,
) -> Vec<Entry> {
    let answer_id = change
        .kind
        .answer_id()
        .and_then(|field| answered.get(field))
        .and_then(Value::as_str);
    let deleted = change.action == "deleted";
    // A registration that replaced one of its name changed it.
    let action = match answered.get("replaced") {
        Some(Value::Bool(true)) => "updated",
        _ => change.action,
    };
    // What the change left behind, for kinds the store keeps no snapshot
    // of: the answer (models: without their keys), or what was asked of
    // the cache. A reload's body says nothing.
    let left = || match change.kind {
        Kind::Model => Some(answered.clone()),
        Kind::Config => None,
        _ => Some(asked.clone()).filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
    };
    if targets.is_empty() {
        let Some(id) = answer_id else {
            return Vec::new();
        };
        let after = match snapshot(keys, change.kind, id).await {
            Some(after) => Some(after),
            None => left(),
        };
        let mut entries = vec![Entry {
            kind: change.kind,
            action,
            object_id: id.to_owned(),
            before: None,
            after,
        }];
        // A new user's first key (`auto_create_key`) is a new key too.
        if let (Kind::User, Some(token)) = (change.kind, answered["token"].as_str()) {
            entries.push(Entry {
                kind: Kind::Key,
                action,
                object_id: token.to_owned(),
                before: None,
                after: snapshot(keys, Kind::Key, token).await,
            });
        }
        return entries;
    }
    let keeps_snapshots = matches!(
        change.kind,
        Kind::Key | Kind::User | Kind::Team | Kind::Customer | Kind::Budget
    );
    let mut entries = Vec::with_capacity(targets.len());
    for (id, before) in targets.iter().zip(before) {
        if keeps_snapshots && before.is_none() {
            continue;
        }
        let after = if deleted {
            None
        } else if keeps_snapshots {
            // A rotated key lives on under its new hash.
            let now = if targets.len() == 1 { answer_id } else { None };
            snapshot(keys, change.kind, now.unwrap_or(id)).await
        } else {
            left()
        };
        // An update that left its object as it was changed nothing.
        if keeps_snapshots && !deleted && same_but_updated_at(&before, &after) {
            continue;
        }
        entries.push(Entry {
            kind: change.kind,
            action,
            object_id: id.clone(),
            before,
            after,
        });
    }
    entries
}

/// Writes `entries` as rows, their values without credentials.
pub(super) async fn write(keys: &Keys, changer: Changer, change: Change, entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let at = SystemTime::now();
    let rows: Vec<AuditRow> = entries
        .into_iter()
        .map(|entry| AuditRow {
            id: crate::translate::new_id(""),
            at,
            changed_by: changer.name.clone(),
            changed_by_api_key: changer.key_hash.clone(),
            action: entry.action.to_owned(),
            table_name: entry.kind.table().to_owned(),
            object_id: entry.object_id,
            before_value: entry.before.map(|v| without_credentials(v, entry.kind)),
            updated_values: entry.after.map(|v| without_credentials(v, entry.kind)),
        })
        .collect();
    if let Err(e) = keys.store().insert_audit(&rows).await {
        tracing::error!(
            error = %e,
            action = change.action,
            table = change.kind.table(),
            rows = rows.len(),
            "a change was made but its audit log rows were not written"
        );
    }
}

/// `value` as JSON text with every credential field's value replaced (a
/// key's `token` is its hash, kept: it is how a key is followed), or a
/// note of its size when it is larger than a row keeps.
fn without_credentials(mut value: Value, kind: Kind) -> String {
    let token = value
        .as_object_mut()
        .filter(|_| kind == Kind::Key)
        .and_then(|fields| fields.remove("token"));
    let text = value.to_string();
    let clean = crate::observe::request_log::without_credentials(text.as_bytes());
    let mut kept: Value = serde_json::from_slice(&clean).unwrap_or(Value::Null);
    if let (Some(fields), Some(token)) = (kept.as_object_mut(), token) {
        fields.insert("token".into(), token);
    }
    let text = kept.to_string();
    if text.len() <= MAX_VALUE_BYTES {
        return text;
    }
    // Too large: each large field gives way to a note of its size, so the
    // small ones (a budget, a model list) stay readable.
    if let Some(fields) = kept.as_object_mut() {
        for value in fields.values_mut() {
            let size = value.to_string().len();
            if size > MAX_FIELD_BYTES {
                *value = omitted(size, MAX_FIELD_BYTES);
            }
        }
        let text = kept.to_string();
        if text.len() <= MAX_VALUE_BYTES {
            return text;
        }
    }
    omitted(text.len(), MAX_VALUE_BYTES).to_string()
}

/// What stands for a value of `size` bytes, larger than `kept`.
fn omitted(size: usize, kept: usize) -> Value {
    json!({
        "omitted": format!(
            "the value was {size} bytes, more than an audit log row keeps ({kept})"
        )
    })
}

/// Whether two values of an object are the same but for when it was last
/// written: an update that changed nothing else changed nothing.
fn same_but_updated_at(before: &Option<Value>, after: &Option<Value>) -> bool {
    let strip = |v: &Option<Value>| {
        v.clone().map(|mut v| {
            if let Some(fields) = v.as_object_mut() {
                fields.remove("updated_at");
            }
            v
        })
    };
    strip(before) == strip(after)
}
