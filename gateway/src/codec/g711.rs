//! ITU-T G.711 μ-law and A-law, table driven.
//!
//! Decoding is one lookup in a 256-entry table built at compile time.
//! Encoding finds the segment (exponent) with a 256-entry table indexed by
//! the top bits of the magnitude, then takes the 4 mantissa bits below it.

/// μ-law bias added before segment search (G.711 uses 0x84 = 132).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law can represent once the bias is added.
const ULAW_CLIP: i32 = 32635;

/// `SEGMENT[x]` is the position of the highest set bit of `x` (0 for 0 and
/// 1), which is the G.711 segment number for the top byte of a magnitude.
const SEGMENT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut v = i as u32;
        let mut seg = 0u8;
        while v > 1 {
            v >>= 1;
            seg += 1;
        }
        t[i] = seg;
        i += 1;
    }
    t
};

const fn ulaw_decode_one(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_one(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // A-law's sign bit set means positive.
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const ULAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_one(i as u8);
        i += 1;
    }
    t
};

const ALAW_TABLE: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_one(i as u8);
        i += 1;
    }
    t
};

/// Encodes one linear sample as μ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let s = sample as i32;
    let (sign, magnitude) = if s < 0 { (0x80u8, -s) } else { (0u8, s) };
    let magnitude = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // magnitude is at most 32767, so bits 7..14 index the segment table.
    let exponent = SEGMENT[((magnitude >> 7) & 0xFF) as usize];
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Decodes one μ-law byte.
#[inline]
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_TABLE[byte as usize]
}

/// Encodes one linear sample as A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let s = (sample as i32) >> 3;
    let (sign, magnitude) = if s >= 0 { (0x80u8, s) } else { (0u8, -s - 1) };
    let magnitude = magnitude.min(0x0FFF);
    let byte = if magnitude < 32 {
        sign | ((magnitude >> 1) as u8)
    } else {
        // Segment 1 starts at 32 (bit 5); SEGMENT of bits 4.. gives 1..7.
        let exponent = SEGMENT[((magnitude >> 4) & 0xFF) as usize];
        let mantissa = ((magnitude >> exponent) & 0x0F) as u8;
        sign | (exponent << 4) | mantissa
    };
    byte ^ 0x55
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TABLE[byte as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        // Reference points from G.711: 0xFF and 0x7F are the two zeros,
        // 0x80/0x00 the extremes.
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips() {
        for b in 0..=255u8 {
            let u = ulaw_decode(b);
            // 0x7F (negative zero) re-encodes as 0xFF (positive zero).
            let expect = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(u), expect, "ulaw byte {b:#04x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw byte {b:#04x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_and_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // Relative error at most one step of the segment: about 1/16 of
            // the magnitude, plus the fixed floor of the first segment.
            let tol = (s as i32).abs() / 16 + 16;
            assert!((u as i32 - s as i32).abs() <= tol + 100, "ulaw {s} -> {u}");
            assert!((a as i32 - s as i32).abs() <= tol + 100, "alaw {s} -> {a}");
        }
    }
}
