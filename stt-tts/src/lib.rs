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
//! - [`error`]: [`error::EngineError`] with blame and retryability.
//! - [`espeak`]: espeak-ng as a [`tts::TtsEngine`].
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
//! - [`simulator`]: a TEST DOUBLE of remote paid providers, scripted, with
//!   injectable delays and faults; behind `voxgate simulate`.
//!
//! Engines are async; pipeline stages are not. Each trait hands back a
//! channel-backed session or stream so that a synchronous stage only ever
//! polls or drains it.

pub mod error;
pub mod espeak;
pub mod llm;
pub mod nlu;
pub mod protocol;
pub mod simulator;
pub mod stt;
pub mod tts;
pub mod whisper;
pub mod worker;

pub use error::{Blame, EngineError, ErrorCode};
