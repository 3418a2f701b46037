//! JSON text written by hand where serde's generic serializer costs more
//! than the text itself: object keys and short strings that almost never
//! need escaping (the field names of a body sent upstream, the values of an
//! access line). The output is byte for byte what serde_json writes.

/// Appends `text` as a JSON string. Text that needs no escape, nearly all of
/// it, is copied whole; anything else is escaped by serde_json.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    // A fold without an early exit, which the compiler vectorizes: the
    // texts are short, and nearly all of them need no escaping at all.
    let plain = !text.bytes().fold(false, |odd, b| {
        odd | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
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
    fn numbers_read_as_serde_json_writes_them() {
        for value in [0, 7, 200, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }
}
