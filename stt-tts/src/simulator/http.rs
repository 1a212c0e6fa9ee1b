//! The simulator's OpenAI-compatible HTTP API: `POST /v1/chat/completions`
//! (streaming SSE or not, content or tool call) and `POST
//! /v1/audio/speech` (raw 24 kHz 16-bit little-endian PCM, streamed).
//! API keys are accepted, not checked.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::engines::{render_voice, SimState, StageId};
use super::script::Faults;
use crate::llm::prompt::{answer_json, TOOL_NAME};
use crate::nlu::IntentResult;

/// Rate of `/v1/audio/speech` output, as OpenAI's `pcm` format.
pub const SPEECH_SAMPLE_RATE: u32 = 24_000;
const TOKEN_CHARS: usize = 10;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/audio/speech", post(speech))
        .with_state(state)
}

fn error_response(status: u16, retry_after: Option<u64>, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": "simulated", "code": status}});
    let mut resp = (code, axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Applies the start faults; `Some` is the response to give instead.
async fn start_faults(faults: &Option<Faults>) -> Option<Response> {
    let f = faults.as_ref()?;
    if let Some(ms) = f.slow_start_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    f.http_status.map(|status| {
        error_response(
            status,
            if status == 429 { f.retry_after_s } else { None },
            "simulated failure",
        )
    })
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn body_of(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn cut() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated disconnect")
}

fn last_user_text(v: &Value) -> String {
    v.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn chunk_json(model: &str, delta: Value, finish: Option<&str>) -> Bytes {
    let v = json!({
        "id": "chatcmpl-sim",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {v}\n\n"))
}

async fn chat(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let faults = state.faults_for_next(StageId::Llm);
    if let Some(resp) = start_faults(&faults).await {
        return resp;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, None, "request body is not JSON");
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("simulated")
        .to_owned();
    let utterance = last_user_text(&request);
    let result = state
        .script
        .intent_for(&utterance)
        .unwrap_or_else(IntentResult::no_match);
    let answer = answer_json(&result, None);
    let tool = request.get("tools").is_some();
    if !request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        state.sleep_first(StageId::Llm).await;
        let message = if tool {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_sim", "type": "function",
                "function": {"name": TOOL_NAME, "arguments": answer}}]})
        } else {
            json!({"role": "assistant", "content": answer})
        };
        return axum::Json(json!({
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]
        }))
        .into_response();
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(stream_chat(
        state,
        tx,
        model,
        answer,
        tool,
        faults.unwrap_or_default(),
    ));
    let mut resp = Response::new(body_of(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

async fn stream_chat(
    state: Arc<SimState>,
    tx: Tx,
    model: String,
    answer: String,
    tool: bool,
    f: Faults,
) {
    // Real servers send the role at once; it is not a token.
    if tx
        .send(Ok(chunk_json(&model, json!({"role": "assistant"}), None)))
        .await
        .is_err()
    {
        return;
    }
    state.sleep_first(StageId::Llm).await;
    let chars: Vec<char> = answer.chars().collect();
    for (i, piece) in chars.chunks(TOKEN_CHARS).enumerate() {
        let i = i as u32;
        if i > 0 {
            state.sleep_chunk(StageId::Llm).await;
        }
        if f.disconnect_after_chunks.is_some_and(|k| i >= k) {
            let _ = tx.send(Err(cut())).await;
            return;
        }
        if f.stall_after_chunks.is_some_and(|k| i >= k) {
            tx.closed().await;
            return;
        }
        if f.garbage_at_chunk == Some(i) {
            let _ = tx
                .send(Ok(Bytes::from_static(b"data: {\"choices\": [garbage\n\n")))
                .await;
        }
        let piece: String = piece.iter().collect();
        let delta = if tool {
            let mut call = json!({"index": 0, "function": {"arguments": piece}});
            if i == 0 {
                call["id"] = json!("call_sim");
                call["type"] = json!("function");
                call["function"]["name"] = json!(TOOL_NAME);
            }
            json!({"tool_calls": [call]})
        } else {
            json!({"content": piece})
        };
        if tx.send(Ok(chunk_json(&model, delta, None))).await.is_err() {
            return;
        }
    }
    let finish = if tool { "tool_calls" } else { "stop" };
    let _ = tx
        .send(Ok(chunk_json(&model, json!({}), Some(finish))))
        .await;
    let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
}

async fn speech(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    *state.speech_auth.lock().unwrap_or_else(|p| p.into_inner()) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let faults = state.faults_for_next(StageId::Speech);
    if let Some(resp) = start_faults(&faults).await {
        return resp;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, None, "request body is not JSON");
    };
    let Some(text) = request
        .get("input")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return error_response(400, None, "`input` is required");
    };
    if let Some(format) = request.get("response_format").and_then(Value::as_str) {
        if format != "pcm" {
            return error_response(400, None, "the simulator speaks only `pcm`");
        }
    }
    let pcm = match render_voice(state.script.tts.voice, &text, SPEECH_SAMPLE_RATE).await {
        Ok(p) => p,
        Err(e) => return error_response(500, None, &e.to_string()),
    };
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(stream_speech(state, tx, pcm, faults.unwrap_or_default()));
    let mut resp = Response::new(body_of(rx));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/pcm"));
    resp.headers_mut()
        .insert("x-sample-rate", HeaderValue::from(SPEECH_SAMPLE_RATE));
    resp
}

async fn stream_speech(state: Arc<SimState>, tx: Tx, pcm: Vec<i16>, f: Faults) {
    let per_chunk =
        (SPEECH_SAMPLE_RATE as usize * state.script.tts.chunk_ms.max(10) as usize / 1000).max(1);
    let mut sent_bytes = 0u64;
    state.sleep_first(StageId::Speech).await;
    for (i, samples) in pcm.chunks(per_chunk).enumerate() {
        let i = i as u32;
        if i > 0 {
            state.sleep_chunk(StageId::Speech).await;
        }
        if f.disconnect_after_chunks.is_some_and(|k| i >= k) {
            let _ = tx.send(Err(cut())).await;
            return;
        }
        if f.stall_after_chunks.is_some_and(|k| i >= k) {
            tx.closed().await;
            return;
        }
        let mut bytes = crate::protocol::pcm_to_bytes(samples);
        if let Some(limit) = f.stall_after_bytes {
            let room = limit.saturating_sub(sent_bytes) as usize;
            if bytes.len() >= room {
                bytes.truncate(room);
                let _ = tx.send(Ok(Bytes::from(bytes))).await;
                tx.closed().await;
                return;
            }
        }
        if f.garbage_at_chunk == Some(i) {
            // An odd byte misaligns every sample after it.
            let _ = tx.send(Ok(Bytes::from_static(&[0x7f]))).await;
        }
        sent_bytes += bytes.len() as u64;
        if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
            return;
        }
    }
}
