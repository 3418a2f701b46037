//! Interactive API docs: Swagger UI at `GET /` for the document at
//! `GET /openapi.json` ([`super::openapi`]); `GET /docs` redirects to `/`.
//! The Swagger UI files are embedded in the binary at build time from
//! utoipa-swagger-ui's vendored copy, so nothing is downloaded at build or
//! run time. The docs hold no secrets and are public, unless a master key
//! is configured and `general_settings.public_docs` is false.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use utoipa_swagger_ui::Config;

use super::AppState;
use super::auth::check_key;
use super::error::ApiError;
use super::route_rules::PublicRoute;
use super::routes::json_response;

/// The page at `/`: Swagger UI's own page with its files under
/// `swagger-ui/`, relative so a reverse proxy may mount the gateway under a
/// prefix.
const INDEX_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>conclave API</title>
    <link rel="stylesheet" type="text/css" href="swagger-ui/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="swagger-ui/index.css" />
    <link rel="icon" type="image/png" href="swagger-ui/favicon-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="swagger-ui/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="swagger-ui/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="swagger-ui/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"#;

/// Refuses the docs routes without the master key when the docs are not
/// public (a master key is set and `general_settings.public_docs: false`).
pub async fn require_docs_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let gateway = state.gateway();
    let listed = request.extensions().get::<PublicRoute>().is_some();
    if !gateway.public_docs
        && !listed
        && let Some(key) = &gateway.master_key
        && let Err(e) = check_key(request.headers(), key)
    {
        return e.into_response();
    }
    next.run(request).await
}

/// The OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document of every public route", body = super::openapi::JsonObject))
)]
pub async fn openapi_json() -> Response {
    json_response(super::openapi::document_json())
}

/// Swagger UI.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "swagger_ui",
    tag = "docs",
    responses((status = 200, description = "Swagger UI for /openapi.json", content_type = "text/html"))
)]
pub async fn index() -> Response {
    with_type(Body::from(INDEX_HTML), "text/html; charset=utf-8")
}

/// `GET /docs`: to Swagger UI.
pub async fn redirect() -> Redirect {
    Redirect::temporary("/")
}

/// One of Swagger UI's files, from the copy embedded in the binary.
pub async fn asset(Path(file): Path<String>) -> Response {
    static CONFIG: LazyLock<Arc<Config<'static>>> =
        LazyLock::new(|| Arc::new(Config::from("openapi.json")));
    match utoipa_swagger_ui::serve(&file, CONFIG.clone()) {
        Ok(Some(found)) => {
            let mut response = with_type(Body::from(found.bytes.into_owned()), "");
            if let Ok(value) = HeaderValue::from_str(&found.content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no Swagger UI file named {file}"),
            None,
            Some("unknown_url"),
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("cannot prepare Swagger UI's {file}: {e}"),
            None,
            None,
        )
        .into_response(),
    }
}

fn with_type(body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    if !content_type.is_empty() {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}
