//! Everything built from one config: the router, auth settings, limits and
//! the model listing. Swapped whole on reload, so a request always sees one
//! consistent version.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use crate::config::{ConfigError, LoadedConfig, Secret};
use crate::openai::unix_now;
use crate::router::{Clock, Router, is_composite};

/// Default request body limit when `max_request_size_mb` is unset.
const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// A composite model exposed in model_list.
#[derive(Debug, Clone)]
pub struct CompositeModel {
    /// What the entry points at (`composite/profile/<name>`, ...).
    pub target: String,
}

/// One loaded version of the gateway.
pub struct Gateway {
    pub router: Router,
    pub master_key: Option<Secret>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    pub composites: BTreeMap<String, CompositeModel>,
    /// The `/v1/models` body, built once per version.
    pub models_json: Bytes,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Builds a gateway; returns it with the warnings to log.
    pub fn build(
        loaded: &LoadedConfig,
        client: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let build = Router::from_config(loaded, client, clock)
            .map_err(|p| ConfigError::invalid(&loaded.path, p))?;
        let mut warnings = loaded.warnings.clone();
        warnings.extend(build.warnings);
        let router = build.router;
        let cfg = &loaded.config;

        let composites: BTreeMap<String, CompositeModel> = cfg
            .model_list
            .iter()
            .filter(|e| is_composite(e))
            .map(|e| {
                (
                    e.model_name.clone(),
                    CompositeModel {
                        target: e.litellm_params.model.clone(),
                    },
                )
            })
            .collect();

        let master_key = cfg
            .general_settings
            .master_key
            .clone()
            .filter(|k| !k.expose().is_empty())
            .or_else(|| {
                std::env::var("CONCLAVE_MASTER_KEY")
                    .ok()
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
            });
        let body_limit = cfg
            .general_settings
            .max_request_size_mb
            .map_or(DEFAULT_BODY_LIMIT, |mb| (mb * 1024.0 * 1024.0) as usize);

        let models_json = models_listing(&router, &composites);
        Ok((
            Self {
                router,
                master_key,
                body_limit,
                composites,
                models_json,
                config_path: loaded.path.clone(),
            },
            warnings,
        ))
    }

    /// Public model names: groups (not wildcards), aliases and composites.
    pub fn model_names(&self) -> Vec<String> {
        public_names(&self.router, &self.composites)
    }
}

fn public_names(router: &Router, composites: &BTreeMap<String, CompositeModel>) -> Vec<String> {
    let mut names: Vec<String> = router
        .groups()
        .iter()
        .map(|g| g.name.clone())
        .filter(|n| !n.ends_with('*'))
        .chain(router.aliases().keys().cloned())
        .chain(composites.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn models_listing(router: &Router, composites: &BTreeMap<String, CompositeModel>) -> Bytes {
    let created = unix_now();
    let data: Vec<_> = public_names(router, composites)
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "conclave"}))
        .collect();
    Bytes::from(serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default())
}
