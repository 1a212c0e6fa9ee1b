//! Turn-tagged streaming playback: generated speech arrives as PCM frames
//! tagged with the bot turn they belong to, and the last stage before the
//! packetizer drops every frame of a turn older than the call's current
//! one. After a barge-in no buffer anywhere (the channel, the engine, this
//! source's own queue) can leak stale audio: whatever was queued is
//! thrown away at the moment it would have been sent.
//!
//! ```text
//!  runner ──TurnAudio──▶ channel ──▶ TurnSource (gate: turn >= current?) ──▶ encode ──▶ RTP
//!     └── TurnGate::set_turn(turn, now) ──────────▲ (shared atomic)
//! ```
//!
//! [`TurnGate`] is the shared part: the current turn (an atomic, so the
//! runner never waits on the media task), the turns played out to their
//! end (a watch channel), and the cut reports: for each bump, how long it
//! took until the first packet that no longer carried the old turn
//! (`barge_in_to_silence_ms`), and how many queued frames were dropped.
//! [`TurnSource`] is sans-IO: the media driver calls
//! [`TurnSource::next_frame`] once per packet time with that tick's `now`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::audio::AudioFrame;

/// Samples per 20 ms packet at the media rate.
const FRAME_SAMPLES: usize = 160;
/// Items the runner may queue ahead of the media task (about 20 s of
/// 20 ms frames); the runner waits when it is full.
pub const TURN_CHANNEL_DEPTH: usize = 1_000;

/// What the runner sends into a turn stream. Audio must be at the media
/// rate (8 kHz); chunks of any length are re-cut into 20 ms packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnAudio {
    /// Speech of `turn`.
    Pcm { turn: u64, samples: Vec<i16> },
    /// `turn` has no more audio: report it played once its last sample
    /// is sent.
    End { turn: u64 },
}

/// How a turn bump ended on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnCut {
    /// The turn the gate moved to.
    pub turn: u64,
    /// From the bump to the first packet without the old turn's audio.
    pub silence_after: Duration,
    /// Whether the old turn was audible when the bump came (a bump while
    /// nothing played is not a barge-in on the wire).
    pub was_playing: bool,
    /// Frames of older turns dropped at the gate because of this bump.
    pub dropped_frames: u64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Bumps not yet seen by the media task: (turn, when).
    bumps: Vec<(u64, Instant)>,
    cuts: Vec<TurnCut>,
}

/// The shared control of one call's turn stream.
#[derive(Debug)]
pub struct TurnGate {
    current: AtomicU64,
    pending: Mutex<Pending>,
    played_tx: watch::Sender<u64>,
    played_rx: watch::Receiver<u64>,
}

impl Default for TurnGate {
    fn default() -> Self {
        Self::new()
    }
}

impl TurnGate {
    pub fn new() -> Self {
        let (played_tx, played_rx) = watch::channel(0);
        Self {
            current: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
            played_tx,
            played_rx,
        }
    }

    /// The oldest turn still let through.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Moves the call to `turn` at `now`: from the next packet on, frames
    /// of older turns are dropped. The gate never moves back.
    pub fn set_turn(&self, turn: u64, now: Instant) {
        let old = self.current.fetch_max(turn, Ordering::AcqRel);
        if turn > old {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.bumps.push((turn, now));
        }
    }

    /// The cut reports since the last call.
    pub fn take_cuts(&self) -> Vec<TurnCut> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut p.cuts)
    }

    /// Watches the latest turn played out to its end.
    pub fn played(&self) -> watch::Receiver<u64> {
        self.played_rx.clone()
    }

    fn take_bumps(&self) -> Vec<(u64, Instant)> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut p.bumps)
    }

    fn push_cut(&self, cut: TurnCut) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.cuts.push(cut);
    }
}

/// The runner's end of a turn stream: the sender and the gate.
#[derive(Debug, Clone)]
pub struct TurnStreamHandle {
    pub audio: mpsc::Sender<TurnAudio>,
    pub gate: Arc<TurnGate>,
}

/// What a call's playback takes to start a turn stream.
#[derive(Debug)]
pub struct TurnStream {
    pub audio: mpsc::Receiver<TurnAudio>,
    pub gate: Arc<TurnGate>,
}

impl TurnStream {
    /// A connected pair: the runner's handle and the playback's stream.
    pub fn channel() -> (TurnStreamHandle, TurnStream) {
        let (tx, rx) = mpsc::channel(TURN_CHANNEL_DEPTH);
        let gate = Arc::new(TurnGate::new());
        (
            TurnStreamHandle {
                audio: tx,
                gate: gate.clone(),
            },
            TurnStream { audio: rx, gate },
        )
    }
}

/// The media driver's side: one 20 ms frame per packet time, silence when
/// nothing is queued, the end when the runner drops its sender.
#[derive(Debug)]
pub struct TurnSource {
    rx: mpsc::Receiver<TurnAudio>,
    gate: Arc<TurnGate>,
    /// Samples of `queue_turn` waiting to go out.
    queue: VecDeque<i16>,
    queue_turn: u64,
    /// An `End` of `queue_turn` is behind the queued samples.
    queue_ends: bool,
    /// The turn of the last packet that carried audio, if the last packet
    /// carried audio.
    audible: Option<u64>,
    /// Bumps waiting for their first packet without old audio.
    open_cuts: Vec<(u64, Instant, bool)>,
    dropped_since_bump: u64,
    dropped_total: u64,
    closed: bool,
}

impl TurnSource {
    pub fn new(stream: TurnStream) -> Self {
        Self {
            rx: stream.audio,
            gate: stream.gate,
            queue: VecDeque::new(),
            queue_turn: 0,
            queue_ends: false,
            audible: None,
            open_cuts: Vec::new(),
            dropped_since_bump: 0,
            dropped_total: 0,
            closed: false,
        }
    }

    /// Frames of older turns dropped so far.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_total
    }

    fn drop_samples(&mut self, n: usize) {
        let frames = n.div_ceil(FRAME_SAMPLES) as u64;
        self.dropped_since_bump += frames;
        self.dropped_total += frames;
    }

    fn finish_turn(&mut self) {
        if self.queue_ends {
            self.queue_ends = false;
            self.gate.played_tx.send_if_modified(|v| {
                let newer = self.queue_turn > *v;
                if newer {
                    *v = self.queue_turn;
                }
                newer
            });
        }
    }

    /// Pulls from the channel until the queue holds a packet of a current
    /// turn, dropping anything older on the way.
    fn refill(&mut self, current: u64) {
        if self.queue_turn < current && !self.queue.is_empty() {
            let n = self.queue.len();
            self.queue.clear();
            self.drop_samples(n);
            self.queue_ends = false;
        }
        while self.queue.len() < FRAME_SAMPLES && !self.queue_ends {
            match self.rx.try_recv() {
                Ok(TurnAudio::Pcm { turn, samples }) => {
                    if turn < current {
                        self.drop_samples(samples.len());
                        continue;
                    }
                    if turn != self.queue_turn {
                        // A new turn starts; a partial packet of the one
                        // before is not worth keeping.
                        self.queue.clear();
                        self.queue_turn = turn;
                        self.queue_ends = false;
                    }
                    self.queue.extend(samples);
                }
                Ok(TurnAudio::End { turn }) => {
                    if turn >= current && turn == self.queue_turn {
                        self.queue_ends = true;
                    } else if turn >= current {
                        // A turn that ended without audio.
                        self.queue_turn = turn;
                        self.queue.clear();
                        self.queue_ends = true;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    /// The frame for the packet sent at `now`; `None` once the runner has
    /// closed the stream and everything queued is out.
    pub fn next_frame(&mut self, now: Instant) -> Option<AudioFrame> {
        for (turn, at) in self.gate.take_bumps() {
            let was_playing = self.audible.is_some_and(|t| t < turn);
            self.open_cuts.push((turn, at, was_playing));
        }
        let current = self.gate.current();
        self.refill(current);
        let mut frame = AudioFrame::silence(crate::media::MEDIA_SAMPLE_RATE);
        let mut carried = None;
        if self.queue_turn >= current && !self.queue.is_empty() {
            let n = self.queue.len().min(FRAME_SAMPLES);
            for (out, s) in frame.samples.iter_mut().zip(self.queue.drain(..n)) {
                *out = s;
            }
            carried = Some(self.queue_turn);
        }
        if self.queue.is_empty() {
            self.finish_turn();
        }
        // Every bump is answered by this packet: it carries no older turn.
        for (turn, at, was_playing) in self.open_cuts.drain(..) {
            self.gate.push_cut(TurnCut {
                turn,
                silence_after: now.saturating_duration_since(at),
                was_playing,
                dropped_frames: self.dropped_since_bump,
            });
            self.dropped_since_bump = 0;
        }
        self.audible = carried;
        if carried.is_none() && self.closed && self.queue.is_empty() {
            return None;
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(turn: u64, value: i16, frames: usize) -> TurnAudio {
        TurnAudio::Pcm {
            turn,
            samples: vec![value; FRAME_SAMPLES * frames],
        }
    }

    fn first(f: &Option<AudioFrame>) -> i16 {
        f.as_ref().map_or(-1, |f| f.samples[0])
    }

    #[test]
    fn plays_in_order_rechunks_and_reports_the_end_of_a_turn() {
        let t0 = Instant::now();
        let (h, s) = TurnStream::channel();
        let mut src = TurnSource::new(s);
        let played = h.gate.played();
        h.gate.set_turn(1, t0);
        h.audio
            .try_send(TurnAudio::Pcm {
                turn: 1,
                samples: vec![7; 200],
            })
            .expect("send");
        h.audio.try_send(TurnAudio::End { turn: 1 }).expect("send");
        let a = src.next_frame(t0);
        assert_eq!(first(&a), 7);
        assert_eq!(*played.borrow(), 0, "40 samples are still queued");
        let b = src.next_frame(t0 + Duration::from_millis(20));
        let b = b.expect("frame");
        assert_eq!(&b.samples[..40], &[7; 40]);
        assert_eq!(&b.samples[40..], &[0; 120], "padded with silence");
        assert_eq!(*played.borrow(), 1);
        // Nothing queued: silence, the stream stays open.
        assert_eq!(first(&src.next_frame(t0)), 0);
        drop(h);
        assert_eq!(src.next_frame(t0), None);
    }

    #[test]
    fn a_bump_drops_every_queued_frame_of_the_old_turn_at_the_next_packet() {
        let t0 = Instant::now();
        let (h, s) = TurnStream::channel();
        let mut src = TurnSource::new(s);
        h.gate.set_turn(1, t0);
        h.audio.try_send(pcm(1, 5, 10)).expect("send");
        assert_eq!(first(&src.next_frame(t0)), 5);
        assert_eq!(first(&src.next_frame(t0 + Duration::from_millis(20))), 5);
        assert_eq!(h.gate.take_cuts().len(), 1, "the start of turn 1");
        // Barge-in 7 ms before the next packet; more old audio arrives late.
        let bump = t0 + Duration::from_millis(33);
        h.gate.set_turn(2, bump);
        h.audio.try_send(pcm(1, 5, 3)).expect("late old audio");
        let next = src.next_frame(t0 + Duration::from_millis(40));
        assert_eq!(first(&next), 0, "silence, not the old turn");
        let cuts = h.gate.take_cuts();
        assert_eq!(
            cuts,
            vec![TurnCut {
                turn: 2,
                silence_after: Duration::from_millis(7),
                was_playing: true,
                dropped_frames: 11,
            }]
        );
        // The new turn plays; nothing of turn 1 ever follows.
        h.audio.try_send(pcm(1, 5, 2)).expect("stale");
        h.audio.try_send(pcm(2, 9, 1)).expect("new");
        assert_eq!(first(&src.next_frame(t0 + Duration::from_millis(60))), 9);
        assert_eq!(first(&src.next_frame(t0 + Duration::from_millis(80))), 0);
        assert_eq!(src.dropped_frames(), 13);
        // The gate never moves back.
        h.gate.set_turn(1, t0);
        assert_eq!(h.gate.current(), 2);
    }

    #[test]
    fn a_bump_while_silent_is_not_a_cut_on_the_wire() {
        let t0 = Instant::now();
        let (h, s) = TurnStream::channel();
        let mut src = TurnSource::new(s);
        assert_eq!(first(&src.next_frame(t0)), 0);
        h.gate.set_turn(3, t0);
        src.next_frame(t0 + Duration::from_millis(20));
        let cuts = h.gate.take_cuts();
        assert_eq!(cuts.len(), 1);
        assert!(!cuts[0].was_playing);
        assert!(h.gate.take_cuts().is_empty());
    }

    #[test]
    fn an_empty_turn_that_ends_is_reported_played() {
        let t0 = Instant::now();
        let (h, s) = TurnStream::channel();
        let mut src = TurnSource::new(s);
        let played = h.gate.played();
        h.gate.set_turn(4, t0);
        h.audio.try_send(TurnAudio::End { turn: 4 }).expect("send");
        src.next_frame(t0);
        assert_eq!(*played.borrow(), 4);
    }
}
