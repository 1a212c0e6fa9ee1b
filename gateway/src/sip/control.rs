//! [`SipControl`]: the [`CallControl`] a handler drives, over one call's
//! [`MediaSession`] and its SIP call task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::audio::{open_source, AudioFrame, SayConfig};
use crate::call::{
    BoxFuture, CallControl, CallError, CallEvent, CallInfo, PlaybackId, PlaybackSource,
    TransferError, TransferOutcome, TransferRequest, TurnStream,
};
use crate::media::{MediaSession, MEDIA_SAMPLE_RATE};

/// What the control asks of the call task.
pub(crate) enum ControlCommand {
    Hangup,
    Transfer(
        TransferRequest,
        oneshot::Sender<Result<TransferOutcome, TransferError>>,
    ),
}

/// Our playback ids against the media session's.
#[derive(Default)]
struct Playbacks {
    next: PlaybackId,
    /// A playback whose source is still being opened (speech synthesis).
    opening: Option<PlaybackId>,
    /// Media playback id → ours.
    started: HashMap<PlaybackId, PlaybackId>,
}

/// The live call behind a [`crate::call::CallHandle`].
pub struct SipControl {
    info: CallInfo,
    media: Arc<MediaSession>,
    events: mpsc::Sender<CallEvent>,
    commands: mpsc::UnboundedSender<ControlCommand>,
    say: SayConfig,
    playbacks: Arc<Mutex<Playbacks>>,
}

impl SipControl {
    pub(crate) fn new(
        info: CallInfo,
        media: Arc<MediaSession>,
        events: mpsc::Sender<CallEvent>,
        commands: mpsc::UnboundedSender<ControlCommand>,
        say: SayConfig,
    ) -> Self {
        Self {
            info,
            media,
            events,
            commands,
            say,
            playbacks: Arc::new(Mutex::new(Playbacks::default())),
        }
    }

    /// Translates a media playback id into ours, forgetting it.
    pub(crate) fn finished(&self, media_id: PlaybackId) -> Option<PlaybackId> {
        self.playbacks.lock().ok()?.started.remove(&media_id)
    }

    fn emit(events: &mpsc::Sender<CallEvent>, ev: CallEvent) {
        if events.try_send(ev).is_err() {
            tracing::warn!("call event dropped: the handler is not reading its events");
        }
    }
}

impl CallControl for SipControl {
    fn info(&self) -> &CallInfo {
        &self.info
    }

    fn start_playback(&self, source: PlaybackSource) -> Result<PlaybackId, CallError> {
        let id = {
            let mut p = self
                .playbacks
                .lock()
                .map_err(|_| CallError::Media("playback state poisoned".into()))?;
            p.next += 1;
            let next = p.next;
            if let Some(old) = p.opening.replace(next) {
                // Replaced before it started playing.
                Self::emit(
                    &self.events,
                    CallEvent::PlaybackFinished {
                        id: old,
                        stopped: true,
                    },
                );
            }
            p.next
        };
        let (media, events, say, playbacks) = (
            self.media.clone(),
            self.events.clone(),
            self.say.clone(),
            self.playbacks.clone(),
        );
        tokio::spawn(async move {
            let opened = open_source(&source, MEDIA_SAMPLE_RATE, &say).await;
            let Ok(mut p) = playbacks.lock() else { return };
            if p.opening != Some(id) {
                return; // stopped or replaced while opening; already reported
            }
            p.opening = None;
            let started = opened
                .map_err(|e| e.to_string())
                .and_then(|src| media.start_playback(src).map_err(|e| e.to_string()));
            match started {
                Ok(media_id) => {
                    p.started.insert(media_id, id);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "playback could not start");
                    Self::emit(&events, CallEvent::PlaybackFinished { id, stopped: true });
                }
            }
        });
        Ok(id)
    }

    fn stop_playback(&self) {
        if let Ok(mut p) = self.playbacks.lock() {
            if let Some(id) = p.opening.take() {
                Self::emit(
                    &self.events,
                    CallEvent::PlaybackFinished { id, stopped: true },
                );
            }
        }
        self.media.stop_playback();
    }

    fn start_turn_stream(&self, stream: TurnStream) -> Result<PlaybackId, CallError> {
        let mut p = self
            .playbacks
            .lock()
            .map_err(|_| CallError::Media("playback state poisoned".into()))?;
        p.next += 1;
        let id = p.next;
        if let Some(old) = p.opening.take() {
            Self::emit(
                &self.events,
                CallEvent::PlaybackFinished {
                    id: old,
                    stopped: true,
                },
            );
        }
        let media_id = self
            .media
            .start_turn_stream(stream)
            .map_err(|e| CallError::Media(e.to_string()))?;
        p.started.insert(media_id, id);
        Ok(id)
    }

    fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame> {
        self.media.subscribe_audio()
    }

    fn transfer(
        &self,
        request: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferOutcome, TransferError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(ControlCommand::Transfer(request, tx))
                .map_err(|_| TransferError::CallGone)?;
            rx.await.map_err(|_| TransferError::CallGone)?
        })
    }

    fn hangup(&self) {
        let _ = self.commands.send(ControlCommand::Hangup);
    }
}
