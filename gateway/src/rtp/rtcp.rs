//! RTCP for one call leg: a Sender Report (or Receiver Report when we sent
//! nothing) every interval, and the peer's SR/RR parsed into loss, jitter
//! and round-trip time. Encoding and decoding use `rtc-rtcp`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

use super::receiver::RtpReceiver;
use super::sender::RtpSender;

/// The report interval RFC 3550 suggests for a two-party call.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Why an RTCP datagram could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RtcpError {
    #[error("malformed RTCP packet: {0}")]
    Malformed(#[source] rtc_shared::error::Error),
    #[error("could not encode an RTCP report: {0}")]
    Encode(#[source] rtc_shared::error::Error),
}

/// What the peer told us about the stream we send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Fraction of our packets lost in the last interval, 0.0..=1.0.
    pub fraction_lost: f64,
    /// Cumulative packets of ours lost.
    pub cumulative_lost: u32,
    /// Interarrival jitter the peer measured on our stream, in ms.
    pub jitter_ms: f64,
    /// Round-trip time from LSR/DLSR, when the peer echoed one of our SRs.
    pub rtt: Option<Duration>,
}

/// What arrived in one RTCP datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtcpInput {
    /// The peer's report about our stream, if one was in it.
    pub report: Option<RemoteReport>,
    /// The peer sent a Sender Report.
    pub sender_report: bool,
    /// The peer said BYE.
    pub bye: bool,
}

/// RTCP state of one call leg.
#[derive(Debug, Clone)]
pub struct RtcpSession {
    interval: Duration,
    next_report: Instant,
    cname: Bytes,
    clock_rate: u32,
    /// Middle 32 bits of the NTP time of the peer's last SR, and when it came.
    last_remote_sr: Option<(u32, Instant)>,
    packets_at_last_report: u64,
    last_remote: Option<RemoteReport>,
    reports_sent: u64,
}

/// The 64-bit NTP timestamp of a wall-clock time.
pub fn ntp_time(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

impl RtcpSession {
    /// The first report is due one interval after `now`.
    pub fn new(now: Instant, interval: Duration, cname: &str, clock_rate: u32) -> Self {
        Self {
            interval,
            next_report: now + interval,
            cname: Bytes::copy_from_slice(cname.as_bytes()),
            clock_rate,
            last_remote_sr: None,
            packets_at_last_report: 0,
            last_remote: None,
            reports_sent: 0,
        }
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// The peer's last report about our stream.
    pub fn last_remote(&self) -> Option<RemoteReport> {
        self.last_remote
    }

    pub fn reports_sent(&self) -> u64 {
        self.reports_sent
    }

    /// If a report is due at `now`, writes it into `out` (SR + SDES, or
    /// RR + SDES if we sent nothing since the last one) and returns true.
    /// `wall` is the wall-clock time now and `rtp_now` our RTP timestamp
    /// for this instant, both for the SR.
    pub fn poll_report(
        &mut self,
        now: Instant,
        wall: SystemTime,
        rtp_now: u32,
        sender: &RtpSender,
        receiver: &mut RtpReceiver,
        out: &mut Vec<u8>,
    ) -> Result<bool, RtcpError> {
        if now < self.next_report {
            return Ok(false);
        }
        // Stay on the original grid; skip missed intervals.
        while self.next_report <= now {
            self.next_report += self.interval;
        }
        let reports: Vec<ReceptionReport> =
            self.reception_report(now, receiver).into_iter().collect();
        let sent_since = sender.packets_sent() > self.packets_at_last_report;
        self.packets_at_last_report = sender.packets_sent();
        let sdes = SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: sender.ssrc(),
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: self.cname.clone(),
                }],
            }],
        };
        let packets: Vec<Box<dyn rtc_rtcp::Packet>> = if sent_since {
            vec![
                Box::new(SenderReport {
                    ssrc: sender.ssrc(),
                    ntp_time: ntp_time(wall),
                    rtp_time: rtp_now,
                    packet_count: sender.packets_sent() as u32,
                    octet_count: sender.octets_sent() as u32,
                    reports,
                    profile_extensions: Bytes::new(),
                }),
                Box::new(sdes),
            ]
        } else {
            vec![
                Box::new(ReceiverReport {
                    ssrc: sender.ssrc(),
                    reports,
                    profile_extensions: Bytes::new(),
                }),
                Box::new(sdes),
            ]
        };
        let bytes = rtc_rtcp::packet::marshal(&packets).map_err(RtcpError::Encode)?;
        out.clear();
        out.extend_from_slice(&bytes);
        self.reports_sent += 1;
        Ok(true)
    }

    fn reception_report(
        &self,
        now: Instant,
        receiver: &mut RtpReceiver,
    ) -> Option<ReceptionReport> {
        let ssrc = receiver.ssrc()?;
        let fraction_lost = receiver.take_fraction_lost();
        let stats = receiver.stats();
        let (lsr, dlsr) = match self.last_remote_sr {
            Some((mid, at)) => {
                let d = now.saturating_duration_since(at);
                (
                    mid,
                    ((d.as_nanos() << 16) / 1_000_000_000).min(u128::from(u32::MAX)) as u32,
                )
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost: stats.lost.min(0x7F_FFFF) as u32,
            // Our extended numbers start one cycle up; report from zero.
            last_sequence_number: stats.highest_ext_seq.saturating_sub(1 << 16) as u32,
            jitter: stats.jitter_samples as u32,
            last_sender_report: lsr,
            delay: dlsr,
        })
    }

    /// Takes one RTCP datagram from the peer. `our_ssrc` picks the report
    /// block about our stream; `wall` is the wall-clock time now, for RTT.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        wall: SystemTime,
        datagram: &[u8],
        our_ssrc: u32,
    ) -> Result<RtcpInput, RtcpError> {
        let mut buf = datagram;
        let packets = rtc_rtcp::packet::unmarshal(&mut buf).map_err(RtcpError::Malformed)?;
        let mut input = RtcpInput::default();
        for p in &packets {
            let any = p.as_any();
            let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.last_remote_sr = Some((ntp_middle(sr.ntp_time), now));
                input.sender_report = true;
                &sr.reports
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else {
                if any.is::<rtc_rtcp::goodbye::Goodbye>() {
                    input.bye = true;
                }
                continue;
            };
            if let Some(block) = blocks.iter().find(|b| b.ssrc == our_ssrc) {
                let rtt = if block.last_sender_report != 0 {
                    let now_mid = ntp_middle(ntp_time(wall));
                    let units = now_mid
                        .wrapping_sub(block.last_sender_report)
                        .wrapping_sub(block.delay);
                    // A negative result (clock steps) wraps huge: ignore it.
                    (units < 0x8000_0000)
                        .then(|| Duration::from_nanos((u64::from(units) * 1_000_000_000) >> 16))
                } else {
                    None
                };
                let report = RemoteReport {
                    fraction_lost: f64::from(block.fraction_lost) / 256.0,
                    cumulative_lost: block.total_lost,
                    jitter_ms: f64::from(block.jitter) * 1000.0 / f64::from(self.clock_rate.max(1)),
                    rtt,
                };
                self.last_remote = Some(report);
                input.report = Some(report);
            }
        }
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet;
    use std::net::SocketAddr;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn two_peers_exchange_reports_and_see_loss_and_rtt() {
        let t0 = Instant::now();
        let w0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let from: SocketAddr = ([127, 0, 0, 1], 4000).into();
        let mut a_tx = RtpSender::new(0xA, 100, 0);
        let mut a_rx = RtpReceiver::new(8000, t0);
        let mut b_tx = RtpSender::new(0xB, 200, 0);
        let mut b_rx = RtpReceiver::new(8000, t0);
        let mut a = RtcpSession::new(t0, DEFAULT_INTERVAL, "a@voxgate", 8000);
        let mut b = RtcpSession::new(t0, DEFAULT_INTERVAL, "b@voxgate", 8000);
        // A sends 250 packets (5 s), 10% lost on the way to B.
        let mut buf = Vec::new();
        for n in 0..250u64 {
            a_tx.write_packet(0, false, n * 160, &[0xFF; 160], &mut buf)
                .expect("rtp");
            if n % 10 != 5 {
                let p = packet::parse(&buf).expect("parse");
                b_rx.handle_packet(
                    t0 + Duration::from_millis(n * 20),
                    from,
                    &p.header,
                    160,
                    true,
                );
            }
        }
        let mut out = Vec::new();
        assert!(!a
            .poll_report(t0 + SEC, w0, 0, &a_tx, &mut a_rx, &mut out)
            .expect("not due"));
        assert_eq!(a.poll_timeout(), t0 + 5 * SEC);
        // A's SR at 5 s reaches B 30 ms later.
        assert!(a
            .poll_report(
                t0 + 5 * SEC,
                w0 + 5 * SEC,
                40000,
                &a_tx,
                &mut a_rx,
                &mut out
            )
            .expect("sr"));
        let got = b
            .handle_packet(
                t0 + 5 * SEC,
                w0 + 5 * SEC + Duration::from_millis(30),
                &out,
                0xB,
            )
            .expect("parse sr");
        assert!(got.sender_report);
        assert_eq!(got.report, None, "A received nothing from B yet");
        // B sent nothing, so it answers with an RR that blocks A's stream,
        // 100 ms after receiving the SR; it reaches A 30 ms later.
        let b_now = t0 + 5 * SEC + Duration::from_millis(100);
        let mut b2 = b.clone();
        b2.next_report = b_now;
        assert!(b2
            .poll_report(b_now, w0, 0, &b_tx, &mut b_rx, &mut out)
            .expect("rr"));
        let got = a
            .handle_packet(b_now, w0 + 5 * SEC + Duration::from_millis(160), &out, 0xA)
            .expect("parse rr");
        assert!(!got.sender_report);
        let r = got.report.expect("report on A's stream");
        assert_eq!(r.cumulative_lost, 25);
        assert!((r.fraction_lost - 0.1).abs() < 0.01, "{}", r.fraction_lost);
        assert!(r.jitter_ms < 1.0);
        // 30 ms out, 100 ms held, 30 ms back: RTT 60 ms.
        let rtt = r.rtt.expect("rtt");
        assert!((rtt.as_secs_f64() - 0.060).abs() < 0.002, "{rtt:?}");
        let _ = &mut b_tx;
    }

    #[test]
    fn garbage_is_an_error() {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(t0, DEFAULT_INTERVAL, "x", 8000);
        assert!(s.handle_packet(t0, UNIX_EPOCH, &[], 1).is_err());
        assert!(s
            .handle_packet(t0, UNIX_EPOCH, &[0x81, 200, 0, 50, 1, 2], 1)
            .is_err());
        assert!(s.handle_packet(t0, UNIX_EPOCH, &[0xFF; 40], 1).is_err());
    }
}
