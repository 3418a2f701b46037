//! The admin API: `/admin/status`, `/admin/reload` and runtime models under
//! `/admin/models`. It needs the master key or the virtual key of a user
//! whose `user_role` is `proxy_admin`; without a master key it is disabled
//! unless the server listens on loopback only.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::auth::check_key;
use super::error::ApiError;
use crate::admin::Registration;
use crate::reload::{AdminError, Control};

/// Longest model id the `/model/*` routes and `/model/info` take:
/// `runtime:` and a model name of at most 256 bytes (or a deployment id of
/// at most 256), with room to spare; a longer one names nothing and would
/// only be repeated in the error.
const MAX_MODEL_ID_BYTES: usize = 512;

/// Why the admin API refuses a request before looking at it, if it does:
/// with a master key, the key must be presented; without one, the API is
/// off unless the config opts in to keyless access on a server listening on
/// loopback only (`admin_without_key_on_loopback`), and then a web page of
/// another site may still not use it ([`super::keyless`]).
pub(super) fn admission(
    master_key: Option<&crate::config::Secret>,
    keyless_on_loopback: bool,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    match master_key {
        Some(key) => check_key(headers, key),
        None if keyless_on_loopback => {
            super::keyless::page_refusal(headers, true).map_or(Ok(()), Err)
        }
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "the admin API is disabled: no master key is configured (set general_settings.master_key \
             or CONCLAVE_MASTER_KEY); on a server listening on loopback only, \
             general_settings.admin_without_key_on_loopback: true opens it without a key",
            None,
            Some("admin_disabled"),
        )),
    }
}

pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let gateway = state.gateway();
    let refused = match admission(
        gateway.master_key.as_ref(),
        state.loopback_only && gateway.admin_without_key_on_loopback,
        request.headers(),
    ) {
        Ok(()) => None,
        Err(e) => unless_admin_key(&state, request.headers(), e).await,
    };
    match refused {
        Some(e) => super::routes::closing_if_body_unread(&request, e.into_response()),
        None => next.run(request).await,
    }
}

/// `refused`, a master-key check's refusal, unless the key presented is an
/// admin user's virtual key (then `None`, the caller is admitted); a valid
/// key of anyone else is refused with 403. Only a 401 can be turned so.
pub(super) async fn unless_admin_key(
    state: &AppState,
    headers: &HeaderMap,
    refused: ApiError,
) -> Option<ApiError> {
    if refused.status == StatusCode::UNAUTHORIZED && state.ops.keys.is_some() {
        return super::management::require_admin_key(state, headers)
            .await
            .err();
    }
    Some(refused)
}

fn control(state: &AppState) -> Result<&std::sync::Arc<Control>, ApiError> {
    Ok(&state.control)
}

#[utoipa::path(
    get,
    path = "/admin/status",
    operation_id = "admin_status",
    tag = "admin",
    summary = "The loaded version, reloads and runtime models",
    responses(
        (status = 200, description = "The status report", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(control(&state)?.status_json()).into_response())
}

#[utoipa::path(
    post,
    path = "/admin/reload",
    operation_id = "admin_reload",
    tag = "admin",
    summary = "Reload the config now",
    responses(
        (status = 200, description = "The new version serves", body = super::openapi::JsonObject),
        (status = 422, description = "The config was refused; the previous version keeps serving", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let outcome = control(&state)?.reload("admin").await;
    if outcome.ok {
        Ok(Json(outcome.to_json()).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            format!(
                "reload failed; the previous version keeps serving: {}",
                outcome.message
            ),
            None,
            Some("reload_failed"),
        ))
    }
}

#[utoipa::path(
    get,
    path = "/admin/models",
    operation_id = "admin_list_models",
    tag = "admin",
    summary = "Runtime model registrations",
    responses(
        (status = 200, description = "The registrations", body = super::openapi::JsonObject),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data = control(&state)?.registrations();
    Ok(Json(json!({"data": data})).into_response())
}

#[utoipa::path(
    post,
    path = "/admin/models",
    operation_id = "admin_register_model",
    tag = "admin",
    summary = "Register (or replace) a runtime model deployment",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Replaced an existing registration (201 when new)", body = super::openapi::JsonObject),
        (status = 201, description = "Registered", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid registration", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn register_model(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let body = read_json(&state, request).await?;
    let registration = Registration::from_json(&body)
        .map_err(|e| ApiError::invalid(e.message, e.param.as_deref()))?;
    let replaced = control
        .register(registration.clone())
        .await
        .map_err(|e| id_taken(e, "id", "in the config file"))?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = Json(json!({
        "model_name": registration.model_name,
        "model_id": registration.deployment_id(),
        "replaced": replaced,
        "registration": registration.to_json(false),
    }))
    .into_response();
    *response.status_mut() = status;
    Ok(response)
}

/// An admin request's JSON body.
async fn read_json(state: &AppState, request: Request) -> Result<Value, ApiError> {
    // The limit every request body has (`max_request_size_mb`), which the
    // error names; admin bodies are small, and the limit bounds them.
    let gateway = state.gateway();
    let bytes = super::routes::read_body(request, gateway.body_limit, gateway.body_timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            format!(
                "the body is not valid JSON: {}",
                crate::openai::describe_json_error(&e)
            ),
            None,
        )
    })
}

#[utoipa::path(
    post,
    path = "/model/new",
    operation_id = "model_new",
    tag = "admin",
    summary = "Register a runtime model, in LiteLLM's shape",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Registered: one more deployment of its group", body = super::openapi::JsonObject),
        (status = 400, description = "Invalid registration, or a field a runtime registration cannot honour", body = super::openapi::ErrorResponse),
        (status = 409, description = "A deployment with the model_info.id given exists", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /model/new` with LiteLLM's `{"model_name", "litellm_params":
/// {...}, "model_info": {"id"}}`: one more deployment of the group, beside
/// the config's and earlier ones (an id is made when none is given),
/// answered with LiteLLM's `model_id`, `model_name`, `litellm_params`
/// (without the key) and `model_info`.
pub async fn model_new(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let body = read_json(&state, request).await?;
    let registration = Registration::from_litellm(&body)
        .map_err(|e| ApiError::invalid(e.message, e.param.as_deref()))?;
    control.add(registration.clone()).await.map_err(|e| {
        id_taken(
            e,
            "model_info.id",
            "a runtime one changes through /model/update",
        )
    })?;
    Ok(Json(litellm_model(&registration)).into_response())
}

/// An admin error as the API answers it; a deployment id in use is named
/// by the field that gave it (`param`), with `hint`.
fn id_taken(error: AdminError, param: &str, hint: &str) -> ApiError {
    let AdminError::IdTaken(id) = error else {
        return error.into();
    };
    let mut e = ApiError::from(AdminError::IdTaken(id.clone()));
    e.body.error.message = format!("a deployment with id {id:?} exists already ({hint})");
    e.body.error.param = Some(param.into());
    e
}

/// A runtime model as LiteLLM's `/model/*` routes answer it (without its key).
fn litellm_model(registration: &Registration) -> Value {
    let model_id = registration.deployment_id();
    json!({
        "model_id": model_id,
        "model_name": registration.model_name,
        "litellm_params": registration.litellm_params(),
        "model_info": {"id": model_id, "db_model": true},
    })
}

#[utoipa::path(
    post,
    path = "/model/update",
    operation_id = "model_update",
    tag = "admin",
    summary = "Change a runtime model, in LiteLLM's shape",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Updated", body = super::openapi::JsonObject),
        (status = 400, description = "No id given, or an invalid field", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such runtime model", body = super::openapi::ErrorResponse),
        (status = 409, description = "The new model_name is another runtime model's, or the config file owns this model", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /model/update` with LiteLLM's `{"model_info": {"id"}, "model_name",
/// "litellm_params": {...}}`: the runtime model with that id (the
/// `model_id` `/model/new` answered, or its name) keeps what the body does
/// not give, takes what it does, and is renamed by a new `model_name`.
pub async fn model_update(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let body = read_json(&state, request).await?;
    let (given, param) =
        update_target(&body).map_or((None, "model_info.id"), |(v, param)| (Some(v), param));
    let id = model_id(given, param)?;
    update_runtime_model(&state, control, id, param, &body).await
}

/// What a `POST /model/update` body names its runtime model by, and the
/// field that gave it: `model_info.id`, else `id`, else (without an id)
/// `model_name`, which names the one runtime deployment of that name. The
/// audit log reads the body the same way.
pub(crate) fn update_target(body: &Value) -> Option<(&Value, &'static str)> {
    UPDATE_ID_FIELDS
        .into_iter()
        .chain([("/model_name", "model_name")])
        .find_map(|(pointer, param)| given_field(body, pointer).map(|v| (v, param)))
}

/// The fields an update body may name its runtime model's id in, first
/// wins: a JSON pointer and the field's name for errors.
const UPDATE_ID_FIELDS: [(&str, &str); 2] = [("/model_info/id", "model_info.id"), ("/id", "id")];

/// The value at `pointer` in `body`, unless absent or null.
fn given_field<'a>(body: &'a Value, pointer: &str) -> Option<&'a Value> {
    body.pointer(pointer).filter(|v| !v.is_null())
}

#[utoipa::path(
    patch,
    path = "/model/{model_id}/update",
    operation_id = "model_patch",
    tag = "admin",
    summary = "Change a runtime model named in the path, in LiteLLM's shape",
    params(("model_id" = String, Path, description = "The runtime model's id (or its name)")),
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Updated", body = super::openapi::JsonObject),
        (status = 400, description = "The body names another id, or an invalid field", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such runtime model", body = super::openapi::ErrorResponse),
        (status = 409, description = "The new model_name is another runtime model's, or the config file owns this model", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `PATCH /model/{model_id}/update`, LiteLLM's other update route: as
/// `POST /model/update`, the id taken from the path. A body that names
/// another id is refused rather than one of the two being picked.
pub async fn model_patch(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let body = read_json(&state, request).await?;
    for (pointer, param) in UPDATE_ID_FIELDS {
        if let Some(given) = given_field(&body, pointer)
            && given.as_str() != Some(model_id.as_str())
        {
            return Err(ApiError::invalid(
                format!("`{param}` names another model than the path's {model_id:?}"),
                Some(param),
            ));
        }
    }
    update_runtime_model(&state, control, &model_id, "model_id", &body).await
}

/// The runtime model `id` (given in `param`) changed by a LiteLLM update
/// `body`, and the answer naming it.
async fn update_runtime_model(
    state: &AppState,
    control: &Control,
    id: &str,
    param: &str,
    body: &Value,
) -> Result<Response, ApiError> {
    let current = one_registration(control, id).map_err(|mut e| {
        e.body.error.param = Some(param.into());
        e
    })?;
    let updated = current
        .updated_by_litellm(body)
        .map_err(|e| ApiError::invalid(e.message, e.param.as_deref()))?;
    let renamed = updated.model_name != current.model_name;
    // As for `/model/new`: that name runs its profile, never a deployment.
    if renamed
        && state
            .gateway()
            .strategies
            .profile_for(&updated.model_name)
            .is_some()
    {
        return Err(AdminError::Conflict(format!(
            "model {:?} is a composite model: a deployment under its name would never be called",
            updated.model_name
        ))
        .into());
    }
    // A registration made by name is kept under its name: renaming it
    // makes a new one and deletes the old. A deployment keeps its id.
    if renamed && current.replaces_its_group() {
        if control
            .registrations_named(&updated.model_name)
            .iter()
            .any(Registration::replaces_its_group)
        {
            return Err(AdminError::Conflict(format!(
                "a runtime model named {:?} exists already; delete it first",
                updated.model_name
            ))
            .into());
        }
        control.register(updated.clone()).await?;
        control
            .unregister_deployment(&current.deployment_id())
            .await?;
    } else {
        control.register(updated.clone()).await?;
    }
    Ok(Json(litellm_model(&updated)).into_response())
}

/// The one runtime registration `id` names (a deployment id, a model name
/// or `runtime:<model_name>`): 404 when none, 409 when a name serves
/// several deployments.
fn one_registration(control: &Control, id: &str) -> Result<Registration, ApiError> {
    let mut found = control.registrations_named(id);
    match found.len() {
        0 => Err(AdminError::NotFound(format!(
            "no runtime model with id {id:?} (models from the config file change there)"
        ))
        .into()),
        1 => Ok(found.remove(0)),
        n => Err(AdminError::Conflict(format!(
            "{id:?} names {n} runtime deployments; give one's model_id"
        ))
        .into()),
    }
}

/// The model id a `/model/*` body gives in `param` (trimmed): the
/// `model_id` `/model/new` answered, or a model name. 400 naming `param`
/// when it is missing, blank, not a string or longer than any id.
fn model_id<'a>(value: Option<&'a Value>, param: &str) -> Result<&'a str, ApiError> {
    let id = match value {
        Some(Value::String(id)) if !id.trim().is_empty() => id.trim(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                format!("{param} is required: the model_id /model/new answered"),
                Some(param),
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{param} must be a string"),
                Some(param),
            ));
        }
    };
    bounded_model_id(id, param)
}

/// `id` when it is no longer than any model id; else 400 naming `param`
/// (without repeating the id).
pub(super) fn bounded_model_id<'a>(id: &'a str, param: &str) -> Result<&'a str, ApiError> {
    if id.len() > MAX_MODEL_ID_BYTES {
        return Err(ApiError::invalid(
            format!(
                "{param} is {} bytes long; a model id is at most {MAX_MODEL_ID_BYTES}",
                id.len()
            ),
            Some(param),
        ));
    }
    Ok(id)
}

#[utoipa::path(
    post,
    path = "/model/delete",
    operation_id = "model_delete",
    tag = "admin",
    summary = "Delete a runtime model, in LiteLLM's shape",
    request_body = super::openapi::JsonObject,
    responses(
        (status = 200, description = "Deleted", body = super::openapi::JsonObject),
        (status = 400, description = "No id given", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such runtime model", body = super::openapi::ErrorResponse),
        (status = 409, description = "The config file owns this model", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /model/delete` with `{"id"}`: the `model_id` `/model/new`
/// answered (that deployment goes), or a model name or
/// `runtime:<model_name>` (its runtime deployments go).
pub async fn model_delete(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let control = control(&state)?;
    let body = read_json(&state, request).await?;
    let id = model_id(body.get("id"), "id")?;
    // A deployment id (as `/model/new` or `/admin/models` answered it)
    // deletes that deployment. Otherwise the id names a model, whose
    // runtime deployments all go: a model whose own name is the id first,
    // else the one `runtime:<model_name>` names.
    let deleted = match control.unregister_deployment(id).await {
        Ok(true) => Ok(()),
        Ok(false) => match (control.unregister(id).await, id.strip_prefix("runtime:")) {
            (Err(AdminError::NotFound(_)), Some(model_name)) => {
                control.unregister(model_name).await
            }
            (result, _) => result,
        },
        Err(e) => Err(e),
    };
    // The body named the model by `id`, so its errors do too.
    deleted.map_err(|e| {
        let mut e = ApiError::from(e);
        if e.body.error.param.is_some() {
            e.body.error.param = Some("id".into());
        }
        e
    })?;
    Ok(Json(json!({"message": format!("Model: {id} deleted successfully")})).into_response())
}

#[utoipa::path(
    delete,
    path = "/admin/models/{model_name}",
    operation_id = "admin_delete_model",
    tag = "admin",
    summary = "Delete a runtime model registration",
    params(("model_name" = String, Path, description = "The model name; may contain slashes")),
    responses(
        (status = 200, description = "Deleted", body = super::openapi::JsonObject),
        (status = 404, description = "No such runtime model", body = super::openapi::ErrorResponse),
        (status = 409, description = "The config file owns this model", body = super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong master key", body = super::openapi::ErrorResponse),
        (status = 403, description = "The admin API is off: no master key is configured", body = super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
pub async fn delete_model(
    State(state): State<AppState>,
    Path(model_name): Path<String>,
) -> Result<Response, ApiError> {
    control(&state)?.unregister(&model_name).await?;
    Ok(Json(json!({"deleted": model_name})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn without_a_master_key_only_loopback_admits() {
        let none = http::HeaderMap::new();
        assert!(admission(None, true, &none).is_ok());
        let refused = admission(None, false, &none).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.body.error.message.contains("master key"));
    }

    #[test]
    fn keyless_admin_refuses_a_foreign_page() {
        let mut page = http::HeaderMap::new();
        page.insert("host", "127.0.0.1:4000".parse().unwrap());
        page.insert("origin", "https://evil.example".parse().unwrap());
        let refused = admission(None, true, &page).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn with_a_master_key_it_is_required_even_on_loopback() {
        let key = Secret::new("sk-admin");
        let none = http::HeaderMap::new();
        assert_eq!(
            admission(Some(&key), true, &none).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let mut good = http::HeaderMap::new();
        good.insert("authorization", "Bearer sk-admin".parse().unwrap());
        assert!(admission(Some(&key), false, &good).is_ok());
        let mut bad = http::HeaderMap::new();
        bad.insert("authorization", "Bearer sk-nope".parse().unwrap());
        assert!(admission(Some(&key), true, &bad).is_err());
    }
}
