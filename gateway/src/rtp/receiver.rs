//! The inbound RTP stream of one call leg: symmetric latching, extended
//! sequence numbers, RFC 3550 interarrival jitter and loss.

use std::net::SocketAddr;
use std::time::Instant;

use rtc_rtp::header::Header;

/// A jump larger than this many packets is treated as a new stream unless
/// the next packet confirms it (RFC 3550 A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: i64 = 3000;

/// What became of one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// From the latched source: use it. `ext_seq` is the 64-bit extended
    /// sequence number; `first_of_stream` is true for the first packet of
    /// a new SSRC.
    Accepted { ext_seq: u64, first_of_stream: bool },
    /// From an address other than the latched one: ignored and counted.
    UnknownSource,
    /// A sequence jump too large to trust, held until confirmed.
    Probation,
}

/// Counters for RTCP reports and stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiverStats {
    pub packets: u64,
    pub octets: u64,
    /// Expected minus received, never below zero.
    pub lost: u64,
    /// Interarrival jitter in samples (RFC 3550 §6.4.1).
    pub jitter_samples: f64,
    pub ignored_other_source: u64,
    pub highest_ext_seq: u64,
}

/// Reception state of one inbound stream.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: u32,
    epoch: Instant,
    latched: Option<SocketAddr>,
    ssrc: Option<u32>,
    base_ext_seq: u64,
    max_ext_seq: u64,
    /// A large jump waiting for the next packet to confirm it.
    probation_seq: Option<u16>,
    received: u64,
    octets: u64,
    ignored: u64,
    last_transit: Option<i64>,
    jitter: f64,
    expected_prior: u64,
    received_prior: u64,
}

impl RtpReceiver {
    /// `epoch` is any instant before the first packet; arrival times are
    /// measured from it in samples of `clock_rate`.
    pub fn new(clock_rate: u32, epoch: Instant) -> Self {
        Self {
            clock_rate,
            epoch,
            latched: None,
            ssrc: None,
            base_ext_seq: 0,
            max_ext_seq: 0,
            probation_seq: None,
            received: 0,
            octets: 0,
            ignored: 0,
            last_transit: None,
            jitter: 0.0,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    /// The address media is latched to (the first source actually seen).
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Forgets the latched address, for a re-INVITE that moves the peer.
    pub fn unlatch(&mut self) {
        self.latched = None;
    }

    /// The SSRC being received.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Accounts for one packet that arrived at `now` from `from`.
    /// `timing` says whether its timestamp tracks its sampling instant, so
    /// it counts towards jitter (audio yes; telephone-event no, since all
    /// packets of an event share one timestamp).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        payload_len: usize,
        timing: bool,
    ) -> ReceiveOutcome {
        match self.latched {
            None => self.latched = Some(from),
            Some(addr) if addr != from => {
                self.ignored += 1;
                return ReceiveOutcome::UnknownSource;
            }
            Some(_) => {}
        }
        let seq = header.sequence_number;
        let mut first_of_stream = false;
        let ext_seq = if self.ssrc != Some(header.ssrc) {
            self.restart(header.ssrc, seq);
            first_of_stream = true;
            self.max_ext_seq
        } else {
            let ext = self.extend(seq);
            let delta = ext as i64 - self.max_ext_seq as i64;
            if !(-MAX_DROPOUT..=MAX_DROPOUT).contains(&delta) {
                if self.probation_seq == Some(seq.wrapping_sub(1)) {
                    // Two packets in a row agree: the sender restarted its
                    // sequence. Resynchronise on this one.
                    self.restart(header.ssrc, seq);
                    self.max_ext_seq
                } else {
                    self.probation_seq = Some(seq);
                    return ReceiveOutcome::Probation;
                }
            } else {
                self.probation_seq = None;
                if delta > 0 {
                    self.max_ext_seq = ext;
                }
                ext
            }
        };
        self.received += 1;
        self.octets += payload_len as u64;
        if timing {
            self.update_jitter(now, header.timestamp);
        }
        ReceiveOutcome::Accepted {
            ext_seq,
            first_of_stream,
        }
    }

    fn restart(&mut self, ssrc: u32, seq: u16) {
        // Start the extended space one cycle up so reordered packets from
        // just before the first one still have a non-negative number.
        let ext = (1u64 << 16) + u64::from(seq);
        self.ssrc = Some(ssrc);
        self.base_ext_seq = ext;
        self.max_ext_seq = ext;
        self.probation_seq = None;
        self.received = 0;
        self.octets = 0;
        self.last_transit = None;
        self.jitter = 0.0;
        self.expected_prior = 0;
        self.received_prior = 0;
    }

    /// The extended number nearest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let max = self.max_ext_seq as i64;
        let candidate = (max & !0xFFFF) | i64::from(seq);
        let best = [candidate - 0x1_0000, candidate, candidate + 0x1_0000]
            .into_iter()
            .filter(|c| *c >= 0)
            .min_by_key(|c| (c - max).abs())
            .unwrap_or(candidate);
        best as u64
    }

    fn update_jitter(&mut self, now: Instant, rtp_timestamp: u32) {
        let arrival = (now.saturating_duration_since(self.epoch).as_nanos()
            * u128::from(self.clock_rate)
            / 1_000_000_000) as i64;
        // Transit in the sender's timestamp space; its wrap cancels out in
        // the difference below once both are reduced to i32.
        let transit = arrival.wrapping_sub(i64::from(rtp_timestamp));
        if let Some(last) = self.last_transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        self.max_ext_seq - self.base_ext_seq + 1
    }

    /// Cumulative packets lost (RFC 3550: expected minus received; may be
    /// negative with duplicates, reported here clamped at zero).
    pub fn cumulative_lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in samples.
    pub fn jitter_samples(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate.max(1))
    }

    /// The RFC 3550 fraction lost since the last call, as an 8-bit fixed
    /// point number, and moves the interval on.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        }
    }

    pub fn stats(&self) -> ReceiverStats {
        ReceiverStats {
            packets: self.received,
            octets: self.octets,
            lost: self.cumulative_lost(),
            jitter_samples: self.jitter,
            ignored_other_source: self.ignored,
            highest_ext_seq: self.max_ext_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hdr(seq: u16, ts: u32, ssrc: u32) -> Header {
        Header {
            version: 2,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Header::default()
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn latches_onto_the_first_source_and_ignores_others() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::new(8000, t0);
        assert!(matches!(
            r.handle_packet(t0, addr(5000), &hdr(1, 0, 9), 160, true),
            ReceiveOutcome::Accepted { .. }
        ));
        assert_eq!(
            r.handle_packet(t0, addr(5002), &hdr(2, 160, 9), 160, true),
            ReceiveOutcome::UnknownSource
        );
        assert_eq!(
            r.handle_packet(t0, addr(5002), &hdr(3, 320, 77), 160, true),
            ReceiveOutcome::UnknownSource
        );
        assert_eq!(r.latched(), Some(addr(5000)));
        assert_eq!(r.stats().ignored_other_source, 2);
        assert_eq!(r.stats().packets, 1);
        r.unlatch();
        assert!(matches!(
            r.handle_packet(t0, addr(5002), &hdr(4, 480, 77), 160, true),
            ReceiveOutcome::Accepted { .. }
        ));
        assert_eq!(r.latched(), Some(addr(5002)));
    }

    #[test]
    fn extended_sequence_numbers_across_the_wrap_and_reordering() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::new(8000, t0);
        let mut ext = Vec::new();
        for seq in [65533u16, 65534, 0, 65535, 1, 2] {
            match r.handle_packet(t0, addr(1), &hdr(seq, 0, 1), 1, false) {
                ReceiveOutcome::Accepted { ext_seq, .. } => ext.push(ext_seq),
                other => panic!("{other:?}"),
            }
        }
        let base = ext[0];
        let rel: Vec<u64> = ext.iter().map(|e| e - base).collect();
        assert_eq!(rel, [0, 1, 3, 2, 4, 5]);
        assert_eq!(r.cumulative_lost(), 0);
    }

    #[test]
    fn loss_and_fraction_lost() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::new(8000, t0);
        // 100 packets sent, every 4th lost: 25 lost.
        for seq in 0..100u16 {
            if seq % 4 != 3 {
                r.handle_packet(t0, addr(1), &hdr(seq, 0, 1), 160, false);
            }
        }
        // Highest received is 98, so 99 expected, 75 received.
        assert_eq!(r.expected(), 99);
        assert_eq!(r.cumulative_lost(), 24);
        assert_eq!(r.take_fraction_lost(), ((24u64 << 8) / 99) as u8);
        // Next interval: 99 (lost above) is now known lost, 100..110 came.
        for seq in 100..110u16 {
            r.handle_packet(t0, addr(1), &hdr(seq, 0, 1), 160, false);
        }
        assert_eq!(r.take_fraction_lost(), ((1u64 << 8) / 11) as u8);
        for seq in 110..120u16 {
            r.handle_packet(t0, addr(1), &hdr(seq, 0, 1), 160, false);
        }
        assert_eq!(r.take_fraction_lost(), 0);
    }

    #[test]
    fn jitter_is_zero_for_a_perfect_stream_and_grows_with_variation() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::new(8000, t0);
        for n in 0..50u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(n));
            r.handle_packet(
                at,
                addr(1),
                &hdr(n as u16, 1_000_000 + n * 160, 1),
                160,
                true,
            );
        }
        assert!(r.jitter_samples() < 0.01, "{}", r.jitter_samples());
        // Alternate 0 and 10 ms of extra delay: |D| = 80 samples each time,
        // so jitter converges towards 80 samples (10 ms).
        for n in 50..400u32 {
            let extra = if n % 2 == 0 { 10 } else { 0 };
            let at = t0 + Duration::from_millis(20 * u64::from(n) + extra);
            r.handle_packet(
                at,
                addr(1),
                &hdr(n as u16, 1_000_000 + n * 160, 1),
                160,
                true,
            );
        }
        assert!((r.jitter_ms() - 10.0).abs() < 0.5, "{}", r.jitter_ms());
    }

    #[test]
    fn a_large_jump_needs_confirmation_and_a_new_ssrc_restarts() {
        let t0 = Instant::now();
        let mut r = RtpReceiver::new(8000, t0);
        r.handle_packet(t0, addr(1), &hdr(10, 0, 1), 1, false);
        assert_eq!(
            r.handle_packet(t0, addr(1), &hdr(30000, 0, 1), 1, false),
            ReceiveOutcome::Probation
        );
        assert!(matches!(
            r.handle_packet(t0, addr(1), &hdr(11, 0, 1), 1, false),
            ReceiveOutcome::Accepted { .. }
        ));
        assert_eq!(
            r.handle_packet(t0, addr(1), &hdr(40000, 0, 1), 1, false),
            ReceiveOutcome::Probation
        );
        assert!(matches!(
            r.handle_packet(t0, addr(1), &hdr(40001, 0, 1), 1, false),
            ReceiveOutcome::Accepted {
                first_of_stream: false,
                ..
            }
        ));
        assert_eq!(r.cumulative_lost(), 0);
        assert!(matches!(
            r.handle_packet(t0, addr(1), &hdr(5, 0, 2), 1, false),
            ReceiveOutcome::Accepted {
                first_of_stream: true,
                ..
            }
        ));
        assert_eq!(r.ssrc(), Some(2));
    }
}
