//! One cached answer: the whole OpenAI JSON body (a streamed answer is
//! assembled into one before it is stored), when it was stored, and whether
//! a composite profile wrote it. Stored in Redis as one value: a small
//! header, then the body, zstd-compressed past [`COMPRESS_ABOVE`] bytes.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ops::Usage;

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
    /// What the body reports about itself, read at the first hit.
    reports: OnceLock<Reports>,
}

/// The usage and model an answer reports: every hit's outcome carries
/// them, so an entry kept in memory is read for them once, not per hit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    /// Whether the body is JSON (what the request log needs to know).
    pub json: bool,
    pub usage: Option<Usage>,
    pub model: Option<String>,
}

impl Entry {
    /// An entry stored now.
    pub fn new(body: Bytes, composite: bool) -> Self {
        Self {
            body,
            stored_at_ms: now_ms(),
            composite,
            reports: OnceLock::new(),
        }
    }

    /// The usage and model the body reports (read once per entry).
    pub fn reports(&self) -> &Reports {
        self.reports.get_or_init(|| {
            let reported = crate::ops::reported_in_body(&self.body);
            Reports {
                json: reported.is_some(),
                usage: reported.as_ref().and_then(|r| r.any_usage()),
                model: reported.and_then(|r| r.model).filter(|m| !m.is_empty()),
            }
        })
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
            reports: OnceLock::new(),
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
    fn an_entry_tells_the_usage_and_model_its_answer_reports() {
        let body = br#"{"model":"m-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let entry = Entry::new(Bytes::from_static(body), false);
        let reports = entry.reports();
        assert!(reports.json);
        assert_eq!(reports.model.as_deref(), Some("m-1"));
        let usage = reports.usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
        let odd = Entry::new(Bytes::from_static(b"not json"), false);
        assert_eq!(odd.reports(), &Reports::default());
    }

    #[test]
    fn foreign_or_oversized_values_are_misses() {
        assert_eq!(Entry::decode(b"hello", 1024), None);
        let big = Entry::new(Bytes::from("x".repeat(100_000)), false).encode();
        assert_eq!(Entry::decode(&big, 1000), None);
    }
}
