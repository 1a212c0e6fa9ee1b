//! Voice activity detection and endpointing at 16 kHz.
//!
//! The scorer ([`EarshotScorer`] in production) rates each 16 ms window;
//! [`Vad`] turns the scores into utterances. Time here is media time,
//! counted in samples, so the result does not depend on when frames are
//! processed.
//!
//! Endpointing: speech starts once voiced windows add up to
//! `min_speech_ms` (gaps shorter than that are bridged, so one cough or
//! click does not start an utterance); it ends after `end_silence_ms`
//! without voice, or when it reaches `max_utterance_ms`.

use std::collections::VecDeque;

use super::frame::EndReason;

/// The rate the VAD works at.
pub const VAD_RATE: u32 = 16_000;
/// Samples in one scored window (16 ms at 16 kHz), as earshot requires.
pub const VAD_WINDOW: usize = 256;

/// Rates one window of [`VAD_WINDOW`] samples at [`VAD_RATE`]: 0 (no
/// voice) to 1 (voice).
pub trait VoiceScorer: Send {
    fn score(&mut self, window: &[i16]) -> f32;
    fn reset(&mut self);
}

/// The earshot neural VAD.
pub struct EarshotScorer {
    detector: Box<earshot::Detector>,
}

impl EarshotScorer {
    pub fn new() -> Self {
        Self {
            detector: earshot::Detector::default_boxed(),
        }
    }
}

impl Default for EarshotScorer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EarshotScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EarshotScorer")
    }
}

impl VoiceScorer for EarshotScorer {
    fn score(&mut self, window: &[i16]) -> f32 {
        // earshot answers -1 for a window of the wrong length; ours are
        // always exact, and anything below 0 is read as silence anyway.
        self.detector.predict_i16(window).max(0.0)
    }

    fn reset(&mut self) {
        self.detector.reset();
    }
}

/// Endpointing settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct VadConfig {
    /// Scores at or above this are voice.
    pub threshold: f32,
    /// Voiced time before an utterance counts as started.
    pub min_speech_ms: u32,
    /// Silence that ends an utterance.
    pub end_silence_ms: u32,
    /// The longest utterance; it is cut there.
    pub max_utterance_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 160,
            end_silence_ms: 700,
            max_utterance_ms: 15_000,
        }
    }
}

/// What the VAD reports. Times are media milliseconds from the first
/// sample the VAD was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted {
        start_ms: u64,
    },
    SpeechEnded {
        end_ms: u64,
        speech_ms: u64,
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// Voice heard but not yet `min_speech_ms` of it.
    Onset {
        start: u64,
        voiced: u64,
        last_voice: u64,
    },
    Speech {
        start: u64,
        last_voice: u64,
    },
}

/// The VAD and endpointer of one inbound stream.
pub struct Vad<S: VoiceScorer = EarshotScorer> {
    scorer: S,
    config: VadConfig,
    pending: Vec<i16>,
    /// Samples scored so far: media time.
    position: u64,
    state: State,
    events: VecDeque<VadEvent>,
}

impl<S: VoiceScorer> std::fmt::Debug for Vad<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vad")
            .field("position", &self.position)
            .field("state", &self.state)
            .finish()
    }
}

const fn samples_to_ms(samples: u64) -> u64 {
    samples * 1000 / VAD_RATE as u64
}

const fn ms_to_samples(ms: u32) -> u64 {
    ms as u64 * VAD_RATE as u64 / 1000
}

impl Vad<EarshotScorer> {
    /// A VAD over earshot.
    pub fn earshot(config: VadConfig) -> Self {
        Self::new(EarshotScorer::new(), config)
    }
}

impl<S: VoiceScorer> Vad<S> {
    pub fn new(scorer: S, config: VadConfig) -> Self {
        Self {
            scorer,
            config,
            pending: Vec::with_capacity(VAD_WINDOW),
            position: 0,
            state: State::Silence,
            events: VecDeque::new(),
        }
    }

    /// Feeds 16 kHz samples of any length.
    pub fn handle_audio(&mut self, samples: &[i16]) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (VAD_WINDOW - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == VAD_WINDOW {
                let score = self.scorer.score(&self.pending);
                self.pending.clear();
                self.position += VAD_WINDOW as u64;
                self.step(score >= self.config.threshold);
            }
        }
    }

    fn step(&mut self, voiced: bool) {
        let now = self.position;
        let window_start = now - VAD_WINDOW as u64;
        let min_speech = ms_to_samples(self.config.min_speech_ms);
        self.state = match self.state {
            State::Silence if voiced => {
                self.onset(window_start, VAD_WINDOW as u64, now, min_speech)
            }
            State::Silence => State::Silence,
            State::Onset {
                start, voiced: v, ..
            } if voiced => self.onset(start, v + VAD_WINDOW as u64, now, min_speech),
            State::Onset { last_voice, .. }
                if now - last_voice > min_speech.max(VAD_WINDOW as u64) =>
            {
                State::Silence
            }
            onset @ State::Onset { .. } => onset,
            State::Speech { start, .. } if voiced => self.speech(start, now),
            State::Speech { start, last_voice } => {
                if now - last_voice >= ms_to_samples(self.config.end_silence_ms) {
                    self.events.push_back(VadEvent::SpeechEnded {
                        end_ms: samples_to_ms(last_voice),
                        speech_ms: samples_to_ms(last_voice - start),
                        reason: EndReason::Silence,
                    });
                    State::Silence
                } else {
                    self.speech_cap(start, last_voice, now)
                }
            }
        };
    }

    fn onset(&mut self, start: u64, voiced: u64, now: u64, min_speech: u64) -> State {
        if voiced >= min_speech {
            self.events.push_back(VadEvent::SpeechStarted {
                start_ms: samples_to_ms(start),
            });
            self.speech(start, now)
        } else {
            State::Onset {
                start,
                voiced,
                last_voice: now,
            }
        }
    }

    fn speech(&mut self, start: u64, now: u64) -> State {
        self.speech_cap(start, now, now)
    }

    /// Cuts the utterance when it reaches the longest allowed length.
    fn speech_cap(&mut self, start: u64, last_voice: u64, now: u64) -> State {
        if now - start >= ms_to_samples(self.config.max_utterance_ms) {
            self.events.push_back(VadEvent::SpeechEnded {
                end_ms: samples_to_ms(now),
                speech_ms: samples_to_ms(now - start),
                reason: EndReason::MaxLength,
            });
            State::Silence
        } else {
            State::Speech { start, last_voice }
        }
    }

    pub fn poll_event(&mut self) -> Option<VadEvent> {
        self.events.pop_front()
    }

    /// Whether an utterance is under way (started and not yet ended).
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Media time consumed so far, in milliseconds.
    pub fn position_ms(&self) -> u64 {
        samples_to_ms(self.position)
    }

    /// Forgets any utterance under way (used after a barge-in has been
    /// handled elsewhere, or when a new node starts listening).
    pub fn reset(&mut self) {
        self.scorer.reset();
        self.pending.clear();
        self.state = State::Silence;
        self.events.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scorer that calls a window voiced when its mean magnitude is
    /// above 1000: tests write "speech" as loud samples.
    #[derive(Debug, Default)]
    pub(crate) struct LoudnessScorer;

    impl VoiceScorer for LoudnessScorer {
        fn score(&mut self, window: &[i16]) -> f32 {
            let mean = window.iter().map(|s| i64::from(*s).abs()).sum::<i64>()
                / window.len().max(1) as i64;
            if mean > 1000 {
                1.0
            } else {
                0.0
            }
        }
        fn reset(&mut self) {}
    }

    pub(crate) fn loud(ms: u32) -> Vec<i16> {
        vec![8000; (ms * 16) as usize]
    }

    pub(crate) fn quiet(ms: u32) -> Vec<i16> {
        vec![0; (ms * 16) as usize]
    }

    fn vad(min_speech: u32, end_silence: u32, max_utt: u32) -> Vad<LoudnessScorer> {
        Vad::new(
            LoudnessScorer,
            VadConfig {
                threshold: 0.5,
                min_speech_ms: min_speech,
                end_silence_ms: end_silence,
                max_utterance_ms: max_utt,
            },
        )
    }

    fn events(v: &mut Vad<LoudnessScorer>) -> Vec<VadEvent> {
        std::iter::from_fn(|| v.poll_event()).collect()
    }

    #[test]
    fn speech_starts_after_min_speech_and_ends_after_silence() {
        let mut v = vad(160, 496, 10_000);
        v.handle_audio(&quiet(512));
        v.handle_audio(&loud(144)); // 9 windows: below 160 ms
        assert!(events(&mut v).is_empty());
        assert!(!v.in_speech());
        v.handle_audio(&loud(16)); // the 10th window reaches 160 ms
        assert_eq!(
            events(&mut v),
            vec![VadEvent::SpeechStarted { start_ms: 512 }]
        );
        v.handle_audio(&loud(800));
        v.handle_audio(&quiet(480)); // 30 windows of silence: not yet
        assert!(events(&mut v).is_empty());
        v.handle_audio(&quiet(16));
        assert_eq!(
            events(&mut v),
            vec![VadEvent::SpeechEnded {
                end_ms: 1472,
                speech_ms: 960,
                reason: EndReason::Silence
            }]
        );
        assert!(!v.in_speech());
    }

    #[test]
    fn short_blips_do_not_start_speech() {
        let mut v = vad(160, 496, 10_000);
        for _ in 0..10 {
            v.handle_audio(&loud(48));
            v.handle_audio(&quiet(400));
        }
        assert!(events(&mut v).is_empty());
    }

    #[test]
    fn short_pauses_inside_speech_are_bridged() {
        let mut v = vad(160, 496, 10_000);
        v.handle_audio(&loud(96));
        v.handle_audio(&quiet(48));
        v.handle_audio(&loud(96));
        assert_eq!(
            events(&mut v),
            vec![VadEvent::SpeechStarted { start_ms: 0 }]
        );
        v.handle_audio(&quiet(320));
        v.handle_audio(&loud(320));
        v.handle_audio(&quiet(1000));
        let ev = events(&mut v);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(
            matches!(
                ev[0],
                VadEvent::SpeechEnded {
                    end_ms: 880,
                    reason: EndReason::Silence,
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn long_speech_is_cut_at_max_utterance() {
        let mut v = vad(160, 496, 2_000);
        v.handle_audio(&loud(2_400));
        let ev = events(&mut v);
        assert_eq!(ev[0], VadEvent::SpeechStarted { start_ms: 0 });
        assert_eq!(
            ev[1],
            VadEvent::SpeechEnded {
                end_ms: 2000,
                speech_ms: 2000,
                reason: EndReason::MaxLength
            }
        );
        // Still talking: a new utterance starts.
        assert_eq!(ev.get(2), Some(&VadEvent::SpeechStarted { start_ms: 2000 }));
    }

    #[test]
    fn odd_frame_sizes_are_buffered() {
        let mut v = vad(160, 496, 10_000);
        let audio = loud(400);
        for chunk in audio.chunks(100) {
            v.handle_audio(chunk);
        }
        assert_eq!(
            events(&mut v),
            vec![VadEvent::SpeechStarted { start_ms: 0 }]
        );
        assert_eq!(v.position_ms(), 400);
    }

    /// Real speech from espeak-ng (as the gateway's own TTS tests use),
    /// framed by silence: earshot must find one utterance inside it.
    #[test]
    fn earshot_finds_an_utterance_in_synthesised_speech() {
        let out = std::process::Command::new("espeak-ng")
            .args([
                "--stdout",
                "-v",
                "en",
                "Hello, I would like to check the balance of my account please.",
            ])
            .output()
            .expect("espeak-ng runs (the gateway needs it too)");
        assert!(out.status.success());
        let mut bytes = out.stdout;
        voxgate_gateway::audio::fix_streamed_sizes(&mut bytes);
        let wav = voxgate_gateway::audio::decode_wav(&bytes).expect("wav");
        let speech = voxgate_gateway::audio::resample_f32(&wav.samples, wav.sample_rate, VAD_RATE)
            .expect("resample");
        let speech_ms = (speech.len() as u64 * 1000) / u64::from(VAD_RATE);
        let mut v = Vad::earshot(VadConfig::default());
        v.handle_audio(&quiet(1_000));
        v.handle_audio(&speech);
        v.handle_audio(&quiet(1_500));
        let ev: Vec<VadEvent> = std::iter::from_fn(|| v.poll_event()).collect();
        let starts: Vec<u64> = ev
            .iter()
            .filter_map(|e| {
                if let VadEvent::SpeechStarted { start_ms } = e {
                    Some(*start_ms)
                } else {
                    None
                }
            })
            .collect();
        let ends: Vec<u64> = ev
            .iter()
            .filter_map(|e| {
                if let VadEvent::SpeechEnded { end_ms, .. } = e {
                    Some(*end_ms)
                } else {
                    None
                }
            })
            .collect();
        assert!(!starts.is_empty() && starts.len() == ends.len(), "{ev:?}");
        // Starts near the 1 s mark, ends near the end of the speech.
        assert!((900..=1_400).contains(&starts[0]), "{ev:?}");
        let last_end = ends[ends.len() - 1];
        assert!(
            last_end + 600 >= 1_000 + speech_ms && last_end <= 1_000 + speech_ms + 100,
            "{ev:?} speech {speech_ms} ms"
        );
        assert!(!v.in_speech());
    }

    #[test]
    fn earshot_hears_no_voice_in_silence_or_a_pure_tone() {
        let mut v = Vad::earshot(VadConfig::default());
        v.handle_audio(&quiet(2_000));
        let tone: Vec<i16> = (0..32_000)
            .map(|i| {
                (6000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin()) as i16
            })
            .collect();
        v.handle_audio(&tone);
        assert!(v.poll_event().is_none());
        assert_eq!(v.position_ms(), 4_000);
    }
}
