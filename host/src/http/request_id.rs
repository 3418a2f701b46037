//! Every request gets an id before anything else happens: the client's
//! `x-request-id` when it is a safe token, else a new one. It names the
//! request in logs, outcomes and the `x-conclave-request-id` answer header,
//! and is echoed where the official clients read a request id: `x-request-id`
//! (OpenAI's SDKs) and, on the Messages API, `request-id` (Anthropic's).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};

use crate::ops::RequestId;

const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-conclave-request-id");
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// Most headers [`assign`] adds to an answer, so that handlers can size
/// the answer's header map for them.
pub const ECHOED_HEADERS: usize = 3;

/// Assigns the request id and echoes it on the answer, after rewriting a
/// plain-text error answer in the JSON error shape.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let proposed = request
        .headers()
        .get(CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let id = RequestId::from_client(proposed);
    let header = HeaderValue::from_str(id.as_str()).ok();
    let anthropic = request.uri().path().contains("/messages");
    request.extensions_mut().insert(id);
    let mut response = super::routes::plain_errors_as_json(next.run(request).await).await;
    if let Some(value) = header {
        let headers = response.headers_mut();
        if anthropic {
            headers.insert(ANTHROPIC_REQUEST_ID, value.clone());
        }
        headers.insert(CLIENT_REQUEST_ID, value.clone());
        headers.insert(REQUEST_ID, value);
    }
    response
}
