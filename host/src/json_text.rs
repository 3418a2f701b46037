//! JSON text written by hand where serde's generic serializer costs more
//! than the text itself: object keys and short strings that almost never
//! need escaping (the field names of a body sent upstream, the values of an
//! access line). The output is byte for byte what serde_json writes.

/// Appends `text` as a JSON string. Text that needs no escape, nearly all of
/// it, is copied whole; anything else is escaped by serde_json.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Whether `text` holds a byte a JSON string must escape: a control
/// character, a quote or a backslash. Checked eight bytes at a time: the
/// texts are names and ids of a few dozen bytes, shorter than what the
/// compiler's vectorized loops take to set up.
fn needs_escape(text: &[u8]) -> bool {
    let Some(last) = text.len().checked_sub(8) else {
        return text.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    };
    let mut chunks = text.chunks_exact(8);
    let mut found = false;
    for chunk in &mut chunks {
        found |= word_needs_escape(word_of(chunk));
    }
    if !chunks.remainder().is_empty() {
        // The last eight bytes, overlapping the last whole chunk.
        found |= word_needs_escape(word_of(&text[last..]));
    }
    found
}

/// Eight bytes as one word (`chunk` is eight bytes long).
fn word_of(chunk: &[u8]) -> u64 {
    <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes)
}

/// Whether one of the eight bytes of `word` is below 0x20, `"` or `\`.
/// `x - 0x01… & !x & 0x80…` has a high bit set exactly when some byte of `x`
/// is zero (and `x - n… & !x & 0x80…` when some byte is below `n`, for
/// `n <= 0x80`): a byte at or above `n` never borrows from the next.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    (control | quote | backslash) & HIGH != 0
}

/// Appends an unsigned integer as JSON writes it.
pub fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_read_as_serde_json_writes_them() {
        for text in [
            "",
            "plain",
            "a \"q\" \\ b",
            "tab\there",
            "\u{1}",
            "café ~\u{7f}",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_wherever_it_is() {
        let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in 1..=17 {
            for at in 0..len {
                for filler in [b'a', 0xC3, 0x7F, 0x20] {
                    for b in 0..=u8::MAX {
                        let mut text = vec![filler; len];
                        text[at] = b;
                        assert_eq!(needs_escape(&text), needs(b), "{text:?}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn numbers_read_as_serde_json_writes_them() {
        for value in [0, 7, 200, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }
}
