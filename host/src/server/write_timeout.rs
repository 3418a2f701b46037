//! A connection whose client stops reading is closed: a write that makes no
//! progress for `client_write_timeout` fails, and hyper ends the
//! connection. Without it, a client that asks for a stream and never reads
//! it holds its request slot, its body bytes, the upstream connection and
//! the stream's buffers for as long as it likes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An IO stream whose writes fail after `limit` without progress.
pub struct WriteTimeout<T> {
    inner: T,
    limit: Duration,
    /// Armed while a write waits; `None` until the first write waits.
    stalled: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<T> WriteTimeout<T> {
    /// Wraps `inner`; its writes may wait at most `limit` for progress.
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
            waiting: false,
        }
    }

    /// Passes a write's result on: progress disarms the timer, a wait arms
    /// it (once per stall) and fails the write when it fires.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let deadline = Instant::now() + self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.waiting {
            timer.as_mut().reset(deadline);
            self.waiting = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for client_write_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_the_reader_never_takes_fails_after_the_limit() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut stream = WriteTimeout::new(near, Duration::from_millis(50));
        let started = std::time::Instant::now();
        let chunk = vec![0u8; 4096];
        let failed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Err(e) = stream.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .expect("the write failed within the test's limit");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A reader that keeps reading is never cut.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = WriteTimeout::new(near, Duration::from_millis(50));
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 1024];
            let mut total = 0;
            while total < 64 * 1024 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                total += far.read(&mut sink).await.unwrap();
            }
        });
        for _ in 0..16 {
            stream.write_all(&chunk).await.unwrap();
        }
        reader.await.unwrap();
    }
}
