//! The built-in demo for `make run`: any DID is answered with a spoken
//! greeting (espeak-ng), each DTMF digit is read back ("you pressed 5"),
//! and the call is hung up after a quiet period.

use std::sync::Arc;
use std::time::Duration;

use crate::call::{
    BoxFuture, CallEvent, CallHandle, CallHandler, CallRouter, IncomingCall, PlaybackSource,
    RouteDecision,
};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub greeting: String,
    /// Hang up after this long without a digit.
    pub quiet: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            greeting: "Welcome to voxgate. Press any key and I will tell you which one it was."
                .into(),
            quiet: Duration::from_secs(10),
        }
    }
}

/// Answers every call with the demo handler.
pub struct DemoRouter {
    handler: Arc<DemoHandler>,
}

impl DemoRouter {
    pub fn new(cfg: DemoConfig) -> Self {
        Self {
            handler: Arc::new(DemoHandler { cfg }),
        }
    }
}

impl CallRouter for DemoRouter {
    fn route(&self, _call: &IncomingCall) -> RouteDecision {
        RouteDecision::Answer(self.handler.clone())
    }
}

/// Greets, reads digits back, hangs up when the caller goes quiet.
pub struct DemoHandler {
    cfg: DemoConfig,
}

/// How the demo says a digit.
pub fn spoken_digit(digit: char) -> String {
    match digit {
        '*' => "star".into(),
        '#' => "pound".into(),
        d => d.to_string(),
    }
}

fn say(text: String) -> PlaybackSource {
    PlaybackSource::Say {
        text,
        voice: None,
        rate_wpm: None,
    }
}

impl DemoHandler {
    async fn run(&self, mut call: CallHandle) {
        let mut pending = match call.play(say(self.cfg.greeting.clone())).await {
            Ok(digits) => digits,
            Err(_) => return,
        };
        loop {
            while !pending.is_empty() {
                let digit = pending.remove(0);
                let text = format!("you pressed {}", spoken_digit(digit.digit));
                match call.play(say(text)).await {
                    Ok(more) => pending.extend(more),
                    Err(_) => return,
                }
            }
            match tokio::time::timeout(self.cfg.quiet, call.next_event()).await {
                Ok(Some(CallEvent::Dtmf(d))) => pending.push(d),
                Ok(Some(CallEvent::Ended { .. })) | Ok(None) => return,
                Ok(Some(_)) => {}
                Err(_) => {
                    let _ = call.play(say("Goodbye.".into())).await;
                    call.hangup();
                    return;
                }
            }
        }
    }
}

impl CallHandler for DemoHandler {
    fn handle(&self, call: CallHandle) -> BoxFuture<'static, ()> {
        let me = DemoHandler {
            cfg: self.cfg.clone(),
        };
        Box::pin(async move { me.run(call).await })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::AudioFrame;
    use crate::call::{
        CallControl, CallError, CallInfo, PlaybackId, TransferError, TransferOutcome,
        TransferRequest,
    };
    use crate::dtmf::{DtmfEvent, DtmfSource};
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    /// A fake call: every playback finishes at once; what was said is kept.
    struct Fake {
        info: CallInfo,
        said: Mutex<Vec<String>>,
        events: mpsc::Sender<CallEvent>,
        hung_up: Mutex<bool>,
        next: Mutex<PlaybackId>,
    }

    impl CallControl for Fake {
        fn info(&self) -> &CallInfo {
            &self.info
        }
        fn start_playback(&self, source: PlaybackSource) -> Result<PlaybackId, CallError> {
            if let PlaybackSource::Say { text, .. } = source {
                self.said.lock().unwrap().push(text);
            }
            let mut n = self.next.lock().unwrap();
            *n += 1;
            let _ = self.events.try_send(CallEvent::PlaybackFinished {
                id: *n,
                stopped: false,
            });
            Ok(*n)
        }
        fn stop_playback(&self) {}
        fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame> {
            mpsc::channel(1).1
        }
        fn transfer(
            &self,
            _r: TransferRequest,
        ) -> BoxFuture<'_, Result<TransferOutcome, TransferError>> {
            Box::pin(async { Err(TransferError::CallGone) })
        }
        fn hangup(&self) {
            *self.hung_up.lock().unwrap() = true;
        }
    }

    #[tokio::test]
    async fn greets_reads_digits_back_and_hangs_up_when_quiet() {
        let (tx, rx) = mpsc::channel(16);
        let info = CallInfo {
            incoming: IncomingCall {
                call_id: "c".into(),
                did: "100".into(),
                caller_id: "a".into(),
                from_uri: "sip:a@127.0.0.1".into(),
                trunk: "default".into(),
                source: "127.0.0.1:5070".parse().unwrap(),
            },
            voxgate_id: "v".into(),
            codec: "PCMU",
            sample_rate: 8000,
        };
        let fake = Arc::new(Fake {
            info,
            said: Mutex::new(vec![]),
            events: tx.clone(),
            hung_up: Mutex::new(false),
            next: Mutex::new(0),
        });
        let handle = CallHandle::new(fake.clone(), rx);
        let cfg = DemoConfig {
            greeting: "hello".into(),
            quiet: Duration::from_millis(300),
        };
        let handler = DemoHandler { cfg };
        let digits = tokio::spawn(async move {
            for d in ['5', '#'] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send(CallEvent::Dtmf(DtmfEvent {
                    digit: d,
                    duration: Duration::from_millis(100),
                    source: DtmfSource::Rfc4733,
                }))
                .await
                .unwrap();
            }
        });
        handler.run(handle).await;
        digits.await.unwrap();
        assert_eq!(
            *fake.said.lock().unwrap(),
            ["hello", "you pressed 5", "you pressed pound", "Goodbye."]
        );
        assert!(*fake.hung_up.lock().unwrap());
    }
}
