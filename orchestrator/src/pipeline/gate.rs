//! The outbound gate: the last stage before the packetizer. It drops every
//! generated frame of a turn older than the current one, so audio queued
//! anywhere before it cannot leak out after a barge-in.

use super::frame::{Frame, TurnId};

/// Drops frames of stale turns and counts them.
#[derive(Debug, Default)]
pub struct OutboundGate {
    current: TurnId,
    passed: u64,
    dropped: u64,
}

impl OutboundGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// The oldest turn still let through.
    pub fn current(&self) -> TurnId {
        self.current
    }

    /// Moves the gate to `turn` (a new bot turn or a barge-in). The gate
    /// never moves back.
    pub fn handle_turn(&mut self, turn: TurnId) {
        self.current = self.current.max(turn);
    }

    /// Whether `frame` may go out. Frames without a turn (system frames,
    /// transcripts) always may.
    pub fn admit(&mut self, frame: &Frame) -> bool {
        let ok = frame.turn().is_none_or(|t| t >= self.current);
        if ok {
            self.passed += 1;
        } else {
            self.dropped += 1;
        }
        ok
    }

    /// Frames let through and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.passed, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::frame::SystemFrame;

    #[test]
    fn drops_older_turns_only() {
        let mut g = OutboundGate::new();
        let f = |t| Frame::TtsAudio {
            turn: TurnId(t),
            samples: vec![1; 160],
            rate: 8_000,
        };
        g.handle_turn(TurnId(2));
        assert!(!g.admit(&f(1)));
        assert!(g.admit(&f(2)));
        assert!(g.admit(&f(3)));
        assert!(g.admit(&Frame::System(SystemFrame::End)));
        g.handle_turn(TurnId(1));
        assert_eq!(g.current(), TurnId(2), "the gate never moves back");
        assert!(!g.admit(&Frame::ReplyText {
            turn: TurnId(1),
            text: "old".into()
        }));
        assert_eq!(g.counts(), (3, 2));
    }
}
