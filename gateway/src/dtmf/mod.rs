//! DTMF from all three sources, reported as one event type.
//!
//! - [`rfc4733`]: telephone-event RTP payloads, a receiver that dedupes
//!   and times events out, and a sender for the softphone.
//! - [`info`]: SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`).
//! - [`goertzel`]: the in-band detector on decoded PCM.
//! - [`tone`]: the in-band tone generator for the softphone.

pub mod goertzel;
pub mod info;
pub mod rfc4733;
pub mod tone;

use std::time::Duration;

/// How a digit reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfSource {
    /// RFC 4733 telephone-event RTP packets.
    Rfc4733,
    /// SIP INFO with `application/dtmf-relay` or `application/dtmf`.
    Info,
    /// In-band tones found by the Goertzel detector.
    Inband,
}

/// One digit pressed by the caller: `0-9`, `*`, `#`, `A-D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    pub digit: char,
    pub duration: Duration,
    pub source: DtmfSource,
}

/// The digits in RFC 4733 event-code order (codes 0..=15).
pub const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The RFC 4733 event code of a digit (`a`-`d` accepted as `A`-`D`).
pub fn event_code(digit: char) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    DIGITS.iter().position(|c| *c == d).map(|i| i as u8)
}

/// The digit of an RFC 4733 event code, for codes 0..=15.
pub fn digit_of(code: u8) -> Option<char> {
    DIGITS.get(code as usize).copied()
}

/// The (low/row, high/column) frequencies of a digit in Hz.
pub fn frequencies(digit: char) -> Option<(f64, f64)> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYPAD: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYPAD.iter().enumerate() {
        for (c, k) in row.iter().enumerate() {
            if *k == d {
                return Some((ROWS[r], COLS[c]));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_digits() {
        assert_eq!(event_code('0'), Some(0));
        assert_eq!(event_code('*'), Some(10));
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('d'), Some(15));
        assert_eq!(event_code('E'), None);
        for (i, d) in DIGITS.iter().enumerate() {
            assert_eq!(digit_of(i as u8), Some(*d));
            assert!(frequencies(*d).is_some());
        }
        assert_eq!(digit_of(16), None);
        assert_eq!(frequencies('5'), Some((770.0, 1336.0)));
    }
}
