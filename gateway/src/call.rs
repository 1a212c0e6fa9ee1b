//! The call handle that the rest of voxgate drives, and the routing hook
//! that chooses who answers a DID.
//!
//! The SIP layer builds a [`CallHandle`] for every answered call and passes
//! it to the [`CallHandler`] that the [`CallRouter`] chose. The handle is a
//! thin front over a [`CallControl`] implementation, so handlers (the flow
//! interpreter, the demo) can be tested against a fake call without sockets.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audio::AudioFrame;
use crate::dtmf::DtmfEvent;
pub use crate::media::turns::{TurnAudio, TurnCut, TurnGate, TurnStream, TurnStreamHandle};

/// A boxed, sendable future, as handlers and controls return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the SIP layer knows about a new inbound call before it is answered.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// SIP Call-ID of the inbound dialog.
    pub call_id: String,
    /// The dialled number: the user part of the Request-URI.
    pub did: String,
    /// The caller id: the user part of the From URI (or P-Asserted-Identity).
    pub caller_id: String,
    /// The full From URI.
    pub from_uri: String,
    /// The trunk the INVITE was accepted on.
    pub trunk: String,
    /// Where the INVITE came from (after Via received/rport).
    pub source: SocketAddr,
}

/// Facts about an answered call, available to its handler.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub incoming: IncomingCall,
    /// voxgate's own id for the call, stable across transfers; it goes into
    /// `X-Voxgate-Call-Id` and the call records.
    pub voxgate_id: String,
    /// The negotiated codec name, for example `PCMU`.
    pub codec: &'static str,
    /// The sample rate of the frames the handle delivers and accepts.
    pub sample_rate: u32,
}

/// What the router decides for an inbound call.
pub enum RouteDecision {
    /// Answer the call and run this handler on it.
    Answer(Arc<dyn CallHandler>),
    /// Refuse the call with this SIP status, for example 404 or 480.
    Reject { status: u16, reason: String },
}

/// The DID-to-handler routing hook. Flows fill it with published flows.
pub trait CallRouter: Send + Sync + 'static {
    fn route(&self, call: &IncomingCall) -> RouteDecision;
}

/// Runs one answered call to its end.
pub trait CallHandler: Send + Sync + 'static {
    fn handle(&self, call: CallHandle) -> BoxFuture<'static, ()>;
}

/// Whose fault an error was, for records, metrics and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    Caller,
    Carrier,
    AiProvider,
    Internal,
}

/// A call-level error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("the call has ended")]
    Ended,
    #[error("audio file {path}: {reason}")]
    Audio { path: PathBuf, reason: String },
    #[error("speech synthesis failed: {0}")]
    Tts(String),
    #[error("media session failed: {0}")]
    Media(String),
    #[error("this call cannot do {what}")]
    Unsupported { what: &'static str },
}

impl CallError {
    pub fn blame(&self) -> Blame {
        match self {
            CallError::Ended => Blame::Caller,
            CallError::Audio { .. }
            | CallError::Tts(_)
            | CallError::Media(_)
            | CallError::Unsupported { .. } => Blame::Internal,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, CallError::Tts(_) | CallError::Media(_))
    }
}

/// What to play to the caller.
#[derive(Debug, Clone)]
pub enum PlaybackSource {
    /// A WAV file of any common format and rate; resampled to the call rate.
    Wav(PathBuf),
    /// Text spoken by espeak-ng.
    Say {
        text: String,
        voice: Option<String>,
        rate_wpm: Option<u32>,
    },
    /// PCM already at hand, at the stated rate.
    Pcm {
        samples: Arc<[i16]>,
        sample_rate: u32,
    },
}

/// Identifies one playback on a call, in [`CallEvent::PlaybackFinished`].
pub type PlaybackId = u64;

/// Events a handler receives.
#[derive(Debug, Clone)]
pub enum CallEvent {
    Dtmf(DtmfEvent),
    /// A playback reached its end (`stopped == false`) or was stopped.
    PlaybackFinished {
        id: PlaybackId,
        stopped: bool,
    },
    /// The caller put us on hold (re-INVITE sendonly/inactive) or resumed.
    Hold,
    Resume,
    /// The far end hung up, or the call was torn down. No more events follow.
    Ended {
        reason: String,
    },
}

/// Blind (REFER) or bridged (B2BUA) transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    Blind,
    Bridged,
}

/// A transfer of the caller to an agent.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    pub mode: TransferMode,
    /// A SIP URI or a `tel:` URI; a `tel:` URI is sent verbatim.
    pub target: String,
    /// Context headers, for example `X-Voxgate-Intent`. `X-Voxgate-Call-Id`
    /// is always added.
    pub headers: Vec<(String, String)>,
    /// How long the agent may ring (bridged) or NOTIFY may take (blind).
    pub timeout: Duration,
}

/// How a transfer that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The REFER was accepted and the transferee reported success; our leg
    /// has been released.
    Referred,
    /// The agent answered and the bridge ran until one side hung up.
    Bridged { agent_answered_after: Duration },
}

/// Why a transfer failed. The caller is still on the line in every case but
/// [`TransferError::CallGone`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the transfer target rejected the call with {status}")]
    Rejected { status: u16 },
    #[error("the transfer target did not answer in time")]
    NoAnswer,
    #[error("no final answer to the transfer in time")]
    Timeout,
    #[error("REFER accepted but no NOTIFY arrived")]
    NoNotify,
    #[error("invalid transfer target: {0}")]
    InvalidTarget(String),
    #[error("the call ended during the transfer")]
    CallGone,
}

/// The operations a live call offers. The SIP layer implements it; tests
/// implement it with a fake.
pub trait CallControl: Send + Sync + 'static {
    fn info(&self) -> &CallInfo;
    /// Starts playing; the end is reported as [`CallEvent::PlaybackFinished`].
    /// A new playback replaces one in progress.
    fn start_playback(&self, source: PlaybackSource) -> Result<PlaybackId, CallError>;
    /// Stops the playback in progress, if any, at the next frame.
    fn stop_playback(&self);
    /// Starts turn-tagged streaming speech (see [`TurnStream`]), replacing
    /// any playback in progress; it ends, with
    /// [`CallEvent::PlaybackFinished`], when the sender is dropped. Calls
    /// that cannot stream say so.
    fn start_turn_stream(&self, stream: TurnStream) -> Result<PlaybackId, CallError> {
        drop(stream);
        Err(CallError::Unsupported {
            what: "turn-tagged streaming playback",
        })
    }
    /// Frames of the caller's decoded audio, at [`CallInfo::sample_rate`].
    /// Each call replaces the previous subscriber.
    fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame>;
    fn transfer(
        &self,
        request: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferOutcome, TransferError>>;
    /// Sends BYE (or the right final response) and ends the call.
    fn hangup(&self);
}

/// A live call as a handler sees it.
pub struct CallHandle {
    control: Arc<dyn CallControl>,
    events: mpsc::Receiver<CallEvent>,
}

impl CallHandle {
    pub fn new(control: Arc<dyn CallControl>, events: mpsc::Receiver<CallEvent>) -> Self {
        Self { control, events }
    }

    pub fn info(&self) -> &CallInfo {
        self.control.info()
    }

    /// The control half, for tasks that act on the call while another one
    /// reads its events.
    pub fn control(&self) -> Arc<dyn CallControl> {
        self.control.clone()
    }

    /// The next event, or `None` once the call has ended and every event
    /// was read.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    pub fn start_playback(&self, source: PlaybackSource) -> Result<PlaybackId, CallError> {
        self.control.start_playback(source)
    }

    pub fn stop_playback(&self) {
        self.control.stop_playback()
    }

    /// Plays `source` to its end. DTMF that arrives meanwhile is kept and
    /// returned, in order, so a caller who types ahead loses nothing.
    pub async fn play(&mut self, source: PlaybackSource) -> Result<Vec<DtmfEvent>, CallError> {
        let id = self.control.start_playback(source)?;
        let mut digits = Vec::new();
        loop {
            match self.events.recv().await {
                Some(CallEvent::PlaybackFinished { id: done, .. }) if done == id => {
                    return Ok(digits)
                }
                Some(CallEvent::Dtmf(d)) => digits.push(d),
                Some(CallEvent::Ended { .. }) | None => return Err(CallError::Ended),
                Some(_) => {}
            }
        }
    }

    pub async fn transfer(
        &self,
        request: TransferRequest,
    ) -> Result<TransferOutcome, TransferError> {
        self.control.transfer(request).await
    }

    pub fn hangup(&self) {
        self.control.hangup()
    }
}
