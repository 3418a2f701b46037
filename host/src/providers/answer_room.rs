//! The memory upstream answers take while they are read, over every call at
//! once (`general_settings.max_response_bodies_mb`). One answer is bounded
//! by `max_response_size_mb` (and a stream's event by its own cap), but
//! many read at once would add up past the machine's memory: an upstream
//! sending endless bodies to a few dozen requests held gigabytes. Each
//! answer's first [`FREE_BYTES`] are not counted, so the usual small answer
//! costs no shared counter at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of each answer that are not counted against the room.
pub const FREE_BYTES: usize = 256 * 1024;

/// MiB of answers read at once when the config sets no limit.
pub const DEFAULT_MAX_ANSWERS_MB: f64 = 1024.0;

/// The room, shared by every call a router makes. A plain atomic count:
/// nothing waits for it.
#[derive(Debug)]
pub struct AnswerRoom {
    used: AtomicUsize,
    limit: usize,
}

impl AnswerRoom {
    /// Room for `mb` MiB of answers past their free bytes.
    pub fn new(mb: f64) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: (mb.clamp(1.0, 1024.0 * 1024.0) * 1024.0 * 1024.0) as usize,
        }
    }

    /// The most the room holds, in MiB, for errors to name.
    pub fn limit_mb(&self) -> usize {
        self.limit / (1024 * 1024)
    }
}

/// What one answer holds of the room, given back when dropped.
pub struct Held {
    room: Arc<AnswerRoom>,
    bytes: usize,
}

impl Held {
    /// Nothing held yet of `room`.
    pub fn of(room: Arc<AnswerRoom>) -> Self {
        Self { room, bytes: 0 }
    }

    /// Holds what an answer of `size` bytes so far takes past its free
    /// bytes; false, holding what it held, when the room cannot take it.
    pub fn resize(&mut self, size: usize) -> bool {
        let wanted = size.saturating_sub(FREE_BYTES);
        // Unchanged (a stream still within its free bytes, chunk after
        // chunk): the shared counter is left untouched.
        if wanted == self.bytes {
            return true;
        }
        if wanted < self.bytes {
            self.room
                .used
                .fetch_sub(self.bytes - wanted, Ordering::AcqRel);
            self.bytes = wanted;
            return true;
        }
        let more = wanted - self.bytes;
        let taken = self
            .room
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more)
                    .filter(|&after| after <= self.room.limit)
            })
            .is_ok();
        if taken {
            self.bytes = wanted;
        }
        taken
    }
}

impl Held {
    /// The room's size in MiB, for the error that names it.
    pub fn limit_mb(&self) -> usize {
        self.room.limit_mb()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.room.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_past_their_free_bytes_share_the_room_until_dropped() {
        let room = Arc::new(AnswerRoom::new(1.0));
        let mib = 1024 * 1024;
        let mut first = Held::of(room.clone());
        assert!(first.resize(FREE_BYTES), "free bytes are not counted");
        assert!(first.resize(FREE_BYTES + mib / 2));
        let mut second = Held::of(room.clone());
        assert!(!second.resize(FREE_BYTES + mib), "past the room");
        assert!(second.resize(FREE_BYTES + mib / 2), "what is left");
        drop(first);
        assert!(second.resize(FREE_BYTES + mib));
        assert!(second.resize(0));
        drop(second);
        assert_eq!(room.used.load(Ordering::Acquire), 0);
    }
}
