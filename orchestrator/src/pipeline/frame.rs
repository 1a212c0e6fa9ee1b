//! Frames, the turn id, and the queue between two stages.
//!
//! A [`FrameQueue`] keeps system frames apart from data frames: system
//! frames always leave first, and an [`SystemFrame::Interrupt`] pushed into
//! the queue cancels every queued data frame but no system frame.

use std::collections::VecDeque;
use std::fmt;

use voxgate_stt_tts::nlu::IntentResult;

/// Identifies one bot turn. Every generated text or audio frame carries
/// the turn it belongs to; a barge-in moves the counter on, and every
/// stage downstream drops frames of an older turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TurnId(pub u64);

impl TurnId {
    /// The turn after this one.
    pub fn next(self) -> TurnId {
        TurnId(self.0.wrapping_add(1))
    }
}

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "turn {}", self.0)
    }
}

/// The turn counter of one call. Only the turn-taking stage moves it.
#[derive(Debug, Clone, Default)]
pub struct TurnCounter {
    current: TurnId,
}

impl TurnCounter {
    pub fn current(&self) -> TurnId {
        self.current
    }

    /// Starts a new turn and returns it.
    pub fn bump(&mut self) -> TurnId {
        self.current = self.current.next();
        self.current
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller was silent for the end-of-utterance time.
    Silence,
    /// The utterance reached the longest allowed length.
    MaxLength,
}

/// Control frames. They jump the queue and survive interruptions.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemFrame {
    /// Barge-in: frames of turns before `to` must go.
    Interrupt { from: TurnId, to: TurnId },
    /// The VAD heard the caller start speaking (after the minimum speech
    /// time), `start_ms` of media time from the start of the stream.
    SpeechStarted { start_ms: u64 },
    /// The caller's utterance ended; STT should settle its final now.
    EndOfUtterance {
        end_ms: u64,
        speech_ms: u64,
        reason: EndReason,
    },
    /// A key the caller pressed.
    Dtmf(char),
    /// The conversation is over; stages flush and stop.
    End,
}

/// A transcript, partial or final.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptFrame {
    pub text: String,
    /// 0..1.
    pub confidence: f32,
    pub is_final: bool,
}

/// What travels between stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Caller audio (inbound), tagged with the turn current when it arrived.
    Audio {
        turn: TurnId,
        samples: Vec<i16>,
        rate: u32,
    },
    Transcript(TranscriptFrame),
    /// The intent engine's decision on the utterance that ended `turn`.
    Intent {
        turn: TurnId,
        result: IntentResult,
    },
    /// Text the bot is about to say in `turn`.
    ReplyText {
        turn: TurnId,
        text: String,
    },
    /// Synthesised speech for `turn`, at `rate`.
    TtsAudio {
        turn: TurnId,
        samples: Vec<i16>,
        rate: u32,
    },
    System(SystemFrame),
}

impl Frame {
    /// The turn a generated frame belongs to; `None` for frames that are
    /// not generated output (transcripts, system frames).
    pub fn turn(&self) -> Option<TurnId> {
        match self {
            Frame::Audio { turn, .. }
            | Frame::Intent { turn, .. }
            | Frame::ReplyText { turn, .. }
            | Frame::TtsAudio { turn, .. } => Some(*turn),
            Frame::Transcript(_) | Frame::System(_) => None,
        }
    }

    pub fn is_system(&self) -> bool {
        matches!(self, Frame::System(_))
    }
}

/// The queue between two stages: system frames first, and an interrupt
/// cancels the data frames queued so far.
#[derive(Debug, Default)]
pub struct FrameQueue {
    system: VecDeque<SystemFrame>,
    data: VecDeque<Frame>,
    cancelled: u64,
}

impl FrameQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, frame: Frame) {
        match frame {
            Frame::System(s) => {
                if matches!(s, SystemFrame::Interrupt { .. }) {
                    self.cancelled += self.data.len() as u64;
                    self.data.clear();
                }
                self.system.push_back(s);
            }
            data => self.data.push_back(data),
        }
    }

    /// The next frame: any system frame before any data frame.
    pub fn pop(&mut self) -> Option<Frame> {
        match self.system.pop_front() {
            Some(s) => Some(Frame::System(s)),
            None => self.data.pop_front(),
        }
    }

    pub fn len(&self) -> usize {
        self.system.len() + self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Data frames an interrupt has cancelled so far.
    pub fn cancelled(&self) -> u64 {
        self.cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tts(turn: u64) -> Frame {
        Frame::TtsAudio {
            turn: TurnId(turn),
            samples: vec![0; 160],
            rate: 8_000,
        }
    }

    #[test]
    fn system_frames_jump_the_queue() {
        let mut q = FrameQueue::new();
        q.push(tts(1));
        q.push(Frame::System(SystemFrame::Dtmf('5')));
        assert_eq!(q.pop(), Some(Frame::System(SystemFrame::Dtmf('5'))));
        assert_eq!(q.pop(), Some(tts(1)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn an_interrupt_cancels_data_but_keeps_system_frames() {
        let mut q = FrameQueue::new();
        q.push(Frame::System(SystemFrame::SpeechStarted { start_ms: 40 }));
        q.push(tts(1));
        q.push(tts(1));
        q.push(Frame::System(SystemFrame::Interrupt {
            from: TurnId(1),
            to: TurnId(2),
        }));
        q.push(tts(2));
        assert_eq!(q.cancelled(), 2);
        assert_eq!(
            q.pop(),
            Some(Frame::System(SystemFrame::SpeechStarted { start_ms: 40 }))
        );
        assert_eq!(
            q.pop(),
            Some(Frame::System(SystemFrame::Interrupt {
                from: TurnId(1),
                to: TurnId(2)
            }))
        );
        assert_eq!(q.pop(), Some(tts(2)));
        assert!(q.is_empty());
    }

    #[test]
    fn turn_counter_moves_forward() {
        let mut c = TurnCounter::default();
        assert_eq!(c.current(), TurnId(0));
        assert_eq!(c.bump(), TurnId(1));
        assert_eq!(c.current(), TurnId(1));
        assert_eq!(tts(3).turn(), Some(TurnId(3)));
        assert_eq!(Frame::System(SystemFrame::End).turn(), None);
    }
}
