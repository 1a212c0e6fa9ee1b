//! The local speech-to-text engine: whisper.cpp through whisper-rs.
//!
//! ```text
//!  SttSession ──Audio──▶ session task: buffer ──(End, or max_segment_ms)──▶ chunk
//!                                                                          │
//!  SttSession ◀──Final── to_transcript ◀── Pool::decode (blocking pool, ≤ N states)
//! ```
//!
//! A session is one utterance: the orchestrator's VAD decides where it
//! starts and ends. Audio is buffered as it arrives and decoded when the
//! caller sends `End` (whisper is not a streaming model, so there are no
//! partials). An utterance longer than `max_segment_ms` (whisper's 30 s
//! window by default) is cut and each piece gets its own `Final`, so
//! memory and latency stay bounded when an endpoint never comes.
//!
//! The model is loaded once ([`WhisperModel::load`]) and checked in Rust
//! first ([`ggml`]), so a missing, unreadable or corrupt file is a typed
//! error at startup, never an abort inside whisper.cpp.
//!
//! - [`ggml`]: the model file format check and the tensor layout.
//! - [`fetch`]: `voxgate models fetch whisper <size>`: download from the
//!   official source, SHA-256 checked against a built-in table.
//! - `decode`: decoder states on the blocking pool; whisper output to
//!   [`Transcript`].
//! - [`testmodel`] (`test-util`): a generator of tiny valid model files.

mod decode;
mod error;
pub mod fetch;
pub mod ggml;
#[cfg(any(test, feature = "test-util"))]
pub mod testmodel;

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use whisper_rs::{WhisperContext, WhisperContextParameters};

pub use error::WhisperError;
pub use ggml::ModelInfo;

use crate::error::EngineError;
use crate::stt::{
    BoxFuture, SttBackend, SttConfig, SttEngine, SttEvent, SttInput, SttSession, Transcript,
    STT_SAMPLE_RATE,
};
use decode::{to_transcript, Lang, Pool, Settings};

/// The environment variable naming a whisper model file (worker and
/// benchmark).
pub const MODEL_ENV: &str = "VOXGATE_WHISPER_MODEL";

/// Where `voxgate models fetch whisper <size>` puts `ggml-<size>.bin`,
/// relative to the data dir.
pub const MODELS_SUBDIR: &str = "models/whisper";

/// The model a worker or benchmark uses when none is named.
pub const DEFAULT_SIZE: &str = "base.en";

/// `<data_dir>/models/whisper/ggml-<size>.bin`.
pub fn model_path(data_dir: &Path, size: &str) -> PathBuf {
    data_dir
        .join(MODELS_SUBDIR)
        .join(format!("ggml-{size}.bin"))
}

/// How the engine runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// whisper.cpp threads per decode.
    pub threads: usize,
    /// Decodes that may run at once; each has its own decoder state (tens
    /// to hundreds of MB for real models). More sessions wait their turn.
    pub max_concurrent_decodes: usize,
    /// A session's audio is cut into pieces of at most this long, each
    /// decoded and reported as its own `Final`.
    pub max_segment_ms: u64,
    /// Candidates when whisper falls back to sampling.
    pub best_of: u32,
    /// Re-decode at higher temperatures when the result looks like a
    /// hallucination (whisper's default). Better text on hard audio, up to
    /// several times the latency.
    pub temperature_fallback: bool,
    /// Cap on tokens per whisper segment; 0 leaves whisper's own limit.
    /// A cap bounds the cost of a decoder stuck repeating itself.
    pub max_tokens_per_segment: u32,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(4);
        Self {
            threads,
            max_concurrent_decodes: (cores / threads).max(1),
            max_segment_ms: 30_000,
            best_of: 2,
            temperature_fallback: true,
            max_tokens_per_segment: 0,
        }
    }
}

impl WhisperConfig {
    /// The defaults with the operator's thread and decode counts (`voxgate
    /// worker --whisper-threads/--whisper-decodes`, `[ai.stt] threads/
    /// decodes`). Decodes left unset share the cores among the threads.
    pub fn sized(threads: Option<usize>, decodes: Option<usize>) -> Self {
        let mut config = Self::default();
        if let Some(n) = threads {
            config.threads = n;
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            config.max_concurrent_decodes = (cores / n.max(1)).max(1);
        }
        if let Some(n) = decodes {
            config.max_concurrent_decodes = n;
        }
        config
    }

    pub fn validate(&self) -> Result<(), WhisperError> {
        let bad = |field, problem| Err(WhisperError::InvalidConfig { field, problem });
        if !(1..=64).contains(&self.threads) {
            return bad("threads", "must be 1..=64");
        }
        if !(1..=64).contains(&self.max_concurrent_decodes) {
            return bad("max_concurrent_decodes", "must be 1..=64");
        }
        if !(1_000..=30_000).contains(&self.max_segment_ms) {
            return bad(
                "max_segment_ms",
                "must be 1000..=30000 (whisper's window is 30 s)",
            );
        }
        if !(1..=8).contains(&self.best_of) {
            return bad("best_of", "must be 1..=8");
        }
        if self.max_tokens_per_segment > 448 {
            return bad("max_tokens_per_segment", "must be 0..=448");
        }
        Ok(())
    }

    fn settings(&self) -> Settings {
        Settings {
            threads: self.threads as i32,
            best_of: self.best_of as i32,
            temperature_fallback: self.temperature_fallback,
            max_tokens: self.max_tokens_per_segment as i32,
        }
    }

    fn max_segment_samples(&self) -> usize {
        (self.max_segment_ms * u64::from(STT_SAMPLE_RATE) / 1000) as usize
    }
}

/// A loaded whisper model, shared by every session.
pub struct WhisperModel {
    pool: Arc<Pool>,
    info: ModelInfo,
    path: PathBuf,
    config: WhisperConfig,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("config", &self.config)
            .finish()
    }
}

fn unreadable(path: &Path, source: std::io::Error) -> WhisperError {
    WhisperError::ModelUnreadable {
        path: path.to_owned(),
        source,
    }
}

impl WhisperModel {
    /// Checks and loads the model at `path`, and allocates one decoder
    /// state. Blocking (it reads the whole model): call it at startup, or
    /// from `spawn_blocking`.
    pub fn load(path: &Path, config: WhisperConfig) -> Result<Self, WhisperError> {
        config.validate()?;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WhisperError::ModelMissing {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(unreadable(path, e)),
        };
        if meta.is_dir() {
            return Err(unreadable(
                path,
                std::io::Error::from(std::io::ErrorKind::IsADirectory),
            ));
        }
        let info = ggml::check_file(path).map_err(|e| match e {
            ggml::CheckError::Format(problem) => WhisperError::ModelCorrupt {
                path: path.to_owned(),
                problem,
            },
            ggml::CheckError::Io(e) => unreadable(path, e),
        })?;
        // whisper.cpp logs to stderr unless told otherwise; route it into
        // tracing (whisper_rs::* targets) instead.
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(path, params).map_err(|source| {
            WhisperError::ModelRejected {
                path: path.to_owned(),
                source,
            }
        })?;
        let pool = Pool::new(ctx, config.settings(), config.max_concurrent_decodes)?;
        tracing::info!(
            path = %path.display(),
            weights = info.weight_type,
            layers = info.hparams.n_audio_layer,
            state = info.hparams.n_audio_state,
            multilingual = info.hparams.multilingual(),
            "whisper model loaded"
        );
        Ok(Self {
            pool: Arc::new(pool),
            info,
            path: path.to_owned(),
            config,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// The whisper language for a BCP 47 tag: its primary subtag, or
    /// auto-detection for "" and "auto". English-only models take only
    /// English.
    pub fn language_for(&self, tag: &str) -> Result<Option<&'static str>, WhisperError> {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let multilingual = self.info.hparams.multilingual();
        if primary.is_empty() || primary == "auto" {
            return Ok(if multilingual { None } else { Some("en") });
        }
        // Checked before whisper-rs sees it: it panics on a NUL byte.
        let plausible =
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase());
        let known = plausible
            .then(|| whisper_rs::get_lang_id(&primary))
            .flatten()
            .and_then(whisper_rs::get_lang_str);
        let Some(lang) = known else {
            return Err(WhisperError::UnknownLanguage {
                tag: tag.to_owned(),
            });
        };
        if !multilingual && lang != "en" {
            return Err(WhisperError::EnglishOnlyModel {
                tag: tag.to_owned(),
            });
        }
        Ok(Some(lang))
    }

    /// Decodes one piece of 16 kHz audio that started `offset_ms` into its
    /// session.
    async fn decode_at(
        &self,
        pcm: &[i16],
        offset_ms: u64,
        lang: Lang,
    ) -> Result<Transcript, WhisperError> {
        let duration_ms = pcm.len() as u64 * 1000 / u64::from(STT_SAMPLE_RATE);
        let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let decoded = self.pool.clone().decode(samples, lang).await?;
        Ok(to_transcript(&decoded, offset_ms, duration_ms))
    }

    /// Decodes one utterance of 16 kHz mono PCM (the benchmark's entry;
    /// sessions use the same path).
    pub async fn transcribe(
        &self,
        pcm: &[i16],
        language: &str,
    ) -> Result<Transcript, WhisperError> {
        let lang = self.language_for(language)?;
        self.decode_at(pcm, 0, lang).await
    }
}

/// [`WhisperModel`] as an [`SttEngine`].
#[derive(Debug, Clone)]
pub struct WhisperStt {
    model: Arc<WhisperModel>,
    /// Used instead of each session's language when set.
    language: Option<String>,
}

impl WhisperStt {
    pub fn new(model: Arc<WhisperModel>) -> Self {
        Self {
            model,
            language: None,
        }
    }

    /// Loads the model at `path` (see [`WhisperModel::load`]); what
    /// `voxgate worker --engines stt` and the AI node's `[ai.stt] provider
    /// = "whisper"` both use. Blocking.
    pub fn load(path: &Path, config: WhisperConfig) -> Result<Self, WhisperError> {
        Ok(Self::new(Arc::new(WhisperModel::load(path, config)?)))
    }

    /// Decodes every session in `language` (BCP 47, or `auto`) instead of
    /// the session's own; checked against the model now, so an
    /// English-only model asked for German fails at startup.
    pub fn with_language(mut self, language: Option<String>) -> Result<Self, WhisperError> {
        if let Some(tag) = &language {
            self.model.language_for(tag)?;
        }
        self.language = language;
        Ok(self)
    }

    pub fn model(&self) -> &Arc<WhisperModel> {
        &self.model
    }
}

impl SttEngine for WhisperStt {
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        let model = self.model.clone();
        let forced = self.language.clone();
        Box::pin(async move {
            if config.sample_rate != STT_SAMPLE_RATE {
                return Err(WhisperError::UnsupportedRate {
                    rate: config.sample_rate,
                }
                .into());
            }
            let lang = model.language_for(forced.as_deref().unwrap_or(&config.language))?;
            let (session, backend) = SttSession::channel();
            tokio::spawn(run_session(model, lang, backend));
            Ok(session)
        })
    }
}

/// A piece of a session's audio waiting for its decode.
struct Chunk {
    pcm: Vec<i16>,
    offset_samples: u64,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Transcript, WhisperError>> + Send + 'a>>;

async fn next_result(pending: &mut Option<Pending<'_>>) -> Result<Transcript, WhisperError> {
    match pending {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

/// Drives one session: buffers audio, cuts pieces at `max_segment_ms` and
/// at `End`, decodes them one at a time in order, and reports each as a
/// `Final`. Input keeps flowing while a piece decodes. Cancellation drops
/// the decode in flight, which aborts it.
async fn run_session(model: Arc<WhisperModel>, lang: Lang, mut io: SttBackend) {
    let max = model.config.max_segment_samples();
    let mut buffer: Vec<i16> = Vec::new();
    let mut buffered_from: u64 = 0;
    let mut queue: VecDeque<Chunk> = VecDeque::new();
    let mut pending: Option<Pending<'_>> = None;
    let mut ended = false;
    loop {
        if pending.is_none() {
            if let Some(chunk) = queue.pop_front() {
                let offset_ms = chunk.offset_samples * 1000 / u64::from(STT_SAMPLE_RATE);
                let model = &model;
                pending = Some(Box::pin(async move {
                    model.decode_at(&chunk.pcm, offset_ms, lang).await
                }));
            } else if ended {
                return;
            }
        }
        tokio::select! {
            biased;
            _ = io.cancel.cancelled() => return,
            result = next_result(&mut pending) => {
                pending = None;
                let event = result.map(SttEvent::Final).map_err(EngineError::from);
                let failed = event.is_err();
                if io.events.send(event).await.is_err() || failed {
                    return;
                }
            }
            input = io.input.recv(), if !ended => match input {
                None => return,
                Some(SttInput::Audio(pcm)) => {
                    buffer.extend_from_slice(&pcm);
                    while buffer.len() >= max {
                        let rest = buffer.split_off(max);
                        let pcm = std::mem::replace(&mut buffer, rest);
                        queue.push_back(Chunk { pcm, offset_samples: buffered_from });
                        buffered_from += max as u64;
                    }
                }
                Some(SttInput::End) => {
                    ended = true;
                    // Always one closing Final, even for no audio at all,
                    // so the caller's turn logic sees the utterance end.
                    let pcm = std::mem::take(&mut buffer);
                    let len = pcm.len() as u64;
                    queue.push_back(Chunk { pcm, offset_samples: buffered_from });
                    buffered_from += len;
                }
            },
        }
    }
}

impl From<WhisperError> for EngineError {
    fn from(e: WhisperError) -> Self {
        match e {
            WhisperError::Cancelled => EngineError::Cancelled,
            other => EngineError::Stt(other),
        }
    }
}
