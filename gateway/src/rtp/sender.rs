//! The outbound RTP stream of one call leg.

use super::packet::{self, OutgoingHeader};
use super::RtpError;

/// Sequence numbers, timestamps and counters of what we send.
///
/// Timestamps are given in samples from the start of the stream; the
/// sender adds its random offset (RFC 3550 §5.1) and wraps to 32 bits.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    next_seq: u16,
    timestamp_offset: u32,
    packets_sent: u64,
    octets_sent: u64,
    last_timestamp: Option<u32>,
}

impl RtpSender {
    /// A sender with a random SSRC, first sequence number and timestamp
    /// offset.
    pub fn new_random() -> Self {
        Self::new(rand::random(), rand::random(), rand::random())
    }

    pub fn new(ssrc: u32, first_seq: u16, timestamp_offset: u32) -> Self {
        Self {
            ssrc,
            next_seq: first_seq,
            timestamp_offset,
            packets_sent: 0,
            octets_sent: 0,
            last_timestamp: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets sent, as RTCP SR counts them.
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// The RTP timestamp of the last packet sent.
    pub fn last_timestamp(&self) -> Option<u32> {
        self.last_timestamp
    }

    /// The wire timestamp for a media time in samples.
    pub fn rtp_timestamp(&self, media_samples: u64) -> u32 {
        (media_samples as u32).wrapping_add(self.timestamp_offset)
    }

    /// Writes the next packet into `out`. `media_samples` is the media time
    /// of its first sample; `marker` is set on the first packet of a
    /// talkspurt (and on the first packet of a telephone-event).
    pub fn write_packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        media_samples: u64,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, RtpError> {
        let timestamp = self.rtp_timestamp(media_samples);
        let h = OutgoingHeader {
            payload_type,
            marker,
            sequence_number: self.next_seq,
            timestamp,
            ssrc: self.ssrc,
        };
        let n = packet::write(&h, payload, out)?;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        self.last_timestamp = Some(timestamp);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_and_timestamps_advance_and_wrap() {
        let mut s = RtpSender::new(7, 65534, u32::MAX - 100);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for i in 0..3u64 {
            s.write_packet(0, i == 0, i * 160, &[0xFF; 160], &mut out)
                .expect("write");
            let p = packet::parse(&out).expect("parse");
            seen.push((
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker,
                p.header.ssrc,
            ));
        }
        assert_eq!(seen[0], (65534, u32::MAX - 100, true, 7));
        assert_eq!(seen[1], (65535, 59, false, 7));
        assert_eq!(seen[2], (0, 219, false, 7));
        assert_eq!(s.packets_sent(), 3);
        assert_eq!(s.octets_sent(), 480);
    }

    #[test]
    fn random_senders_differ() {
        let a = RtpSender::new_random();
        let b = RtpSender::new_random();
        assert_ne!(
            (a.ssrc(), a.timestamp_offset),
            (b.ssrc(), b.timestamp_offset)
        );
    }
}
