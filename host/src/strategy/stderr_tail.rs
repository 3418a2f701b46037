//! A guest's stderr, kept for crash messages: its last bytes only. A
//! strategy may print as much as it likes (authors are told to print to
//! stderr); older output is dropped as new output comes, so printing never
//! fails the run. wasmtime's `MemoryOutputPipe` traps once its capacity is
//! full, which crashed a strategy for logging 16 KiB.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The last `capacity` bytes written to it; clones share them.
#[derive(Clone)]
pub struct StderrTail {
    capacity: usize,
    kept: Arc<Mutex<VecDeque<u8>>>,
}

/// The most one write is offered: the guest writes more in several.
const WRITE_PERMIT: usize = 64 * 1024;

impl StderrTail {
    /// Keeps the last `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            kept: Arc::default(),
        }
    }

    /// What is kept, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        self.kept().iter().copied().collect()
    }

    fn kept(&self) -> MutexGuard<'_, VecDeque<u8>> {
        // A panic while holding it cannot leave the bytes inconsistent.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let mut kept = self.kept();
        kept.extend(tail);
        let excess = kept.len().saturating_sub(self.capacity);
        kept.drain(..excess);
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_bytes_are_kept_and_writing_never_fails() {
        let mut tail = StderrTail::new(8);
        for chunk in ["first line\n", "second\n", "end"] {
            OutputStream::write(&mut tail, Bytes::from(chunk)).unwrap();
        }
        assert_eq!(tail.contents(), b"cond\nend");
        OutputStream::write(&mut tail, Bytes::from(vec![b'x'; 100_000])).unwrap();
        assert_eq!(tail.contents(), vec![b'x'; 8]);
        assert_eq!(tail.check_write().unwrap(), WRITE_PERMIT);
    }
}
