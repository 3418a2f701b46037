//! The one content hash: SHA-256 as lowercase hex. It names compile cache
//! seals, strategy versions on the status page and watched-file contents.

use sha2::{Digest, Sha256};

/// The SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex, two digits each: a table lookup per digit, as
/// ids and cache keys are made on the request path.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` as lowercase hex: ids and `traceparent` headers
/// made on every request, where `format!`'s `{:x}` costs ten times as much.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    // Digits go to a buffer and are appended a chunk at a time: pushing
    // them one `char` at a time checked capacity and encoding per digit.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        write_hex(&mut buf, chunk);
        // Hex digits are ASCII, so this never fails.
        if let Ok(digits) = std::str::from_utf8(&buf[..chunk.len() * 2]) {
            out.push_str(digits);
        }
    }
}

/// Writes `bytes` as lowercase hex into the start of `out`, two digits
/// each, for text built in place (as far as `out` has room).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let long: Vec<u8> = (0..=255).collect();
        let digits = hex(&long);
        assert_eq!(digits.len(), 512);
        assert!(digits.starts_with("000102") && digits.ends_with("fdfeff"));
    }
}
