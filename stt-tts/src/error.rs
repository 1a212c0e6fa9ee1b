//! The error every engine trait returns, with the blame and retry facts the
//! orchestrator needs to pick a fallback.

use std::time::Duration;

/// Whose fault an engine failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The engine or remote provider (a worker, a vendor API) failed.
    Provider,
    /// voxgate itself: bad configuration, a bug, a request it should not
    /// have sent.
    Internal,
}

/// Machine-readable error codes, shared with the worker protocol's `error`
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A frame could not be decoded.
    BadFrame,
    /// A well-formed message that the current state does not accept.
    UnexpectedMessage,
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// The worker does not serve the requested kind of session.
    UnsupportedKind,
    /// The request itself was invalid (empty text, bad rate, bad voice).
    InvalidRequest,
    /// The engine failed while running.
    EngineFailed,
    /// The engine is overloaded; try another worker or later.
    Overloaded,
    /// The session was cancelled.
    Cancelled,
    /// An error code this build does not know.
    #[serde(other)]
    Unknown,
}

/// Why an STT, TTS or intent engine could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no worker reachable: {reason}")]
    Unavailable { reason: String },
    #[error("worker protocol error: {0}")]
    Protocol(#[from] crate::protocol::ProtocolError),
    #[error("the worker reported {code:?}: {message}")]
    Remote {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
    #[error("rate limited by the provider (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the connection to the engine was lost: {reason}")]
    ConnectionLost { reason: String },
    #[error("the session was cancelled")]
    Cancelled,
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    #[error("this engine does not support {what}")]
    Unsupported { what: &'static str },
    #[error("speech synthesis failed: {0}")]
    Synthesis(#[from] voxgate_gateway::audio::TtsError),
    #[error("resampling failed: {0}")]
    Resample(#[from] voxgate_gateway::audio::ResampleError),
    #[error("LLM call failed: {0}")]
    Llm(#[from] crate::llm::LlmError),
    /// A Deepgram-compatible STT provider failed (`From` maps its 429 to
    /// [`EngineError::RateLimited`]).
    #[error("Deepgram STT: {0}")]
    Deepgram(crate::deepgram::DeepgramError),
    /// An OpenAI-compatible TTS provider failed (`From` maps its 429 to
    /// [`EngineError::RateLimited`]).
    #[error("OpenAI TTS: {0}")]
    OpenAiTts(crate::openai_tts::OpenAiTtsError),
    #[error("embedding intent classification failed: {0}")]
    Embedding(#[from] crate::nlu::embedding::EmbedError),
    #[error("speech recognition failed: {0}")]
    Stt(crate::whisper::WhisperError),
}

impl EngineError {
    /// Whose fault the error was.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Unavailable { .. }
            | Self::Protocol(_)
            | Self::Remote { .. }
            | Self::RateLimited { .. }
            | Self::ConnectionLost { .. } => Blame::Provider,
            Self::Synthesis(e) => match e {
                voxgate_gateway::audio::TtsError::InvalidVoice(_)
                | voxgate_gateway::audio::TtsError::TextTooLong { .. } => Blame::Internal,
                _ => Blame::Provider,
            },
            Self::Llm(e) => e.blame(),
            Self::Deepgram(e) => e.blame(),
            Self::OpenAiTts(e) => e.blame(),
            // The local model runs in-process: a failure is ours.
            Self::Embedding(_) => Blame::Internal,
            Self::Stt(e) if e.is_bad_request() => Blame::Internal,
            Self::Stt(_) => Blame::Provider,
            Self::Cancelled
            | Self::InvalidRequest { .. }
            | Self::Unsupported { .. }
            | Self::Resample(_) => Blame::Internal,
        }
    }

    /// Whether the same request may be sent again (to another worker).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::Protocol(_)
            | Self::RateLimited { .. }
            | Self::ConnectionLost { .. } => true,
            Self::Remote { retryable, .. } => *retryable,
            Self::Synthesis(e) => matches!(
                e,
                voxgate_gateway::audio::TtsError::Timeout
                    | voxgate_gateway::audio::TtsError::Failed { .. }
            ),
            Self::Llm(e) => e.retryable(),
            Self::Deepgram(e) => e.retryable(),
            Self::OpenAiTts(e) => e.retryable(),
            // The same input fails the same way on the same model.
            Self::Embedding(_) => false,
            Self::Stt(e) => e.retryable(),
            Self::Cancelled
            | Self::InvalidRequest { .. }
            | Self::Unsupported { .. }
            | Self::Resample(_) => false,
        }
    }

    /// The protocol code this error is reported with to a worker client.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Protocol(_) => ErrorCode::BadFrame,
            Self::Remote { code, .. } => *code,
            Self::RateLimited { .. } | Self::Unavailable { .. } => ErrorCode::Overloaded,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            Self::Stt(e) if e.is_bad_request() => ErrorCode::InvalidRequest,
            Self::Unsupported { .. } => ErrorCode::UnsupportedKind,
            Self::Deepgram(crate::deepgram::DeepgramError::Malformed { .. }) => ErrorCode::BadFrame,
            Self::Deepgram(_) | Self::OpenAiTts(_) => ErrorCode::EngineFailed,
            Self::ConnectionLost { .. }
            | Self::Synthesis(_)
            | Self::Resample(_)
            | Self::Llm(_)
            | Self::Embedding(_)
            | Self::Stt(_) => ErrorCode::EngineFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blame_and_retry() {
        let lost = EngineError::ConnectionLost {
            reason: "eof".into(),
        };
        assert_eq!(lost.blame(), Blame::Provider);
        assert!(lost.retryable());
        let bad = EngineError::InvalidRequest {
            reason: "empty".into(),
        };
        assert_eq!(bad.blame(), Blame::Internal);
        assert!(!bad.retryable());
        let remote = EngineError::Remote {
            code: ErrorCode::Overloaded,
            message: "busy".into(),
            retryable: true,
        };
        assert!(remote.retryable());
        assert_eq!(remote.code(), ErrorCode::Overloaded);
    }

    #[test]
    fn unknown_codes_decode() {
        let c: ErrorCode = serde_json::from_str("\"brand_new\"").expect("decode");
        assert_eq!(c, ErrorCode::Unknown);
    }
}
