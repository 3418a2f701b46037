//! Standard error, with lines batched on the threads that ask for it. The
//! outcome dispatcher writes an access line for every request; written one
//! by one, each line is a `write(2)` of its own, which at thousands of
//! requests a second is a measurable share of the gateway's CPU. A thread
//! that calls [`batch_this_thread`] keeps its lines in a buffer until it
//! calls [`flush_this_thread`] (the dispatcher does after every drain) or
//! [`MAX_BATCH_BYTES`] of them wait, so they leave in one write. Every
//! other thread writes straight through, as before.

use std::cell::RefCell;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// A batch this large is written at once, so a burst never grows it further.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// This thread's unwritten lines, when it batches.
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Lines waiting to be written together.
struct Batch {
    lines: Vec<u8>,
}

impl Batch {
    /// Adds `line`, writing the batch to `out` once it reaches its bound.
    fn push(&mut self, line: &[u8], out: &mut impl Write) {
        self.lines.extend_from_slice(line);
        if self.lines.len() >= MAX_BATCH_BYTES {
            self.write_to(out);
        }
    }

    /// Writes the waiting lines to `out` and forgets them. A failed write
    /// loses them, as an unbatched one would: there is nowhere to log it.
    fn write_to(&mut self, out: &mut impl Write) {
        if !self.lines.is_empty() {
            let _ = out.write_all(&self.lines);
            self.lines.clear();
        }
    }
}

/// From now on, lines logged on this thread wait for [`flush_this_thread`].
pub fn batch_this_thread() {
    BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        if batch.is_none() {
            *batch = Some(Batch {
                lines: Vec::with_capacity(MAX_BATCH_BYTES),
            });
        }
    });
}

/// Writes this thread's waiting lines to standard error.
pub fn flush_this_thread() {
    BATCH.with(|batch| {
        if let Some(batch) = batch.borrow_mut().as_mut() {
            batch.write_to(&mut io::stderr().lock());
        }
    });
}

/// The log subscriber's writer: standard error, through the thread's batch
/// when it has one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let batched = BATCH.with(|batch| {
            // A line logged while the batch is borrowed (only a writer that
            // itself logs could) goes straight out.
            let Ok(mut batch) = batch.try_borrow_mut() else {
                return false;
            };
            let Some(batch) = batch.as_mut() else {
                return false;
            };
            batch.push(buf, &mut io::stderr().lock());
            true
        });
        if batched {
            Ok(())
        } else {
            io::stderr().write_all(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch { lines: Vec::new() }
    }

    #[test]
    fn lines_wait_in_the_batch_until_it_is_written() {
        let (mut b, mut out) = (batch(), Vec::new());
        b.push(b"one line\n", &mut out);
        b.push(b"another\n", &mut out);
        assert!(out.is_empty());
        b.write_to(&mut out);
        assert_eq!(out, b"one line\nanother\n");
        assert!(b.lines.is_empty());
    }

    #[test]
    fn a_batch_is_written_when_it_reaches_its_bound() {
        let (mut b, mut out) = (batch(), Vec::new());
        let line = [b'x'; 1000];
        for _ in 0..200 {
            b.push(&line, &mut out);
            assert!(b.lines.len() < MAX_BATCH_BYTES);
        }
        assert_eq!(out.len() + b.lines.len(), 200 * 1000);
        assert!(out.len() >= MAX_BATCH_BYTES);
    }

    #[test]
    fn only_a_thread_that_asks_batches() {
        let batching = |ask: bool| {
            std::thread::spawn(move || {
                if ask {
                    batch_this_thread();
                }
                BATCH.with(|b| b.borrow().is_some())
            })
            .join()
            .unwrap()
        };
        assert!(batching(true));
        assert!(!batching(false));
    }
}
