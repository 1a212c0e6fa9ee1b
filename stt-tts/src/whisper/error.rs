//! Why loading a whisper model or decoding with it failed.

use std::path::PathBuf;

use super::ggml::FormatError;

/// A whisper model could not be loaded, or a decode failed.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error("whisper model {path} does not exist (fetch one with `voxgate models fetch whisper base.en`)")]
    ModelMissing { path: PathBuf },
    #[error("whisper model {path} cannot be read: {source}")]
    ModelUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("whisper model {path} is not a usable ggml whisper model: {problem}")]
    ModelCorrupt {
        path: PathBuf,
        #[source]
        problem: FormatError,
    },
    #[error("whisper.cpp refused model {path} ({source})")]
    ModelRejected {
        path: PathBuf,
        #[source]
        source: whisper_rs::WhisperError,
    },
    #[error("whisper.cpp could not allocate a decoder state: {0}")]
    State(#[source] whisper_rs::WhisperError),
    #[error("invalid whisper configuration: {field} {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: &'static str,
    },
    #[error("the STT session must be fed 16000 Hz PCM, not {rate} Hz")]
    UnsupportedRate { rate: u32 },
    #[error("language {tag:?} is not one whisper knows")]
    UnknownLanguage { tag: String },
    #[error("language {tag:?} needs a multilingual model; this one is English-only")]
    EnglishOnlyModel { tag: String },
    #[error("whisper decode failed: {0}")]
    Decode(#[source] whisper_rs::WhisperError),
    #[error("the whisper decode task died: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
    #[error("the decode was cancelled")]
    Cancelled,
}

impl WhisperError {
    /// Whether the same audio may be sent again (to another worker):
    /// decode failures may be transient (memory), bad requests are not.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::State(_) | Self::Decode(_) | Self::TaskFailed(_))
    }

    /// Whether the request itself was at fault (rate, language).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedRate { .. }
                | Self::UnknownLanguage { .. }
                | Self::EnglishOnlyModel { .. }
        )
    }
}
