//! A bound on requests served at once (`global_max_parallel_requests`). A
//! request past it is answered 503 with `Retry-After` at once instead of
//! queueing: memory stays bounded however many clients connect. The slot is
//! held until the response body ends, so open streams count too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Requests served at once when the config sets no limit.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 4096;

/// The shared slots.
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    limit: u32,
}

impl InFlight {
    /// At most `limit` requests at once.
    pub fn new(limit: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }

    /// Requests holding a slot now (for the in-flight gauge).
    pub fn in_use(&self) -> u32 {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(self.limit);
        self.limit.saturating_sub(free)
    }
}

/// Takes a slot for the request (and its body) or refuses it.
pub async fn limit(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let Ok(permit) = in_flight.slots.clone().try_acquire_owned() else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            format!(
                "the gateway is serving its limit of {} requests at once \
                 (general_settings.global_max_parallel_requests); retry shortly",
                in_flight.limit
            ),
            None,
            Some("gateway_busy"),
        );
        e.retry_after = Some(Duration::from_secs(1));
        return e.into_response();
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(HoldingBody {
            inner: body,
            _permit: permit,
        }),
    )
}

/// A response body that keeps its request's slot until it is dropped.
struct HoldingBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for HoldingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
