//! The worker side: engines behind the traits, served over websockets.
//!
//! One connection runs one session at a time and may run several in a row.
//! The connection task is the driver: it waits on either the socket or the
//! current session's engine, handles that one input, and loops.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{WorkerError, WorkerToken};
use crate::error::{EngineError, ErrorCode};
use crate::nlu::{IntentEngine, NluEvent, NluStream};
use crate::protocol::{
    bytes_to_pcm, decode_client, encode, pcm_to_bytes, ClientMessage, ProtocolError, SessionConfig,
    SessionKind, WorkerMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use crate::stt::{SttEngine, SttEvent, SttSession};
use crate::tts::{TtsChunk, TtsEngine, TtsStream};

/// The engines a worker serves; a missing one answers `unsupported_kind`.
#[derive(Clone, Default)]
pub struct Engines {
    pub stt: Option<Arc<dyn SttEngine>>,
    pub tts: Option<Arc<dyn TtsEngine>>,
    pub nlu: Option<Arc<dyn IntentEngine>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("stt", &self.stt.is_some())
            .field("tts", &self.tts.is_some())
            .field("nlu", &self.nlu.is_some())
            .finish()
    }
}

/// What a fault plan does with the next data frame (the simulator's hook;
/// a real worker always sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultAction {
    Send,
    /// Send a malformed text frame first, then the frame.
    Garbage,
    /// Drop the TCP connection without a close frame.
    Disconnect,
    /// Send nothing more, answer nothing, keep the socket open.
    Stall,
}

/// Per-session fault decisions. `frames_sent` counts data frames (partial,
/// final, tts chunk, token, intent) already sent in this session.
pub(crate) trait SessionFaults: Send {
    /// How long the session takes to open (a slow start) before `ready`.
    fn start_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    fn before_frame(&mut self, frames_sent: u32) -> FaultAction;
    /// Whether to drop the connection at once, right after a data frame
    /// went out (`frames_sent` counts it), rather than when the next one
    /// is due: an STT session's next frame may be seconds away.
    fn hang_up_after(&mut self, _frames_sent: u32) -> bool {
        false
    }
}

/// Makes the fault plan of each new session.
pub(crate) trait FaultSource: Send + Sync {
    fn for_session(&self, kind: SessionKind) -> Box<dyn SessionFaults>;
}

struct NoFaults;

impl SessionFaults for NoFaults {
    fn before_frame(&mut self, _: u32) -> FaultAction {
        FaultAction::Send
    }
}

impl FaultSource for NoFaults {
    fn for_session(&self, _: SessionKind) -> Box<dyn SessionFaults> {
        Box::new(NoFaults)
    }
}

/// Serves `engines` on `listener` until the listener fails. Every upgrade
/// must carry `Authorization: Bearer <token>`; others get HTTP 401.
pub async fn serve_worker(
    listener: TcpListener,
    token: WorkerToken,
    engines: Engines,
) -> Result<(), WorkerError> {
    serve_worker_until(listener, token, engines, CancellationToken::new()).await
}

/// [`serve_worker`] that stops accepting when `shutdown` fires and ends
/// every open connection.
pub async fn serve_worker_until(
    listener: TcpListener,
    token: WorkerToken,
    engines: Engines,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let shared = Arc::new(Shared {
        token,
        engines,
        faults: Arc::new(NoFaults),
        active: AtomicU32::new(0),
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => r.map_err(WorkerError::Listen)?,
        };
        // Replies are small frames (acks, tokens, audio chunks) written
        // one at a time: without this, Nagle holds each behind the
        // previous one's ACK, which the client may delay.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = handle_stream(stream, shared) => {}
            }
            tracing::debug!(%peer, "worker connection closed");
        });
    }
}

pub(crate) struct Shared {
    pub token: WorkerToken,
    pub engines: Engines,
    pub faults: Arc<dyn FaultSource>,
    pub active: AtomicU32,
}

impl Shared {
    pub(crate) fn new(
        token: WorkerToken,
        engines: Engines,
        faults: Arc<dyn FaultSource>,
    ) -> Arc<Self> {
        Arc::new(Self {
            token,
            engines,
            faults,
            active: AtomicU32::new(0),
        })
    }
}

/// Serves one accepted stream (used by the simulator, which dispatches
/// HTTP and websocket on one port).
pub(crate) async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handle_stream(stream, shared).await;
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

async fn handle_stream<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let token = shared.token.clone();
    // tungstenite's callback signature fixes the error type.
    #[allow(clippy::result_large_err)]
    let auth = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let header = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if token.matches_header(header) {
            Ok(resp)
        } else {
            let mut refused = ErrorResponse::new(Some("missing or wrong bearer token".to_owned()));
            *refused.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refused)
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, auth, Some(ws_config()))
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "worker handshake refused");
            return;
        }
    };
    let mut conn = Conn {
        ws,
        shared,
        active: Active::Idle,
        faults: Box::new(NoFaults),
        sent: 0,
        stalled: false,
    };
    conn.run().await;
}

enum Active {
    Idle,
    Stt(SttSession),
    Tts {
        stream: TtsStream,
        chunks: u32,
        samples: u64,
    },
    Nlu(NluStream),
}

enum ActiveEvent {
    Stt(Option<Result<SttEvent, EngineError>>),
    Tts(Option<Result<TtsChunk, EngineError>>),
    Nlu(Option<Result<NluEvent, EngineError>>),
}

async fn next_active(active: &mut Active) -> ActiveEvent {
    match active {
        Active::Idle => std::future::pending().await,
        Active::Stt(s) => ActiveEvent::Stt(s.next_event().await),
        Active::Tts { stream, .. } => ActiveEvent::Tts(stream.next_chunk().await),
        Active::Nlu(s) => ActiveEvent::Nlu(s.next_event().await),
    }
}

/// Sending failed or a fault cut the connection: stop serving it.
struct Hangup;

struct Conn<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    active: Active,
    faults: Box<dyn SessionFaults>,
    sent: u32,
    stalled: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn run(&mut self) {
        loop {
            if self.stalled {
                // Read and drop everything until the peer goes away.
                match self.ws.next().await {
                    Some(Ok(_)) => continue,
                    _ => break,
                }
            }
            let outcome = tokio::select! {
                incoming = self.ws.next() => match incoming {
                    Some(Ok(msg)) => self.handle_incoming(msg).await,
                    _ => Err(Hangup),
                },
                event = next_active(&mut self.active) => self.handle_event(event).await,
            };
            if outcome.is_err() {
                break;
            }
        }
        self.set_idle();
    }

    fn set_idle(&mut self) {
        if !matches!(self.active, Active::Idle) {
            self.shared.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.active = Active::Idle;
    }

    fn set_active(&mut self, active: Active) {
        self.set_idle();
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        self.active = active;
    }

    async fn send(&mut self, msg: &WorkerMessage) -> Result<(), Hangup> {
        self.ws
            .send(Message::text(encode(msg)))
            .await
            .map_err(|_| Hangup)
    }

    /// Sends a data frame (and its audio) through the fault plan.
    async fn send_data(
        &mut self,
        msg: &WorkerMessage,
        audio: Option<&[i16]>,
    ) -> Result<(), Hangup> {
        match self.faults.before_frame(self.sent) {
            FaultAction::Send => {}
            FaultAction::Garbage => {
                self.ws
                    .send(Message::text("{\"type\":\"partial\",\"text\":\u{1}garbage"))
                    .await
                    .map_err(|_| Hangup)?;
            }
            FaultAction::Disconnect => return Err(Hangup),
            FaultAction::Stall => {
                self.stalled = true;
                return Ok(());
            }
        }
        self.sent += 1;
        self.send(msg).await?;
        if let Some(pcm) = audio {
            self.ws
                .send(Message::binary(pcm_to_bytes(pcm)))
                .await
                .map_err(|_| Hangup)?;
        }
        if self.faults.hang_up_after(self.sent) {
            return Err(Hangup);
        }
        Ok(())
    }

    async fn send_error(&mut self, e: &EngineError) -> Result<(), Hangup> {
        self.send(&WorkerMessage::Error {
            code: e.code(),
            message: e.to_string(),
            retryable: e.retryable(),
        })
        .await
    }

    async fn protocol_error(&mut self, code: ErrorCode, e: ProtocolError) -> Result<(), Hangup> {
        self.send(&WorkerMessage::Error {
            code,
            message: e.to_string(),
            retryable: false,
        })
        .await
    }

    async fn handle_incoming(&mut self, msg: Message) -> Result<(), Hangup> {
        match msg {
            Message::Text(text) => match decode_client(&text) {
                Ok(m) => self.handle_message(m).await,
                Err(e @ ProtocolError::UnsupportedVersion { .. }) => {
                    self.protocol_error(ErrorCode::UnsupportedVersion, e).await
                }
                Err(e) => self.protocol_error(ErrorCode::BadFrame, e).await,
            },
            Message::Binary(bytes) => {
                let pcm = match bytes_to_pcm(&bytes) {
                    Ok(pcm) => pcm,
                    Err(e) => return self.protocol_error(ErrorCode::BadFrame, e).await,
                };
                match &self.active {
                    Active::Stt(s) => {
                        if let Err(e) = s.push_audio(&pcm).await {
                            self.set_idle();
                            return self.send_error(&e).await;
                        }
                        Ok(())
                    }
                    _ => {
                        let e = ProtocolError::Unexpected {
                            expected: "a control message (no STT session is open)",
                            got: "binary audio",
                        };
                        self.protocol_error(ErrorCode::UnexpectedMessage, e).await
                    }
                }
            }
            Message::Close(_) => Err(Hangup),
            // Websocket pings are answered by tungstenite itself.
            _ => Ok(()),
        }
    }

    async fn handle_message(&mut self, msg: ClientMessage) -> Result<(), Hangup> {
        match msg {
            ClientMessage::Ping { seq } => {
                let active_sessions = self.shared.active.load(Ordering::Relaxed);
                self.send(&WorkerMessage::Pong {
                    seq,
                    active_sessions,
                })
                .await
            }
            ClientMessage::Pong { .. } => Ok(()),
            ClientMessage::Cancel => {
                if let Active::Stt(s) = &self.active {
                    s.cancel();
                }
                self.set_idle();
                Ok(())
            }
            ClientMessage::End => match &self.active {
                Active::Stt(s) => {
                    if let Err(e) = s.end_of_stream().await {
                        self.set_idle();
                        return self.send_error(&e).await;
                    }
                    Ok(())
                }
                _ => {
                    let e = ProtocolError::Unexpected {
                        expected: "start, ping or cancel",
                        got: "end",
                    };
                    self.protocol_error(ErrorCode::UnexpectedMessage, e).await
                }
            },
            ClientMessage::Start { session, .. } => {
                if !matches!(self.active, Active::Idle) {
                    let e = ProtocolError::Unexpected {
                        expected: "no start while a session is open",
                        got: "start",
                    };
                    return self.protocol_error(ErrorCode::UnexpectedMessage, e).await;
                }
                self.start(session).await
            }
        }
    }

    async fn start(&mut self, session: SessionConfig) -> Result<(), Hangup> {
        let kind = session.kind();
        let unsupported = EngineError::Unsupported {
            what: match kind {
                SessionKind::Stt => "stt sessions on this worker",
                SessionKind::Tts => "tts sessions on this worker",
                SessionKind::Nlu => "nlu sessions on this worker",
            },
        };
        let active = match session {
            SessionConfig::Stt(config) => match &self.shared.engines.stt {
                None => Err(unsupported),
                Some(engine) => engine.open(config).await.map(Active::Stt),
            },
            SessionConfig::Tts(request) => match &self.shared.engines.tts {
                None => Err(unsupported),
                Some(engine) => Ok(Active::Tts {
                    stream: engine.synthesize(request),
                    chunks: 0,
                    samples: 0,
                }),
            },
            SessionConfig::Nlu(request) => match &self.shared.engines.nlu {
                None => Err(unsupported),
                Some(engine) => Ok(Active::Nlu(engine.classify(request))),
            },
        };
        match active {
            Ok(active) => {
                self.set_active(active);
                self.faults = self.shared.faults.for_session(kind);
                self.sent = 0;
                let delay = self.faults.start_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                self.send(&WorkerMessage::Ready {
                    version: PROTOCOL_VERSION,
                    kind,
                })
                .await
            }
            Err(e) => self.send_error(&e).await,
        }
    }

    async fn handle_event(&mut self, event: ActiveEvent) -> Result<(), Hangup> {
        match event {
            ActiveEvent::Stt(Some(Ok(SttEvent::Partial(t)))) => {
                self.send_data(&WorkerMessage::Partial(t), None).await
            }
            ActiveEvent::Stt(Some(Ok(SttEvent::Final(t)))) => {
                self.send_data(&WorkerMessage::Final(t), None).await
            }
            ActiveEvent::Stt(None) => {
                self.set_idle();
                self.send(&WorkerMessage::End).await
            }
            ActiveEvent::Tts(Some(Ok(chunk))) => {
                if let Active::Tts {
                    chunks, samples, ..
                } = &mut self.active
                {
                    *chunks += 1;
                    *samples += chunk.samples.len() as u64;
                }
                let meta = WorkerMessage::TtsChunk {
                    seq: chunk.seq,
                    samples: chunk.samples.len() as u32,
                    sample_rate: chunk.sample_rate,
                };
                self.send_data(&meta, Some(&chunk.samples)).await
            }
            ActiveEvent::Tts(None) => {
                let end = match &self.active {
                    Active::Tts {
                        chunks, samples, ..
                    } => WorkerMessage::TtsEnd {
                        chunks: *chunks,
                        samples: *samples,
                    },
                    _ => WorkerMessage::TtsEnd {
                        chunks: 0,
                        samples: 0,
                    },
                };
                self.set_idle();
                self.send(&end).await
            }
            ActiveEvent::Nlu(Some(Ok(NluEvent::Token(text)))) => {
                self.send_data(&WorkerMessage::Token { text }, None).await
            }
            ActiveEvent::Nlu(Some(Ok(NluEvent::Result(r)))) => {
                self.set_idle();
                self.send_data(&WorkerMessage::Intent(r), None).await
            }
            ActiveEvent::Nlu(None) => {
                self.set_idle();
                self.send_error(&EngineError::ConnectionLost {
                    reason: "the intent engine ended without a result".into(),
                })
                .await
            }
            ActiveEvent::Stt(Some(Err(e)))
            | ActiveEvent::Tts(Some(Err(e)))
            | ActiveEvent::Nlu(Some(Err(e))) => {
                self.set_idle();
                self.send_error(&e).await
            }
        }
    }
}
