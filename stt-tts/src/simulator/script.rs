//! The simulator's script: what it answers and how badly it behaves.
//! JSON; see `docs/worker-protocol.md` for an example.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};

use super::envelope::Envelope;
use crate::nlu::IntentResult;

/// Why a script could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("script is not valid at `{path}`: {reason}")]
    Invalid { path: String, reason: String },
    #[error("transcript entry {index} needs exactly one of `fingerprint` and `audio_file`")]
    TranscriptKey { index: usize },
    #[error("cannot load audio {path:?}: {reason}")]
    Audio { path: PathBuf, reason: String },
    #[error("uniform delay {min_ms}..{max_ms} has min above max")]
    BadDelay { min_ms: u64, max_ms: u64 },
}

/// A delay: fixed, or uniform between two bounds (drawn from the script's
/// seeded generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delay {
    FixedMs(u64),
    UniformMs([u64; 2]),
}

impl Default for Delay {
    fn default() -> Self {
        Delay::FixedMs(0)
    }
}

impl Delay {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Delay::FixedMs(ms) => Duration::from_millis(ms),
            Delay::UniformMs([lo, hi]) => Duration::from_millis(rng.random_range(lo..=hi.max(lo))),
        }
    }
}

/// Faults of one stage. Counts are data frames (STT partials/finals, TTS
/// chunks, NLU tokens and intents, SSE content chunks, speech body chunks).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Send nothing more after this many chunks (the socket stays open).
    pub stall_after_chunks: Option<u32>,
    /// HTTP audio: stall once this many body bytes are sent.
    pub stall_after_bytes: Option<u64>,
    /// Drop the connection as chunk N goes out (0: before the first),
    /// without waiting for the next one to be due.
    pub disconnect_after_chunks: Option<u32>,
    /// Send one malformed frame before chunk N (0 = before the first).
    pub garbage_at_chunk: Option<u32>,
    /// Delay before a worker session's `ready` or the HTTP response headers.
    pub slow_start_ms: Option<u64>,
    /// HTTP: answer with this status (429 or 5xx) instead.
    pub http_status: Option<u16>,
    /// With `http_status` 429: the `Retry-After` seconds.
    pub retry_after_s: Option<u64>,
    /// Apply these faults to only the first N sessions or requests of the
    /// stage (then behave), for retry tests. `None`: always.
    pub times: Option<u32>,
}

/// Timing and faults of one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Before the first data frame (first byte, first token).
    #[serde(default)]
    pub first: Delay,
    /// Between data frames.
    #[serde(default)]
    pub per_chunk: Delay,
    #[serde(default)]
    pub faults: Faults,
}

/// Timing and faults of every stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Worker protocol STT sessions.
    #[serde(default)]
    pub stt: Stage,
    /// Worker protocol TTS sessions.
    #[serde(default)]
    pub tts: Stage,
    /// Worker protocol NLU sessions.
    #[serde(default)]
    pub nlu: Stage,
    /// HTTP `POST /v1/chat/completions`.
    #[serde(default)]
    pub llm: Stage,
    /// HTTP `POST /v1/audio/speech`.
    #[serde(default)]
    pub speech: Stage,
    /// The Deepgram-compatible websocket `/v1/listen` (results count as
    /// chunks; `http_status` refuses the upgrade).
    #[serde(default)]
    pub deepgram: Stage,
}

/// One scripted transcript, keyed by the fingerprint of its audio.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTranscript {
    /// [`audio_fingerprint`] of the audio, hex.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Or a WAV file (relative to the script) whose fingerprint is taken.
    #[serde(default)]
    pub audio_file: Option<PathBuf>,
    pub text: String,
    #[serde(default = "default_confidence")]
    pub confidence: f32,
    /// With `match: envelope`, the envelope of `audio_file`, taken at load.
    #[serde(skip)]
    pub envelope: Option<Envelope>,
}

fn default_confidence() -> f32 {
    0.9
}

/// A transcript for audio no entry matches.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultTranscript {
    pub text: String,
    #[serde(default = "default_confidence")]
    pub confidence: f32,
}

/// How a session's audio is matched to a scripted transcript.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// The exact fingerprint only: the same bytes the script was made from.
    #[default]
    Exact,
    /// The exact fingerprint first, then, at the end of the utterance, the
    /// most similar speech-energy envelope of the `audio_file` entries
    /// (see [`Envelope`]): audio that went through G.711 and resampling.
    Envelope,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SttScript {
    /// How much of the start of the audio the fingerprint covers.
    #[serde(default = "default_fingerprint_seconds")]
    pub fingerprint_seconds: f32,
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    /// `match: envelope`: the least similarity (-1..1) that counts as a
    /// match; below it the default answers.
    #[serde(default = "default_min_similarity")]
    pub min_similarity: f32,
    #[serde(default)]
    pub transcripts: Vec<ScriptedTranscript>,
    #[serde(default)]
    pub default: Option<DefaultTranscript>,
    /// Send a partial (the first half of the words) before the final.
    #[serde(default = "yes")]
    pub partials: bool,
}

fn default_fingerprint_seconds() -> f32 {
    1.0
}

fn default_min_similarity() -> f32 {
    0.75
}

fn yes() -> bool {
    true
}

impl Default for SttScript {
    fn default() -> Self {
        Self {
            fingerprint_seconds: default_fingerprint_seconds(),
            match_mode: MatchMode::Exact,
            min_similarity: default_min_similarity(),
            transcripts: Vec::new(),
            default: None,
            partials: true,
        }
    }
}

/// One scripted intent answer, keyed by the utterance (compared
/// case-insensitively, trimmed, without final punctuation).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedIntent {
    pub utterance: String,
    pub result: IntentResult,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NluScript {
    #[serde(default)]
    pub results: Vec<ScriptedIntent>,
    /// For utterances no entry matches. Without it the worker protocol
    /// falls back to the lexical classifier over the request's intents and
    /// HTTP answers intent `none`.
    #[serde(default)]
    pub default: Option<IntentResult>,
}

/// What the simulated TTS sounds like.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TtsVoice {
    /// A sine tone, `ms_per_char` long per character of text.
    Tone { hz: f32, ms_per_char: u32 },
    /// Real espeak-ng speech.
    Espeak,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TtsScript {
    #[serde(default = "default_voice")]
    pub voice: TtsVoice,
    #[serde(default = "default_chunk_ms")]
    pub chunk_ms: u32,
}

fn default_voice() -> TtsVoice {
    TtsVoice::Tone {
        hz: 440.0,
        ms_per_char: 40,
    }
}

fn default_chunk_ms() -> u32 {
    100
}

impl Default for TtsScript {
    fn default() -> Self {
        Self {
            voice: default_voice(),
            chunk_ms: default_chunk_ms(),
        }
    }
}

/// The whole script.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Seed of the delay generator: the same script gives the same delays.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub stt: SttScript,
    #[serde(default)]
    pub nlu: NluScript,
    #[serde(default)]
    pub tts: TtsScript,
    #[serde(default)]
    pub stages: Stages,
}

/// The fingerprint the simulator keys transcripts by: SHA-256 of the
/// first `seconds` of 16-bit PCM (little-endian), first 16 hex digits.
/// Exact on purpose: the simulator is fed the same bytes it was scripted
/// with, not re-encoded audio.
pub fn audio_fingerprint(pcm: &[i16], sample_rate: u32, seconds: f32) -> String {
    let n = ((sample_rate as f32 * seconds.max(0.0)) as usize).min(pcm.len());
    let mut h = Sha256::new();
    for s in &pcm[..n] {
        h.update(s.to_le_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the audio heard so far is: scripted, or not yet decided.
#[derive(Debug, Clone, PartialEq)]
pub enum SttLookup {
    /// `match: envelope` without an exact match: decided at the end.
    Wait,
    Found(String, f32),
    /// No entry matches and there is no default.
    Unmatched {
        fingerprint: String,
    },
}

/// Normalises an utterance for lookup.
pub fn utterance_key(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!', '?', ','])
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Script {
    /// Parses a script; `base` resolves relative `audio_file`s.
    pub fn from_json(text: &str, base: &Path) -> Result<Script, ScriptError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let mut script: Script =
            serde_path_to_error::deserialize(de).map_err(|e| ScriptError::Invalid {
                path: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        script.resolve(base)?;
        Ok(script)
    }

    /// Reads and parses a script file.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path.parent().unwrap_or(Path::new(".")))
    }

    fn resolve(&mut self, base: &Path) -> Result<(), ScriptError> {
        let seconds = self.stt.fingerprint_seconds;
        let envelopes = self.stt.match_mode == MatchMode::Envelope;
        for (index, t) in self.stt.transcripts.iter_mut().enumerate() {
            match (&t.fingerprint, &t.audio_file) {
                (Some(_), None) => {}
                (None, Some(file)) => {
                    let path = base.join(file);
                    let pcm =
                        voxgate_gateway::audio::load_wav_at(&path, crate::stt::STT_SAMPLE_RATE)
                            .map_err(|e| ScriptError::Audio {
                                path: path.clone(),
                                reason: e.to_string(),
                            })?;
                    t.fingerprint = Some(audio_fingerprint(
                        &pcm,
                        crate::stt::STT_SAMPLE_RATE,
                        seconds,
                    ));
                    if envelopes {
                        // Not fatal: the entry still matches exactly; a set
                        // with one odd recording still runs.
                        t.envelope = Envelope::of(&pcm, crate::stt::STT_SAMPLE_RATE);
                        if t.envelope.is_none() {
                            tracing::warn!(
                                path = %path.display(),
                                "no speech envelope (silent, steady noise or under 200 ms): \
                                 this entry matches only exactly"
                            );
                        }
                    }
                }
                _ => return Err(ScriptError::TranscriptKey { index }),
            }
        }
        let stages = &self.stages;
        for stage in [
            &stages.stt,
            &stages.tts,
            &stages.nlu,
            &stages.llm,
            &stages.speech,
            &stages.deepgram,
        ] {
            for d in [stage.first, stage.per_chunk] {
                if let Delay::UniformMs([min_ms, max_ms]) = d {
                    if min_ms > max_ms {
                        return Err(ScriptError::BadDelay { min_ms, max_ms });
                    }
                }
            }
        }
        Ok(())
    }

    /// The scripted transcript for a fingerprint, else the default.
    pub fn transcript_for(&self, fingerprint: &str) -> Option<(String, f32)> {
        self.stt
            .transcripts
            .iter()
            .find(|t| t.fingerprint.as_deref() == Some(fingerprint))
            .map(|t| (t.text.clone(), t.confidence))
            .or_else(|| {
                self.stt
                    .default
                    .as_ref()
                    .map(|d| (d.text.clone(), d.confidence))
            })
    }

    /// The transcript for a session's audio so far (`ended`: the caller
    /// finished the utterance). The exact fingerprint is checked first;
    /// with `match: envelope` a miss waits for the end, then the most
    /// similar envelope at or above `min_similarity` answers, else the
    /// default.
    pub fn stt_lookup(&self, audio: &[i16], rate: u32, ended: bool) -> SttLookup {
        let stt = &self.stt;
        let fingerprint = audio_fingerprint(audio, rate, stt.fingerprint_seconds);
        if let Some(t) = stt
            .transcripts
            .iter()
            .find(|t| t.fingerprint.as_deref() == Some(fingerprint.as_str()))
        {
            return SttLookup::Found(t.text.clone(), t.confidence);
        }
        if stt.match_mode == MatchMode::Envelope {
            if !ended {
                return SttLookup::Wait;
            }
            if let Some(heard) = Envelope::of(audio, rate) {
                let best = stt
                    .transcripts
                    .iter()
                    .filter_map(|t| Some((t, t.envelope.as_ref()?.similarity(&heard))))
                    .filter(|(_, s)| *s >= stt.min_similarity)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((t, _)) = best {
                    return SttLookup::Found(t.text.clone(), t.confidence);
                }
            }
        }
        match &stt.default {
            Some(d) => SttLookup::Found(d.text.clone(), d.confidence),
            None => SttLookup::Unmatched { fingerprint },
        }
    }

    /// The scripted intent answer for an utterance, else the default.
    pub fn intent_for(&self, utterance: &str) -> Option<IntentResult> {
        let key = utterance_key(utterance);
        self.nlu
            .results
            .iter()
            .find(|r| utterance_key(&r.utterance) == key)
            .map(|r| r.result.clone())
            .or_else(|| self.nlu.default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn scripts_parse_and_check() {
        let s = Script::from_json(
            r#"{"seed": 3,
                "stt": {"transcripts": [{"fingerprint": "abc", "text": "hello"}], "default": {"text": "what"}},
                "stages": {"tts": {"first": {"fixed_ms": 50}, "per_chunk": {"uniform_ms": [5, 9]},
                                    "faults": {"stall_after_chunks": 2}}}}"#,
            Path::new("."),
        )
        .expect("parse");
        assert_eq!(s.transcript_for("abc"), Some(("hello".into(), 0.9)));
        assert_eq!(s.transcript_for("zzz"), Some(("what".into(), 0.9)));
        assert_eq!(s.stages.tts.faults.stall_after_chunks, Some(2));
        let err = Script::from_json(r#"{"stages": {"tts": {"frist": {}}}}"#, Path::new("."))
            .expect_err("typo");
        assert!(err.to_string().contains("stages.tts"), "{err}");
        assert!(matches!(
            Script::from_json(
                r#"{"stt": {"transcripts": [{"text": "x"}]}}"#,
                Path::new(".")
            ),
            Err(ScriptError::TranscriptKey { index: 0 })
        ));
        assert!(matches!(
            Script::from_json(
                r#"{"stages": {"llm": {"first": {"uniform_ms": [9, 1]}}}}"#,
                Path::new(".")
            ),
            Err(ScriptError::BadDelay { .. })
        ));
    }

    #[test]
    fn delays_are_seeded() {
        let d = Delay::UniformMs([10, 20]);
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..5).map(|_| d.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert!(draw(1)
            .iter()
            .all(|x| (10..=20).contains(&(x.as_millis() as u64))));
    }

    #[test]
    fn fingerprints_cover_only_the_start() {
        let a: Vec<i16> = (0..32_000).map(|i| (i % 100) as i16).collect();
        let mut b = a.clone();
        b[20_000] = 7;
        assert_eq!(
            audio_fingerprint(&a, 16_000, 1.0),
            audio_fingerprint(&b, 16_000, 1.0)
        );
        b[100] = 9;
        assert_ne!(
            audio_fingerprint(&a, 16_000, 1.0),
            audio_fingerprint(&b, 16_000, 1.0)
        );
        assert_eq!(audio_fingerprint(&a, 16_000, 1.0).len(), 16);
        assert_eq!(utterance_key("  Check my Balance. "), "check my balance");
    }
}
