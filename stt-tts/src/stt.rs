//! Streaming speech-to-text: the session contract every STT engine (local,
//! worker, vendor) implements.
//!
//! A session is a pair of channels: the caller pushes 16 kHz PCM frames and
//! reads [`SttEvent`]s. The engine side ([`SttBackend`]) is driven by the
//! engine's own task, so pipeline stages stay synchronous and only engine
//! adapters are async. Dropping the [`SttSession`] cancels it.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::EngineError;

/// A boxed, sendable future: what the object-safe engine traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The rate every STT engine is fed at.
pub const STT_SAMPLE_RATE: u32 = 16_000;

/// How one STT session is opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SttConfig {
    /// Rate of the PCM pushed into the session, in Hz.
    pub sample_rate: u32,
    /// BCP 47 language tag, for example `en-US`.
    pub language: String,
}

impl Default for SttConfig {
    fn default() -> Self {
        Self {
            sample_rate: STT_SAMPLE_RATE,
            language: "en-US".to_owned(),
        }
    }
}

/// One recognised word with its place in the session's audio.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word {
    pub text: String,
    /// Milliseconds from the start of the session's audio.
    pub start_ms: u64,
    pub end_ms: u64,
    /// 0..1.
    pub confidence: f32,
}

/// A transcript of one segment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transcript {
    pub text: String,
    /// 0..1.
    pub confidence: f32,
    /// Segment start and end, milliseconds from the start of the session.
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub words: Vec<Word>,
}

impl Transcript {
    /// Moves every timestamp `offset_ms` later (used after failover, when a
    /// new worker counts from the start of the replayed audio).
    pub fn shifted(mut self, offset_ms: u64) -> Self {
        self.start_ms += offset_ms;
        self.end_ms += offset_ms;
        for w in &mut self.words {
            w.start_ms += offset_ms;
            w.end_ms += offset_ms;
        }
        self
    }
}

/// What an STT session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A hypothesis that may still change.
    Partial(Transcript),
    /// A settled segment; audio up to its `end_ms` will not be revisited.
    Final(Transcript),
}

/// What the caller sends into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttInput {
    Audio(Vec<i16>),
    /// No more audio: the engine flushes its last final and ends the stream.
    End,
}

/// The caller's end of one streaming recognition.
pub struct SttSession {
    input: mpsc::Sender<SttInput>,
    events: mpsc::Receiver<Result<SttEvent, EngineError>>,
    cancel: CancellationToken,
    _guard: DropGuard,
}

impl std::fmt::Debug for SttSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SttSession")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The engine's end of a session.
#[derive(Debug)]
pub struct SttBackend {
    pub input: mpsc::Receiver<SttInput>,
    pub events: mpsc::Sender<Result<SttEvent, EngineError>>,
    pub cancel: CancellationToken,
}

/// Frames of input buffered between the caller and the engine.
const CHANNEL_DEPTH: usize = 256;

impl SttSession {
    /// A connected pair of caller and engine ends.
    pub fn channel() -> (SttSession, SttBackend) {
        let (in_tx, in_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_DEPTH);
        let cancel = CancellationToken::new();
        (
            SttSession {
                input: in_tx,
                events: ev_rx,
                cancel: cancel.clone(),
                _guard: cancel.clone().drop_guard(),
            },
            SttBackend {
                input: in_rx,
                events: ev_tx,
                cancel,
            },
        )
    }

    /// Pushes PCM at the session's rate. Fails with
    /// [`EngineError::Cancelled`] once the engine has gone away.
    pub async fn push_audio(&self, pcm: &[i16]) -> Result<(), EngineError> {
        self.input
            .send(SttInput::Audio(pcm.to_vec()))
            .await
            .map_err(|_| EngineError::Cancelled)
    }

    /// Ends the audio; the engine flushes and then closes the event stream.
    pub async fn end_of_stream(&self) -> Result<(), EngineError> {
        self.input
            .send(SttInput::End)
            .await
            .map_err(|_| EngineError::Cancelled)
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next_event(&mut self) -> Option<Result<SttEvent, EngineError>> {
        self.events.recv().await
    }

    /// Stops the session at once. Events already queued may still be read.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// A streaming speech-to-text engine.
pub trait SttEngine: Send + Sync {
    /// Opens a session. Connection and start-up failures come back here;
    /// later failures arrive as `Err` events.
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_session_cancels_the_backend() {
        let (session, backend) = SttSession::channel();
        assert!(!backend.cancel.is_cancelled());
        drop(session);
        assert!(backend.cancel.is_cancelled());
    }

    #[test]
    fn shifting_moves_words_too() {
        let t = Transcript {
            text: "a".into(),
            confidence: 1.0,
            start_ms: 10,
            end_ms: 20,
            words: vec![Word {
                text: "a".into(),
                start_ms: 10,
                end_ms: 20,
                confidence: 1.0,
            }],
        }
        .shifted(100);
        assert_eq!((t.start_ms, t.end_ms), (110, 120));
        assert_eq!((t.words[0].start_ms, t.words[0].end_ms), (110, 120));
    }
}
