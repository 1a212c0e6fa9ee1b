//! Parsing and writing RTP datagrams with `rtc-rtp`, without copying the
//! payload and without allocating on the common path.

use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, MarshalSize, Unmarshal};

use super::RtpError;

/// Largest RTP datagram we accept or build.
pub const MAX_DATAGRAM: usize = 1500;

/// A parsed RTP packet that borrows its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// Parses one RTP datagram. Anything malformed is an error, never a panic.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if datagram.len() < 12 {
        return Err(RtpError::TooShort {
            len: datagram.len(),
        });
    }
    let version = datagram[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    let mut buf = datagram;
    let header = Header::unmarshal(&mut buf).map_err(RtpError::Malformed)?;
    let header_len = datagram.len() - buf.len();
    let mut payload = &datagram[header_len..];
    if header.padding {
        let pad = payload.last().copied().unwrap_or(0) as usize;
        if pad == 0 || pad > payload.len() {
            return Err(RtpError::BadPadding {
                pad,
                payload: payload.len(),
            });
        }
        payload = &payload[..payload.len() - pad];
    }
    Ok(RtpPacket { header, payload })
}

/// The fields of an outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Writes one RTP packet into `out` (cleared first); returns its length.
pub fn write(h: &OutgoingHeader, payload: &[u8], out: &mut Vec<u8>) -> Result<usize, RtpError> {
    let header = Header {
        version: 2,
        marker: h.marker,
        payload_type: h.payload_type & 0x7F,
        sequence_number: h.sequence_number,
        timestamp: h.timestamp,
        ssrc: h.ssrc,
        ..Header::default()
    };
    let header_len = header.marshal_size();
    let total = header_len + payload.len();
    if total > MAX_DATAGRAM {
        return Err(RtpError::TooLarge { len: total });
    }
    out.clear();
    out.resize(header_len, 0);
    header
        .marshal_to(&mut out[..])
        .map_err(RtpError::Malformed)?;
    out.extend_from_slice(payload);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let h = OutgoingHeader {
            payload_type: 0,
            marker: true,
            sequence_number: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 42,
        };
        let mut out = Vec::new();
        let n = write(&h, &[1, 2, 3], &mut out).expect("write");
        assert_eq!(n, 15);
        let p = parse(&out).expect("parse");
        assert!(p.header.marker);
        assert_eq!(p.header.sequence_number, 65535);
        assert_eq!(p.header.timestamp, 0xDEAD_BEEF);
        assert_eq!(p.header.ssrc, 42);
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn malformed_datagrams_are_errors() {
        assert!(matches!(parse(&[]), Err(RtpError::TooShort { .. })));
        assert!(matches!(parse(&[0x80; 11]), Err(RtpError::TooShort { .. })));
        assert!(matches!(
            parse(&[0x40; 12]),
            Err(RtpError::BadVersion { version: 1 })
        ));
        // Padding bit with a pad length longer than the payload.
        let mut p = vec![0xA0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert!(matches!(parse(&p), Err(RtpError::BadPadding { .. })));
        p[12] = 1;
        assert_eq!(
            parse(&p).expect("one byte of padding").payload,
            &[] as &[u8]
        );
        // CSRC count of 15 with no CSRCs present.
        let mut c = vec![0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(parse(&c).is_err());
        // Extension bit with a truncated extension header.
        c[0] = 0x90;
        c.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x05]);
        assert!(parse(&c).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            for b in buf.iter_mut().take(len) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[0] = (buf[0] & 0x3F) | 0x80;
            let _ = parse(&buf[..len]);
        }
    }
}
