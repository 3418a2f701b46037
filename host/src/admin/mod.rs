//! Runtime model registrations: deployments added through `POST /admin/models`
//! on top of the config file. They form an overlay that every gateway version
//! is built with (config, then overlay), so they survive config reloads; with
//! `serve --persist-admin-changes FILE` they are saved after each change and
//! loaded at start. Also the secret-free deployment listing of `/v1/model/info`.
//!
//! `registration` reads and checks one request body, `overlay` holds the
//! registrations and their persistence file, `model_info` lists every
//! deployment without its secrets.

mod model_info;
mod overlay;
mod registration;

pub use model_info::model_info_listing;
pub use overlay::Overlay;
pub use registration::{FieldError, Registration};
