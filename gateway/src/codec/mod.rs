//! Audio codecs on the RTP leg: G.711 μ-law (PCMU) and A-law (PCMA).

pub mod g711;

/// A codec voxgate can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name as written in SDP `a=rtpmap`.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub const fn clock_rate(self) -> u32 {
        8000
    }

    /// Looks a codec up by its SDP encoding name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    pub const fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Encodes 16-bit linear PCM at [`Codec::clock_rate`], appending one
    /// byte per sample to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Codec::Pcmu => out.extend(pcm.iter().map(|&s| g711::ulaw_encode(s))),
            Codec::Pcma => out.extend(pcm.iter().map(|&s| g711::alaw_encode(s))),
        }
    }

    /// Decodes a payload, appending one sample per byte to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        out.reserve(payload.len());
        match self {
            Codec::Pcmu => out.extend(payload.iter().map(|&b| g711::ulaw_decode(b))),
            Codec::Pcma => out.extend(payload.iter().map(|&b| g711::alaw_decode(b))),
        }
    }

    /// The payload byte that decodes to silence.
    pub const fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_a_sine() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 8000.0).sin() * 12000.0) as i16
            })
            .collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut bytes = Vec::new();
            codec.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 160);
            let mut back = Vec::new();
            codec.decode(&bytes, &mut back);
            assert_eq!(back.len(), 160);
            let err: f64 = pcm
                .iter()
                .zip(&back)
                .map(|(a, b)| ((*a as f64) - (*b as f64)).powi(2))
                .sum();
            let sig: f64 = pcm.iter().map(|a| (*a as f64).powi(2)).sum();
            let snr_db = 10.0 * (sig / err).log10();
            assert!(snr_db > 30.0, "{codec:?} SNR {snr_db:.1} dB");
            let mut silence = Vec::new();
            codec.decode(&[codec.silence_byte()], &mut silence);
            assert!(silence[0].abs() <= 8);
        }
    }
}
