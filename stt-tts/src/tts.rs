//! Text-to-speech: a request in, a stream of PCM chunks out.
//!
//! The caller timestamps chunk arrival itself (first-byte latency is an
//! observer's job, not the engine's). Dropping a [`TtsStream`] or calling
//! [`TtsStream::cancel`] stops synthesis at once; engines check the token
//! between chunks and abandon their work (espeak-ng is killed on drop).

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::EngineError;

/// What to speak.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TtsRequest {
    pub text: String,
    /// Engine voice name; `None` picks the engine's voice for `language`.
    #[serde(default)]
    pub voice: Option<String>,
    /// BCP 47 language tag.
    #[serde(default)]
    pub language: Option<String>,
    /// Rate of the PCM the caller wants, in Hz.
    pub sample_rate: u32,
}

/// One chunk of mono 16-bit PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsChunk {
    /// 0, 1, 2… within the stream.
    pub seq: u32,
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

/// The caller's end of one synthesis.
pub struct TtsStream {
    sample_rate: u32,
    chunks: mpsc::Receiver<Result<TtsChunk, EngineError>>,
    cancel: CancellationToken,
    _guard: DropGuard,
}

impl std::fmt::Debug for TtsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsStream")
            .field("sample_rate", &self.sample_rate)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The engine's end of a synthesis.
#[derive(Debug)]
pub struct TtsBackend {
    pub chunks: mpsc::Sender<Result<TtsChunk, EngineError>>,
    pub cancel: CancellationToken,
}

impl TtsBackend {
    /// Sends one item unless the caller has cancelled or gone; returns
    /// whether the engine should go on.
    pub async fn send(&self, item: Result<TtsChunk, EngineError>) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.chunks.send(item) => sent.is_ok(),
        }
    }
}

/// Chunks buffered ahead of the reader. Small, so cancellation leaves
/// little synthesised audio behind.
const CHANNEL_DEPTH: usize = 8;

impl TtsStream {
    /// A connected pair of caller and engine ends at `sample_rate`.
    pub fn channel(sample_rate: u32) -> (TtsStream, TtsBackend) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let cancel = CancellationToken::new();
        (
            TtsStream {
                sample_rate,
                chunks: rx,
                cancel: cancel.clone(),
                _guard: cancel.clone().drop_guard(),
            },
            TtsBackend { chunks: tx, cancel },
        )
    }

    /// A stream that fails at once with `err`.
    pub fn failed(sample_rate: u32, err: EngineError) -> TtsStream {
        let (stream, backend) = Self::channel(sample_rate);
        // A fresh channel has room for one item.
        let _ = backend.chunks.try_send(Err(err));
        stream
    }

    /// The rate of every chunk in this stream.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The next chunk; `None` at the end of the speech. After
    /// [`cancel`](Self::cancel) nothing more is returned.
    pub async fn next_chunk(&mut self) -> Option<Result<TtsChunk, EngineError>> {
        if self.cancel.is_cancelled() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            item = self.chunks.recv() => item,
        }
    }

    /// Stops the synthesis at once.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels this stream (for a barge-in handler elsewhere).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// A text-to-speech engine.
pub trait TtsEngine: Send + Sync {
    /// Starts speaking `request`. Errors, including start-up ones, arrive
    /// on the stream. Must be called within a tokio runtime.
    fn synthesize(&self, request: TtsRequest) -> TtsStream;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_stops_reading_at_once() {
        let (mut stream, backend) = TtsStream::channel(8_000);
        assert!(
            backend
                .send(Ok(TtsChunk {
                    seq: 0,
                    samples: vec![1; 10],
                    sample_rate: 8_000
                }))
                .await
        );
        stream.cancel();
        assert!(stream.next_chunk().await.is_none());
        assert!(!backend.send(Err(EngineError::Cancelled)).await);
    }

    #[tokio::test]
    async fn failed_stream_yields_its_error() {
        let mut s = TtsStream::failed(16_000, EngineError::Unsupported { what: "tts" });
        assert!(matches!(
            s.next_chunk().await,
            Some(Err(EngineError::Unsupported { .. }))
        ));
        assert!(s.next_chunk().await.is_none());
    }
}
