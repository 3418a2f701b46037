//! Metric handles found by their label values, without building a label
//! set. A family's `get_or_create` wants an owned label set (a `String` per
//! label) and hashes it with SipHash, family after family, for every
//! outcome; here an outcome whose series exist already hashes its borrowed
//! label values once and allocates nothing.

use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::HashMap;

/// Most label combinations remembered. Past it the memo starts over: the
/// families keep every series, so handles are found again, never lost.
const MAX_SERIES: usize = 4096;

/// Owned label values and the handles made for them.
type Entry<H> = (Box<[Box<str>]>, H);

/// Handles `H` (clones of family members, which share their values) by a
/// fixed list of label values.
pub struct SeriesMemo<H> {
    hasher: foldhash::fast::RandomState,
    /// By the hash of the label values; a bucket holds the rare collisions.
    entries: Mutex<HashMap<u64, Vec<Entry<H>>>>,
}

impl<H> Default for SeriesMemo<H> {
    fn default() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            entries: Mutex::default(),
        }
    }
}

impl<H: Default> SeriesMemo<H> {
    /// Runs `f` on the handles for `labels`, empty the first time.
    pub fn with<R>(&self, labels: &[&str], f: impl FnOnce(&mut H) -> R) -> R {
        let hash = self.hasher.hash_one(labels);
        let Ok(mut entries) = self.entries.lock() else {
            return f(&mut H::default());
        };
        if entries.len() >= MAX_SERIES && !entries.contains_key(&hash) {
            entries.clear();
        }
        let bucket = entries.entry(hash).or_default();
        let same = |(owned, _): &Entry<H>| owned.iter().map(|s| &**s).eq(labels.iter().copied());
        let index = match bucket.iter().position(same) {
            Some(i) => i,
            None => {
                bucket.push((labels.iter().map(|s| Box::from(*s)).collect(), H::default()));
                bucket.len() - 1
            }
        };
        f(&mut bucket[index].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_labels_find_the_same_handles_and_others_do_not() {
        let memo = SeriesMemo::<u32>::default();
        memo.with(&["chat", "openai"], |n| *n += 1);
        memo.with(&["chat", "openai"], |n| *n += 1);
        memo.with(&["chat", "anthropic"], |n| *n += 5);
        // Label boundaries count: "ab" + "c" is not "a" + "bc".
        memo.with(&["ab", "c"], |n| *n += 7);
        assert_eq!(memo.with(&["chat", "openai"], |n| *n), 2);
        assert_eq!(memo.with(&["chat", "anthropic"], |n| *n), 5);
        assert_eq!(memo.with(&["a", "bc"], |n| *n), 0);
        assert_eq!(memo.with(&["ab", "c"], |n| *n), 7);
    }

    #[test]
    fn past_its_bound_the_memo_starts_over() {
        let memo = SeriesMemo::<u32>::default();
        for i in 0..MAX_SERIES {
            memo.with(&[&i.to_string()], |n| *n = 1);
        }
        assert_eq!(memo.with(&["0"], |n| *n), 1);
        memo.with(&["one more"], |n| *n = 1);
        assert_eq!(memo.with(&["0"], |n| *n), 0, "the memo was cleared");
        let held = memo.entries.lock().unwrap().len();
        assert!(held <= 2, "{held} entries after starting over");
    }
}
