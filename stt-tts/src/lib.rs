//! Speech and language engines for voxgate's AI node: the only crate that
//! knows engine and vendor wire formats.
//!
//! # Layout
//! - [`stt`]: the streaming STT session contract ([`stt::SttEngine`],
//!   [`stt::SttSession`], [`stt::SttEvent`]).
//! - [`tts`]: the TTS contract ([`tts::TtsEngine`], [`tts::TtsStream`] of
//!   PCM chunks; drop or cancel stops at once).
//! - [`nlu`]: the intent contract ([`nlu::IntentEngine`],
//!   [`nlu::IntentResult`]), slot extraction, and the lexical fallback
//!   classifier used when no embedding model is present.
//! - [`nlu::embedding`]: the embedding intent classifier (all-MiniLM-L6-v2
//!   through candle, sha256-checked; calibrated cosine scoring) and
//!   [`nlu::embedding::build_intent_engine`], which falls back to the
//!   labelled lexical classifier when the model is absent.
//! - [`error`]: [`error::EngineError`] with blame and retryability.
//! - [`espeak`]: espeak-ng as a [`tts::TtsEngine`].
//! - [`tts_cache`]: [`tts_cache::CachedTts`], a memory (LRU) and disk cache
//!   in front of any TTS engine.
//! - [`deepgram`]: a Deepgram-compatible streaming STT adapter (websocket,
//!   sans-IO session core).
//! - [`openai_tts`]: an OpenAI-compatible `/v1/audio/speech` TTS adapter
//!   (streamed HTTP, resampled to the call's rate).
//! - [`provider_key`]: provider API keys from config or the environment,
//!   never shown in `Debug` or serialised.
//! - [`protocol`]: the voxgate worker protocol's messages and frame codec
//!   (pure; see `docs/worker-protocol.md`).
//! - [`worker`]: that protocol over websockets: [`worker::serve_worker`]
//!   puts engines on the network; [`worker::WorkerPool`] reaches them with
//!   least-loaded choice, health checks and STT failover.
//! - [`llm`]: the OpenAI-compatible chat-completions client (SSE streaming,
//!   structured output, first-token deadline).
//! - [`whisper`]: whisper.cpp (whisper-rs) as a local [`stt::SttEngine`]:
//!   model file checks at load, bounded decodes on the blocking pool, and
//!   (`test-util`) a generator of tiny valid model files.
//! - [`simulator`]: a TEST DOUBLE of remote paid providers (the worker
//!   protocol, a Deepgram-compatible `/v1/listen`, the OpenAI-compatible
//!   HTTP API), scripted, with injectable delays and faults; behind
//!   `voxgate simulate`.
//!
//! Engines are async; pipeline stages are not. Each trait hands back a
//! channel-backed session or stream so that a synchronous stage only ever
//! polls or drains it.

pub mod deepgram;
pub mod error;
pub mod espeak;
pub mod llm;
pub mod nlu;
pub mod openai_tts;
pub mod protocol;
pub mod provider_key;
pub mod simulator;
pub mod stt;
pub mod tts;
pub mod tts_cache;
pub mod whisper;
pub mod worker;

pub use error::{Blame, EngineError, ErrorCode};
