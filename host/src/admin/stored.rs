//! Runtime registrations kept in the key store instead of a file
//! (`general_settings.store_model_in_db`, LiteLLM's key): written when the
//! admin API registers or deletes a model, read at start-up and whenever
//! another instance sharing the store announces a change.
//!
//! A registration is stored as the persistence file keeps it: its JSON with
//! `api_key` as given (a key, or `os.environ/NAME` resolved at each build).
//! Nothing here logs a registration's key.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::{Overlay, Registration};
use crate::config::Config;
use crate::keys::Store;

/// Where this instance's registrations and deletions are announced, so that
/// the other instances sharing the store read them at once.
pub trait ModelFeed: Send + Sync {
    /// Tells the other instances that `model_name` changed (without waiting).
    fn models_changed(&self, model_name: &str);
}

/// The registrations in the store, and where changes to them are announced.
pub struct StoredModels {
    store: Store,
    feed: OnceLock<Arc<dyn ModelFeed>>,
}

/// What start-up and `conclave check` say when `store_model_in_db` is set
/// but no key store opens (it needs a master key).
pub const NO_KEY_STORE: &str = "general_settings.store_model_in_db is set but there is no master key, so no key store: runtime models are not kept in a database";

/// Whether the config asks for registrations in the store:
/// `general_settings.store_model_in_db`, else LiteLLM's `STORE_MODEL_IN_DB`
/// variable (`true`/`True`/`1`).
pub fn wanted(config: &Config) -> bool {
    config
        .general_settings
        .store_model_in_db
        .unwrap_or_else(|| {
            config
                .env
                .get("STORE_MODEL_IN_DB")
                .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"))
        })
}

impl StoredModels {
    /// Registrations kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            feed: OnceLock::new(),
        }
    }

    /// Announces every later change to `feed` as well (set once, when
    /// instances share state; a second feed is ignored).
    pub fn announce_changes_to(&self, feed: Arc<dyn ModelFeed>) {
        let _ = self.feed.set(feed);
    }

    /// Tells the other instances that `model_name` changed, when they share
    /// state with this one.
    pub fn announce(&self, model_name: &str) {
        if let Some(feed) = self.feed.get() {
            feed.models_changed(model_name);
        }
    }

    /// Every stored registration. A row that no longer reads as one (a
    /// field this version refuses, a provider it lacks) is skipped with a
    /// warning naming it: one bad row must not stop the gateway.
    pub async fn load(&self) -> Result<Overlay, String> {
        let rows = self
            .store
            .runtime_models()
            .await
            .map_err(|e| format!("cannot read the runtime models from the store: {e}"))?;
        let mut overlay = Overlay::default();
        for (deployment_id, text) in rows {
            match parse(&text) {
                Ok(registration) => {
                    overlay.upsert(registration);
                }
                Err(why) => tracing::warn!(
                    deployment_id = %deployment_id,
                    reason = %why,
                    "runtime model in the store skipped: it no longer reads as a registration"
                ),
            }
        }
        Ok(overlay)
    }

    /// Keeps `registration` (replacing one with the same deployment id).
    pub async fn save(&self, registration: &Registration) -> Result<(), String> {
        let text = registration.to_json(true).to_string();
        self.store
            .put_runtime_model(&registration.deployment_id(), &text)
            .await
            .map_err(|e| format!("cannot store the runtime model: {e}"))
    }

    /// Keeps `registration` unless its deployment id is stored already
    /// (by another instance): whether it was kept.
    pub async fn add(&self, registration: &Registration) -> Result<bool, String> {
        let text = registration.to_json(true).to_string();
        self.store
            .insert_runtime_model(&registration.deployment_id(), &text)
            .await
            .map_err(|e| format!("cannot store the runtime model: {e}"))
    }

    /// Deletes the registrations with these deployment ids.
    pub async fn delete(&self, deployment_ids: &[String]) -> Result<(), String> {
        for id in deployment_ids {
            self.store
                .delete_runtime_model(id)
                .await
                .map_err(|e| format!("cannot delete the runtime model from the store: {e}"))?;
        }
        Ok(())
    }
}

/// A stored row as a registration, or why not (without the key's value).
fn parse(text: &str) -> Result<Registration, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    Registration::from_json(&value).map_err(|e| match e.param.as_deref() {
        Some("api_key") => "api_key is not usable".to_owned(),
        _ => e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_reads_back_as_its_registration() {
        let r = Registration::from_json(&serde_json::json!({
            "model_name": "m", "api_base": "http://127.0.0.1:1", "api_key": "sk-x",
            "fallbacks": ["b"]
        }))
        .unwrap();
        assert_eq!(parse(&r.to_json(true).to_string()).unwrap(), r);
        assert!(parse("{").is_err());
        let why = parse(r#"{"model_name": "m", "api_key": 12}"#).unwrap_err();
        assert!(!why.contains("12"), "{why}");
        assert!(parse(r#"{"model_name": "m", "model": "exec/run"}"#).is_err());
    }
}
