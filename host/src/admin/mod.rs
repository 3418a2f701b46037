//! Runtime model registrations: deployments added through `POST /admin/models`
//! on top of the config file. They form an overlay that every gateway version
//! is built with (config, then overlay), so they survive config reloads; with
//! `serve --persist-admin-changes FILE` they are saved after each change and
//! loaded at start; with `general_settings.store_model_in_db` they are kept
//! in the key store instead, shared by every instance on that store. Also
//! the secret-free deployment listing of `/v1/model/info`.
//!
//! `registration` reads and checks one request body, `overlay` holds the
//! registrations and their persistence file, `stored` keeps them in the key
//! store, `model_info` lists every deployment without its secrets.

mod model_info;
mod overlay;
mod registration;
mod stored;

pub use model_info::{model_group_info_listing, model_info_listing};
pub use overlay::Overlay;
pub use registration::{FieldError, Registration};
pub use stored::{ModelFeed, NO_KEY_STORE, StoredModels, wanted as store_model_in_db};
