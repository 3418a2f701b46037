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
//!
//! The same timer carries `client_write_timeout` for HTTP/2. There a client
//! that stops reading does not stall the socket (the
//! [`super::write_timeout`] guard): it stops granting flow-control window,
//! and hyper stops pulling that answer's body while the connection stays
//! busy with pings and other streams. Each HTTP/2 answer notes when it last
//! handed hyper data that hyper has not come back for; one waiting
//! `client_write_timeout` closes the connection ([`Check::Stalled`]), as a
//! stalled socket does over HTTP/1. Otherwise such a client would hold its
//! request slots, upstream streams and buffers for as long as it likes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use http_body::{Frame, SizeHint};

use crate::http::client_ip::PeerIp;

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
    /// The HTTP/2 answers' [`Handed`] marks; dead ones are swept as it grows
    /// and at every check.
    handed: Mutex<Vec<Weak<Handed>>>,
}

/// The two timeouts the watchdog keeps.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `header_read_timeout`: how long a connection may be idle.
    pub idle: Duration,
    /// `client_write_timeout`: how long an HTTP/2 answer may wait for its
    /// client to take data.
    pub write: Duration,
}

/// When an HTTP/2 answer last handed hyper something (its head or a body
/// frame) that hyper has not come back for, in nanoseconds from the
/// connection's opening; [`NOT_WAITING`] while hyper pulls the body or the
/// body itself waits (for the upstream, say).
#[derive(Debug)]
struct Handed(AtomicU64);

const NOT_WAITING: u64 = u64::MAX;
/// How many marks the list may hold before dead ones are swept on the next
/// request; above `H2_MAX_CONCURRENT_STREAMS`, so a sweep frees most.
const HANDED_SWEEP_AT: usize = 256;

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
    /// An HTTP/2 answer has waited `client_write_timeout` for its client to
    /// take data: close the connection.
    Stalled,
}

impl Activity {
    /// A connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened_at: Instant::now(),
            open: AtomicU32::new(0),
            last_end_ns: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            handed: Mutex::new(Vec::new()),
        })
    }

    /// Whether the connection, seen at `now`, has been idle for the idle
    /// timeout or has an answer its client left waiting for the write one.
    pub fn check(&self, now: Instant, timeouts: Timeouts) -> Check {
        // An answer's end is written before its count is taken back, so a
        // count of zero read here comes with the latest end.
        if self.open.load(Ordering::Acquire) > 0 {
            if !self.http2.load(Ordering::Relaxed) {
                return Check::Again(now + timeouts.idle);
            }
            // An answer may start waiting for its client at any moment.
            let again = now + timeouts.idle.min(timeouts.write);
            return match self.oldest_handed() {
                Some(at) if now >= at + timeouts.write => Check::Stalled,
                Some(at) => Check::Again(again.min(at + timeouts.write)),
                None => Check::Again(again),
            };
        }
        let idle_since = self.since_open(self.last_end_ns.load(Ordering::Acquire));
        let deadline = idle_since + timeouts.idle;
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
        let handed = (version == Version::HTTP_2).then(|| {
            self.http2.store(true, Ordering::Relaxed);
            self.track_handed()
        });
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest {
            activity: Arc::clone(self),
            handed,
        }
    }

    /// A new HTTP/2 answer's mark, listed for [`Self::oldest_handed`].
    fn track_handed(&self) -> Arc<Handed> {
        let handed = Arc::new(Handed(AtomicU64::new(NOT_WAITING)));
        let mut list = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= HANDED_SWEEP_AT {
            list.retain(|mark| mark.strong_count() > 0);
        }
        list.push(Arc::downgrade(&handed));
        handed
    }

    /// Since when the longest-waiting HTTP/2 answer has waited for its
    /// client, sweeping the marks of answers that ended.
    fn oldest_handed(&self) -> Option<Instant> {
        let mut list = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut oldest = NOT_WAITING;
        list.retain(|mark| match mark.upgrade() {
            Some(handed) => {
                oldest = oldest.min(handed.0.load(Ordering::Relaxed));
                true
            }
            None => false,
        });
        (oldest != NOT_WAITING).then(|| self.since_open(oldest))
    }

    /// Nanoseconds from the connection's opening to now.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.opened_at.elapsed().as_nanos()).unwrap_or(NOT_WAITING - 1)
    }

    /// The instant `ns` nanoseconds after the connection opened.
    fn since_open(&self, ns: u64) -> Instant {
        self.opened_at + Duration::from_nanos(ns)
    }
}

/// One open request; dropping it ends the request.
#[derive(Debug)]
struct OpenRequest {
    activity: Arc<Activity>,
    /// Over HTTP/2: when its answer last waited for the client.
    handed: Option<Arc<Handed>>,
}

impl OpenRequest {
    /// Notes that hyper was handed something and has not yet come back.
    fn handed_now(&self) {
        if let Some(handed) = &self.handed {
            handed.0.store(self.activity.now_ns(), Ordering::Relaxed);
        }
    }

    /// Notes that hyper came back for more.
    fn pulled(&self) {
        if let Some(handed) = &self.handed {
            handed.0.store(NOT_WAITING, Ordering::Relaxed);
        }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity
            .last_end_ns
            .store(activity.now_ns(), Ordering::Relaxed);
        activity.open.fetch_sub(1, Ordering::Release);
    }
}

/// The connection's service: notes every request on the connection's
/// [`Activity`] and keeps it open until its answer's body is gone.
#[derive(Clone)]
pub struct Watched<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
    /// The connection's peer address, put on each request as a
    /// [`PeerIp`] when set.
    pub peer: Option<std::net::IpAddr>,
}

impl<S, B, R> hyper::service::Service<Request<B>> for Watched<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<OpenBody<R>>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        if let Some(ip) = self.peer {
            request.extensions_mut().insert(PeerIp(ip));
        }
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
        // The head is hyper's now; the body waits for hyper to pull it.
        open.iter().for_each(OpenRequest::handed_now);
        Poll::Ready(Ok(response.map(|inner| OpenBody { inner, open })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until it is dropped,
    /// and over HTTP/2 notes when it waits for hyper to pull it.
    pub struct OpenBody<B> {
        #[pin]
        inner: B,
        open: Option<OpenRequest>,
    }
}

impl<B: http_body::Body> http_body::Body for OpenBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(open) = this.open else {
            return this.inner.poll_frame(cx);
        };
        open.pulled();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) {
            open.handed_now();
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

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const TIMEOUTS: Timeouts = Timeouts {
        idle: TIMEOUT,
        write: Duration::from_secs(4),
    };

    #[test]
    fn a_connection_that_never_sends_a_head_closes_one_timeout_after_it_opened() {
        let activity = Activity::new();
        let opened = activity.opened_at;
        assert_eq!(
            activity.check(opened + Duration::from_secs(3), TIMEOUTS),
            Check::Again(opened + TIMEOUT)
        );
        assert_eq!(activity.check(opened + TIMEOUT, TIMEOUTS), Check::Close);
    }

    #[test]
    fn an_open_request_keeps_the_connection_and_its_end_starts_the_idle_time() {
        let activity = Activity::new();
        let open = activity.opened(Version::HTTP_11);
        let later = activity.opened_at + Duration::from_secs(25);
        assert_eq!(
            activity.check(later, TIMEOUTS),
            Check::Again(later + TIMEOUT)
        );
        drop(open);
        let ended =
            activity.opened_at + Duration::from_nanos(activity.last_end_ns.load(Ordering::Relaxed));
        assert_eq!(
            activity.check(ended + Duration::from_secs(1), TIMEOUTS),
            Check::Again(ended + TIMEOUT)
        );
        assert_eq!(activity.check(ended + TIMEOUT, TIMEOUTS), Check::Close);
    }

    #[test]
    fn an_idle_http2_connection_is_asked_to_go_away() {
        let activity = Activity::new();
        let open = activity.opened(Version::HTTP_2);
        let later = activity.opened_at + TIMEOUT * 5;
        assert_eq!(
            activity.check(later, TIMEOUTS),
            Check::Again(later + TIMEOUTS.write)
        );
        drop(open);
        let ended =
            activity.opened_at + Duration::from_nanos(activity.last_end_ns.load(Ordering::Relaxed));
        assert_eq!(activity.check(ended + TIMEOUT, TIMEOUTS), Check::GoAway);
    }

    #[test]
    fn an_http2_answer_its_client_leaves_waiting_closes_the_connection() {
        let activity = Activity::new();
        let open = activity.opened(Version::HTTP_2);
        let start = Instant::now();
        assert_eq!(
            activity.check(start, TIMEOUTS),
            Check::Again(start + TIMEOUTS.write),
            "an answer still being made waits for nobody"
        );
        open.handed_now();
        let handed = activity.oldest_handed().unwrap();
        assert_eq!(
            activity.check(handed + Duration::from_secs(1), TIMEOUTS),
            Check::Again(handed + TIMEOUTS.write)
        );
        assert_eq!(
            activity.check(handed + TIMEOUTS.write, TIMEOUTS),
            Check::Stalled
        );
        open.pulled();
        assert_eq!(
            activity.check(handed + TIMEOUTS.write, TIMEOUTS),
            Check::Again(handed + TIMEOUTS.write * 2),
            "hyper came back for more"
        );
    }

    #[test]
    fn ended_answers_leave_no_mark_behind() {
        let activity = Activity::new();
        for _ in 0..HANDED_SWEEP_AT * 3 {
            let open = activity.opened(Version::HTTP_2);
            open.handed_now();
        }
        assert!(activity.handed.lock().unwrap().len() <= HANDED_SWEEP_AT);
        assert_eq!(activity.oldest_handed(), None);
        assert!(activity.handed.lock().unwrap().is_empty());
    }
}
