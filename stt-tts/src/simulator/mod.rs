//! The provider simulator: a TEST DOUBLE for remote paid services (STT,
//! TTS, LLM vendors and GPU workers). It is not an engine; it answers what
//! its [`Script`] says, on real sockets, with scripted latency and faults,
//! so the gateway's timeouts, retries and failover can be tested without
//! a vendor account or a GPU.
//!
//! One port speaks every protocol: a websocket upgrade to `/v1/listen` is
//! a Deepgram-compatible live transcription ([`deepgram`]); any other
//! upgrade is the voxgate worker protocol (STT by audio fingerprint or,
//! with `match: envelope`, by speech-energy envelope ([`envelope`]), TTS
//! as a tone or espeak-ng, NLU by utterance); anything else goes to the
//! OpenAI-compatible HTTP API ([`http`]).

pub mod deepgram;
pub mod engines;
pub mod envelope;
pub mod http;
pub mod script;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::worker::{serve_connection, Engines, Shared, WorkerToken};
use engines::{ScriptFaults, ScriptedNlu, ScriptedStt, ScriptedTts, SimState, StageId};
pub use script::{
    audio_fingerprint, Delay, Faults, MatchMode, Script, ScriptError, Stage, Stages, SttLookup,
};

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head looked at when telling websocket from HTTP.
const MAX_HEAD: usize = 16 * 1024;

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("accept failed: {0}")]
    Accept(#[source] std::io::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// What `voxgate simulate --listen ADDR --script FILE` runs: loads and
/// checks the script before binding, then serves until the process ends.
pub async fn simulate(
    listen: SocketAddr,
    script: &Path,
    token: WorkerToken,
) -> Result<(), SimError> {
    let script = Script::load(script)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(addr = %listen, "provider simulator listening (a test double, not an engine)");
    run_simulator(listener, script, token, CancellationToken::new()).await
}

/// A running simulator's counters, for tests.
#[derive(Clone)]
pub struct SimulatorHandle {
    state: Arc<SimState>,
}

impl SimulatorHandle {
    /// Requests to `POST /v1/chat/completions` so far.
    pub fn llm_requests(&self) -> u32 {
        self.state.count(StageId::Llm)
    }

    /// Worker protocol STT sessions so far.
    pub fn stt_sessions(&self) -> u32 {
        self.state.count(StageId::Stt)
    }

    /// Worker protocol NLU sessions so far.
    pub fn nlu_sessions(&self) -> u32 {
        self.state.count(StageId::Nlu)
    }

    /// Requests to `POST /v1/audio/speech` so far.
    pub fn speech_requests(&self) -> u32 {
        self.state.count(StageId::Speech)
    }

    /// The `Authorization` header of the last `/v1/audio/speech` request.
    pub fn last_speech_auth(&self) -> Option<String> {
        self.state
            .speech_auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `/v1/listen` upgrades so far (refused ones included).
    pub fn deepgram_sessions(&self) -> u32 {
        self.state.count(StageId::Deepgram)
    }

    /// The `Authorization` header (if any) and the query string of the last
    /// `/v1/listen` upgrade.
    pub fn last_listen_request(&self) -> Option<(Option<String>, String)> {
        self.state
            .listen_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts the simulator on `listener` in the background; it stops when
/// `shutdown` fires.
pub fn spawn_simulator(
    listener: TcpListener,
    script: Script,
    token: WorkerToken,
    shutdown: CancellationToken,
) -> SimulatorHandle {
    let state = SimState::new(script);
    let handle = SimulatorHandle {
        state: state.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = serve(listener, state, token, shutdown).await {
            tracing::warn!(error = %e, "simulator stopped");
        }
    });
    handle
}

/// Serves `script` on `listener` until `shutdown` fires.
pub async fn run_simulator(
    listener: TcpListener,
    script: Script,
    token: WorkerToken,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    serve(listener, SimState::new(script), token, shutdown).await
}

/// Feeds HTTP connections to axum.
struct ChannelListener {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(pair) => pair,
            // The dispatcher is gone: accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What a connection's request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A websocket upgrade of this request target.
    WebSocket {
        target: String,
    },
    Http,
}

fn parse_head(head: &str) -> Head {
    if !head.to_ascii_lowercase().contains("upgrade: websocket") {
        return Head::Http;
    }
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    Head::WebSocket { target }
}

/// Whether `target` is the Deepgram endpoint (its path, not a prefix of a
/// longer segment).
fn is_listen(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    path == deepgram::LISTEN_PATH || path == format!("{}/", deepgram::LISTEN_PATH)
}

/// Reads the request head on `stream`. Peeks only: the bytes stay for
/// whoever serves the connection.
async fn read_head(stream: &TcpStream) -> Option<Head> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut seen = 0;
    let look = async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            if head.contains("\r\n\r\n") || n == MAX_HEAD {
                return Some(parse_head(&head));
            }
            if n == seen {
                // Nothing new yet; peek returns at once on old bytes.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen = n;
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, look)
        .await
        .ok()
        .flatten()
}

async fn serve(
    listener: TcpListener,
    state: Arc<SimState>,
    token: WorkerToken,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let local = listener.local_addr().map_err(SimError::Accept)?;
    let engines = Engines {
        stt: Some(Arc::new(ScriptedStt(state.clone()))),
        tts: Some(Arc::new(ScriptedTts(state.clone()))),
        nlu: Some(Arc::new(ScriptedNlu(state.clone()))),
    };
    let shared = Shared::new(token, engines, Arc::new(ScriptFaults(state.clone())));
    let (http_tx, http_rx) = mpsc::channel(64);
    let app = http::router(state.clone());
    let http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(ChannelListener { rx: http_rx, local }, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r.map_err(SimError::Accept)?,
        };
        // Replies are small frames (acks, tokens, audio chunks) written
        // one at a time: without this, Nagle holds each behind the
        // previous one's ACK, which the client may delay.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let listen_state = state.clone();
        let http_tx = http_tx.clone();
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            match read_head(&stream).await {
                Some(Head::WebSocket { target }) if is_listen(&target) => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = deepgram::serve_listen(stream, listen_state) => {}
                    }
                }
                Some(Head::WebSocket { .. }) => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve_connection(stream, shared) => {}
                    }
                }
                Some(Head::Http) => {
                    let _ = http_tx.send((stream, peer)).await;
                }
                None => {}
            }
        });
    }
    drop(http_tx);
    match http.await {
        Ok(r) => r.map_err(SimError::Http),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart_by_path() {
        let ws =
            "GET /v1/listen?encoding=linear16 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        let Head::WebSocket { target } = parse_head(ws) else {
            panic!("not a websocket");
        };
        assert!(is_listen(&target));
        assert!(!is_listen("/v1/listener"));
        assert!(!is_listen("/"));
        assert_eq!(
            parse_head("POST /v1/audio/speech HTTP/1.1\r\n\r\n"),
            Head::Http
        );
    }
}
