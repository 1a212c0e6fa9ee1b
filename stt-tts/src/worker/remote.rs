//! The engine traits over a [`WorkerPool`]: what the orchestrator calls.
//!
//! STT sessions survive a worker dying mid-stream: the driver keeps the
//! audio sent since the last final, opens the session on another worker,
//! replays that audio, and shifts the new worker's timestamps by the audio
//! already settled, so the caller sees one continuous session. TTS and NLU
//! retry on another worker only before the session has started; a failure
//! after the first chunk is reported (retryable) instead, since replaying
//! half-spoken audio would be heard.

use super::client::{Incoming, WorkerConnection};
use super::pool::{Lease, WorkerPool};
use super::WorkerError;
use crate::error::EngineError;
use crate::nlu::{IntentEngine, NluEvent, NluRequest, NluStream};
use crate::protocol::{ClientMessage, ProtocolError, SessionConfig, WorkerMessage};
use crate::stt::{BoxFuture, SttBackend, SttConfig, SttEngine, SttEvent, SttInput, SttSession};
use crate::tts::{TtsChunk, TtsEngine, TtsRequest, TtsStream};

/// Samples per binary frame when replaying buffered audio (100 ms at 16 kHz).
const REPLAY_FRAME: usize = 1_600;

impl SttEngine for WorkerPool {
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        Box::pin(async move {
            if config.sample_rate == 0 {
                return Err(EngineError::InvalidRequest {
                    reason: "sample rate 0".into(),
                });
            }
            let session = SessionConfig::Stt(config.clone());
            let (lease, conn) = WorkerPool::open(self, &session, &mut Vec::new()).await?;
            let (caller, backend) = SttSession::channel();
            let driver = SttDriver {
                pool: self.clone(),
                session,
                rate: u64::from(config.sample_rate),
                buffer: Vec::new(),
                base_samples: 0,
                ended: false,
                backend,
            };
            tokio::spawn(driver.run(lease, conn));
            Ok(caller)
        })
    }
}

struct SttDriver {
    pool: WorkerPool,
    session: SessionConfig,
    rate: u64,
    /// Audio sent since the last final.
    buffer: Vec<i16>,
    /// Session samples settled by finals (where `buffer` starts).
    base_samples: u64,
    ended: bool,
    backend: SttBackend,
}

enum Leg {
    /// The session is over (ended, cancelled, or a final error was sent).
    Done,
    /// The worker failed; move to another.
    Failed(WorkerError),
}

impl SttDriver {
    /// Runs the session on `conn`, moving it to another worker when one is
    /// lost. With no other worker to go to (or after `max_failovers`), the
    /// loss is reported at once as the session's error: the caller's
    /// budget must not wait for its stall watchdog to find out.
    async fn run(mut self, mut lease: Lease, mut conn: WorkerConnection) {
        let mut failovers = 0u32;
        let mut failure = match self.leg(&mut conn).await {
            Leg::Done => {
                conn.close().await;
                return;
            }
            Leg::Failed(e) => e,
        };
        loop {
            tracing::warn!(worker = %conn.url(), error = %failure, "STT worker failed mid-session");
            if !matches!(failure, WorkerError::Remote { .. }) {
                self.pool.mark_failed(lease.index, &failure);
            }
            failovers += 1;
            if failovers > self.pool.inner.config.max_failovers {
                let _ = self.backend.events.send(Err(failure.into())).await;
                return;
            }
            let mut exclude = vec![lease.index];
            match self.pool.open(&self.session, &mut exclude).await {
                Ok((l, c)) => {
                    lease = l;
                    conn = c;
                }
                // Nowhere else to go: the lost worker is the error.
                Err(WorkerError::NoWorkers) => {
                    let _ = self.backend.events.send(Err(failure.into())).await;
                    return;
                }
                Err(e) => {
                    let _ = self.backend.events.send(Err(e.into())).await;
                    return;
                }
            }
            // The new worker must hear the utterance from where the last
            // final left it, or its transcript would miss the start; a
            // replay that fails is one more lost worker.
            if let Err(e) = self.replay(&mut conn).await {
                failure = e;
                continue;
            }
            match self.leg(&mut conn).await {
                Leg::Done => {
                    conn.close().await;
                    return;
                }
                Leg::Failed(e) => failure = e,
            }
        }
    }

    async fn replay(&mut self, conn: &mut WorkerConnection) -> Result<(), WorkerError> {
        for frame in self.buffer.chunks(REPLAY_FRAME) {
            conn.send_audio(frame).await?;
        }
        if self.ended {
            conn.send(&ClientMessage::End).await?;
        }
        Ok(())
    }

    fn base_ms(&self) -> u64 {
        self.base_samples * 1000 / self.rate
    }

    /// Drops buffered audio up to `end_ms` of the session.
    fn settle(&mut self, end_ms: u64) {
        let end_sample = end_ms * self.rate / 1000;
        let n = end_sample
            .saturating_sub(self.base_samples)
            .min(self.buffer.len() as u64);
        self.buffer.drain(..n as usize);
        self.base_samples += n;
    }

    async fn emit(&self, event: Result<SttEvent, EngineError>) -> bool {
        self.backend.events.send(event).await.is_ok()
    }

    async fn leg(&mut self, conn: &mut WorkerConnection) -> Leg {
        loop {
            tokio::select! {
                biased;
                _ = self.backend.cancel.cancelled() => {
                    let _ = conn.send(&ClientMessage::Cancel).await;
                    return Leg::Done;
                }
                input = self.backend.input.recv(), if !self.ended => {
                    let sent = match input {
                        Some(SttInput::Audio(pcm)) => {
                            self.buffer.extend_from_slice(&pcm);
                            conn.send_audio(&pcm).await
                        }
                        Some(SttInput::End) => {
                            self.ended = true;
                            conn.send(&ClientMessage::End).await
                        }
                        None => {
                            let _ = conn.send(&ClientMessage::Cancel).await;
                            return Leg::Done;
                        }
                    };
                    if let Err(e) = sent {
                        return Leg::Failed(e);
                    }
                }
                incoming = conn.recv() => {
                    let base = self.base_ms();
                    match incoming {
                        Ok(Incoming::Message(WorkerMessage::Partial(t))) => {
                            if !self.emit(Ok(SttEvent::Partial(t.shifted(base)))).await {
                                return Leg::Done;
                            }
                        }
                        Ok(Incoming::Message(WorkerMessage::Final(t))) => {
                            let t = t.shifted(base);
                            self.settle(t.end_ms);
                            if !self.emit(Ok(SttEvent::Final(t))).await {
                                return Leg::Done;
                            }
                        }
                        Ok(Incoming::Message(WorkerMessage::End)) => return Leg::Done,
                        Ok(Incoming::Message(WorkerMessage::Error { code, message, retryable })) => {
                            let e = WorkerError::Remote { code, message, retryable };
                            if retryable {
                                return Leg::Failed(e);
                            }
                            self.emit(Err(e.into())).await;
                            return Leg::Done;
                        }
                        Ok(Incoming::Message(_)) => {}
                        Ok(Incoming::Audio(_)) => {
                            return Leg::Failed(ProtocolError::Unexpected {
                                expected: "an STT control message",
                                got: "binary audio",
                            }.into());
                        }
                        Err(e) => return Leg::Failed(e),
                    }
                }
            }
        }
    }
}

impl TtsEngine for WorkerPool {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let (stream, backend) = TtsStream::channel(request.sample_rate);
        let pool = self.clone();
        tokio::spawn(async move {
            let session = SessionConfig::Tts(request);
            let (lease, mut conn) = match pool.open(&session, &mut Vec::new()).await {
                Ok(pair) => pair,
                Err(e) => {
                    backend.send(Err(e.into())).await;
                    return;
                }
            };
            let mut meta: Option<(u32, u32, u32)> = None;
            let outcome: Result<(), WorkerError> = loop {
                let incoming = tokio::select! {
                    biased;
                    _ = backend.cancel.cancelled() => {
                        let _ = conn.send(&ClientMessage::Cancel).await;
                        break Ok(());
                    }
                    incoming = conn.recv() => incoming,
                };
                match incoming {
                    Ok(Incoming::Message(WorkerMessage::TtsChunk {
                        seq,
                        samples,
                        sample_rate,
                    })) => {
                        meta = Some((seq, samples, sample_rate));
                    }
                    Ok(Incoming::Audio(pcm)) => {
                        let Some((seq, samples, sample_rate)) = meta.take() else {
                            break Err(ProtocolError::Unexpected {
                                expected: "tts_chunk before its audio",
                                got: "binary audio",
                            }
                            .into());
                        };
                        if pcm.len() != samples as usize {
                            break Err(ProtocolError::Unexpected {
                                expected: "as many samples as tts_chunk announced",
                                got: "a different number",
                            }
                            .into());
                        }
                        if !backend
                            .send(Ok(TtsChunk {
                                seq,
                                samples: pcm,
                                sample_rate,
                            }))
                            .await
                        {
                            let _ = conn.send(&ClientMessage::Cancel).await;
                            break Ok(());
                        }
                    }
                    Ok(Incoming::Message(WorkerMessage::TtsEnd { .. })) => break Ok(()),
                    Ok(Incoming::Message(WorkerMessage::Error {
                        code,
                        message,
                        retryable,
                    })) => {
                        break Err(WorkerError::Remote {
                            code,
                            message,
                            retryable,
                        })
                    }
                    Ok(Incoming::Message(_)) => {}
                    Err(e) => break Err(e),
                }
            };
            if let Err(e) = outcome {
                if !matches!(e, WorkerError::Remote { .. }) {
                    pool.mark_failed(lease.index, &e);
                }
                backend.send(Err(e.into())).await;
            }
            conn.close().await;
        });
        stream
    }
}

impl IntentEngine for WorkerPool {
    fn classify(&self, request: NluRequest) -> NluStream {
        let (stream, backend) = NluStream::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let session = SessionConfig::Nlu(request);
            let (lease, mut conn) = match pool.open(&session, &mut Vec::new()).await {
                Ok(pair) => pair,
                Err(e) => {
                    backend.send(Err(e.into())).await;
                    return;
                }
            };
            let outcome: Result<(), WorkerError> = loop {
                let incoming = tokio::select! {
                    biased;
                    _ = backend.cancel.cancelled() => {
                        let _ = conn.send(&ClientMessage::Cancel).await;
                        break Ok(());
                    }
                    incoming = conn.recv_message() => incoming,
                };
                match incoming {
                    Ok(WorkerMessage::Token { text }) => {
                        if !backend.send(Ok(NluEvent::Token(text))).await {
                            break Ok(());
                        }
                    }
                    Ok(WorkerMessage::Intent(r)) => {
                        backend.send(Ok(NluEvent::Result(r))).await;
                        break Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            if let Err(e) = outcome {
                if !matches!(e, WorkerError::Remote { .. }) {
                    pool.mark_failed(lease.index, &e);
                }
                backend.send(Err(e.into())).await;
            }
            conn.close().await;
        });
        stream
    }
}
