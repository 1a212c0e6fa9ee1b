//! The worker protocol over websockets: the server that puts engines on
//! the network ([`serve_worker`]) and the client pool the gateway uses to
//! reach them ([`WorkerPool`]).

mod client;
mod pool;
mod remote;
mod server;

pub use client::{connect, Incoming, WorkerConnection};
pub use pool::{PoolConfig, WorkerPool, WorkerStatus};
pub(crate) use server::{serve_connection, FaultAction, FaultSource, SessionFaults, Shared};
pub use server::{serve_worker, serve_worker_until, Engines};

use std::time::Duration;

use crate::error::{EngineError, ErrorCode};
use crate::protocol::ProtocolError;

/// The bearer token workers require on the websocket upgrade. Its `Debug`
/// never shows the secret.
#[derive(Clone)]
pub struct WorkerToken(String);

impl WorkerToken {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Checks an `Authorization` header value in constant time.
    pub fn matches_header(&self, header: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        !self.0.is_empty() && bool::from(given.as_bytes().ct_eq(self.0.as_bytes()))
    }

    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for WorkerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerToken(<redacted>)")
    }
}

/// Why talking to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker URL {url:?} is not a ws:// URL")]
    InvalidUrl { url: String },
    #[error("cannot reach worker {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("worker {url} refused the token (HTTP 401)")]
    Unauthorized { url: String },
    #[error("worker {url} answered the upgrade with HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("websocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the worker closed the connection")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the worker reported {code:?}: {message}")]
    Remote {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    #[error("no worker is configured")]
    NoWorkers,
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
}

impl From<WorkerError> for EngineError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Protocol(p) => EngineError::Protocol(p),
            WorkerError::Remote {
                code,
                message,
                retryable,
            } => EngineError::Remote {
                code,
                message,
                retryable,
            },
            WorkerError::Unauthorized { url } => EngineError::Remote {
                code: ErrorCode::InvalidRequest,
                message: format!("worker {url} refused the token"),
                retryable: false,
            },
            WorkerError::Closed | WorkerError::WebSocket(_) | WorkerError::Timeout { .. } => {
                EngineError::ConnectionLost {
                    reason: e.to_string(),
                }
            }
            other => EngineError::Unavailable {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks_and_hides() {
        let t = WorkerToken::new("s3cret");
        assert!(t.matches_header(Some("Bearer s3cret")));
        assert!(!t.matches_header(Some("Bearer s3cre")));
        assert!(!t.matches_header(Some("s3cret")));
        assert!(!t.matches_header(None));
        assert!(!WorkerToken::new("").matches_header(Some("Bearer ")));
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
