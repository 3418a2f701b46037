//! The memory upstream answers take while they are read, over every call at
//! once (`general_settings.max_response_bodies_mb`). One answer is bounded
//! by `max_response_size_mb` (and a stream's event by its own cap), but
//! many read at once would add up past the machine's memory: an upstream
//! sending endless bodies to a few dozen requests held gigabytes. Each
//! answer's first [`FREE_BYTES`] are not counted, so the usual small answer
//! costs no shared counter at all.

use std::sync::Arc;

use crate::byte_budget::{ByteBudget, HeldBytes};

/// Bytes of each answer that are not counted against the room.
pub const FREE_BYTES: usize = 256 * 1024;

/// MiB of answers read at once when the config sets no limit.
pub const DEFAULT_MAX_ANSWERS_MB: f64 = 1024.0;

/// The room, shared by every call a router makes.
pub type AnswerRoom = ByteBudget;

/// What one answer holds of the room, given back when dropped.
pub struct Held(HeldBytes);

impl Held {
    /// Nothing held yet of `room`.
    pub fn of(room: Arc<AnswerRoom>) -> Self {
        Self(HeldBytes::of(room))
    }

    /// Holds what an answer of `size` bytes so far takes past its free
    /// bytes; false, holding what it held, when the room cannot take it.
    pub fn resize(&mut self, size: usize) -> bool {
        self.0.resize(size.saturating_sub(FREE_BYTES))
    }

    /// The room's size in MiB, for the error that names it.
    pub fn limit_mb(&self) -> usize {
        self.0.budget().limit_mb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_past_their_free_bytes_share_the_room_until_dropped() {
        let room = Arc::new(AnswerRoom::of_mb(1.0));
        let mib = 1024 * 1024;
        let mut first = Held::of(room.clone());
        assert!(first.resize(FREE_BYTES), "free bytes are not counted");
        assert_eq!(room.in_use(), 0);
        assert!(first.resize(FREE_BYTES + mib / 2));
        let mut second = Held::of(room.clone());
        assert!(!second.resize(FREE_BYTES + mib), "past the room");
        assert!(second.resize(FREE_BYTES + mib / 2), "what is left");
        drop(first);
        assert!(second.resize(FREE_BYTES + mib));
        assert!(second.resize(0));
        drop(second);
        assert_eq!(room.in_use(), 0);
    }
}
