//! RFC 4733 telephone-events: the 4-byte payload, a receiver that turns
//! packet streams into digits, and a sender that makes the packet sequence
//! of one digit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{digit_of, event_code, DtmfEvent, DtmfSource};

/// Why a telephone-event payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc4733Error {
    #[error("telephone-event payload of {len} bytes, expected at least 4")]
    TooShort { len: usize },
    #[error("'{0}' is not a DTMF digit")]
    InvalidDigit(char),
    #[error("DTMF duration {0:?} is outside 10 ms to 8 s")]
    BadDuration(Duration),
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in timestamp units (samples).
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<Self, Rfc4733Error> {
        if payload.len() < 4 {
            return Err(Rfc4733Error::TooShort { len: payload.len() });
        }
        Ok(Self {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// The event being received.
#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    duration: u16,
    last_seen: Instant,
}

/// Turns telephone-event packets into digits.
///
/// An event is one RTP timestamp. The digit is reported once: at its first
/// end packet (the two usual retransmissions are dropped), when a packet
/// with a new timestamp shows the end packets were lost, or when no packet
/// has come for the timeout. A lost start packet does not matter: any
/// packet of an unseen timestamp opens the event.
#[derive(Debug, Clone)]
pub struct Rfc4733Receiver {
    clock_rate: u32,
    timeout: Duration,
    current: Option<Current>,
    /// Timestamps of the last events reported, so late retransmissions of
    /// their end packets are not reported again.
    reported: [Option<u32>; 4],
    reported_pos: usize,
    ready: VecDeque<DtmfEvent>,
}

impl Rfc4733Receiver {
    /// `timeout`: how long after the last packet an unfinished event is
    /// reported anyway (packets come every 50 ms or so; 250 ms is safe).
    pub fn new(clock_rate: u32, timeout: Duration) -> Self {
        Self {
            clock_rate,
            timeout,
            current: None,
            reported: [None; 4],
            reported_pos: 0,
            ready: VecDeque::new(),
        }
    }

    fn was_reported(&self, ts: u32) -> bool {
        self.reported.contains(&Some(ts))
    }

    fn finish(&mut self, c: Current) {
        self.reported[self.reported_pos] = Some(c.timestamp);
        self.reported_pos = (self.reported_pos + 1) % self.reported.len();
        if let Some(digit) = digit_of(c.event) {
            let ms = u64::from(c.duration) * 1000 / u64::from(self.clock_rate.max(1));
            self.ready.push_back(DtmfEvent {
                digit,
                duration: Duration::from_millis(ms),
                source: DtmfSource::Rfc4733,
            });
        }
    }

    /// The next finished digit.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.ready.pop_front()
    }

    /// Takes one packet: its RTP timestamp and payload. Finished digits
    /// (possibly the previous one, if this packet shows its end packets
    /// were lost) come out of [`Rfc4733Receiver::poll_event`]. Events other
    /// than 0-15 are ignored.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), Rfc4733Error> {
        let ev = TelephoneEvent::parse(payload)?;
        if self.was_reported(timestamp) {
            return Ok(());
        }
        match self.current {
            Some(mut c) if c.timestamp == timestamp => {
                c.duration = c.duration.max(ev.duration);
                c.last_seen = now;
                self.current = Some(c);
            }
            previous => {
                if let Some(p) = previous {
                    self.finish(p);
                }
                self.current = Some(Current {
                    timestamp,
                    event: ev.event,
                    duration: ev.duration,
                    last_seen: now,
                });
            }
        }
        if ev.end {
            if let Some(c) = self.current.take() {
                self.finish(c);
            }
        }
        Ok(())
    }

    /// When an unfinished event times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.timeout)
    }

    /// Finishes the open event if its end packets never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.current {
            if now >= c.last_seen + self.timeout {
                self.current = None;
                self.finish(c);
            }
        }
    }
}

/// One packet of an outgoing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// Set on the first packet of the event.
    pub marker: bool,
    /// Media time (samples) of the event start: the RTP timestamp of every
    /// packet of the event.
    pub start_samples: u64,
    pub payload: [u8; 4],
}

/// The packet sequence of one digit: a start packet with the marker bit,
/// an update every packet time, then the end packet three times.
#[derive(Debug, Clone)]
pub struct Rfc4733Sender {
    event: u8,
    volume: u8,
    total: u16,
    step: u16,
    start_samples: u64,
    sent: u32,
    ends_left: u8,
}

impl Rfc4733Sender {
    /// `start_samples` is the media time of the packet time it starts in;
    /// `samples_per_packet` is 160 for 20 ms at 8 kHz.
    pub fn new(
        digit: char,
        duration: Duration,
        clock_rate: u32,
        samples_per_packet: u16,
        start_samples: u64,
    ) -> Result<Self, Rfc4733Error> {
        let event = event_code(digit).ok_or(Rfc4733Error::InvalidDigit(digit))?;
        if duration < Duration::from_millis(10) || duration > Duration::from_secs(8) {
            return Err(Rfc4733Error::BadDuration(duration));
        }
        let total = (duration.as_millis() as u64 * u64::from(clock_rate) / 1000)
            .min(u64::from(u16::MAX)) as u16;
        Ok(Self {
            event,
            volume: 10,
            total,
            step: samples_per_packet.max(1),
            start_samples,
            sent: 0,
            ends_left: 3,
        })
    }

    /// The next packet, one per packet time; `None` when done.
    pub fn next_packet(&mut self) -> Option<OutgoingEvent> {
        let elapsed = (u32::from(self.step) * (self.sent + 1)).min(u32::from(self.total)) as u16;
        let end = elapsed >= self.total;
        if end {
            if self.ends_left == 0 {
                return None;
            }
            self.ends_left -= 1;
        }
        let marker = self.sent == 0;
        self.sent += 1;
        let ev = TelephoneEvent {
            event: self.event,
            end,
            volume: self.volume,
            duration: elapsed,
        };
        Some(OutgoingEvent {
            marker,
            start_samples: self.start_samples,
            payload: ev.to_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn packets(digit: char, ms: u64) -> Vec<OutgoingEvent> {
        let mut s =
            Rfc4733Sender::new(digit, Duration::from_millis(ms), 8000, 160, 16000).expect("sender");
        std::iter::from_fn(|| s.next_packet()).collect()
    }

    #[test]
    fn payload_round_trip() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1280,
        };
        assert_eq!(e.to_bytes(), [11, 0x8A, 0x05, 0x00]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
        assert!(TelephoneEvent::parse(&[1, 2, 3]).is_err());
    }

    #[test]
    fn sender_makes_start_updates_and_three_ends() {
        let p = packets('5', 100);
        // 100 ms = 800 samples: 160, 320, 480, 640, then 800 (end) x3.
        assert_eq!(p.len(), 7);
        assert!(p[0].marker && p[1..].iter().all(|x| !x.marker));
        assert!(p.iter().all(|x| x.start_samples == 16000));
        let parsed: Vec<TelephoneEvent> = p
            .iter()
            .map(|x| TelephoneEvent::parse(&x.payload).expect("ev"))
            .collect();
        assert_eq!(
            parsed.iter().map(|e| e.duration).collect::<Vec<_>>(),
            [160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(parsed.iter().filter(|e| e.end).count(), 3);
        assert!(parsed.iter().all(|e| e.event == 5));
        assert!(Rfc4733Sender::new('x', 100 * MS, 8000, 160, 0).is_err());
        assert!(Rfc4733Sender::new('1', MS, 8000, 160, 0).is_err());
    }

    fn feed(
        r: &mut Rfc4733Receiver,
        t0: Instant,
        ts: u32,
        pkts: &[OutgoingEvent],
        skip: &[usize],
    ) -> Vec<DtmfEvent> {
        let mut out = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let now = t0 + 20 * MS * i as u32;
            r.handle_packet(now, ts, &p.payload).expect("valid");
            out.extend(std::iter::from_fn(|| r.poll_event()));
        }
        out
    }

    #[test]
    fn receiver_reports_once_with_duration() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new(8000, 250 * MS);
        let got = feed(&mut r, t0, 1000, &packets('#', 120), &[]);
        assert_eq!(
            got,
            [DtmfEvent {
                digit: '#',
                duration: 120 * MS,
                source: DtmfSource::Rfc4733
            }]
        );
        assert_eq!(r.poll_timeout(), None);
        // A late retransmission of the end packet is still a duplicate.
        let again = feed(&mut r, t0, 1000, &packets('#', 120)[6..], &[]);
        assert!(again.is_empty());
    }

    #[test]
    fn lost_start_packet_still_reports() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new(8000, 250 * MS);
        let got = feed(&mut r, t0, 2000, &packets('7', 100), &[0, 1]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].digit, '7');
        assert_eq!(got[0].duration, 100 * MS);
    }

    #[test]
    fn lost_end_packets_time_out_or_are_closed_by_the_next_event() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new(8000, 250 * MS);
        let p1 = packets('1', 100);
        assert!(feed(&mut r, t0, 3000, &p1, &[4, 5, 6]).is_empty());
        let last = t0 + 60 * MS;
        assert_eq!(r.poll_timeout(), Some(last + 250 * MS));
        r.handle_timeout(last + 249 * MS);
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(last + 250 * MS);
        let d = r.poll_event().expect("timed out");
        assert_eq!((d.digit, d.duration), ('1', 80 * MS));
        // Now '2' loses its ends and '3' follows right away.
        assert!(feed(&mut r, t0, 4000, &packets('2', 100), &[4, 5, 6]).is_empty());
        let got = feed(&mut r, t0, 5000, &packets('3', 100), &[]);
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "23");
    }

    #[test]
    fn unknown_events_are_not_digits() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new(8000, 250 * MS);
        let flash = TelephoneEvent {
            event: 16,
            end: true,
            volume: 10,
            duration: 800,
        }
        .to_bytes();
        assert_eq!(r.handle_packet(t0, 1, &flash), Ok(()));
        assert_eq!(r.poll_event(), None);
        assert!(r.handle_packet(t0, 1, &[1]).is_err());
    }
}
