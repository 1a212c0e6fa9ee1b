//! A Deepgram-compatible streaming STT adapter ([`DeepgramStt`]): one
//! websocket per session to `/v1/listen` (Deepgram's cloud, a self-hosted
//! Deepgram, or the provider simulator).
//!
//! The session logic (keep-alives, the end-of-stream handshake, mapping of
//! results, close codes and errors) is the sans-IO [`session::SessionCore`];
//! [`run`] is its thin driver: it waits on the caller, the socket and the
//! core's next deadline, feeds one input with `now`, and drains outputs.

pub mod session;
pub mod wire;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;
use voxgate_gateway::clock;

use crate::error::{Blame, EngineError};
use crate::provider_key::{ProviderKey, DEEPGRAM_API_KEY_ENV};
use crate::stt::{BoxFuture, SttBackend, SttConfig, SttEngine, SttInput, SttSession};
use session::{CallerInput, Frame, Output, ServerInput, SessionCore};

/// Deepgram's hosted endpoint.
pub const DEFAULT_URL: &str = "wss://api.deepgram.com/v1/listen";

/// How to reach a Deepgram-compatible service. The key comes from
/// `api_key`, else from the environment variable `api_key_env`; it is
/// never serialised and `Debug` never shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepgramConfig {
    /// `ws://` or `wss://` URL of the listen endpoint.
    pub url: String,
    #[serde(skip_serializing)]
    pub api_key: Option<ProviderKey>,
    /// Read when `api_key` is unset; `None` sends no `Authorization`
    /// header (a self-hosted server without auth).
    pub api_key_env: Option<String>,
    /// Deepgram model, for example `nova-3`; `None` is the server default.
    pub model: Option<String>,
    /// Overrides the session's language when set.
    pub language: Option<String>,
    pub punctuate: bool,
    pub smart_format: bool,
    /// Silence that ends an utterance on Deepgram's side; `None` disables
    /// its endpointing (voxgate's VAD decides).
    pub endpointing_ms: Option<u32>,
    pub utterance_end_ms: Option<u32>,
    /// `KeepAlive` after this long without sending audio.
    pub keep_alive_ms: u64,
    /// The websocket handshake, TLS included.
    pub connect_timeout_ms: u64,
    /// After `CloseStream`, how long the server may take to finish.
    pub close_timeout_ms: u64,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            api_key: None,
            api_key_env: Some(DEEPGRAM_API_KEY_ENV.to_owned()),
            model: None,
            language: None,
            punctuate: true,
            smart_format: false,
            endpointing_ms: Some(300),
            utterance_end_ms: None,
            keep_alive_ms: 4_000,
            connect_timeout_ms: 5_000,
            close_timeout_ms: 3_000,
        }
    }
}

/// Why a Deepgram session failed.
#[derive(Debug, thiserror::Error)]
pub enum DeepgramError {
    #[error("invalid Deepgram configuration: {reason}")]
    Config { reason: String },
    #[error("cannot reach the STT provider: {source}")]
    Connect {
        #[source]
        source: WsError,
    },
    #[error("the STT provider refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("the STT provider is rate limiting (HTTP 429, retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the STT provider answered the upgrade with HTTP {status}")]
    HttpStatus { status: u16 },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    #[error("malformed message from the STT provider: {reason}")]
    Malformed { reason: String },
    #[error("the STT provider reported {code}: {message}")]
    ProviderError { code: String, message: String },
    #[error("the STT provider closed the stream (code {code}: {reason})")]
    Closed { code: u16, reason: String },
    #[error("the connection to the STT provider was lost: {reason}")]
    ConnectionLost { reason: String },
}

/// Close code 1008 (policy violation): Deepgram's answer to audio it
/// cannot decode (`DATA-0000`), i.e. what we sent was wrong.
const CLOSE_POLICY: u16 = 1008;

impl DeepgramError {
    pub fn blame(&self) -> Blame {
        match self {
            Self::Config { .. } => Blame::Internal,
            Self::Closed { code, .. } if *code == CLOSE_POLICY => Blame::Internal,
            _ => Blame::Provider,
        }
    }

    /// Whether a new connection may succeed where this one failed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Unauthorized { .. } => false,
            Self::HttpStatus { status } => *status >= 500,
            Self::Closed { code, .. } => *code != CLOSE_POLICY,
            Self::Connect { .. }
            | Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::Malformed { .. }
            | Self::ProviderError { .. }
            | Self::ConnectionLost { .. } => true,
        }
    }
}

impl From<DeepgramError> for EngineError {
    fn from(e: DeepgramError) -> Self {
        match e {
            DeepgramError::RateLimited { retry_after } => EngineError::RateLimited { retry_after },
            other => EngineError::Deepgram(other),
        }
    }
}

/// The Deepgram-compatible STT engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    config: DeepgramConfig,
    url: Url,
    key: Option<ProviderKey>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl DeepgramStt {
    /// Checks the configuration and resolves the key; no connection yet.
    pub fn new(config: DeepgramConfig) -> Result<Self, DeepgramError> {
        voxgate_gateway::crypto::install_crypto_provider();
        let url = Url::parse(&config.url).map_err(|e| DeepgramError::Config {
            reason: format!("url {:?}: {e}", config.url),
        })?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(DeepgramError::Config {
                reason: format!("url {:?} must be ws:// or wss://", config.url),
            });
        }
        if config.keep_alive_ms == 0 || config.connect_timeout_ms == 0 {
            return Err(DeepgramError::Config {
                reason: "keep_alive_ms and connect_timeout_ms must be above 0".into(),
            });
        }
        let key = ProviderKey::resolve(config.api_key.as_ref(), config.api_key_env.as_deref());
        Ok(Self { config, url, key })
    }

    pub fn config(&self) -> &DeepgramConfig {
        &self.config
    }

    /// Whether a key was found (config or environment).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The URL a session with `stt` connects to.
    pub fn session_url(&self, stt: &SttConfig) -> Url {
        let c = &self.config;
        wire::listen_url(
            &self.url,
            &wire::ListenParams {
                sample_rate: stt.sample_rate,
                language: c.language.as_deref().unwrap_or(&stt.language),
                model: c.model.as_deref(),
                punctuate: c.punctuate,
                smart_format: c.smart_format,
                endpointing_ms: c.endpointing_ms,
                utterance_end_ms: c.utterance_end_ms,
            },
        )
    }

    async fn connect(&self, stt: &SttConfig) -> Result<Ws, DeepgramError> {
        let url = self.session_url(stt);
        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|e| DeepgramError::Config {
                    reason: format!("request: {e}"),
                })?;
        if let Some(key) = &self.key {
            let mut value =
                HeaderValue::from_str(&format!("Token {}", key.expose())).map_err(|_| {
                    DeepgramError::Config {
                        reason: "the API key is not a valid header value".into(),
                    }
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert("authorization", value);
        }
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let attempt = tokio_tungstenite::connect_async_with_config(request, None, true);
        match tokio::time::timeout(timeout, attempt).await {
            Err(_) => Err(DeepgramError::Timeout {
                what: "the websocket handshake",
                after: timeout,
            }),
            Ok(Err(WsError::Http(resp))) => {
                let status = resp.status().as_u16();
                Err(match status {
                    401 | 403 => DeepgramError::Unauthorized { status },
                    429 => DeepgramError::RateLimited {
                        retry_after: resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs),
                    },
                    _ => DeepgramError::HttpStatus { status },
                })
            }
            Ok(Err(source)) => Err(DeepgramError::Connect { source }),
            Ok(Ok((ws, _))) => Ok(ws),
        }
    }
}

impl SttEngine for DeepgramStt {
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        Box::pin(async move {
            if !(8_000..=48_000).contains(&config.sample_rate) {
                return Err(EngineError::InvalidRequest {
                    reason: format!("sample rate {} Hz", config.sample_rate),
                });
            }
            let ws = self.connect(&config).await?;
            let (session, backend) = SttSession::channel();
            let core = SessionCore::new(
                clock::now(),
                Duration::from_millis(self.config.keep_alive_ms),
                Duration::from_millis(self.config.close_timeout_ms),
            );
            tokio::spawn(run(core, ws, backend));
            Ok(session)
        })
    }
}

/// What woke the driver.
enum Wake {
    Caller(Option<SttInput>),
    Socket(Option<Result<Message, WsError>>),
    Timer,
    Cancelled,
}

/// Drives one session until the core is done or the caller cancels.
async fn run(mut core: SessionCore, mut ws: Ws, mut io: SttBackend) {
    loop {
        let deadline = core.poll_timeout().map(|(at, _)| at);
        let wants_input = core.wants_input();
        let wake = tokio::select! {
            biased;
            _ = io.cancel.cancelled() => Wake::Cancelled,
            m = ws.next() => Wake::Socket(m),
            i = io.input.recv(), if wants_input => Wake::Caller(i),
            _ = sleep_until(deadline) => Wake::Timer,
        };
        let now = clock::now();
        match wake {
            Wake::Cancelled | Wake::Caller(None) => {
                // The caller is gone: nobody wants the transcript.
                let _ = ws.close(None).await;
                return;
            }
            Wake::Caller(Some(SttInput::Audio(pcm))) => {
                core.handle_caller(now, CallerInput::Audio(pcm))
            }
            Wake::Caller(Some(SttInput::End)) => core.handle_caller(now, CallerInput::End),
            Wake::Timer => core.handle_timeout(now),
            Wake::Socket(m) => match m {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => core
                    .handle_server(
                        now,
                        ServerInput::Lost {
                            reason: "the connection closed without a close frame".into(),
                        },
                    ),
                Some(Err(e)) => core.handle_server(
                    now,
                    ServerInput::Lost {
                        reason: e.to_string(),
                    },
                ),
                Some(Ok(Message::Text(t))) => core.handle_server(now, ServerInput::Text(&t)),
                Some(Ok(Message::Binary(b))) => {
                    core.handle_server(now, ServerInput::Binary(b.len()))
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match &frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str()),
                        None => (None, ""),
                    };
                    core.handle_server(now, ServerInput::Close { code, reason })
                }
                // Pings are answered by tungstenite.
                Some(Ok(_)) => {}
            },
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Send(frame) => {
                    let msg = match frame {
                        Frame::Audio(bytes) => Message::binary(bytes),
                        Frame::Control(text) => Message::text(text),
                    };
                    if let Err(e) = ws.send(msg).await {
                        core.handle_server(
                            clock::now(),
                            ServerInput::Lost {
                                reason: format!("send failed: {e}"),
                            },
                        );
                    }
                }
                Output::Event(event) => {
                    if !send_event(&io, Ok(event)).await {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
                Output::Failed(e) => {
                    tracing::debug!(error = %e, request_id = ?core.request_id(), "Deepgram session failed");
                    send_event(&io, Err(e.into())).await;
                    let _ = ws.close(Some(close_frame())).await;
                    return;
                }
                Output::Finished => {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        }
    }
}

fn close_frame() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

async fn send_event(io: &SttBackend, event: Result<crate::stt::SttEvent, EngineError>) -> bool {
    tokio::select! {
        biased;
        _ = io.cancel.cancelled() => false,
        r = io.events.send(event) => r.is_ok(),
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_and_hides_the_key() {
        let config = DeepgramConfig {
            url: "ws://127.0.0.1:1/v1/listen".into(),
            api_key: Some(ProviderKey::new("dg-very-secret")),
            ..DeepgramConfig::default()
        };
        let engine = DeepgramStt::new(config.clone()).expect("engine");
        assert!(engine.has_key());
        assert!(!format!("{engine:?}").contains("dg-very-secret"));
        let json = serde_json::to_string(&config).expect("json");
        assert!(!json.contains("dg-very-secret"), "{json}");
        let bad = DeepgramStt::new(DeepgramConfig {
            url: "http://x/v1/listen".into(),
            ..DeepgramConfig::default()
        });
        assert!(matches!(bad, Err(DeepgramError::Config { .. })));
        let parsed: DeepgramConfig = serde_json::from_str(
            r#"{"url":"wss://dg.example/v1/listen","api_key":"k","model":"nova-3"}"#,
        )
        .expect("parse");
        assert_eq!(parsed.api_key, Some(ProviderKey::new("k")));
        assert_eq!(parsed.keep_alive_ms, 4_000);
    }

    #[test]
    fn errors_blame_and_retry() {
        assert!(DeepgramError::HttpStatus { status: 503 }.retryable());
        assert!(!DeepgramError::HttpStatus { status: 400 }.retryable());
        assert!(!DeepgramError::Unauthorized { status: 401 }.retryable());
        let policy = DeepgramError::Closed {
            code: 1008,
            reason: "DATA-0000".into(),
        };
        assert_eq!(policy.blame(), Blame::Internal);
        assert!(!policy.retryable());
        let e: EngineError = DeepgramError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        }
        .into();
        assert!(matches!(e, EngineError::RateLimited { .. }));
        let e: EngineError = DeepgramError::Malformed { reason: "x".into() }.into();
        assert_eq!(e.blame(), Blame::Provider);
        assert!(e.retryable());
    }
}
