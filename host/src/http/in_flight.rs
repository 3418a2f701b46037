//! Bounds on what the gateway holds at once: requests served
//! (`global_max_parallel_requests`) and bytes of request bodies
//! (`max_request_bodies_mb`). A request past either is answered 503 with
//! `Retry-After` at once instead of queueing: memory stays bounded however
//! many clients connect and however large their bodies. Both are held until
//! the response body ends, so open streams count too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};

use super::error::ApiError;
use crate::byte_budget::{ByteBudget, HeldBytes};
use crate::limits::parallel::{InFlight as SlotCounter, LocalSlot};

/// Requests served at once when the config sets no limit.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 4096;
/// MiB of request bodies held at once when the config sets no limit.
pub const DEFAULT_MAX_BODIES_MB: f64 = 1024.0;

/// The shared slots, and the shared budget of body bytes. Both are plain
/// atomic counters: nothing ever waits for them, so taking and giving back
/// is one atomic operation, with no lock shared between request workers.
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<SlotCounter>,
    limit: u32,
    body_bytes: Arc<ByteBudget>,
    body_limit_mb: f64,
}

impl InFlight {
    /// At most `limit` requests and `bodies_mb` MiB of their bodies at once.
    pub fn new(limit: u32, bodies_mb: f64) -> Self {
        Self {
            slots: Arc::default(),
            limit,
            body_bytes: Arc::new(ByteBudget::of_mb(bodies_mb)),
            body_limit_mb: bodies_mb,
        }
    }

    /// Requests holding a slot now (for the in-flight gauge).
    pub fn in_use(&self) -> u32 {
        self.slots.current()
    }
}

/// What an admitted request holds until its answer's body ends: its slot
/// among the requests in flight, and the bytes of its body.
pub struct Hold {
    _slot: LocalSlot,
    _body_bytes: Option<Arc<HeldBytes>>,
}

impl Hold {
    /// `response` with a body that keeps this hold until it ends.
    pub fn attach(self, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        Response::from_parts(
            parts,
            Body::new(HoldingBody {
                inner: body,
                _hold: self,
            }),
        )
    }
}

/// A slot for one more request, or the refusal when the gateway serves its
/// limit already.
pub fn slot(in_flight: &InFlight) -> Result<LocalSlot, Busy> {
    in_flight.slots.try_acquire(in_flight.limit).ok_or(Busy {
        limit: in_flight.limit,
    })
}

/// Holds `slot` for the request, and counts its body as it arrives.
pub fn admit(in_flight: &InFlight, slot: LocalSlot, request: Request) -> (Request, Hold) {
    let (parts, body) = request.into_parts();
    // Bodies are counted as they arrive, and their bytes stay counted
    // until the response ends: the handler keeps what it read.
    let held = (!http_body::Body::is_end_stream(&body))
        .then(|| Arc::new(HeldBytes::of(in_flight.body_bytes.clone())));
    let body = match &held {
        Some(held) => Body::new(CountedBody {
            inner: body,
            limit_mb: in_flight.body_limit_mb,
            held: Arc::clone(held),
        }),
        None => body,
    };
    let hold = Hold {
        _slot: slot,
        _body_bytes: held,
    };
    (Request::from_parts(parts, body), hold)
}

/// A request past `global_max_parallel_requests`: answered 503 with
/// `Retry-After` at once.
pub struct Busy {
    limit: u32,
}

impl From<Busy> for ApiError {
    fn from(b: Busy) -> Self {
        busy(format!(
            "the gateway is serving its limit of {} requests at once \
             (general_settings.global_max_parallel_requests); retry shortly",
            b.limit
        ))
    }
}

/// The 503 `gateway_busy`, with `Retry-After`, of a request past one of
/// the gateway's bounds (requests or body bytes held at once).
#[cold]
pub fn busy(message: String) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable_error",
        message,
        None,
        Some("gateway_busy"),
    );
    e.retry_after = Some(Duration::from_secs(1));
    e
}

/// The error a request body ends with when the gateway already holds its
/// limit of body bytes; the body reader answers it with 503.
#[derive(Debug, thiserror::Error)]
#[error(
    "the gateway is holding its limit of {limit_mb} MiB of request bodies at once \
     (general_settings.max_request_bodies_mb); retry shortly"
)]
pub struct BodiesLimitReached {
    pub limit_mb: f64,
}

/// A request body that counts its bytes against the shared budget as they
/// arrive, and ends with [`BodiesLimitReached`] when they do not fit.
struct CountedBody {
    inner: Body,
    limit_mb: f64,
    held: Arc<HeldBytes>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !data.is_empty()
            && !self.held.add(data.len())
        {
            let limit_mb = self.limit_mb;
            return Poll::Ready(Some(Err(axum::Error::new(BodiesLimitReached { limit_mb }))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request's [`Hold`] until it is dropped.
struct HoldingBody {
    inner: Body,
    _hold: Hold,
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
