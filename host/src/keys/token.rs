//! Virtual key values: how they are made, hashed and shown. A key is `sk-`
//! and 43 base62 characters drawn from the operating system's CSPRNG
//! (256 bits); only its SHA-256 is ever stored.

use crate::digest::sha256_hex;

use super::KeyError;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 characters in a new key: 43 of them carry 256 bits.
const KEY_CHARS: usize = 43;

/// A new random key, `sk-` + 43 base62 characters.
pub fn generate() -> Result<String, KeyError> {
    let mut out = String::with_capacity(3 + KEY_CHARS);
    out.push_str("sk-");
    let mut buf = [0u8; 64];
    while out.len() < 3 + KEY_CHARS {
        getrandom::fill(&mut buf)
            .map_err(|e| KeyError::Store(format!("the system random source failed: {e}")))?;
        // Rejection sampling keeps every character uniform: 248 = 4 * 62.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == 3 + KEY_CHARS {
                break;
            }
            out.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    Ok(out)
}

/// The id a key is stored and found under: lowercase hex SHA-256 of the full key.
pub fn hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// `sk-...abcd`: the last four characters, enough to tell keys apart in a
/// list without revealing them.
pub fn display_name(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_litellm_shape_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(a.starts_with("sk-") && a.len() == 46, "{a}");
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn display_name_shows_only_the_last_four() {
        assert_eq!(display_name("sk-abcdefgh1234"), "sk-...1234");
        assert_eq!(hash("abc").len(), 64);
    }
}
