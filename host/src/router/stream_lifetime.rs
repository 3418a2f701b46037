//! The longest an upstream stream may last. Each of a stream's chunks is
//! timed on its own (`stream_timeout`), so an upstream that keeps sending,
//! slowly or without end, would otherwise hold the client, a call slot and
//! an upstream connection for ever. Counted from the call's start, the
//! stream ends with one timeout error once `general_settings.
//! max_stream_duration` has passed (an hour when unset: long enough for the
//! slowest model's longest answer). It is the request's own limit, not the
//! deployment's failure: neither retried, nor a fallback's cause, nor a
//! cooldown's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::time::Sleep;

use crate::config::GeneralSettings;
use crate::providers::{PayloadStream, UpstreamError, UpstreamReply};

/// `general_settings.max_stream_duration` when unset.
pub const DEFAULT_MAX_STREAM_DURATION: Duration = Duration::from_secs(3600);

/// The configured limit (checked at load: positive, at most a year).
pub(super) fn limit(settings: &GeneralSettings) -> Duration {
    settings
        .max_stream_duration
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_MAX_STREAM_DURATION)
}

/// A stream call's head (connecting, sending, the status), ended with
/// [`UpstreamError::StreamTooLong`] once `limit` has passed since `started`.
pub(super) async fn started_within<F>(
    head: F,
    started: Instant,
    limit: Duration,
) -> Result<UpstreamReply, UpstreamError>
where
    F: Future<Output = Result<UpstreamReply, UpstreamError>>,
{
    let Some(end) = tokio::time::Instant::from_std(started).checked_add(limit) else {
        return head.await;
    };
    tokio::time::timeout_at(end, head)
        .await
        .unwrap_or(Err(UpstreamError::StreamTooLong(limit)))
}

/// `chunks`, ended with [`UpstreamError::StreamTooLong`] once `limit` has
/// passed since `started`.
pub(super) fn bounded(chunks: PayloadStream, started: Instant, limit: Duration) -> PayloadStream {
    let Some(end) = tokio::time::Instant::from_std(started).checked_add(limit) else {
        return chunks;
    };
    Box::pin(Bounded {
        chunks,
        end: Box::pin(tokio::time::sleep_until(end)),
        limit,
        ended: false,
    })
}

struct Bounded {
    chunks: PayloadStream,
    end: Pin<Box<Sleep>>,
    limit: Duration,
    ended: bool,
}

impl Stream for Bounded {
    type Item = <PayloadStream as Stream>::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // The end first, and by the clock as well as by the timer: a
        // stream whose chunks are always ready never lets its task yield to
        // the timer driver, and must stop too.
        let end = self.end.deadline();
        if self.end.as_mut().poll(cx).is_ready() || tokio::time::Instant::now() >= end {
            self.ended = true;
            return Poll::Ready(Some(Err(UpstreamError::StreamTooLong(self.limit))));
        }
        let item = ready!(self.chunks.as_mut().poll_next(cx));
        self.ended = item.is_none();
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::{StreamExt, stream};

    #[tokio::test]
    async fn an_endless_stream_ends_with_one_error_at_the_limit() {
        // Always ready: the limit must be looked at before the next chunk.
        let endless = stream::repeat_with(|| Ok(Bytes::from_static(b"{}")));
        let started = Instant::now();
        let limit = Duration::from_millis(200);
        let mut chunks = bounded(Box::pin(endless), started, limit);
        let mut seen = 0u64;
        let last = loop {
            match chunks.next().await {
                Some(Ok(_)) => seen += 1,
                other => break other,
            }
        };
        assert!(
            matches!(last, Some(Err(UpstreamError::StreamTooLong(d))) if d == limit),
            "{last:?}"
        );
        assert!(seen > 0);
        let took = started.elapsed();
        assert!(took >= limit && took < Duration::from_secs(5), "{took:?}");
        assert!(chunks.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_that_ends_in_time_is_untouched() {
        let items = stream::iter([Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"b"))]);
        let chunks = bounded(Box::pin(items), Instant::now(), Duration::from_secs(5));
        let all: Vec<_> = chunks.collect().await;
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(Result::is_ok));
    }

    #[test]
    fn the_limit_defaults_to_an_hour() {
        let mut settings = GeneralSettings::default();
        assert_eq!(limit(&settings), DEFAULT_MAX_STREAM_DURATION);
        settings.max_stream_duration = Some(2.5);
        assert_eq!(limit(&settings), Duration::from_millis(2500));
    }
}
