//! A fixed-depth playout buffer for one inbound audio stream.
//!
//! The first packet sets the playout schedule: frame `n` is due at
//! `first_arrival + depth + n * frame`. Each due frame takes the next
//! sequence number from the buffer. A missing one is concealed (the last
//! frame again, halved each time, for a few frames, then silence); a packet
//! that arrives after its frame time is dropped as late. After a run of
//! empty frames the buffer goes idle and the next packet re-anchors the
//! stream, so a peer that pauses (hold, silence suppression) or restarts
//! its sequence is picked up cleanly.

use std::time::{Duration, Instant};

/// Tuning of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// How long the first packet waits before it is played.
    pub depth: Duration,
    /// Playout period, the packet time.
    pub frame: Duration,
    /// Packets held at most; more than this many ahead resynchronises.
    pub capacity: usize,
    /// Concealed frames after a loss before silence.
    pub conceal_frames: u32,
    /// Empty frames in a row after which the buffer goes idle.
    pub idle_after_frames: u32,
}

impl JitterConfig {
    /// A buffer of `depth` for 20 ms packets.
    pub fn with_depth(depth: Duration) -> Self {
        Self {
            depth,
            frame: Duration::from_millis(20),
            capacity: 32,
            conceal_frames: 3,
            idle_after_frames: 10,
        }
    }

    fn depth_frames(&self) -> usize {
        let frame = self.frame.as_nanos().max(1);
        self.depth.as_nanos().div_ceil(frame) as usize
    }
}

/// One frame of playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterOutput<'a> {
    /// The packet due now.
    Audio(&'a [i16]),
    /// A stand-in for a missing packet.
    Concealed(&'a [i16]),
    /// Nothing to play: a frame of silence.
    Silence,
}

impl<'a> JitterOutput<'a> {
    /// The samples of the frame, `None` for silence.
    pub fn samples(&self) -> Option<&'a [i16]> {
        match self {
            JitterOutput::Audio(s) | JitterOutput::Concealed(s) => Some(s),
            JitterOutput::Silence => None,
        }
    }
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Stored,
    /// Its frame time has passed.
    Late,
    Duplicate,
    /// Too far ahead of playout: the buffer was flushed and restarted on it.
    Resynced,
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    /// Frames whose packet was missing at its playout time, counted when
    /// the stream goes on (a pause that ends in idle is not loss).
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    pub resyncs: u64,
    /// Packets dropped because the buffer held too many (sender clock
    /// faster than ours).
    pub overflow: u64,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    seq: Option<u64>,
    samples: Vec<i16>,
}

/// Reorders, dedupes and times the playout of one stream.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Slot>,
    stored: usize,
    next_seq: u64,
    anchor: Option<Instant>,
    tick: u64,
    /// Frames before this instant are silence (waiting after a restart).
    resume_at: Option<Instant>,
    idle: bool,
    missing_run: u32,
    pending_missing: u64,
    last: Vec<i16>,
    conceal: Vec<i16>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let capacity = cfg.capacity.max(cfg.depth_frames() + 2);
        Self {
            cfg: JitterConfig { capacity, ..cfg },
            slots: vec![Slot::default(); capacity],
            stored: 0,
            next_seq: 0,
            anchor: None,
            tick: 0,
            resume_at: None,
            idle: true,
            missing_run: 0,
            pending_missing: 0,
            last: Vec::new(),
            conceal: Vec::new(),
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets waiting to be played.
    pub fn len(&self) -> usize {
        self.stored
    }

    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    fn slot_index(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }

    /// Adds the decoded samples of the packet with extended sequence number
    /// `ext_seq`, arrived at `now`.
    pub fn handle_packet(&mut self, now: Instant, ext_seq: u64, samples: &[i16]) -> InsertOutcome {
        let mut outcome = InsertOutcome::Stored;
        if self.anchor.is_none() {
            self.anchor = Some(now + self.cfg.depth);
            self.tick = 0;
            self.next_seq = ext_seq;
            self.idle = false;
        } else if self.idle {
            self.restart(now, ext_seq);
        } else if ext_seq < self.next_seq {
            self.stats.late += 1;
            return InsertOutcome::Late;
        } else if ext_seq >= self.next_seq + self.slots.len() as u64 {
            self.stats.resyncs += 1;
            self.restart(now, ext_seq);
            outcome = InsertOutcome::Resynced;
        }
        let i = self.slot_index(ext_seq);
        if self.slots[i].seq == Some(ext_seq) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        if self.slots[i].seq.is_none() {
            self.stored += 1;
        }
        let slot = &mut self.slots[i];
        slot.seq = Some(ext_seq);
        slot.samples.clear();
        slot.samples.extend_from_slice(samples);
        // Bound latency when the sender runs fast: keep at most twice the
        // depth plus one packet of slack.
        let limit = self.cfg.depth_frames() * 2 + 1;
        while self.stored > limit {
            let j = self.slot_index(self.next_seq);
            if self.slots[j].seq.take().is_some() {
                self.stored -= 1;
                self.stats.overflow += 1;
            }
            self.next_seq += 1;
        }
        outcome
    }

    fn restart(&mut self, now: Instant, ext_seq: u64) {
        for s in &mut self.slots {
            s.seq = None;
        }
        self.stored = 0;
        self.next_seq = ext_seq;
        self.idle = false;
        self.missing_run = 0;
        self.pending_missing = 0;
        self.resume_at = Some(now + self.cfg.depth);
    }

    /// When the next frame is due; `None` before the first packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.anchor.map(|a| self.tick_time(a, self.tick))
    }

    fn tick_time(&self, anchor: Instant, tick: u64) -> Instant {
        anchor + self.cfg.frame * u32::try_from(tick).unwrap_or(u32::MAX)
    }

    /// The frame due at `now`, if one is. Call again until `None`.
    pub fn poll_output(&mut self, now: Instant) -> Option<JitterOutput<'_>> {
        let anchor = self.anchor?;
        let due = self.tick_time(anchor, self.tick);
        if now < due {
            return None;
        }
        self.tick += 1;
        if let Some(resume) = self.resume_at {
            if due < resume {
                return Some(JitterOutput::Silence);
            }
            self.resume_at = None;
        }
        if self.idle {
            return Some(JitterOutput::Silence);
        }
        let i = self.slot_index(self.next_seq);
        if self.slots[i].seq == Some(self.next_seq) {
            self.slots[i].seq = None;
            self.stored -= 1;
            self.next_seq += 1;
            self.missing_run = 0;
            self.stats.lost += self.pending_missing;
            self.pending_missing = 0;
            std::mem::swap(&mut self.last, &mut self.slots[i].samples);
            self.stats.played += 1;
            return Some(JitterOutput::Audio(&self.last));
        }
        // The packet for this frame is missing; its time has now passed.
        self.next_seq += 1;
        self.missing_run += 1;
        self.pending_missing += 1;
        if self.stored == 0 && self.missing_run >= self.cfg.idle_after_frames {
            self.idle = true;
            self.pending_missing = 0;
            return Some(JitterOutput::Silence);
        }
        if self.missing_run > self.cfg.conceal_frames || self.last.is_empty() {
            return Some(JitterOutput::Silence);
        }
        self.stats.concealed += 1;
        let shift = self.missing_run;
        self.conceal.clear();
        self.conceal.extend(self.last.iter().map(|s| s >> shift));
        Some(JitterOutput::Concealed(&self.conceal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn frame(seq: u64) -> Vec<i16> {
        vec![seq as i16; 160]
    }

    /// Sends packets `0..n` every 20 ms (with per-packet extra delays and
    /// drops), polls playout every 1 ms and returns what was played.
    fn run(
        depth_ms: u64,
        n: u64,
        delay_ms: impl Fn(u64) -> Option<Vec<u64>>,
    ) -> (Vec<String>, JitterStats) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::with_depth(Duration::from_millis(depth_ms)));
        let mut arrivals: Vec<(u64, u64)> = Vec::new();
        for seq in 0..n {
            if let Some(delays) = delay_ms(seq) {
                for d in delays {
                    arrivals.push((seq * 20 + d, seq));
                }
            }
        }
        arrivals.sort();
        let mut out = Vec::new();
        let mut next = 0;
        for ms in 0..(n * 20 + 400) {
            let now = t0 + Duration::from_millis(ms);
            while next < arrivals.len() && arrivals[next].0 <= ms {
                jb.handle_packet(now, arrivals[next].1, &frame(arrivals[next].1));
                next += 1;
            }
            while let Some(o) = jb.poll_output(now) {
                out.push(match o {
                    JitterOutput::Audio(s) => format!("{}", s[0]),
                    JitterOutput::Concealed(_) => "c".to_string(),
                    JitterOutput::Silence => ".".to_string(),
                });
            }
        }
        // Trailing silence and concealment after the stream ends.
        while out.last().is_some_and(|s| s == "." || s == "c") {
            out.pop();
        }
        (out, jb.stats())
    }

    fn seqs(r: std::ops::Range<u64>) -> Vec<String> {
        r.map(|s| s.to_string()).collect()
    }

    #[test]
    fn in_order_stream_plays_every_frame_after_the_depth() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::with_depth(40 * MS));
        assert_eq!(jb.poll_timeout(), None);
        jb.handle_packet(t0, 5, &frame(5));
        assert_eq!(jb.poll_timeout(), Some(t0 + 40 * MS));
        assert!(jb.poll_output(t0 + 39 * MS).is_none());
        let (out, stats) = run(40, 50, |_| Some(vec![0]));
        assert_eq!(out, seqs(0..50));
        assert_eq!(stats.played, 50);
        assert_eq!(stats.lost + stats.late, 0);
        // Only the tail after the last packet is concealed.
        assert_eq!(stats.concealed, 3);
    }

    #[test]
    fn reordering_within_the_depth_is_repaired() {
        // Odd packets are 30 ms late, so they arrive after the next even.
        let (out, stats) = run(60, 60, |s| Some(vec![if s % 2 == 1 { 30 } else { 0 }]));
        assert_eq!(out, seqs(0..60));
        assert_eq!(stats.late, 0);
    }

    #[test]
    fn duplicates_are_played_once() {
        let (out, stats) = run(40, 30, |s| {
            Some(if s % 3 == 0 { vec![0, 5, 10] } else { vec![0] })
        });
        assert_eq!(out, seqs(0..30));
        assert_eq!(stats.duplicates, 20);
    }

    #[test]
    fn losses_are_concealed_then_silenced() {
        // Lose 10, and 20..=24 (a 100 ms burst).
        let (out, stats) = run(40, 40, |s| {
            if s == 10 || (20..25).contains(&s) {
                None
            } else {
                Some(vec![0])
            }
        });
        let mut expect = seqs(0..10);
        expect.push("c".into());
        expect.extend(seqs(11..20));
        expect.extend(["c", "c", "c", ".", "."].map(String::from));
        expect.extend(seqs(25..40));
        assert_eq!(out, expect);
        assert_eq!(stats.lost, 6);
        // 4 in the stream, 3 in the tail after the last packet.
        assert_eq!(stats.concealed, 7);
    }

    #[test]
    fn concealment_is_attenuated() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::with_depth(20 * MS));
        jb.handle_packet(t0, 0, &[800; 160]);
        jb.handle_packet(t0, 3, &[0; 160]);
        assert_eq!(
            jb.poll_output(t0 + 20 * MS)
                .and_then(|o| o.samples().map(|s| s[0])),
            Some(800)
        );
        assert_eq!(
            jb.poll_output(t0 + 40 * MS),
            Some(JitterOutput::Concealed(&[400; 160]))
        );
        assert_eq!(
            jb.poll_output(t0 + 60 * MS),
            Some(JitterOutput::Concealed(&[200; 160]))
        );
    }

    #[test]
    fn late_packets_are_dropped() {
        // Packet 7 is 100 ms late: past its frame time with a 40 ms depth.
        let (out, stats) = run(40, 20, |s| Some(vec![if s == 7 { 100 } else { 0 }]));
        let mut expect = seqs(0..7);
        expect.push("c".into());
        expect.extend(seqs(8..20));
        assert_eq!(out, expect);
        assert_eq!(stats.late, 1);
    }

    #[test]
    fn a_pause_goes_idle_and_the_next_packet_restarts_playout() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::with_depth(40 * MS));
        let mut played = Vec::new();
        let mut send_poll = |jb: &mut JitterBuffer, ms: u64, seq: Option<u64>| {
            let now = t0 + Duration::from_millis(ms);
            if let Some(seq) = seq {
                jb.handle_packet(now, seq, &frame(seq));
            }
            while let Some(o) = jb.poll_output(now) {
                if let JitterOutput::Audio(s) = o {
                    played.push(s[0] as u64);
                }
            }
        };
        for i in 0..5 {
            send_poll(&mut jb, i * 20, Some(i));
        }
        // Two seconds of nothing, then the peer resumes with a new sequence.
        for ms in (100..2100).step_by(10) {
            send_poll(&mut jb, ms, None);
        }
        for i in 0..5 {
            send_poll(&mut jb, 2100 + i * 20, Some(3000 + i));
        }
        for ms in (2200..2400).step_by(10) {
            send_poll(&mut jb, ms, None);
        }
        assert_eq!(played, [0, 1, 2, 3, 4, 3000, 3001, 3002, 3003, 3004]);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn a_fast_sender_cannot_grow_latency_without_bound() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::with_depth(40 * MS));
        for seq in 0..20 {
            jb.handle_packet(t0, seq, &frame(seq));
        }
        assert!(jb.len() <= 5, "{}", jb.len());
        assert!(jb.stats().overflow >= 15);
    }
}
