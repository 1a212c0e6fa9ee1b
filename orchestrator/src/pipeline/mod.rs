//! The AI node's sans-IO frame pipeline.
//!
//! ```text
//!  caller audio 16 kHz ─▶ Vad ─▶ SpeechStarted / EndOfUtterance ─┐
//!  transcripts ─────────────────────────────▶ TurnTaking ────────┤─▶ out queue ─▶ driver
//!  bot ReplyText / TtsAudio ─▶ OutboundGate (drops old turns) ───┘   (system frames first;
//!                                                                    Interrupt cancels data)
//! ```
//!
//! Stages are synchronous and take `now`; the driver ([`crate::runner`])
//! feeds them, drains [`Pipeline::poll_output`], and sleeps until
//! [`Pipeline::poll_timeout`].
//!
//! - [`frame`]: [`Frame`], [`SystemFrame`], [`TurnId`], [`FrameQueue`].
//! - [`vad`]: earshot VAD and endpointing on media time.
//! - [`turn`]: turn-taking and barge-in with backchannel words.
//! - [`gate`]: the outbound gate that drops frames of older turns.

pub mod frame;
pub mod gate;
pub mod turn;
pub mod vad;

use std::time::Instant;

pub use frame::{EndReason, Frame, FrameQueue, SystemFrame, TranscriptFrame, TurnCounter, TurnId};
pub use gate::OutboundGate;
pub use turn::{BargeInCause, BargeInConfig, TurnEvent, TurnTaking};
pub use vad::{EarshotScorer, Vad, VadConfig, VadEvent, VoiceScorer, VAD_RATE, VAD_WINDOW};

/// Settings of the whole pipeline.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    pub vad: VadConfig,
    pub barge_in: BargeInConfig,
}

/// The stages of one call's AI node, chained.
#[derive(Debug)]
pub struct Pipeline<S: VoiceScorer = EarshotScorer> {
    vad: Vad<S>,
    turns: TurnTaking,
    gate: OutboundGate,
    out: FrameQueue,
    /// Barge-ins so far, for records.
    interruptions: u32,
}

impl Pipeline<EarshotScorer> {
    /// A pipeline over the earshot VAD.
    pub fn earshot(config: PipelineConfig) -> Self {
        Self::new(EarshotScorer::new(), config)
    }
}

impl<S: VoiceScorer> Pipeline<S> {
    pub fn new(scorer: S, config: PipelineConfig) -> Self {
        Self {
            vad: Vad::new(scorer, config.vad),
            turns: TurnTaking::new(config.barge_in),
            gate: OutboundGate::new(),
            out: FrameQueue::new(),
            interruptions: 0,
        }
    }

    /// The current turn; generated frames of older turns are dropped.
    pub fn current_turn(&self) -> TurnId {
        self.turns.current_turn()
    }

    /// The bot turn playing now, if any.
    pub fn bot_turn(&self) -> Option<TurnId> {
        self.turns.bot_turn()
    }

    /// Whether the caller is in the middle of an utterance.
    pub fn caller_speaking(&self) -> bool {
        self.vad.in_speech()
    }

    pub fn interruptions(&self) -> u32 {
        self.interruptions
    }

    /// Caller audio at [`VAD_RATE`].
    pub fn handle_caller_audio(&mut self, now: Instant, samples: &[i16]) {
        self.vad.handle_audio(samples);
        while let Some(ev) = self.vad.poll_event() {
            match ev {
                VadEvent::SpeechStarted { start_ms } => {
                    self.out
                        .push(Frame::System(SystemFrame::SpeechStarted { start_ms }));
                    self.turns.handle_speech_started(now);
                }
                VadEvent::SpeechEnded {
                    end_ms,
                    speech_ms,
                    reason,
                } => {
                    self.out.push(Frame::System(SystemFrame::EndOfUtterance {
                        end_ms,
                        speech_ms,
                        reason,
                    }));
                    self.turns.handle_speech_ended(now);
                }
            }
            self.drain_turn_events();
        }
    }

    /// A transcript from STT. Finals go out for the intent stage unless
    /// they were only backchannel over the bot.
    pub fn handle_transcript(&mut self, now: Instant, t: TranscriptFrame) {
        self.turns.handle_transcript(now, &t.text, t.is_final);
        let swallowed = self.drain_turn_events();
        if !swallowed {
            self.out.push(Frame::Transcript(t));
        }
    }

    pub fn handle_dtmf(&mut self, now: Instant, digit: char) {
        self.turns.handle_dtmf(now, digit);
        self.drain_turn_events();
        self.out.push(Frame::System(SystemFrame::Dtmf(digit)));
    }

    /// Starts a bot turn; its frames must carry the returned id.
    pub fn begin_bot_turn(&mut self, now: Instant) -> TurnId {
        let turn = self.turns.begin_bot_turn(now);
        self.gate.handle_turn(turn);
        turn
    }

    /// Generated output (reply text, TTS audio) on its way to the caller.
    /// Frames of an older turn are dropped here.
    pub fn handle_bot_output(&mut self, _now: Instant, frame: Frame) {
        if self.gate.admit(&frame) {
            self.out.push(frame);
        }
    }

    /// The bot turn finished playing to its end.
    pub fn handle_bot_finished(&mut self, now: Instant, turn: TurnId) {
        self.turns.handle_bot_finished(now, turn);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.turns.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.turns.handle_timeout(now);
        self.drain_turn_events();
    }

    /// The next frame for the driver: system frames first.
    pub fn poll_output(&mut self) -> Option<Frame> {
        self.out.pop()
    }

    /// Frames the gate dropped, plus data frames an interrupt cancelled.
    pub fn stale_frames_dropped(&self) -> u64 {
        self.gate.counts().1 + self.out.cancelled()
    }

    /// Applies turn events; `true` when a backchannel was swallowed.
    fn drain_turn_events(&mut self) -> bool {
        let mut swallowed = false;
        while let Some(ev) = self.turns.poll_event() {
            match ev {
                TurnEvent::Interrupt { from, to, cause } => {
                    tracing::debug!(%from, %to, ?cause, "barge-in");
                    self.interruptions += 1;
                    self.gate.handle_turn(to);
                    self.out
                        .push(Frame::System(SystemFrame::Interrupt { from, to }));
                }
                TurnEvent::BackchannelIgnored { text } => {
                    tracing::debug!(%text, "backchannel ignored");
                    swallowed = true;
                }
            }
        }
        swallowed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::vad::tests::{loud, quiet, LoudnessScorer};
    use super::*;

    fn tts(turn: TurnId) -> Frame {
        Frame::TtsAudio {
            turn,
            samples: vec![100; 160],
            rate: 8_000,
        }
    }

    fn drain(p: &mut Pipeline<LoudnessScorer>) -> Vec<Frame> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    /// Feeds `audio` in 20 ms frames, advancing `now` by 20 ms each.
    fn feed(p: &mut Pipeline<LoudnessScorer>, now: &mut Instant, audio: &[i16]) {
        for chunk in audio.chunks(320) {
            *now += Duration::from_millis(20);
            p.handle_caller_audio(*now, chunk);
            if p.poll_timeout().is_some_and(|t| t <= *now) {
                p.handle_timeout(*now);
            }
        }
    }

    #[test]
    fn barge_in_cancels_queued_audio_and_the_gate_drops_late_frames() {
        let mut now = Instant::now();
        let mut p = Pipeline::new(LoudnessScorer, PipelineConfig::default());
        let turn = p.begin_bot_turn(now);
        for _ in 0..10 {
            p.handle_bot_output(now, tts(turn));
        }
        assert_eq!(p.poll_output(), Some(tts(turn)));
        // The caller talks over the bot: 160 ms to start, 600 ms more to interrupt.
        feed(&mut p, &mut now, &loud(800));
        let out = drain(&mut p);
        let next = TurnId(turn.0 + 1);
        assert_eq!(
            out,
            vec![
                Frame::System(SystemFrame::SpeechStarted { start_ms: 0 }),
                Frame::System(SystemFrame::Interrupt {
                    from: turn,
                    to: next
                }),
            ]
        );
        assert_eq!(p.current_turn(), next);
        assert_eq!(p.bot_turn(), None);
        // A TTS chunk of the old turn still in flight is dropped at the gate.
        p.handle_bot_output(now, tts(turn));
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.stale_frames_dropped(), 10);
        assert_eq!(p.interruptions(), 1);
        // The caller finishes; the utterance ends; the final goes to NLU.
        feed(&mut p, &mut now, &quiet(800));
        p.handle_transcript(
            now,
            TranscriptFrame {
                text: "stop, I want an agent".into(),
                confidence: 0.9,
                is_final: true,
            },
        );
        let out = drain(&mut p);
        assert!(
            matches!(
                out[0],
                Frame::System(SystemFrame::EndOfUtterance {
                    reason: EndReason::Silence,
                    ..
                })
            ),
            "{out:?}"
        );
        assert!(matches!(&out[1], Frame::Transcript(t) if t.is_final));
        // The reply's new turn flows.
        let reply = p.begin_bot_turn(now);
        p.handle_bot_output(now, tts(reply));
        assert_eq!(drain(&mut p), vec![tts(reply)]);
    }

    #[test]
    fn a_backchannel_over_the_bot_is_swallowed_and_audio_keeps_flowing() {
        let mut now = Instant::now();
        let mut p = Pipeline::new(LoudnessScorer, PipelineConfig::default());
        let turn = p.begin_bot_turn(now);
        feed(&mut p, &mut now, &loud(300));
        p.handle_transcript(
            now,
            TranscriptFrame {
                text: "uh-huh".into(),
                confidence: 0.8,
                is_final: false,
            },
        );
        feed(&mut p, &mut now, &quiet(800));
        p.handle_transcript(
            now,
            TranscriptFrame {
                text: "uh-huh".into(),
                confidence: 0.8,
                is_final: true,
            },
        );
        p.handle_bot_output(now, tts(turn));
        let out = drain(&mut p);
        assert!(
            !out.iter()
                .any(|f| matches!(f, Frame::System(SystemFrame::Interrupt { .. }))),
            "{out:?}"
        );
        assert!(
            !out.iter()
                .any(|f| matches!(f, Frame::Transcript(t) if t.is_final)),
            "{out:?}"
        );
        assert_eq!(out.last(), Some(&tts(turn)));
        assert_eq!(p.bot_turn(), Some(turn));
    }

    #[test]
    fn dtmf_over_the_bot_interrupts_and_is_forwarded() {
        let now = Instant::now();
        let mut p = Pipeline::new(LoudnessScorer, PipelineConfig::default());
        let turn = p.begin_bot_turn(now);
        p.handle_bot_output(now, tts(turn));
        p.handle_dtmf(now, '0');
        let out = drain(&mut p);
        assert_eq!(
            out,
            vec![
                Frame::System(SystemFrame::Interrupt {
                    from: turn,
                    to: TurnId(turn.0 + 1)
                }),
                Frame::System(SystemFrame::Dtmf('0')),
            ]
        );
    }
}
