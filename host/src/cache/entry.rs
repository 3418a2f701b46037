//! One cached answer: the whole OpenAI JSON body (a streamed answer is
//! assembled into one before it is stored), when it was stored, and whether
//! a composite profile wrote it. Stored in Redis as one value: a small
//! header, then the body, zstd-compressed past [`COMPRESS_ABOVE`] bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Bodies larger than this are compressed for Redis: answers are text and
/// shrink several times, which saves memory and network in Redis.
pub const COMPRESS_ABOVE: usize = 1024;
/// zstd level: fast (a lookup decompresses on the request path).
const ZSTD_LEVEL: i32 = 3;
/// Format tag of the encoded value.
const VERSION: u8 = 1;
const FLAG_COMPRESSED: u8 = 1;
const FLAG_COMPOSITE: u8 = 2;
const HEADER: usize = 1 + 1 + 8;

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The OpenAI JSON answer as it was sent (or assembled from a stream).
    pub body: Bytes,
    /// Milliseconds since the Unix epoch when it was stored.
    pub stored_at_ms: u64,
    /// A composite profile's answer (its reasoning is the run's trace).
    pub composite: bool,
}

impl Entry {
    /// An entry stored now.
    pub fn new(body: Bytes, composite: bool) -> Self {
        Self {
            body,
            stored_at_ms: now_ms(),
            composite,
        }
    }

    /// How long ago it was stored.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.stored_at_ms))
    }

    /// Bytes the entry takes in memory (the weigher's unit).
    pub fn weight(&self) -> usize {
        self.body.len() + std::mem::size_of::<Self>()
    }

    /// The value written to Redis.
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = if self.composite { FLAG_COMPOSITE } else { 0 };
        let compressed = (self.body.len() > COMPRESS_ABOVE)
            .then(|| zstd::bulk::compress(&self.body, ZSTD_LEVEL).ok())
            .flatten()
            .filter(|c| c.len() < self.body.len());
        if compressed.is_some() {
            flags |= FLAG_COMPRESSED;
        }
        let payload = compressed.as_deref().unwrap_or(&self.body);
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&self.stored_at_ms.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Reads a value written by [`Entry::encode`]; `None` for anything else
    /// (another version, a corrupt value), which then counts as a miss.
    /// A compressed body may not expand past `max_body` bytes.
    pub fn decode(value: &[u8], max_body: usize) -> Option<Self> {
        if value.len() < HEADER || value[0] != VERSION {
            return None;
        }
        let flags = value[1];
        let stored_at_ms = u64::from_le_bytes(value[2..HEADER].try_into().ok()?);
        let payload = &value[HEADER..];
        let body = if flags & FLAG_COMPRESSED != 0 {
            Bytes::from(zstd::bulk::decompress(payload, max_body).ok()?)
        } else {
            Bytes::copy_from_slice(payload)
        };
        Some(Self {
            body,
            stored_at_ms,
            composite: flags & FLAG_COMPOSITE != 0,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_entries_round_trip() {
        for body in [
            b"{\"a\":1}".to_vec(),
            "{\"content\":\""
                .bytes()
                .chain("word ".repeat(2000).bytes())
                .collect(),
        ] {
            let entry = Entry::new(Bytes::from(body.clone()), true);
            let encoded = entry.encode();
            if body.len() > COMPRESS_ABOVE {
                assert!(encoded.len() < body.len() / 4, "compressed");
            }
            assert_eq!(Entry::decode(&encoded, 1 << 20), Some(entry));
        }
    }

    #[test]
    fn foreign_or_oversized_values_are_misses() {
        assert_eq!(Entry::decode(b"hello", 1024), None);
        let big = Entry::new(Bytes::from("x".repeat(100_000)), false).encode();
        assert_eq!(Entry::decode(&big, 1000), None);
    }
}
