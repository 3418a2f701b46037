//! The connection watchdog behind `header_read_timeout`: one timer per
//! connection, rearmed only when it fires, instead of a timer armed and
//! disarmed in the runtime's shared timer wheel for every request head.
//!
//! A connection is *idle* while none of its requests has an answer still
//! open (a request is open from its head until its response body is
//! dropped, sent or abandoned). A connection idle for `header_read_timeout`
//! is closed: one that never sends a complete head, an HTTP/1 client whose
//! next head never completes, and an idle keep-alive connection alike. An
//! HTTP/2 connection with no stream open for as long is asked to end with a
//! GOAWAY ([`Check::GoAway`]): answering keep-alive pings does not keep an
//! idle one, and so a slot under `max_connections`, forever.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use http_body::{Frame, SizeHint};

/// What the watchdog reads of one connection; the service and the response
/// bodies write it.
#[derive(Debug)]
pub struct Activity {
    opened_at: Instant,
    /// Requests whose answers are still open.
    open: AtomicU32,
    /// When an answer last ended, in nanoseconds from `opened_at` (0: none
    /// has yet, so the connection has been idle since it opened).
    last_end_ns: AtomicU64,
    /// Whether a request came over HTTP/2.
    http2: AtomicBool,
}

/// What the watchdog does when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Idle for the whole timeout: close the connection.
    Close,
    /// Not idle long enough yet: look again at this instant.
    Again(Instant),
    /// An HTTP/2 connection idle for the whole timeout: end it gracefully
    /// (a client may be opening a stream as it is asked to go).
    GoAway,
}

impl Activity {
    /// A connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened_at: Instant::now(),
            open: AtomicU32::new(0),
            last_end_ns: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        })
    }

    /// Whether the connection, seen at `now`, has been idle for `timeout`.
    pub fn check(&self, now: Instant, timeout: Duration) -> Check {
        // An answer's end is written before its count is taken back, so a
        // count of zero read here comes with the latest end.
        if self.open.load(Ordering::Acquire) > 0 {
            return Check::Again(now + timeout);
        }
        let idle_since =
            self.opened_at + Duration::from_nanos(self.last_end_ns.load(Ordering::Acquire));
        let deadline = idle_since + timeout;
        if now < deadline {
            Check::Again(deadline)
        } else if self.http2.load(Ordering::Relaxed) {
            Check::GoAway
        } else {
            Check::Close
        }
    }

    /// Notes a request head; the request is open until the returned guard drops.
    fn opened(self: &Arc<Self>, version: Version) -> OpenRequest {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(Arc::clone(self))
    }
}

/// One open request; dropping it ends the request.
#[derive(Debug)]
struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let since_open = activity.opened_at.elapsed().as_nanos();
        activity.last_end_ns.store(
            u64::try_from(since_open).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        activity.open.fetch_sub(1, Ordering::Release);
    }
}

/// The connection's service: notes every request on the connection's
/// [`Activity`] and keeps it open until its answer's body is gone.
#[derive(Clone)]
pub struct Watched<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
}

impl<S, B, R> hyper::service::Service<Request<B>> for Watched<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<OpenBody<R>>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let open = self.activity.opened(request.version());
        Answering {
            inner: self.inner.call(request),
            open: Some(open),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered; its answer's body takes the request's
    /// [`OpenRequest`] on.
    pub struct Answering<F> {
        #[pin]
        inner: F,
        open: Option<OpenRequest>,
    }
}

impl<F, R, E> Future for Answering<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<OpenBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let open = this.open.take();
        Poll::Ready(Ok(response.map(|inner| OpenBody { inner, _open: open })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until it is dropped.
    pub struct OpenBody<B> {
        #[pin]
        inner: B,
        _open: Option<OpenRequest>,
    }
}

impl<B: http_body::Body> http_body::Body for OpenBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn a_connection_that_never_sends_a_head_closes_one_timeout_after_it_opened() {
        let activity = Activity::new();
        let opened = activity.opened_at;
        assert_eq!(
            activity.check(opened + Duration::from_secs(3), TIMEOUT),
            Check::Again(opened + TIMEOUT)
        );
        assert_eq!(activity.check(opened + TIMEOUT, TIMEOUT), Check::Close);
    }

    #[test]
    fn an_open_request_keeps_the_connection_and_its_end_starts_the_idle_time() {
        let activity = Activity::new();
        let open = activity.opened(Version::HTTP_11);
        let later = activity.opened_at + Duration::from_secs(25);
        assert_eq!(
            activity.check(later, TIMEOUT),
            Check::Again(later + TIMEOUT)
        );
        drop(open);
        let ended =
            activity.opened_at + Duration::from_nanos(activity.last_end_ns.load(Ordering::Relaxed));
        assert_eq!(
            activity.check(ended + Duration::from_secs(1), TIMEOUT),
            Check::Again(ended + TIMEOUT)
        );
        assert_eq!(activity.check(ended + TIMEOUT, TIMEOUT), Check::Close);
    }

    #[test]
    fn an_idle_http2_connection_is_asked_to_go_away() {
        let activity = Activity::new();
        let open = activity.opened(Version::HTTP_2);
        let later = activity.opened_at + TIMEOUT * 5;
        assert_eq!(
            activity.check(later, TIMEOUT),
            Check::Again(later + TIMEOUT)
        );
        drop(open);
        let ended =
            activity.opened_at + Duration::from_nanos(activity.last_end_ns.load(Ordering::Relaxed));
        assert_eq!(activity.check(ended + TIMEOUT, TIMEOUT), Check::GoAway);
    }
}
