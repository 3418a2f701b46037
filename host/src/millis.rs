//! Durations as decimal milliseconds, written digit by digit: the access
//! line and the overhead header carry them on every request, where
//! `core::fmt` costs several times as much as the digits themselves.

use std::time::Duration;

/// A duration in milliseconds as text (`12.345`), kept on the stack.
pub struct Millis {
    text: [u8; 48],
    start: usize,
    end: usize,
}

impl Millis {
    /// `d` with three decimals, truncated to the microsecond (`1.200`).
    pub fn fixed(d: Duration) -> Self {
        Self::of_micros(d.as_micros())
    }

    /// `d` rounded to the microsecond and written as the `f64` of that
    /// value prints: trailing zeros dropped, one decimal at least (`1.2`,
    /// `3.0`).
    pub fn shortest(d: Duration) -> Self {
        let mut millis = Self::of_micros((d.as_nanos() + 500) / 1000);
        while millis.text[millis.end - 1] == b'0' && millis.text[millis.end - 2] != b'.' {
            millis.end -= 1;
        }
        millis
    }

    fn of_micros(micros: u128) -> Self {
        let mut text = [0u8; 48];
        let mut at = text.len();
        let mut n = micros;
        // u128::MAX has 39 digits: with the point they fit in 48 bytes.
        for i in 0.. {
            if i == 3 {
                at -= 1;
                text[at] = b'.';
            }
            at -= 1;
            text[at] = b'0' + next_digit(&mut n);
            if n == 0 && i >= 3 {
                break;
            }
        }
        Self {
            text,
            start: at,
            end: 48,
        }
    }

    /// The digits, ASCII.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[self.start..self.end]
    }
}

/// Takes the last decimal digit off `n`. In `u64` while `n` fits one (any
/// duration a request takes): a `u128` division is a library call, and
/// this runs for every digit of every figure on the access line.
fn next_digit(n: &mut u128) -> u8 {
    match u64::try_from(*n) {
        Ok(small) => {
            *n = u128::from(small / 10);
            (small % 10) as u8
        }
        Err(_) => {
            let digit = (*n % 10) as u8;
            *n /= 10;
            digit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: Millis) -> String {
        String::from_utf8(m.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn fixed_has_three_decimals() {
        for (micros, expected) in [
            (0, "0.000"),
            (7, "0.007"),
            (412, "0.412"),
            (1_000, "1.000"),
            (12_345_678, "12345.678"),
        ] {
            assert_eq!(text(Millis::fixed(Duration::from_micros(micros))), expected);
        }
    }

    #[test]
    fn durations_past_a_u64_of_microseconds_keep_every_digit() {
        let micros = Duration::MAX.as_micros();
        assert!(u64::try_from(micros).is_err());
        let expected = format!("{}.{:03}", micros / 1000, micros % 1000);
        assert_eq!(text(Millis::fixed(Duration::MAX)), expected);
    }

    #[test]
    fn shortest_reads_as_the_f64_of_the_same_value() {
        for micros in [
            0u64,
            1,
            10,
            100,
            999,
            1000,
            1001,
            1500,
            12_000,
            12_340,
            86_400_000_123,
        ] {
            let expected = serde_json::to_string(&(micros as f64 / 1000.0)).unwrap();
            assert_eq!(
                text(Millis::shortest(Duration::from_micros(micros))),
                expected
            );
        }
        assert_eq!(text(Millis::shortest(Duration::from_nanos(1_499))), "0.001");
        assert_eq!(text(Millis::shortest(Duration::from_nanos(1_500))), "0.002");
    }
}
