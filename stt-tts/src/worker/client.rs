//! One client connection to a worker.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::{WorkerError, WorkerToken};
use crate::protocol::{
    bytes_to_pcm, decode_worker, encode, pcm_to_bytes, ClientMessage, ProtocolError, SessionConfig,
    WorkerMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

/// What arrived from a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(WorkerMessage),
    Audio(Vec<i16>),
}

/// An open websocket to one worker.
pub struct WorkerConnection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: Url,
    seq: u64,
}

impl std::fmt::Debug for WorkerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConnection")
            .field("url", &self.url.as_str())
            .finish()
    }
}

/// Connects to `url` (`ws://host:port/path`) with the bearer token, within
/// `timeout`. A 401 comes back as [`WorkerError::Unauthorized`].
pub async fn connect(
    url: &Url,
    token: &WorkerToken,
    timeout: Duration,
) -> Result<WorkerConnection, WorkerError> {
    if url.scheme() != "ws" {
        // wss:// needs a TLS connector; not built yet.
        return Err(WorkerError::InvalidUrl {
            url: url.to_string(),
        });
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|_| WorkerError::InvalidUrl {
            url: url.to_string(),
        })?;
    let header =
        HeaderValue::from_str(&token.header_value()).map_err(|_| WorkerError::InvalidUrl {
            url: url.to_string(),
        })?;
    request.headers_mut().insert("authorization", header);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (ws, _) = match tokio::time::timeout(timeout, attempt).await {
        Err(_) => {
            return Err(WorkerError::Timeout {
                what: "the websocket handshake",
                after: timeout,
            })
        }
        Ok(Err(WsError::Http(resp))) if resp.status().as_u16() == 401 => {
            return Err(WorkerError::Unauthorized {
                url: url.to_string(),
            })
        }
        Ok(Err(WsError::Http(resp))) => {
            return Err(WorkerError::HttpStatus {
                url: url.to_string(),
                status: resp.status().as_u16(),
            })
        }
        Ok(Err(source)) => {
            return Err(WorkerError::Connect {
                url: url.to_string(),
                source,
            })
        }
        Ok(Ok(pair)) => pair,
    };
    Ok(WorkerConnection {
        ws,
        url: url.clone(),
        seq: 0,
    })
}

impl WorkerConnection {
    /// The worker's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), WorkerError> {
        Ok(self.ws.send(Message::text(encode(msg))).await?)
    }

    /// Sends PCM as one binary frame.
    pub async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), WorkerError> {
        Ok(self.ws.send(Message::binary(pcm_to_bytes(pcm))).await?)
    }

    /// Sends raw text (tests use it to send garbage).
    pub async fn send_raw_text(&mut self, text: &str) -> Result<(), WorkerError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// The next control message or audio frame. Worker `ping`s are answered
    /// here and not returned.
    pub async fn recv(&mut self) -> Result<Incoming, WorkerError> {
        loop {
            let msg = match self.ws.next().await {
                None => return Err(WorkerError::Closed),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Err(WorkerError::Closed)
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Text(text) => match decode_worker(&text)? {
                    WorkerMessage::Ping { seq } => {
                        self.send(&ClientMessage::Pong { seq }).await?;
                    }
                    m => return Ok(Incoming::Message(m)),
                },
                Message::Binary(bytes) => return Ok(Incoming::Audio(bytes_to_pcm(&bytes)?)),
                Message::Close(_) => return Err(WorkerError::Closed),
                _ => {}
            }
        }
    }

    /// The next control message; audio here is a protocol error.
    pub async fn recv_message(&mut self) -> Result<WorkerMessage, WorkerError> {
        match self.recv().await? {
            Incoming::Message(WorkerMessage::Error {
                code,
                message,
                retryable,
            }) => Err(WorkerError::Remote {
                code,
                message,
                retryable,
            }),
            Incoming::Message(m) => Ok(m),
            Incoming::Audio(_) => Err(ProtocolError::Unexpected {
                expected: "a control message",
                got: "binary audio",
            }
            .into()),
        }
    }

    /// Opens a session and waits (up to `timeout`) for the worker's `ready`.
    pub async fn start(
        &mut self,
        session: SessionConfig,
        timeout: Duration,
    ) -> Result<(), WorkerError> {
        self.send(&ClientMessage::Start {
            version: PROTOCOL_VERSION,
            session,
        })
        .await?;
        let ready = tokio::time::timeout(timeout, self.recv_message())
            .await
            .map_err(|_| WorkerError::Timeout {
                what: "ready",
                after: timeout,
            })??;
        match ready {
            WorkerMessage::Ready { .. } => Ok(()),
            other => Err(ProtocolError::Unexpected {
                expected: "ready",
                got: other.name(),
            }
            .into()),
        }
    }

    /// Sends a `ping` and waits for its `pong`; returns the worker's load.
    pub async fn ping(&mut self, timeout: Duration) -> Result<u32, WorkerError> {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMessage::Ping { seq }).await?;
        let wait = async {
            loop {
                if let WorkerMessage::Pong {
                    seq: got,
                    active_sessions,
                } = self.recv_message().await?
                {
                    if got == seq {
                        return Ok::<u32, WorkerError>(active_sessions);
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WorkerError::Timeout {
                what: "pong",
                after: timeout,
            })?
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
