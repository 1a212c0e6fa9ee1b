//! An OpenAI-compatible TTS adapter ([`OpenAiTts`]): `POST
//! {base}/v1/audio/speech` with `response_format: "pcm"` (raw 24 kHz
//! 16-bit little-endian mono), read as the body arrives, resampled with the
//! gateway's rubato resampler to the requested rate and cut into chunks.
//!
//! The first chunk leaves as soon as one chunk of audio has arrived, not
//! when the clip is complete. Cancelling (or dropping) the stream stops
//! reading at once and drops the HTTP response, which closes the
//! connection. A 429 becomes [`EngineError::RateLimited`] with its
//! `Retry-After`; 5xx and broken bodies are retryable provider errors;
//! other 4xx are not retryable.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::json;
use url::Url;
use voxgate_gateway::audio::{Resampler, MAX_RATE, MIN_RATE};

use crate::error::{Blame, EngineError};
use crate::provider_key::{ProviderKey, OPENAI_API_KEY_ENV};
use crate::tts::{TtsBackend, TtsChunk, TtsEngine, TtsRequest, TtsStream};

/// OpenAI's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
/// The rate of OpenAI's `pcm` response format.
pub const OPENAI_PCM_RATE: u32 = 24_000;

/// How to reach an OpenAI-compatible speech endpoint. The key comes from
/// `api_key`, else from the environment variable `api_key_env`; it is never
/// serialised and `Debug` never shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiTtsConfig {
    /// The API root; the request goes to `{base_url}/v1/audio/speech`.
    pub base_url: String,
    #[serde(skip_serializing)]
    pub api_key: Option<ProviderKey>,
    /// Read when `api_key` is unset; `None` sends no key (local servers).
    pub api_key_env: Option<String>,
    pub model: String,
    /// Used when the request names no voice.
    pub voice: String,
    /// Rate of the provider's raw PCM (24 kHz for OpenAI's `pcm`).
    pub source_rate: u32,
    /// `speed` in the request body when set (0.25..=4.0).
    pub speed: Option<f32>,
    /// Length of the chunks handed to the caller.
    pub chunk_ms: u32,
    pub connect_timeout_ms: u64,
    /// Longest silence on the body once the response has started; the
    /// caller's own first-byte deadline covers the start.
    pub read_timeout_ms: u64,
}

impl Default for OpenAiTtsConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            api_key_env: Some(OPENAI_API_KEY_ENV.to_owned()),
            model: "gpt-4o-mini-tts".to_owned(),
            voice: "alloy".to_owned(),
            source_rate: OPENAI_PCM_RATE,
            speed: None,
            chunk_ms: 100,
            connect_timeout_ms: 3_000,
            read_timeout_ms: 10_000,
        }
    }
}

/// Why a speech request failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiTtsError {
    #[error("invalid TTS configuration: {reason}")]
    Config { reason: String },
    #[error("rate limited (HTTP 429), retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the TTS provider refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("TTS provider error HTTP {status}")]
    Server { status: u16 },
    #[error("the TTS provider rejected the request with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("cannot reach the TTS provider: {0}")]
    Connect(#[source] reqwest::Error),
    #[error("the audio stream broke off: {0}")]
    Body(#[source] reqwest::Error),
    #[error("no audio for {after:?} in the middle of the stream")]
    ReadTimeout { after: Duration },
}

impl OpenAiTtsError {
    pub fn blame(&self) -> Blame {
        match self {
            Self::Config { .. } | Self::Rejected { .. } => Blame::Internal,
            _ => Blame::Provider,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Connect(_)
                | Self::Body(_)
                | Self::ReadTimeout { .. }
        )
    }
}

impl From<OpenAiTtsError> for EngineError {
    fn from(e: OpenAiTtsError) -> Self {
        match e {
            OpenAiTtsError::RateLimited { retry_after } => EngineError::RateLimited { retry_after },
            other => EngineError::OpenAiTts(other),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not parsed).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The OpenAI-compatible TTS engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    http: reqwest::Client,
    config: OpenAiTtsConfig,
    endpoint: Url,
    key: Option<ProviderKey>,
}

impl OpenAiTts {
    /// Checks the configuration and resolves the key; no request yet.
    pub fn new(config: OpenAiTtsConfig) -> Result<Self, OpenAiTtsError> {
        voxgate_gateway::crypto::install_crypto_provider();
        let mut base = Url::parse(&config.base_url).map_err(|e| OpenAiTtsError::Config {
            reason: format!("base_url {:?}: {e}", config.base_url),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(OpenAiTtsError::Config {
                reason: "base_url must be http or https".into(),
            });
        }
        if !base.path().ends_with('/') {
            // `join` would otherwise replace the last path segment.
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base
            .join("v1/audio/speech")
            .map_err(|e| OpenAiTtsError::Config {
                reason: format!("endpoint: {e}"),
            })?;
        if !(MIN_RATE..=MAX_RATE).contains(&config.source_rate) {
            return Err(OpenAiTtsError::Config {
                reason: format!("source_rate {} Hz is out of range", config.source_rate),
            });
        }
        if config.read_timeout_ms == 0 || config.connect_timeout_ms == 0 {
            return Err(OpenAiTtsError::Config {
                reason: "timeouts must be above 0".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()
            .map_err(|e| OpenAiTtsError::Config {
                reason: format!("HTTP client: {e}"),
            })?;
        let key = ProviderKey::resolve(config.api_key.as_ref(), config.api_key_env.as_deref());
        Ok(Self {
            http,
            config,
            endpoint,
            key,
        })
    }

    pub fn config(&self) -> &OpenAiTtsConfig {
        &self.config
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    fn body(&self, request: &TtsRequest) -> serde_json::Value {
        let mut body = json!({
            "model": self.config.model,
            "voice": request.voice.as_deref().unwrap_or(&self.config.voice),
            "input": request.text,
            "response_format": "pcm",
        });
        if let Some(speed) = self.config.speed {
            body["speed"] = json!(speed);
        }
        body
    }

    async fn send(&self, request: &TtsRequest) -> Result<reqwest::Response, OpenAiTtsError> {
        let mut post = self
            .http
            .post(self.endpoint.clone())
            .json(&self.body(request));
        if let Some(key) = &self.key {
            post = post.bearer_auth(key.expose());
        }
        let response = post.send().await.map_err(OpenAiTtsError::Connect)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(response),
            429 => Err(OpenAiTtsError::RateLimited {
                retry_after: retry_after(response.headers()),
            }),
            401 | 403 => Err(OpenAiTtsError::Unauthorized { status }),
            500..=599 => Err(OpenAiTtsError::Server { status }),
            _ => {
                let read = Duration::from_millis(self.config.read_timeout_ms);
                let body = tokio::time::timeout(read, response.text())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                Err(OpenAiTtsError::Rejected {
                    status,
                    body: body.chars().take(300).collect(),
                })
            }
        }
    }
}

/// Cuts resampled audio into chunks of a fixed length.
struct Chunker {
    per_chunk: usize,
    pending: Vec<i16>,
    seq: u32,
    rate: u32,
}

impl Chunker {
    fn take_full(&mut self) -> Option<TtsChunk> {
        if self.pending.len() < self.per_chunk {
            return None;
        }
        let rest = self.pending.split_off(self.per_chunk);
        let full = std::mem::replace(&mut self.pending, rest);
        Some(self.emit(full))
    }

    fn take_rest(&mut self) -> Option<TtsChunk> {
        if self.pending.is_empty() {
            return None;
        }
        let samples = std::mem::take(&mut self.pending);
        Some(self.emit(samples))
    }

    fn emit(&mut self, samples: Vec<i16>) -> TtsChunk {
        let chunk = TtsChunk {
            seq: self.seq,
            samples,
            sample_rate: self.rate,
        };
        self.seq += 1;
        chunk
    }
}

async fn run(engine: OpenAiTts, request: TtsRequest, out: TtsBackend) {
    let rate = request.sample_rate;
    if let Err(e) = stream_speech(&engine, &request, &out).await {
        out.send(Err(e)).await;
    }
    tracing::trace!(rate, "speech stream done");
}

/// Sends every chunk; an `Err` is for the caller. Returns `Ok` on a normal
/// end and when the caller cancelled.
async fn stream_speech(
    engine: &OpenAiTts,
    request: &TtsRequest,
    out: &TtsBackend,
) -> Result<(), EngineError> {
    let rate = request.sample_rate;
    let mut resampler = Resampler::new(engine.config.source_rate, rate)?;
    let mut chunks = Chunker {
        per_chunk: (rate as usize * engine.config.chunk_ms.clamp(20, 1000) as usize / 1000).max(1),
        pending: Vec::new(),
        seq: 0,
        rate,
    };
    let mut response = tokio::select! {
        biased;
        _ = out.cancel.cancelled() => return Ok(()),
        r = engine.send(request) => r?,
    };
    let read_timeout = Duration::from_millis(engine.config.read_timeout_ms);
    // A body may split a sample across two reads.
    let mut odd: Option<u8> = None;
    let mut samples: Vec<i16> = Vec::new();
    loop {
        let piece = tokio::select! {
            biased;
            _ = out.cancel.cancelled() => return Ok(()),
            r = tokio::time::timeout(read_timeout, response.chunk()) => r,
        };
        let bytes = match piece {
            Err(_) => {
                return Err(OpenAiTtsError::ReadTimeout {
                    after: read_timeout,
                }
                .into())
            }
            Ok(Err(e)) => return Err(OpenAiTtsError::Body(e).into()),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(b))) => b,
        };
        samples.clear();
        let mut rest: &[u8] = &bytes;
        if let (Some(lo), Some((&hi, tail))) = (odd, rest.split_first()) {
            samples.push(i16::from_le_bytes([lo, hi]));
            odd = None;
            rest = tail;
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        if let [last] = pairs.remainder() {
            odd = Some(*last);
        }
        resampler.push(&samples)?;
        while let Some(frame) = resampler.pop_frame() {
            chunks.pending.extend_from_slice(&frame.samples);
        }
        while let Some(chunk) = chunks.take_full() {
            if !out.send(Ok(chunk)).await {
                return Ok(());
            }
        }
    }
    // A trailing odd byte is half a sample: dropped. After `finish` the
    // rest is taken unframed, so the clip is not padded to a whole frame.
    resampler.finish()?;
    chunks.pending.extend(resampler.drain_samples());
    while let Some(chunk) = chunks.take_full() {
        if !out.send(Ok(chunk)).await {
            return Ok(());
        }
    }
    if let Some(chunk) = chunks.take_rest() {
        out.send(Ok(chunk)).await;
    }
    Ok(())
}

impl TtsEngine for OpenAiTts {
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
            return stream;
        }
        tokio::spawn(run(self.clone(), request, backend));
        stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_key_and_errors() {
        let config = OpenAiTtsConfig {
            base_url: "http://127.0.0.1:9/proxy".into(),
            api_key: Some(ProviderKey::new("sk-very-secret")),
            ..OpenAiTtsConfig::default()
        };
        let tts = OpenAiTts::new(config.clone()).expect("tts");
        assert_eq!(
            tts.endpoint().as_str(),
            "http://127.0.0.1:9/proxy/v1/audio/speech"
        );
        assert!(!format!("{tts:?}").contains("sk-very-secret"));
        assert!(!serde_json::to_string(&config)
            .expect("json")
            .contains("sk-very-secret"));
        let body = tts.body(&TtsRequest {
            text: "hi".into(),
            voice: None,
            language: None,
            sample_rate: 8_000,
        });
        assert_eq!(body["voice"], "alloy");
        assert_eq!(body["response_format"], "pcm");
        assert!(OpenAiTts::new(OpenAiTtsConfig {
            base_url: "ftp://x".into(),
            ..OpenAiTtsConfig::default()
        })
        .is_err());
        let e: EngineError = OpenAiTtsError::RateLimited { retry_after: None }.into();
        assert!(matches!(e, EngineError::RateLimited { .. }));
        let e: EngineError = OpenAiTtsError::Server { status: 502 }.into();
        assert!(e.retryable());
        let e: EngineError = OpenAiTtsError::Rejected {
            status: 400,
            body: String::new(),
        }
        .into();
        assert!(!e.retryable());
        assert_eq!(e.blame(), Blame::Internal);
    }
}
