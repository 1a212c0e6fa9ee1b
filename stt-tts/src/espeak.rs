//! [`TtsEngine`] over the gateway's espeak-ng synthesis.
//!
//! espeak-ng renders a whole utterance before it prints anything, so the
//! first chunk comes only after the full render (a few tens of ms for a
//! sentence); from then on chunks are cut at the requested rate as the
//! resampler produces them. Dropping the stream kills espeak-ng
//! (`kill_on_drop`) if it is still rendering.

use voxgate_gateway::audio::{render_espeak, Resampler, SayConfig, MAX_RATE, MIN_RATE};

use crate::error::EngineError;
use crate::tts::{TtsBackend, TtsChunk, TtsEngine, TtsRequest, TtsStream};

/// Default chunk length.
pub const DEFAULT_CHUNK_MS: u32 = 100;

/// espeak-ng as a TTS engine.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    config: SayConfig,
    chunk_ms: u32,
}

impl EspeakTts {
    /// `config` gives the binary, default voice, rate and pitch; chunks are
    /// `chunk_ms` long (clamped to 20..=1000, whole 20 ms frames).
    pub fn new(config: SayConfig, chunk_ms: u32) -> Self {
        let chunk_ms = (chunk_ms.clamp(20, 1000) / 20) * 20;
        Self { config, chunk_ms }
    }

    /// The espeak-ng voice for a request: its voice, else its language
    /// lower-cased (`en-US` → `en-us`, which espeak-ng knows), else the
    /// configured default.
    pub fn voice_for(&self, request: &TtsRequest) -> String {
        request
            .voice
            .clone()
            .or_else(|| request.language.as_ref().map(|l| l.to_lowercase()))
            .unwrap_or_else(|| self.config.voice.clone())
    }
}

impl Default for EspeakTts {
    fn default() -> Self {
        Self::new(SayConfig::default(), DEFAULT_CHUNK_MS)
    }
}

async fn run(config: SayConfig, text: String, rate: u32, chunk_ms: u32, out: TtsBackend) {
    let rendered = tokio::select! {
        _ = out.cancel.cancelled() => return,
        r = render_espeak(&text, &config) => r,
    };
    let (samples, native) = match rendered {
        Ok(r) => r,
        Err(e) => {
            out.send(Err(e.into())).await;
            return;
        }
    };
    let mut resampler = match Resampler::new(native, rate) {
        Ok(r) => r,
        Err(e) => {
            out.send(Err(e.into())).await;
            return;
        }
    };
    let per_chunk = (rate as usize * chunk_ms as usize) / 1000;
    // Feed about one chunk of input at a time so chunks flow as they are
    // made instead of after the whole clip is resampled.
    let feed = (native as usize * chunk_ms as usize / 1000).max(1);
    let mut pending: Vec<i16> = Vec::with_capacity(per_chunk);
    let mut seq = 0u32;
    let mut blocks = samples.chunks(feed);
    loop {
        if out.cancel.is_cancelled() {
            return;
        }
        let (step, done) = match blocks.next() {
            Some(block) => (resampler.push_f32(block), false),
            None => (resampler.finish(), true),
        };
        if let Err(e) = step {
            out.send(Err(e.into())).await;
            return;
        }
        while let Some(frame) = resampler.pop_frame() {
            pending.extend_from_slice(&frame.samples);
            if pending.len() >= per_chunk {
                let samples = std::mem::replace(&mut pending, Vec::with_capacity(per_chunk));
                if !out
                    .send(Ok(TtsChunk {
                        seq,
                        samples,
                        sample_rate: rate,
                    }))
                    .await
                {
                    return;
                }
                seq += 1;
            }
        }
        if done {
            break;
        }
    }
    pending.extend(resampler.drain_samples());
    if !pending.is_empty() {
        out.send(Ok(TtsChunk {
            seq,
            samples: pending,
            sample_rate: rate,
        }))
        .await;
    }
}

impl TtsEngine for EspeakTts {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let rate = request.sample_rate;
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return TtsStream::failed(
                rate,
                EngineError::InvalidRequest {
                    reason: format!("sample rate {rate} Hz is out of range"),
                },
            );
        }
        let (stream, backend) = TtsStream::channel(rate);
        if request.text.trim().is_empty() {
            // Nothing to say: an empty stream, no process.
            return stream;
        }
        let config = SayConfig {
            voice: self.voice_for(&request),
            ..self.config.clone()
        };
        tokio::spawn(run(config, request.text, rate, self.chunk_ms, backend));
        stream
    }
}
