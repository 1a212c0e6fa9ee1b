//! The simulator's Deepgram-compatible `/v1/listen` websocket: a TEST
//! DOUBLE of Deepgram's live transcription, scripted like the worker
//! protocol's STT (transcripts by audio fingerprint) and faulted by the
//! script's `stages.deepgram`.
//!
//! It answers the way the real service does: an interim `Results`
//! (`is_final: false`, the first half of the words) once it has heard
//! `fingerprint_seconds` of audio; a final `Results` on `Finalize` or
//! `CloseStream`; after `CloseStream` a `Metadata` and a close with 1000.
//! With `match: envelope` an utterance that is not an exact match gets
//! no interim result: its transcript is decided at the end. `KeepAlive` is accepted. Audio it cannot decode (an odd byte count)
//! closes with 1008, as Deepgram does. The `Authorization: Token …` header
//! is required but not checked.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::engines::{timed_words, SimState, StageFaults, StageId};
use super::script::SttLookup;
use crate::worker::{FaultAction, SessionFaults};

/// The path the simulator serves Deepgram on (and below).
pub const LISTEN_PATH: &str = "/v1/listen";

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Serves one `/v1/listen` connection.
pub(crate) async fn serve_listen(stream: TcpStream, state: Arc<SimState>) {
    let faults = state.faults_for_next(StageId::Deepgram);
    if let Some(ms) = faults.as_ref().and_then(|f| f.slow_start_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let refuse = faults
        .as_ref()
        .and_then(|f| f.http_status.map(|s| (s, f.retry_after_s)));
    let mut query = String::new();
    let seen = state.clone();
    let q = &mut query;
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *q = req.uri().query().unwrap_or_default().to_owned();
        *seen
            .listen_request
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((auth.clone(), q.clone()));
        let refuse_with = |status: u16, text: &str| {
            let mut r = ErrorResponse::new(Some(text.to_owned()));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            r
        };
        if let Some((status, retry)) = refuse {
            let mut r = refuse_with(status, "simulated failure");
            if let Some(s) = retry.filter(|_| status == 429) {
                r.headers_mut().insert("retry-after", HeaderValue::from(s));
            }
            return Err(r);
        }
        if !auth.is_some_and(|a| a.starts_with("Token ") && a.len() > 6) {
            return Err(refuse_with(401, "missing Authorization: Token"));
        }
        if query_value(q.as_str(), "encoding").is_some_and(|e| e != "linear16") {
            return Err(refuse_with(400, "the simulator decodes only linear16"));
        }
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, check).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "simulated Deepgram upgrade refused");
            return;
        }
    };
    let rate = query_value(&query, "sample_rate")
        .and_then(|r| r.parse::<u32>().ok())
        .filter(|r| (1_000..=192_000).contains(r))
        .unwrap_or(16_000);
    let session = Listen {
        ws,
        state,
        faults: StageFaults {
            faults,
            garbage_sent: false,
        },
        rate,
        audio: Vec::new(),
        sent: 0,
        partial_sent: false,
        final_sent: false,
        stalled: false,
    };
    session.run().await;
}

struct Listen {
    ws: WebSocketStream<TcpStream>,
    state: Arc<SimState>,
    faults: StageFaults,
    rate: u32,
    audio: Vec<i16>,
    sent: u32,
    partial_sent: bool,
    final_sent: bool,
    stalled: bool,
}

/// The connection must end now (a fault cut it or sending failed).
struct Hangup;

impl Listen {
    async fn run(mut self) {
        while let Some(Ok(msg)) = self.ws.next().await {
            if self.stalled {
                continue;
            }
            let outcome = match msg {
                Message::Binary(bytes) => self.handle_audio(&bytes).await,
                Message::Text(text) => self.handle_control(&text).await,
                Message::Close(_) => break,
                _ => Ok(()),
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Hangup> {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code,
                reason: reason.to_owned().into(),
            }))
            .await;
        Err(Hangup)
    }

    async fn handle_audio(&mut self, bytes: &[u8]) -> Result<(), Hangup> {
        if !bytes.len().is_multiple_of(2) {
            return self
                .close(
                    CloseCode::Policy,
                    "DATA-0000: the payload cannot be decoded as audio",
                )
                .await;
        }
        self.audio.extend(
            bytes
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]])),
        );
        let needed = (self.rate as f32 * self.state.script.stt.fingerprint_seconds) as usize;
        if !self.partial_sent && self.state.script.stt.partials && self.audio.len() >= needed {
            self.partial_sent = true;
            let (text, confidence) =
                match self.state.script.stt_lookup(&self.audio, self.rate, false) {
                    SttLookup::Found(text, confidence) => (text, confidence),
                    // An envelope match is decided at the end: no partial.
                    SttLookup::Wait => return Ok(()),
                    SttLookup::Unmatched { .. } => {
                        return self
                            .close(CloseCode::Error, "NET-0000: no scripted transcript")
                            .await
                    }
                };
            self.state.sleep_first(StageId::Deepgram).await;
            let words: Vec<&str> = text.split_whitespace().collect();
            let half = words[..words.len().div_ceil(2)].join(" ");
            self.send_results(&half, confidence * 0.8, false, false)
                .await?;
        }
        Ok(())
    }

    async fn handle_control(&mut self, text: &str) -> Result<(), Hangup> {
        let kind = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
        match kind.as_deref() {
            Some("KeepAlive") => Ok(()),
            Some("Finalize") => self.finalize(true).await,
            Some("CloseStream") => {
                self.finalize(false).await?;
                if self.stalled {
                    return Ok(());
                }
                let duration = self.audio.len() as f64 / f64::from(self.rate);
                let meta = json!({
                    "type": "Metadata", "transaction_key": "deprecated",
                    "request_id": self.request_id(), "sha256": "", "created": "",
                    "duration": duration, "channels": 1
                });
                self.ws
                    .send(Message::text(meta.to_string()))
                    .await
                    .map_err(|_| Hangup)?;
                self.close(CloseCode::Normal, "").await
            }
            _ => {
                self.close(CloseCode::Policy, "unknown control message")
                    .await
            }
        }
    }

    async fn finalize(&mut self, from_finalize: bool) -> Result<(), Hangup> {
        if self.final_sent || self.audio.is_empty() {
            return Ok(());
        }
        self.final_sent = true;
        if self.partial_sent {
            self.state.sleep_chunk(StageId::Deepgram).await;
        } else {
            self.state.sleep_first(StageId::Deepgram).await;
        }
        let SttLookup::Found(text, confidence) =
            self.state.script.stt_lookup(&self.audio, self.rate, true)
        else {
            return self
                .close(CloseCode::Error, "NET-0000: no scripted transcript")
                .await;
        };
        self.send_results(&text, confidence, true, from_finalize)
            .await
    }

    fn request_id(&self) -> String {
        format!("sim-{}", self.state.count(StageId::Deepgram))
    }

    async fn send_results(
        &mut self,
        text: &str,
        confidence: f32,
        is_final: bool,
        from_finalize: bool,
    ) -> Result<(), Hangup> {
        match self.faults.before_frame(self.sent) {
            FaultAction::Send => {}
            FaultAction::Garbage => {
                self.ws
                    .send(Message::text("{\"type\":\"Results\",\u{1}garbage"))
                    .await
                    .map_err(|_| Hangup)?;
            }
            // Dropping the stream closes TCP without a close frame.
            FaultAction::Disconnect => return Err(Hangup),
            FaultAction::Stall => {
                self.stalled = true;
                return Ok(());
            }
        }
        self.sent += 1;
        let duration_ms = self.audio.len() as u64 * 1000 / u64::from(self.rate.max(1));
        let words: Vec<Value> = timed_words(text, duration_ms, confidence)
            .into_iter()
            .map(|w| {
                json!({"word": w.text.to_lowercase(), "punctuated_word": w.text,
                       "start": w.start_ms as f64 / 1000.0, "end": w.end_ms as f64 / 1000.0,
                       "confidence": w.confidence})
            })
            .collect();
        let results = json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": duration_ms as f64 / 1000.0,
            "start": 0.0,
            "is_final": is_final,
            "speech_final": is_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": words}]},
            "metadata": {"request_id": self.request_id()}
        });
        self.ws
            .send(Message::text(results.to_string()))
            .await
            .map_err(|_| Hangup)?;
        if self.faults.hang_up_after(self.sent) {
            return Err(Hangup);
        }
        Ok(())
    }
}
