//! A client of OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp
//! server, Ollama's `/v1`), used as an intent engine.
//!
//! It streams (SSE), measures the time to the first content token, and
//! tells a missed first-token deadline apart from a stalled stream: the
//! orchestrator fails over on the first and may wait on the second.

pub mod prompt;
pub mod sse;

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use url::Url;
use voxgate_gateway::clock::{self, Instant};

use crate::error::Blame;
use crate::nlu::{IntentEngine, IntentResult, NluEvent, NluRequest, NluStream};
pub use prompt::{AnswerError, StructuredMode};
use sse::{SseError, SseParser};

/// A per-tenant API key. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How to reach one model.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The API root, ending in `/v1/` (for example `http://127.0.0.1:11434/v1/`).
    pub base_url: Url,
    pub model: String,
    /// `None` for local servers that take no key.
    pub api_key: Option<ApiKey>,
    pub mode: StructuredMode,
    /// From sending the request to the first content token.
    pub first_token_deadline: Duration,
    /// Longest silence between chunks once tokens flow.
    pub read_timeout: Duration,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl LlmConfig {
    /// Defaults: JSON-schema mode, 1.5 s to the first token, 5 s between
    /// chunks, temperature 0, 300 tokens.
    pub fn new(base_url: Url, model: impl Into<String>) -> Self {
        Self {
            base_url,
            model: model.into(),
            api_key: None,
            mode: StructuredMode::JsonSchema,
            first_token_deadline: Duration::from_millis(1500),
            read_timeout: Duration::from_secs(5),
            temperature: 0.0,
            max_tokens: 300,
        }
    }
}

/// Why a completion failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("invalid LLM configuration: {reason}")]
    Config { reason: String },
    #[error("rate limited (HTTP 429), retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("provider error HTTP {status}")]
    Server { status: u16 },
    #[error("the provider rejected the request with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("no first token within the {deadline:?} deadline")]
    FirstTokenDeadline { deadline: Duration },
    #[error("the stream stalled for {after:?} after the first token")]
    ReadTimeout { after: Duration },
    #[error("cannot reach the provider: {0}")]
    Connect(#[source] reqwest::Error),
    #[error("the response broke off: {0}")]
    Body(#[source] reqwest::Error),
    #[error("malformed stream: {0}")]
    MalformedStream(String),
    #[error("malformed answer: {0}")]
    MalformedAnswer(#[from] AnswerError),
    #[error("the response ended without an answer")]
    Empty,
}

impl From<SseError> for LlmError {
    fn from(e: SseError) -> Self {
        LlmError::MalformedStream(e.to_string())
    }
}

impl LlmError {
    pub fn blame(&self) -> Blame {
        match self {
            Self::Config { .. } | Self::Rejected { .. } => Blame::Internal,
            _ => Blame::Provider,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::FirstTokenDeadline { .. }
                | Self::ReadTimeout { .. }
                | Self::Connect(_)
                | Self::Body(_)
                | Self::MalformedStream(_)
                | Self::MalformedAnswer(_)
                | Self::Empty
        )
    }
}

/// A classification and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmOutcome {
    pub result: IntentResult,
    /// From sending the request to the first content token (for a
    /// non-streaming call, to the whole response).
    pub first_token: Duration,
    pub total: Duration,
    /// The model's raw answer text.
    pub raw: String,
}

/// The client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    config: LlmConfig,
    endpoint: Url,
}

/// `Retry-After` in seconds (the HTTP-date form is not parsed).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Pulls the text a chunk adds: content, or tool-call argument fragments.
fn delta_text(v: &Value, key: &str) -> String {
    let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
        return String::new();
    };
    let Some(part) = choice.get(key) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(c) = part.get("content").and_then(Value::as_str) {
        out.push_str(c);
    }
    if let Some(calls) = part.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            if let Some(a) = call
                .get("function")
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
            {
                out.push_str(a);
            }
        }
    }
    out
}

impl LlmClient {
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        voxgate_gateway::crypto::install_crypto_provider();
        let endpoint = config
            .base_url
            .join("chat/completions")
            .map_err(|e| LlmError::Config {
                reason: format!("base URL: {e}"),
            })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(LlmError::Config {
                reason: "the base URL must be http or https".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| LlmError::Config {
                reason: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            config,
            endpoint,
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    async fn send(&self, body: &Value, deadline: Instant) -> Result<reqwest::Response, LlmError> {
        let mut request = self.http.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(&key.0);
        }
        let response = tokio::time::timeout_at(deadline.into(), request.send())
            .await
            .map_err(|_| LlmError::FirstTokenDeadline {
                deadline: self.config.first_token_deadline,
            })?
            .map_err(LlmError::Connect)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(response),
            429 => Err(LlmError::RateLimited {
                retry_after: retry_after(response.headers()),
            }),
            401 | 403 => Err(LlmError::Unauthorized { status }),
            500..=599 => Err(LlmError::Server { status }),
            _ => {
                let body = tokio::time::timeout_at(deadline.into(), response.text())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                Err(LlmError::Rejected {
                    status,
                    body: body.chars().take(300).collect(),
                })
            }
        }
    }

    /// Classifies with a streaming completion; `on_token` sees each piece
    /// of text as it arrives.
    pub async fn classify_streaming(
        &self,
        request: &NluRequest,
        mut on_token: impl FnMut(&str) + Send,
    ) -> Result<LlmOutcome, LlmError> {
        let c = &self.config;
        let body =
            prompt::request_body(request, &c.model, c.mode, true, c.temperature, c.max_tokens);
        let started = clock::now();
        let first_deadline = started + c.first_token_deadline;
        let mut response = self.send(&body, first_deadline).await?;
        let mut parser = SseParser::new();
        let mut text = String::new();
        let mut first_token: Option<Duration> = None;
        'read: loop {
            let chunk = if first_token.is_none() {
                tokio::time::timeout_at(first_deadline.into(), response.chunk())
                    .await
                    .map_err(|_| LlmError::FirstTokenDeadline {
                        deadline: c.first_token_deadline,
                    })?
            } else {
                tokio::time::timeout(c.read_timeout, response.chunk())
                    .await
                    .map_err(|_| LlmError::ReadTimeout {
                        after: c.read_timeout,
                    })?
            };
            let Some(bytes) = chunk.map_err(LlmError::Body)? else {
                break;
            };
            parser.push(&bytes)?;
            while let Some(event) = parser.poll_event()? {
                if event.data.trim() == "[DONE]" {
                    break 'read;
                }
                let v: Value = serde_json::from_str(&event.data)
                    .map_err(|e| LlmError::MalformedStream(format!("chunk is not JSON: {e}")))?;
                if let Some(err) = v.get("error") {
                    return Err(LlmError::MalformedStream(format!("error event: {err}")));
                }
                let piece = delta_text(&v, "delta");
                if !piece.is_empty() {
                    first_token.get_or_insert_with(|| clock::now().duration_since(started));
                    on_token(&piece);
                    text.push_str(&piece);
                }
            }
        }
        let Some(first_token) = first_token else {
            return Err(LlmError::Empty);
        };
        let result = prompt::parse_answer(&text, request)?;
        Ok(LlmOutcome {
            result,
            first_token,
            total: clock::now().duration_since(started),
            raw: text,
        })
    }

    /// Classifies with one non-streaming completion. The first-token
    /// deadline bounds the whole response here.
    pub async fn classify(&self, request: &NluRequest) -> Result<LlmOutcome, LlmError> {
        let c = &self.config;
        let body = prompt::request_body(
            request,
            &c.model,
            c.mode,
            false,
            c.temperature,
            c.max_tokens,
        );
        let started = clock::now();
        let deadline = started + c.first_token_deadline;
        let response = self.send(&body, deadline).await?;
        let bytes = tokio::time::timeout_at(deadline.into(), response.bytes())
            .await
            .map_err(|_| LlmError::FirstTokenDeadline {
                deadline: c.first_token_deadline,
            })?
            .map_err(LlmError::Body)?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::MalformedStream(format!("response is not JSON: {e}")))?;
        let text = delta_text(&v, "message");
        if text.is_empty() {
            return Err(LlmError::Empty);
        }
        let elapsed = clock::now().duration_since(started);
        Ok(LlmOutcome {
            result: prompt::parse_answer(&text, request)?,
            first_token: elapsed,
            total: elapsed,
            raw: text,
        })
    }
}

impl IntentEngine for LlmClient {
    /// Streams. Token events are dropped rather than delayed if the reader
    /// falls behind; the result is never dropped.
    fn classify(&self, request: NluRequest) -> NluStream {
        let (stream, backend) = NluStream::channel();
        let client = self.clone();
        tokio::spawn(async move {
            let events = backend.events.clone();
            let work = client.classify_streaming(&request, |t| {
                let _ = events.try_send(Ok(NluEvent::Token(t.to_owned())));
            });
            let outcome = tokio::select! {
                _ = backend.cancel.cancelled() => return,
                o = work => o,
            };
            backend
                .send(
                    outcome
                        .map(|o| NluEvent::Result(o.result))
                        .map_err(Into::into),
                )
                .await;
        });
        stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows() {
        let mut config = LlmConfig::new(Url::parse("http://127.0.0.1:1/v1/").expect("url"), "m");
        config.api_key = Some(ApiKey::new("sk-very-secret"));
        let client = LlmClient::new(config).expect("client");
        assert!(!format!("{client:?}").contains("sk-very-secret"));
        assert_eq!(
            client.endpoint.as_str(),
            "http://127.0.0.1:1/v1/chat/completions"
        );
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().expect("hv"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("hv"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn deltas_read_content_and_tool_arguments() {
        let v: Value = serde_json::from_str(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"in"}}]}}]}"#,
        )
        .expect("json");
        assert_eq!(delta_text(&v, "delta"), "{\"in");
        let v: Value =
            serde_json::from_str(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#).expect("json");
        assert_eq!(delta_text(&v, "delta"), "");
    }
}
