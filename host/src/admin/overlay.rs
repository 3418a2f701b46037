//! The runtime registrations every gateway version is built with, and the
//! file they are persisted in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use super::Registration;
use crate::config::{Config, LoadedConfig, Problem};

/// The runtime registrations, by deployment id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    models: BTreeMap<String, Registration>,
}

impl Overlay {
    /// Adds or replaces a registration (by its deployment id); true when it
    /// replaced one.
    pub fn upsert(&mut self, registration: Registration) -> bool {
        self.models
            .insert(registration.deployment_id(), registration)
            .is_some()
    }

    /// Removes the registration with this deployment id; false when there
    /// was none.
    pub fn remove(&mut self, deployment_id: &str) -> bool {
        self.models.remove(deployment_id).is_some()
    }

    /// Removes every registration serving `model_name`; the deployment ids
    /// removed.
    pub fn remove_model(&mut self, model_name: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .models
            .iter()
            .filter(|(_, r)| r.model_name == model_name)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.models.remove(id);
        }
        ids
    }

    /// The registration with this deployment id.
    pub fn get(&self, deployment_id: &str) -> Option<&Registration> {
        self.models.get(deployment_id)
    }

    /// The registrations, sorted by deployment id.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.models.values()
    }

    /// The model names registrations serve, sorted, each once.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        let names: BTreeSet<&String> = self.models.values().map(|r| &r.model_name).collect();
        names.into_iter()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Puts the registrations into `loaded`: one made by name replaces
    /// every config deployment of its model name, and its `fallbacks` (when
    /// given) replace the configured fallbacks of that model; one with an
    /// id of its own is one more deployment of its group.
    pub fn apply(&self, loaded: &mut LoadedConfig) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        // Replacements first, so that they leave the added deployments be.
        let (replacing, joining): (Vec<_>, Vec<_>) =
            self.models.values().partition(|r| r.replaces_its_group());
        for registration in replacing.into_iter().chain(joining) {
            let entry = match registration.entry(loaded) {
                Ok(e) => e,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let cfg = &mut loaded.config;
            if registration.replaces_its_group() {
                cfg.model_list
                    .retain(|e| e.model_name != registration.model_name);
            }
            cfg.model_list.push(entry);
            if let Some(fallbacks) = &registration.fallbacks {
                replace_fallbacks(cfg, &registration.model_name, fallbacks);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Removes the registrations that do not make a deployment under
    /// `loaded` (an `os.environ/NAME` key no longer allowed or set); each
    /// removed model's name and why.
    pub fn drop_unusable(&mut self, loaded: &LoadedConfig) -> Vec<(String, String)> {
        let mut dropped = Vec::new();
        self.models
            .retain(|_, registration| match registration.entry(loaded) {
                Ok(_) => true,
                Err(p) => {
                    let name = registration.model_name.clone();
                    dropped.push((name, format!("{}: {}", p.path, p.message)));
                    false
                }
            });
        dropped
    }

    /// Reads a persistence file; a missing file is an empty overlay.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                check_folder(path)?;
                return Ok(Self::default());
            }
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let models = value
            .get("models")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{}: expected {{\"models\": [...]}}", path.display()))?;
        let mut overlay = Self::default();
        for (i, m) in models.iter().enumerate() {
            let r = Registration::from_json(m).map_err(|e| {
                format!(
                    "{}: models[{i}]{}: {}",
                    path.display(),
                    e.param.map(|p| format!(".{p}")).unwrap_or_default(),
                    e.message
                )
            })?;
            overlay.upsert(r);
        }
        Ok(overlay)
    }

    /// Writes the persistence file atomically (owner-only: it holds keys).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let body = json!({
            "models": self.models.values().map(|r| r.to_json(true)).collect::<Vec<_>>(),
        });
        let mut text = serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?;
        text.push(b'\n');
        crate::fsutil::write_atomic(path, &text, true, true)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Refuses a persistence file whose folder is missing (or is no folder):
/// the gateway would start and lose the first runtime model it saves.
fn check_folder(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(format!(
        "{}: its folder {} does not exist; runtime models could not be saved there",
        path.display(),
        folder.display()
    ))
}

/// Makes `fallbacks` the only fallbacks of `model_name` (none when empty).
fn replace_fallbacks(cfg: &mut Config, model_name: &str, fallbacks: &[String]) {
    for list in [
        cfg.router_settings.fallbacks.as_mut(),
        cfg.litellm_settings.fallbacks.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for map in list.iter_mut() {
            map.remove(model_name);
        }
        list.retain(|map| !map.is_empty());
    }
    if !fallbacks.is_empty() {
        cfg.router_settings
            .fallbacks
            .get_or_insert_with(Vec::new)
            .push(BTreeMap::from([(
                model_name.to_owned(),
                fallbacks.to_vec(),
            )]));
    }
}
