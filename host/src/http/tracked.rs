//! A streamed answer that reports its outcome when it ends: cleanly (status
//! 200), with an error event (that error's status), or because the client
//! went away (the outcome's default, 499). It also holds whatever must live
//! exactly as long as the stream: the admission guards and, for a composite,
//! the running strategy task. When shutdown's grace period for streams is
//! over ([`StreamCutoff`]), it ends the stream with one 503 error event
//! (`server_shutting_down`) and records that status.

use std::any::Any;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::StatusCode;

use super::error::ApiError;
use super::stream_cutoff::{CutoffWatch, StreamCutoff};
use crate::ops::OutcomeHandle;

/// Payloads kept for reading usage: a stream's usage is in its last chunk or
/// the one before it (the finish chunk, then the usage chunk). Request logs
/// raise it ([`crate::observe::stream_payloads_kept`]) to log the answer.
const KEPT_PAYLOADS: usize = 2;

/// Wraps a payload stream; see the module docs.
pub struct Tracked<S> {
    inner: S,
    outcome: OutcomeHandle,
    last: VecDeque<Bytes>,
    keep: usize,
    seen_first: bool,
    cutoff: CutoffWatch,
    /// Ended by the cutoff: the shutdown error was the last item.
    cut: bool,
    _held: Box<dyn Any + Send>,
}

impl<S> Tracked<S> {
    /// Tracks `inner`, holding `held` until the stream is dropped, and ends
    /// it early when `cutoff` fires.
    pub fn new(
        inner: S,
        outcome: OutcomeHandle,
        held: Box<dyn Any + Send>,
        cutoff: &StreamCutoff,
    ) -> Self {
        Self {
            inner,
            outcome,
            last: VecDeque::new(),
            keep: crate::observe::stream_payloads_kept().max(KEPT_PAYLOADS),
            seen_first: false,
            cutoff: cutoff.watch(),
            cut: false,
            _held: held,
        }
    }

    /// The item that ends a stream the cutoff reached; records its status.
    fn cut_off(&mut self) -> ApiError {
        self.cut = true;
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            "the server is shutting down; retry the request",
            None,
            Some("server_shutting_down"),
        );
        self.hand_over_payloads();
        self.outcome
            .finish(error.status.as_u16(), Some(error.code_or_type()));
        error
    }

    fn keep(&mut self, payload: &Bytes) {
        if self.last.len() >= self.keep {
            self.last.pop_front();
        }
        self.last.push_back(payload.clone());
    }

    fn hand_over_payloads(&mut self) {
        let kept: Vec<Bytes> = self.last.drain(..).collect();
        self.outcome.update(|o| o.body = kept);
    }
}

/// A stream the client left keeps, on its outcome, the payloads it had
/// already sent: a request log then shows what the client received.
impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        if !self.last.is_empty() {
            self.hand_over_payloads();
        }
    }
}

impl<S> Stream for Tracked<S>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.cut {
            return Poll::Ready(None);
        }
        if self.cutoff.is_fired() {
            return Poll::Ready(Some(Err(self.cut_off())));
        }
        let item = Pin::new(&mut self.inner).poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(payload))) => {
                if !self.seen_first {
                    self.seen_first = true;
                    self.outcome.first_token();
                }
                let payload = payload.clone();
                self.keep(&payload);
            }
            Poll::Ready(Some(Err(error))) => {
                self.hand_over_payloads();
                self.outcome
                    .finish(error.status.as_u16(), Some(error.code_or_type()));
            }
            Poll::Ready(None) => {
                self.hand_over_payloads();
                self.outcome.finish(200, None);
            }
            // Waiting for the next payload: the cutoff must be able to wake it.
            Poll::Pending => {
                if self.cutoff.poll_fired(cx) {
                    return Poll::Ready(Some(Err(self.cut_off())));
                }
            }
        }
        item
    }
}
