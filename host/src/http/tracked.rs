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
/// Bytes of payloads kept beyond the last [`KEPT_PAYLOADS`]: no more than a
/// request log writes of an answer, so a stream of large chunks holds no
/// more memory for its log than the log keeps.
const KEPT_BYTES: usize = crate::observe::request_log::MAX_BODY_BYTES;

/// Wraps a payload stream; see the module docs.
pub struct Tracked<S> {
    inner: S,
    outcome: OutcomeHandle,
    last: Tail,
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
            last: Tail::new(crate::observe::stream_payloads_kept()),
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

    fn hand_over_payloads(&mut self) {
        let kept = self.last.take();
        self.outcome.update(|o| o.body = kept);
    }
}

/// The last payloads of a stream: at most `count` of them, and beyond the
/// last [`KEPT_PAYLOADS`] at most [`KEPT_BYTES`].
struct Tail {
    payloads: VecDeque<Bytes>,
    bytes: usize,
    count: usize,
}

impl Tail {
    fn new(count: usize) -> Self {
        Self {
            payloads: VecDeque::new(),
            bytes: 0,
            count: count.max(KEPT_PAYLOADS),
        }
    }

    fn push(&mut self, payload: Bytes) {
        self.bytes += payload.len();
        self.payloads.push_back(payload);
        while self.payloads.len() > KEPT_PAYLOADS
            && (self.payloads.len() > self.count || self.bytes > KEPT_BYTES)
        {
            if let Some(gone) = self.payloads.pop_front() {
                self.bytes -= gone.len();
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    fn take(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        self.payloads.drain(..).collect()
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
                self.last.push(payload.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_payloads_within_count_and_bytes() {
        let mut few = Tail::new(3);
        for i in 0..5u8 {
            few.push(Bytes::from(vec![i; 4]));
        }
        let kept = few.take();
        assert_eq!(kept.iter().map(|p| p[0]).collect::<Vec<_>>(), [2, 3, 4]);

        let big = Bytes::from(vec![0; KEPT_BYTES / 2 + 1]);
        let mut large = Tail::new(4096);
        for _ in 0..10 {
            large.push(big.clone());
        }
        assert_eq!(
            large.take().len(),
            KEPT_PAYLOADS,
            "past the byte bound, only the last two"
        );
        assert!(large.is_empty());
    }
}
