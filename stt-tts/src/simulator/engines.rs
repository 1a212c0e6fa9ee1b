//! The simulator's scripted engines and its fault plan for worker
//! protocol sessions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::envelope;
use super::script::{Delay, Faults, Script, Stage, SttLookup, TtsVoice};
use crate::error::EngineError;
use crate::llm::prompt::answer_json;
use crate::nlu::lexical::LexicalIntentEngine;
use crate::nlu::{IntentEngine, NluEvent, NluRequest, NluStream};
use crate::protocol::SessionKind;
use crate::stt::{
    BoxFuture, SttBackend, SttConfig, SttEngine, SttEvent, SttInput, SttSession, Transcript, Word,
};
use crate::tts::{TtsBackend, TtsChunk, TtsEngine, TtsRequest, TtsStream};
use crate::worker::{FaultAction, FaultSource, SessionFaults};

/// Which stage a counter or fault belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageId {
    Stt = 0,
    Tts = 1,
    Nlu = 2,
    Llm = 3,
    Speech = 4,
    Deepgram = 5,
}

/// The script plus the simulator's mutable bits: the seeded generator and
/// per-stage request counters.
pub(crate) struct SimState {
    pub script: Script,
    rng: Mutex<StdRng>,
    counts: [AtomicU32; 6],
    /// The `Authorization` header and query of the last `/v1/listen`
    /// upgrade, for tests that check what an adapter sends.
    pub listen_request: Mutex<Option<(Option<String>, String)>>,
    /// The `Authorization` header of the last `/v1/audio/speech` request.
    pub speech_auth: Mutex<Option<String>>,
}

impl SimState {
    pub fn new(script: Script) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(StdRng::seed_from_u64(script.seed)),
            script,
            counts: Default::default(),
            listen_request: Mutex::new(None),
            speech_auth: Mutex::new(None),
        })
    }

    pub fn stage(&self, id: StageId) -> &Stage {
        let s = &self.script.stages;
        match id {
            StageId::Stt => &s.stt,
            StageId::Tts => &s.tts,
            StageId::Nlu => &s.nlu,
            StageId::Llm => &s.llm,
            StageId::Speech => &s.speech,
            StageId::Deepgram => &s.deepgram,
        }
    }

    pub fn delay(&self, d: &Delay) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        d.sample(&mut *rng)
    }

    pub async fn sleep_first(&self, id: StageId) {
        let d = self.delay(&self.stage(id).first);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    pub async fn sleep_chunk(&self, id: StageId) {
        let d = self.delay(&self.stage(id).per_chunk);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Counts one more session or request of `id` and returns the faults
    /// that apply to it.
    pub fn faults_for_next(&self, id: StageId) -> Option<Faults> {
        let n = self.counts[id as usize].fetch_add(1, Ordering::Relaxed);
        let faults = &self.stage(id).faults;
        match faults.times {
            Some(times) if n >= times => None,
            _ => Some(faults.clone()),
        }
    }

    /// Sessions or requests of `id` seen so far.
    pub fn count(&self, id: StageId) -> u32 {
        self.counts[id as usize].load(Ordering::Relaxed)
    }
}

/// The fault plan of worker protocol sessions, from the script.
pub(crate) struct ScriptFaults(pub Arc<SimState>);

pub(crate) struct StageFaults {
    pub faults: Option<Faults>,
    pub garbage_sent: bool,
}

impl SessionFaults for StageFaults {
    fn start_delay(&self) -> Duration {
        Duration::from_millis(
            self.faults
                .as_ref()
                .and_then(|f| f.slow_start_ms)
                .unwrap_or(0),
        )
    }

    fn before_frame(&mut self, sent: u32) -> FaultAction {
        let Some(f) = &self.faults else {
            return FaultAction::Send;
        };
        if f.disconnect_after_chunks.is_some_and(|k| sent >= k) {
            return FaultAction::Disconnect;
        }
        if f.stall_after_chunks.is_some_and(|k| sent >= k) {
            return FaultAction::Stall;
        }
        if f.garbage_at_chunk == Some(sent) && !self.garbage_sent {
            self.garbage_sent = true;
            return FaultAction::Garbage;
        }
        FaultAction::Send
    }

    fn hang_up_after(&mut self, sent: u32) -> bool {
        // Hung up as the chunk goes out, not when the next one is due:
        // for STT that is the final, after the caller stopped speaking,
        // and a "mid-utterance" disconnect would come too late.
        self.faults
            .as_ref()
            .is_some_and(|f| f.disconnect_after_chunks == Some(sent))
    }
}

impl FaultSource for ScriptFaults {
    fn for_session(&self, kind: SessionKind) -> Box<dyn SessionFaults> {
        let id = match kind {
            SessionKind::Stt => StageId::Stt,
            SessionKind::Tts => StageId::Tts,
            SessionKind::Nlu => StageId::Nlu,
        };
        Box::new(StageFaults {
            faults: self.0.faults_for_next(id),
            garbage_sent: false,
        })
    }
}

/// STT that answers the scripted transcript of the audio's fingerprint.
pub(crate) struct ScriptedStt(pub Arc<SimState>);

pub(crate) fn timed_words(text: &str, duration_ms: u64, confidence: f32) -> Vec<Word> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = words.len().max(1) as u64;
    words
        .iter()
        .enumerate()
        .map(|(i, w)| Word {
            text: (*w).to_owned(),
            start_ms: duration_ms * i as u64 / n,
            end_ms: duration_ms * (i as u64 + 1) / n,
            confidence,
        })
        .collect()
}

async fn run_stt(state: Arc<SimState>, config: SttConfig, mut io: SttBackend) {
    let script = &state.script.stt;
    let rate = config.sample_rate.max(1);
    let needed = (rate as f32 * script.fingerprint_seconds) as usize;
    // Bounded: the envelope looks at no more than this.
    let keep = rate as usize * envelope::MAX_SECONDS as usize;
    let mut audio: Vec<i16> = Vec::new();
    let mut received: u64 = 0;
    let mut partial_sent = false;
    let mut waiting = false;
    loop {
        let input = tokio::select! {
            _ = io.cancel.cancelled() => return,
            i = io.input.recv() => i,
        };
        let ended = match input {
            None => return,
            Some(SttInput::Audio(pcm)) => {
                received += pcm.len() as u64;
                let room = keep.saturating_sub(audio.len()).min(pcm.len());
                audio.extend_from_slice(&pcm[..room]);
                false
            }
            Some(SttInput::End) => true,
        };
        // An envelope match is decided at the end; nothing to do before.
        let known = ended || (!waiting && audio.len() >= needed);
        if !known {
            continue;
        }
        let (text, confidence) = match state.script.stt_lookup(&audio, rate, ended) {
            SttLookup::Found(text, confidence) => (text, confidence),
            SttLookup::Wait => {
                waiting = true;
                continue;
            }
            SttLookup::Unmatched { fingerprint } => {
                let _ = io
                    .events
                    .send(Err(EngineError::InvalidRequest {
                        reason: format!(
                            "no scripted transcript for audio {fingerprint} and no default"
                        ),
                    }))
                    .await;
                return;
            }
        };
        let duration_ms = received * 1000 / u64::from(rate);
        if script.partials && !partial_sent {
            partial_sent = true;
            state.sleep_first(StageId::Stt).await;
            let words: Vec<&str> = text.split_whitespace().collect();
            let half = words[..words.len().div_ceil(2)].join(" ");
            let partial = Transcript {
                words: timed_words(&half, duration_ms, confidence),
                text: half,
                confidence: confidence * 0.8,
                start_ms: 0,
                end_ms: duration_ms,
            };
            if io
                .events
                .send(Ok(SttEvent::Partial(partial)))
                .await
                .is_err()
            {
                return;
            }
        }
        if ended {
            if partial_sent && script.partials {
                state.sleep_chunk(StageId::Stt).await;
            } else {
                state.sleep_first(StageId::Stt).await;
            }
            let fin = Transcript {
                words: timed_words(&text, duration_ms, confidence),
                text,
                confidence,
                start_ms: 0,
                end_ms: duration_ms,
            };
            let _ = io.events.send(Ok(SttEvent::Final(fin))).await;
            return;
        }
    }
}

impl SttEngine for ScriptedStt {
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        let state = self.0.clone();
        Box::pin(async move {
            let (session, backend) = SttSession::channel();
            tokio::spawn(run_stt(state, config, backend));
            Ok(session)
        })
    }
}

/// Renders the scripted voice for `text` at `rate`.
pub(crate) async fn render_voice(
    voice: TtsVoice,
    text: &str,
    rate: u32,
) -> Result<Vec<i16>, EngineError> {
    match voice {
        TtsVoice::Tone { hz, ms_per_char } => {
            let ms = (text.chars().count() as u64 * u64::from(ms_per_char)).max(200);
            let n = (u64::from(rate) * ms / 1000) as usize;
            let step = std::f32::consts::TAU * hz / rate as f32;
            Ok((0..n)
                .map(|i| (8000.0 * (step * i as f32).sin()) as i16)
                .collect())
        }
        TtsVoice::Espeak => {
            let cache = voxgate_gateway::audio::SpeechCache::global();
            let config = voxgate_gateway::audio::SayConfig::default();
            Ok(
                voxgate_gateway::audio::synthesize(text, &config, rate, cache)
                    .await?
                    .to_vec(),
            )
        }
    }
}

/// TTS that speaks a tone (or espeak-ng) with scripted timing.
pub(crate) struct ScriptedTts(pub Arc<SimState>);

async fn run_tts(state: Arc<SimState>, request: TtsRequest, out: TtsBackend) {
    let rate = request.sample_rate;
    let pcm = match render_voice(state.script.tts.voice, &request.text, rate).await {
        Ok(p) => p,
        Err(e) => {
            out.send(Err(e)).await;
            return;
        }
    };
    let per_chunk = (rate as usize * state.script.tts.chunk_ms.max(10) as usize / 1000).max(1);
    state.sleep_first(StageId::Tts).await;
    for (seq, samples) in pcm.chunks(per_chunk).enumerate() {
        if seq > 0 {
            state.sleep_chunk(StageId::Tts).await;
        }
        let chunk = TtsChunk {
            seq: seq as u32,
            samples: samples.to_vec(),
            sample_rate: rate,
        };
        if !out.send(Ok(chunk)).await {
            return;
        }
    }
}

impl TtsEngine for ScriptedTts {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let (stream, backend) = TtsStream::channel(request.sample_rate);
        if !(voxgate_gateway::audio::MIN_RATE..=voxgate_gateway::audio::MAX_RATE)
            .contains(&request.sample_rate)
        {
            return TtsStream::failed(
                request.sample_rate,
                EngineError::InvalidRequest {
                    reason: format!("sample rate {} Hz is out of range", request.sample_rate),
                },
            );
        }
        tokio::spawn(run_tts(self.0.clone(), request, backend));
        stream
    }
}

/// NLU that answers the scripted result for the utterance (else the
/// default, else the lexical classifier), streamed as tokens of its JSON.
pub(crate) struct ScriptedNlu(pub Arc<SimState>);

/// Characters per simulated token.
const TOKEN_CHARS: usize = 12;

impl IntentEngine for ScriptedNlu {
    fn classify(&self, request: NluRequest) -> NluStream {
        let (stream, backend) = NluStream::channel();
        let state = self.0.clone();
        tokio::spawn(async move {
            let result = state
                .script
                .intent_for(&request.utterance)
                .unwrap_or_else(|| LexicalIntentEngine::classify_request(&request));
            let text = answer_json(&result, Some(&request));
            let chars: Vec<char> = text.chars().collect();
            state.sleep_first(StageId::Nlu).await;
            for (i, piece) in chars.chunks(TOKEN_CHARS).enumerate() {
                if i > 0 {
                    state.sleep_chunk(StageId::Nlu).await;
                }
                if !backend
                    .send(Ok(NluEvent::Token(piece.iter().collect())))
                    .await
                {
                    return;
                }
            }
            backend.send(Ok(NluEvent::Result(result))).await;
        });
        stream
    }
}
